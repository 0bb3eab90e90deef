//! Caller headers removed on native and routed leaves, from the engine's one list
//! ([`egress_core::engine::Engine::remove_rules`]): what the filter removes in the wasm engine.
//!
//! - The rules every target shares are applied to every request before its route is picked
//!   (the connection manager's early header mutation, prefixes as `remove_on_match`): the
//!   filter, where it runs, would remove them anyway, and no filter reads them. Not a
//!   `header_mutation` filter: with one in the chain, a later filter changing a request header
//!   (the routed filter setting the OAuth2 token) makes Envoy 1.40 lose the matcher tree's
//!   route on the re-pick (404 `route_not_found`; seen with the routed filter and with Lua).
//! - `authorization` (the callers' token, which the routed filter reads) and a header some
//!   target's credential sets (an API-key header) are left to the route
//!   ([`route_removals`], the route's `request_headers_to_remove`, applied by the router
//!   after every filter), and only on the leaves of targets that do not set them: where the
//!   credential is attached (`credential_injector` with `overwrite`, or the routed filter's
//!   OAuth2 token) the caller's value is replaced.
//! - `host`: in Envoy it is `:authority`, which the route rewrites to the target's
//!   (`host_rewrite_literal`); removing it here would remove the rewritten authority too.
//! - Names with `_`: dropped by the connection manager before any filter
//!   (`headers_with_underscores_action`, see `limits::harden`).

use egress_core::credentials::CALLER_CREDENTIAL_HEADERS;
use egress_core::engine::{Engine, RemoveRule};
use egress_core::plan::wire;
use serde_json::{json, Value};

/// `authorization` and the names some target's credential sets (lower case): left to the
/// routes.
fn credential_headers(engine: &Engine) -> Vec<String> {
    let mut names: Vec<String> = std::iter::once(CALLER_CREDENTIAL_HEADERS[0].to_string())
        .chain(
            engine
                .targets()
                .iter()
                .filter_map(|t| t.injection.header_name())
                .map(str::to_ascii_lowercase),
        )
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One rule as an Envoy header mutation (`None`: left to Envoy, see the module docs).
fn mutation(rule: &RemoveRule<'_>) -> Option<Value> {
    match rule {
        RemoveRule::Name(n) if n.eq_ignore_ascii_case("host") => None,
        RemoveRule::Name(n) => Some(json!({ "remove": n.to_ascii_lowercase() })),
        RemoveRule::Prefix(p) => {
            Some(json!({ "remove_on_match": { "key_matcher": { "prefix": p } } }))
        }
        RemoveRule::Underscore => None,
    }
}

/// The caller token headers (`egress.callers.jwt[i].from_headers`, lower case) that a shared
/// rule would remove before routing (`proxy-authorization`, `x-egress-caller-token`): spared
/// there so that the routed filter reads the token (it removes them once the caller is
/// admitted; the leaves remove them too, [`route_removals`]). Never the routing header: a
/// caller's copy must be gone before the route is picked.
pub fn spared_token_headers(engine: &Engine) -> Vec<String> {
    // `authorization` and credential headers are left to the routes already.
    let credential = credential_headers(engine);
    let mut names: Vec<String> = engine
        .caller_token_headers()
        .into_iter()
        .map(str::to_ascii_lowercase)
        .filter(|n| n != wire::TARGET_HEADER && n != "host" && !credential.contains(n))
        .filter(|n| {
            egress_core::engine::ALWAYS_REMOVED
                .iter()
                .any(|r| !matches!(r, RemoveRule::Underscore) && r.matches(n))
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The early header mutations: the shared rules (the routing header among them: a caller's
/// copy is gone before the route is picked), sparing the caller token headers
/// ([`spared_token_headers`]).
pub fn early_mutations(engine: &Engine) -> Vec<Value> {
    let credential = credential_headers(engine);
    let spared = spared_token_headers(engine);
    let kept = |n: &str| {
        credential.iter().any(|c| c.eq_ignore_ascii_case(n))
            || spared.iter().any(|c| c.eq_ignore_ascii_case(n))
    };
    egress_core::engine::ALWAYS_REMOVED
        .iter()
        .filter(|r| !matches!(r, RemoveRule::Name(n) if kept(n)))
        .flat_map(|rule| match rule {
            RemoveRule::Prefix(p) => {
                let under: Vec<&str> = spared
                    .iter()
                    .map(String::as_str)
                    .filter(|n| RemoveRule::Prefix(p).matches(n))
                    .collect();
                if under.is_empty() {
                    mutation(rule).into_iter().collect()
                } else {
                    egress_core::native::prefix_except_regexes(p, &under)
                        .into_iter()
                        .map(|regex| {
                            json!({ "remove_on_match": { "key_matcher": {
                                "safe_regex": { "google_re2": {}, "regex": regex },
                            } } })
                        })
                        .collect()
                }
            }
            _ => mutation(rule).into_iter().collect::<Vec<_>>(),
        })
        .collect()
}

/// The caller headers a leaf of `target` removes itself (its `request_headers_to_remove`):
/// the engine's rules for the target that the shared filter leaves out, except the header the
/// target's own credential replaces.
pub fn route_removals(engine: &Engine, target: usize) -> Vec<String> {
    let credential = credential_headers(engine);
    let own = engine
        .target(target)
        .and_then(|t| t.injection.header_name());
    let spared = spared_token_headers(engine);
    let mut out: Vec<String> = Vec::new();
    for rule in engine.remove_rules(target) {
        let RemoveRule::Name(n) = rule else { continue };
        let n = n.to_ascii_lowercase();
        let shared =
            !credential.contains(&n) && egress_core::engine::ALWAYS_REMOVED.contains(&rule);
        let set_here = own.is_some_and(|o| o.eq_ignore_ascii_case(&n));
        if shared || set_here || n == "host" || out.contains(&n) {
            continue;
        }
        out.push(n);
    }
    for n in spared {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}
