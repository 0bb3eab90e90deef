//! What the OAuth2 harness tests share: the seed config, workers, driving the clock and the
//! token callouts, and the expectations on requests, logs and metrics.
//!
//! The config is the spec's seed (`examples/config.yaml`): salesforce is the OAuth2 target,
//! token cluster `egress_token_salesforce`, `refresh_before_expiry: 300s`, default
//! `token_timeout` 10s and `default_lifetime` 300s. The harness clock starts at
//! 2024-01-01T00:00:00Z and only moves when a test moves it; each worker ticks every 100ms.

#![allow(dead_code)]

use egress_core::config::load::load_str;
use egress_core::plan::FilterConfig;
use proxy_wasm_harness::{Action, Callout, Host, LocalResponse, LogLevel, Stream, Worker};
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

pub const CLIENT_ID: &str = "sf-client-id-C1d-2a9";
pub const CLIENT_SECRET: &str = "sf-client-secret-S3c-4b8";

pub const ENV: [(&str, &str); 7] = [
    ("REDIS_PASSWORD", "redis-pw-R3d1s-7f1"),
    ("SALESFORCE_CLIENT_ID", CLIENT_ID),
    ("SALESFORCE_CLIENT_SECRET", CLIENT_SECRET),
    ("NOTIFICATION_API_KEY", "notify-api-key-N0t-5c7"),
    ("ANALYTICS_BEARER_TOKEN", "analytics-token-A7k-6d6"),
    ("ERP_USERNAME", "erp-user-E1p"),
    ("ERP_PASSWORD", "erp-password-P4ss-8e5"),
];

pub const CLUSTER: &str = "egress_token_salesforce";
pub const TICK: Duration = Duration::from_millis(100);
pub const TICK_MS: u64 = 100;
/// 2024-01-01T00:00:00Z, where the harness clock starts.
pub const START_MS: u64 = 1_704_067_200_000;

pub const TOKENS_FETCHED: &str = "egress.salesforce.tokens_fetched";
pub const UNAVAILABLE: &str = "egress.salesforce.credentials_unavailable";

// ---- setup ------------------------------------------------------------------------------------

pub fn env_lookup(name: &str) -> Option<String> {
    ENV.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn config_json(yaml: &str) -> Vec<u8> {
    let config =
        load_str(yaml, &env_lookup).unwrap_or_else(|e| panic!("the config does not load: {e:?}"));
    serde_json::to_vec(&FilterConfig::from_config(&config)).unwrap()
}

/// The seed with `logger.level: debug` (the "Credentials refreshed" line is a debug line).
pub fn debug_seed() -> String {
    let yaml = seed().replace("\n  level: info\n", "\n  level: debug\n");
    assert_ne!(yaml, seed(), "the seed's logger.level moved");
    yaml
}

pub fn filter_host() -> Host {
    let wasm = proxy_wasm_harness::egress_filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    Host::from_file(wasm).unwrap_or_else(|e| panic!("loading the egress filter: {e}"))
}

pub fn start_worker(host: &Host, yaml: &str) -> Worker {
    let worker = host.worker().unwrap();
    assert!(
        worker.start(b"", &config_json(yaml)).unwrap(),
        "config rejected: {:?}",
        worker.logs()
    );
    worker
}

pub fn seed_worker() -> (Host, Worker) {
    let host = filter_host();
    let worker = start_worker(&host, &seed());
    (host, worker)
}

// ---- encodings computed outside the filter -------------------------------------------------------

pub fn base64(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        if pad {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

pub fn base64_std(bytes: &[u8]) -> String {
    base64(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    )
}

pub fn base64_url(bytes: &[u8]) -> String {
    base64(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        false,
    )
}

/// `Basic base64(id:secret)` (the seed's id and secret need no form-encoding).
pub fn client_basic() -> String {
    format!(
        "Basic {}",
        base64_std(format!("{CLIENT_ID}:{CLIENT_SECRET}").as_bytes())
    )
}

/// An unsigned JWT (`alg: none`) whose only claim that matters is `exp`.
pub fn unsigned_jwt(exp_secs: u64) -> String {
    format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(format!(r#"{{"sub":"egress","exp":{exp_secs}}}"#).as_bytes())
    )
}

// ---- driving ----------------------------------------------------------------------------------

pub fn now_ms(host: &Host) -> u64 {
    host.now_nanos() / 1_000_000
}

/// Milliseconds since the harness clock started.
pub fn elapsed_ms(host: &Host) -> u64 {
    now_ms(host) - START_MS
}

pub fn tick(host: &Host) {
    host.advance_and_tick(TICK).unwrap();
}

/// Ticks until `at_ms` (since the start of the clock).
pub fn run_until(host: &Host, at_ms: u64) {
    let now = elapsed_ms(host);
    assert!(at_ms >= now, "already at {now}ms, asked for {at_ms}ms");
    host.advance_and_tick(Duration::from_millis(at_ms - now))
        .unwrap();
}

/// Pending token fetches on every worker of `host`.
pub fn token_fetches(host: &Host) -> Vec<(Worker, Callout)> {
    host.workers()
        .into_iter()
        .flat_map(|w| {
            w.callouts()
                .into_iter()
                .map(move |c| (w.clone(), c))
                .collect::<Vec<_>>()
        })
        .inspect(|(_, c)| assert_eq!(c.upstream, CLUSTER, "unexpected callout {c:?}"))
        .collect()
}

/// The one pending token fetch across all workers.
pub fn the_fetch(host: &Host) -> (Worker, Callout) {
    let mut fetches = token_fetches(host);
    assert_eq!(
        fetches.len(),
        1,
        "exactly one token fetch expected at {}ms: {:?}",
        elapsed_ms(host),
        fetches
            .iter()
            .map(|(w, c)| (w.id(), c.token))
            .collect::<Vec<_>>()
    );
    fetches.pop().unwrap()
}

pub fn no_fetch(host: &Host) {
    let fetches = token_fetches(host);
    assert!(
        fetches.is_empty(),
        "no token fetch expected at {}ms, got {}",
        elapsed_ms(host),
        fetches.len()
    );
}

/// Ticks (at most `limit_ms`) until a token fetch is pending; returns it.
pub fn tick_until_fetch(host: &Host, limit_ms: u64) -> (Worker, Callout) {
    let until = elapsed_ms(host) + limit_ms;
    while token_fetches(host).is_empty() {
        assert!(
            elapsed_ms(host) < until,
            "no token fetch within {limit_ms}ms"
        );
        tick(host);
    }
    the_fetch(host)
}

pub fn token_reply(token: &str, expires_in: Option<u64>) -> Vec<u8> {
    let mut reply = serde_json::json!({ "access_token": token, "token_type": "Bearer" });
    if let Some(secs) = expires_in {
        reply["expires_in"] = secs.into();
    }
    serde_json::to_vec(&reply).unwrap()
}

pub fn grant(worker: &Worker, fetch: &Callout, token: &str, expires_in: Option<u64>) {
    worker
        .respond_callout(
            fetch.token,
            200,
            [("content-type", "application/json")],
            &token_reply(token, expires_in),
        )
        .unwrap();
}

pub fn refuse(worker: &Worker, fetch: &Callout) {
    worker
        .respond_callout(
            fetch.token,
            500,
            [("content-type", "text/plain")],
            b"upstream down",
        )
        .unwrap();
}

/// Cold start outside any request: the first tick fetches, the reply grants `token`.
pub fn with_token(host: &Host, token: &str, expires_in: u64) {
    tick(host);
    let (worker, fetch) = the_fetch(host);
    grant(&worker, &fetch, token, Some(expires_in));
}

/// A request for salesforce, with a credential of the caller's that must be replaced.
pub fn crm(worker: &Worker) -> Stream {
    worker
        .http_request(
            [
                (":method", "GET"),
                (":path", "/egress/crm/Contact/1"),
                (":scheme", "http"),
                (":authority", "egress.local:8080"),
                ("authorization", "Bearer caller-token"),
                ("x-request-id", "r-1"),
            ],
            true,
        )
        .unwrap()
}

pub fn authorizations(stream: &Stream) -> Vec<String> {
    stream
        .request_header_map()
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v)
        .collect()
}

pub fn expect_waiting(stream: &Stream) {
    assert_eq!(stream.last_action(), Some(Action::Pause));
    assert_eq!(stream.local_response(), None, "answered instead of waiting");
    assert_eq!(stream.request_resumed(), 0, "resumed without a token");
}

/// Forwarded at once (Continue) with `Bearer token` as its only credential.
pub fn expect_sent_with(stream: &Stream, token: &str) {
    assert_eq!(
        stream.local_response(),
        None,
        "answered instead of forwarded"
    );
    assert_eq!(
        stream.last_action(),
        Some(Action::Continue),
        "not sent at once"
    );
    assert_eq!(authorizations(stream), vec![format!("Bearer {token}")]);
    assert_only_credential(stream);
}

/// Was waiting, then resumed once with `Bearer token` as its only credential.
pub fn expect_resumed_with(stream: &Stream, token: &str) {
    assert_eq!(stream.local_response(), None, "answered instead of resumed");
    assert_eq!(stream.last_action(), Some(Action::Pause));
    assert_eq!(stream.request_resumed(), 1);
    assert_eq!(authorizations(stream), vec![format!("Bearer {token}")]);
    assert_only_credential(stream);
}

pub fn assert_only_credential(stream: &Stream) {
    for (k, v) in stream.request_header_map() {
        let k = k.to_ascii_lowercase();
        assert!(
            !["proxy-authorization", "x-api-key", "cookie"].contains(&k.as_str()),
            "extra credential {k}: {v}"
        );
        assert!(!v.contains("caller-token"), "the caller's token kept: {k}");
    }
}

pub fn expect_unavailable(stream: &Stream) -> LocalResponse {
    let reply = stream
        .local_response()
        .unwrap_or_else(|| panic!("no 503; resumed {} times", stream.request_resumed()));
    assert_eq!(reply.status, 503, "{}", reply.body_str());
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"], "credentials_unavailable");
    assert_eq!(body["target"], "salesforce");
    assert_eq!(stream.request_resumed(), 0);
    assert!(
        !authorizations(stream)
            .iter()
            .any(|a| a.starts_with("Bearer tok")),
        "a 503'd request got a token"
    );
    reply
}

/// Answered 503 at once (not paused first).
pub fn expect_unavailable_now(stream: &Stream) {
    expect_unavailable(stream);
    assert_eq!(stream.last_action(), Some(Action::Pause));
    assert!(
        authorizations(stream).is_empty() || authorizations(stream) == ["Bearer caller-token"],
        "headers were edited for a request answered at once"
    );
}

pub fn ready(worker: &Worker) -> (u32, serde_json::Value) {
    let stream = worker
        .http_request([(":method", "GET"), (":path", "/ready")], true)
        .unwrap();
    let reply = stream.local_response().expect("/ready is answered");
    (reply.status, serde_json::from_slice(&reply.body).unwrap())
}

/// No log line of any worker holds a secret or one of `tokens`.
pub fn assert_logs_clean(host: &Host, tokens: &[&str]) {
    let basic = client_basic();
    let basic_b64 = basic.trim_start_matches("Basic ");
    for worker in host.workers() {
        for line in worker.logs() {
            for secret in [CLIENT_SECRET, basic_b64].iter().chain(tokens) {
                assert!(
                    !line.message.contains(secret),
                    "log leaks {secret}: {}",
                    line.message
                );
            }
        }
    }
}

pub fn json_logs(worker: &Worker, msg: &str) -> Vec<(LogLevel, serde_json::Value)> {
    worker
        .logs()
        .into_iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.message).ok()?;
            (v["msg"] == msg).then_some((l.level, v))
        })
        .collect()
}

/// The salesforce token record in shared data.
pub fn shared_record(host: &Host) -> serde_json::Value {
    let (bytes, _) = host
        .shared_data("egress/token/salesforce")
        .expect("no token record in shared data");
    serde_json::from_slice(&bytes).unwrap()
}

pub fn metric(host: &Host, name: &str) -> u64 {
    host.metric(name).unwrap_or(0)
}
