//! Path normalization, prefix matching and rewriting, against the spec's routing table.

use super::*;

fn canonical(raw: &str) -> String {
    match normalize_request_path(raw) {
        Ok(p) => p.path.into_owned(),
        Err(e) => panic!("{raw:?} was refused: {e}"),
    }
}

#[test]
fn splits_query_and_accepts_ordinary_paths() {
    let p = normalize_request_path("/egress/crm/Contact/42?fields=Id,Name&x=%20").unwrap();
    assert_eq!(p.path, "/egress/crm/Contact/42");
    assert!(
        matches!(p.path, Cow::Borrowed(_)),
        "no allocation when canonical"
    );
    assert_eq!(p.query, Some("fields=Id,Name&x=%20"));
    for ok in [
        "/",
        "/egress/crm/",
        "/egress/crm/a%20b",
        "/egress/crm/...",
        "/egress/crm/.well-known",
        "/egress/crm/a:b@c!$&'()*+,=",
        "/egress/crm/100%25",
        "/egress/crm/%25zz",
    ] {
        assert_eq!(canonical(ok), ok);
    }
}

#[test]
fn escapes_of_unreserved_characters_are_decoded_and_hex_is_upper_cased() {
    let cases = [
        ("/egress/crm/bul%6B", "/egress/crm/bulk"),
        ("/egress/crm/bul%6b", "/egress/crm/bulk"),
        ("/%65gress/%63rm", "/egress/crm"),
        (
            "/egress/crm/%41%5a%61%7a%30%39%2D%5F%7E",
            "/egress/crm/AZaz09-_~",
        ),
        ("/egress/crm/%2e%2e%2e", "/egress/crm/..."),
        ("/egress/crm/%c3%a9", "/egress/crm/%C3%A9"),
        (
            "/egress/crm/a%3ab%40%21%24%26%27%28%29%2a%2b%2c%3d",
            "/egress/crm/a:b@!$&'()*+,=",
        ),
        (
            "/egress/crm/%22%3c%3e%5b%5d%5e%60%7b%7c%7d%23%3f%20",
            "/egress/crm/%22%3C%3E%5B%5D%5E%60%7B%7C%7D%23%3F%20",
        ),
        ("/egress/crm/%C3%A9?q=%6b", "/egress/crm/%C3%A9"),
    ];
    for (raw, want) in cases {
        assert_eq!(canonical(raw), want, "{raw}");
    }
    assert_eq!(
        normalize_request_path("/a/%6b?x=%6b").unwrap().query,
        Some("x=%6b"),
        "the query is kept as it came"
    );
}

#[test]
fn refuses_every_spelling_of_a_traversal() {
    let cases = [
        ("/egress/crm/../notify/email", PathError::DotSegment),
        ("/egress/crm/./x", PathError::DotSegment),
        ("/egress/crm/%2e%2e/x", PathError::DotSegment),
        ("/egress/crm/%2E./x", PathError::DotSegment),
        ("/egress/crm/.%2e", PathError::DotSegment),
        ("/egress/crm/..", PathError::DotSegment),
        ("/egress/crm/%ef%bc%8e%ef%bc%8e/x", PathError::DotSegment),
        ("/egress/crm/%E2%80%A5", PathError::DotSegment),
        ("/egress/crm/.%E2%80%A4", PathError::DotSegment),
        ("/egress/crm//x", PathError::EmptySegment),
        ("//egress/crm", PathError::EmptySegment),
        ("/egress/crm/..%2fx", PathError::EncodedSeparator),
        ("/egress/crm/a%2Fb", PathError::EncodedSeparator),
        ("/egress/crm/a%5cb", PathError::EncodedSeparator),
        ("/egress/crm/a\\b", PathError::EncodedSeparator),
        ("/egress/crm/a%EF%BC%8Fb", PathError::EncodedSeparator),
        ("/egress/crm/..;x", PathError::PathParameter),
        ("/egress/crm/.;/x", PathError::PathParameter),
        ("/egress/crm/bulk;jsessionid=1", PathError::PathParameter),
        ("/egress/crm/bulk%3bx", PathError::PathParameter),
        ("/egress/crm/..%3B", PathError::PathParameter),
        ("/egress/crm/%252e%252e/x", PathError::DoubleEncoding),
        ("/egress/crm/%25%32%65%25%32%65", PathError::DoubleEncoding),
        ("/egress/crm/%25%32%45", PathError::DoubleEncoding),
        ("/egress/crm/%2525", PathError::DoubleEncoding),
        ("/egress/crm/%c0%ae%c0%ae/x", PathError::InvalidUtf8),
        ("/egress/crm/%e0%80%ae", PathError::InvalidUtf8),
        ("/egress/crm/%ed%a0%80", PathError::InvalidUtf8),
        ("/egress/crm/%ff", PathError::InvalidUtf8),
        ("/egress/crm/%C3", PathError::InvalidUtf8),
        ("/egress/crm/a%00b", PathError::BadCharacter),
        ("/egress/crm/a%0ab", PathError::BadCharacter),
        ("/egress/crm/a%7f", PathError::BadCharacter),
        ("/egress/crm/a\u{0}b", PathError::BadCharacter),
        ("/egress/crm/a\tb", PathError::BadCharacter),
        ("/egress/crm/a\r\nx: 1", PathError::BadCharacter),
        ("/egress/crm/a b", PathError::BadCharacter),
        ("/egress/crm/a\u{7f}", PathError::BadCharacter),
        ("/egress/crm/a%zz", PathError::MalformedEscape),
        ("/egress/crm/a%2", PathError::MalformedEscape),
        ("/egress/crm/a%", PathError::MalformedEscape),
        ("/egress/crm/a%%41", PathError::MalformedEscape),
        ("/egress/crm/é", PathError::NonAscii),
        ("/egress/crm/%2e😀", PathError::NonAscii),
        ("/egress/crm/a#frag", PathError::MustBeEncoded),
        ("/egress/crm/{x}", PathError::MustBeEncoded),
        ("/egress/crm/a|b", PathError::MustBeEncoded),
        ("/egress/crm/a\"b", PathError::MustBeEncoded),
        ("/egress/crm?a b", PathError::BadQuery),
        ("/egress/crm?a\r\nb", PathError::BadQuery),
        ("/egress/crm?é", PathError::BadQuery),
        ("/egress/crm?a#b", PathError::BadQuery),
        ("egress/crm", PathError::NotAbsolute),
        ("", PathError::NotAbsolute),
        ("?x", PathError::NotAbsolute),
        ("*", PathError::NotAbsolute),
        ("http://evil.example/egress/crm", PathError::NotAbsolute),
    ];
    for (raw, want) in cases {
        assert_eq!(normalize_request_path(raw), Err(want), "{raw:?}");
    }
}

/// Legitimate UTF-8, percent-encoded, passes in its canonical spelling.
#[test]
fn percent_encoded_utf8_is_accepted() {
    for (raw, want) in [
        ("/egress/crm/Contact/%C3%A9", "/egress/crm/Contact/%C3%A9"),
        (
            "/egress/crm/%e6%97%a5%e6%9c%ac",
            "/egress/crm/%E6%97%A5%E6%9C%AC",
        ),
        ("/egress/crm/%F0%9F%98%80", "/egress/crm/%F0%9F%98%80"),
        (
            "/egress/crm/x%EF%BC%8E%EF%BC%8E",
            "/egress/crm/x%EF%BC%8E%EF%BC%8E",
        ),
    ] {
        assert_eq!(canonical(raw), want, "{raw}");
    }
}

/// Regression: slicing a segment by bytes panicked (and trapped the VM) when byte 3 fell
/// inside a multi-byte character. Raw non-ASCII is now refused, without a panic.
#[test]
fn multibyte_segments_never_panic() {
    for raw in [
        "/egress/notify/😀",
        "/egress/notify/a😀",
        "/egress/notify/ééé",
        "/nope/%2e😀",
        "/é/.é",
        "/a/%2e%2e/😀",
    ] {
        assert_eq!(
            normalize_request_path(raw),
            Err(PathError::NonAscii),
            "{raw}"
        );
    }
}

#[test]
fn prefixes_match_only_at_segment_boundaries() {
    assert!(is_boundary_prefix("/egress/crm", "/egress/crm"));
    assert!(is_boundary_prefix("/egress/crm", "/egress/crm/x"));
    assert!(!is_boundary_prefix("/egress/crm", "/egress/crmx"));
    assert!(!is_boundary_prefix("/egress/crm", "/egress"));
    assert!(is_boundary_prefix("/", "/anything"));
}

#[test]
fn config_prefixes_are_normalized_or_refused() {
    assert_eq!(validate_prefix("/egress/crm/").unwrap(), "/egress/crm");
    assert_eq!(validate_prefix("/").unwrap(), "/");
    assert_eq!(validate_prefix("/egress/v1.0:x").unwrap(), "/egress/v1.0:x");
    for bad in [
        "egress", "/a//b", "/a/../b", "/a/.", "/a?x", "/a%2f", "/a b", "/a;b", "/é", "/a#b",
        "/a\\b", "/a|b",
    ] {
        assert!(validate_prefix(bad).is_err(), "{bad}");
    }
}

/// Config validation shows these texts after the field path: they are kept as they were.
#[test]
fn prefix_errors_keep_their_texts() {
    let text = |p: &str| validate_prefix(p).map_err(|e| e.to_string());
    assert_eq!(
        text("egress"),
        Err(r#""egress" must start with '/'"#.into())
    );
    assert_eq!(
        text("/a\\b"),
        Err(r#""/a\\b" must be a plain path: letters, digits and -._~:@!$&'()*+,= between '/' (no '?', '#', '%', ';', '\', spaces or non-ASCII)"#.into())
    );
    assert_eq!(
        text("/a//b"),
        Err(r#""/a//b" must not contain empty, '.' or '..' segments"#.into())
    );
    assert_eq!(
        validate_prefix("/a/../b/"),
        Err(PrefixError::BadSegment("/a/../b/".into()))
    );
}

#[test]
fn rewrites_every_row_of_the_spec_routing_table() {
    let sf = "/services/data/v58.0";
    assert_eq!(
        rewrite(
            "/egress/crm/Contact",
            None,
            Some("/egress/crm"),
            Some("/sobjects"),
            sf
        ),
        "/services/data/v58.0/sobjects/Contact"
    );
    assert_eq!(
        rewrite(
            "/egress/crm/Contact/123",
            None,
            Some("/egress/crm"),
            Some("/sobjects"),
            sf
        ),
        "/services/data/v58.0/sobjects/Contact/123"
    );
    assert_eq!(
        rewrite(
            "/egress/notify/email",
            None,
            Some("/egress/notify"),
            None,
            ""
        ),
        "/email"
    );
    assert_eq!(
        rewrite(
            "/egress/audit/events",
            None,
            Some("/egress/audit"),
            None,
            ""
        ),
        "/events"
    );
    assert_eq!(
        rewrite(
            "/egress/analytics/stats",
            None,
            Some("/egress/analytics"),
            None,
            "/api/v2"
        ),
        "/api/v2/stats"
    );
    assert_eq!(
        rewrite(
            "/egress/erp/customers",
            None,
            Some("/egress/erp"),
            Some("/v1"),
            "/api"
        ),
        "/api/v1/customers"
    );
}

#[test]
fn rewrite_keeps_query_and_handles_bare_prefix_and_trailing_slash() {
    assert_eq!(
        rewrite(
            "/egress/crm/Contact",
            Some("a=1&b=2"),
            Some("/egress/crm"),
            Some("/sobjects"),
            "/base"
        ),
        "/base/sobjects/Contact?a=1&b=2"
    );
    assert_eq!(
        rewrite("/egress/notify", None, Some("/egress/notify"), None, ""),
        "/"
    );
    assert_eq!(
        rewrite(
            "/egress/crm",
            None,
            Some("/egress/crm"),
            Some("/sobjects"),
            "/b"
        ),
        "/b/sobjects"
    );
    assert_eq!(
        rewrite(
            "/egress/crm/",
            None,
            Some("/egress/crm"),
            Some("/sobjects"),
            "/b"
        ),
        "/b/sobjects/"
    );
    assert_eq!(
        rewrite("/egress/x/y", None, None, None, "/base"),
        "/base/egress/x/y"
    );
    assert_eq!(rewrite("/egress/x", None, Some("/egress"), None, ""), "/x");
}
