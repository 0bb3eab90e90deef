//! The built egress filter (`egress_filter.wasm`) driven through the proxy-wasm ABI, the way
//! Envoy drives it: config load, the spec's routing table, local replies, the access log
//! fields, workers. Header hygiene is in egress_headers.rs, hostile input in egress_hostile.rs.
//! The plugin configuration is made the real way: `examples/config.yaml` (the spec's seed
//! config) loaded by `egress-core` and compiled to the filter's JSON.
//!
//! Build the module first (the test command does):
//! `cargo build -p egress-filter --target wasm32-wasip1 --release`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod egress_common;

use egress_common::*;
use proxy_wasm_harness::{LogLevel, Stream};
use std::time::Duration;

// ---- config load --------------------------------------------------------------------------

#[test]
fn seed_config_starts_and_logs_configured_without_secrets() {
    let (_host, worker) = seed_worker();
    assert!(worker.logged(LogLevel::Info, "egress filter configured"));
    assert!(!worker.logged(LogLevel::Warn, ""), "{:?}", worker.logs());
    assert_logs_clean(&worker);
}

#[test]
fn invalid_json_config_is_rejected_with_reason_not_trap() {
    let reason = rejection_reason(b"{not json");
    assert!(reason.contains("invalid filter config"), "{reason}");
}

#[test]
fn empty_config_is_rejected_with_reason_not_trap() {
    let reason = rejection_reason(b"");
    assert!(reason.contains("empty"), "{reason}");
}

#[test]
fn unknown_config_field_is_rejected_with_reason_not_trap() {
    let mut config = seed_config_value();
    config["surprise"] = serde_json::json!(true);
    let reason = rejection_reason(&serde_json::to_vec(&config).unwrap());
    assert!(reason.contains("unknown field"), "{reason}");
    assert!(reason.contains("surprise"), "{reason}");

    let mut config = seed_config_value();
    config["routes"][0]["weight"] = serde_json::json!(3);
    let reason = rejection_reason(&serde_json::to_vec(&config).unwrap());
    assert!(reason.contains("unknown field"), "{reason}");
    assert!(reason.contains("weight"), "{reason}");
}

#[test]
fn route_naming_unknown_target_is_rejected_with_reason_not_trap() {
    let mut config = seed_config_value();
    config["routes"][0]["target"] = serde_json::json!("nowhere");
    let reason = rejection_reason(&serde_json::to_vec(&config).unwrap());
    assert!(reason.contains("unknown target"), "{reason}");
    assert!(reason.contains("nowhere"), "{reason}");
}

#[test]
fn wrong_config_version_is_rejected_with_reason_not_trap() {
    let mut config = seed_config_value();
    config["version"] = serde_json::json!(99);
    let reason = rejection_reason(&serde_json::to_vec(&config).unwrap());
    assert!(reason.contains("version 99"), "{reason}");
    assert!(reason.contains("not supported"), "{reason}");
}

#[test]
fn rejection_logs_never_contain_secrets() {
    for config in [
        {
            let mut c = seed_config_value();
            c["version"] = serde_json::json!(99);
            c
        },
        {
            let mut c = seed_config_value();
            c["routes"][0]["target"] = serde_json::json!("nowhere");
            c
        },
    ] {
        let reason = rejection_reason(&serde_json::to_vec(&config).unwrap());
        assert_no_secret(&reason, "rejection reason");
    }
    // A type error right next to a secret: serde must not echo the neighbour.
    let mut config = seed_config_value();
    let notify = config["targets"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["name"] == "notification")
        .unwrap();
    notify["credential"]["header"] = serde_json::json!(42);
    let reason = rejection_reason(&serde_json::to_vec(&config).unwrap());
    assert_no_secret(&reason, "rejection reason");
}

// ---- routing table (spec section 5) -------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Cred {
    ApiKey,
    Bearer,
    Basic,
    Nothing,
}

#[test]
fn every_spec_routing_row_is_rewritten_with_its_credential_and_query_kept() {
    let (_host, worker) = seed_worker();
    let rows = [
        (
            "POST",
            "/egress/notify/email",
            "notification",
            "notify.internal.svc",
            "/email",
            Cred::ApiKey,
        ),
        (
            "POST",
            "/egress/audit/events",
            "audit",
            "audit.secure.svc",
            "/events",
            Cred::Nothing,
        ),
        (
            "GET",
            "/egress/analytics/stats",
            "analytics",
            "analytics.example.com",
            "/api/v2/stats",
            Cred::Bearer,
        ),
        (
            "POST",
            "/egress/analytics/users/stats",
            "analytics",
            "analytics.example.com",
            "/api/v2/users/stats",
            Cred::Bearer,
        ),
        (
            "GET",
            "/egress/erp/customers",
            "legacy-erp",
            "erp.internal:8443",
            "/api/v1/customers",
            Cred::Basic,
        ),
        (
            "DELETE",
            "/egress/erp/customers/123",
            "legacy-erp",
            "erp.internal:8443",
            "/api/v1/customers/123",
            Cred::Basic,
        ),
    ];
    for (method, path, target, authority, new_path, cred) in rows {
        for query in ["", "?from=2024-01-01&limit=10"] {
            let stream = request(&worker, method, &format!("{path}{query}"), &[]);
            let row = format!("{method} {path}{query}");
            expect_forward(&stream);
            assert_eq!(
                header(&stream, ":path"),
                Some(format!("{new_path}{query}")),
                "{row}"
            );
            assert_eq!(
                headers_named(&stream, ":authority"),
                vec![authority.to_string()],
                "{row}"
            );
            assert_eq!(
                headers_named(&stream, "x-egress-target"),
                vec![target.to_string()],
                "{row}"
            );
            assert_eq!(header(&stream, ":method").as_deref(), Some(method), "{row}");
            let (api_key, authorization) = match cred {
                Cred::ApiKey => (vec![NOTIFY_KEY.to_string()], vec![]),
                Cred::Bearer => (vec![], vec![format!("Bearer {ANALYTICS_TOKEN}")]),
                Cred::Basic => (vec![], vec![format!("Basic {ERP_BASIC}")]),
                Cred::Nothing => (vec![], vec![]),
            };
            assert_eq!(headers_named(&stream, "x-api-key"), api_key, "{row}");
            assert_eq!(
                headers_named(&stream, "authorization"),
                authorization,
                "{row}"
            );
            stream.finish().unwrap();
        }
    }
    assert_logs_clean(&worker);
}

#[test]
fn crm_rows_route_to_salesforce_and_get_503_without_an_oauth2_token() {
    let (host, worker) = seed_worker();
    let rows = [
        (
            "GET",
            "/egress/crm/Contact",
            "https://mycompany.salesforce.com/services/data/v58.0/sobjects/Contact",
        ),
        (
            "PATCH",
            "/egress/crm/Contact/123",
            "https://mycompany.salesforce.com/services/data/v58.0/sobjects/Contact/123",
        ),
    ];
    // Cold start: the first row waits for the token fetch the next tick starts; nobody answers
    // that fetch, so it gets 503 when its wait deadline passes.
    let (method, path, _) = rows[0];
    let first = request(&worker, method, path, &[("authorization", "Bearer caller")]);
    expect_waiting(&first);
    host.advance_and_tick(TICK).unwrap();
    let fetch = pending_token_fetch(&worker);
    host.advance(TOKEN_WAIT - TICK - Duration::from_millis(1));
    worker.tick().unwrap();
    expect_waiting(&first);
    host.advance(Duration::from_millis(1));
    // The second row arrives while the fetch is still out: it waits too...
    let (method, path, _) = rows[1];
    let second = request(&worker, method, path, &[("authorization", "Bearer caller")]);
    expect_waiting(&second);
    worker.tick().unwrap();
    assert!(first.local_response().is_some(), "deadline passed, no 503");
    expect_waiting(&second);
    // ...and gets 503 as soon as that fetch fails, not at its own deadline.
    worker.fail_callout(fetch).unwrap();
    for (stream, (_, path, url)) in [first, second].iter().zip(rows) {
        let body = expect_error(stream, 503, "credentials_unavailable");
        assert_eq!(stream.request_resumed(), 0, "{path}");
        assert_eq!(body["target"], "salesforce", "{path}");
        let log = log_fields(stream).unwrap();
        assert_eq!(log["target"], "salesforce");
        assert_eq!(log["target_url"], url);
        assert!(
            !body.to_string().contains("sf-client-id-C1d-2a9"),
            "the client id is not the caller's business: {body}"
        );
    }
    assert_eq!(
        host.metric("egress.salesforce.credentials_unavailable"),
        Some(2)
    );
    let ready = request(&worker, "GET", "/ready", &[]);
    let body = expect_error(&ready, 503, "credentials_unavailable");
    assert_eq!(body["targets"], serde_json::json!(["salesforce"]));
    assert_still_serving(&worker);
    assert_logs_clean(&worker);
}
// ---- local replies --------------------------------------------------------------------------

#[test]
fn unrouted_paths_get_404_route_not_found_json() {
    let (_host, worker) = seed_worker();
    for path in ["/nope", "/egress", "/egress/crmx", "/egress/unknown/x", "/"] {
        let stream = request(&worker, "GET", path, &[]);
        expect_error(&stream, 404, "route_not_found");
        assert!(header(&stream, "x-egress-target").is_none(), "{path}");
    }
    assert!(worker.foreign_calls().is_empty());
}

#[test]
fn disallowed_method_gets_405_json_with_allow_header() {
    let (_host, worker) = seed_worker();
    let stream = request(&worker, "GET", "/egress/notify/email", &[]);
    let body = expect_error(&stream, 405, "method_not_allowed");
    assert_eq!(body["allowed"], serde_json::json!(["POST"]));
    let reply = stream.local_response().unwrap();
    assert_eq!(reply.header("allow"), Some("POST"));

    let stream = request(&worker, "DELETE", "/egress/analytics/stats", &[]);
    expect_error(&stream, 405, "method_not_allowed");
    assert_eq!(
        stream.local_response().unwrap().header("allow"),
        Some("GET, POST")
    );
}

#[test]
fn traversal_and_encoded_separators_get_400_invalid_path() {
    let (_host, worker) = seed_worker();
    for path in [
        "/egress/notify/%2e%2e/%2e%2e/admin",
        "/egress/notify/%2E%2e",
        "/egress/notify/a%2Fb",
        "/egress/notify/a%2f..%2fb",
        "/egress/notify//email",
        "/egress/notify/../audit/events",
        "/egress/notify/./email",
        "/egress/notify/a%5cb",
        "/egress/notify/a\\b",
    ] {
        let stream = request(&worker, "POST", path, &[]);
        expect_error(&stream, 400, "invalid_path");
        assert!(header(&stream, "x-api-key").is_none(), "{path}");
    }
    assert!(worker.foreign_calls().is_empty());
}

#[test]
fn health_is_answered_200_by_the_filter() {
    let (_host, worker) = seed_worker();
    let stream = request(&worker, "GET", "/health", &[]);
    let reply = local_reply(&stream);
    assert_eq!(reply.status, 200);
    assert_eq!(json_body(&reply), serde_json::json!({ "status": "ok" }));
}

#[test]
fn metrics_path_passes_through_canonically_spelled_and_never_routed_by_a_callers_header() {
    let (_host, worker) = seed_worker();
    let sent = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/metrics".to_string()),
        (":authority".to_string(), "egress.local:8080".to_string()),
        ("authorization".to_string(), "Bearer scraper".to_string()),
        ("x-egress-target".to_string(), "audit".to_string()),
    ];
    let stream = worker.http_request(sent.clone(), true).unwrap();
    expect_forward(&stream);
    // Untouched but for a caller's routing header (Envoy's routes match on it: it must not
    // pick where a passthrough request goes).
    let expected: Vec<(String, String)> = sent
        .iter()
        .filter(|(k, _)| k != "x-egress-target")
        .cloned()
        .collect();
    assert_eq!(stream.request_header_map(), expected);
    assert!(stream.filter_properties().is_empty());
    assert!(worker.foreign_calls().is_empty());

    // Spelled with an escape: passed under its canonical spelling, which Envoy's metrics
    // route matches (it once fell through to the routes picked by the routing header).
    let mut escaped = sent.clone();
    escaped[1].1 = "/%6detrics?x=1".to_string();
    let stream = worker.http_request(escaped, true).unwrap();
    expect_forward(&stream);
    assert_eq!(
        stream.request_header(":path").as_deref(),
        Some("/metrics?x=1")
    );
    assert_eq!(stream.request_header("x-egress-target"), None);
    assert_eq!(
        stream.request_header("authorization").as_deref(),
        Some("Bearer scraper")
    );
}

#[test]
fn ready_answers_503_naming_the_oauth2_target_without_a_token() {
    let (_host, worker) = seed_worker();
    let stream = request(&worker, "GET", "/ready", &[]);
    let body = expect_error(&stream, 503, "credentials_unavailable");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["targets"], serde_json::json!(["salesforce"]));
}

#[test]
fn oauth2_target_without_token_gets_503_credentials_unavailable() {
    let (host, worker) = seed_worker();
    // Cold start: the request waits for the first fetch, which the next tick starts.
    let waiting = request(&worker, "GET", "/egress/crm/Contact/1", &[]);
    expect_waiting(&waiting);
    assert!(worker.callouts().is_empty(), "fetches start on the tick");
    host.advance_and_tick(TICK).unwrap();
    pending_token_fetch(&worker);
    // The fetch never answers: 503 exactly when the wait deadline passes, not before.
    host.advance(TOKEN_WAIT - TICK - Duration::from_millis(1));
    worker.tick().unwrap();
    expect_waiting(&waiting);
    host.advance(Duration::from_millis(1));
    worker.tick().unwrap();
    let body = expect_error(&waiting, 503, "credentials_unavailable");
    assert_eq!(body["target"], "salesforce");
    assert_eq!(waiting.request_resumed(), 0);
    assert!(headers_named(&waiting, "authorization").is_empty());
    assert_eq!(
        host.metric("egress.salesforce.credentials_unavailable"),
        Some(1)
    );

    // Once fetching is known to fail, a request gets 503 at once, untouched.
    let (host, worker) = seed_worker();
    fail_first_token_fetch(&host, &worker);
    let stream = request(&worker, "GET", "/egress/crm/Contact/1", &[]);
    let body = expect_error(&stream, 503, "credentials_unavailable");
    assert_eq!(body["target"], "salesforce");
    assert!(header(&stream, "x-egress-target").is_none());
    assert!(worker.foreign_calls().is_empty());
    assert!(worker.callouts().is_empty(), "no fetch during the backoff");
    assert_eq!(
        host.metric("egress.salesforce.credentials_unavailable"),
        Some(1)
    );
}

#[test]
fn local_replies_never_contain_secrets() {
    let (host, worker) = seed_worker();
    // local_reply() checks body and headers of each for every secret. A salesforce request
    // waits for the first token fetch; when it fails, the waiting request gets its 503, and
    // later ones (the crm probe below) get it at once while the fetch backs off.
    let waiting = request(
        &worker,
        "GET",
        "/egress/crm/Contact",
        &[("x-api-key", "caller")],
    );
    expect_waiting(&waiting);
    fail_first_token_fetch(&host, &worker);
    local_reply(&waiting);
    let probes = [
        ("GET", "/egress/notify/email"),
        ("GET", "/nope?token=x"),
        ("GET", "/egress/notify/%2e%2e"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/egress/crm/Contact"),
        ("GET", "relative"),
    ];
    for (method, path) in probes {
        let stream = request(&worker, method, path, &[("x-api-key", "caller")]);
        local_reply(&stream);
    }
    assert_logs_clean(&worker);
}

// ---- filter state for the access log ----------------------------------------------------------

/// The request-log fields the filter hands Envoy in its one filter-state value, parsed the way
/// the access log line does: `"target":"<value>"` inside a JSON object.
fn log_fields(stream: &Stream) -> Option<serde_json::Value> {
    let value = property(stream, "egress_log")?;
    let line = format!(r#"{{"target":"{value}"}}"#);
    Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{value} breaks the log line: {e}")))
}

#[test]
fn forward_hands_the_log_target_method_path_and_url_without_query() {
    let (_host, worker) = seed_worker();
    let stream = request(
        &worker,
        "GET",
        "/egress/analytics/users/stats?from=2024-01-01&api_key=x",
        &[],
    );
    expect_forward(&stream);
    let log = log_fields(&stream).unwrap();
    assert_eq!(log["target"], "analytics");
    assert_eq!(log["method"], "GET");
    assert_eq!(log["path"], "/egress/analytics/users/stats");
    assert_eq!(
        log["target_url"],
        "https://analytics.example.com/api/v2/users/stats"
    );
    assert_eq!(
        header(&stream, ":path").as_deref(),
        Some("/api/v2/users/stats?from=2024-01-01&api_key=x")
    );
    assert_eq!(
        stream.filter_properties().len(),
        1,
        "one property per request"
    );
}

#[test]
fn log_values_cannot_break_out_of_the_json_line() {
    let (_host, worker) = seed_worker();
    // A raw quote is refused (it must be percent-encoded); the refusal logs the path as sent.
    let stream = request(&worker, "POST", r#"/egress/notify/a"b"#, &[]);
    expect_error(&stream, 400, "invalid_path");
    let log = log_fields(&stream).unwrap();
    assert_eq!(log["path"], r#"/egress/notify/a"b"#);
    assert_eq!(log.as_object().unwrap().len(), 4, "no injected keys: {log}");
    let stream = request(&worker, "POST", "/egress/notify/a%22b", &[]);
    expect_forward(&stream);
    let log = log_fields(&stream).unwrap();
    assert_eq!(log["path"], "/egress/notify/a%22b");
    assert_eq!(log["target_url"], "https://notify.internal.svc/a%22b");
    assert_eq!(log.as_object().unwrap().len(), 4, "no injected keys: {log}");
}

#[test]
fn refused_request_logs_its_path_without_query() {
    let (_host, worker) = seed_worker();
    let stream = request(&worker, "GET", "/nope/x?token=abc", &[]);
    expect_error(&stream, 404, "route_not_found");
    let log = log_fields(&stream).unwrap();
    assert_eq!(log["path"], "/nope/x");
    assert_eq!(log["target"], "-");
    assert_eq!(log["target_url"], "-");
}

// ---- route cache ------------------------------------------------------------------------------

/// Envoy picks the route again by itself after a wasm filter changes request headers (proven
/// end to end in tests/e2e), so forwarding costs no foreign call.
#[test]
fn forwarding_makes_no_foreign_calls() {
    let host = filter_host();
    host.register_foreign_function("clear_route_cache", |_| Ok(Vec::new()));
    let worker = started_worker(&host);
    for path in ["/egress/notify/email", "/egress/audit/events"] {
        let stream = request(&worker, "POST", path, &[]);
        expect_forward(&stream);
    }
    request(&worker, "GET", "/nope", &[]);
    request(&worker, "GET", "/metrics", &[]);
    assert!(
        worker.foreign_calls().is_empty(),
        "{:?}",
        worker.foreign_calls()
    );
    assert_logs_clean(&worker);
}
// ---- workers --------------------------------------------------------------------------------

#[test]
fn two_workers_on_one_host_serve_independently() {
    let host = filter_host();
    let a = started_worker(&host);
    let b = started_worker(&host);
    assert_ne!(a.id(), b.id());
    for w in [&a, &b] {
        assert!(w.logged(LogLevel::Info, "egress filter configured"));
    }
    let on_a = request(&a, "POST", "/egress/notify/email", &[]);
    let on_b = request(&b, "GET", "/egress/analytics/stats", &[]);
    let again_a = request(&a, "GET", "/egress/erp/customers", &[]);
    expect_forward(&on_a);
    expect_forward(&on_b);
    expect_forward(&again_a);
    assert_eq!(header(&on_a, "x-api-key").as_deref(), Some(NOTIFY_KEY));
    assert_eq!(
        header(&on_b, "authorization"),
        Some(format!("Bearer {ANALYTICS_TOKEN}"))
    );
    assert_eq!(
        header(&again_a, "authorization"),
        Some(format!("Basic {ERP_BASIC}"))
    );
    // A refusal on one does not affect the other.
    expect_error(&request(&b, "GET", "/nope", &[]), 404, "route_not_found");
    expect_forward(&request(&a, "POST", "/egress/audit/events", &[]));
    assert_still_serving(&a);
    assert_still_serving(&b);
}
