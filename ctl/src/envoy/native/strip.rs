//! Caller headers removed on native and routed leaves, from the engine's one list
//! ([`egress_core::engine::Engine::remove_rules`]): what the filter removes in the wasm engine.
//!
//! - The rules every target shares go into one `header_mutation` filter ([`STRIP_FILTER`]),
//!   prefixes as `remove_on_match`.
//! - A header some target's credential sets (`authorization`, an API-key header) is removed
//!   only on the leaves of targets that do not set it (per-route config of the same filter):
//!   where the credential is attached (`credential_injector` with `overwrite`, or the routed
//!   filter's OAuth2 token) the caller's value is replaced, and the routed filter still reads
//!   the caller's own `authorization` before it is replaced (caller JWTs).
//! - `host`: in Envoy it is `:authority`, which the route rewrites to the target's
//!   (`host_rewrite_literal`); removing it here would remove the rewritten authority too.
//! - Names with `_`: dropped by the connection manager before any filter
//!   (`headers_with_underscores_action`, see `limits::harden`).

use super::FILTER_CONFIG_TYPE;
use egress_core::engine::{Engine, RemoveRule};
use serde_json::{json, Value};

/// The header removal filter.
pub const STRIP_FILTER: &str = "egress.strip";
const HEADER_MUTATION: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";
const HEADER_MUTATION_PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute";

/// Names some target's credential sets (lower case).
fn credential_headers(engine: &Engine) -> Vec<String> {
    let mut names: Vec<String> = engine
        .targets()
        .iter()
        .filter_map(|t| t.injection.header_name())
        .map(str::to_ascii_lowercase)
        .collect();
    names.sort();
    names.dedup();
    names
}

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

/// The header removal filter (disabled; leaves enable it with [`per_route`]).
pub fn filter(engine: &Engine) -> Value {
    let credential = credential_headers(engine);
    let shared: Vec<Value> = egress_core::engine::ALWAYS_REMOVED
        .iter()
        .filter(|r| !matches!(r, RemoveRule::Name(n) if credential.iter().any(|c| c.eq_ignore_ascii_case(n))))
        .filter_map(mutation)
        .collect();
    json!({
        "name": STRIP_FILTER,
        "disabled": true,
        "typed_config": {
            "@type": HEADER_MUTATION,
            "mutations": { "request_mutations": shared },
        },
    })
}

/// The `typed_per_filter_config` value enabling [`STRIP_FILTER`] on a leaf of `target`, with
/// the removals only some targets need.
pub fn per_route(engine: &Engine, target: usize) -> Value {
    let credential = credential_headers(engine);
    let own = engine
        .target(target)
        .and_then(|t| t.injection.header_name());
    let mut extra: Vec<Value> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for rule in engine.remove_rules(target) {
        let RemoveRule::Name(n) = rule else { continue };
        let n = n.to_ascii_lowercase();
        let shared =
            !credential.contains(&n) && egress_core::engine::ALWAYS_REMOVED.contains(&rule);
        let set_here = own.is_some_and(|o| o.eq_ignore_ascii_case(&n));
        if shared || set_here || n == "host" || seen.contains(&n) {
            continue;
        }
        extra.push(json!({ "remove": n }));
        seen.push(n);
    }
    if extra.is_empty() {
        return json!({ "@type": FILTER_CONFIG_TYPE, "config": {} });
    }
    json!({
        "@type": FILTER_CONFIG_TYPE,
        "config": {
            "@type": HEADER_MUTATION_PER_ROUTE,
            "mutations": { "request_mutations": extra },
        },
    })
}
