//! What a hostile internal caller tried, as regression tests: other spellings of a path to miss
//! a route, traversal-like segments, methods that echo or tunnel, headers that change what the
//! target does. The config is the compiled JSON, so these run without the `yaml` feature.

#![allow(clippy::indexing_slicing)]

use super::*;

const SECRETS: [&str; 3] = ["crm-secret", "bulk-secret", "open-pass"];

fn engine() -> Engine {
    Engine::new(&config()).unwrap()
}

/// Two targets on nested routes (`/egress/crm`, `/egress/crm/bulk` POST only), a third, and a
/// route prefix with sub-delimiters; health, ready and a passthrough endpoint.
pub(super) fn config() -> FilterConfig {
    serde_json::from_value(serde_json::json!({
        "version": FILTER_CONFIG_VERSION,
        "enabled": true,
        "log_level": "info",
        "endpoints": { "health": "/health", "ready": "/ready", "passthrough": ["/metrics"] },
        "targets": [
            { "name": "crm",
              "url": { "scheme": "https", "host": "crm.example.com", "port": 443,
                       "explicit_port": false, "base_path": "/services/data/v58.0" },
              "credential": { "type": "api_key", "header": "X-Api-Key", "key": "crm-secret" } },
            { "name": "bulk",
              "url": { "scheme": "https", "host": "bulk.example.com", "port": 443,
                       "explicit_port": false, "base_path": "/base" },
              "credential": { "type": "bearer", "token": "bulk-secret" } },
            { "name": "open",
              "url": { "scheme": "http", "host": "open.example.com", "port": 8080,
                       "explicit_port": true, "base_path": "" },
              "credential": { "type": "basic", "username": "u", "password": "open-pass" } }
        ],
        "routes": [
            { "path_prefix": "/egress/crm", "target": "crm", "strip_prefix": "/egress/crm",
              "rewrite_prefix": "/sobjects", "methods": null },
            { "path_prefix": "/egress/crm/bulk", "target": "bulk",
              "strip_prefix": "/egress/crm/bulk", "rewrite_prefix": null, "methods": ["POST"] },
            { "path_prefix": "/egress/open", "target": "open", "strip_prefix": "/egress/open",
              "rewrite_prefix": null, "methods": null },
            { "path_prefix": "/egress/a:b@c", "target": "open", "strip_prefix": null,
              "rewrite_prefix": null, "methods": null }
        ]
    }))
    .unwrap()
}

fn reply(e: &Engine, method: &str, path: &str) -> LocalReply {
    match e.decide(method, path) {
        Decision::Respond(r) => {
            for s in SECRETS {
                assert!(!r.body.contains(s), "{method} {path}: {}", r.body);
            }
            r
        }
        other => panic!("{method} {path:?}: expected a local reply, got {other:?}"),
    }
}

fn forward(e: &Engine, method: &str, path: &str) -> (String, Forward) {
    match e.decide(method, path) {
        Decision::Forward(f) => (e.target(f.target).unwrap().name.clone(), f),
        other => panic!("{method} {path:?}: expected a forward, got {other:?}"),
    }
}

/// Every spelling of `text` with one character percent-encoded, in upper and lower hex.
fn one_char_encoded(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        if c == '/' {
            continue;
        }
        for hex in [format!("%{:02X}", c as u32), format!("%{:02x}", c as u32)] {
            out.push(format!("{}{hex}{}", &text[..i], &text[i + 1..]));
        }
    }
    out
}

#[test]
fn every_spelling_of_a_specific_route_takes_that_route() {
    let e = engine();
    let spellings = one_char_encoded("/egress/crm/bulk/jobs");
    assert!(spellings.len() > 30);
    for path in spellings.iter().map(String::as_str).chain([
        "/egress/crm/%62%75%6c%6b/jobs",
        "/%65%67%72%65%73%73/%63%72%6D/%62%55%6C%6B/jobs",
        "/egress/crm/bulk/jobs/",
    ]) {
        if path.contains("%55") {
            // 'U' is not 'u': another route.
            assert_eq!(forward(&e, "GET", path).0, "crm", "{path}");
            continue;
        }
        // The bulk route allows POST only: the spelling must not reach the broader crm route.
        let r = reply(&e, "GET", path);
        assert_eq!((r.status, r.code), (405, "method_not_allowed"), "{path}");
        let (target, f) = forward(&e, "POST", path);
        assert_eq!(target, "bulk", "{path}");
        assert!(
            f.path == "/base/jobs" || f.path == "/base/jobs/",
            "{path} -> {}",
            f.path
        );
        assert_eq!(
            f.original_path.trim_end_matches('/'),
            "/egress/crm/bulk/jobs"
        );
    }
}

#[test]
fn the_canonical_spelling_is_forwarded() {
    let e = engine();
    for (raw, want) in [
        (
            "/egress/crm/Contact/%C3%A9",
            "/services/data/v58.0/sobjects/Contact/%C3%A9",
        ),
        (
            "/egress/crm/Contact/%c3%a9",
            "/services/data/v58.0/sobjects/Contact/%C3%A9",
        ),
        (
            "/egress/crm/%43ontact/%34%32",
            "/services/data/v58.0/sobjects/Contact/42",
        ),
        (
            "/egress/crm/a%2Bb%3d?x=%6b",
            "/services/data/v58.0/sobjects/a+b=?x=%6b",
        ),
        (
            "/egress/crm/a%7Cb%7c",
            "/services/data/v58.0/sobjects/a%7Cb%7C",
        ),
        ("/egress/crm/%7e%2D", "/services/data/v58.0/sobjects/~-"),
        ("/egress/open/%E6%97%A5", "/%E6%97%A5"),
        ("/egress/a%3Ab%40c/x", "/egress/a:b@c/x"),
        ("/egress/a%3ab%40c", "/egress/a:b@c"),
        ("/egress/a:b@c/x", "/egress/a:b@c/x"),
    ] {
        assert_eq!(forward(&e, "GET", raw).1.path, want, "{raw}");
    }
}

#[test]
fn traversal_like_segments_get_400_invalid_path_on_every_route() {
    let e = engine();
    for route in [
        "/egress/crm",
        "/egress/crm/bulk",
        "/egress/open",
        "/nowhere",
    ] {
        for attack in ATTACKS {
            let path = format!("{route}/{attack}/x");
            for method in ["GET", "POST"] {
                let r = reply(&e, method, &path);
                assert_eq!(
                    (r.status, r.code),
                    (400, "invalid_path"),
                    "{method} {path:?}"
                );
            }
        }
    }
}

/// Segments that read as another path to some upstream (each put between `/route/` and `/x`).
pub(super) const ATTACKS: [&str; 37] = [
    "..",
    ".",
    "..;x",
    ".;",
    "..;",
    ".;/x",
    "%2e%2e",
    "%2E.",
    "%2e%2e;a=b",
    "%252e%252e",
    "%25%32%65%25%32%65",
    "%25%32%45",
    "%c0%ae%c0%ae",
    "%e0%80%ae",
    "%c0%2e",
    "%ed%a0%80",
    "%ff",
    "%ef%bc%8e%ef%bc%8e",
    "%E2%80%A5",
    "..%2f",
    "%2F",
    "%5c..",
    "..\\x",
    "a%00",
    "a\u{0}",
    "a%0d%0ax:1",
    "a\r\nx: 1",
    "a\tb",
    "a b",
    "é",
    "😀",
    "\u{ff0e}\u{ff0e}",
    "a%",
    "a%g0",
    "bulk;jsessionid=1",
    "bulk%3bx",
    "",
];

#[test]
fn methods_outside_the_standard_set_get_405_on_routes_without_a_method_list() {
    let e = engine();
    let standard = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
    for path in ["/egress/crm/Contact", "/egress/open/x", "/egress/a:b@c"] {
        for method in [
            "TRACE",
            "TRACK",
            "CONNECT",
            "trace",
            "get",
            "Get",
            "BREW",
            "PROPFIND",
            "DEBUG",
            "",
            " GET",
            "GET ",
            "GET\r\n",
            "\u{0}",
            "POST\u{0}",
        ] {
            let r = reply(&e, method, path);
            assert_eq!(
                (r.status, r.code),
                (405, "method_not_allowed"),
                "{method:?} {path}"
            );
            assert!(
                r.headers.contains(&("allow", standard.to_string())),
                "{method:?}"
            );
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["allowed"].as_array().map(Vec::len), Some(7));
        }
        for m in Method::ALL {
            forward(&e, m.as_str(), path);
        }
    }
    // A route with a list keeps its own Allow.
    let r = reply(&e, "TRACE", "/egress/crm/bulk/x");
    assert!(r.headers.contains(&("allow", "POST".to_string())));
}

#[test]
fn caller_headers_that_change_what_the_target_does_never_leave() {
    let e = engine();
    let hostile = [
        "X-HTTP-Method-Override",
        "x-http-method",
        "X-Method-Override",
        "X-Original-URL",
        "x-rewrite-url",
        "x-envoy-retry-on",
        "X-Envoy-Upstream-Rq-Timeout-Ms",
        "x-envoy-original-path",
        "x-envoy-internal",
        "X-Forwarded-For",
        "x-forwarded-host",
        "X-Forwarded-Proto",
        "x-forwarded-prefix",
        "Forwarded",
        "X-Real-IP",
        "x_api_key",
        "X_Api_Key",
        "authorization_",
        "Authorization",
        "proxy-authorization",
        "Host",
        "x-egress-target",
    ];
    let kept = [
        "content-type",
        "accept",
        "x-request-id",
        "user-agent",
        "x-api-keys",
    ];
    for path in ["/egress/crm/Contact", "/egress/open/x"] {
        let (_, f) = forward(&e, "GET", path);
        let mut h: Vec<(String, String)> = hostile
            .iter()
            .chain(kept.iter())
            .map(|n| (n.to_string(), "caller".to_string()))
            .collect();
        h.push(("x-forwarded-for".into(), "10.0.0.7".into()));
        e.edit_headers(&f, &mut h, None);
        let proto: Vec<&str> = h
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-proto"))
            .map(|(_, v)| v.as_str())
            .collect();
        let scheme = if path.starts_with("/egress/open") {
            "http"
        } else {
            "https"
        };
        assert_eq!(proto, [scheme], "{path}: the target's scheme, once");
        for (name, value) in &h {
            if value == "caller" || value == "10.0.0.7" {
                assert!(
                    kept.contains(&name.as_str()),
                    "{path}: {name} left the proxy"
                );
            }
        }
        for name in kept {
            assert!(
                h.iter().any(|(n, _)| n == name),
                "{path}: {name} was removed"
            );
        }
    }
}

#[test]
fn header_edits_remove_exactly_what_the_rules_describe() {
    let e = engine();
    let names = [
        "x-envoy-foo",
        "X-Forwarded-For",
        "x_y",
        "host",
        "x-api-key",
        "X-API-KEY",
        "accept",
        "x-egress-target",
        "forwarded",
        "x-http-method",
        "te",
        "authorization",
    ];
    for path in ["/egress/crm/x", "/egress/open/x"] {
        let (_, f) = forward(&e, "GET", path);
        let (edits, _) = e.header_edits(&f, names, None);
        let rules: Vec<RemoveRule<'_>> = e.remove_rules(f.target).collect();
        let mut want: Vec<&str> = Vec::new();
        for n in names {
            // Each name once, as it first arrived; a name the edits set is replaced (every
            // value), not removed first.
            if rules.iter().any(|r| r.matches(n))
                && !want.iter().any(|w| w.eq_ignore_ascii_case(n))
                && !edits.set.iter().any(|(s, _)| s.eq_ignore_ascii_case(n))
            {
                want.push(n);
            }
        }
        assert_eq!(edits.remove, want, "{path}");
        // The crm target's own header is among the rules, the open target's is not.
        let own = rules.iter().any(|r| r.matches("x-api-key"));
        assert_eq!(own, path.starts_with("/egress/crm"), "{path}");
    }
}

#[test]
fn describe_set_shows_every_set_header_with_the_credential_redacted() {
    let e = engine();
    let (_, f) = forward(&e, "GET", "/egress/crm/Contact?q=1");
    let set = e.describe_set(&f);
    let names: Vec<&str> = set.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            ":path",
            ":authority",
            "x-egress-target",
            "x-forwarded-proto",
            "x-api-key"
        ]
    );
    assert!(set.contains(&("x-forwarded-proto".into(), "https".into())));
    assert!(set.contains(&("x-api-key".into(), "<redacted>".into())));
    assert!(set.contains(&(
        ":path".into(),
        "/services/data/v58.0/sobjects/Contact?q=1".into()
    )));
    for (_, v) in &set {
        for s in SECRETS {
            assert!(!v.contains(s));
        }
    }
}
