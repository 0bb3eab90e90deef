//! The built egress filter (`egress_filter.wasm`) driven through the proxy-wasm ABI, the way
//! Envoy drives it. The plugin configuration is made the real way: `examples/config.yaml` (the
//! spec's seed config) loaded by `egress-core` and compiled to the filter's JSON.
//!
//! Build the module first (the test command does):
//! `cargo build -p egress-filter --target wasm32-wasip1 --release`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_core::config::load::load_str;
use egress_core::plan::FilterConfig;
use proxy_wasm_harness::{Action, Host, LocalResponse, LogLevel, Stream, Worker};
use std::time::Duration;

const SEED_FILE: &str = include_str!("../../../examples/config.yaml");

/// The seed with `token_store: memory`. With the seed's own redis store the filter takes
/// tokens only from pushes (the control-plane mode); these tests drive its own fetching.
fn seed() -> String {
    let redis = "  token_store:\n    type: redis\n    redis:\n      address: \"redis:6379\"\n      password: \"${REDIS_PASSWORD}\"\n      db: 1\n      key_prefix: \"egress:tokens:\"\n";
    assert!(
        SEED_FILE.contains(redis),
        "the seed's token_store block moved"
    );
    SEED_FILE.replace(redis, "  token_store:\n    type: memory\n")
}

/// A distinct fake value per variable, so any leak names its source.
const ENV: [(&str, &str); 7] = [
    ("REDIS_PASSWORD", "redis-pw-R3d1s-7f1"),
    ("SALESFORCE_CLIENT_ID", "sf-client-id-C1d-2a9"),
    ("SALESFORCE_CLIENT_SECRET", "sf-client-secret-S3c-4b8"),
    ("NOTIFICATION_API_KEY", "notify-api-key-N0t-5c7"),
    ("ANALYTICS_BEARER_TOKEN", "analytics-token-A7k-6d6"),
    ("ERP_USERNAME", "erp-user-E1p"),
    ("ERP_PASSWORD", "erp-password-P4ss-8e5"),
];

const NOTIFY_KEY: &str = "notify-api-key-N0t-5c7";
const ANALYTICS_TOKEN: &str = "analytics-token-A7k-6d6";
/// base64("erp-user-E1p:erp-password-P4ss-8e5"), computed outside the filter.
const ERP_BASIC: &str = "ZXJwLXVzZXItRTFwOmVycC1wYXNzd29yZC1QNHNzLThlNQ==";

/// Everything that must never appear in a local reply or a log line.
const SECRETS: [&str; 6] = [
    "redis-pw-R3d1s-7f1",
    "sf-client-secret-S3c-4b8",
    NOTIFY_KEY,
    ANALYTICS_TOKEN,
    "erp-password-P4ss-8e5",
    ERP_BASIC,
];

fn env_lookup(name: &str) -> Option<String> {
    ENV.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn seed_filter_config() -> FilterConfig {
    let config = load_str(&seed(), &env_lookup)
        .unwrap_or_else(|e| panic!("examples/config.yaml does not load: {e:?}"));
    FilterConfig::from_config(&config)
}

fn seed_config_json() -> Vec<u8> {
    serde_json::to_vec(&seed_filter_config()).unwrap()
}

/// The seed config as a JSON value, for tests that break one field of it.
fn seed_config_value() -> serde_json::Value {
    serde_json::from_slice(&seed_config_json()).unwrap()
}

fn filter_host() -> Host {
    let wasm = proxy_wasm_harness::egress_filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    Host::from_file(wasm).unwrap_or_else(|e| panic!("loading the egress filter: {e}"))
}

fn started_worker(host: &Host) -> Worker {
    let worker = host.worker().unwrap();
    let ok = worker
        .start(b"", &seed_config_json())
        .unwrap_or_else(|e| panic!("start trapped: {e}"));
    assert!(ok, "the seed config was rejected: {:?}", worker.logs());
    worker
}

fn seed_worker() -> (Host, Worker) {
    let host = filter_host();
    let worker = started_worker(&host);
    (host, worker)
}

/// Starts a fresh worker with `config`; expects a rejection (not a trap) and returns the
/// `reason` of the error log line.
fn rejection_reason(config: &[u8]) -> String {
    let host = filter_host();
    let worker = host.worker().unwrap();
    match worker.start(b"", config) {
        Ok(false) => {}
        Ok(true) => panic!("config {:?} was accepted", String::from_utf8_lossy(config)),
        Err(e) if e.is_trap() => {
            panic!("config {:?} trapped: {e}", String::from_utf8_lossy(config))
        }
        Err(e) => panic!("harness error: {e}"),
    }
    assert!(!worker.is_failed());
    let line = worker
        .logs()
        .into_iter()
        .find(|l| l.level >= LogLevel::Error && l.message.contains("config rejected"))
        .unwrap_or_else(|| panic!("no 'config rejected' error log: {:?}", worker.logs()));
    let json: serde_json::Value = serde_json::from_str(&line.message)
        .unwrap_or_else(|e| panic!("rejection log is not JSON ({e}): {}", line.message));
    json["reason"].as_str().unwrap_or_default().to_string()
}

const BASE_HEADERS: [(&str, &str); 3] = [
    (":scheme", "http"),
    (":authority", "egress.local:8080"),
    ("user-agent", "egress-test"),
];

/// A request with `:method`, `:path`, a few ordinary headers and `extra`.
fn request(worker: &Worker, method: &str, path: &str, extra: &[(&str, &str)]) -> Stream {
    let mut headers: Vec<(&str, &str)> = vec![(":method", method), (":path", path)];
    headers.extend(BASE_HEADERS);
    headers.extend(extra);
    send(worker, headers)
}

/// Delivers request headers; a trap fails the test with the request that caused it.
fn send(worker: &Worker, headers: Vec<(&str, &str)>) -> Stream {
    let summary: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.chars().take(80).collect::<String>()))
        .take(8)
        .collect();
    worker
        .http_request(headers, true)
        .unwrap_or_else(|e| panic!("request {summary:?} failed (trap: {}): {e}", e.is_trap()))
}

/// First request header named `name` (case-insensitive), after the filter ran.
fn header(stream: &Stream, name: &str) -> Option<String> {
    stream.request_header(name)
}

/// Every value of request header `name` (case-insensitive), after the filter ran.
fn headers_named(stream: &Stream, name: &str) -> Vec<String> {
    stream
        .request_header_map()
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

fn property(stream: &Stream, name: &str) -> Option<String> {
    stream
        .filter_property(&[name])
        .map(|v| String::from_utf8(v).unwrap())
}

/// The local reply of `stream`: JSON, answered with Pause, free of secrets.
fn local_reply(stream: &Stream) -> LocalResponse {
    let reply = stream.local_response().unwrap_or_else(|| {
        panic!(
            "expected a local reply, the request was forwarded: {:?}",
            stream.request_header_map()
        )
    });
    assert_eq!(stream.last_action(), Some(Action::Pause));
    assert_no_secret(&reply.body_str(), "local reply body");
    for (k, v) in &reply.headers {
        assert_no_secret(&format!("{k}: {v}"), "local reply header");
    }
    reply
}

fn json_body(reply: &LocalResponse) -> serde_json::Value {
    assert_eq!(reply.header("content-type"), Some("application/json"));
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", reply.body_str()))
}

/// Asserts a local reply with `status` and JSON `error` code; returns the body.
fn expect_error(stream: &Stream, status: u32, code: &str) -> serde_json::Value {
    let reply = local_reply(stream);
    assert_eq!(reply.status, status, "body: {}", reply.body_str());
    let body = json_body(&reply);
    assert_eq!(body["error"], code, "body: {body}");
    body
}

fn expect_forward(stream: &Stream) {
    assert_eq!(
        stream.local_response(),
        None,
        "expected a forward, got a local reply"
    );
    assert_eq!(stream.last_action(), Some(Action::Continue));
}

fn assert_no_secret(text: &str, what: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} leaks {secret}: {text}");
    }
}

fn assert_logs_clean(worker: &Worker) {
    for line in worker.logs() {
        assert_no_secret(&line.message, "log line");
    }
}

// ---- OAuth2 (salesforce) without a token -----------------------------------------------------

/// The filter's token tick.
const TICK: Duration = Duration::from_millis(100);
/// How long a request for salesforce waits for a token before its 503: the seed's default
/// `token_timeout` (10s) + the lease margin (2s) + two ticks.
const TOKEN_WAIT: Duration = Duration::from_millis(12_200);
const SALESFORCE_TOKEN_CLUSTER: &str = "egress_token_salesforce";

/// The one pending callout of `worker`: the salesforce token fetch (dispatched by a tick).
fn pending_token_fetch(worker: &Worker) -> u32 {
    let callouts = worker.callouts();
    assert_eq!(callouts.len(), 1, "one token fetch expected: {callouts:?}");
    assert_eq!(callouts[0].upstream, SALESFORCE_TOKEN_CLUSTER);
    callouts[0].token
}

/// Lets the first tick start the salesforce token fetch and makes it fail (the token endpoint
/// answers 500): salesforce requests then get 503 at once while the next attempt backs off.
fn fail_first_token_fetch(host: &Host, worker: &Worker) {
    host.advance_and_tick(TICK).unwrap();
    let token = pending_token_fetch(worker);
    worker
        .respond_callout(token, 500, [("content-type", "text/plain")], b"down")
        .unwrap();
}

/// A salesforce request without a token: paused (cold start), no reply, not resumed yet.
fn expect_waiting(stream: &Stream) {
    assert_eq!(stream.last_action(), Some(Action::Pause));
    assert_eq!(stream.local_response(), None, "answered instead of waiting");
    assert_eq!(stream.request_resumed(), 0);
}

/// A normal request still gets its credential: the worker survived whatever came before.
fn assert_still_serving(worker: &Worker) {
    assert!(!worker.is_failed(), "the worker's VM failed");
    let stream = request(worker, "POST", "/egress/notify/email", &[]);
    expect_forward(&stream);
    assert_eq!(header(&stream, ":path").as_deref(), Some("/email"));
    assert_eq!(header(&stream, "x-api-key").as_deref(), Some(NOTIFY_KEY));
    stream.finish().unwrap();
}

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

// ---- header hygiene -------------------------------------------------------------------------

#[test]
fn caller_credentials_and_internal_headers_are_replaced_and_others_kept() {
    let (_host, worker) = seed_worker();
    let stream = request(
        &worker,
        "POST",
        "/egress/notify/email",
        &[
            ("Authorization", "Bearer caller-token"),
            ("Proxy-Authorization", "Basic Y2FsbGVyOnB3"),
            ("X-API-Key", "caller-key"),
            ("x-api-key", "caller-key-2"),
            ("X-Egress-Target", "audit"),
            ("x-egress-debug", "1"),
            ("X-EGRESS-Anything", "x"),
            ("content-type", "application/json"),
            ("x-request-id", "req-42"),
            ("accept", "*/*"),
        ],
    );
    expect_forward(&stream);
    assert!(headers_named(&stream, "authorization").is_empty());
    assert!(headers_named(&stream, "proxy-authorization").is_empty());
    assert_eq!(headers_named(&stream, "x-api-key"), vec![NOTIFY_KEY]);
    assert_eq!(
        headers_named(&stream, "x-egress-target"),
        vec!["notification"]
    );
    let internal: Vec<String> = stream
        .request_header_map()
        .into_iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| k.starts_with("x-egress-") && k != "x-egress-target")
        .collect();
    assert!(
        internal.is_empty(),
        "caller's internal headers kept: {internal:?}"
    );
    for (name, value) in [
        ("content-type", "application/json"),
        ("x-request-id", "req-42"),
        ("accept", "*/*"),
        ("user-agent", "egress-test"),
        (":scheme", "http"),
        (":method", "POST"),
    ] {
        assert_eq!(headers_named(&stream, name), vec![value], "{name}");
    }
}

#[test]
fn exactly_one_credential_header_for_bearer_basic_and_none_for_mtls() {
    let (_host, worker) = seed_worker();
    let caller = [
        ("authorization", "Bearer caller"),
        ("AUTHORIZATION", "Basic Y2FsbGVy"),
        ("proxy-authorization", "Bearer p"),
    ];
    let cases = [
        (
            "GET",
            "/egress/analytics/stats",
            Some(format!("Bearer {ANALYTICS_TOKEN}")),
        ),
        (
            "GET",
            "/egress/erp/customers",
            Some(format!("Basic {ERP_BASIC}")),
        ),
        ("POST", "/egress/audit/events", None),
    ];
    for (method, path, expected) in cases {
        let stream = request(&worker, method, path, &caller);
        expect_forward(&stream);
        assert_eq!(
            headers_named(&stream, "authorization"),
            expected.into_iter().collect::<Vec<_>>(),
            "{path}"
        );
        assert!(headers_named(&stream, "proxy-authorization").is_empty());
        // A caller's x-api-key is not the target's header here: it is left alone.
        assert!(headers_named(&stream, "x-api-key").is_empty(), "{path}");
    }
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
fn metrics_path_passes_through_untouched() {
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
    assert_eq!(stream.request_header_map(), sent);
    assert!(stream.filter_properties().is_empty());
    assert!(worker.foreign_calls().is_empty());
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
    let stream = request(&worker, "POST", r#"/egress/notify/a"b"#, &[]);
    expect_forward(&stream);
    let log = log_fields(&stream).unwrap();
    assert_eq!(log["path"], r#"/egress/notify/a"b"#);
    assert_eq!(log["target_url"], r#"https://notify.internal.svc/a"b"#);
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

// ---- hostile input ----------------------------------------------------------------------------

/// Sends `headers`; the filter must answer or forward, without trapping, and the worker must
/// keep serving.
fn survives(worker: &Worker, what: &str, headers: Vec<(&str, &str)>) -> Stream {
    let stream = worker
        .http_request(headers, true)
        .unwrap_or_else(|e| panic!("{what}: trap={} {e}", e.is_trap()));
    match stream.local_response() {
        Some(reply) => {
            assert_eq!(stream.last_action(), Some(Action::Pause), "{what}");
            assert_no_secret(&reply.body_str(), what);
        }
        None => assert_eq!(stream.last_action(), Some(Action::Continue), "{what}"),
    }
    stream
        .finish()
        .unwrap_or_else(|e| panic!("{what}: finishing the stream failed: {e}"));
    assert_still_serving(worker);
    stream
}

#[test]
fn missing_pseudo_headers_never_trap() {
    let (_host, worker) = seed_worker();
    let s = survives(
        &worker,
        "no :path",
        vec![(":method", "POST"), (":authority", "x")],
    );
    assert_eq!(s.local_response().map(|r| r.status), Some(400));
    let s = survives(
        &worker,
        "no :method",
        vec![(":path", "/egress/notify/email"), (":authority", "x")],
    );
    assert_eq!(s.local_response().map(|r| r.status), Some(405));
    survives(&worker, "no headers at all", vec![]);
    let s = survives(
        &worker,
        "empty :path",
        vec![(":method", "GET"), (":path", "")],
    );
    assert_eq!(s.local_response().map(|r| r.status), Some(400));
}

#[test]
fn very_long_path_never_traps() {
    let (_host, worker) = seed_worker();
    let long = format!("/egress/notify/{}", "a".repeat(64 * 1024));
    let s = survives(
        &worker,
        "64 KiB path",
        vec![(":method", "POST"), (":path", &long)],
    );
    if s.local_response().is_none() {
        assert_eq!(
            header(&s, ":path"),
            Some(format!("/{}", "a".repeat(64 * 1024)))
        );
    }
    let long_query = format!("/egress/notify/email?q={}", "%41".repeat(20 * 1024));
    survives(
        &worker,
        "60 KiB query",
        vec![(":method", "POST"), (":path", &long_query)],
    );
    let deep = format!("/egress/notify{}", "/x".repeat(10_000));
    survives(
        &worker,
        "10k segments",
        vec![(":method", "POST"), (":path", &deep)],
    );
}

#[test]
fn garbage_paths_never_trap() {
    let (_host, worker) = seed_worker();
    for path in [
        "%",
        "%%%",
        "/egress/notify/%",
        "/egress/notify/%z",
        "/egress/notify/%zz",
        "/egress/notify/%ff%fe%00",
        "/egress/notify/%C0%AE%C0%AE",
        "/egress/notify/\u{fffd}\u{0}",
        "/egress/notify/é/€/ünï",
        "/egress/notify/a b",
        "/egress/notify/\t",
        "*",
        "?",
        "#",
        "/?",
        "/egress/notify?%%%",
        "/egress/notify/x#frag?y",
        "http://evil.example/egress/notify/email",
        "//egress/notify/email",
        "/egress/notify/email\r\nx-injected: 1",
    ] {
        survives(&worker, path, vec![(":method", "POST"), (":path", path)]);
    }
    for method in ["", "get", "BREW", "POST\r\n", "\u{0}"] {
        survives(
            &worker,
            &format!("method {method:?}"),
            vec![(":method", method), (":path", "/egress/notify/email")],
        );
    }
}

#[test]
fn non_ascii_path_segments_never_trap() {
    let (host, worker) = seed_worker();
    // Any segment whose 3rd byte falls inside a UTF-8 character. The crm path goes to the
    // OAuth2 target: first while fetching fails (503 at once), then with a token (forwarded).
    let paths = [
        "/egress/notify/😀",
        "/egress/notify/a😀",
        "/egress/notify/ééé",
        "/egress/crm/日本",
        "/nope/😀",
    ];
    fail_first_token_fetch(&host, &worker);
    for path in paths {
        survives(&worker, path, vec![(":method", "POST"), (":path", path)]);
    }
    let crm = request(&worker, "POST", "/egress/crm/日本", &[]);
    expect_error(&crm, 503, "credentials_unavailable");
    // The retry (after the backoff, at most 500ms) gets a token.
    for _ in 0..10 {
        if !worker.callouts().is_empty() {
            break;
        }
        host.advance_and_tick(TICK).unwrap();
    }
    let fetch = pending_token_fetch(&worker);
    worker
        .respond_callout(
            fetch,
            200,
            [("content-type", "application/json")],
            br#"{"access_token":"sf-token-T0k","token_type":"Bearer","expires_in":3600}"#,
        )
        .unwrap();
    for path in paths {
        survives(&worker, path, vec![(":method", "POST"), (":path", path)]);
    }
    let crm = request(&worker, "POST", "/egress/crm/日本", &[]);
    expect_forward(&crm);
    assert_eq!(
        headers_named(&crm, "authorization"),
        vec!["Bearer sf-token-T0k"]
    );
}

#[test]
fn thousand_headers_never_trap_and_are_kept() {
    let (_host, worker) = seed_worker();
    let names: Vec<String> = (0..1000).map(|i| format!("x-h-{i}")).collect();
    let mut headers = vec![(":method", "POST"), (":path", "/egress/notify/email")];
    headers.extend(names.iter().map(|n| (n.as_str(), "v")));
    let s = survives(&worker, "1000 headers", headers);
    assert!(s.local_response().is_none());
    let kept = s
        .request_header_map()
        .into_iter()
        .filter(|(k, _)| k.starts_with("x-h-"))
        .count();
    assert_eq!(kept, 1000);
    assert_eq!(headers_named(&s, "x-api-key"), vec![NOTIFY_KEY]);
}

#[test]
fn header_value_with_crlf_never_traps_or_splits() {
    let (_host, worker) = seed_worker();
    let s = survives(
        &worker,
        "CRLF in a header value",
        vec![
            (":method", "POST"),
            (":path", "/egress/notify/email"),
            ("x-evil", "a\r\nx-api-key: stolen\r\n"),
            ("authorization", "Bearer x\r\nx-egress-target: audit"),
        ],
    );
    // Whatever happened, no header was smuggled in and the target's key is the only one.
    assert!(headers_named(&s, "x-api-key")
        .iter()
        .all(|v| v == NOTIFY_KEY));
    assert!(headers_named(&s, "x-egress-target")
        .iter()
        .all(|v| v == "notification"));
    assert!(headers_named(&s, "authorization").is_empty());
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
