//! How Envoy matches and rewrites plain paths in the `auto` engine, computed by the core so
//! that it cannot drift from [`crate::routing`]:
//!
//! - [`plain_path_regex`]: the paths whose canonical spelling is the path itself (Level B of
//!   the route matcher); everything else goes to the filter (the slow route);
//! - [`route_leaves`]: the `:path` keys of one config route and the rewrite of each (a
//!   `prefix_rewrite` where one string replace does it, else a `regex_rewrite`), such that
//!   "exact map, then longest prefix key, then the leaf's rewrite" is exactly
//!   [`crate::routing::RouteTable::lookup`] followed by [`crate::routing::path::rewrite`].
//!
//! The patterns are RE2 (Envoy's `safe_regex`): no lookaround, no backreferences; the
//! substitutions use RE2's `\1` groups, with `\\` for a literal backslash.

use crate::routing::path::{is_boundary_prefix, rewrite};

/// Characters a segment of a plain path carries (the raw characters of a canonical path).
const SEGMENT_CHARS: &str = r"A-Za-z0-9._~:@!$&'()*+,=\-";
/// The same without `.`.
const SEGMENT_CHARS_NO_DOT: &str = r"A-Za-z0-9_~:@!$&'()*+,=\-";
/// Query bytes: printable ASCII without `"` (0x22), `#` (0x23) and `\` (0x5C).
const QUERY_CHARS: &str = r"\x21\x24-\x5b\x5d-\x7e";

/// RE2 pattern (a full match of `:path`, query included; anchored, so it also works as a
/// search) of the plain-path class: `/`, or `/`-separated non-empty segments of
/// `A-Za-z0-9-._~:@!$&'()*+,=` that are not `.` or `..`, with at most one trailing `/`;
/// then an optional `?query` of printable ASCII without `#`, `"` and `\`. No `%` anywhere.
///
/// For such a path [`crate::routing::normalize_request_path`] accepts the path unchanged
/// (its canonical spelling is the raw path), so Envoy matching it natively matches what the
/// filter would; and its query never needs JSON escaping in the access log.
pub fn plain_path_regex() -> String {
    let c = SEGMENT_CHARS;
    let n = SEGMENT_CHARS_NO_DOT;
    // A segment with a character other than `.`, or of three dots or more.
    let segment = format!(r"(?:\.{{0,2}}[{n}][{c}]*|\.{{3}}[{c}]*)");
    format!(r"^/(?:{segment}(?:/{segment})*/?)?(?:\?[{QUERY_CHARS}]*)?$")
}

/// RE2 pattern (a full match of `:path`, query included, anchored) of the paths whose part
/// before the first `?` is [`crate::routing::path::is_log_safe`]: printable ASCII without
/// `"` and `\\`. Envoy's `%PATH(NQ)%` of such a path goes into the JSON log line as it is.
pub fn log_safe_path_regex() -> String {
    r"^[\x20\x21\x23-\x3e\x40-\x5b\x5d-\x7e]*(?:\?(?s:.*))?$".to_string()
}

/// How Envoy finds a route leaf on `:path` (query included).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathKey {
    /// An entry of the exact map on `:path`.
    Exact(String),
    /// An entry of the prefix map on `:path` (longest match wins).
    Prefix(String),
}

impl PathKey {
    pub fn as_str(&self) -> &str {
        match self {
            PathKey::Exact(k) | PathKey::Prefix(k) => k,
        }
    }
}

/// How a route leaf rewrites `:path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rewrite {
    /// Envoy's `prefix_rewrite` on a route whose own `match` is `{prefix: from}`: the path
    /// (query included) leaves with its first `from.len()` bytes replaced by `to`. In a
    /// matcher action Envoy does not test the route's `match` but rewrites by its prefix, so
    /// the leaf's key must guarantee that every path reaching it starts with `from`. `to` is
    /// never empty (Envoy reads an empty `prefix_rewrite` as none). A string replace: cheaper
    /// per request than a regex.
    Prefix { from: String, to: String },
    /// A route's `regex_rewrite` (RE2): Envoy replaces every match of `pattern` in the path
    /// without its query by `substitution`, then appends the query. The patterns here are
    /// anchored (`^...$`), so there is exactly one match.
    Regex {
        pattern: String,
        substitution: String,
    },
}

/// One Envoy route leaf of a config route: its key and its path rewrite.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Leaf {
    pub key: PathKey,
    pub rewrite: Rewrite,
}

/// The leaves of one config route: `prefix` is its normalized `path_prefix` (`/` or no
/// trailing `/`), `strip_prefix`/`rewrite_prefix` as in the filter config, `base_path` its
/// target URL's base path (empty or no trailing `/`).
///
/// - prefix `P` (not `/`): `Exact(P)`, `Prefix(P/)` and `Prefix(P?)`;
/// - prefix `/`: `Prefix(/)` alone (it matches every absolute path; longer keys win).
pub fn route_leaves(
    prefix: &str,
    strip_prefix: Option<&str>,
    rewrite_prefix: Option<&str>,
    base_path: &str,
) -> Vec<Leaf> {
    let mut out_prefix = base_path.to_string();
    if let Some(r) = rewrite_prefix.filter(|r| *r != "/") {
        out_prefix.push_str(r);
    }
    // `rewrite` never strips `/`.
    let strip = strip_prefix.filter(|s| *s != "/");
    if prefix == "/" {
        return vec![Leaf {
            key: PathKey::Prefix("/".into()),
            rewrite: tail_rewrite(prefix, strip, &out_prefix),
        }];
    }
    // Both `P` and `P?...` reach the core with the path `P`: `P` leaves as a constant, the
    // query as it came.
    let whole = Rewrite::Prefix {
        from: prefix.to_string(),
        to: rewrite(prefix, None, strip_prefix, rewrite_prefix, base_path),
    };
    vec![
        Leaf {
            key: PathKey::Exact(prefix.to_string()),
            rewrite: whole.clone(),
        },
        Leaf {
            key: PathKey::Prefix(format!("{prefix}/")),
            rewrite: tail_rewrite(prefix, strip, &out_prefix),
        },
        Leaf {
            key: PathKey::Prefix(format!("{prefix}?")),
            rewrite: whole,
        },
    ]
}

/// The rewrite of the paths under `prefix` (`P/...`, or any path for the root): the output is
/// `out_prefix` followed by the rest of the path after `strip` (when `strip` is a prefix of
/// it at a segment boundary, else the whole path), `/` when both are empty.
fn tail_rewrite(prefix: &str, strip: Option<&str>, out_prefix: &str) -> Rewrite {
    let Some(s) = strip else {
        // Nothing stripped: the rest is the whole path, which starts with `/`.
        return Rewrite::Prefix {
            from: "/".into(),
            to: format!("{out_prefix}/"),
        };
    };
    if prefix != "/" && is_boundary_prefix(s, prefix) {
        // Every path `P/...` starts with `s/`, loses `s` and keeps a rest starting with `/`.
        return Rewrite::Prefix {
            from: format!("{s}/"),
            to: format!("{out_prefix}/"),
        };
    }
    // `s` applies to some paths only (longer than the prefix, or unrelated to it).
    let out = escape_substitution(out_prefix);
    let es = escape_pattern(s);
    if !out_prefix.is_empty() {
        // The path `s` itself leaves as `out_prefix`.
        return Rewrite::Regex {
            pattern: format!("^(?:{es}(/.*)?|(.*))$"),
            substitution: format!(r"{out}\1\2"),
        };
    }
    match s.strip_prefix('/') {
        // The path `s` itself leaves as `/`: captured from its leading slash.
        Some(s_tail) => Rewrite::Regex {
            pattern: format!("^(?:{es}(/.*)|(/){}|(.*))$", escape_pattern(s_tail)),
            substitution: r"\1\2\3".into(),
        },
        // No absolute path equals `s`.
        None => Rewrite::Regex {
            pattern: format!("^(?:{es}(/.*)|(.*))$"),
            substitution: r"\1\2".into(),
        },
    }
}

/// Escapes the characters RE2 (and Rust's `regex`) give a meaning outside a class; every
/// other character stands for itself. Only ASCII punctuation is escaped (RE2 refuses `\`
/// before a letter, a digit or `_`).
pub fn escape_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes literal text for an RE2 substitution (`\` starts a group reference).
pub fn escape_substitution(text: &str) -> String {
    text.replace('\\', r"\\")
}
