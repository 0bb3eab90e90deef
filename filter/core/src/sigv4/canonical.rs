//! The parts of a SigV4 canonical request: URI, query string and headers.
//!
//! What is signed is what the target receives, so every function takes the request as it goes
//! on the wire (path and query already percent-encoded by the caller) and canonicalizes it the
//! way AWS's own signer does.

use crate::routing::path::hex_value;

/// Bytes AWS leaves unencoded (RFC 3986 unreserved).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes every byte but the unreserved ones (and `/` when `keep_slash`), with
/// upper-case hex, as SigV4 requires.
pub fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if unreserved(b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Decodes `%XX` sequences; a `%` not followed by two hex digits stays as it is. `+` is kept
/// (SigV4 encodes spaces as `%20`, never `+`).
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// Removes `.` and `..` segments and empty segments (`//`), keeping a leading and a trailing
/// `/`: what AWS services other than S3 do to the path before signing.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let lead = if path.starts_with('/') { "/" } else { "" };
    let trail = if path.ends_with('/') && !out.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{lead}{}{trail}", out.join("/"))
}

/// The canonical URI of the path the target receives (no query).
///
/// S3 signs the path as sent (its keys are encoded once, by the client). Every other service
/// signs the normalized path encoded once more (`%` becomes `%25`): AWS's "encode each segment
/// twice".
pub fn canonical_uri(wire_path: &str, s3: bool) -> String {
    if wire_path.is_empty() {
        return "/".into();
    }
    if s3 {
        return wire_path.to_string();
    }
    let normalized = remove_dot_segments(wire_path);
    if normalized.is_empty() {
        return "/".into();
    }
    uri_encode(normalized.as_bytes(), true)
}

/// The canonical query string: every `name=value` pair (a name without `=` has an empty
/// value) decoded and encoded again strictly, then sorted by name and value. Repeated names
/// are all kept.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    let parts: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("&")
}

/// A header value as signed: leading and trailing whitespace removed, every inner run of
/// whitespace (spaces, tabs, an obsolete line folding) collapsed to one space.
pub fn trim_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Canonical headers and the signed-headers list, from `(name, value)` pairs in any order and
/// case. Values of a repeated name are joined with `,` in the order given.
pub fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut names: Vec<String> = headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let mut canonical = String::new();
    for name in &names {
        let values: Vec<String> = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| trim_value(v))
            .collect();
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    (canonical, names.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_sorted_by_name_then_value_and_repeats_kept() {
        assert_eq!(canonical_query("b=2&a=3&a=1&c"), "a=1&a=3&b=2&c=");
    }

    #[test]
    fn query_is_encoded_strictly_whatever_the_caller_sent() {
        // Lower-case hex, an encoded unreserved byte and a raw reserved byte all end up in
        // the one canonical spelling.
        assert_eq!(canonical_query("k=%7e%2f&x=a:b&e="), "e=&k=~%2F&x=a%3Ab");
        assert_eq!(canonical_query("p=a+b"), "p=a%2Bb");
        assert_eq!(canonical_query("bad=%zz"), "bad=%25zz");
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("&&"), "");
    }

    #[test]
    fn s3_paths_are_signed_as_sent() {
        assert_eq!(
            canonical_uri("/bucket/a%20b/../c", true),
            "/bucket/a%20b/../c"
        );
        assert_eq!(canonical_uri("", true), "/");
    }

    #[test]
    fn other_paths_are_normalized_and_encoded_again() {
        assert_eq!(canonical_uri("/a//b/./c/../d%20e/", false), "/a/b/d%2520e/");
        assert_eq!(canonical_uri("/..", false), "/");
        assert_eq!(canonical_uri("/", false), "/");
    }

    #[test]
    fn header_values_are_trimmed_and_folded_whitespace_collapsed() {
        let (c, s) = canonical_headers(&[
            ("X-Amz-Meta-B".into(), "  two   words\t here ".into()),
            ("host".into(), "example.com".into()),
            ("x-amz-meta-a".into(), "first".into()),
            ("X-AMZ-META-A".into(), "second\r\n  line".into()),
        ]);
        assert_eq!(
            c,
            "host:example.com\nx-amz-meta-a:first,second line\nx-amz-meta-b:two words here\n"
        );
        assert_eq!(s, "host;x-amz-meta-a;x-amz-meta-b");
    }
}
