//! Host calls, with every failure mapped to a logged, typed outcome: never a panic.

use egress_core::engine::LocalReply;
use egress_core::plan::LogLevel;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel as HostLevel, MapType, Status};

#[derive(Debug)]
pub enum HostError {
    Status(&'static str, Status),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Status(call, status) => write!(f, "{call} failed: {status:?}"),
        }
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

/// Header values as bytes: a value may hold any octet (the SDK's `get_map` would trap on a
/// non-UTF-8 value).
pub type Headers = Vec<(String, Vec<u8>)>;

pub fn request_headers() -> Result<Headers, HostError> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
        .map_err(|s| HostError::Status("get_map(request headers)", s))
}

/// Removes every value of a request header.
pub fn remove_request_header(name: &str) -> Result<(), HostError> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)
        .map_err(|s| HostError::Status("remove request header", s))
}

/// Sets a request header, replacing any value.
pub fn set_request_header(name: &str, value: &str) -> Result<(), HostError> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
        .map_err(|s| HostError::Status("set request header", s))
}

/// Unix milliseconds by the host's clock (0 if the host cannot tell).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Shared data: the value and its compare-and-swap token.
pub fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

/// Writes shared data; with `cas`, only if nobody wrote since it was read.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), cas)
}

/// Acts on another stream of this worker (resuming or answering a paused request).
pub fn set_effective_context(context_id: u32) -> Result<(), HostError> {
    hostcalls::set_effective_context(context_id)
        .map_err(|s| HostError::Status("set_effective_context", s))
}

pub fn add_request_header(name: &str, value: &str) -> Result<(), HostError> {
    hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value)
        .map_err(|s| HostError::Status("add_map_value(request headers)", s))
}

pub fn resume_request() -> Result<(), HostError> {
    hostcalls::resume_http_request().map_err(|s| HostError::Status("resume_http_request", s))
}

/// The `:status` of the current response (the stream's, or a callout's).
pub fn status_of(map: MapType) -> Option<u16> {
    hostcalls::get_map_value_bytes(map, ":status")
        .ok()
        .flatten()
        .and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()))
}

pub fn request_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpRequestBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub fn callout_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A counter by name (ids are cached by the caller).
pub fn define_counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name).ok()
}

pub fn increment(id: u32) {
    let _ = hostcalls::increment_metric(id, 1);
}

/// Filter state for the access log (`%FILTER_STATE(wasm.<name>:PLAIN)%`).
pub fn set_property(name: &str, value: &str) -> Result<(), HostError> {
    hostcalls::set_property(vec![name], Some(value.as_bytes()))
        .map_err(|s| HostError::Status("set_property", s))
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
    .map_err(|s| HostError::Status("send_http_response", s))
}

pub fn plugin_configuration() -> Result<Option<Vec<u8>>, HostError> {
    hostcalls::get_buffer(
        proxy_wasm::types::BufferType::PluginConfiguration,
        0,
        usize::MAX,
    )
    .map_err(|s| HostError::Status("get_buffer(plugin configuration)", s))
}
