//! The `auto` engine's egress listener (`--engine auto`): Envoy routes each request itself
//! and runs the filter only where it adds something Envoy lacks (see
//! [`egress_core::native`] for which route gets what).
//!
//! - [`tree`]: the virtual host's matcher tree (routing header, plain paths, `:path` maps);
//! - [`leaves`]: the leaves of each config route (methods, rewrite, metadata, filters);
//! - [`slow`]: the slow route, the header routes, metrics and the direct answers;
//! - [`strip`]: caller header removal (before routing, and on the leaves);
//! - [`log`]: the request log line, byte for byte the wasm engine's.
//!
//! HCM filters, in order (per-route ones are disabled in the HCM and enabled by the routes
//! that need them): [`FULL_FILTER`], [`ROUTED_FILTER`], the SigV4 buffer and signer (as in
//! the wasm engine), the credential filters of static targets (inserted
//! by the credentials part before the log filters, see [`CREDENTIALS_BEFORE`]), the two log
//! filters, the metrics rate limit and the router.

pub mod leaves;
pub mod log;
pub mod slow;
pub mod strip;
pub mod tree;

use super::limits;
use super::listener::{self, WasmModule};
use egress_core::config::Config;
use egress_core::engine::{Decision, Engine, EngineError, LocalReply};
use egress_core::native::{leaf_kind, LeafKind};
use egress_core::plan::{FilterConfig, FilterEndpoints};
use serde_json::{json, Map, Value};

/// The filter in the egress role (slow route, `filter` leaves).
pub const FULL_FILTER: &str = "egress.full";
/// The filter in the routed role (`routed` leaves).
pub const ROUTED_FILTER: &str = "egress.routed";
/// Name of the slow route.
pub const SLOW_ROUTE: &str = "slow";
/// Name of the 404 route.
pub const NOT_FOUND_ROUTE: &str = "no_route";
/// Static credential filters go right before this filter (after the header removal).
pub const CREDENTIALS_BEFORE: &str = log::LEAF_LOG_FILTER;

pub(crate) const FILTER_CONFIG_TYPE: &str =
    "type.googleapis.com/envoy.config.route.v3.FilterConfig";

/// What the parts of the auto listener read.
pub struct RenderContext<'a> {
    pub config: &'a Config,
    pub filter_config: &'a FilterConfig,
    pub engine: &'a Engine,
    /// The engine's 404 for a path no route matches.
    pub not_found: &'a LocalReply,
}

/// The filter configs of both wasm roles (JSON), and the module.
pub struct Filters<'a> {
    pub egress_json: &'a str,
    /// `None`: no route is served in the routed role.
    pub routed_json: Option<&'a str>,
    pub wasm: &'a WasmModule<'a>,
}

/// Whether some config route is served in the routed role.
pub fn needs_routed_role(filter_config: &FilterConfig) -> bool {
    (0..filter_config.routes.len()).any(|i| leaf_kind(filter_config, i) == Some(LeafKind::Routed))
}

/// The engine's answer to a request for a path no route matches.
fn not_found_reply(filter_config: &FilterConfig) -> Result<LocalReply, EngineError> {
    let mut bare = filter_config.clone();
    bare.routes.clear();
    bare.endpoints = FilterEndpoints {
        health: None,
        ready: None,
        passthrough: Vec::new(),
    };
    match Engine::new(&bare)?.decide("GET", "/") {
        Decision::Respond(r) => Ok(r),
        // Unreachable with no route and no endpoint; never forward anyway.
        _ => Ok(LocalReply::error(
            404,
            "route_not_found",
            "no egress route matches this path",
        )),
    }
}

/// The auto engine's egress listener.
pub fn egress_listener(
    config: &Config,
    filter_config: &FilterConfig,
    filters: &Filters<'_>,
) -> Result<Value, EngineError> {
    let engine = Engine::new(filter_config)?;
    let not_found = not_found_reply(filter_config)?;
    let cx = RenderContext {
        config,
        filter_config,
        engine: &engine,
        not_found: &not_found,
    };
    // Built by moving the parts in: the route config can be tens of megabytes.
    let hcm = tree::object([
        ("route_config", route_config(&cx)),
        ("http_filters", http_filters(&cx, filters)),
        (
            "access_log",
            Value::Array(log::access_logs(&config.logger, config.callers.is_some())),
        ),
        // Caller headers never forwarded, the routing header among them (only the filter sets
        // it): gone before the route is picked.
        (
            "early_header_mutation_extensions",
            json!([{
                "name": "envoy.http.early_header_mutation.header_mutation",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
                    "mutations": strip::early_mutations(&engine),
                },
            }]),
        ),
    ]);
    Ok(listener::egress_listener_from(config, hcm))
}

fn http_filters(cx: &RenderContext<'_>, filters: &Filters<'_>) -> Value {
    let named = |json: &str, name: &str, config_name: &str| {
        let mut f = listener::wasm_filter(json, filters.wasm);
        f["name"] = json!(name);
        f["disabled"] = json!(true);
        f["typed_config"]["config"]["name"] = json!(config_name);
        f
    };
    let mut out = vec![named(filters.egress_json, FULL_FILTER, "egress")];
    if let Some(routed) = filters.routed_json {
        out.push(named(routed, ROUTED_FILTER, "egress_routed"));
    }
    if let Some([buffer, mut signer]) =
        listener::sigv4_filters(cx.config, filters.egress_json, filters.wasm)
    {
        // Only filter-served routes enable it (slow::filter_route_filters).
        signer["disabled"] = json!(true);
        out.extend([buffer, signer]);
    }
    out.extend(log::filters());
    out.extend([limits::ratelimit_filter(), listener::router_filter()]);
    Value::Array(out)
}

fn route_config(cx: &RenderContext<'_>) -> Value {
    let config = cx.config;
    let mut exact = Map::new();
    let mut prefix = Map::new();
    for (i, r) in cx.filter_config.routes.iter().enumerate() {
        leaves::add_route_keys(cx, i, r, &mut exact, &mut prefix);
    }
    // The endpoints win over route keys (the engine checks them first), query or not.
    let slow = slow::slow_route(config, cx.not_found);
    let endpoints = &cx.filter_config.endpoints;
    if let Some(ready) = &endpoints.ready {
        exact.insert(ready.clone(), slow.clone());
        prefix.insert(format!("{ready}?"), slow.clone());
    }
    if let Some(metrics) = &config.endpoints.metrics {
        let m = slow::metrics_route(config);
        exact.insert(metrics.clone(), m.clone());
        prefix.insert(format!("{metrics}?"), m);
    }
    if let Some(health) = &endpoints.health {
        if let Decision::Respond(reply) = cx.engine.decide("GET", health) {
            let h = slow::answer(config, "health", &reply);
            exact.insert(health.clone(), h.clone());
            prefix.insert(format!("{health}?"), h);
        }
    }
    let matcher = tree::virtual_host_matcher(
        slow::header_routes(config),
        slow,
        exact,
        prefix,
        slow::not_found(config, cx.not_found),
    );
    let mut virtual_host = json!({
        "name": "egress",
        "domains": ["*"],
        "request_headers_to_remove": limits::FORWARDING_HEADERS,
    });
    virtual_host["matcher"] = matcher;
    tree::object([
        ("name", json!("egress")),
        ("virtual_hosts", Value::Array(vec![virtual_host])),
    ])
}
