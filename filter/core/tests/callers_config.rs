//! `egress.callers` and `allow`: the issue's example is accepted, every mistake is reported
//! with its field path, and the engine refuses what it must.
#![cfg(feature = "yaml")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_core::callers::auth::CallerInput;
use egress_core::callers::{JwtAlg, KeySource, TokenCache};
use egress_core::config::load::load_str;
use egress_core::config::ConfigErrors;
use egress_core::engine::{Decision, Engine, Forward};
use egress_core::plan::FilterConfig;

fn env(name: &str) -> Option<String> {
    (name == "JWT_SECRET").then(|| "s3cret-s3cret-s3cret-s3cret-s3cret".to_string())
}

const ISSUE_EXAMPLE: &str = r#"
http: { addr: ":8080" }
egress:
  callers:
    mtls:
      server_cert: certs/egress.crt
      server_key: certs/egress.key
      client_ca: certs/mesh-ca.crt
      require_client_cert: true
    jwt:
      - issuer: "auth-service"
        audiences: ["egress-proxy"]
        algorithms: ["HS256"]
        secret: "${JWT_SECRET}"
        from_headers: [{name: Authorization, value_prefix: "Bearer "}]
        from_cookies: [access_token]
        roles_claim: roles
        clock_skew: 30s
  targets:
    salesforce:
      url: http://127.0.0.1:9/sf
      allow:
        spiffe_ids: ["spiffe://jia.app/user-service", "spiffe://jia.app/billing/*"]
        subjects: ["user-service"]
        roles: ["crm"]
  routes:
    - path_prefix: /egress/crm
      target: salesforce
      allow: { roles: ["crm-admin"] }
    - path_prefix: /egress/sf
      target: salesforce
"#;

fn errors(yaml: &str) -> ConfigErrors {
    load_str(yaml, &env).expect_err("config should be rejected")
}

fn has(errs: &ConfigErrors, path: &str, needle: &str) -> bool {
    errs.iter()
        .any(|e| e.path == path && e.message.contains(needle))
}

#[test]
fn the_issues_example_is_accepted_with_its_defaults() {
    let c = load_str(ISSUE_EXAMPLE, &env).unwrap();
    let callers = c.callers.as_ref().unwrap();
    let mtls = callers.mtls.as_ref().unwrap();
    assert!(mtls.require_client_cert);
    assert_eq!(mtls.client_ca, "certs/mesh-ca.crt");
    let i = &callers.jwt[0];
    assert_eq!(i.algorithms, vec![JwtAlg::HS256]);
    assert_eq!(i.clock_skew_secs, 30);
    assert!(
        matches!(&i.keys, KeySource::Secret { secret } if secret.expose().starts_with("s3cret"))
    );
    assert_eq!(
        c.target("salesforce")
            .unwrap()
            .allow
            .as_ref()
            .unwrap()
            .roles,
        ["crm"]
    );
    assert_eq!(c.routes[0].allow.as_ref().unwrap().roles, ["crm-admin"]);
    // The filter's JSON round-trips, and never prints the secret in Debug.
    let plan = FilterConfig::from_config(&c);
    let json = serde_json::to_string(&plan).unwrap();
    assert_eq!(FilterConfig::from_json(json.as_bytes()).unwrap(), plan);
    assert!(!format!("{plan:?}").contains("s3cret"));
}

#[test]
fn every_mistake_is_reported_with_its_field_path() {
    let yaml = r#"
http: { addr: ":8080" }
egress:
  callers:
    mtls: { server_cert: a.crt, server_key: a.key }
    jwt:
      - issuer: gw
        algorithms: [HS256, none, RS256]
        secret: x
        public_key: k.pem
        from_headers: [{name: "bad header"}]
        roles_claim: "a..b"
        clock_skew: 1h
      - issuer: gw
        algorithms: [RS256]
        jwks_url: http://idp/jwks
        jwks_ca: ""
  targets:
    a:
      url: http://127.0.0.1:9
      allow: {}
    b:
      url: http://127.0.0.1:9
      allow: { spiffe_ids: ["spiffe://jia.app/billing*", "https://x"] }
  routes:
    - path_prefix: /egress/a
      target: a
      allow: { subjects: [""] }
"#;
    let e = errors(yaml);
    let j = "egress.callers.jwt[0]";
    for (path, needle) in [
        ("egress.callers.mtls.client_ca", "is required"),
        (
            &format!("{j}.algorithms[1]") as &str,
            "none is never accepted",
        ),
        (&format!("{j}.algorithms"), "mixes HS*"),
        (j, "exactly one of secret, public_key"),
        (&format!("{j}.secret"), "HS* algorithms only"),
        (
            &format!("{j}.from_headers[0].name"),
            "not a valid header name",
        ),
        (&format!("{j}.roles_claim"), "dotted path"),
        (&format!("{j}.clock_skew"), "at most 5m"),
        ("egress.callers.jwt[1].issuer", "configured twice"),
        ("egress.callers.jwt[1].jwks_url", "must be an https URL"),
        ("egress.callers.jwt[1].jwks_ca", "must be a file path"),
        ("egress.targets.a.allow", "admits no caller"),
        ("egress.targets.b.allow.spiffe_ids[0]", "not a SPIFFE ID"),
        ("egress.targets.b.allow.spiffe_ids[1]", "not a SPIFFE ID"),
        ("egress.routes[0].allow.subjects[0]", "must not be empty"),
    ] {
        assert!(has(&e, path, needle), "missing {path}: {needle} in\n{e}");
    }
    assert!(e.iter().all(|x| x.location.is_some()), "{e}");
}

#[test]
fn allow_needs_the_callers_section_and_the_matching_kind_of_identity() {
    let e = errors(
        r#"
http: { addr: ":8080" }
egress:
  targets:
    a: { url: "http://127.0.0.1:9", allow: { roles: [crm] } }
  routes: [{ path_prefix: /egress/a, target: a }]
"#,
    );
    assert!(
        has(&e, "egress.targets.a.allow", "needs egress.callers"),
        "{e}"
    );
    let e = errors(
        r#"
http: { addr: ":8080" }
egress:
  callers:
    jwt: [{ issuer: gw, algorithms: [HS256], secret: x }]
  targets:
    a: { url: "http://127.0.0.1:9", allow: { spiffe_ids: ["spiffe://td/a"] } }
  routes: [{ path_prefix: /egress/a, target: a }]
"#,
    );
    assert!(
        has(
            &e,
            "egress.targets.a.allow.spiffe_ids",
            "needs egress.callers.mtls"
        ),
        "{e}"
    );
    let e = errors(
        r#"
http: { addr: ":8080" }
egress:
  callers: {}
  targets: { a: { url: "http://127.0.0.1:9" } }
  routes: [{ path_prefix: /egress/a, target: a }]
"#,
    );
    assert!(
        has(&e, "egress.callers", "no way to identify callers"),
        "{e}"
    );
}

fn forward(e: &Engine, path: &str) -> Forward {
    match e.decide("GET", path) {
        Decision::Forward(f) => f,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_engine_refuses_callers_that_the_route_does_not_admit_and_keeps_health_open() {
    let c = load_str(ISSUE_EXAMPLE, &env).unwrap();
    let e = Engine::new(&FilterConfig::from_config(&c)).unwrap();
    assert!(e.has_callers());
    let mut cache = TokenCache::default();
    let none = |_: &str| None;
    let workload = CallerInput {
        peer_spiffe_id: Some("spiffe://jia.app/billing/invoices"),
        header: &none,
    };
    // The target admits the workload; /egress/crm also needs the crm-admin role.
    let sf = forward(&e, "/egress/sf/x");
    assert!(e
        .authorize(&sf, &workload, 0, &mut cache, &Default::default())
        .is_ok());
    let crm = forward(&e, "/egress/crm/x");
    let r = e
        .authorize(&crm, &workload, 0, &mut cache, &Default::default())
        .unwrap_err();
    assert_eq!((r.reply.status, r.reply.code), (403, "forbidden"));
    let anon = CallerInput {
        peer_spiffe_id: None,
        header: &none,
    };
    assert_eq!(
        e.authorize(&sf, &anon, 0, &mut cache, &Default::default())
            .unwrap_err()
            .reply
            .status,
        401
    );

    // Without egress.callers every request passes, anonymous, as before.
    let plain = load_str(
        "http: { addr: \":8080\" }\negress:\n  targets: { a: { url: \"http://127.0.0.1:9\" } }\n  routes: [{ path_prefix: /egress/a, target: a }]\n",
        &env,
    )
    .unwrap();
    let e = Engine::new(&FilterConfig::from_config(&plain)).unwrap();
    let ok = e
        .authorize(
            &forward(&e, "/egress/a"),
            &anon,
            0,
            &mut cache,
            &Default::default(),
        )
        .unwrap();
    assert!(ok.caller.is_anonymous());
}

#[test]
fn an_allow_block_without_callers_in_the_filter_json_is_refused_at_load() {
    let c = load_str(ISSUE_EXAMPLE, &env).unwrap();
    let mut plan = FilterConfig::from_config(&c);
    plan.callers = None;
    assert!(Engine::new(&plan).is_err());
}
