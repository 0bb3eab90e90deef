//! Caller identity rules, hostile inputs included. Tokens are signed here with jwt-simple's
//! signing side; the e2e tests sign with an independent library.

use super::jwt::{Issuer, KeyError, TokenError};
use super::*;
use jwt_simple::prelude::*;
use std::sync::OnceLock;

pub(super) const NOW: u64 = 1_800_000_000;
pub(super) const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";

pub(super) fn plan(issuer: &str, algs: &[JwtAlg], keys: KeySource) -> IssuerPlan {
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

pub(super) fn hs_plan() -> IssuerPlan {
    plan(
        "auth-service",
        &[JwtAlg::HS256],
        KeySource::Secret {
            secret: crate::secret::Secret::new(SECRET),
        },
    )
}

#[derive(Serialize, Deserialize)]
pub(super) struct Extra {
    pub(super) roles: Vec<String>,
}

pub(super) fn claims(iss: &str, sub: &str, exp_from_now: i64) -> JWTClaims<Extra> {
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

pub(super) fn hs256(c: JWTClaims<Extra>) -> String {
    HS256Key::from_bytes(SECRET.as_bytes())
        .authenticate(c)
        .unwrap()
}

pub(super) fn rsa() -> &'static RS256KeyPair {
    static K: OnceLock<RS256KeyPair> = OnceLock::new();
    K.get_or_init(|| RS256KeyPair::generate(2048).unwrap())
}

pub(super) fn b64(bytes: &[u8]) -> String {
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
