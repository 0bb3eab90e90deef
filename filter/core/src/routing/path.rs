//! Paths: the prefixes in the config, and the request path as it arrives.
//!
//! A request must never reach a path outside its target's base path. Before matching, the
//! request path is checked: dot segments (also as `%2e`), empty segments (`//`), and encoded
//! slashes or backslashes (`%2f`, `%5c`, `\`) are refused, because Envoy forwards `%2F`
//! undecoded and many upstreams decode it into a separator. Other percent-escapes pass through
//! unchanged.

/// A request path split into the checked path and the raw query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath<'a> {
    /// Starts with `/`; no dot segments, no empty segments except a trailing `/`.
    pub path: &'a str,
    /// Everything after `?`, without the `?` (`None` when there was no `?`).
    pub query: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path contains a dot segment ('.' or '..', also percent-encoded)")]
    DotSegment,
    #[error("the path contains an empty segment ('//')")]
    EmptySegment,
    #[error("the path contains an encoded slash or backslash")]
    EncodedSeparator,
    #[error("the path contains a control character, a space or a malformed percent-escape")]
    BadCharacter,
}

/// Checks the `:path` of a request and splits off its query.
pub fn normalize_request_path(raw: &str) -> Result<RequestPath<'_>, PathError> {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            return Err(PathError::EncodedSeparator);
        }
        if b <= 0x20 || b == 0x7f {
            return Err(PathError::BadCharacter);
        }
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadCharacter)?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(PathError::BadCharacter)?;
            match value {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                0x00..=0x1f | 0x7f => return Err(PathError::BadCharacter),
                _ => {}
            }
            i += 3;
            continue;
        }
        i += 1;
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (idx, seg) in segments.iter().enumerate() {
        if seg.is_empty() {
            // A single trailing slash ("/a/b/") and the root ("/") are fine.
            if idx == last {
                continue;
            }
            return Err(PathError::EmptySegment);
        }
        if is_dot_segment(seg) {
            return Err(PathError::DotSegment);
        }
    }
    Ok(RequestPath { path, query })
}

/// `.`, `..` and their percent-encoded spellings (`%2e`, `.%2E`, ...).
fn is_dot_segment(seg: &str) -> bool {
    let mut rest = seg;
    let mut dots = 0;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if rest
            .as_bytes()
            .get(..3)
            .is_some_and(|b| b.eq_ignore_ascii_case(b"%2e"))
        {
            // Matched three ASCII bytes, so index 3 is a char boundary.
            rest = rest.get(3..).unwrap_or("");
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

/// Checks a prefix written in the config and normalizes it (no trailing `/`, except `/`).
pub fn validate_prefix(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with '/'"));
    }
    if p.contains(['?', '#', '%', '\\']) || p.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "{p:?} must be a plain path (no '?', '#', '%', '\\' or spaces)"
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
    if trimmed != "/" {
        for seg in trimmed[1..].split('/') {
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
        Some(s) if is_boundary_prefix(s, path) => &path[s.len()..],
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

    #[test]
    fn splits_query_and_accepts_ordinary_paths() {
        let p = normalize_request_path("/egress/crm/Contact/42?fields=Id,Name&x=%20").unwrap();
        assert_eq!(p.path, "/egress/crm/Contact/42");
        assert_eq!(p.query, Some("fields=Id,Name&x=%20"));
        assert!(normalize_request_path("/").is_ok());
        assert!(normalize_request_path("/egress/crm/").is_ok());
        assert!(normalize_request_path("/egress/crm/a%20b").is_ok());
        assert!(normalize_request_path("/egress/crm/...").is_ok());
        assert!(normalize_request_path("/egress/crm/.well-known").is_ok());
    }

    #[test]
    fn refuses_every_spelling_of_a_traversal() {
        let cases = [
            ("/egress/crm/../notify/email", PathError::DotSegment),
            ("/egress/crm/./x", PathError::DotSegment),
            ("/egress/crm/%2e%2e/x", PathError::DotSegment),
            ("/egress/crm/%2E./x", PathError::DotSegment),
            ("/egress/crm/.%2e", PathError::DotSegment),
            ("/egress/crm//x", PathError::EmptySegment),
            ("//egress/crm", PathError::EmptySegment),
            ("/egress/crm/..%2fx", PathError::EncodedSeparator),
            ("/egress/crm/a%2Fb", PathError::EncodedSeparator),
            ("/egress/crm/a%5cb", PathError::EncodedSeparator),
            ("/egress/crm/a\\b", PathError::EncodedSeparator),
            ("/egress/crm/a%00b", PathError::BadCharacter),
            ("/egress/crm/a%zz", PathError::BadCharacter),
            ("/egress/crm/a%2", PathError::BadCharacter),
            ("/egress/crm/a b", PathError::BadCharacter),
            ("egress/crm", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_request_path(raw), Err(want), "{raw}");
        }
    }

    /// Regression: slicing a segment by bytes panicked (and trapped the VM) when byte 3 fell
    /// inside a multi-byte character.
    #[test]
    fn multibyte_segments_never_panic() {
        for raw in [
            "/egress/notify/😀",
            "/egress/notify/a😀",
            "/egress/notify/ééé",
            "/nope/%2e😀",
            "/é/.é",
        ] {
            assert!(normalize_request_path(raw).is_ok(), "{raw}");
        }
        assert_eq!(
            normalize_request_path("/a/%2e%2e/😀"),
            Err(PathError::DotSegment)
        );
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
        for bad in ["egress", "/a//b", "/a/../b", "/a?x", "/a%2f", "/a b"] {
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
