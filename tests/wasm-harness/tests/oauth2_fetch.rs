//! The egress filter fetching OAuth2 client-credentials tokens itself, driven through the
//! proxy-wasm ABI: cold start, one fetch per proxy whatever the number of workers, refresh
//! before expiry, expiry hints, several OAuth2 targets. Shared helpers: `oauth2_support`.
//!
//! Build the module first: `cargo build -p egress-filter --target wasm32-wasip1 --release`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod oauth2_support;

use oauth2_support::*;
use proxy_wasm_harness::{Host, LogLevel, Stream, Worker};
use std::time::Duration;

#[test]
fn the_test_encoders_agree_with_known_values() {
    assert_eq!(
        base64_std(b"my+client:s3cr%3At%26"),
        "bXkrY2xpZW50OnMzY3IlM0F0JTI2"
    );
    assert_eq!(base64_std(b"ab"), "YWI=");
    assert_eq!(base64_url(b"ab?"), "YWI_");
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
