//! The egress listener: connection manager, matcher tree on the routing header, wasm filter, log.

use super::access_log::access_logs;
use super::limits;
use super::native::slow;
use super::native::tree::{self, MapKind};
use super::socket_address;
use egress_core::config::{Config, ListenAddr, Target};
use egress_core::duration::envoy_duration;
use egress_core::plan::{wire, Method};
use serde_json::{json, Map, Value};
use std::path::Path;

/// Name of the cluster that serves `endpoints.metrics` from Envoy's admin.
pub const ADMIN_CLUSTER: &str = "egress_admin";
/// The wasm `vm_id`: listeners with the same id share the token store (shared data).
pub const VM_ID: &str = "egress";

/// Methods Envoy may replay after a request may have reached the target, or (`false`) that get
/// a route of their own retrying only what cannot have reached it: `Method::is_idempotent`.
pub(super) fn methods(idempotent: bool) -> impl Iterator<Item = &'static str> {
    Method::ALL
        .into_iter()
        .filter(move |m| m.is_idempotent() == idempotent)
        .map(Method::as_str)
}

/// The wasm module and the environment variables its VM gets (names only: Envoy reads the
/// values from its own environment).
pub struct WasmModule<'a> {
    pub path: &'a Path,
    pub env_keys: &'a [String],
}

pub fn egress_listener(config: &Config, filter_json: &str, wasm: &WasmModule) -> Value {
    let hcm = json!({
        "route_config": route_config(config),
        "http_filters": http_filters(config, filter_json, wasm),
        "access_log": access_logs(&config.logger, config.callers.is_some()),
    });
    egress_listener_from(config, hcm)
}

/// The egress listener around a connection manager that already has its `route_config`,
/// `http_filters` and `access_log` (either engine): everything else is shared.
pub(super) fn egress_listener_from(config: &Config, mut hcm: Value) -> Value {
    hcm["@type"] = json!("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
    hcm["stat_prefix"] = json!("egress");
    hcm["codec_type"] = json!("AUTO");
    // The filter refuses dot segments, `//` and encoded slashes with a JSON 400 itself;
    // Envoy must hand it the path exactly as the caller sent it.
    hcm["normalize_path"] = json!(false);
    hcm["merge_slashes"] = json!(false);
    // Envoy's own answers (no healthy upstream, timeouts, ...) as our JSON errors.
    hcm["local_reply_config"] = super::local_reply::local_reply_config();
    if let Some(t) = config.http.write_timeout {
        hcm["common_http_protocol_options"] = json!({ "max_stream_duration": envoy_duration(t) });
    }
    let longest_target = config.targets.iter().map(|t| t.timeout).max();
    limits::harden(
        &mut hcm,
        config
            .http
            .read_timeout
            .unwrap_or(limits::EGRESS_REQUEST_TIMEOUT),
        longest_target.unwrap_or_default(),
    );
    let mut listener = json!({
        "name": "egress",
        "address": socket_address(&config.http.listen),
        "filter_chains": [{
            "filters": [{ "name": "envoy.filters.network.http_connection_manager" }],
        }],
    });
    // Moved in, not interpolated: `json!` would copy the whole connection manager.
    listener["filter_chains"][0]["filters"][0]["typed_config"] = hcm;
    limits::listener_limits(&mut listener);
    listener
}

/// The token push listener: the same module and `vm_id` (so pushed tokens land in the shared
/// data the egress listener reads), in the push role. No route: the filter answers everything.
pub fn push_listener(addr: &ListenAddr, filter_json: &str, wasm: &WasmModule) -> Value {
    let hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "egress_push",
        "codec_type": "AUTO",
        "route_config": {
            "name": "egress_push",
            "virtual_hosts": [{ "name": "push", "domains": ["*"], "routes": [{
                "match": { "prefix": "/" },
                "direct_response": { "status": 404 },
            }] }],
        },
        // The filter lets the headers through so it gets the body (see filter/src/push.rs);
        // the buffer filter holds them back from the router until the filter has answered.
        "http_filters": [wasm_filter(filter_json, wasm), push_buffer_filter(), router_filter()],
        // Envoy's own answers (a push that does not arrive in time, a body over the limit).
        "local_reply_config": super::local_reply::local_reply_config(),
    });
    let mut hcm = hcm;
    limits::harden(
        &mut hcm,
        limits::PUSH_REQUEST_TIMEOUT,
        limits::PUSH_REQUEST_TIMEOUT,
    );
    let mut listener = json!({
        "name": "egress_push",
        "address": socket_address(addr),
        "filter_chains": [{ "filters": [{ "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm }] }],
    });
    limits::listener_limits(&mut listener);
    listener
}

/// The wasm filter and the router. With an `aws_sigv4` target in `payload: signed` mode, a
/// buffer filter and the module in the sign role go between them: the egress filter hashes
/// the body as it passes, the buffer filter holds the headers back until the body is complete
/// (other routes disable it), and the signer then signs them (see filter/src/sigv4.rs).
fn http_filters(config: &Config, filter_json: &str, wasm: &WasmModule<'_>) -> Value {
    let mut filters = vec![wasm_filter(filter_json, wasm)];
    if let Some([buffer, signer]) = sigv4_filters(config, filter_json, wasm) {
        filters.extend([buffer, signer]);
    }
    filters.extend([limits::ratelimit_filter(), router_filter()]);
    Value::Array(filters)
}

/// With an `aws_sigv4` target in `payload: signed` mode: the buffer filter and the module in
/// the sign role, which go after the egress filter (see [`http_filters`]).
pub(super) fn sigv4_filters(
    config: &Config,
    filter_json: &str,
    wasm: &WasmModule<'_>,
) -> Option<[Value; 2]> {
    if !config.targets.iter().any(signs_payload) {
        return None;
    }
    let mut signer_config: Value = serde_json::from_str(filter_json).unwrap_or(Value::Null);
    signer_config["role"] = json!(egress_core::plan::Role::Sign);
    let mut signer = wasm_filter(&signer_config.to_string(), wasm);
    signer["name"] = json!(SIGV4_SIGNER);
    signer["typed_config"]["config"]["name"] = json!("egress_sigv4_signer");
    let buffer = json!({
        "name": SIGNED_BODY_BUFFER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": egress_core::sigv4::SIGNED_PAYLOAD_MAX_BYTES,
        },
    });
    Some([buffer, signer])
}

/// Name of the module in the sign role.
pub(super) const SIGV4_SIGNER: &str = "egress.sigv4_signer";

/// Name of the buffer filter of `payload: signed` targets.
pub(super) const SIGNED_BODY_BUFFER: &str = "envoy.filters.http.buffer";

pub(super) fn signs_payload(t: &Target) -> bool {
    matches!(&t.auth, egress_core::config::Auth::AwsSigv4(a) if a.payload == egress_core::sigv4::PayloadMode::Signed)
}

/// Per-route config turning the signed-body buffer off (Envoy resolves it on the route the
/// filter's target header re-picked).
pub(super) fn without_body_buffer(config: &Config, route: &mut Value) {
    if config.targets.iter().any(signs_payload) {
        route["typed_per_filter_config"] = json!({ SIGNED_BODY_BUFFER: {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
            "disabled": true,
        }});
    }
}

fn push_buffer_filter() -> Value {
    json!({
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": egress_core::push::MAX_PUSH_BODY,
        },
    })
}

pub(super) fn wasm_filter(filter_json: &str, wasm: &WasmModule) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "egress",
                "root_id": "egress",
                "fail_open": false,
                "vm_config": {
                    "vm_id": VM_ID,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm.path.display().to_string() } },
                    // Credentials: the VM reads them from these variables of Envoy's
                    // environment (see egress_core::secret_ref); the config holds names only.
                    "environment_variables": { "host_env_keys": wasm.env_keys },
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": filter_json,
                },
            },
        },
    })
}

pub(super) fn router_filter() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            // No x-envoy-* headers towards external services (they describe our internals).
            "suppress_envoy_headers": true,
        },
    })
}

/// The virtual host's matcher tree (no linear route list: Envoy tests a route list one route
/// at a time, so a target's place in it cost every request, and 10 targets already measured
/// slower than 6): an exact map on the routing header the filter sets, with the same
/// per-target routes as the `auto` engine's header routes ([`slow::header_routes`]); without
/// the header, the metrics endpoint by `:path` (query or not), else 404.
fn route_config(config: &Config) -> Value {
    // Only reached if a request got past the filter without a target: never forward it.
    let mut no_target = json!({
        "name": "no_target",
        "direct_response": {
            "status": 404,
            "body": { "inline_string": "{\"error\":\"route_not_found\",\"message\":\"no egress route matches this path\"}" },
        },
        "response_headers_to_add": [{ "header": { "key": "content-type", "value": "application/json" } }],
    });
    without_body_buffer(config, &mut no_target);
    let mut without_target = tree::route(no_target);
    if let Some(metrics) = &config.endpoints.metrics {
        let (mut exact, mut with_query) = (Map::new(), Map::new());
        tree::insert_endpoint(
            &mut exact,
            &mut with_query,
            metrics,
            slow::metrics_route(config),
        );
        without_target = tree::then(tree::map(
            ":path",
            MapKind::Exact,
            exact,
            tree::then(tree::map(
                ":path",
                MapKind::Prefix,
                with_query,
                without_target,
            )),
        ));
    }
    let header_routes = slow::header_routes(config);
    let mut vhost = json!({
        "name": "egress",
        "domains": ["*"],
        "request_headers_to_remove": limits::FORWARDING_HEADERS,
    });
    // Envoy refuses an empty map (a config without targets).
    vhost["matcher"] = if header_routes.is_empty() {
        // A matcher running `without_target` whatever the path.
        tree::regex(":path", ".*", without_target.clone(), without_target)
    } else {
        tree::map(
            wire::TARGET_HEADER,
            MapKind::Exact,
            header_routes,
            without_target,
        )
    };
    json!({ "name": "egress", "virtual_hosts": [vhost] })
}

/// What POST and PATCH retry on: only failures where the request cannot have reached the
/// target.
pub(super) const RETRY_WRITE: &str = "connect-failure,refused-stream";
/// What the other methods retry on (idempotent ones only, see [`target_route_action`]).
pub(super) const RETRY_IDEMPOTENT: &str = "connect-failure,refused-stream,reset,gateway-error";

/// The route action towards a target: its cluster, timeout and retry policy (`retry_on`; with
/// `idempotent_only`, Envoy retries only requests with an idempotent method).
pub(super) fn target_route_action(
    config: &Config,
    target: &Target,
    retry_on: &str,
    idempotent_only: bool,
) -> Value {
    let retries = config.defaults.retry_count;
    let mut r = json!({
        "cluster": wire::target_cluster(&target.name),
        "timeout": envoy_duration(target.timeout),
    });
    if retries > 0 {
        r["retry_policy"] = json!({
            "retry_on": retry_on,
            "num_retries": retries,
            "retry_back_off": {
                "base_interval": envoy_duration(config.defaults.retry_delay),
                "max_interval": envoy_duration(config.defaults.retry_delay * 10),
            },
        });
        if idempotent_only {
            r["retry_policy"]["retriable_request_headers"] = methods(true)
                .map(|m| json!({ "name": ":method", "string_match": { "exact": m } }))
                .collect();
        }
    }
    r
}
