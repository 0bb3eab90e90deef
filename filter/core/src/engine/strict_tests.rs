//! `egress.path_mode: strict`: every path that is not plain is refused with one 400, whatever
//! the reason (the `auto` engine's Envoy gives the same answer without the filter), plain paths
//! are served exactly as in the default mode, and a refused path JSON would need escaped is
//! logged as `-`.

#![allow(clippy::indexing_slicing)]

use super::hostile_tests::{config, ATTACKS};
use super::*;
use crate::plan::{wire, PathMode};
use crate::routing::path::NOT_PLAIN;

fn engines() -> (Engine, Engine) {
    let mut strict = config();
    strict.path_mode = PathMode::Strict;
    (
        Engine::new(&strict).unwrap(),
        Engine::new(&config()).unwrap(),
    )
}

fn refused_as_not_plain(e: &Engine, method: &str, path: &str) {
    match e.decide(method, path) {
        Decision::Respond(r) => {
            assert_eq!((r.status, r.code), (400, "invalid_path"), "{path:?}");
            assert!(r.body.contains("not plain"), "{path:?}: {}", r.body);
        }
        other => panic!("{path:?}: expected the strict refusal, got {other:?}"),
    }
}

#[test]
fn strict_paths_refuse_every_escape_and_invalid_path_with_one_message() {
    let (strict, _) = engines();
    let body = LocalReply::error(400, "invalid_path", NOT_PLAIN).body;
    for attack in ATTACKS {
        let path = format!("/egress/crm/{attack}/x");
        refused_as_not_plain(&strict, "GET", &path);
        let Decision::Respond(r) = strict.decide("GET", &path) else {
            unreachable!()
        };
        assert_eq!(r.body, body, "{path:?}");
    }
    // Spellings the default mode decodes or upper-cases, and valid escapes it keeps.
    for path in [
        "/egress/crm/bul%6B/jobs",
        "/%6detrics",
        "/egress/crm/Contact/%C3%A9",
        "/egress/crm/a%20b",
        "/egress/crm/a%40b",
        "/egress/crm/x?q=\"",
        "/egress/crm/x?q=\\",
        "/egress/crm//x",
        "egress/crm/x",
    ] {
        refused_as_not_plain(&strict, "GET", path);
    }
}

#[test]
fn strict_paths_serve_plain_paths_as_the_default_mode_does() {
    let (strict, default) = engines();
    for (method, path) in [
        ("GET", "/egress/crm/Contact/42?q=%6b&x=\"a\""),
        ("GET", "/egress/crm/Contact/42?q=%6b"),
        ("POST", "/egress/crm/bulk/jobs"),
        ("GET", "/egress/crm/bulk/jobs"),
        ("TRACE", "/egress/crm/x"),
        ("GET", "/egress/a:b@c/d"),
        ("GET", "/egress/open/"),
        ("GET", "/nowhere"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
    ] {
        if path.contains('"') {
            // A query with '"' is not plain: refused only in strict mode.
            refused_as_not_plain(&strict, method, path);
            continue;
        }
        assert_eq!(
            format!("{:?}", strict.decide(method, path)),
            format!("{:?}", default.decide(method, path)),
            "{method} {path}"
        );
    }
}

#[test]
fn strict_refusals_log_a_path_json_would_escape_as_a_dash() {
    let (strict, default) = engines();
    let logged = |e: &Engine, path: &str| {
        let d = e.decide("GET", path);
        e.log_fragment("GET", path, &d).unwrap()
    };
    for (path, want) in [
        ("/egress/crm/%2e%2e/x?q=1", "/egress/crm/%2e%2e/x"),
        ("/egress/crm/a b", "/egress/crm/a b"),
        ("/egress/crm/a\"b", "-"),
        ("/egress/crm/a\\b", "-"),
        ("/egress/crm/a\tb", "-"),
        ("/egress/crm/é", "-"),
        ("/egress/crm/\u{7f}", "-"),
    ] {
        assert_eq!(
            logged(&strict, path),
            wire::log_fragment("-", "GET", want, "-"),
            "{path:?}"
        );
    }
    // The default mode escapes them (the filter writes its own line).
    assert_eq!(
        logged(&default, "/egress/crm/a\"b"),
        wire::log_fragment("-", "GET", "/egress/crm/a\"b", "-")
    );
}
