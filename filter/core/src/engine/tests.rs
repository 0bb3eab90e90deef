//! The engine against the spec's seed config (section 1) and its routing table (section 5).

#![allow(clippy::indexing_slicing)]

use super::*;
use crate::config::load::load_str;
use crate::plan::FilterConfig;

const SEED: &str = include_str!("../../../../examples/config.yaml");

fn seed_env(name: &str) -> Option<String> {
    let v = match name {
        "REDIS_PASSWORD" => "redis-pw",
        "SALESFORCE_CLIENT_ID" => "sf-client",
        "SALESFORCE_CLIENT_SECRET" => "sf-secret",
        "NOTIFICATION_API_KEY" => "notify-key-123",
        "ANALYTICS_BEARER_TOKEN" => "analytics-token-456",
        "ERP_USERNAME" => "erp-user",
        "ERP_PASSWORD" => "erp-pass",
        _ => return None,
    };
    Some(v.to_string())
}

fn seed_engine() -> Engine {
    let config = load_str(SEED, &seed_env).unwrap();
    Engine::new(&FilterConfig::from_config(&config)).unwrap()
}

fn forward(e: &Engine, method: &str, path: &str) -> Forward {
    match e.decide(method, path) {
        Decision::Forward(f) => f,
        other => panic!("{method} {path}: expected a forward, got {other:?}"),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn every_row_of_the_spec_routing_table_maps_to_its_target_and_url() {
    let e = seed_engine();
    let rows = [
        (
            "/egress/crm/Contact",
            "salesforce",
            "https://mycompany.salesforce.com/services/data/v58.0/sobjects/Contact",
        ),
        (
            "/egress/crm/Contact/123",
            "salesforce",
            "https://mycompany.salesforce.com/services/data/v58.0/sobjects/Contact/123",
        ),
        (
            "/egress/notify/email",
            "notification",
            "https://notify.internal.svc/email",
        ),
        (
            "/egress/audit/events",
            "audit",
            "https://audit.secure.svc/events",
        ),
        (
            "/egress/analytics/stats",
            "analytics",
            "https://analytics.example.com/api/v2/stats",
        ),
        (
            "/egress/erp/customers",
            "legacy-erp",
            "https://erp.internal:8443/api/v1/customers",
        ),
    ];
    for (path, target, url) in rows {
        let f = forward(&e, "POST", path);
        assert_eq!(e.target(f.target).unwrap().name, target, "{path}");
        assert_eq!(f.target_url, url, "{path}");
        assert_eq!(f.original_path, path);
    }
}

#[test]
fn unknown_paths_get_404_json_and_near_misses_do_not_match() {
    let e = seed_engine();
    for path in ["/egress/crmx", "/egress", "/other", "/egress/unknown/x"] {
        match e.decide("GET", path) {
            Decision::Respond(r) => {
                assert_eq!(r.status, 404, "{path}");
                assert_eq!(r.code, "route_not_found");
                let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                assert_eq!(body["error"], "route_not_found");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn disallowed_method_gets_405_with_allow_header_and_json_body() {
    let e = seed_engine();
    let Decision::Respond(r) = e.decide("GET", "/egress/notify/email") else {
        panic!("expected a local reply");
    };
    assert_eq!(r.status, 405);
    assert!(r.headers.contains(&("allow", "POST".to_string())));
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    assert_eq!(body["allowed"], serde_json::json!(["POST"]));
    // The ERP route lists no methods: all are allowed.
    assert!(matches!(
        e.decide("DELETE", "/egress/erp/x"),
        Decision::Forward(_)
    ));
}

#[test]
fn traversal_attempts_get_400_before_matching() {
    let e = seed_engine();
    for path in [
        "/egress/crm/../notify/email",
        "/egress/crm/%2e%2e/%2e%2e/x",
        "/egress/crm/Contact%2F..%2F..%2Fadmin",
        "/egress/crm//Contact",
    ] {
        let Decision::Respond(r) = e.decide("GET", path) else {
            panic!("{path} was not refused");
        };
        assert_eq!((r.status, r.code), (400, "invalid_path"), "{path}");
    }
}

#[test]
fn query_string_is_kept_on_the_path_but_not_in_the_logged_url() {
    let e = seed_engine();
    let f = forward(
        &e,
        "GET",
        "/egress/analytics/users/stats?from=2024-01-01&api_key=x",
    );
    assert_eq!(f.path, "/api/v2/users/stats?from=2024-01-01&api_key=x");
    assert_eq!(
        f.target_url,
        "https://analytics.example.com/api/v2/users/stats"
    );
}

#[test]
fn callers_credentials_and_internal_headers_are_replaced_by_the_targets() {
    let e = seed_engine();
    let f = forward(&e, "POST", "/egress/notify/email");
    let mut h = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), "/egress/notify/email".to_string()),
        (":authority".to_string(), "egress:8080".to_string()),
        ("Authorization".to_string(), "Bearer caller".to_string()),
        ("x-api-key".to_string(), "caller-key".to_string()),
        ("X-Egress-Target".to_string(), "audit".to_string()),
        ("proxy-authorization".to_string(), "Basic eA==".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    assert_eq!(e.edit_headers(&f, &mut h, None), Edited::Complete);
    assert_eq!(header(&h, ":path"), Some("/email"));
    assert_eq!(header(&h, ":authority"), Some("notify.internal.svc"));
    assert_eq!(header(&h, "x-egress-target"), Some("notification"));
    assert_eq!(header(&h, "x-api-key"), Some("notify-key-123"));
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    assert_eq!(header(&h, ":method"), Some("POST"));
    for gone in [
        "Authorization",
        "authorization",
        "proxy-authorization",
        "X-Egress-Target",
    ] {
        assert_eq!(header(&h, gone), None, "{gone}");
    }
    assert_eq!(h.iter().filter(|(n, _)| n == "x-api-key").count(), 1);
}

#[test]
fn bearer_basic_and_mtls_targets_get_their_credentials() {
    let e = seed_engine();
    let mut h = vec![("authorization".to_string(), "Bearer caller".to_string())];
    let f = forward(&e, "GET", "/egress/analytics/users/stats");
    assert_eq!(e.edit_headers(&f, &mut h, None), Edited::Complete);
    assert_eq!(
        header(&h, "authorization"),
        Some("Bearer analytics-token-456")
    );

    let mut h: Vec<(String, String)> = vec![];
    let f = forward(&e, "GET", "/egress/erp/customers/123");
    assert_eq!(e.edit_headers(&f, &mut h, None), Edited::Complete);
    assert_eq!(
        header(&h, "authorization"),
        Some("Basic ZXJwLXVzZXI6ZXJwLXBhc3M=")
    );
    assert_eq!(header(&h, ":authority"), Some("erp.internal:8443"));
    assert_eq!(header(&h, ":path"), Some("/api/v1/customers/123"));

    let mut h = vec![("authorization".to_string(), "Bearer caller".to_string())];
    let f = forward(&e, "POST", "/egress/audit/events");
    assert_eq!(e.edit_headers(&f, &mut h, None), Edited::Complete);
    assert_eq!(header(&h, "authorization"), None);
}

#[test]
fn oauth2_target_without_token_is_refused_and_with_token_gets_bearer() {
    let e = seed_engine();
    let f = forward(&e, "GET", "/egress/crm/Contact/1");
    let mut h: Vec<(String, String)> = vec![];
    assert_eq!(e.edit_headers(&f, &mut h, None), Edited::NeedsToken);
    assert_eq!(header(&h, "x-egress-target"), Some("salesforce"));
    assert_eq!(header(&h, "authorization"), None);
    let mut h: Vec<(String, String)> = vec![];
    let r = e.credentials_unavailable(f.target);
    assert_eq!(r.status, 503);
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"], "credentials_unavailable");
    assert_eq!(body["target"], "salesforce");
    assert_eq!(e.edit_headers(&f, &mut h, Some("tok")), Edited::Complete);
    assert_eq!(header(&h, "authorization"), Some("Bearer tok"));
}

#[test]
fn endpoints_health_ready_and_metrics_are_recognized() {
    let e = seed_engine();
    let Decision::Respond(r) = e.decide("GET", "/health") else {
        panic!("health not answered")
    };
    assert_eq!(r.status, 200);
    assert_eq!(r.body, r#"{"status":"ok"}"#);
    assert_eq!(e.decide("GET", "/ready"), Decision::Ready);
    assert_eq!(e.decide("GET", "/metrics"), Decision::Pass);
}

#[test]
fn a_passthrough_path_spelled_with_escapes_is_passed_under_its_canonical_spelling() {
    let e = seed_engine();
    assert_eq!(e.decide("GET", "/%6detrics"), Decision::Pass);
    assert_eq!(
        e.passthrough_path("/%6detrics").as_deref(),
        Some("/metrics")
    );
    assert_eq!(
        e.passthrough_path("/%6Detrics?x=%41").as_deref(),
        Some("/metrics?x=%41")
    );
    assert_eq!(e.passthrough_path("/metrics"), None);
    assert_eq!(e.passthrough_path("/metrics?x=1"), None);
}

#[test]
fn local_replies_never_contain_configured_secrets() {
    let e = seed_engine();
    let secrets = [
        "notify-key-123",
        "analytics-token-456",
        "erp-pass",
        "sf-secret",
        "sf-client",
        "redis-pw",
    ];
    // Every kind of local reply, each probe must be one (a forward would be a broken probe).
    let probes = [
        ("GET", "/egress/notify/email", 405),
        ("TRACE", "/egress/erp/customers", 405),
        ("GET", "/nope", 404),
        ("GET", "/egress/crm/%2e%2e", 400),
        ("GET", "/egress/analytics/%c0%ae", 400),
        ("GET", "/egress/analytics/x?notify-key-123\n", 400),
        ("GET", "/health", 200),
    ];
    for (m, p, status) in probes {
        let Decision::Respond(r) = e.decide(m, p) else {
            panic!("{m} {p}: expected a local reply");
        };
        assert_eq!(r.status, status, "{m} {p}");
        for secret in secrets {
            assert!(!r.body.contains(secret), "{m} {p}: {}", r.body);
            assert!(r.headers.iter().all(|(_, v)| !v.contains(secret)));
        }
    }
    for target in 0..e.targets().len() {
        let r = e.credentials_unavailable(target);
        assert_eq!(r.status, 503);
        for secret in secrets {
            assert!(!r.body.contains(secret));
        }
    }
}

#[test]
fn engine_refuses_inconsistent_filter_configs() {
    let config = load_str(SEED, &seed_env).unwrap();
    let mut fc = FilterConfig::from_config(&config);
    fc.routes[0].target = "nope".into();
    assert!(matches!(
        Engine::new(&fc),
        Err(EngineError::UnknownTarget { index: 0, .. })
    ));
    let mut fc = FilterConfig::from_config(&config);
    fc.routes[1].path_prefix = fc.routes[0].path_prefix.clone();
    assert!(matches!(
        Engine::new(&fc),
        Err(EngineError::DuplicatePrefix { index: 1, .. })
    ));
    let mut fc = FilterConfig::from_config(&config);
    fc.version = 99;
    assert!(matches!(
        Engine::new(&fc),
        Err(EngineError::Version { found: 99 })
    ));
}

#[test]
fn disabled_egress_answers_503_on_egress_paths_but_health_still_works() {
    let config = load_str(
        &SEED.replace("enabled: true\n\n  # Token", "enabled: false\n\n  # Token"),
        &seed_env,
    )
    .unwrap();
    assert!(!config.enabled);
    let e = Engine::new(&FilterConfig::from_config(&config)).unwrap();
    let Decision::Respond(r) = e.decide("POST", "/egress/notify/email") else {
        panic!()
    };
    assert_eq!((r.status, r.code), (503, "egress_disabled"));
    assert!(matches!(
        e.decide("GET", "/health"),
        Decision::Respond(LocalReply { status: 200, .. })
    ));
}
