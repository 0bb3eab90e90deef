//! Caller identity rules, hostile inputs included. Tokens are signed here with jwt-simple's
//! signing side; the e2e tests sign with an independent library.

use super::allow::{evaluate, spiffe_matches, valid_spiffe_id, Verdict};
use super::auth::CallerInput;
use super::jwt::{Issuer, KeyError, TokenError};
use super::token::{cookie_value, strip_cookies, Sources};
use super::*;
use jwt_simple::prelude::*;
use std::sync::OnceLock;

const NOW: u64 = 1_800_000_000;
const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";

fn plan(issuer: &str, algs: &[JwtAlg], keys: KeySource) -> IssuerPlan {
    IssuerPlan {
        issuer: issuer.into(),
        audiences: vec!["egress-proxy".into()],
        algorithms: algs.to_vec(),
        keys,
        from_headers: vec![HeaderSource::bearer()],
        from_cookies: vec![],
        roles_claim: "roles".into(),
        clock_skew_secs: 30,
    }
}

fn hs_plan() -> IssuerPlan {
    plan(
        "auth-service",
        &[JwtAlg::HS256],
        KeySource::Secret {
            secret: crate::secret::Secret::new(SECRET),
        },
    )
}

#[derive(Serialize, Deserialize)]
struct Extra {
    roles: Vec<String>,
}

fn claims(iss: &str, sub: &str, exp_from_now: i64) -> JWTClaims<Extra> {
    let mut c = Claims::with_custom_claims(
        Extra {
            roles: vec!["crm".into()],
        },
        Duration::from_secs(60),
    )
    .with_issuer(iss)
    .with_subject(sub)
    .with_audience("egress-proxy");
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.expires_at = Some(UnixTimeStamp::from_secs((NOW as i64 + exp_from_now) as u64));
    c
}

fn hs256(c: JWTClaims<Extra>) -> String {
    HS256Key::from_bytes(SECRET.as_bytes())
        .authenticate(c)
        .unwrap()
}

fn rsa() -> &'static RS256KeyPair {
    static K: OnceLock<RS256KeyPair> = OnceLock::new();
    K.get_or_init(|| RS256KeyPair::generate(2048).unwrap())
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

#[test]
fn hs256_token_yields_issuer_subject_and_roles() {
    let issuer = Issuer::new(&hs_plan()).unwrap();
    let (caller, exp) = issuer
        .verify(&hs256(claims("auth-service", "user-service", 600)), NOW)
        .unwrap();
    assert_eq!(caller.issuer, "auth-service");
    assert_eq!(caller.subject, "user-service");
    assert_eq!(caller.roles, vec!["crm".to_string()]);
    assert_eq!(exp, NOW + 600);
}

#[test]
fn alg_none_is_refused() {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(format!(
        r#"{{"iss":"auth-service","sub":"x","aud":"egress-proxy","exp":{}}}"#,
        NOW + 60
    )
    .as_bytes());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.AAAA"),
    ] {
        let e = Issuer::new(&hs_plan())
            .unwrap()
            .verify(&token, NOW)
            .unwrap_err();
        assert_eq!(e, TokenError::AlgNone);
    }
    let upper = b64(br#"{"alg":"NONE"}"#);
    let e = Issuer::new(&hs_plan())
        .unwrap()
        .verify(&format!("{upper}.{payload}."), NOW)
        .unwrap_err();
    assert_eq!(e, TokenError::AlgNone);
}

#[test]
fn an_algorithm_not_listed_for_the_issuer_is_refused() {
    let token = HS384Key::from_bytes(SECRET.as_bytes())
        .authenticate(claims("auth-service", "u", 600))
        .unwrap();
    let e = Issuer::new(&hs_plan())
        .unwrap()
        .verify(&token, NOW)
        .unwrap_err();
    assert_eq!(e, TokenError::AlgNotAllowed("HS384".into()));
}

#[test]
fn alg_confusion_hs256_signed_with_the_rsa_public_pem_fails() {
    let pem = rsa().public_key().to_pem().unwrap();
    let rs_plan = plan(
        "auth-service",
        &[JwtAlg::RS256],
        KeySource::PublicKey {
            file: "pub.pem".into(),
            pem: Some(pem.clone()),
        },
    );
    let issuer = Issuer::new(&rs_plan).unwrap();
    let forged = HS256Key::from_bytes(pem.as_bytes())
        .authenticate(claims("auth-service", "u", 600))
        .unwrap();
    assert_eq!(
        issuer.verify(&forged, NOW).unwrap_err(),
        TokenError::AlgNotAllowed("HS256".into())
    );
    // Even an issuer config that lists HS256 beside a public key never turns the PEM into
    // an HMAC secret: it is refused when the keys are built.
    let mut mixed = rs_plan.clone();
    mixed.algorithms = vec![JwtAlg::RS256, JwtAlg::HS256];
    assert!(matches!(
        Issuer::new(&mixed).unwrap_err(),
        KeyError::PublicKeyForHmac { .. }
    ));
    let mut secret_rs = hs_plan();
    secret_rs.algorithms = vec![JwtAlg::RS256];
    assert!(matches!(
        Issuer::new(&secret_rs).unwrap_err(),
        KeyError::SecretForPublicKeyAlg { .. }
    ));
    // The genuine RS256 token verifies.
    let good = rsa().sign(claims("auth-service", "u", 600)).unwrap();
    assert!(issuer.verify(&good, NOW).is_ok());
}

#[test]
fn expiry_and_not_before_honour_the_clock_skew() {
    let issuer = Issuer::new(&hs_plan()).unwrap();
    assert!(issuer
        .verify(&hs256(claims("auth-service", "u", -20)), NOW)
        .is_ok());
    let e = issuer
        .verify(&hs256(claims("auth-service", "u", -31)), NOW)
        .unwrap_err();
    assert!(
        matches!(&e, TokenError::Rejected(m) if m.contains("expired")),
        "{e}"
    );

    let mut early = claims("auth-service", "u", 600);
    early.invalid_before = Some(UnixTimeStamp::from_secs(NOW + 20));
    assert!(issuer.verify(&hs256(early), NOW).is_ok());
    let mut future = claims("auth-service", "u", 600);
    future.invalid_before = Some(UnixTimeStamp::from_secs(NOW + 120));
    let e = issuer.verify(&hs256(future), NOW).unwrap_err();
    assert!(
        matches!(&e, TokenError::Rejected(m) if m.contains("not valid yet")),
        "{e}"
    );
}

#[test]
fn a_token_without_exp_or_sub_is_refused() {
    let issuer = Issuer::new(&hs_plan()).unwrap();
    let mut c = claims("auth-service", "u", 600);
    c.expires_at = None;
    assert_eq!(
        issuer.verify(&hs256(c), NOW).unwrap_err(),
        TokenError::MissingExp
    );
    let mut c = claims("auth-service", "u", 600);
    c.subject = None;
    assert_eq!(
        issuer.verify(&hs256(c), NOW).unwrap_err(),
        TokenError::MissingSub
    );
}

#[test]
fn wrong_issuer_or_audience_is_refused() {
    let issuer = Issuer::new(&hs_plan()).unwrap();
    let e = issuer
        .verify(&hs256(claims("someone-else", "u", 600)), NOW)
        .unwrap_err();
    assert!(matches!(e, TokenError::Rejected(_)));
    let c = claims("auth-service", "u", 600).with_audience("another-api");
    assert!(matches!(
        issuer.verify(&hs256(c), NOW).unwrap_err(),
        TokenError::Rejected(_)
    ));
}

#[test]
fn tampered_payload_fails_the_signature() {
    let token = hs256(claims("auth-service", "user", 600));
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = b64(
        format!(
            r#"{{"iss":"auth-service","sub":"admin","aud":"egress-proxy","exp":{},"roles":["crm-admin"]}}"#,
            NOW + 600
        )
        .as_bytes(),
    );
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let e = Issuer::new(&hs_plan())
        .unwrap()
        .verify(&forged, NOW)
        .unwrap_err();
    assert!(matches!(e, TokenError::Rejected(_)), "{e}");
}

#[test]
fn huge_tokens_are_refused_before_parsing() {
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        Issuer::new(&hs_plan())
            .unwrap()
            .verify(&huge, NOW)
            .unwrap_err(),
        TokenError::TooLarge
    );
    assert_eq!(
        super::jwt::peek_issuer(&huge).unwrap_err(),
        TokenError::TooLarge
    );
}

#[test]
fn jwks_keys_are_picked_by_kid_and_an_unknown_kid_is_refused() {
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    let k2 = Ed25519KeyPair::generate().with_key_id("k2");
    let jwk1: serde_json::Value = serde_json::from_str(&k1.public_key().to_jwk()).unwrap();
    let jwk2: serde_json::Value = serde_json::from_str(&k2.public_key().to_jwk()).unwrap();
    let mut j1 = jwk1.as_object().unwrap().clone();
    j1.insert("kid".into(), "k1".into());
    let mut j2 = jwk2.as_object().unwrap().clone();
    j2.insert("kid".into(), "k2".into());
    let jwks = serde_json::json!({"keys": [j1, j2]}).to_string();
    let issuer = Issuer::new(&plan(
        "idp",
        &[JwtAlg::ES256, JwtAlg::EdDSA],
        KeySource::JwksFile {
            file: "jwks.json".into(),
            jwks: Some(jwks),
        },
    ))
    .unwrap();
    assert!(issuer
        .verify(&k1.sign(claims("idp", "a", 600)).unwrap(), NOW)
        .is_ok());
    assert!(issuer
        .verify(&k2.sign(claims("idp", "b", 600)).unwrap(), NOW)
        .is_ok());
    let stranger = ES256KeyPair::generate().with_key_id("k9");
    assert_eq!(
        issuer
            .verify(&stranger.sign(claims("idp", "c", 600)).unwrap(), NOW)
            .unwrap_err(),
        TokenError::UnknownKid("k9".into())
    );
    // A key from elsewhere presenting a known kid fails the signature.
    let impostor = ES256KeyPair::generate().with_key_id("k1");
    assert!(matches!(
        issuer
            .verify(&impostor.sign(claims("idp", "c", 600)).unwrap(), NOW)
            .unwrap_err(),
        TokenError::Rejected(_)
    ));
}

#[test]
fn ps256_and_es384_verify_with_a_pem_public_key() {
    let ps = PS256KeyPair::from_pem(&rsa().to_pem().unwrap()).unwrap();
    let issuer = Issuer::new(&plan(
        "idp",
        &[JwtAlg::PS256, JwtAlg::RS256],
        KeySource::PublicKey {
            file: "k.pem".into(),
            pem: Some(rsa().public_key().to_pem().unwrap()),
        },
    ))
    .unwrap();
    assert!(issuer
        .verify(&ps.sign(claims("idp", "p", 600)).unwrap(), NOW)
        .is_ok());
    let es = ES384KeyPair::generate();
    let issuer = Issuer::new(&plan(
        "idp",
        &[JwtAlg::ES384],
        KeySource::PublicKey {
            file: "k.pem".into(),
            pem: Some(es.public_key().to_pem().unwrap()),
        },
    ))
    .unwrap();
    assert!(issuer
        .verify(&es.sign(claims("idp", "e", 600)).unwrap(), NOW)
        .is_ok());
    // An EC key is not an RSA key: refused when the keys are built.
    assert!(matches!(
        Issuer::new(&plan(
            "idp",
            &[JwtAlg::RS256],
            KeySource::PublicKey {
                file: "k.pem".into(),
                pem: Some(es.public_key().to_pem().unwrap()),
            },
        ))
        .unwrap_err(),
        KeyError::Unusable { .. }
    ));
}

#[test]
fn roles_are_read_at_a_dotted_path() {
    #[derive(Serialize, Deserialize)]
    struct Realm {
        realm_access: serde_json::Value,
    }
    let mut p = hs_plan();
    p.roles_claim = "realm_access.roles".into();
    let issuer = Issuer::new(&p).unwrap();
    let c = Claims::with_custom_claims(
        Realm {
            realm_access: serde_json::json!({"roles": ["crm-admin", "x"]}),
        },
        Duration::from_secs(60),
    )
    .with_issuer("auth-service")
    .with_subject("s")
    .with_audience("egress-proxy");
    let mut c = c;
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 60));
    let token = HS256Key::from_bytes(SECRET.as_bytes())
        .authenticate(c)
        .unwrap();
    let (caller, _) = issuer.verify(&token, NOW).unwrap();
    assert_eq!(caller.roles, vec!["crm-admin".to_string(), "x".to_string()]);
}

#[test]
fn spiffe_patterns_match_at_a_segment_boundary_only() {
    let p = "spiffe://jia.app/billing/*";
    assert!(spiffe_matches(p, "spiffe://jia.app/billing/invoices"));
    assert!(spiffe_matches(p, "spiffe://jia.app/billing/a/b"));
    assert!(!spiffe_matches(p, "spiffe://jia.app/billing-evil"));
    assert!(!spiffe_matches(p, "spiffe://jia.app/billing"));
    assert!(!spiffe_matches(p, "spiffe://jia.app/billing/"));
    assert!(!spiffe_matches(p, "spiffe://jia.app/billing/../admin"));
    assert!(!spiffe_matches(p, "spiffe://jia.app.evil/billing/x"));
    assert!(!spiffe_matches(p, "spiffe://jia.app/billing//x"));
    let exact = "spiffe://jia.app/user-service";
    assert!(spiffe_matches(exact, "spiffe://jia.app/user-service"));
    assert!(!spiffe_matches(exact, "spiffe://jia.app/user-service/x"));
    assert!(!spiffe_matches(exact, "SPIFFE://jia.app/user-service"));
    assert!(!valid_spiffe_id("spiffe://Jia.App/x"));
    assert!(!valid_spiffe_id("https://jia.app/x"));
    assert!(!valid_spiffe_id("spiffe:///x"));
}

#[test]
fn cookies_several_in_one_header_only_the_token_cookie_is_read_and_removed() {
    let header = "theme=dark; access_token=abc.def.ghi; session=s1";
    assert_eq!(cookie_value(header, "access_token"), Some("abc.def.ghi"));
    assert_eq!(cookie_value(header, "access"), None);
    assert_eq!(cookie_value("xaccess_token=1", "access_token"), None);
    assert_eq!(
        strip_cookies(header, &["access_token".into()]).as_deref(),
        Some("theme=dark; session=s1")
    );
    assert_eq!(
        strip_cookies("access_token=x", &["access_token".into()]),
        None
    );
}

fn headers(list: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        list.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn token_sources_headers_with_prefix_first_then_cookies() {
    let mut s = Sources::default();
    s.add_header(&HeaderSource::bearer());
    s.add_header(&HeaderSource {
        name: "X-Caller-Token".into(),
        value_prefix: String::new(),
    });
    s.add_cookie("access_token");
    let h = headers(&[
        ("authorization", "bearer t1"),
        ("cookie", "access_token=t3"),
    ]);
    assert_eq!(s.find(&h).unwrap().0, "t1");
    let h = headers(&[
        ("authorization", "Basic dXNlcg=="),
        ("x-caller-token", "t2"),
    ]);
    assert_eq!(s.find(&h).unwrap().0, "t2");
    let h = headers(&[("cookie", "a=1; access_token=t3")]);
    let (tok, src) = s.find(&h).unwrap();
    assert_eq!(
        (tok.as_str(), src),
        ("t3", token::Source::Cookie("access_token".into()))
    );
    let (remove, cookie) = s.removal(&h);
    assert!(remove.is_empty());
    assert_eq!(cookie, Some(Some("a=1".into())));
    let h = headers(&[("x-caller-token", "t2"), ("cookie", "access_token=t3")]);
    let (remove, cookie) = s.removal(&h);
    assert_eq!(remove, vec!["x-caller-token".to_string()]);
    assert_eq!(cookie, Some(None));
}

fn allow(spiffe: &[&str], subjects: &[&str], roles: &[&str]) -> Allow {
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Allow {
        spiffe_ids: v(spiffe),
        subjects: v(subjects),
        roles: v(roles),
    }
}

#[test]
fn allow_needs_the_target_and_the_route_and_any_entry_matches() {
    let target = allow(
        &["spiffe://jia.app/user-service"],
        &["user-service"],
        &["crm"],
    );
    let route = allow(&[], &[], &["crm-admin"]);
    let jwt = |roles: &[&str]| Caller {
        spiffe_id: None,
        jwt: Some(JwtCaller {
            issuer: "auth-service".into(),
            subject: "someone".into(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
        }),
    };
    assert!(matches!(
        evaluate(Some(&target), None, &jwt(&["crm"])),
        Verdict::Allowed { .. }
    ));
    assert_eq!(
        evaluate(Some(&target), Some(&route), &jwt(&["crm"])),
        Verdict::Refused { by_route: true }
    );
    assert!(matches!(
        evaluate(Some(&target), Some(&route), &jwt(&["crm", "crm-admin"])),
        Verdict::Allowed { .. }
    ));
    assert_eq!(
        evaluate(Some(&target), None, &jwt(&["hr"])),
        Verdict::Refused { by_route: false }
    );
    let workload = Caller {
        spiffe_id: Some("spiffe://jia.app/user-service".into()),
        jwt: None,
    };
    assert!(matches!(
        evaluate(Some(&target), None, &workload),
        Verdict::Allowed { .. }
    ));
    assert!(matches!(
        evaluate(None, None, &workload),
        Verdict::Allowed { .. }
    ));
}

fn authenticator(mtls: bool) -> Authenticator {
    let mut p = hs_plan();
    p.from_cookies = vec!["access_token".into()];
    Authenticator::new(&CallersPlan { mtls, jwt: vec![p] }).unwrap()
}

#[test]
fn authenticator_refusals_401_and_403_in_the_json_style() {
    let a = authenticator(true);
    let mut cache = TokenCache::default();
    let none = |_: &str| None;
    let input = CallerInput {
        peer_spiffe_id: None,
        header: &none,
    };
    let r = a
        .authorize(None, None, &input, NOW, &mut cache)
        .unwrap_err();
    assert_eq!((r.reply.status, r.reply.code), (401, "unauthenticated"));
    assert!(r.reply.body.contains(r#""error":"unauthenticated""#));
    assert!(r
        .reply
        .headers
        .iter()
        .any(|(k, v)| *k == "www-authenticate" && v == "Bearer"));

    let bad = |n: &str| (n == "authorization").then(|| "Bearer not.a.jwt".to_string());
    let input = CallerInput {
        peer_spiffe_id: Some("spiffe://jia.app/user-service"),
        header: &bad,
    };
    let r = a
        .authorize(None, None, &input, NOW, &mut cache)
        .unwrap_err();
    assert_eq!((r.reply.status, r.reply.code), (401, "invalid_token"));
    assert!(
        !r.reply.body.contains("not a compact"),
        "the reason is not sent"
    );
    assert!(!r.reason.is_empty());

    let target = allow(&["spiffe://jia.app/billing/*"], &[], &[]);
    let input = CallerInput {
        peer_spiffe_id: Some("spiffe://jia.app/billing-evil"),
        header: &none,
    };
    let r = a
        .authorize(Some(&target), None, &input, NOW, &mut cache)
        .unwrap_err();
    assert_eq!((r.reply.status, r.reply.code), (403, "forbidden"));
    let input = CallerInput {
        peer_spiffe_id: Some("spiffe://jia.app/billing/invoices"),
        header: &none,
    };
    let ok = a
        .authorize(Some(&target), None, &input, NOW, &mut cache)
        .unwrap();
    assert_eq!(
        ok.caller.log_name().as_deref(),
        Some("spiffe://jia.app/billing/invoices")
    );
}

#[test]
fn a_spiffe_id_counts_only_when_mtls_is_configured() {
    let a = authenticator(false);
    let none = |_: &str| None;
    let input = CallerInput {
        peer_spiffe_id: Some("spiffe://jia.app/user-service"),
        header: &none,
    };
    let r = a
        .authorize(None, None, &input, NOW, &mut TokenCache::default())
        .unwrap_err();
    assert_eq!(r.reply.status, 401);
}

#[test]
fn a_verified_token_is_cached_until_exp_and_its_cookie_is_removed() {
    let a = authenticator(false);
    let mut cache = TokenCache::default();
    let token = hs256(claims("auth-service", "user-service", 100));
    let cookie = format!("theme=dark; access_token={token}");
    let h = move |n: &str| (n == "cookie").then(|| cookie.clone());
    let input = CallerInput {
        peer_spiffe_id: None,
        header: &h,
    };
    let ok = a.authorize(None, None, &input, NOW, &mut cache).unwrap();
    assert_eq!(
        ok.caller.log_name().as_deref(),
        Some("auth-service/user-service")
    );
    assert_eq!(ok.cookie, Some(Some("theme=dark".into())));
    assert_eq!((cache.len(), cache.hits()), (1, 0));
    a.authorize(None, None, &input, NOW + 50, &mut cache)
        .unwrap();
    assert_eq!(cache.hits(), 1);
    // Past exp the entry is dropped and the token checked again (and refused).
    let r = a
        .authorize(None, None, &input, NOW + 200, &mut cache)
        .unwrap_err();
    assert_eq!(r.reply.code, "invalid_token");
    assert_eq!(cache.hits(), 1);
}

#[test]
fn the_cache_is_bounded() {
    let mut cache = TokenCache::new(3);
    let c = JwtCaller {
        issuer: "i".into(),
        subject: "s".into(),
        roles: vec![],
    };
    for i in 0..10u8 {
        cache.insert([i; 32], c.clone(), NOW + u64::from(i), NOW);
    }
    assert_eq!(cache.len(), 3);
    assert!(cache.get(&[9; 32], NOW).is_some());
    cache.insert([20; 32], c, NOW - 1, NOW);
    assert!(cache.get(&[20; 32], NOW).is_none());
}

#[test]
fn a_token_from_an_unknown_issuer_is_invalid() {
    let a = authenticator(false);
    let token = hs256(claims("not-configured", "u", 100));
    let h = move |n: &str| (n == "authorization").then(|| format!("Bearer {token}"));
    let input = CallerInput {
        peer_spiffe_id: None,
        header: &h,
    };
    let r = a
        .authorize(None, None, &input, NOW, &mut TokenCache::default())
        .unwrap_err();
    assert_eq!(r.reply.code, "invalid_token");
    assert!(r.reason.contains("not configured"), "{}", r.reason);
}
