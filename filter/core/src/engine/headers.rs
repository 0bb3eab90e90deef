//! Which caller headers never leave the proxy: one list, used by the filter on every request
//! and printed by `egressctl explain`.

use crate::credentials::CALLER_CREDENTIAL_HEADERS;
use crate::plan::wire;

/// A rule that removes caller headers before a request is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveRule<'a> {
    /// This name, any case.
    Name(&'a str),
    /// Every name starting with this (lower-case) prefix, any case.
    Prefix(&'a str),
    /// Every name containing `_`: some servers read `x_api_key` as `x-api-key`.
    Underscore,
}

impl RemoveRule<'_> {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            RemoveRule::Name(n) => name.eq_ignore_ascii_case(n),
            RemoveRule::Prefix(p) => name
                .as_bytes()
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes())),
            RemoveRule::Underscore => name.contains('_'),
        }
    }
}

impl std::fmt::Display for RemoveRule<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoveRule::Name(n) => f.write_str(n),
            RemoveRule::Prefix(p) => write!(f, "{p}*"),
            RemoveRule::Underscore => f.write_str("*_* (any name with an underscore)"),
        }
    }
}

/// Set on every forwarded request to the target's scheme (the caller's value is removed with
/// the other `x-forwarded-*` headers).
pub const FORWARDED_PROTO: &str = "x-forwarded-proto";

/// Removed from every forwarded request, whatever the target:
/// - the caller's credentials (a caller can neither override nor leak one);
/// - `host` (`:authority` is set to the target's; a second name could disagree);
/// - our internal `x-egress-*` headers (the routing header is set by the filter);
/// - headers that change what the target does: method overrides (a way around a route's
///   method list) and URL overrides;
/// - `x-envoy-*` (Envoy's router obeys some, e.g. retries and timeouts, and they describe our
///   internals);
/// - the caller's forwarding headers: internal addresses do not reach external services
///   (`x-forwarded-proto` is then set to the target's scheme, see [`FORWARDED_PROTO`]);
/// - names with an underscore.
pub const ALWAYS_REMOVED: &[RemoveRule<'static>] = &[
    RemoveRule::Name(CALLER_CREDENTIAL_HEADERS[0]),
    RemoveRule::Name(CALLER_CREDENTIAL_HEADERS[1]),
    RemoveRule::Name("host"),
    RemoveRule::Prefix(wire::INTERNAL_HEADER_PREFIX),
    RemoveRule::Name("x-http-method-override"),
    RemoveRule::Name("x-http-method"),
    RemoveRule::Name("x-method-override"),
    RemoveRule::Name("x-original-url"),
    RemoveRule::Name("x-rewrite-url"),
    RemoveRule::Prefix("x-envoy-"),
    RemoveRule::Prefix("x-forwarded-"),
    RemoveRule::Name("forwarded"),
    RemoveRule::Name("x-real-ip"),
    RemoveRule::Underscore,
];

/// Whether one of [`ALWAYS_REMOVED`] matches `name`: the rules, with the names no rule can
/// match (most of them: pseudo-headers, `accept`, ...) turned away by their first byte.
pub(crate) fn always_removed(name: &str) -> bool {
    let Some(&first) = name.as_bytes().first() else {
        return ALWAYS_REMOVED.iter().any(|r| r.matches(name));
    };
    let may_match = ALWAYS_REMOVED_FIRST_BYTES
        .get(usize::from(first))
        .copied()
        .unwrap_or(true);
    (may_match || name.contains('_')) && ALWAYS_REMOVED.iter().any(|r| r.matches(name))
}

/// The first bytes (either case) a name needs for a [`RemoveRule::Name`] or
/// [`RemoveRule::Prefix`] of [`ALWAYS_REMOVED`] to match it (every byte when a rule's text is
/// empty); [`RemoveRule::Underscore`] is checked apart. (Built at compile time: an index out
/// of bounds there fails the build, it cannot panic at run time.)
#[allow(clippy::indexing_slicing)]
static ALWAYS_REMOVED_FIRST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < ALWAYS_REMOVED.len() {
        let text = match ALWAYS_REMOVED[i] {
            RemoveRule::Name(t) | RemoveRule::Prefix(t) => Some(t.as_bytes()),
            RemoveRule::Underscore => None,
        };
        if let Some(t) = text {
            if t.is_empty() {
                table = [true; 256];
            } else {
                table[t[0].to_ascii_lowercase() as usize] = true;
                table[t[0].to_ascii_uppercase() as usize] = true;
            }
        }
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_any_case_and_only_what_they_name() {
        let removed = |name: &str| ALWAYS_REMOVED.iter().any(|r| r.matches(name));
        for name in [
            "Authorization",
            "PROXY-AUTHORIZATION",
            "Host",
            "X-Egress-Target",
            "x-egress-anything",
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-Method-Override",
            "X-Original-URL",
            "x-rewrite-url",
            "x-envoy-retry-on",
            "X-Envoy-Upstream-Rq-Timeout-Ms",
            "x-envoy-original-path",
            "X-Forwarded-For",
            "x-forwarded-host",
            "x-forwarded-proto",
            "Forwarded",
            "X-Real-IP",
            "x_api_key",
            "authorization_",
            "_",
        ] {
            assert!(removed(name), "{name} is kept");
        }
        for name in [
            "content-type",
            "accept",
            "x-request-id",
            "x-envoy",
            "x-forwarded",
            "x-egress",
            "forwarded-for",
            "x-http-methods",
            "x-api-key",
            "",
            "é",
        ] {
            assert!(!removed(name), "{name} is removed");
        }
    }

    /// The first-byte shortcut never changes the answer of the rules.
    #[test]
    fn always_removed_agrees_with_the_rules() {
        let mut names: Vec<String> = ["", "_", "a", "A", "é", ":path", ":authority", "x", "X-"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for r in ALWAYS_REMOVED {
            let t = match r {
                RemoveRule::Name(t) | RemoveRule::Prefix(t) => *t,
                RemoveRule::Underscore => "a_b",
            };
            names.push(t.to_string());
            names.push(t.to_ascii_uppercase());
            names.push(format!("{t}x"));
            names.push(format!("z{t}"));
            names.push(t.get(1..).unwrap_or_default().to_string());
        }
        for b in 0u8..=255 {
            names.push(String::from_utf8_lossy(&[b, b'-', b'x']).into_owned());
        }
        for name in &names {
            assert_eq!(
                always_removed(name),
                ALWAYS_REMOVED.iter().any(|r| r.matches(name)),
                "{name:?}"
            );
        }
    }

    #[test]
    fn rules_print_as_patterns() {
        let shown: Vec<String> = ALWAYS_REMOVED.iter().map(|r| r.to_string()).collect();
        assert!(shown.contains(&"x-envoy-*".to_string()));
        assert!(shown.contains(&"host".to_string()));
        assert!(shown.iter().any(|s| s.starts_with("*_*")));
    }
}
