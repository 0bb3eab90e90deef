//! Paths: the prefixes in the config, and the request path as it arrives.
//!
//! A request must never reach a path outside its target's base path, nor reach a route other
//! than the one its target would see. Before matching, the request path is brought to one
//! canonical spelling, and that spelling is both matched and forwarded:
//!
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`, RFC 3986 6.2.2.2) are
//!   decoded (`/egress/crm/bul%6B` is `/egress/crm/bulk`), and so are the other characters a
//!   segment may carry raw (`:@!$&'()*+,=`): RFC 3986 calls `%3A` and `:` different, but
//!   nearly every server decodes them alike before routing, so a prefix written with `:` must
//!   catch both; the hex digits of every other escape are upper-cased (`%c3%a9` is `%C3%A9`,
//!   6.2.2.1);
//!
//! and whatever a common upstream could read differently from us is refused:
//!
//! - dot segments (`.`, `..`, also `%2e` and look-alikes such as U+FF0E), empty segments
//!   (`//`), encoded slashes and backslashes (`%2F`, `%5C`, `\`), which Envoy forwards
//!   undecoded and many upstreams turn into separators;
//! - `;` and `%3B` (path parameters: Java servers drop `;x` from a segment, so `bulk;x` is
//!   `bulk` and `..;x` is `..`; some decode `%3B` first);
//! - double encoding (`%25` followed by two hex digits: `%252e` is `.` to a double decoder);
//! - escapes that do not decode to valid UTF-8 (overlong forms such as `%C0%AE`, surrogates,
//!   stray continuation bytes);
//! - raw bytes outside the RFC 3986 path characters: controls, space, non-ASCII (legitimate
//!   UTF-8 is percent-encoded), `"<>[]^`{|}#` and the like.
//!
//! The query is kept as it came, minus controls, spaces, non-ASCII bytes and `#`.

use std::borrow::Cow;

/// A request path in its canonical spelling, and the raw query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath<'a> {
    /// Starts with `/`; no dot segments, no empty segments except a trailing `/`; the one
    /// spelling that is matched and forwarded.
    pub path: Cow<'a, str>,
    /// Everything after `?`, without the `?` (`None` when there was no `?`).
    pub query: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path contains a dot segment ('.' or '..', also percent-encoded or a look-alike)")]
    DotSegment,
    #[error("the path contains an empty segment ('//')")]
    EmptySegment,
    #[error("the path contains an encoded slash or a backslash")]
    EncodedSeparator,
    #[error("the path contains a control character or a space")]
    BadCharacter,
    #[error("the path contains a malformed percent-escape")]
    MalformedEscape,
    #[error("the path contains a raw non-ASCII byte (percent-encode UTF-8)")]
    NonAscii,
    #[error("the path contains a character that must be percent-encoded")]
    MustBeEncoded,
    #[error("the path contains ';' or '%3B' (path parameters are not accepted)")]
    PathParameter,
    #[error("the path contains a double-encoded escape ('%25' followed by hex digits)")]
    DoubleEncoding,
    #[error("the path's percent-escapes do not decode to valid UTF-8")]
    InvalidUtf8,
    #[error("the query contains a control character, a space, a non-ASCII byte or '#'")]
    BadQuery,
}

/// Unreserved characters (RFC 3986 2.3).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters a canonical path carries raw besides `%`: unreserved ones, `/`, `:`, `@` and
/// the sub-delimiters except `;`. An escape of one of these (but `/`) is decoded.
fn is_plain_path_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'/' | b':'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Why a raw path byte is refused, or `None` when it may stay.
fn raw_byte_error(b: u8) -> Option<PathError> {
    if is_plain_path_char(b) {
        return None;
    }
    Some(match b {
        b'\\' => PathError::EncodedSeparator,
        b';' => PathError::PathParameter,
        0x00..=0x20 | 0x7f => PathError::BadCharacter,
        0x80..=0xff => PathError::NonAscii,
        _ => PathError::MustBeEncoded,
    })
}

/// Checks the `:path` of a request, brings it to its canonical spelling and splits off the
/// query. Allocates only when the spelling changes.
pub fn normalize_request_path(raw: &str) -> Result<RequestPath<'_>, PathError> {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if let Some(q) = query {
        if q.bytes().any(|b| b <= 0x20 || b >= 0x7f || b == b'#') {
            return Err(PathError::BadQuery);
        }
    }
    let canonical = canonical_spelling(path)?;
    check_canonical(&canonical)?;
    Ok(RequestPath {
        path: canonical,
        query,
    })
}

/// Decodes the escapes of characters a path may carry raw, upper-cases the others; refuses
/// bytes that are never valid.
fn canonical_spelling(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            if let Some(e) = raw_byte_error(b) {
                return Err(e);
            }
            if let Some(o) = out.as_mut() {
                o.push(b);
            }
            i += 1;
            continue;
        }
        let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(&h), Some(&l)) => (h, l),
            _ => return Err(PathError::MalformedEscape),
        };
        let value = match (hex_value(hi), hex_value(lo)) {
            (Some(h), Some(l)) => h * 16 + l,
            _ => return Err(PathError::MalformedEscape),
        };
        match value {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            0x00..=0x1f | 0x7f => return Err(PathError::BadCharacter),
            _ => {}
        }
        if value == b';' {
            return Err(PathError::PathParameter);
        }
        let upper_hi = HEX_UPPER
            .get(usize::from(value >> 4))
            .copied()
            .unwrap_or(b'0');
        let upper_lo = HEX_UPPER
            .get(usize::from(value & 0xf))
            .copied()
            .unwrap_or(b'0');
        let decode = is_plain_path_char(value);
        if decode || hi != upper_hi || lo != upper_lo {
            let o = out.get_or_insert_with(|| {
                let mut v = Vec::with_capacity(bytes.len());
                v.extend_from_slice(bytes.get(..i).unwrap_or_default());
                v
            });
            if decode {
                o.push(value);
            } else {
                o.extend_from_slice(&[b'%', upper_hi, upper_lo]);
            }
        } else if let Some(o) = out.as_mut() {
            o.extend_from_slice(&[b'%', hi, lo]);
        }
        i += 3;
    }
    match out {
        None => Ok(Cow::Borrowed(path)),
        // Only ASCII was pushed (raw non-ASCII bytes are refused above).
        Some(v) => String::from_utf8(v)
            .map(Cow::Owned)
            .map_err(|_| PathError::NonAscii),
    }
}

/// The checks on the canonical spelling: segments, double encoding, UTF-8 of the escapes.
fn check_canonical(path: &str) -> Result<(), PathError> {
    let bytes = path.as_bytes();
    // `%25` then two hex digits: a second decoding makes an escape of it.
    let mut decoded: Vec<u8> = Vec::new();
    let mut i = 0;
    let mut has_escape = false;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            has_escape = true;
            let value = match (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(h), Some(l)) => h * 16 + l,
                _ => return Err(PathError::MalformedEscape),
            };
            if value == b'%'
                && bytes.get(i + 3).copied().and_then(hex_value).is_some()
                && bytes.get(i + 4).copied().and_then(hex_value).is_some()
            {
                return Err(PathError::DoubleEncoding);
            }
            decoded.push(value);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    let text: Cow<'_, str> = if has_escape {
        Cow::Owned(String::from_utf8(decoded).map_err(|_| PathError::InvalidUtf8)?)
    } else {
        Cow::Borrowed(path)
    };
    // Segments of the decoded text: the escapes left (all but unreserved ones) cannot make a
    // separator or a dot, so its segments are those of the canonical path.
    let rest = text.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        if seg.is_empty() {
            // A single trailing slash ("/a/b/") and the root ("/") are fine.
            if segments.peek().is_none() {
                continue;
            }
            return Err(PathError::EmptySegment);
        }
        if seg.chars().any(is_separator_lookalike) {
            return Err(PathError::EncodedSeparator);
        }
        if is_dot_segment(seg) {
            return Err(PathError::DotSegment);
        }
    }
    Ok(())
}

/// Characters that Unicode compatibility normalization (NFKC) turns into a slash or backslash.
fn is_separator_lookalike(c: char) -> bool {
    matches!(c, '\u{FF0F}' | '\u{FF3C}' | '\u{FE68}')
}

/// `.`, `..`, and what NFKC makes of look-alikes (U+FF0E, U+FE52, U+2024 one dot; U+2025 two).
fn is_dot_segment(seg: &str) -> bool {
    let mut dots = 0;
    for c in seg.chars() {
        dots += match c {
            '.' | '\u{FF0E}' | '\u{FE52}' | '\u{2024}' => 1,
            '\u{2025}' => 2,
            _ => return false,
        };
        if dots > 2 {
            return false;
        }
    }
    dots == 1 || dots == 2
}

/// Checks a prefix written in the config and normalizes it (no trailing `/`, except `/`).
/// A prefix is written in the canonical spelling of request paths (unreserved characters,
/// `:@!$&'()*+,=`), so that the requests it is meant for can match it.
pub fn validate_prefix(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with '/'"));
    }
    if !p.bytes().all(is_plain_path_char) {
        return Err(format!(
            "{p:?} must be a plain path: letters, digits and -._~:@!$&'()*+,= between '/' (no '?', '#', '%', ';', '\\', spaces or non-ASCII)"
        ));
    }
    let trimmed = if p.len() > 1 {
        p.trim_end_matches('/')
    } else {
        p
    };
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    if let Some(rest) = trimmed.strip_prefix('/').filter(|r| !r.is_empty()) {
        for seg in rest.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(format!(
                    "{p:?} must not contain empty, '.' or '..' segments"
                ));
            }
        }
    }
    Ok(trimmed.to_string())
}

/// Whether `prefix` matches `path` at a segment boundary: `/egress/crm` matches
/// `/egress/crm` and `/egress/crm/x`, not `/egress/crmx`. `/` matches everything.
pub fn is_boundary_prefix(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Builds the outgoing path: base path, then `rewrite_prefix`, then what is left after
/// `strip_prefix`; the query string is kept as it came.
pub fn rewrite(
    path: &str,
    query: Option<&str>,
    strip_prefix: Option<&str>,
    rewrite_prefix: Option<&str>,
    base_path: &str,
) -> String {
    let rest = match strip_prefix {
        Some("/") => path,
        Some(s) if is_boundary_prefix(s, path) => path.get(s.len()..).unwrap_or(path),
        _ => path,
    };
    let mut out = String::with_capacity(base_path.len() + rest.len() + 32);
    out.push_str(base_path);
    if let Some(r) = rewrite_prefix.filter(|r| *r != "/") {
        out.push_str(r);
    }
    if rest == "/" && !out.is_empty() {
        out.push('/');
    } else {
        out.push_str(rest);
    }
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
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
}
