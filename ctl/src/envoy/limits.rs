//! Timeouts and limits every rendered listener gets, so slow or idle clients cannot hold
//! connections (a slowloris sending its headers byte by byte is cut off after
//! [`REQUEST_HEADERS_TIMEOUT`]), and the header hygiene of the egress listener.

use egress_core::duration::envoy_duration;
use serde_json::{json, Value};
use std::time::Duration;

/// The whole request head must arrive within this (HTTP/1 and HTTP/2).
pub const REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection without a request in flight is closed after this (Envoy's default: 1 hour).
pub const CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A stream with no byte in either direction is reset after this, at least (raised to the
/// longest target timeout, so a slow answer within its timeout is not cut).
pub const MIN_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The egress listener's whole request (head and body) must arrive within this, unless
/// `http.read_timeout` says otherwise.
pub const EGRESS_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A push is a small signed JSON body: it arrives within this or the stream is closed.
pub const PUSH_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Downstream connections over every listener (Envoy's overload manager refuses more).
pub const MAX_DOWNSTREAM_CONNECTIONS: u64 = 10_000;
/// Bytes buffered per connection before flow control (Envoy's default, made explicit).
pub const PER_CONNECTION_BUFFER_LIMIT: u32 = 1 << 20;
/// Request headers per request.
pub const MAX_HEADERS_COUNT: u32 = 100;

/// Caller headers that describe the caller's network or ask the target to act differently:
/// never forwarded to an external service (Envoy's side; the filter strips more).
pub const FORWARDING_HEADERS: [&str; 8] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "forwarded",
    "x-real-ip",
    "x-request-id",
];

/// Timeouts, limits and hygiene for a connection manager (`hcm`, JSON), whose whole request
/// must arrive within `request_timeout` and whose streams may stay silent `stream_idle`.
pub fn harden(hcm: &mut Value, request_timeout: Duration, stream_idle: Duration) {
    hcm["request_headers_timeout"] = json!(envoy_duration(REQUEST_HEADERS_TIMEOUT));
    hcm["request_timeout"] = json!(envoy_duration(request_timeout));
    hcm["stream_idle_timeout"] = json!(envoy_duration(stream_idle.max(MIN_STREAM_IDLE_TIMEOUT)));
    // Callers' x-request-id is not forwarded and none is made up for them.
    hcm["generate_request_id"] = json!(false);
    let common = &mut hcm["common_http_protocol_options"];
    if !common.is_object() {
        *common = json!({});
    }
    common["idle_timeout"] = json!(envoy_duration(CONNECTION_IDLE_TIMEOUT));
    common["max_headers_count"] = json!(MAX_HEADERS_COUNT);
    // `X_API_KEY` is merged with `X-API-Key` by some servers (CGI, PHP, nginx with
    // underscores_in_headers): such names never reach the filter or a target.
    common["headers_with_underscores_action"] = json!("DROP_HEADER");
}

/// Listener-level limit shared by every listener.
pub fn listener_limits(listener: &mut Value) {
    listener["per_connection_buffer_limit_bytes"] = json!(PER_CONNECTION_BUFFER_LIMIT);
}

/// The bootstrap's overload manager: at most [`MAX_DOWNSTREAM_CONNECTIONS`] downstream
/// connections over all listeners (this also silences Envoy's start-up warning).
pub fn overload_manager() -> Value {
    json!({
        "resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
            },
        }],
    })
}

/// Local rate limit of the metrics route: Envoy renders the whole stats page on its main
/// thread per call, so a burst of callers is answered 429 instead.
pub const METRICS_BURST: u32 = 5;
pub const METRICS_PER_SECOND: u32 = 1;
pub const RATELIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";
const RATELIMIT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

/// The rate limit filter as listed in the connection manager: off unless a route enables it.
pub fn ratelimit_filter() -> Value {
    json!({
        "name": RATELIMIT_FILTER,
        "disabled": true,
        "typed_config": { "@type": RATELIMIT_TYPE, "stat_prefix": "egress_metrics" },
    })
}

/// The metrics route's `typed_per_filter_config`: [`METRICS_BURST`] calls at once, then
/// [`METRICS_PER_SECOND`] per second, for the whole process.
pub fn metrics_ratelimit() -> Value {
    let percent = json!({ "numerator": 100, "denominator": "HUNDRED" });
    json!({
        RATELIMIT_FILTER: {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
            "config": {
                "@type": RATELIMIT_TYPE,
                "stat_prefix": "egress_metrics",
                "token_bucket": {
                    "max_tokens": METRICS_BURST,
                    "tokens_per_fill": METRICS_PER_SECOND,
                    "fill_interval": "1s",
                },
                "filter_enabled": { "default_value": percent, "runtime_key": "egress_metrics_ratelimit_enabled" },
                "filter_enforced": { "default_value": percent, "runtime_key": "egress_metrics_ratelimit_enforced" },
            },
        },
    })
}
