//! OAuth2 token fetches that fail: reasons, warnings and 503s, backoff, the last good
//! token, how long a request waits, and waiting requests that go away.
//!
//! Build the module first: `cargo build -p egress-filter --target wasm32-wasip1 --release`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod oauth2_support;

use oauth2_support::*;
use proxy_wasm_harness::{Callout, Host, LogLevel, Worker};
use std::time::Duration;

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

        // The waiting request is answered as soon as the fetch has failed: at once, or when
        // the callout times out.
        expect_unavailable(&waiting);
        let timeout_ms = u64::try_from(fetch.timeout.as_millis()).unwrap();
        assert!(
            elapsed_ms(&host) <= dispatched + timeout_ms,
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
    // Long past any wait a request may have (the token timeout is 10 s).
    run_until(&host, 60_000);
    assert_eq!(gone.local_response(), None);
    assert!(!worker.is_failed());
}

// ---- how long a request waits ----------------------------------------------------------------

#[test]
fn a_waiting_request_gets_a_token_that_arrives_just_before_the_token_timeout() {
    let (host, worker) = seed_worker();
    let waiting = crm(&worker);
    tick(&host);
    let (w, fetch) = the_fetch(&host);
    // The token endpoint is slow: it answers 1 ms before the callout's timeout.
    host.advance_and_tick(fetch.timeout - Duration::from_millis(1))
        .unwrap();
    expect_waiting(&waiting);
    grant(&w, &fetch, "tok-slow", Some(3600));
    expect_resumed_with(&waiting, "tok-slow");
    assert_eq!(metric(&host, UNAVAILABLE), 0);
}

#[test]
fn a_waiting_request_is_answered_503_when_the_token_timeout_passes_and_not_before() {
    let (host, worker) = seed_worker();
    let waiting = crm(&worker);
    tick(&host);
    let (_, fetch) = the_fetch(&host);
    let dispatched = elapsed_ms(&host);
    let timeout_ms = u64::try_from(fetch.timeout.as_millis()).unwrap();
    assert_eq!(timeout_ms, 10_000, "the seed's token_timeout");
    // Still waiting right up to the timeout: the fetch may yet answer.
    run_until(&host, dispatched + timeout_ms - 1);
    expect_waiting(&waiting);
    // The host times the callout out; the request is answered then, not held any longer.
    run_until(&host, dispatched + timeout_ms);
    expect_unavailable(&waiting);
    assert_eq!(metric(&host, UNAVAILABLE), 1);
    assert_eq!(
        metric(&host, "egress.salesforce.token_fetch_failures.transport"),
        1
    );
}
