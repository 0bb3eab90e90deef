//! Header hygiene of the built egress filter: what the caller sent that never reaches the
//! target, and the one credential header that does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod egress_common;

use egress_common::*;

// ---- header hygiene -------------------------------------------------------------------------

#[test]
fn caller_credentials_and_internal_headers_are_replaced_and_others_kept() {
    let (_host, worker) = seed_worker();
    let stream = request(
        &worker,
        "POST",
        "/egress/notify/email",
        &[
            ("Authorization", "Bearer caller-token"),
            ("Proxy-Authorization", "Basic Y2FsbGVyOnB3"),
            ("X-API-Key", "caller-key"),
            ("x-api-key", "caller-key-2"),
            ("X-Egress-Target", "audit"),
            ("x-egress-debug", "1"),
            ("X-EGRESS-Anything", "x"),
            ("content-type", "application/json"),
            ("x-request-id", "req-42"),
            ("accept", "*/*"),
        ],
    );
    expect_forward(&stream);
    assert!(headers_named(&stream, "authorization").is_empty());
    assert!(headers_named(&stream, "proxy-authorization").is_empty());
    assert_eq!(headers_named(&stream, "x-api-key"), vec![NOTIFY_KEY]);
    assert_eq!(
        headers_named(&stream, "x-egress-target"),
        vec!["notification"]
    );
    let internal: Vec<String> = stream
        .request_header_map()
        .into_iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| k.starts_with("x-egress-") && k != "x-egress-target")
        .collect();
    assert!(
        internal.is_empty(),
        "caller's internal headers kept: {internal:?}"
    );
    for (name, value) in [
        ("content-type", "application/json"),
        ("x-request-id", "req-42"),
        ("accept", "*/*"),
        ("user-agent", "egress-test"),
        (":scheme", "http"),
        (":method", "POST"),
    ] {
        assert_eq!(headers_named(&stream, name), vec![value], "{name}");
    }
}

#[test]
fn exactly_one_credential_header_for_bearer_basic_and_none_for_mtls() {
    let (_host, worker) = seed_worker();
    let caller = [
        ("authorization", "Bearer caller"),
        ("AUTHORIZATION", "Basic Y2FsbGVy"),
        ("proxy-authorization", "Bearer p"),
    ];
    let cases = [
        (
            "GET",
            "/egress/analytics/stats",
            Some(format!("Bearer {ANALYTICS_TOKEN}")),
        ),
        (
            "GET",
            "/egress/erp/customers",
            Some(format!("Basic {ERP_BASIC}")),
        ),
        ("POST", "/egress/audit/events", None),
    ];
    for (method, path, expected) in cases {
        let stream = request(&worker, method, path, &caller);
        expect_forward(&stream);
        assert_eq!(
            headers_named(&stream, "authorization"),
            expected.into_iter().collect::<Vec<_>>(),
            "{path}"
        );
        assert!(headers_named(&stream, "proxy-authorization").is_empty());
        // A caller's x-api-key is not the target's header here: it is left alone.
        assert!(headers_named(&stream, "x-api-key").is_empty(), "{path}");
    }
}

#[test]
fn thousand_headers_never_trap_and_are_kept() {
    let (_host, worker) = seed_worker();
    let names: Vec<String> = (0..1000).map(|i| format!("x-h-{i}")).collect();
    let mut headers = vec![(":method", "POST"), (":path", "/egress/notify/email")];
    headers.extend(names.iter().map(|n| (n.as_str(), "v")));
    let s = survives(&worker, "1000 headers", headers);
    assert!(s.local_response().is_none());
    let kept = s
        .request_header_map()
        .into_iter()
        .filter(|(k, _)| k.starts_with("x-h-"))
        .count();
    assert_eq!(kept, 1000);
    assert_eq!(headers_named(&s, "x-api-key"), vec![NOTIFY_KEY]);
}

#[test]
fn header_value_with_crlf_never_traps_or_splits() {
    let (_host, worker) = seed_worker();
    let s = survives(
        &worker,
        "CRLF in a header value",
        vec![
            (":method", "POST"),
            (":path", "/egress/notify/email"),
            ("x-evil", "a\r\nx-api-key: stolen\r\n"),
            ("authorization", "Bearer x\r\nx-egress-target: audit"),
        ],
    );
    // Whatever happened, no header was smuggled in and the target's key is the only one.
    assert!(headers_named(&s, "x-api-key")
        .iter()
        .all(|v| v == NOTIFY_KEY));
    assert!(headers_named(&s, "x-egress-target")
        .iter()
        .all(|v| v == "notification"));
    assert!(headers_named(&s, "authorization").is_empty());
}

/// Headers that change what the target does, or tell it about our network, never leave: the
/// same list `egressctl explain` prints (egress_core::engine::ALWAYS_REMOVED).
#[test]
fn caller_headers_that_change_what_the_target_does_are_removed() {
    let (_host, worker) = seed_worker();
    let hostile = [
        ("X-HTTP-Method-Override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("X-Method-Override", "PUT"),
        ("X-Original-URL", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-envoy-retry-on", "5xx"),
        ("X-Envoy-Upstream-Rq-Timeout-Ms", "1"),
        ("x-envoy-original-path", "/admin"),
        ("X-Forwarded-For", "10.1.2.3"),
        ("x-forwarded-host", "internal.corp"),
        ("X-Forwarded-Proto", "http"),
        ("Forwarded", "for=10.1.2.3"),
        ("X-Real-IP", "10.1.2.3"),
        ("x_api_key", "caller-key"),
        ("X_Egress_Target", "audit"),
        ("Host", "internal.corp"),
    ];
    for (method, path, credential) in [
        ("POST", "/egress/notify/email", "x-api-key"),
        ("GET", "/egress/erp/customers", "authorization"),
        ("POST", "/egress/audit/events", ""),
    ] {
        let stream = request(&worker, method, path, &hostile);
        expect_forward(&stream);
        for (name, value) in stream.request_header_map() {
            let lower = name.to_ascii_lowercase();
            let ours = [
                ":path",
                ":authority",
                ":method",
                ":scheme",
                "x-egress-target",
                "x-forwarded-proto",
                credential,
            ];
            assert!(
                !hostile.iter().any(|(h, _)| h.eq_ignore_ascii_case(&name))
                    || ours.contains(&lower.as_str()),
                "{path}: {name}: {value} left the proxy"
            );
            assert!(
                !value.contains("10.1.2.3") && !value.contains("internal.corp"),
                "{path}: {name}: {value}"
            );
        }
        assert_eq!(headers_named(&stream, ":method"), vec![method], "{path}");
        // Envoy needs x-forwarded-proto to find a route: the target's scheme, not the caller's.
        assert_eq!(
            headers_named(&stream, "x-forwarded-proto"),
            vec!["https"],
            "{path}"
        );
        assert_eq!(
            headers_named(&stream, "user-agent"),
            vec!["egress-test"],
            "{path}"
        );
        stream.finish().unwrap();
    }
}
