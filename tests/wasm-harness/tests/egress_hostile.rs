//! Hostile input to the built egress filter: broken and odd paths and methods, other spellings
//! of a route, traversal-like segments. Each request is either refused with the expected JSON
//! reply or forwarded with the expected path and credential; the worker never traps and keeps
//! serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod egress_common;

use egress_common::*;
use proxy_wasm_harness::Worker;

/// What the filter must do with a request.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// A local reply with this status and error code.
    Refused(u32, &'static str),
    /// Forwarded to the notification target with this `:path` and its API key.
    ToNotify(&'static str),
}

fn expect_outcome(worker: &Worker, method: &str, path: &str, want: Outcome) {
    let what = format!("{method:?} {path:?}");
    let stream = survives(worker, &what, vec![(":method", method), (":path", path)]);
    match want {
        Outcome::Refused(status, code) => {
            let reply = stream.local_response().unwrap_or_else(|| {
                panic!("{what} was forwarded: {:?}", stream.request_header_map())
            });
            assert_eq!(reply.status, status, "{what}: {}", reply.body_str());
            let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(body["error"], code, "{what}");
            assert!(headers_named(&stream, "x-api-key").is_empty(), "{what}");
            assert!(
                headers_named(&stream, "x-egress-target").is_empty(),
                "{what}"
            );
        }
        Outcome::ToNotify(out) => {
            assert!(stream.local_response().is_none(), "{what} was refused");
            assert_eq!(headers_named(&stream, ":path"), vec![out], "{what}");
            assert_eq!(
                headers_named(&stream, "x-api-key"),
                vec![NOTIFY_KEY],
                "{what}"
            );
            assert_eq!(
                headers_named(&stream, "x-egress-target"),
                vec!["notification"],
                "{what}"
            );
        }
    }
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

/// Regression: this test only checked that nothing trapped. Now each path has its outcome.
#[test]
fn garbage_paths_are_refused_or_forwarded_canonically() {
    use Outcome::{Refused, ToNotify};
    let (_host, worker) = seed_worker();
    let bad = Refused(400, "invalid_path");
    for (path, want) in [
        ("%", bad),
        ("%%%", bad),
        ("*", bad),
        ("?", bad),
        ("#", bad),
        ("", bad),
        ("http://evil.example/egress/notify/email", bad),
        ("//egress/notify/email", bad),
        ("/egress/notify/%", bad),
        ("/egress/notify/%z", bad),
        ("/egress/notify/%zz", bad),
        ("/egress/notify/%ff%fe%00", bad),
        ("/egress/notify/%C0%AE%C0%AE", bad),
        ("/egress/notify/\u{fffd}\u{0}", bad),
        ("/egress/notify/é/€/ünï", bad),
        ("/egress/notify/a b", bad),
        ("/egress/notify/\t", bad),
        ("/egress/notify/x#frag?y", bad),
        ("/egress/notify/email\r\nx-injected: 1", bad),
        ("/egress/notify/email?a\r\nx-injected: 1", bad),
        ("/egress/notify/email;x", bad),
        ("/egress/notify/{x}", bad),
        ("/?", Refused(404, "route_not_found")),
        ("/egress/notify?%%%", ToNotify("/?%%%")),
        ("/egress/notify/email?q=%6b", ToNotify("/email?q=%6b")),
        ("/egress/notify/em%61il", ToNotify("/email")),
        ("/egress/notify/%c3%a9", ToNotify("/%C3%A9")),
        ("/egress/notify/a%3ab%7e", ToNotify("/a:b~")),
        ("/egress/notify/100%25", ToNotify("/100%25")),
    ] {
        expect_outcome(&worker, "POST", path, want);
    }
    // The notify route allows POST only; its 405 names it, whatever the method token.
    for method in ["", "get", "BREW", "POST\r\n", "\u{0}", "TRACE", "CONNECT"] {
        expect_outcome(
            &worker,
            method,
            "/egress/notify/email",
            Refused(405, "method_not_allowed"),
        );
    }
}

/// Traversal-like segments that Java containers, double decoders or lenient UTF-8 decoders
/// turn into `..`, on every route of the seed: 400 `invalid_path`, no credential.
#[test]
fn traversal_like_segments_get_400_on_every_route() {
    let (_host, worker) = seed_worker();
    let attacks = [
        "..;x",
        ".;",
        "..;",
        "%2e%2e;x",
        "%252e%252e",
        "%25%32%65%25%32%65",
        "%252E",
        "%c0%ae%c0%ae",
        "%e0%80%ae",
        "%c0%2e",
        "%ef%bc%8e%ef%bc%8e",
        "%E2%80%A5",
        "..%5c",
        "%5c",
        "%2f",
        "a%00",
        "a%0d%0a",
        "%ed%a0%80",
        "..%3b",
    ];
    for route in ["notify", "erp", "analytics", "audit", "crm"] {
        for attack in attacks {
            let path = format!("/egress/{route}/{attack}/admin");
            let stream = request(&worker, "POST", &path, &[]);
            expect_error(&stream, 400, "invalid_path");
            assert!(headers_named(&stream, "authorization").is_empty(), "{path}");
            assert!(headers_named(&stream, "x-api-key").is_empty(), "{path}");
        }
    }
    assert!(worker.foreign_calls().is_empty());
    assert!(
        worker.callouts().is_empty(),
        "no token fetch for a refused request"
    );
    assert_still_serving(&worker);
}

/// Regression: a percent-encoded unreserved character made a request miss its route (and the
/// route's method list). Every spelling of `/egress/notify` is the notify route.
#[test]
fn every_spelling_of_a_route_takes_that_route() {
    let (_host, worker) = seed_worker();
    let plain = "/egress/notify/email";
    let mut spellings = Vec::new();
    for (i, c) in plain.char_indices().filter(|(_, c)| *c != '/') {
        for hex in [format!("%{:02X}", c as u32), format!("%{:02x}", c as u32)] {
            spellings.push(format!("{}{hex}{}", &plain[..i], &plain[i + 1..]));
        }
    }
    spellings.push("/%65%67%72%65%73%73/%6e%6f%74%69%66%79/%65%6d%61%69%6c".into());
    for path in &spellings {
        let stream = request(&worker, "GET", path, &[]);
        let body = expect_error(&stream, 405, "method_not_allowed");
        assert_eq!(body["allowed"], serde_json::json!(["POST"]), "{path}");
        let stream = request(&worker, "POST", path, &[]);
        expect_forward(&stream);
        assert_eq!(headers_named(&stream, ":path"), vec!["/email"], "{path}");
        assert_eq!(
            headers_named(&stream, "x-api-key"),
            vec![NOTIFY_KEY],
            "{path}"
        );
    }
}

/// TRACE echoes the request, credential included; CONNECT tunnels; over HTTP/2 any token is
/// a method. On a route without a method list (the ERP route) only the standard ones pass.
#[test]
fn trace_and_unknown_methods_get_405_on_a_route_without_a_method_list() {
    let (_host, worker) = seed_worker();
    for method in [
        "TRACE", "TRACK", "CONNECT", "trace", "get", "PROPFIND", "BREW", "",
    ] {
        let stream = request(&worker, method, "/egress/erp/customers", &[]);
        let body = expect_error(&stream, 405, "method_not_allowed");
        assert_eq!(
            body["allowed"].as_array().map(Vec::len),
            Some(7),
            "{method}"
        );
        let reply = stream.local_response().unwrap();
        assert_eq!(
            reply.header("allow"),
            Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            "{method}"
        );
        assert!(
            headers_named(&stream, "authorization").is_empty(),
            "{method}"
        );
    }
    for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let stream = request(&worker, method, "/egress/erp/customers", &[]);
        expect_forward(&stream);
        assert_eq!(
            headers_named(&stream, "authorization"),
            vec![format!("Basic {ERP_BASIC}")],
            "{method}"
        );
    }
}

/// Regression: slicing a segment by bytes trapped the VM when byte 3 fell inside a UTF-8
/// character. Raw non-ASCII is now refused (it is not a valid path); the same text,
/// percent-encoded, is forwarded, to the OAuth2 target too once it has a token.
#[test]
fn non_ascii_paths_are_refused_raw_and_forwarded_percent_encoded() {
    let (host, worker) = seed_worker();
    let raw = [
        "/egress/notify/😀",
        "/egress/notify/a😀",
        "/egress/notify/ééé",
        "/egress/crm/日本",
        "/nope/😀",
    ];
    for path in raw {
        expect_outcome(&worker, "POST", path, Outcome::Refused(400, "invalid_path"));
    }
    assert!(
        worker.callouts().is_empty(),
        "no token fetch for a refused request"
    );
    for (path, out) in [
        ("/egress/notify/%F0%9F%98%80", "/%F0%9F%98%80"),
        ("/egress/notify/a%f0%9f%98%80", "/a%F0%9F%98%80"),
        ("/egress/notify/%C3%A9%C3%A9%C3%A9", "/%C3%A9%C3%A9%C3%A9"),
    ] {
        expect_outcome(&worker, "POST", path, Outcome::ToNotify(out));
    }
    fail_first_token_fetch(&host, &worker);
    let crm = request(&worker, "POST", "/egress/crm/%E6%97%A5%E6%9C%AC", &[]);
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
    let crm = request(&worker, "POST", "/egress/crm/%e6%97%a5%e6%9c%ac", &[]);
    expect_forward(&crm);
    assert_eq!(
        headers_named(&crm, "authorization"),
        vec!["Bearer sf-token-T0k"]
    );
    assert_eq!(
        headers_named(&crm, ":path"),
        vec!["/services/data/v58.0/sobjects/%E6%97%A5%E6%9C%AC"]
    );
}
