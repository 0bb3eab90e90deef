//! Caller policy rules: SPIFFE patterns, where a token is read and how it is removed, allow
//! lists, and the authenticator's refusals. Helpers and keys come from the JWT tests.

use super::allow::{evaluate, spiffe_matches, valid_spiffe_id, Verdict};
use super::auth::CallerInput;
use super::tests::*;
use super::token::{cookie_value, strip_cookies, Sources};
use super::*;

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
