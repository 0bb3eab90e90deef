//! The routes the filter uses, and the route table's own answers:
//!
//! - the *slow route*: paths outside the plain class (percent escapes, dot segments, `//`,
//!   ...) and `endpoints.ready` when it varies: the filter in the egress role answers or
//!   canonicalises and routes through the routing header, exactly as in the wasm engine;
//! - with `egress.path_mode: strict`, Envoy's own 400 for those paths ([`strict_refusal`]),
//!   and a config without OAuth2 or `aws_sigv4` targets gets no slow route at all;
//! - the *header routes* (Level A): the wasm engine's per-target routes (cluster, timeout,
//!   retries per method), picked by the routing header the filter sets;
//! - the metrics route, and direct answers (404, 405, 503, health, constant readiness) with
//!   the engine's bodies.

use super::super::limits;
use super::super::listener::{
    self, methods, target_route_action, without_body_buffer, RETRY_IDEMPOTENT, RETRY_WRITE,
};
use super::log::{enable, REFUSED_LOG_FILTER, REPLY_LOG_FILTER};
use super::tree::{self, MapKind};
use super::{FULL_FILTER, NOT_FOUND_ROUTE, SLOW_ROUTE, STRICT_ROUTE};
use egress_core::config::{Config, Target};
use egress_core::engine::LocalReply;
use egress_core::native::log_safe_path_regex;
use egress_core::plan::wire;
use egress_core::routing::path::NOT_PLAIN;
use serde_json::{json, Map, Value};

/// The filters the filter-served routes enable: the egress role, and the SigV4 signer when a
/// target signs payloads (it finds the body hash only on requests the egress role signed).
pub fn filter_route_filters(config: &Config) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(FULL_FILTER.into(), enable());
    if config.targets.iter().any(listener::signs_payload) {
        m.insert(listener::SIGV4_SIGNER.into(), enable());
    }
    m
}

/// The slow route: the filter answers, or routes through the header (Envoy then picks a
/// header route); if it lets a request through untouched (never for an egress path), 404.
pub fn slow_route(config: &Config, not_found: &LocalReply) -> Value {
    let mut r = direct_route(SLOW_ROUTE, not_found, false);
    r["typed_per_filter_config"] = Value::Object(filter_route_filters(config));
    without_body_buffer_merged(config, &mut r);
    tree::route(r)
}

/// A route answering `reply` itself; `log`: the request log gets the filter's fragment for
/// an answer (`-` target).
pub fn direct_route(name: &str, reply: &LocalReply, log: bool) -> Value {
    let headers: Vec<Value> = reply
        .headers
        .iter()
        .map(|(k, v)| {
            json!({
                "header": { "key": k, "value": v },
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            })
        })
        .collect();
    let mut r = json!({
        "name": name,
        "direct_response": { "status": reply.status, "body": { "inline_string": reply.body } },
        "response_headers_to_add": headers,
    });
    if log {
        r["typed_per_filter_config"] = json!({ REPLY_LOG_FILTER: enable() });
    }
    r
}

/// [`direct_route`] as a matcher action, with the body buffer off.
pub fn answer(config: &Config, name: &str, reply: &LocalReply) -> Value {
    let mut r = direct_route(name, reply, true);
    without_body_buffer_merged(config, &mut r);
    tree::route(r)
}

/// `endpoints.ready` when readiness cannot change (no OAuth2 or `aws_sigv4` target): the
/// filter's answer, without a log fragment of its own (as the filter: `"target":"-"`).
pub fn ready_route(config: &Config) -> Value {
    let mut r = direct_route("ready", &LocalReply::ready(&[]), false);
    without_body_buffer_merged(config, &mut r);
    tree::route(r)
}

/// `egress.path_mode: strict`: every path outside the plain class gets the engine's one 400.
/// The log line carries the path as sent when Envoy can write it without JSON escaping
/// ([`log_safe_path_regex`]), else `-` (what the filter logs in that mode).
pub fn strict_refusal(config: &Config) -> Value {
    let reply = LocalReply::error(400, "invalid_path", NOT_PLAIN);
    let logged = answer(config, STRICT_ROUTE, &reply);
    let mut unsafe_path = direct_route(STRICT_ROUTE, &reply, false);
    unsafe_path["typed_per_filter_config"] = json!({ REFUSED_LOG_FILTER: enable() });
    without_body_buffer_merged(config, &mut unsafe_path);
    tree::then(tree::regex(
        ":path",
        &log_safe_path_regex(),
        logged,
        tree::route(unsafe_path),
    ))
}

/// The 404 for paths no route matches.
pub fn not_found(config: &Config, reply: &LocalReply) -> Value {
    answer(config, NOT_FOUND_ROUTE, reply)
}

/// `listener::without_body_buffer` keeping the route's other per-filter configs.
pub fn without_body_buffer_merged(config: &Config, route: &mut Value) {
    let before = route.get("typed_per_filter_config").cloned();
    without_body_buffer(config, route);
    if let (Some(Value::Object(mut old)), Some(Value::Object(new))) =
        (before, route.get("typed_per_filter_config").cloned())
    {
        old.extend(new);
        route["typed_per_filter_config"] = Value::Object(old);
    }
}

/// The metrics endpoint: Envoy's admin `/stats/prometheus`, rate limited.
pub fn metrics_route(config: &Config) -> Value {
    let mut r = json!({
        "name": "metrics",
        "route": {
            "cluster": listener::ADMIN_CLUSTER,
            "regex_rewrite": { "pattern": { "regex": "^.*$" }, "substitution": "/stats/prometheus" },
        },
        "typed_per_filter_config": limits::metrics_ratelimit(),
    });
    without_body_buffer_merged(config, &mut r);
    tree::route(r)
}

/// Level A entries: per target, an exact map on `:method` (POST and PATCH, retried only when
/// they cannot have reached the target), everything else on the target's `other` route. The
/// same names, actions and retries as the wasm engine's routes.
pub fn header_routes(config: &Config) -> Map<String, Value> {
    let mut out = Map::new();
    for target in &config.targets {
        let route = |kind: &str, retry_on: &str, idempotent_only: bool| {
            let mut r = json!({
                "name": format!("{}_{}", target.name, kind),
                "route": target_route_action(config, target, retry_on, idempotent_only),
                "request_headers_to_remove": [wire::TARGET_HEADER],
            });
            if !listener::signs_payload(target) {
                without_body_buffer(config, &mut r);
            }
            tree::route(r)
        };
        let by_method: Map<String, Value> = methods(false)
            .map(|m| {
                (
                    m.to_string(),
                    route(&m.to_ascii_lowercase(), RETRY_WRITE, false),
                )
            })
            .collect();
        out.insert(
            target.name.clone(),
            tree::then(tree::map(
                ":method",
                MapKind::Exact,
                by_method,
                route("other", RETRY_IDEMPOTENT, true),
            )),
        );
    }
    out
}

/// A target's config entry (by name).
pub fn config_target<'c>(config: &'c Config, name: &str) -> Option<&'c Target> {
    config.targets.iter().find(|t| t.name == name)
}
