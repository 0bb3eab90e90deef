//! `jwks_url` caller issuers in the built filter, with the JWKS callouts scripted: a request
//! waits for the first fetch (made by the root, through `egress_jwks_0`) and runs on when the
//! keys come; an endpoint that is down or slow ends the wait with a 503 (never let through);
//! rotated keys are picked up by the unknown-`kid` refresh (at most one per 30 s); garbage
//! replies never replace the keys in use; verified tokens stay cached.
//!
//! Build the module first: `cargo build -p egress-filter --target wasm32-wasip1 --release`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod callers_support;

use callers_support::caller_claims;
use egress_core::config::load::load_str;
use egress_core::plan::FilterConfig;
use jwt_simple::prelude::*;
use proxy_wasm_harness::{Action, Callout, Host, LogLevel, Stream, Worker};
use std::time::Duration;

const CONFIG: &str = r#"
http: { addr: ":8080" }
egress:
  callers:
    jwt:
      - issuer: https://idp.example
        audiences: [egress-proxy]
        algorithms: [ES256]
        jwks_url: https://idp.example/oidc/jwks
  targets:
    crm:
      url: http://127.0.0.1:9/api
      auth: { type: api_key, header: X-Api-Key, key: crm-key-123 }
      allow: { roles: [crm] }
  routes:
    - { path_prefix: /egress/crm, target: crm }
"#;

const TICK: Duration = Duration::from_millis(100);

fn worker() -> (Host, Worker) {
    let config = load_str(CONFIG, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::to_vec(&FilterConfig::from_config(&config)).unwrap();
    let wasm = proxy_wasm_harness::egress_filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    let host = Host::from_file(wasm).unwrap();
    host.set_time(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let worker = host.worker().unwrap();
    assert!(worker.start(b"", &json).unwrap(), "{:?}", worker.logs());
    (host, worker)
}

fn key(kid: &str) -> ES256KeyPair {
    ES256KeyPair::generate().with_key_id(kid)
}

fn jwks(keys: &[&ES256KeyPair]) -> Vec<u8> {
    let list: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            let mut j: serde_json::Value = serde_json::from_str(&k.public_key().to_jwk()).unwrap();
            j["kid"] = k.key_id().clone().unwrap().into();
            j["use"] = "sig".into();
            j
        })
        .collect();
    serde_json::json!({ "keys": list }).to_string().into_bytes()
}

fn token(host: &Host, k: &ES256KeyPair, sub: &str) -> String {
    k.sign(caller_claims(
        host,
        "https://idp.example",
        sub,
        &["crm"],
        600,
    ))
    .unwrap()
}

fn send(worker: &Worker, t: &str) -> Stream {
    let bearer = format!("Bearer {t}");
    worker
        .http_request(
            [
                (":method", "GET"),
                (":path", "/egress/crm/x"),
                (":scheme", "http"),
                (":authority", "egress:8080"),
                ("authorization", bearer.as_str()),
            ],
            true,
        )
        .unwrap()
}

fn jwks_fetches(worker: &Worker) -> Vec<Callout> {
    worker
        .callouts()
        .into_iter()
        .filter(|c| c.upstream == "egress_jwks_0")
        .collect()
}

fn the_fetch(worker: &Worker) -> Callout {
    let mut f = jwks_fetches(worker);
    assert_eq!(f.len(), 1, "exactly one JWKS fetch expected");
    f.pop().unwrap()
}

/// Ticks until the next JWKS fetch (at most `limit`), then returns it.
fn next_fetch(host: &Host, worker: &Worker, limit: Duration) -> Callout {
    let mut waited = Duration::ZERO;
    while jwks_fetches(worker).is_empty() {
        assert!(waited < limit, "no JWKS fetch within {limit:?}");
        host.advance_and_tick(TICK).unwrap();
        waited += TICK;
    }
    the_fetch(worker)
}

fn waiting(s: &Stream) {
    assert_eq!(s.last_action(), Some(Action::Pause));
    assert_eq!(s.local_response(), None, "answered instead of waiting");
    assert_eq!(s.request_resumed(), 0, "resumed without keys");
}

fn forwarded(s: &Stream) {
    assert_eq!(s.local_response(), None, "refused");
    assert_eq!(
        s.request_header("x-api-key").as_deref(),
        Some("crm-key-123")
    );
    assert_eq!(s.request_header("authorization"), None, "token forwarded");
}

fn refused(s: &Stream, status: u32, code: &str) {
    let reply = s.local_response().expect("a local reply");
    assert_eq!(reply.status, status, "{}", reply.body_str());
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"], code);
    assert_eq!(s.request_resumed(), 0, "a refused request was resumed");
}

/// Starts the worker and serves `keys` to its first fetch.
fn fetched(keys: &[&ES256KeyPair]) -> (Host, Worker) {
    let (host, worker) = worker();
    host.advance_and_tick(TICK).unwrap();
    let f = the_fetch(&worker);
    worker
        .respond_callout(
            f.token,
            200,
            [("content-type", "application/json")],
            &jwks(keys),
        )
        .unwrap();
    (host, worker)
}

#[test]
fn a_request_waits_for_the_first_jwks_fetch_and_runs_on_with_the_keys() {
    let (host, worker) = worker();
    let k1 = key("k1");
    let t = token(&host, &k1, "svc-a");
    let first = send(&worker, &t);
    waiting(&first);
    // The body waits with the headers: continuing it would let the request through.
    assert_eq!(first.request_body(b"x", true).unwrap(), Action::Pause);
    assert!(
        jwks_fetches(&worker).is_empty(),
        "never fetched from a request's context"
    );

    host.advance_and_tick(TICK).unwrap();
    let f = the_fetch(&worker);
    assert_eq!(f.context_id, worker.root_context_id());
    let h = |n: &str| {
        f.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(h(":method").as_deref(), Some("GET"));
    assert_eq!(h(":path").as_deref(), Some("/oidc/jwks"));
    assert_eq!(h(":authority").as_deref(), Some("idp.example"));
    worker
        .respond_callout(
            f.token,
            200,
            [("content-type", "application/json")],
            &jwks(&[&k1]),
        )
        .unwrap();
    assert_eq!(first.request_resumed(), 1, "{:?}", worker.logs());
    forwarded(&first);

    // The same token again: from the verified-token cache; no new fetch.
    let again = send(&worker, &t);
    assert_eq!(again.last_action(), Some(Action::Continue));
    forwarded(&again);
    host.advance_and_tick(Duration::from_secs(60)).unwrap();
    assert!(jwks_fetches(&worker).is_empty());
}

#[test]
fn an_endpoint_that_is_down_ends_the_wait_with_a_503() {
    let (host, worker) = worker();
    let s = send(&worker, &token(&host, &key("k1"), "svc"));
    host.advance_and_tick(TICK).unwrap();
    let f = the_fetch(&worker);
    worker
        .respond_callout(f.token, 503, [("content-type", "text/plain")], b"down")
        .unwrap();
    refused(&s, 503, "issuer_keys_unavailable");
    assert!(worker.logged(LogLevel::Warn, "HTTP status 503"));
    // While the retry backs off, a new request is refused at once.
    let next = send(&worker, &token(&host, &key("k1"), "svc"));
    refused(&next, 503, "issuer_keys_unavailable");
}

#[test]
fn a_slow_endpoint_ends_the_wait_at_the_fetch_timeout() {
    let (host, worker) = worker();
    let s = send(&worker, &token(&host, &key("k1"), "svc"));
    host.advance_and_tick(TICK).unwrap();
    let f = the_fetch(&worker);
    assert_eq!(f.timeout, Duration::from_secs(4));
    host.advance_and_tick(Duration::from_millis(3800)).unwrap();
    waiting(&s);
    // The host times the callout out; the failed fetch ends the wait.
    host.advance_and_tick(Duration::from_millis(300)).unwrap();
    refused(&s, 503, "issuer_keys_unavailable");
    assert!(worker.logged(LogLevel::Warn, "no reply"));
}

#[test]
fn rotated_keys_are_picked_up_by_the_unknown_kid_refresh_at_most_once_per_30s() {
    let (k1, k2, k3) = (key("k1"), key("k2"), key("k3"));
    let (host, worker) = fetched(&[&k1]);
    let rotated = send(&worker, &token(&host, &k2, "svc-new"));
    waiting(&rotated);
    host.advance_and_tick(TICK).unwrap();
    let f = the_fetch(&worker);
    worker
        .respond_callout(
            f.token,
            200,
            [("content-type", "application/json")],
            &jwks(&[&k2]),
        )
        .unwrap();
    assert_eq!(rotated.request_resumed(), 1, "{:?}", worker.logs());
    forwarded(&rotated);

    // Another unknown kid within 30 s: refused at once, nothing fetched.
    host.advance_and_tick(Duration::from_secs(10)).unwrap();
    let unknown = send(&worker, &token(&host, &k3, "svc"));
    refused(&unknown, 401, "invalid_token");
    host.advance_and_tick(TICK).unwrap();
    assert!(jwks_fetches(&worker).is_empty());
    // k1 was rotated out: a new k1 token is refused (after its own refresh).
    host.advance_and_tick(Duration::from_secs(25)).unwrap();
    let old = send(&worker, &token(&host, &k1, "svc-old"));
    waiting(&old);
    host.advance_and_tick(TICK).unwrap();
    let f = the_fetch(&worker);
    worker
        .respond_callout(
            f.token,
            200,
            [("content-type", "application/json")],
            &jwks(&[&k2]),
        )
        .unwrap();
    refused(&old, 401, "invalid_token");
}

#[test]
fn garbage_replies_never_replace_the_keys_in_use() {
    let k1 = key("k1");
    let (host, worker) = fetched(&[&k1]);
    let dup = jwks(&[&key("d"), &key("d")]);
    let huge = vec![b' '; 300 * 1024];
    let replies: Vec<(&[u8], &str)> = vec![
        (b"<html>oops</html>", "not valid JSON"),
        (
            br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
            "no key of the JWKS",
        ),
        (
            br#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB","alg":"RS256"}]}"#,
            "no key of the JWKS",
        ),
        (&dup, "twice"),
        (&huge, "larger than"),
    ];
    for (body, reason) in replies {
        // The periodic refresh (every 5 minutes; retries back off after a failure).
        let f = next_fetch(&host, &worker, Duration::from_secs(5 * 60 + 60));
        worker.take_logs();
        worker
            .respond_callout(f.token, 200, [("content-type", "application/json")], body)
            .unwrap();
        assert!(
            worker.logged(LogLevel::Warn, "the keys in use are kept"),
            "{reason}"
        );
        assert!(
            worker.logged(LogLevel::Warn, reason),
            "{reason}: {:?}",
            worker.logs()
        );
        let s = send(&worker, &token(&host, &k1, &format!("svc-{reason}")));
        forwarded(&s);
    }
}
