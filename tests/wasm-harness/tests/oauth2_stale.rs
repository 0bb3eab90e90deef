//! OAuth2 tokens the target rejects (401: stale marking, one refresh per version, a bound on
//! 401-driven refreshes) and readiness.
//!
//! Build the module first: `cargo build -p egress-filter --target wasm32-wasip1 --release`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod oauth2_support;

use oauth2_support::*;
use proxy_wasm_harness::{Action, Stream, Worker};
use std::time::Duration;

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

// ---- 401 storms -------------------------------------------------------------------------------

#[test]
fn a_caller_driving_401s_gets_at_most_one_refresh_per_30s_and_the_rest_are_counted() {
    let (host, worker) = seed_worker();
    with_token(&host, "tok-0", 3600);
    let mut granted = 0;
    // For 65 s, a request every second to a path the target answers 401.
    for _ in 0..65 {
        let s = crm(&worker);
        upstream_answers(&s, 401);
        tick(&host);
        for (w, fetch) in token_fetches(&host) {
            granted += 1;
            grant(&w, &fetch, &format!("tok-{granted}"), Some(3600));
        }
        host.advance_and_tick(Duration::from_millis(900)).unwrap();
    }
    // Marked at 0 s, 30 s and 60 s: three refreshes, not 65.
    assert_eq!(
        metric(&host, "egress.salesforce.token_rejected_by_target"),
        3
    );
    assert_eq!(granted, 3);
    assert_eq!(
        metric(&host, TOKENS_FETCHED),
        4,
        "the first token plus three"
    );
    assert!(
        metric(&host, "egress.salesforce.stale_refresh_suppressed") >= 55,
        "{:?}",
        host.metrics()
    );
}
