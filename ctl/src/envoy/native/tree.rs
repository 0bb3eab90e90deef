//! The virtual host's matcher tree (xDS `matcher`, no linear route list):
//!
//! - Level A: exact map on `x-egress-target` (set only by the filter: the caller's copy is
//!   removed before route selection) → the header routes ([`super::slow`]);
//! - Level B: `:path` in the plain-path class ([`plain_path_regex`]) → Level C, else the slow
//!   route (the filter canonicalises or refuses), or with `egress.path_mode: strict` Envoy's
//!   own 400 ([`super::slow::strict_refusal`]);
//! - Level C: exact map on `:path` (each route prefix `P`, the endpoints), then a prefix map
//!   (`P/`, `P?`, `/` for the root prefix, `<endpoint>?`), longest key first → the leaves
//!   ([`super::leaves`]); nothing → 404.

use egress_core::native::plain_path_regex;
use egress_core::plan::wire;
use serde_json::{json, Map, Value};

const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.Route";
const HEADER_INPUT: &str = "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput";

/// A matcher's `OnMatch` running this route. In a matcher action the route's own `match` is
/// not tested (Envoy requires one: the empty prefix unless the route has one, which
/// `prefix_rewrite` uses).
pub fn route(mut route: Value) -> Value {
    route["@type"] = json!(ROUTE_TYPE);
    if route.get("match").is_none() {
        route["match"] = json!({ "prefix": "" });
    }
    object([(
        "action",
        object([("name", json!("route")), ("typed_config", route)]),
    )])
}

/// A matcher's `OnMatch` continuing with `matcher`.
pub fn then(matcher: Value) -> Value {
    object([("matcher", matcher)])
}

/// A JSON object of `entries`, moved in. (`json!` copies every interpolated value by
/// serializing it: with the 10,000-route tree that copy, once per level, was most of the
/// compile's time and memory.)
pub fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn header_input(name: &str) -> Value {
    json!({ "name": "request-headers", "typed_config": { "@type": HEADER_INPUT, "header_name": name } })
}

/// A matcher on one request header (`exact_match_map` or `prefix_match_map`), with
/// `on_no_match` when nothing matches.
pub fn map(header: &str, kind: MapKind, entries: Map<String, Value>, on_no_match: Value) -> Value {
    let kind = match kind {
        MapKind::Exact => "exact_match_map",
        MapKind::Prefix => "prefix_match_map",
    };
    object([
        (
            "matcher_tree",
            object([
                ("input", header_input(header)),
                (kind, object([("map", Value::Object(entries))])),
            ]),
        ),
        ("on_no_match", on_no_match),
    ])
}

/// An endpoint's keys, query or not: `path` in the `exact` map, `path?` in the `prefix` map.
pub fn insert_endpoint(
    exact: &mut Map<String, Value>,
    prefix: &mut Map<String, Value>,
    path: &str,
    route: Value,
) {
    exact.insert(path.to_owned(), route.clone());
    prefix.insert(format!("{path}?"), route);
}

#[derive(Debug, Clone, Copy)]
pub enum MapKind {
    Exact,
    Prefix,
}

/// A matcher that runs `on_match` when `header` fully matches the RE2 `regex`.
pub fn regex(header: &str, regex: &str, on_match: Value, on_no_match: Value) -> Value {
    let predicate = json!({ "single_predicate": {
        "input": header_input(header),
        "value_match": { "safe_regex": { "google_re2": {}, "regex": regex } },
    }});
    let matcher = object([("predicate", predicate), ("on_match", on_match)]);
    object([
        (
            "matcher_list",
            object([("matchers", Value::Array(vec![matcher]))]),
        ),
        ("on_no_match", on_no_match),
    ])
}

/// The whole tree: `header_routes` per target name (Level A), `not_plain` for paths outside
/// the plain class, `exact`/`prefix` keys of Level C and `not_found`.
pub fn virtual_host_matcher(
    header_routes: Map<String, Value>,
    not_plain: Value,
    exact: Map<String, Value>,
    prefix: Map<String, Value>,
    not_found: Value,
) -> Value {
    // Envoy refuses an empty map: a level without keys is left out.
    let level = |kind, header: &str, entries: Map<String, Value>, on_no_match: Value| {
        if entries.is_empty() {
            on_no_match
        } else {
            then(map(header, kind, entries, on_no_match))
        }
    };
    let by_prefix = level(MapKind::Prefix, ":path", prefix, not_found);
    let by_path = level(MapKind::Exact, ":path", exact, by_prefix);
    let plain = regex(":path", &plain_path_regex(), by_path, not_plain);
    if header_routes.is_empty() {
        return plain;
    }
    map(
        wire::TARGET_HEADER,
        MapKind::Exact,
        header_routes,
        then(plain),
    )
}
