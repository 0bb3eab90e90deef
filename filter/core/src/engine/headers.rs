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

    #[test]
    fn rules_print_as_patterns() {
        let shown: Vec<String> = ALWAYS_REMOVED.iter().map(|r| r.to_string()).collect();
        assert!(shown.contains(&"x-envoy-*".to_string()));
        assert!(shown.contains(&"host".to_string()));
        assert!(shown.iter().any(|s| s.starts_with("*_*")));
    }
}
