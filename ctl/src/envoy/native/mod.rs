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
use egress_core::plan::{FilterConfig, FilterEndpoints, PathMode};
use serde_json::{json, Map, Value};

/// The filter in the egress role (slow route, `filter` leaves).
pub const FULL_FILTER: &str = "egress.full";
/// The filter in the routed role (`routed` leaves).
pub const ROUTED_FILTER: &str = "egress.routed";
/// Name of the slow route.
pub const SLOW_ROUTE: &str = "slow";
/// Name of the routes refusing paths that are not plain (`egress.path_mode: strict`).
pub const STRICT_ROUTE: &str = "not_plain";
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
    /// [`needs_full_role`]: without it, no slow route, no header routes, no [`FULL_FILTER`].
    pub full_role: bool,
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

/// Whether the filter runs in its full (egress) role somewhere: on the slow route, which
/// canonicalises or refuses the paths that are not plain (every `path_mode` but `strict`,
/// where Envoy refuses them itself) and answers readiness when it varies
/// ([`Engine::readiness_varies`]), and on the `filter` leaves.
pub fn needs_full_role(filter_config: &FilterConfig, engine: &Engine) -> bool {
    filter_config.path_mode != PathMode::Strict
        || engine.readiness_varies()
        || (0..filter_config.routes.len())
            .any(|i| leaf_kind(filter_config, i) == Some(LeafKind::Full))
}

/// The auto engine's egress listener, and whether it loads the wasm module at all.
pub struct NativeListener {
    pub listener: Value,
    pub loads_module: bool,
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
) -> Result<NativeListener, EngineError> {
    let engine = Engine::new(filter_config)?;
    let not_found = not_found_reply(filter_config)?;
    let cx = RenderContext {
        config,
        filter_config,
        engine: &engine,
        not_found: &not_found,
        full_role: needs_full_role(filter_config, &engine),
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
    let loads_module = cx.full_role || filters.routed_json.is_some();
    Ok(NativeListener {
        listener: listener::egress_listener_from(config, hcm),
        loads_module,
    })
}

fn http_filters(cx: &RenderContext<'_>, filters: &Filters<'_>) -> Value {
    let named = |json: &str, name: &str, config_name: &str| {
        let mut f = listener::wasm_filter(json, filters.wasm);
        f["name"] = json!(name);
        f["disabled"] = json!(true);
        f["typed_config"]["config"]["name"] = json!(config_name);
        f
    };
    let mut out = Vec::new();
    if cx.full_role {
        out.push(named(filters.egress_json, FULL_FILTER, "egress"));
    }
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
    if cx.filter_config.path_mode == PathMode::Strict {
        out.push(log::refused_path_filter());
    }
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
    let slow = cx.full_role.then(|| slow::slow_route(config, cx.not_found));
    let endpoints = &cx.filter_config.endpoints;
    if let Some(ready) = &endpoints.ready {
        // The filter answers when readiness varies (token state), Envoy when it cannot.
        let r = match (&slow, cx.engine.readiness_varies()) {
            (Some(slow), true) => slow.clone(),
            _ => slow::ready_route(config),
        };
        tree::insert_endpoint(&mut exact, &mut prefix, ready, r);
    }
    if let Some(metrics) = &config.endpoints.metrics {
        tree::insert_endpoint(
            &mut exact,
            &mut prefix,
            metrics,
            slow::metrics_route(config),
        );
    }
    if let Some(health) = &endpoints.health {
        if let Decision::Respond(reply) = cx.engine.decide("GET", health) {
            let h = slow::answer(config, "health", &reply);
            tree::insert_endpoint(&mut exact, &mut prefix, health, h);
        }
    }
    // Paths that are not plain: the filter canonicalises or refuses them, or (`strict`)
    // Envoy refuses them itself.
    let (header_routes, not_plain) = match slow {
        Some(slow) if cx.filter_config.path_mode != PathMode::Strict => {
            (slow::header_routes(config), slow)
        }
        Some(_) => (slow::header_routes(config), slow::strict_refusal(config)),
        None => (Map::new(), slow::strict_refusal(config)),
    };
    let matcher = tree::virtual_host_matcher(
        header_routes,
        not_plain,
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
