//! What `egressctl compile` renders for the upstreams: TLS verification and client
//! certificates, retries that never replay a request that may have been sent, and cert paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

#[test]
fn clusters_verify_tls_skip_only_when_asked_and_present_client_certs_for_mtls() {
    let ctl = Ctl::seed();
    let (_, b) = ctl.compile(&[]);
    // analytics: https URL, no tls block: verified against the system bundle, SNI set.
    let a = &cluster(&b, "egress_target_analytics")["transport_socket"]["typed_config"];
    assert_eq!(a["sni"], "analytics.example.com");
    let v = &a["common_tls_context"]["validation_context"];
    assert!(v["trusted_ca"]["filename"]
        .as_str()
        .unwrap()
        .ends_with("system-ca.pem"));
    assert_eq!(
        v["match_typed_subject_alt_names"][0]["matcher"]["exact"],
        "analytics.example.com"
    );
    assert_eq!(cluster(&b, "egress_target_analytics")["type"], "STRICT_DNS");
    // legacy-erp: insecure_skip_verify -> no validation context at all.
    let erp = &cluster(&b, "egress_target_legacy-erp");
    assert!(
        erp["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
            .is_null()
    );
    assert_eq!(
        erp["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["port_value"],
        8443
    );
    // audit: mTLS client cert and its own CA.
    let audit = &cluster(&b, "egress_target_audit")["transport_socket"]["typed_config"]
        ["common_tls_context"];
    assert_eq!(
        audit["tls_certificates"][0]["certificate_chain"]["filename"],
        "/etc/certs/audit-client.crt"
    );
    assert_eq!(
        audit["tls_certificates"][0]["private_key"]["filename"],
        "/etc/certs/audit-client.key"
    );
    assert_eq!(
        audit["validation_context"]["trusted_ca"]["filename"],
        "/etc/certs/audit-ca.crt"
    );
    // salesforce: a token-endpoint cluster for the filter's callouts.
    let token = &cluster(&b, "egress_token_salesforce");
    assert_eq!(
        token["transport_socket"]["typed_config"]["sni"],
        "login.salesforce.com"
    );
}

/// The route Envoy picks for a `method` request to `target` (the routing header set).
fn route_for<'a>(matcher: &'a Value, target: &str, method: &str) -> Option<&'a Value> {
    route_picked(
        matcher,
        &[
            (":path", "/services/x"),
            ("x-egress-target", target),
            (":method", method),
        ],
    )
}

/// Retry conditions under which the request cannot have reached the upstream.
const SAFE_RETRY_ON: [&str; 4] = [
    "connect-failure",
    "refused-stream",
    "reset-before-request",
    "http3-post-connect-failure",
];

/// What Envoy does with a `method` request to target `target` whose upstream read it and then
/// reset the connection (or answered 503): how many times it sends it again.
fn replays_after_reset(matcher: &Value, target: &str, method: &str) -> u64 {
    let Some(route) = route_for(matcher, target, method) else {
        return 0;
    };
    let policy = &route["route"]["retry_policy"];
    let on = policy["retry_on"].as_str().unwrap_or("");
    let unsafe_on = on
        .split(',')
        .any(|c| !c.is_empty() && !SAFE_RETRY_ON.contains(&c.trim()));
    let method_allowed = policy["retriable_request_headers"]
        .as_array()
        .is_none_or(|hs| {
            hs.iter().any(|h| {
                h["name"] == ":method" && h["string_match"]["exact"].as_str() == Some(method)
            })
        });
    if unsafe_on && method_allowed {
        policy["num_retries"].as_u64().unwrap_or(1)
    } else {
        0
    }
}

/// Whether a request that never reached the upstream (connection refused) is retried.
fn retried_on_connect_failure(matcher: &Value, target: &str, method: &str) -> bool {
    route_for(matcher, target, method).is_some_and(|r| {
        r["route"]["retry_policy"]["retry_on"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .any(|c| c == "connect-failure")
    })
}

#[test]
fn retries_never_replay_post_or_patch_after_the_request_may_have_been_sent() {
    let ctl = Ctl::seed();
    // The wasm engine's per-target routes (the auto engine's leaves: ctl/tests/auto_engine.rs
    // and the e2e retries test, run on both engines).
    let (_, b) = ctl.compile(&["--engine", "wasm"]);
    let rs = vhost_matcher(&b);
    for target in ["salesforce", "notification", "analytics"] {
        // Not idempotent (RFC 9110 9.2.2): never sent again once the upstream may have it.
        for method in ["POST", "PATCH", "LOCK", "CONNECT"] {
            assert_eq!(
                replays_after_reset(rs, target, method),
                0,
                "{target}: {method} replayed after a reset"
            );
        }
        // Idempotent: retried `retry_count` (3) times.
        for method in ["GET", "HEAD", "PUT", "DELETE"] {
            assert_eq!(
                replays_after_reset(rs, target, method),
                3,
                "{target}: {method} after a reset"
            );
        }
        // Every method is retried when the request cannot have been sent.
        for method in ["POST", "PATCH", "GET"] {
            assert!(
                retried_on_connect_failure(rs, target, method),
                "{target}: {method} not retried on connect failure"
            );
        }
    }
    // The back-off is `retry_delay`, the route timeout the target's `timeout`.
    let get = route_for(rs, "salesforce", "GET").unwrap();
    assert_eq!(
        get["route"]["retry_policy"]["retry_back_off"]["base_interval"],
        "1s"
    );
    assert_eq!(get["route"]["timeout"], "15s");
    assert!(
        !rs.to_string().contains("safe_regex"),
        "no regex per request"
    );
}

#[test]
fn retry_count_zero_renders_no_replay_for_any_method() {
    let cfg = SEED.replace("    retry_count: 3", "    retry_count: 0");
    assert_ne!(cfg, SEED, "the seed's retry_count was not found");
    let ctl = Ctl::new(&cfg);
    let (_, b) = ctl.compile(&["--engine", "wasm"]);
    let rs = vhost_matcher(&b);
    for method in ["GET", "PUT", "POST"] {
        assert_eq!(replays_after_reset(rs, "analytics", method), 0, "{method}");
    }
}

#[test]
fn relative_cert_paths_resolve_against_the_config_folder() {
    let cfg = "http:\n  addr: \"127.0.0.1:18080\"\negress:\n  targets:\n    t:\n      url: https://x.example.com\n      auth: {type: mtls}\n      tls: {client_cert: certs/c.crt, client_key: certs/c.key, ca_cert: certs/ca.crt}\n  routes:\n    - {path_prefix: /egress/t, target: t}\n";
    let ctl = Ctl::new(cfg);
    let (_, b) = ctl.compile(&[]);
    let ctx =
        &cluster(&b, "egress_target_t")["transport_socket"]["typed_config"]["common_tls_context"];
    let ca = ctx["validation_context"]["trusted_ca"]["filename"]
        .as_str()
        .unwrap();
    assert!(
        Path::new(ca).is_absolute() && ca.ends_with("certs/ca.crt"),
        "{ca}"
    );
}

/// Regression: the wasm engine's routes were a linear list (three per target, the last
/// target's tested after every other's), so each target added to every request's cost.
#[test]
fn wasm_engine_picks_routes_through_a_matcher_tree() {
    let ctl = Ctl::seed();
    let (_, b) = ctl.compile(&["--engine", "wasm"]);
    let tree = vhost_matcher(&b);
    let name = |headers: &[(&str, &str)]| {
        route_picked(tree, headers)
            .and_then(|r| r["name"].as_str())
            .unwrap_or("none")
            .to_string()
    };
    assert_eq!(name(&[(":path", "/metrics")]), "metrics");
    assert_eq!(name(&[(":path", "/metrics?format=x")]), "metrics");
    assert_eq!(name(&[(":path", "/metricsx")]), "no_target");
    assert_eq!(name(&[(":path", "/egress/crm/x")]), "no_target");
    assert_eq!(
        name(&[
            (":path", "/x"),
            ("x-egress-target", "salesforce"),
            (":method", "PATCH")
        ]),
        "salesforce_patch"
    );
    assert_eq!(
        name(&[
            (":path", "/metrics"),
            ("x-egress-target", "nobody"),
            (":method", "GET")
        ]),
        "metrics"
    );
    let no_target = route_picked(tree, &[(":path", "/")]).unwrap();
    assert_eq!(no_target["direct_response"]["status"], 404);
}
