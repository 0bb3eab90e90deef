//! The Level C leaves of one config route: for each of its `:path` keys
//! ([`route_leaves`]), how the request is served ([`leaf_kind`]):
//!
//! - `native`/`routed`: with `defaults.retry_count` > 0 an exact map on `:method` (POST,
//!   PATCH: their own routes, retried only when they cannot have reached the target) then the
//!   other allowed methods (one route, idempotent retries); without retries one route for
//!   every allowed method; anything else → 405 with `Allow` and the engine's body. Each
//!   route: the target's cluster and timeout, `host_rewrite_literal` = its authority, the
//!   core's rewrite (`prefix_rewrite` by the route's `match.prefix`, else `regex_rewrite`; no
//!   `x-forwarded-proto`: the virtual host removes the forwarding headers after the routes' own additions, in both engines), route metadata
//!   `egress.{target,target_url}` (the log; other parts of the renderer find a target's
//!   leaves by it), header removal, the log filter, and for `routed` the filter in the routed
//!   role;
//! - `filter`: the filter in the egress role does it all (as in the wasm engine) and picks a
//!   header route;
//! - `egress.enabled: false`: every key answers 503 `egress_disabled` (the engine's answer).

use super::super::listener::{self, target_route_action, RETRY_IDEMPOTENT, RETRY_WRITE};
use super::log::{enable, LEAF_LOG_FILTER, META_TARGET, META_TARGET_URL};
use super::slow::{answer, config_target, filter_route_filters, without_body_buffer_merged};
use super::tree::{self, MapKind};
use super::{strip, RenderContext, ROUTED_FILTER};
use egress_core::engine::Decision;
use egress_core::native::{leaf_kind, route_leaves, Leaf, LeafKind, PathKey, Rewrite};
use egress_core::plan::{wire, FilterRoute, Method};
use egress_core::routing::path::validate_prefix;
use serde_json::{json, Map, Value};

/// A method no route allows: asking the engine with it gives the route's 405 (or its 503).
const PROBE_METHOD: &str = "EGRESS-PROBE";

/// Adds the keys of config route `index` to the exact and prefix maps of Level C.
pub fn add_route_keys(
    cx: &RenderContext<'_>,
    index: usize,
    route: &FilterRoute,
    exact: &mut Map<String, Value>,
    prefix: &mut Map<String, Value>,
) {
    let Ok(p) = validate_prefix(&route.path_prefix) else {
        return;
    };
    let Some(target_index) = cx
        .filter_config
        .targets
        .iter()
        .position(|t| t.name == route.target)
    else {
        return;
    };
    let target = &cx.filter_config.targets[target_index];
    let kind = leaf_kind(cx.filter_config, index).unwrap_or(LeafKind::Full);
    // The engine's answer to a method the route does not allow: 405, or 503 when disabled.
    let refusal = match cx.engine.decide(PROBE_METHOD, &p) {
        Decision::Respond(r) => Some(r),
        _ => None,
    };
    for leaf in route_leaves(
        &p,
        route.strip_prefix.as_deref(),
        route.rewrite_prefix.as_deref(),
        &target.url.base_path,
    ) {
        let node = match &refusal {
            Some(r) if r.status != 405 => {
                answer(cx.config, &wire::leaf_route_name(index, "disabled"), r)
            }
            _ => match kind {
                LeafKind::Full => full_leaf(cx, index),
                LeafKind::Native | LeafKind::Routed => by_method(
                    cx,
                    index,
                    route,
                    target_index,
                    kind,
                    &leaf,
                    refusal.as_ref(),
                ),
            },
        };
        match leaf.key {
            PathKey::Exact(k) => exact.insert(k, node),
            PathKey::Prefix(k) => prefix.insert(k, node),
        };
    }
}

/// A leaf the filter serves in the egress role: it routes through the header.
fn full_leaf(cx: &RenderContext<'_>, index: usize) -> Value {
    let mut r = json!({
        "name": wire::leaf_route_name(index, "filter"),
        "direct_response": {
            "status": cx.not_found.status,
            "body": { "inline_string": cx.not_found.body },
        },
        "typed_per_filter_config": Value::Object(filter_route_filters(cx.config)),
    });
    without_body_buffer_merged(cx.config, &mut r);
    tree::route(r)
}

/// The `:method` map of a native or routed key.
fn by_method(
    cx: &RenderContext<'_>,
    index: usize,
    route: &FilterRoute,
    target_index: usize,
    kind: LeafKind,
    leaf: &Leaf,
    refusal: Option<&egress_core::engine::LocalReply>,
) -> Value {
    let allowed: Vec<Method> = route
        .methods
        .clone()
        .unwrap_or_else(|| Method::ALL.to_vec());
    // Without retries the methods' routes would differ in their name only: one route for
    // every allowed method.
    let split = cx.config.defaults.retry_count > 0;
    let mut writes = Map::new();
    let mut others: Vec<&str> = Vec::new();
    for m in &allowed {
        if m.is_idempotent() || !split {
            if !others.contains(&m.as_str()) {
                others.push(m.as_str());
            }
        } else {
            let name = m.as_str().to_ascii_lowercase();
            writes.insert(
                m.as_str().to_string(),
                leaf_route(
                    cx,
                    index,
                    &name,
                    target_index,
                    kind,
                    leaf,
                    RETRY_WRITE,
                    false,
                ),
            );
        }
    }
    let not_allowed = match refusal {
        Some(r) => answer(cx.config, &wire::leaf_route_name(index, "405"), r),
        None => answer(
            cx.config,
            &wire::leaf_route_name(index, "405"),
            cx.not_found,
        ),
    };
    let rest = if others.is_empty() {
        not_allowed
    } else {
        let alternatives = others.join("|");
        tree::then(tree::regex(
            ":method",
            &format!("^(?:{alternatives})$"),
            leaf_route(
                cx,
                index,
                if split { "other" } else { "any" },
                target_index,
                kind,
                leaf,
                RETRY_IDEMPOTENT,
                true,
            ),
            not_allowed,
        ))
    };
    if writes.is_empty() {
        return rest;
    }
    tree::then(tree::map(":method", MapKind::Exact, writes, rest))
}

/// One native or routed route.
#[allow(clippy::too_many_arguments)]
fn leaf_route(
    cx: &RenderContext<'_>,
    index: usize,
    name: &str,
    target_index: usize,
    kind: LeafKind,
    leaf: &Leaf,
    retry_on: &str,
    idempotent_only: bool,
) -> Value {
    let ft = &cx.filter_config.targets[target_index];
    let Some(target) = config_target(cx.config, &ft.name) else {
        return answer(cx.config, &wire::leaf_route_name(index, name), cx.not_found);
    };
    let mut action = target_route_action(cx.config, target, retry_on, idempotent_only);
    action["host_rewrite_literal"] = json!(ft.url.authority());
    // The route's own `match` is not tested in a matcher action, but `prefix_rewrite`
    // replaces the length of its prefix (the leaf's key guarantees the path starts with it).
    let route_match = match &leaf.rewrite {
        Rewrite::Prefix { from, to } => {
            action["prefix_rewrite"] = json!(to);
            json!({ "prefix": from })
        }
        Rewrite::Regex {
            pattern,
            substitution,
        } => {
            action["regex_rewrite"] = json!({
                "pattern": { "regex": pattern },
                "substitution": substitution,
            });
            json!({ "prefix": "" })
        }
    };
    let mut filters = Map::new();
    filters.insert(LEAF_LOG_FILTER.into(), enable());
    if kind == LeafKind::Routed {
        filters.insert(ROUTED_FILTER.into(), enable());
    }
    let mut r = json!({
        "name": wire::leaf_route_name(index, name),
        "route": action,
        "metadata": { "filter_metadata": { "egress": {
            META_TARGET: ft.name,
            META_TARGET_URL: ft.url.origin(),
            "kind": kind.as_str(),
        }}},
        "typed_per_filter_config": filters,
        "match": route_match,
    });
    let removals = strip::route_removals(cx.engine, target_index);
    if !removals.is_empty() {
        r["request_headers_to_remove"] = json!(removals);
    }
    if !listener::signs_payload(target) {
        without_body_buffer_merged(cx.config, &mut r);
    }
    tree::route(r)
}
