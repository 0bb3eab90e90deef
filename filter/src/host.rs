//! The one adapter to the proxy-wasm host: every host call of the filter is here, and every
//! host `Status` becomes a typed [`HostError`] (never a panic). [`Host`] implements the
//! core's [`TokenHost`], so the token coordination runs on the same calls.

use egress_core::engine::LocalReply;
use egress_core::plan::LogLevel;
use egress_core::tokens::coord::{HostError, HostStatus, SharedEntry, TokenHost};
use egress_core::tokens::TokenRequest;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{
    BufferType, LogLevel as HostLevel, MapType, MetricType, Status, StreamType,
};
use std::time::Duration;

fn map(call: &'static str) -> impl Fn(Status) -> HostError {
    move |status| {
        HostError::new(
            call,
            match status {
                Status::CasMismatch => HostStatus::CasMismatch,
                Status::NotFound => HostStatus::NotFound,
                Status::BadArgument => HostStatus::BadArgument,
                _ => HostStatus::Other,
            },
        )
    }
}

pub fn host_level(level: LogLevel) -> HostLevel {
    match level {
        LogLevel::Trace => HostLevel::Trace,
        LogLevel::Debug => HostLevel::Debug,
        LogLevel::Info => HostLevel::Info,
        LogLevel::Warn => HostLevel::Warn,
        LogLevel::Error => HostLevel::Error,
    }
}

/// Logs through the host; a failing log call is dropped (there is nowhere else to report it).
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(host_level(level), message);
}

/// The SDK's own log filter (what `log::` macros would pass).
pub fn set_log_level(level: LogLevel) {
    proxy_wasm::set_log_level(host_level(level));
}

/// Header values as bytes: a value may hold any octet (the SDK's `get_map` would trap on a
/// non-UTF-8 value).
pub type Headers = Vec<(String, Vec<u8>)>;

pub fn request_headers() -> Result<Headers, HostError> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(map("get_map(request headers)"))
}

/// Whether `name` (any case) appears exactly once in `headers`, with this value: setting it
/// would change nothing.
pub fn has_only_value(headers: &Headers, name: &str, value: &str) -> bool {
    let mut values = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice());
    values.next() == Some(value.as_bytes()) && values.next().is_none()
}

/// Removes every value of a request header.
pub fn remove_request_header(name: &str) -> Result<(), HostError> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)
        .map_err(map("remove request header"))
}

/// Sets a request header, replacing any value.
pub fn set_request_header(name: &str, value: &str) -> Result<(), HostError> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
        .map_err(map("set request header"))
}

/// Unix milliseconds by the host's clock.
pub fn now_ms() -> Result<u64, HostError> {
    let t = hostcalls::get_current_time().map_err(map("get_current_time"))?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .map_err(|_| HostError::new("get_current_time", HostStatus::BadArgument))
}

/// A seed from the runtime's randomness and the host's clock (leases, jitter, assertion ids).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        ^ now_ms().unwrap_or(0)
}

/// The `:status` of the current response (the stream's, or a callout's).
pub fn status_of(map_type: MapType) -> Option<u16> {
    hostcalls::get_map_value_bytes(map_type, ":status")
        .ok()
        .flatten()
        .and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()))
}

pub fn request_body(size: usize) -> Result<Vec<u8>, HostError> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .map(Option::unwrap_or_default)
        .map_err(map("get_buffer(request body)"))
}

pub fn callout_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The verified peer certificate's first URI SAN (`connection.uri_san_peer_certificate`).
/// The egress listener `egressctl` renders refuses client certificates its CA does not sign,
/// so a value here comes from a verified peer. Absent or not UTF-8: `None`.
pub fn peer_uri_san() -> Option<String> {
    hostcalls::get_property(vec!["connection", "uri_san_peer_certificate"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
}

/// The name of the route Envoy picked for the request (`xds.route_name`); `None` when the
/// host has none or it is not UTF-8.
pub fn route_name() -> Option<String> {
    hostcalls::get_property(vec!["xds", "route_name"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

/// Filter state for the access log (`%FILTER_STATE(wasm.<name>:PLAIN)%`).
pub fn set_property(name: &str, value: &str) -> Result<(), HostError> {
    hostcalls::set_property(vec![name], Some(value.as_bytes())).map_err(map("set_property"))
}

/// A filter-state property set by a wasm filter of this stream (`None` when unset).
pub fn get_property(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_property(vec![name]).ok().flatten()
}

pub fn send_local_reply(reply: &LocalReply) -> Result<(), HostError> {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    hostcalls::send_http_response(
        u32::from(reply.status),
        headers,
        Some(reply.body.as_bytes()),
    )
    .map_err(map("send_http_response"))
}

/// Answers the current request with `reply`; if the host refuses, resets the stream (a
/// paused request must not hang) and logs both.
pub fn reply_or_reset(reply: &LocalReply) {
    if let Err(e) = send_local_reply(reply) {
        log(
            LogLevel::Error,
            &format!("egress: {e}; resetting the request"),
        );
        if let Err(e) = reset_request() {
            log(LogLevel::Error, &format!("egress: {e}"));
        }
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    // Declared as the SDK does; its `reset_http_request` panics on any status but Ok (a
    // stream already gone), and a panic kills the VM.
    fn proxy_close_stream(stream_type: StreamType) -> Status;
}

/// Resets the current request's stream.
pub fn reset_request() -> Result<(), HostError> {
    // SAFETY: a plain host call without pointers.
    match unsafe { proxy_close_stream(StreamType::HttpRequest) } {
        Status::Ok => Ok(()),
        status => Err(map("proxy_close_stream")(status)),
    }
}

pub fn plugin_configuration() -> Result<Option<Vec<u8>>, HostError> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .map_err(map("get_buffer(plugin configuration)"))
}

pub fn set_tick_period(ms: u64) -> Result<(), HostError> {
    hostcalls::set_tick_period(Duration::from_millis(ms)).map_err(map("set_tick_period"))
}

/// Makes `context_id` the effective context (a paused request, or the root again).
pub fn enter_context(context_id: u32) -> Result<(), HostError> {
    hostcalls::set_effective_context(context_id).map_err(map("set_effective_context"))
}

/// Resumes the effective context's paused request.
pub fn resume_request() -> Result<(), HostError> {
    hostcalls::resume_http_request().map_err(map("resume_http_request"))
}

/// The host calls of the token coordination (shared data, clock, callouts, paused requests).
pub struct Host;

impl TokenHost for Host {
    fn now_ms(&self) -> Result<u64, HostError> {
        now_ms()
    }

    fn shared_get(&self, key: &str) -> Result<SharedEntry, HostError> {
        hostcalls::get_shared_data(key)
            .map(|(bytes, cas)| SharedEntry { bytes, cas })
            .map_err(map("get_shared_data"))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(map("set_shared_data"))
    }

    fn dispatch(
        &self,
        cluster: &str,
        request: &TokenRequest,
        timeout_ms: u64,
    ) -> Result<u32, HostError> {
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        hostcalls::dispatch_http_call(
            cluster,
            headers,
            Some(&request.body),
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .map_err(map("dispatch_http_call"))
    }

    fn resume_with(&self, context_id: u32, authorization: &str) -> Result<(), HostError> {
        hostcalls::set_effective_context(context_id).map_err(map("set_effective_context"))?;
        hostcalls::add_map_value(MapType::HttpRequestHeaders, "authorization", authorization)
            .map_err(map("add_map_value(request headers)"))?;
        hostcalls::resume_http_request().map_err(map("resume_http_request"))
    }

    fn answer(&self, context_id: u32, reply: &LocalReply) -> Result<(), HostError> {
        hostcalls::set_effective_context(context_id).map_err(map("set_effective_context"))?;
        send_local_reply(reply)
    }

    fn reset(&self, context_id: u32) -> Result<(), HostError> {
        hostcalls::set_effective_context(context_id).map_err(map("set_effective_context"))?;
        reset_request()
    }

    fn restore_context(&self, context_id: u32) -> Result<(), HostError> {
        hostcalls::set_effective_context(context_id).map_err(map("set_effective_context"))
    }

    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        hostcalls::define_metric(MetricType::Counter, name).map_err(map("define_metric"))
    }

    fn increment(&self, counter: u32) -> Result<(), HostError> {
        hostcalls::increment_metric(counter, 1).map_err(map("increment_metric"))
    }

    fn log(&self, level: LogLevel, line: &str) {
        log(level, line);
    }
}
