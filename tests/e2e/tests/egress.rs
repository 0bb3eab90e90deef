//! The egress proxy end to end: `egressctl compile` of the demo config (the spec's seed config
//! pointed at local stand-ins), real Envoy 1.40 running the built `egress_filter.wasm`, real
//! TLS and mTLS upstreams. Each test starts its own stand-ins and Envoy on free loopback ports.
//! TLS verification, a refused filter config and `egressctl up` are in `egress_tls.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod demo_common;

use demo_common::*;
use egress_e2e::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn every_row_of_the_spec_routing_table_lands_on_its_target_with_the_rewritten_path(engine: Engine) {
    let p = Proxy::start(engine).unwrap();
    // (incoming path, upstream service, path the upstream sees); CRM is OAuth2, tested below.
    let rows = [
        ("POST", "/egress/notify/email", "notification", "/email"),
        ("POST", "/egress/audit/events", "audit", "/events"),
        (
            "GET",
            "/egress/analytics/stats",
            "analytics",
            "/api/v2/stats",
        ),
        (
            "GET",
            "/egress/erp/customers",
            "legacy-erp",
            "/api/v1/customers",
        ),
        (
            "GET",
            "/egress/erp/customers/123",
            "legacy-erp",
            "/api/v1/customers/123",
        ),
    ];
    for (method, path, service, upstream_path) in rows {
        let e = echo(&p.send(method, path));
        assert_eq!(e["service"], service, "{path}");
        assert_eq!(e["path"], upstream_path, "{path}");
        assert_eq!(e["method"], method, "{path}");
    }
}

fn query_string_is_kept_and_authority_is_the_targets(engine: Engine) {
    let p = Proxy::start(engine).unwrap();
    let e = echo(&p.send(
        "GET",
        "/egress/analytics/users/stats?from=2025-01-01&limit=10",
    ));
    assert_eq!(e["path"], "/api/v2/users/stats");
    assert_eq!(e["query"], "from=2025-01-01&limit=10");
    let port = p
        .env
        .iter()
        .find(|(k, _)| k == "DEMO_ANALYTICS_PORT")
        .unwrap()
        .1
        .clone();
    assert_eq!(e["headers"]["host"], format!("127.0.0.1:{port}"));
}

fn section_3_credentials_arrive_api_key_bearer_basic_and_mtls(engine: Engine) {
    let p = Proxy::start(engine).unwrap();
    let notify = echo(
        &Request::post(&p.url("/egress/notify/email"))
            .header("content-type", "application/json")
            .body(r#"{"to":"user@example.com","subject":"Welcome!"}"#)
            .send()
            .unwrap(),
    );
    assert_eq!(notify["headers"]["x-api-key"], "SECRET-notify-key");
    assert_eq!(
        notify["body"],
        r#"{"to":"user@example.com","subject":"Welcome!"}"#
    );
    assert_eq!(notify["headers"]["content-type"], "application/json");

    let analytics = echo(&p.send("GET", "/egress/analytics/users/stats"));
    assert_eq!(
        analytics["headers"]["authorization"],
        "Bearer SECRET-analytics-token"
    );

    let erp = echo(&p.send("GET", "/egress/erp/customers/123"));
    // base64("erp-user:SECRET-erp-password")
    assert_eq!(
        erp["headers"]["authorization"],
        "Basic ZXJwLXVzZXI6U0VDUkVULWVycC1wYXNzd29yZA=="
    );

    let audit = echo(&p.send("POST", "/egress/audit/events"));
    assert_eq!(audit["client_cert"], CLIENT_CERT_CN);
    assert!(audit["headers"].get("authorization").is_none());
}

fn callers_cannot_override_or_smuggle_credentials_or_routing_headers(engine: Engine) {
    let p = Proxy::start(engine).unwrap();
    let r = Request::post(&p.url("/egress/notify/email"))
        .header("authorization", "Bearer caller-token")
        .header("proxy-authorization", "Basic Y2FsbGVy")
        .header("x-api-key", "caller-key")
        .header("x-egress-target", "audit")
        .header("x-custom", "kept")
        .send()
        .unwrap();
    let e = echo(&r);
    assert_eq!(
        e["service"], "notification",
        "x-egress-target from the caller must not reroute"
    );
    let h = e["headers"].as_object().unwrap();
    assert_eq!(h["x-api-key"], "SECRET-notify-key");
    assert!(h.get("authorization").is_none());
    assert!(h.get("proxy-authorization").is_none());
    assert_eq!(h["x-custom"], "kept");
    for name in h.keys() {
        assert!(
            !name.starts_with("x-egress-"),
            "internal header {name} reached the target"
        );
        assert!(
            !name.starts_with("x-envoy-"),
            "Envoy header {name} reached the target"
        );
    }
}

fn unknown_paths_get_404_json_and_wrong_methods_405_with_allow(engine: Engine) {
    let p = Proxy::start(engine).unwrap();
    for path in ["/egress/unknown/x", "/egress/crmx", "/", "/egress"] {
        let r = p.send("GET", path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json().unwrap()["error"], "route_not_found", "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let r = p.send("GET", "/egress/notify/email");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.json().unwrap()["error"], "method_not_allowed");
    let r = p.send("DELETE", "/egress/analytics/x");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
}

fn traversal_and_encoded_separators_are_refused_with_400_before_reaching_any_target(
    engine: Engine,
) {
    let p = Proxy::start(engine).unwrap();
    for path in [
        "/egress/erp/../notify/email",
        "/egress/erp/%2e%2e/%2e%2e/admin",
        "/egress/erp/.%2E/x",
        "/egress/erp/customers%2F..%2F..%2Fadmin",
        "/egress/erp/customers%5c..%5cadmin",
        "/egress/erp//customers",
        "/egress/erp/./customers",
    ] {
        let r = p.send("GET", path);
        assert_eq!(r.status, 400, "{path} got {} {}", r.status, r.body.as_str());
        assert_eq!(r.json().unwrap()["error"], "invalid_path", "{path}");
    }
    // Nothing reached the ERP.
    let stat = p
        .envoy
        .stat("cluster.egress_target_legacy-erp.upstream_rq_total")
        .unwrap();
    assert_eq!(stat.unwrap_or(0), 0);
}

fn crm_requests_carry_a_token_the_filter_fetched_and_ready_turns_200(engine: Engine) {
    let p = Proxy::start(engine).unwrap();
    // Section 3.1: create answers the CRM's own 201.
    let created = p.send("POST", "/egress/crm/Contact");
    assert_eq!(created.status, 201, "{}", created.body);
    let e = echo(&created);
    assert_eq!(e["service"], "salesforce");
    assert_eq!(e["path"], "/services/data/v58.0/sobjects/Contact");
    // The stand-in token endpoint issues `<name>-token-<n>`: one fetch for both requests.
    assert_eq!(
        e["headers"]["authorization"],
        "Bearer salesforce-login-token-1"
    );
    let e = echo(&p.send("GET", "/egress/crm/Contact/003xx000004TmiQAAS"));
    assert_eq!(
        e["headers"]["authorization"],
        "Bearer salesforce-login-token-1"
    );
    assert_eq!(p.send("GET", "/ready").status, 200);
    // Section 3.1: update and delete reach the same object with the same token.
    for method in ["PATCH", "DELETE"] {
        let e = echo(&p.send(method, "/egress/crm/Contact/003xx000004TmiQAAS"));
        assert_eq!(e["method"], method);
        assert_eq!(
            e["path"],
            "/services/data/v58.0/sobjects/Contact/003xx000004TmiQAAS"
        );
        assert_eq!(
            e["headers"]["authorization"],
            "Bearer salesforce-login-token-1"
        );
    }
}

fn oauth2_target_whose_token_endpoint_is_down_gets_503_credentials_unavailable(engine: Engine) {
    // The token endpoint is down before Envoy starts: the filter's first fetch (made at start)
    // cannot succeed before the test looks.
    let p = Proxy::start_with(
        engine,
        Setup {
            token_endpoint_down: true,
            ..Setup::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    let r = p.send("POST", "/egress/crm/Contact");
    assert_eq!(r.status, 503);
    // At most the wait bound (token timeout + margins) for the fetch to fail.
    assert!(
        started.elapsed() < scaled(Duration::from_secs(15)),
        "waited {:?}",
        started.elapsed()
    );
    let body = r.json().unwrap();
    assert_eq!(body["error"], "credentials_unavailable");
    assert_eq!(body["target"], "salesforce");
    assert_no_secret(&r.body);
    let ready = p.send("GET", "/ready");
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.json().unwrap()["targets"],
        serde_json::json!(["salesforce"])
    );
    // While fetching keeps failing, the next request is refused at once.
    let started = Instant::now();
    assert_eq!(p.send("GET", "/egress/crm/Contact/1").status, 503);
    // Far below any wait for a fetch, with room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "fail-fast took {:?}",
        started.elapsed()
    );
}

fn health_is_200_json_and_metrics_count_requests_per_target_by_status_class(engine: Engine) {
    let p = Proxy::start(engine).unwrap();
    let h = p.send("GET", "/health");
    assert_eq!(h.status, 200);
    assert_eq!(h.json().unwrap()["status"], "ok");
    for _ in 0..3 {
        echo(&p.send("POST", "/egress/notify/email"));
    }
    echo(&p.send("GET", "/egress/erp/x"));
    let m = p.send("GET", "/metrics");
    assert_eq!(m.status, 200);
    let text = m.body.clone();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("envoy_cluster_upstream_rq_xx{")
                && l.contains("envoy_cluster_name=\"egress_target_notification\"")
                && l.contains("envoy_response_code_class=\"2\"")
        })
        .unwrap_or_else(|| panic!("no per-target 2xx count in /metrics"));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(text.contains("envoy_cluster_name=\"egress_target_legacy-erp\""));
    assert_no_secret(&text);
}

fn request_log_lines_follow_the_spec_format_and_hold_no_secret_or_query(engine: Engine) {
    let p = Proxy::start(engine).unwrap();
    echo(&p.send("POST", "/egress/notify/email?token=q-secret"));
    assert_eq!(p.send("GET", "/egress/nope").status, 404);
    let lines = p.request_log(2);
    assert!(lines.len() >= 2, "{lines:?}");
    let forwarded: Value = serde_json::from_str(&lines[0]).unwrap();
    let keys: Vec<&str> = forwarded
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // serde_json's Map is sorted; check the order on the raw line instead.
    let order = [
        "\"level\"",
        "\"ts\"",
        "\"msg\"",
        "\"target\"",
        "\"method\"",
        "\"path\"",
        "\"target_url\"",
        "\"duration\"",
        "\"status\"",
    ];
    let positions: Vec<usize> = order.iter().map(|k| lines[0].find(k).unwrap()).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "key order: {}",
        lines[0]
    );
    assert_eq!(keys.len(), 9);
    assert_eq!(forwarded["level"], "info");
    assert_eq!(forwarded["msg"], "Egress request");
    assert_eq!(forwarded["target"], "notification");
    assert_eq!(forwarded["method"], "POST");
    assert_eq!(forwarded["path"], "/egress/notify/email");
    let port = p
        .env
        .iter()
        .find(|(k, _)| k == "DEMO_NOTIFY_PORT")
        .unwrap()
        .1
        .clone();
    assert_eq!(
        forwarded["target_url"],
        format!("https://127.0.0.1:{port}/email")
    );
    assert_eq!(forwarded["status"], 200);
    assert!(forwarded["duration"].as_str().unwrap().ends_with("ms"));
    assert!(forwarded["ts"].as_str().unwrap().ends_with('Z'));
    let refused: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(refused["status"], 404);
    assert_eq!(refused["target"], "-");
    let all = lines.join("\n");
    assert_no_secret(&all);
    assert!(!all.contains("q-secret"), "query strings are not logged");
}

engine_tests!(
    every_row_of_the_spec_routing_table_lands_on_its_target_with_the_rewritten_path,
    query_string_is_kept_and_authority_is_the_targets,
    section_3_credentials_arrive_api_key_bearer_basic_and_mtls,
    callers_cannot_override_or_smuggle_credentials_or_routing_headers,
    unknown_paths_get_404_json_and_wrong_methods_405_with_allow,
    traversal_and_encoded_separators_are_refused_with_400_before_reaching_any_target,
    crm_requests_carry_a_token_the_filter_fetched_and_ready_turns_200,
    oauth2_target_whose_token_endpoint_is_down_gets_503_credentials_unavailable,
    health_is_200_json_and_metrics_count_requests_per_target_by_status_class,
    request_log_lines_follow_the_spec_format_and_hold_no_secret_or_query,
);
