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

pub fn request_headers() -> Result<Vec<(String, String)>, HostError> {
    hostcalls::get_map(MapType::HttpRequestHeaders)
        .map_err(|s| HostError::Status("get_map(request headers)", s))
}

pub fn set_request_headers(headers: &[(String, String)]) -> Result<(), HostError> {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    hostcalls::set_map(MapType::HttpRequestHeaders, pairs)
        .map_err(|s| HostError::Status("set_map(request headers)", s))
}

/// Filter state for the access log (`%FILTER_STATE(wasm.<name>:PLAIN)%`).
pub fn set_property(name: &str, value: &str) -> Result<(), HostError> {
    hostcalls::set_property(vec![name], Some(value.as_bytes()))
        .map_err(|s| HostError::Status("set_property", s))
}

/// Asks Envoy to re-pick the route after the headers changed. Hosts without the function
/// (or that re-pick on their own) answer NotFound, which is fine.
pub fn clear_route_cache() {
    let _ = hostcalls::call_foreign_function("clear_route_cache", None);
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
