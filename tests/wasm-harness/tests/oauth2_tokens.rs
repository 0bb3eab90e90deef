//! The egress filter fetching OAuth2 client-credentials tokens itself, driven through the
//! proxy-wasm ABI: cold start, one fetch per proxy whatever the number of workers, refresh
//! before expiry, failures and backoff, the last good token, expiry hints, 401s, readiness.
//!
//! The config is the spec's seed (`examples/config.yaml`): salesforce is the OAuth2 target,
//! token cluster `egress_token_salesforce`, `refresh_before_expiry: 300s`, default
//! `token_timeout` 10s and `default_lifetime` 300s. The harness clock starts at
//! 2024-01-01T00:00:00Z and only moves when a test moves it; each worker ticks every 100ms.
//!
//! Build the module first: `cargo build -p egress-filter --target wasm32-wasip1 --release`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_core::config::load::load_str;
use egress_core::plan::FilterConfig;
use proxy_wasm_harness::{Action, Callout, Host, LocalResponse, LogLevel, Stream, Worker};
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

const CLIENT_ID: &str = "sf-client-id-C1d-2a9";
const CLIENT_SECRET: &str = "sf-client-secret-S3c-4b8";

const ENV: [(&str, &str); 7] = [
    ("REDIS_PASSWORD", "redis-pw-R3d1s-7f1"),
    ("SALESFORCE_CLIENT_ID", CLIENT_ID),
    ("SALESFORCE_CLIENT_SECRET", CLIENT_SECRET),
    ("NOTIFICATION_API_KEY", "notify-api-key-N0t-5c7"),
    ("ANALYTICS_BEARER_TOKEN", "analytics-token-A7k-6d6"),
    ("ERP_USERNAME", "erp-user-E1p"),
    ("ERP_PASSWORD", "erp-password-P4ss-8e5"),
];

const CLUSTER: &str = "egress_token_salesforce";
const TICK: Duration = Duration::from_millis(100);
const TICK_MS: u64 = 100;
/// How long a request waits for a token: token_timeout 10s + lease margin 2s + two ticks.
const WAIT_MS: u64 = 12_200;
/// 2024-01-01T00:00:00Z, where the harness clock starts.
const START_MS: u64 = 1_704_067_200_000;

const TOKENS_FETCHED: &str = "egress.salesforce.tokens_fetched";
const UNAVAILABLE: &str = "egress.salesforce.credentials_unavailable";

// ---- setup ------------------------------------------------------------------------------------

fn env_lookup(name: &str) -> Option<String> {
    ENV.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn config_json(yaml: &str) -> Vec<u8> {
    let config =
        load_str(yaml, &env_lookup).unwrap_or_else(|e| panic!("the config does not load: {e:?}"));
    serde_json::to_vec(&FilterConfig::from_config(&config)).unwrap()
}

/// The seed with `logger.level: debug` (the "Credentials refreshed" line is a debug line).
fn debug_seed() -> String {
    let yaml = seed().replace("\n  level: info\n", "\n  level: debug\n");
    assert_ne!(yaml, seed(), "the seed's logger.level moved");
    yaml
}

fn filter_host() -> Host {
    let wasm = proxy_wasm_harness::egress_filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    Host::from_file(wasm).unwrap_or_else(|e| panic!("loading the egress filter: {e}"))
}

fn start_worker(host: &Host, yaml: &str) -> Worker {
    let worker = host.worker().unwrap();
    assert!(
        worker.start(b"", &config_json(yaml)).unwrap(),
        "config rejected: {:?}",
        worker.logs()
    );
    worker
}

fn seed_worker() -> (Host, Worker) {
    let host = filter_host();
    let worker = start_worker(&host, &seed());
    (host, worker)
}

// ---- encodings computed outside the filter -------------------------------------------------------

fn base64(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
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

fn base64_std(bytes: &[u8]) -> String {
    base64(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    )
}

fn base64_url(bytes: &[u8]) -> String {
    base64(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        false,
    )
}

/// `Basic base64(id:secret)` (the seed's id and secret need no form-encoding).
fn client_basic() -> String {
    format!(
        "Basic {}",
        base64_std(format!("{CLIENT_ID}:{CLIENT_SECRET}").as_bytes())
    )
}

/// An unsigned JWT (`alg: none`) whose only claim that matters is `exp`.
fn unsigned_jwt(exp_secs: u64) -> String {
    format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(format!(r#"{{"sub":"egress","exp":{exp_secs}}}"#).as_bytes())
    )
}

#[test]
fn the_test_encoders_agree_with_known_values() {
    assert_eq!(
        base64_std(b"my+client:s3cr%3At%26"),
        "bXkrY2xpZW50OnMzY3IlM0F0JTI2"
    );
    assert_eq!(base64_std(b"ab"), "YWI=");
    assert_eq!(base64_url(b"ab?"), "YWI_");
}

// ---- driving ----------------------------------------------------------------------------------

fn now_ms(host: &Host) -> u64 {
    host.now_nanos() / 1_000_000
}

/// Milliseconds since the harness clock started.
fn elapsed_ms(host: &Host) -> u64 {
    now_ms(host) - START_MS
}

fn tick(host: &Host) {
    host.advance_and_tick(TICK).unwrap();
}

/// Ticks until `at_ms` (since the start of the clock).
fn run_until(host: &Host, at_ms: u64) {
    let now = elapsed_ms(host);
    assert!(at_ms >= now, "already at {now}ms, asked for {at_ms}ms");
    host.advance_and_tick(Duration::from_millis(at_ms - now))
        .unwrap();
}

/// Pending token fetches on every worker of `host`.
fn token_fetches(host: &Host) -> Vec<(Worker, Callout)> {
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
fn the_fetch(host: &Host) -> (Worker, Callout) {
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

fn no_fetch(host: &Host) {
    let fetches = token_fetches(host);
    assert!(
        fetches.is_empty(),
        "no token fetch expected at {}ms, got {}",
        elapsed_ms(host),
        fetches.len()
    );
}

/// Ticks (at most `limit_ms`) until a token fetch is pending; returns it.
fn tick_until_fetch(host: &Host, limit_ms: u64) -> (Worker, Callout) {
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

fn token_reply(token: &str, expires_in: Option<u64>) -> Vec<u8> {
    let mut reply = serde_json::json!({ "access_token": token, "token_type": "Bearer" });
    if let Some(secs) = expires_in {
        reply["expires_in"] = secs.into();
    }
    serde_json::to_vec(&reply).unwrap()
}

fn grant(worker: &Worker, fetch: &Callout, token: &str, expires_in: Option<u64>) {
    worker
        .respond_callout(
            fetch.token,
            200,
            [("content-type", "application/json")],
            &token_reply(token, expires_in),
        )
        .unwrap();
}

fn refuse(worker: &Worker, fetch: &Callout) {
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
fn with_token(host: &Host, token: &str, expires_in: u64) {
    tick(host);
    let (worker, fetch) = the_fetch(host);
    grant(&worker, &fetch, token, Some(expires_in));
}

/// A request for salesforce, with a credential of the caller's that must be replaced.
fn crm(worker: &Worker) -> Stream {
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

fn authorizations(stream: &Stream) -> Vec<String> {
    stream
        .request_header_map()
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v)
        .collect()
}

fn expect_waiting(stream: &Stream) {
    assert_eq!(stream.last_action(), Some(Action::Pause));
    assert_eq!(stream.local_response(), None, "answered instead of waiting");
    assert_eq!(stream.request_resumed(), 0, "resumed without a token");
}

/// Forwarded at once (Continue) with `Bearer token` as its only credential.
fn expect_sent_with(stream: &Stream, token: &str) {
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
fn expect_resumed_with(stream: &Stream, token: &str) {
    assert_eq!(stream.local_response(), None, "answered instead of resumed");
    assert_eq!(stream.last_action(), Some(Action::Pause));
    assert_eq!(stream.request_resumed(), 1);
    assert_eq!(authorizations(stream), vec![format!("Bearer {token}")]);
    assert_only_credential(stream);
}

fn assert_only_credential(stream: &Stream) {
    for (k, v) in stream.request_header_map() {
        let k = k.to_ascii_lowercase();
        assert!(
            !["proxy-authorization", "x-api-key", "cookie"].contains(&k.as_str()),
            "extra credential {k}: {v}"
        );
        assert!(!v.contains("caller-token"), "the caller's token kept: {k}");
    }
}

fn expect_unavailable(stream: &Stream) -> LocalResponse {
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
fn expect_unavailable_now(stream: &Stream) {
    expect_unavailable(stream);
    assert_eq!(stream.last_action(), Some(Action::Pause));
    assert!(
        authorizations(stream).is_empty() || authorizations(stream) == ["Bearer caller-token"],
        "headers were edited for a request answered at once"
    );
}

fn ready(worker: &Worker) -> (u32, serde_json::Value) {
    let stream = worker
        .http_request([(":method", "GET"), (":path", "/ready")], true)
        .unwrap();
    let reply = stream.local_response().expect("/ready is answered");
    (reply.status, serde_json::from_slice(&reply.body).unwrap())
}

/// No log line of any worker holds a secret or one of `tokens`.
fn assert_logs_clean(host: &Host, tokens: &[&str]) {
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

fn json_logs(worker: &Worker, msg: &str) -> Vec<(LogLevel, serde_json::Value)> {
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
fn shared_record(host: &Host) -> serde_json::Value {
    let (bytes, _) = host
        .shared_data("egress/token/salesforce")
        .expect("no token record in shared data");
    serde_json::from_slice(&bytes).unwrap()
}

fn metric(host: &Host, name: &str) -> u64 {
    host.metric(name).unwrap_or(0)
}

// ---- cold start -------------------------------------------------------------------------------

#[test]
fn cold_start_pauses_the_request_fetches_once_and_resumes_it_with_the_token() {
    let host = filter_host();
    let worker = start_worker(&host, &debug_seed());
    let first = crm(&worker);
    expect_waiting(&first);
    no_fetch(&host);

    tick(&host);
    let (_, fetch) = the_fetch(&host);
    assert_eq!(fetch.upstream, CLUSTER);
    assert_eq!(fetch.context_id, worker.root_context_id());
    assert_eq!(fetch.header(":method"), Some("POST"));
    assert_eq!(fetch.header(":path"), Some("/services/oauth2/token"));
    assert_eq!(fetch.header(":authority"), Some("login.salesforce.com"));
    assert_eq!(
        fetch.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(fetch.header("authorization"), Some(client_basic().as_str()));
    assert_eq!(
        String::from_utf8(fetch.body.clone()).unwrap(),
        "grant_type=client_credentials&scope=api+refresh_token"
    );
    assert_eq!(fetch.timeout, Duration::from_secs(10));
    expect_waiting(&first);

    // A second request while the fetch is out waits for the same fetch.
    let second = crm(&worker);
    expect_waiting(&second);
    tick(&host);
    the_fetch(&host);

    grant(&worker, &fetch, "tok-1", Some(3600));
    expect_resumed_with(&first, "tok-1");
    expect_resumed_with(&second, "tok-1");
    assert_eq!(
        first.request_header("x-egress-target").as_deref(),
        Some("salesforce")
    );
    assert_eq!(first.request_header("x-request-id").as_deref(), Some("r-1"));

    let next = crm(&worker);
    expect_sent_with(&next, "tok-1");
    tick(&host);
    no_fetch(&host);
    assert_eq!(metric(&host, TOKENS_FETCHED), 1);
    assert_eq!(metric(&host, UNAVAILABLE), 0);

    let refreshed = json_logs(&worker, "Credentials refreshed");
    assert_eq!(refreshed.len(), 1, "{:?}", worker.logs());
    let (level, line) = &refreshed[0];
    assert_eq!(*level, LogLevel::Debug);
    assert_eq!(line["level"], "debug");
    assert_eq!(line["target"], "salesforce");
    assert_eq!(line["type"], "oauth2");
    // Obtained at 00:00:00.1, valid for an hour.
    assert_eq!(line["expires_at"], "2024-01-01T01:00:00Z");
    assert_logs_clean(&host, &["tok-1"]);
}

#[test]
fn without_debug_logging_the_refresh_line_is_not_written() {
    let (host, worker) = seed_worker();
    with_token(&host, "tok-1", 3600);
    assert_eq!(metric(&host, TOKENS_FETCHED), 1);
    assert!(json_logs(&worker, "Credentials refreshed").is_empty());
}

#[test]
fn three_workers_share_one_fetch_and_all_their_waiting_requests_get_the_token() {
    let host = filter_host();
    let workers: Vec<Worker> = (0..3).map(|_| start_worker(&host, &seed())).collect();
    let waiting: Vec<Vec<Stream>> = workers
        .iter()
        .map(|w| (0..4).map(|_| crm(w)).collect())
        .collect();
    waiting.iter().flatten().for_each(expect_waiting);

    // Every worker ticks; one wins the lease.
    tick(&host);
    let (fetcher, fetch) = the_fetch(&host);
    for _ in 0..5 {
        tick(&host);
        the_fetch(&host);
    }
    waiting.iter().flatten().for_each(expect_waiting);

    grant(&fetcher, &fetch, "tok-1", Some(3600));
    // The fetching worker resumes its requests on the reply, the others on their next tick.
    for (w, streams) in workers.iter().zip(&waiting) {
        if w.id() == fetcher.id() {
            streams.iter().for_each(|s| expect_resumed_with(s, "tok-1"));
        } else {
            streams.iter().for_each(expect_waiting);
        }
    }
    tick(&host);
    waiting
        .iter()
        .flatten()
        .for_each(|s| expect_resumed_with(s, "tok-1"));
    no_fetch(&host);
    for w in &workers {
        expect_sent_with(&crm(w), "tok-1");
    }
    assert_eq!(metric(&host, TOKENS_FETCHED), 1);
    assert_eq!(metric(&host, UNAVAILABLE), 0);
}

// ---- refresh ----------------------------------------------------------------------------------

#[test]
fn refresh_starts_refresh_before_expiry_ahead_and_requests_keep_the_old_token_meanwhile() {
    let host = filter_host();
    let a = start_worker(&host, &seed());
    let b = start_worker(&host, &seed());
    with_token(&host, "tok-1", 3600);
    // Obtained at 100ms: expires at 3600.1s, refresh due 300s earlier, at 3300.1s.
    let refresh_at = TICK_MS + 3_300_000;
    for at in [60_000, 1_800_000, refresh_at - TICK_MS] {
        run_until(&host, at);
        no_fetch(&host);
        expect_sent_with(&crm(&a), "tok-1");
    }
    run_until(&host, refresh_at);
    let (fetcher, fetch) = the_fetch(&host);
    assert_eq!(fetch.dispatched_at_nanos / 1_000_000, START_MS + refresh_at);
    // While the refresh is out, nothing waits: the old token is still valid.
    for _ in 0..3 {
        tick(&host);
        the_fetch(&host);
        for w in [&a, &b] {
            expect_sent_with(&crm(w), "tok-1");
        }
    }
    grant(&fetcher, &fetch, "tok-2", Some(3600));
    tick(&host);
    for w in [&a, &b] {
        expect_sent_with(&crm(w), "tok-2");
    }
    no_fetch(&host);
    assert_eq!(metric(&host, TOKENS_FETCHED), 2);
    assert_eq!(metric(&host, UNAVAILABLE), 0);
    assert_logs_clean(&host, &["tok-1", "tok-2"]);
}

// ---- failures ---------------------------------------------------------------------------------

/// How one failed fetch ends.
#[derive(Clone, Copy, Debug)]
enum Failure {
    Status500,
    Garbage,
    NoAccessToken,
    CrlfToken,
    Reset,
    Timeout,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Failure::Status500 => "status_5xx",
            Failure::Garbage => "bad_json",
            Failure::NoAccessToken | Failure::CrlfToken => "bad_token",
            Failure::Reset | Failure::Timeout => "transport",
        }
    }

    fn apply(self, host: &Host, worker: &Worker, fetch: &Callout) {
        let json = [("content-type", "application/json")];
        match self {
            Failure::Status500 => refuse(worker, fetch),
            Failure::Garbage => worker
                .respond_callout(fetch.token, 200, json, b"<html>tok-garbage</html>")
                .unwrap(),
            Failure::NoAccessToken => worker
                .respond_callout(fetch.token, 200, json, br#"{"token_type":"Bearer"}"#)
                .unwrap(),
            Failure::CrlfToken => worker
                .respond_callout(
                    fetch.token,
                    200,
                    json,
                    br#"{"access_token":"tok-evil\r\nX-Evil: 1","token_type":"Bearer","expires_in":3600}"#,
                )
                .unwrap(),
            Failure::Reset => worker.fail_callout(fetch.token).unwrap(),
            Failure::Timeout => {
                // Envoy answers a callout past its timeout with no headers; the harness does
                // that while advancing the clock.
                host.advance_and_tick(fetch.timeout).unwrap();
                assert!(worker.callout(fetch.token).is_none(), "the callout did not time out");
            }
        }
    }
}

const FAILURES: [Failure; 6] = [
    Failure::Status500,
    Failure::Garbage,
    Failure::NoAccessToken,
    Failure::CrlfToken,
    Failure::Reset,
    Failure::Timeout,
];

#[test]
fn each_failed_fetch_counts_its_reason_logs_a_warning_and_answers_waiting_requests_503() {
    for failure in FAILURES {
        let (host, worker) = seed_worker();
        let waiting = crm(&worker);
        tick(&host);
        let (_, fetch) = the_fetch(&host);
        let dispatched = elapsed_ms(&host);
        failure.apply(&host, &worker, &fetch);

        // The waiting request is answered when the fetch fails, before its own deadline.
        expect_unavailable(&waiting);
        assert!(
            elapsed_ms(&host) < WAIT_MS,
            "{failure:?}: answered at {}ms",
            elapsed_ms(&host)
        );
        // Later requests fail fast while the next attempt backs off.
        let later = crm(&worker);
        expect_unavailable_now(&later);
        assert_eq!(metric(&host, UNAVAILABLE), 2, "{failure:?}");
        let reason = failure.reason();
        assert_eq!(
            metric(
                &host,
                &format!("egress.salesforce.token_fetch_failures.{reason}")
            ),
            1,
            "{failure:?}: {:?}",
            host.metrics()
        );
        assert_eq!(metric(&host, TOKENS_FETCHED), 0);

        let warnings = json_logs(&worker, "Token fetch failed");
        assert_eq!(warnings.len(), 1, "{failure:?}: {:?}", worker.logs());
        let (level, line) = &warnings[0];
        assert_eq!(*level, LogLevel::Warn, "{failure:?}");
        assert_eq!(line["target"], "salesforce");
        assert_eq!(line["reason"], reason, "{failure:?}");
        assert_eq!(line["failures"], 1);
        let retry_in = line["retry_in_ms"].as_u64().unwrap();
        assert!((250..500).contains(&retry_in), "{failure:?}: {retry_in}");
        assert_logs_clean(&host, &["tok-evil", "X-Evil", "tok-garbage"]);
        for line in worker.logs() {
            assert!(!line.message.contains(CLIENT_ID), "{}", line.message);
        }
        assert!(
            matches!(failure, Failure::Timeout) || elapsed_ms(&host) == dispatched,
            "answering took time"
        );
        assert!(!worker.is_failed());
    }
}

/// Fails every fetch of a fresh proxy `n` times (each answered 500 the moment it is sent);
/// returns the gaps between successive fetches, in ms.
fn backoff_gaps(n: usize) -> Vec<u64> {
    let (host, worker) = seed_worker();
    let mut sent_at = Vec::new();
    while sent_at.len() <= n {
        let (w, fetch) = tick_until_fetch(&host, 31_000);
        sent_at.push(fetch.dispatched_at_nanos / 1_000_000);
        refuse(&w, &fetch);
        // Whenever fetching is failing, a request gets 503 at once.
        expect_unavailable_now(&crm(&worker));
    }
    assert_eq!(
        metric(&host, "egress.salesforce.token_fetch_failures.status_5xx"),
        sent_at.len() as u64
    );
    sent_at.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn retries_back_off_exponentially_with_jitter_and_never_wait_more_than_30s() {
    let n = 11;
    let runs = [backoff_gaps(n), backoff_gaps(n)];
    for gaps in &runs {
        for (i, gap) in gaps.iter().enumerate() {
            // After failure k (1-based): half of min(500ms * 2^(k-1), 30s) fixed, half random;
            // fetches start on a 100ms tick.
            let full = (500u64 << i).min(30_000);
            assert!(
                (full / 2..=full).contains(gap),
                "gap {} after failure {} is {gap}ms, expected {}..={full}: {gaps:?}",
                i,
                i + 1,
                full / 2
            );
            assert!(*gap <= 30_000, "{gaps:?}");
        }
        // It grows: each doubling range is above the previous one's floor, and the tail sits
        // at the cap.
        assert!(gaps[3] > gaps[0] && gaps[6] > gaps[3], "{gaps:?}");
        assert!(
            gaps[7..].iter().all(|g| (15_000..=30_000).contains(g)),
            "{gaps:?}"
        );
    }
    assert_ne!(runs[0], runs[1], "two proxies retry in lockstep: no jitter");
    let capped: Vec<u64> = runs.iter().flat_map(|g| g[7..].to_vec()).collect();
    assert!(
        capped.iter().any(|g| *g != capped[0]),
        "capped retries are all identical: {capped:?}"
    );
}

#[test]
fn the_last_good_token_is_used_until_it_expires_while_refreshes_fail_then_503_then_recovery() {
    let host = filter_host();
    let worker = start_worker(&host, &seed());
    let other = start_worker(&host, &seed());
    with_token(&host, "tok-1", 3600);
    let expires = TICK_MS + 3_600_000;
    let refresh_at = expires - 300_000;
    run_until(&host, refresh_at - TICK_MS);
    no_fetch(&host);

    // Refreshes fail from the refresh point to expiry and a bit beyond; the old token keeps
    // flowing until the very end of its life.
    let mut failures = 0u64;
    let mut failed_after_expiry = false;
    while !failed_after_expiry {
        tick(&host);
        let now = elapsed_ms(&host);
        for (w, fetch) in token_fetches(&host) {
            refuse(&w, &fetch);
            failures += 1;
            failed_after_expiry = now >= expires;
        }
        if now < expires {
            expect_sent_with(&crm(&worker), "tok-1");
            expect_sent_with(&crm(&other), "tok-1");
        }
        assert!(now < expires + 60_000, "no retry after expiry");
    }
    assert!(failures >= 10, "only {failures} attempts in 300s");
    assert_eq!(
        metric(&host, "egress.salesforce.token_fetch_failures.status_5xx"),
        failures
    );
    assert_eq!(metric(&host, UNAVAILABLE), 0, "503 while a token was valid");

    // Expired, and the fetch is failing: 503 at once, on every worker.
    expect_unavailable_now(&crm(&worker));
    expect_unavailable_now(&crm(&other));
    assert_eq!(ready(&worker).0, 503);

    // The server recovers: the next attempt succeeds and requests flow again.
    let (w, fetch) = tick_until_fetch(&host, 31_000);
    let waiting = crm(&worker);
    expect_waiting(&waiting);
    grant(&w, &fetch, "tok-2", Some(3600));
    tick(&host);
    expect_resumed_with(&waiting, "tok-2");
    expect_sent_with(&crm(&worker), "tok-2");
    expect_sent_with(&crm(&other), "tok-2");
    assert_eq!(ready(&other).0, 200);
    assert_eq!(metric(&host, TOKENS_FETCHED), 2);
    assert_logs_clean(&host, &["tok-1", "tok-2"]);
}

// ---- lifetime hints ---------------------------------------------------------------------------

/// Grants `reply` at exactly 1s after the start (ticks fire at 100ms multiples).
fn grant_at_one_second(host: &Host, reply: &[u8]) {
    tick(host);
    let (worker, fetch) = the_fetch(host);
    host.advance(Duration::from_millis(900));
    assert_eq!(elapsed_ms(host), 1_000);
    worker
        .respond_callout(
            fetch.token,
            200,
            [("content-type", "application/json")],
            reply,
        )
        .unwrap();
    assert_eq!(metric(host, TOKENS_FETCHED), 1);
}

#[test]
fn without_expires_in_the_jwt_exp_sets_the_lifetime_and_refresh_comes_at_half_of_it() {
    let (host, worker) = seed_worker();
    // exp = obtained + 120s: refresh min(300s, 120s / 2) = 60s before, i.e. 60s after obtaining.
    let exp_secs = (START_MS + 1_000) / 1000 + 120;
    let jwt = unsigned_jwt(exp_secs);
    grant_at_one_second(
        &host,
        serde_json::json!({ "access_token": jwt, "token_type": "Bearer" })
            .to_string()
            .as_bytes(),
    );
    let record = shared_record(&host);
    assert_eq!(record["expires_at_ms"], exp_secs * 1000);
    expect_sent_with(&crm(&worker), &jwt);
    run_until(&host, 61_000 - TICK_MS);
    no_fetch(&host);
    run_until(&host, 61_000);
    let (w, fetch) = the_fetch(&host);
    assert_eq!(fetch.dispatched_at_nanos / 1_000_000, START_MS + 61_000);
    expect_sent_with(&crm(&worker), &jwt);
    grant(&w, &fetch, "tok-2", Some(3600));
    expect_sent_with(&crm(&worker), "tok-2");
}

#[test]
fn an_opaque_token_without_expires_in_lives_the_default_300s() {
    let (host, worker) = seed_worker();
    grant_at_one_second(
        &host,
        br#"{"access_token":"opaque-tok","token_type":"Bearer"}"#,
    );
    let record = shared_record(&host);
    assert_eq!(record["expires_at_ms"], START_MS + 1_000 + 300_000);
    // Refresh min(300s, 300s / 2) = 150s before expiry.
    run_until(&host, 151_000 - TICK_MS);
    no_fetch(&host);
    expect_sent_with(&crm(&worker), "opaque-tok");
    run_until(&host, 151_000);
    let (_, fetch) = the_fetch(&host);
    assert_eq!(fetch.dispatched_at_nanos / 1_000_000, START_MS + 151_000);
}

// ---- 401 from the target ----------------------------------------------------------------------

fn upstream_answers(stream: &Stream, status: u16) {
    let action = stream
        .response_headers([(":status", status.to_string())], false)
        .unwrap();
    assert_eq!(action, Action::Continue);
}

#[test]
fn a_401_marks_the_token_stale_and_causes_exactly_one_refresh_without_replaying_the_request() {
    let (host, worker) = seed_worker();
    with_token(&host, "tok-1", 3600);
    tick(&host);
    no_fetch(&host);
    let rejected = crm(&worker);
    expect_sent_with(&rejected, "tok-1");
    let ok = crm(&worker);
    upstream_answers(&ok, 200);
    upstream_answers(&rejected, 401);
    assert_eq!(
        metric(&host, "egress.salesforce.token_rejected_by_target"),
        1
    );
    assert_eq!(shared_record(&host)["stale"], true);
    no_fetch(&host);

    // The stale token is still used until its replacement arrives.
    let meanwhile = crm(&worker);
    expect_sent_with(&meanwhile, "tok-1");
    tick(&host);
    let (w, fetch) = the_fetch(&host);
    tick(&host);
    the_fetch(&host);
    grant(&w, &fetch, "tok-2", Some(3600));
    expect_sent_with(&crm(&worker), "tok-2");

    // The rejected request is not resumed or replayed, and a late 401 for the old token
    // (a request sent before the refresh) causes no further refresh.
    assert_eq!(rejected.request_resumed(), 0);
    assert_eq!(authorizations(&rejected), vec!["Bearer tok-1"]);
    upstream_answers(&meanwhile, 401);
    for _ in 0..5 {
        tick(&host);
        no_fetch(&host);
    }
    assert_eq!(
        metric(&host, "egress.salesforce.token_rejected_by_target"),
        1
    );
    assert_eq!(metric(&host, TOKENS_FETCHED), 2);
    // Ordinary error statuses do not mark anything.
    let later = crm(&worker);
    upstream_answers(&later, 403);
    tick(&host);
    no_fetch(&host);
}

#[test]
fn concurrent_401s_for_the_same_token_version_cause_one_refresh() {
    let host = filter_host();
    let workers: Vec<Worker> = (0..3).map(|_| start_worker(&host, &seed())).collect();
    with_token(&host, "tok-1", 3600);
    tick(&host);
    let sent: Vec<Stream> = workers.iter().flat_map(|w| [crm(w), crm(w)]).collect();
    for s in &sent {
        expect_sent_with(s, "tok-1");
    }
    for s in &sent {
        upstream_answers(s, 401);
    }
    assert_eq!(
        metric(&host, "egress.salesforce.token_rejected_by_target"),
        1
    );
    tick(&host);
    let (w, fetch) = the_fetch(&host);
    for _ in 0..3 {
        tick(&host);
        the_fetch(&host);
    }
    grant(&w, &fetch, "tok-2", Some(3600));
    tick(&host);
    for w in &workers {
        expect_sent_with(&crm(w), "tok-2");
    }
    for _ in 0..5 {
        tick(&host);
        no_fetch(&host);
    }
    assert!(sent.iter().all(|s| s.request_resumed() == 0));
    assert_eq!(metric(&host, TOKENS_FETCHED), 2);
}

#[test]
fn a_401_for_a_request_that_waited_for_its_token_also_marks_it_stale() {
    let (host, worker) = seed_worker();
    let waited = crm(&worker);
    tick(&host);
    let (_, fetch) = the_fetch(&host);
    grant(&worker, &fetch, "tok-1", Some(3600));
    expect_resumed_with(&waited, "tok-1");
    upstream_answers(&waited, 401);
    assert_eq!(
        metric(&host, "egress.salesforce.token_rejected_by_target"),
        1
    );
    tick(&host);
    the_fetch(&host);
}

// ---- readiness --------------------------------------------------------------------------------

#[test]
fn ready_is_503_naming_salesforce_until_the_first_token_then_200_on_every_worker() {
    let host = filter_host();
    let a = start_worker(&host, &seed());
    let b = start_worker(&host, &seed());
    for w in [&a, &b] {
        let (status, body) = ready(w);
        assert_eq!(status, 503);
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["error"], "credentials_unavailable");
        assert_eq!(body["targets"], serde_json::json!(["salesforce"]));
    }
    tick(&host);
    let (w, fetch) = the_fetch(&host);
    assert_eq!(ready(&a).0, 503, "ready before the token arrived");
    grant(&w, &fetch, "tok-1", Some(3600));
    // Both workers, the one that did not fetch included (before its next tick).
    for w in [&a, &b] {
        let (status, body) = ready(w);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, serde_json::json!({ "status": "ready" }));
        assert!(!body.to_string().contains("tok-1"));
    }
}

// ---- requests that go away ------------------------------------------------------------------

#[test]
fn a_waiting_request_that_ends_before_the_token_arrives_is_forgotten() {
    let (host, worker) = seed_worker();
    let gone = crm(&worker);
    let stays = crm(&worker);
    expect_waiting(&gone);
    tick(&host);
    let (_, fetch) = the_fetch(&host);
    gone.finish().unwrap();
    grant(&worker, &fetch, "tok-1", Some(3600));
    assert!(!worker.is_failed());
    expect_resumed_with(&stays, "tok-1");
    assert_eq!(gone.request_resumed(), 0, "a finished stream was resumed");
    assert!(!authorizations(&gone).iter().any(|a| a.contains("tok-1")));
    assert_eq!(gone.local_response(), None);
    tick(&host);
    expect_sent_with(&crm(&worker), "tok-1");

    // Same when the fetch fails instead: no 503 is sent to the finished stream.
    let (host, worker) = seed_worker();
    let gone = crm(&worker);
    tick(&host);
    let (_, fetch) = the_fetch(&host);
    gone.finish().unwrap();
    refuse(&worker, &fetch);
    assert!(!worker.is_failed());
    assert_eq!(
        gone.local_response(),
        None,
        "a finished stream was answered"
    );
    assert_eq!(metric(&host, UNAVAILABLE), 0);
    run_until(&host, WAIT_MS + 1_000);
    assert_eq!(gone.local_response(), None);
    assert!(!worker.is_failed());
}

// ---- several OAuth2 targets ---------------------------------------------------------------------

/// The seed plus a second OAuth2 target, `zendesk`, after salesforce.
fn two_oauth2_targets() -> String {
    let target = r#"
    zendesk:
      url: "https://acme.zendesk.com/api/v2"
      auth:
        type: oauth2_client_credentials
        token_url: "https://acme.zendesk.com/oauth/tokens"
        client_id: "zd-client"
        client_secret: "zd-secret-Z3s"
"#;
    let route = r#"
    - path_prefix: "/egress/zd"
      target: zendesk
      strip_prefix: "/egress/zd"
"#;
    let yaml = seed()
        .replacen(
            "\n  # Route mapping",
            &format!("{target}\n  # Route mapping"),
            1,
        )
        .replacen("\n  routes:\n", &format!("\n  routes:{route}"), 1);
    assert_eq!(yaml.matches("zendesk").count(), 4, "{yaml}");
    yaml
}

/// A valid salesforce token put into shared data from outside (as `egressctl` pushes one).
fn push_salesforce_token(host: &Host, token: &str) {
    let now = now_ms(host);
    let record = egress_core::tokens::TokenRecord {
        token: egress_core::secret::Secret::new(token),
        token_type: "Bearer".into(),
        expires_at_ms: now + 3_600_000,
        obtained_at_ms: now,
        source: egress_core::tokens::TokenSource::Pushed,
        version: 1,
        stale: false,
        last_stale_mark_ms: 0,
    };
    host.set_shared_data("egress/token/salesforce", record.to_bytes(), 0)
        .unwrap();
}

#[test]
fn a_token_fetch_started_in_the_tick_that_resumed_other_requests_belongs_to_the_root_context() {
    let host = filter_host();
    let worker = start_worker(&host, &two_oauth2_targets());
    let waiting = crm(&worker);
    expect_waiting(&waiting);
    // The salesforce token arrives through shared data; the same tick resumes the waiting
    // request and starts zendesk's first fetch.
    push_salesforce_token(&host, "tok-pushed");
    tick(&host);
    expect_resumed_with(&waiting, "tok-pushed");
    let callouts = worker.callouts();
    assert_eq!(callouts.len(), 1, "{callouts:?}");
    assert_eq!(callouts[0].upstream, "egress_token_zendesk");
    assert_eq!(
        callouts[0].context_id,
        worker.root_context_id(),
        "the token fetch was dispatched on behalf of stream {} (Envoy cancels it when that \
         request ends, and the worker then waits forever for the reply)",
        waiting.id()
    );
}
