//! Shared by the egress filter's harness tests (egress_filter.rs, egress_headers.rs,
//! egress_hostile.rs): the seed config, a started worker, requests and what to expect of them.

#![allow(dead_code)] // each test file uses a part

use egress_core::config::load::load_str;
use egress_core::plan::FilterConfig;
use proxy_wasm_harness::{Action, Host, LocalResponse, LogLevel, Stream, Worker};
use std::time::Duration;

pub const SEED_FILE: &str = include_str!("../../../../examples/config.yaml");

/// The seed with `token_store: memory`. With the seed's own redis store the filter takes
/// tokens only from pushes (the control-plane mode); these tests drive its own fetching.
pub fn seed() -> String {
    let redis = "  token_store:\n    type: redis\n    redis:\n      address: \"redis:6379\"\n      password: \"${REDIS_PASSWORD}\"\n      db: 1\n      key_prefix: \"egress:tokens:\"\n";
    assert!(
        SEED_FILE.contains(redis),
        "the seed's token_store block moved"
    );
    SEED_FILE.replace(redis, "  token_store:\n    type: memory\n")
}

/// A distinct fake value per variable, so any leak names its source.
pub const ENV: [(&str, &str); 7] = [
    ("REDIS_PASSWORD", "redis-pw-R3d1s-7f1"),
    ("SALESFORCE_CLIENT_ID", "sf-client-id-C1d-2a9"),
    ("SALESFORCE_CLIENT_SECRET", "sf-client-secret-S3c-4b8"),
    ("NOTIFICATION_API_KEY", "notify-api-key-N0t-5c7"),
    ("ANALYTICS_BEARER_TOKEN", "analytics-token-A7k-6d6"),
    ("ERP_USERNAME", "erp-user-E1p"),
    ("ERP_PASSWORD", "erp-password-P4ss-8e5"),
];

pub const NOTIFY_KEY: &str = "notify-api-key-N0t-5c7";
pub const ANALYTICS_TOKEN: &str = "analytics-token-A7k-6d6";
/// base64("erp-user-E1p:erp-password-P4ss-8e5"), computed outside the filter.
pub const ERP_BASIC: &str = "ZXJwLXVzZXItRTFwOmVycC1wYXNzd29yZC1QNHNzLThlNQ==";

/// Everything that must never appear in a local reply or a log line.
pub const SECRETS: [&str; 6] = [
    "redis-pw-R3d1s-7f1",
    "sf-client-secret-S3c-4b8",
    NOTIFY_KEY,
    ANALYTICS_TOKEN,
    "erp-password-P4ss-8e5",
    ERP_BASIC,
];

pub fn env_lookup(name: &str) -> Option<String> {
    ENV.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn seed_filter_config() -> FilterConfig {
    let config = load_str(&seed(), &env_lookup)
        .unwrap_or_else(|e| panic!("examples/config.yaml does not load: {e:?}"));
    FilterConfig::from_config(&config)
}

pub fn seed_config_json() -> Vec<u8> {
    serde_json::to_vec(&seed_filter_config()).unwrap()
}

/// The seed config as a JSON value, for tests that break one field of it.
pub fn seed_config_value() -> serde_json::Value {
    serde_json::from_slice(&seed_config_json()).unwrap()
}

pub fn filter_host() -> Host {
    let wasm = proxy_wasm_harness::egress_filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    Host::from_file(wasm).unwrap_or_else(|e| panic!("loading the egress filter: {e}"))
}

pub fn started_worker(host: &Host) -> Worker {
    let worker = host.worker().unwrap();
    let ok = worker
        .start(b"", &seed_config_json())
        .unwrap_or_else(|e| panic!("start trapped: {e}"));
    assert!(ok, "the seed config was rejected: {:?}", worker.logs());
    worker
}

pub fn seed_worker() -> (Host, Worker) {
    let host = filter_host();
    let worker = started_worker(&host);
    (host, worker)
}

/// Starts a fresh worker with `config`; expects a rejection (not a trap) and returns the
/// `reason` of the error log line.
pub fn rejection_reason(config: &[u8]) -> String {
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

pub const BASE_HEADERS: [(&str, &str); 3] = [
    (":scheme", "http"),
    (":authority", "egress.local:8080"),
    ("user-agent", "egress-test"),
];

/// A request with `:method`, `:path`, a few ordinary headers and `extra`.
pub fn request(worker: &Worker, method: &str, path: &str, extra: &[(&str, &str)]) -> Stream {
    let mut headers: Vec<(&str, &str)> = vec![(":method", method), (":path", path)];
    headers.extend(BASE_HEADERS);
    headers.extend(extra);
    send(worker, headers)
}

/// Delivers request headers; a trap fails the test with the request that caused it.
pub fn send(worker: &Worker, headers: Vec<(&str, &str)>) -> Stream {
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
pub fn header(stream: &Stream, name: &str) -> Option<String> {
    stream.request_header(name)
}

/// Every value of request header `name` (case-insensitive), after the filter ran.
pub fn headers_named(stream: &Stream, name: &str) -> Vec<String> {
    stream
        .request_header_map()
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

pub fn property(stream: &Stream, name: &str) -> Option<String> {
    stream
        .filter_property(&[name])
        .map(|v| String::from_utf8(v).unwrap())
}

/// The local reply of `stream`: JSON, answered with Pause, free of secrets.
pub fn local_reply(stream: &Stream) -> LocalResponse {
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

pub fn json_body(reply: &LocalResponse) -> serde_json::Value {
    assert_eq!(reply.header("content-type"), Some("application/json"));
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", reply.body_str()))
}

/// Asserts a local reply with `status` and JSON `error` code; returns the body.
pub fn expect_error(stream: &Stream, status: u32, code: &str) -> serde_json::Value {
    let reply = local_reply(stream);
    assert_eq!(reply.status, status, "body: {}", reply.body_str());
    let body = json_body(&reply);
    assert_eq!(body["error"], code, "body: {body}");
    body
}

pub fn expect_forward(stream: &Stream) {
    assert_eq!(
        stream.local_response(),
        None,
        "expected a forward, got a local reply"
    );
    assert_eq!(stream.last_action(), Some(Action::Continue));
}

pub fn assert_no_secret(text: &str, what: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} leaks {secret}: {text}");
    }
}

pub fn assert_logs_clean(worker: &Worker) {
    for line in worker.logs() {
        assert_no_secret(&line.message, "log line");
    }
}

// ---- OAuth2 (salesforce) without a token -----------------------------------------------------

/// The filter's token tick.
pub const TICK: Duration = Duration::from_millis(100);
/// How long a request for salesforce waits for a token before its 503: the seed's default
/// `token_timeout` (10s) + the lease margin (2s) + two ticks.
pub const TOKEN_WAIT: Duration = Duration::from_millis(12_200);
pub const SALESFORCE_TOKEN_CLUSTER: &str = "egress_token_salesforce";

/// The one pending callout of `worker`: the salesforce token fetch (dispatched by a tick).
pub fn pending_token_fetch(worker: &Worker) -> u32 {
    let callouts = worker.callouts();
    assert_eq!(callouts.len(), 1, "one token fetch expected: {callouts:?}");
    assert_eq!(callouts[0].upstream, SALESFORCE_TOKEN_CLUSTER);
    callouts[0].token
}

/// Lets the first tick start the salesforce token fetch and makes it fail (the token endpoint
/// answers 500): salesforce requests then get 503 at once while the next attempt backs off.
pub fn fail_first_token_fetch(host: &Host, worker: &Worker) {
    host.advance_and_tick(TICK).unwrap();
    let token = pending_token_fetch(worker);
    worker
        .respond_callout(token, 500, [("content-type", "text/plain")], b"down")
        .unwrap();
}

/// A salesforce request without a token: paused (cold start), no reply, not resumed yet.
pub fn expect_waiting(stream: &Stream) {
    assert_eq!(stream.last_action(), Some(Action::Pause));
    assert_eq!(stream.local_response(), None, "answered instead of waiting");
    assert_eq!(stream.request_resumed(), 0);
}

/// A normal request still gets its credential: the worker survived whatever came before.
pub fn assert_still_serving(worker: &Worker) {
    assert!(!worker.is_failed(), "the worker's VM failed");
    let stream = request(worker, "POST", "/egress/notify/email", &[]);
    expect_forward(&stream);
    assert_eq!(header(&stream, ":path").as_deref(), Some("/email"));
    assert_eq!(header(&stream, "x-api-key").as_deref(), Some(NOTIFY_KEY));
    stream.finish().unwrap();
}
// ---- hostile input ----------------------------------------------------------------------------

/// Sends `headers`; the filter must answer or forward, without trapping, and the worker must
/// keep serving.
pub fn survives(worker: &Worker, what: &str, headers: Vec<(&str, &str)>) -> Stream {
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
