//! Property tests over the request decision with hostile input: methods, paths, header names
//! and values, arbitrary text. Whatever comes in, the engine does not panic; what it forwards
//! stays under the target's base path, carries no dot segment in any decoding, and goes to the
//! route a decoding upstream would pick; every other spelling of a path is decided alike.
//!
//! Bounded for `cargo test -p egress-core` (a few seconds); run longer on demand with
//! `EGRESS_FUZZ_CASES=100000 cargo test -p egress-core --release --test hostile_requests`
//! (`PROPTEST_CASES` works too).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use egress_core::engine::{Decision, Engine, Forward, LocalReply, ALWAYS_REMOVED};
use egress_core::plan::{FilterConfig, Method, FILTER_CONFIG_VERSION};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// (path_prefix, target, base_path, strip_prefix, rewrite_prefix, methods)
type RouteRow = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static [&'static str]>,
);

/// One target per route, so the target names the route that was taken.
const ROUTES: [RouteRow; 6] = [
    ("/egress", "all", "/all", Some("/egress"), None, None),
    (
        "/egress/crm",
        "crm",
        "/services/data/v58.0",
        Some("/egress/crm"),
        Some("/sobjects"),
        None,
    ),
    (
        "/egress/crm/bulk",
        "bulk",
        "/base",
        Some("/egress/crm/bulk"),
        None,
        Some(&["POST"]),
    ),
    ("/egress/open", "open", "", Some("/egress/open"), None, None),
    (
        "/egress/a:b@c",
        "sub",
        "/x",
        None,
        None,
        Some(&["GET", "HEAD"]),
    ),
    (
        "/egress/v1.0/~me",
        "dots",
        "/d",
        Some("/egress/v1.0"),
        Some("/v2"),
        None,
    ),
];

const SECRETS: [&str; 2] = ["S3CR3T-key", "S3CR3T-token"];

fn engine() -> &'static Engine {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(build_engine)
}

fn build_engine() -> Engine {
    let targets: Vec<serde_json::Value> = ROUTES
        .iter()
        .enumerate()
        .map(|(i, (_, name, base, ..))| {
            let credential = if i % 2 == 0 {
                serde_json::json!({ "type": "api_key", "header": "X-Api-Key", "key": SECRETS[0] })
            } else {
                serde_json::json!({ "type": "bearer", "token": SECRETS[1] })
            };
            serde_json::json!({
                "name": name,
                "url": { "scheme": "https", "host": format!("{name}.example.com"), "port": 443,
                         "explicit_port": false, "base_path": base },
                "credential": credential,
            })
        })
        .collect();
    let routes: Vec<serde_json::Value> = ROUTES
        .iter()
        .map(|(prefix, target, _, strip, rewrite, methods)| {
            serde_json::json!({ "path_prefix": prefix, "target": target, "strip_prefix": strip,
                                "rewrite_prefix": rewrite, "methods": methods })
        })
        .collect();
    let config: FilterConfig = serde_json::from_value(serde_json::json!({
        "version": FILTER_CONFIG_VERSION,
        "enabled": true,
        "log_level": "info",
        "endpoints": { "health": "/health", "ready": "/ready", "passthrough": ["/metrics"] },
        "targets": targets,
        "routes": routes,
    }))
    .unwrap();
    Engine::new(&config).unwrap()
}

fn config() -> Config {
    // The same variable as the config loader's fuzz test (tests/config_fuzz.rs), or proptest's.
    let cases = ["EGRESS_FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Every escape decoded once, as a decoding upstream does.
fn decode_once(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A segment a lenient upstream could read as a dot segment, after any number of decodings.
fn looks_like_traversal(path: &str) -> Option<String> {
    let mut current = path.to_string();
    for _ in 0..3 {
        for seg in current.split('/') {
            let before_param = seg.split(';').next().unwrap_or(seg);
            if before_param == "." || before_param == ".." {
                return Some(format!("dot segment in {current:?}"));
            }
        }
        if current.contains('\\') || current.contains(';') {
            return Some(format!("separator or parameter in {current:?}"));
        }
        current = String::from_utf8_lossy(&decode_once(&current)).into_owned();
    }
    None
}

/// The route a decoding upstream would pick: the longest prefix of the decoded path.
fn route_by_decoded_path(path: &str) -> Option<&'static str> {
    let decoded = String::from_utf8(decode_once(path)).ok()?;
    ROUTES
        .iter()
        .filter(|(p, ..)| {
            decoded
                .strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .max_by_key(|(p, ..)| p.len())
        .map(|(_, t, ..)| *t)
}

fn check_forward(e: &Engine, method: &str, f: &Forward) -> Result<(), TestCaseError> {
    let target = e.target(f.target).unwrap();
    let row = ROUTES.iter().find(|r| r.1 == target.name).unwrap();
    let (path, _query) = f.path.split_once('?').unwrap_or((&f.path, ""));
    let base = target.base_path.as_str();
    prop_assert!(
        path.starts_with(&format!("{base}/")) || path == base,
        "{path:?} is not under {base:?}"
    );
    prop_assert!(path.bytes().all(|b| b.is_ascii_graphic()), "{path:?}");
    if let Some(why) = looks_like_traversal(path) {
        return Err(TestCaseError::fail(why));
    }
    prop_assert!(!path.contains("//"), "{path:?}");
    prop_assert!(std::str::from_utf8(&decode_once(path)).is_ok(), "{path:?}");
    // The route a decoding upstream sees is the one that was taken.
    prop_assert_eq!(
        route_by_decoded_path(&f.original_path),
        Some(target.name.as_str())
    );
    // Only a method of the route's list, or a standard one.
    let allowed = row
        .5
        .map_or(Method::parse(method).is_some(), |ms| ms.contains(&method));
    prop_assert!(allowed, "{method:?} forwarded");
    // Deciding the canonical spelling again gives the same forward.
    match e.decide(method, &f.original_path) {
        Decision::Forward(again) => prop_assert_eq!(&again.path.split('?').next(), &Some(path)),
        other => return Err(TestCaseError::fail(format!("not idempotent: {other:?}"))),
    }
    Ok(())
}

fn check_reply(r: &LocalReply) -> Result<(), TestCaseError> {
    prop_assert!(
        [200, 400, 404, 405].contains(&r.status),
        "unexpected status {}",
        r.status
    );
    for s in SECRETS {
        prop_assert!(!r.body.contains(s));
        prop_assert!(r.headers.iter().all(|(_, v)| !v.contains(s)));
    }
    prop_assert!(serde_json::from_str::<serde_json::Value>(&r.body).is_ok());
    Ok(())
}

fn check_decision(e: &Engine, method: &str, path: &str) -> Result<(), TestCaseError> {
    match e.decide(method, path) {
        Decision::Forward(f) => check_forward(e, method, &f),
        Decision::Respond(r) => check_reply(&r),
        Decision::Ready | Decision::Pass => Ok(()),
    }
}

/// Pieces hostile paths are made of: mostly harmless ones, so that many requests get as far
/// as a forward, and a few that must be refused.
fn hostile_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(HOSTILE.to_vec()).prop_map(str::to_string),
        1 => any::<char>().prop_map(|c| c.to_string()),
    ]
}

const HOSTILE: [&str; 33] = [
    ".",
    "..",
    "%2e",
    "%2E",
    "%2e%2e",
    ".%2E",
    ";",
    ";x",
    "..;",
    "%3b",
    "%c0%ae",
    "%e0%80%ae",
    "%",
    "%2f",
    "%5C",
    "\\",
    "%ef%bc%8e",
    "\u{ff0e}",
    "%00",
    "\r\n",
    "#",
    "%ed%a0%80",
    "\u{7f}",
    " ",
    "|",
    "é",
    "%252e",
    "%25%32%65",
    "%25%32%45",
    "%ff",
    "%E2%80%A5",
    "%0a",
    "\t",
];

fn fragment() -> impl Strategy<Value = String> {
    let harmless = prop::sample::select(vec![
        "/",
        "/",
        "/",
        "egress",
        "crm",
        "bulk",
        "bul%6b",
        "%62ulk",
        "a:b@c",
        "a%3ab%40c",
        "%3a",
        "v1.0",
        "~me",
        "%7Eme",
        "%c3%a9",
        "%E6%97%A5",
        "%20",
        "%41",
        ".well-known",
        "...",
        "+",
        "%2B",
        "=",
        "!",
        "'",
        "%25",
        "%7c",
        "%3F",
        "%23",
    ]);
    let pieces = prop::sample::select(vec![
        "%32", "%65", "%45", "%c0", "%ae", "%e0%80", "%", "?", "%2e", ".", ";",
    ]);
    prop_oneof![
        6 => harmless.prop_map(str::to_string),
        3 => "[a-zA-Z0-9._~-]{1,4}",
        1 => pieces.prop_map(str::to_string),
        1 => hostile_fragment(),
    ]
}

fn hostile_path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (
            prop::sample::select(vec!["/egress", "/egress/crm", "/egress/crm/bulk", "/egress/open", "/egress/a:b@c", "/egress/v1.0/~me", "", "/"]),
            prop::collection::vec(fragment(), 0..8),
        )
            .prop_map(|(start, parts)| format!("{start}/{}", parts.concat())),
        1 => any::<String>(),
        1 => prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn hostile_method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "TRACK",
            "CONNECT", "get", "post", "BREW", "", "GET ", "POST\r\n",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// Legitimate path characters, each of which can be spelled encoded.
fn plain_path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "/egress",
            "/egress/crm",
            "/egress/crm/bulk",
            "/egress/open",
            "/egress/a:b@c",
            "/egress/v1.0/~me",
        ]),
        prop::collection::vec("[a-zA-Z0-9._~:@!$&'()*+,=-]{1,6}", 0..4),
    )
        .prop_map(|(start, segs)| {
            let mut p = start.to_string();
            for s in segs {
                p.push('/');
                p.push_str(&s);
            }
            p
        })
}

/// `plain` with the characters chosen by `mask` percent-encoded, in upper or lower hex.
fn respell(plain: &str, mask: &[u8]) -> String {
    let mut out = String::new();
    for (i, c) in plain.chars().enumerate() {
        let m = mask.get(i % mask.len().max(1)).copied().unwrap_or(0);
        if c != '/' && m % 3 != 0 {
            let code = c as u32;
            if m % 3 == 1 {
                out.push_str(&format!("%{code:02X}"));
            } else {
                out.push_str(&format!("%{code:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_method_and_path_is_decided_safely(method in hostile_method(), path in hostile_path()) {
        let e = engine();
        check_decision(e, &method, &path)?;
    }

    #[test]
    fn one_hostile_piece_in_a_good_path_is_refused_or_harmless(
        method in prop::sample::select(vec!["GET", "POST"]),
        plain in plain_path(),
        at in any::<prop::sample::Index>(),
        piece in hostile_fragment(),
        own_segment in any::<bool>(),
    ) {
        let e = engine();
        let cut = plain
            .char_indices()
            .filter(|(_, c)| *c == '/')
            .map(|(i, _)| i)
            .chain([plain.len()])
            .collect::<Vec<_>>();
        let i = cut[at.index(cut.len())];
        let path = if own_segment {
            format!("{}/{piece}{}", &plain[..i], &plain[i..])
        } else {
            format!("{}{piece}{}", &plain[..i], &plain[i..])
        };
        check_decision(e, method, &path)?;
    }

    #[test]
    fn every_spelling_of_a_path_is_decided_alike(
        method in prop::sample::select(vec!["GET", "POST", "TRACE"]),
        plain in plain_path(),
        mask in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let e = engine();
        let spelled = respell(&plain, &mask);
        let a = e.decide(method, &plain);
        let b = e.decide(method, &spelled);
        match (&a, &b) {
            (Decision::Forward(x), Decision::Forward(y)) => {
                prop_assert_eq!(x.target, y.target, "{} vs {}", plain, spelled);
                prop_assert_eq!(&x.path, &y.path);
                check_forward(e, method, y)?;
            }
            (Decision::Respond(x), Decision::Respond(y)) => {
                prop_assert_eq!((x.status, x.code), (y.status, y.code), "{} vs {}", plain, spelled);
            }
            _ => prop_assert!(false, "{plain:?} -> {a:?}, {spelled:?} -> {b:?}"),
        }
    }

    #[test]
    fn hostile_headers_never_leave_and_the_credential_is_set_once(
        path in plain_path(),
        names in prop::collection::vec(prop_oneof![
            prop::sample::select(vec![
                "Authorization", "proxy-authorization", "X-Api-Key", "host", "Host",
                "x-egress-target", "X-Egress-Anything", "X-HTTP-Method-Override",
                "x-http-method", "x-method-override", "X-Original-URL", "x-rewrite-url",
                "x-envoy-retry-on", "X-Envoy-Internal", "x-forwarded-for", "X-Forwarded-Host",
                "forwarded", "x-real-ip", "x_api_key", "content-type", "accept",
            ]).prop_map(str::to_string),
            "[a-zA-Z_-]{1,20}",
            any::<String>(),
        ], 0..12),
        values in prop::collection::vec(any::<String>(), 12),
    ) {
        let e = engine();
        let Decision::Forward(f) = e.decide("POST", &path) else {
            // Methods lists refuse some; those have nothing to edit.
            return Ok(());
        };
        let mut headers: Vec<(String, String)> = names
            .iter()
            .zip(values.iter().cycle())
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        e.edit_headers(&f, &mut headers, None);
        let target = e.target(f.target).unwrap();
        let own = target.injection.header_name().unwrap();
        for (name, value) in &headers {
            let set_by_us = [":path", ":authority", "x-egress-target", "x-forwarded-proto", own]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name));
            if set_by_us {
                continue;
            }
            prop_assert!(
                !ALWAYS_REMOVED.iter().any(|r| r.matches(name)),
                "{name:?} = {value:?} left the proxy"
            );
        }
        let credentials: Vec<&String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(own))
            .map(|(_, v)| v)
            .collect();
        prop_assert_eq!(credentials.len(), 1);
        prop_assert!(SECRETS.iter().any(|s| credentials[0].contains(s)));
        let proto: Vec<&String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-proto"))
            .map(|(_, v)| v)
            .collect();
        prop_assert_eq!(proto, vec!["https"]);
    }
}

/// The oracle itself: a decoding upstream's view of the seed attacks.
#[test]
fn the_oracles_see_what_a_decoding_upstream_sees() {
    assert!(looks_like_traversal("/a/%252e%252e/b").is_some());
    assert!(looks_like_traversal("/a/..;x/b").is_some());
    assert!(looks_like_traversal("/a/%2e/b").is_some());
    assert!(looks_like_traversal("/a/b.c/d").is_none());
    assert_eq!(route_by_decoded_path("/egress/crm/bul%6b/x"), Some("bulk"));
    assert_eq!(route_by_decoded_path("/egress/a%3Ab@c"), Some("sub"));
    assert_eq!(route_by_decoded_path("/other"), None);
}
