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
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters a canonical path carries raw besides `%`: unreserved ones, `/`, `:`, `@` and
/// the sub-delimiters except `;`. An escape of one of these (but `/`) is decoded.
fn is_plain_path_char(b: u8) -> bool {
    // A table: this runs for every byte of every request path.
    PLAIN_PATH_CHARS
        .get(usize::from(b))
        .copied()
        .unwrap_or(false)
}

/// [`plain_path_char_rule`] for every byte (built at compile time).
#[allow(clippy::indexing_slicing)]
static PLAIN_PATH_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = plain_path_char_rule(b as u8);
        b += 1;
    }
    table
};

/// The rule of [`is_plain_path_char`].
const fn plain_path_char_rule(b: u8) -> bool {
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

/// The value of one hex digit (either case), as in a `%XX` escape.
pub(crate) fn hex_value(b: u8) -> Option<u8> {
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

/// Whether `raw` (`:path`, query included) is *plain*: accepted by
/// [`normalize_request_path`] as it is (its canonical spelling is the path itself), with no
/// `%` in the path part and a query without `"` and `\`. Exactly the paths
/// [`crate::native::plain_path_regex`] matches (tested), so Envoy can tell them alone: the
/// only paths `egress.path_mode: strict` accepts.
pub fn is_plain(raw: &str) -> bool {
    is_plain_normalized(raw, &normalize_request_path(raw))
}

/// [`is_plain`] of `raw` given what [`normalize_request_path`] made of it (the engine reads
/// each path once).
pub fn is_plain_normalized(raw: &str, normalized: &Result<RequestPath<'_>, PathError>) -> bool {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    !path.contains('%')
        && query.is_none_or(|q| !q.contains(['"', '\\']))
        && matches!(normalized, Ok(p) if p.path == path)
}

/// Whether a path (without query) goes into a JSON log line as it is: printable ASCII
/// without `"` and `\` (what [`crate::native::log_safe_path_regex`] matches, tested).
pub fn is_log_safe(path: &str) -> bool {
    path.bytes()
        .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// The message of every path refusal under `egress.path_mode: strict` (one message whatever
/// the reason: the `auto` engine's Envoy answers these without the filter).
pub const NOT_PLAIN: &str = "the path is not plain (egress.path_mode: strict): letters, digits and -._~:@!$&'()*+,= between single '/', no '.' or '..' segment, no percent-escape; a query without spaces, control characters, non-ASCII, '#', '\"' or '\\'";

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
    // Without an escape the decoded text is the path itself: no buffer (the common case, on
    // every request).
    let escapes = bytes.contains(&b'%');
    // `%25` then two hex digits: a second decoding makes an escape of it.
    let mut decoded: Vec<u8> = Vec::with_capacity(if escapes { bytes.len() } else { 0 });
    let mut i = 0;
    let mut has_escape = false;
    while let Some(&b) = bytes.get(i).filter(|_| escapes) {
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
    // The look-alikes are not ASCII.
    let ascii = rest.is_ascii();
    // The segments, found by hand (`split` cost more than the rest of the request's routing).
    let mut start = 0;
    loop {
        let tail = rest.get(start..).unwrap_or_default();
        let (seg, last) = match tail.bytes().position(|b| b == b'/') {
            Some(n) => (tail.get(..n).unwrap_or_default(), false),
            None => (tail, true),
        };
        if seg.is_empty() {
            // A single trailing slash ("/a/b/") and the root ("/") are fine.
            if last {
                return Ok(());
            }
            return Err(PathError::EmptySegment);
        }
        if !ascii && seg.chars().any(is_separator_lookalike) {
            return Err(PathError::EncodedSeparator);
        }
        if is_dot_segment(seg) {
            return Err(PathError::DotSegment);
        }
        if last {
            return Ok(());
        }
        start += seg.len() + 1;
    }
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

/// Why a prefix written in the config (`path_prefix`, `strip_prefix`, `rewrite_prefix`, an
/// endpoint path) was refused; each names the prefix as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{0:?} must start with '/'")]
    NotAbsolute(String),
    #[error("{0:?} must be a plain path: letters, digits and -._~:@!$&'()*+,= between '/' (no '?', '#', '%', ';', '\\', spaces or non-ASCII)")]
    NotPlain(String),
    #[error("{0:?} must not contain empty, '.' or '..' segments")]
    BadSegment(String),
}

/// Checks a prefix written in the config and normalizes it (no trailing `/`, except `/`).
/// A prefix is written in the canonical spelling of request paths (unreserved characters,
/// `:@!$&'()*+,=`), so that the requests it is meant for can match it.
pub fn validate_prefix(p: &str) -> Result<String, PrefixError> {
    if !p.starts_with('/') {
        return Err(PrefixError::NotAbsolute(p.into()));
    }
    if !p.bytes().all(is_plain_path_char) {
        return Err(PrefixError::NotPlain(p.into()));
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
                return Err(PrefixError::BadSegment(p.into()));
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
mod tests;
