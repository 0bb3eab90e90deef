//! Proxy-wasm ABI 0.2.1 enums and the plain data types the harness records.

use std::time::Duration;

/// Header list as the harness stores it: ordered `(name, value)` pairs.
///
/// Names added by the module are lower-cased (as Envoy's `LowerCaseString`
/// does); lookups are case-insensitive.
pub type Headers = Vec<(String, String)>;

/// `proxy_status_t`: the status every hostcall returns to the module.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    /// `OK` (0).
    Ok = 0,
    /// `NOT_FOUND` (1).
    NotFound = 1,
    /// `BAD_ARGUMENT` (2).
    BadArgument = 2,
    /// `SERIALIZATION_FAILURE` (3).
    SerializationFailure = 3,
    /// `PARSE_FAILURE` (4).
    ParseFailure = 4,
    /// `INVALID_MEMORY_ACCESS` (6).
    InvalidMemoryAccess = 6,
    /// `EMPTY` (7).
    Empty = 7,
    /// `CAS_MISMATCH` (8).
    CasMismatch = 8,
    /// `INTERNAL_FAILURE` (10).
    InternalFailure = 10,
    /// `UNIMPLEMENTED` (12).
    Unimplemented = 12,
}

impl Status {
    /// Wire value handed back to the module.
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?} ({})", *self as u32)
    }
}

impl std::error::Error for Status {}

/// `proxy_action_t`: what a stream callback asks the host to do next.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `CONTINUE` (0): keep processing the stream.
    Continue,
    /// `PAUSE` (1): stop iteration until the module resumes the stream.
    Pause,
    /// Any other value the module returned (a module bug, kept for assertions).
    Other(u32),
}

impl Action {
    pub(crate) fn from_raw(raw: u32) -> Action {
        match raw {
            0 => Action::Continue,
            1 => Action::Pause,
            other => Action::Other(other),
        }
    }
}

/// `proxy_log_level_t`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum LogLevel {
    /// 0
    Trace = 0,
    /// 1
    Debug = 1,
    /// 2
    Info = 2,
    /// 3
    Warn = 3,
    /// 4
    Error = 4,
    /// 5
    Critical = 5,
}

impl LogLevel {
    pub(crate) fn from_raw(raw: u32) -> Option<LogLevel> {
        Some(match raw {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// `proxy_map_type_t`: which header map a hostcall addresses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MapType {
    /// 0
    HttpRequestHeaders = 0,
    /// 1
    HttpRequestTrailers = 1,
    /// 2
    HttpResponseHeaders = 2,
    /// 3
    HttpResponseTrailers = 3,
    /// 4
    GrpcReceiveInitialMetadata = 4,
    /// 5
    GrpcReceiveTrailingMetadata = 5,
    /// 6: headers of the HTTP callout response being delivered.
    HttpCallResponseHeaders = 6,
    /// 7: trailers of the HTTP callout response being delivered.
    HttpCallResponseTrailers = 7,
}

impl MapType {
    pub(crate) fn from_raw(raw: u32) -> Option<MapType> {
        Some(match raw {
            0 => MapType::HttpRequestHeaders,
            1 => MapType::HttpRequestTrailers,
            2 => MapType::HttpResponseHeaders,
            3 => MapType::HttpResponseTrailers,
            4 => MapType::GrpcReceiveInitialMetadata,
            5 => MapType::GrpcReceiveTrailingMetadata,
            6 => MapType::HttpCallResponseHeaders,
            7 => MapType::HttpCallResponseTrailers,
            _ => return None,
        })
    }
}

/// `proxy_buffer_type_t`: which byte buffer a hostcall addresses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum BufferType {
    /// 0
    HttpRequestBody = 0,
    /// 1
    HttpResponseBody = 1,
    /// 2
    DownstreamData = 2,
    /// 3
    UpstreamData = 3,
    /// 4: body of the HTTP callout response being delivered.
    HttpCallResponseBody = 4,
    /// 5
    GrpcReceiveBuffer = 5,
    /// 6: the `vm_config` passed to [`crate::Worker::start`].
    VmConfiguration = 6,
    /// 7: the `plugin_config` passed to [`crate::Worker::start`].
    PluginConfiguration = 7,
    /// 8
    CallData = 8,
}

impl BufferType {
    pub(crate) fn from_raw(raw: u32) -> Option<BufferType> {
        Some(match raw {
            0 => BufferType::HttpRequestBody,
            1 => BufferType::HttpResponseBody,
            2 => BufferType::DownstreamData,
            3 => BufferType::UpstreamData,
            4 => BufferType::HttpCallResponseBody,
            5 => BufferType::GrpcReceiveBuffer,
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            8 => BufferType::CallData,
            _ => return None,
        })
    }
}

/// `proxy_metric_type_t`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MetricType {
    /// 0: monotonically increasing.
    Counter = 0,
    /// 1: may go up and down.
    Gauge = 1,
    /// 2: every recorded value is kept (see [`crate::Host::histogram`]).
    Histogram = 2,
}

impl MetricType {
    pub(crate) fn from_raw(raw: u32) -> Option<MetricType> {
        Some(match raw {
            0 => MetricType::Counter,
            1 => MetricType::Gauge,
            2 => MetricType::Histogram,
            _ => return None,
        })
    }
}

/// `proxy_stream_type_t`: argument of `proxy_continue_stream` / `proxy_close_stream`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum StreamType {
    /// 0
    HttpRequest = 0,
    /// 1
    HttpResponse = 1,
    /// 2
    Downstream = 2,
    /// 3
    Upstream = 3,
}

impl StreamType {
    pub(crate) fn from_raw(raw: u32) -> Option<StreamType> {
        Some(match raw {
            0 => StreamType::HttpRequest,
            1 => StreamType::HttpResponse,
            2 => StreamType::Downstream,
            3 => StreamType::Upstream,
            _ => return None,
        })
    }
}

/// One `proxy_log` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Level the module logged at.
    pub level: LogLevel,
    /// Message text (lossily decoded as UTF-8).
    pub message: String,
}

/// A `proxy_send_local_response` captured on a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status code.
    pub status: u32,
    /// `status_code_details` (empty when the SDK passes none).
    pub details: String,
    /// Response body.
    pub body: Vec<u8>,
    /// Extra response headers.
    pub headers: Headers,
    /// gRPC status, `-1` when not a gRPC response.
    pub grpc_status: i32,
}

impl LocalResponse {
    /// The body decoded as UTF-8 (lossy), handy in assertions.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// First header with that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::abi::headers::find(&self.headers, name)
    }
}

/// A `proxy_http_call` the module dispatched and that has not been answered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callout {
    /// Token returned to the module; pass it to [`crate::Worker::respond_callout`].
    pub token: u32,
    /// Upstream (Envoy cluster) name.
    pub upstream: String,
    /// Request headers (including pseudo headers such as `:path`).
    pub headers: Headers,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: Headers,
    /// Timeout the module asked for.
    pub timeout: Duration,
    /// Context that was effective when the call was made (stream or root).
    pub context_id: u32,
    /// Harness clock (nanoseconds since the Unix epoch) when the call was made.
    pub dispatched_at_nanos: u64,
}

impl Callout {
    /// First request header with that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::abi::headers::find(&self.headers, name)
    }
}

/// The answer to a [`Callout`], delivered by [`crate::Worker::respond_callout_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CalloutResponse {
    /// Response headers; include `:status`. Empty means "the call failed".
    pub headers: Headers,
    /// Response body.
    pub body: Vec<u8>,
    /// Response trailers.
    pub trailers: Headers,
}

/// A `proxy_call_foreign_function` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignCall {
    /// Function name, e.g. `clear_route_cache`.
    pub name: String,
    /// Argument bytes.
    pub arguments: Vec<u8>,
    /// Status returned to the module.
    pub status: Status,
}
