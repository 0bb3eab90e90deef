//! A proxy-wasm host for tests: loads a module compiled against the
//! proxy-wasm ABI 0.2.1 (as produced by the Rust `proxy-wasm` SDK 0.2.x) into
//! wasmtime and drives it the way Envoy does.
//!
//! * [`Host`]: one per test; compiled module, shared data (with CAS), shared
//!   queues, metrics, properties and a controllable clock shared by all
//!   workers.
//! * [`Worker`]: one wasm instance with its own root context, like an Envoy
//!   worker thread. Started with [`Worker::start`]; records logs, callouts,
//!   foreign-function calls, tick period.
//! * [`Stream`]: one HTTP stream context; deliver phases
//!   ([`Stream::request_headers`], [`Stream::response_headers`], ...) and read
//!   what the module did (headers, local response, resumes, properties).
//!
//! ```no_run
//! use proxy_wasm_harness::{Action, Host};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = Host::from_file(proxy_wasm_harness::egress_filter_wasm()?)?;
//! let worker = host.worker()?;
//! assert!(worker.start(b"", br#"{"some": "config"}"#)?);
//! let stream = worker.http_request([(":method", "GET"), (":path", "/x")], true)?;
//! assert_eq!(stream.last_action(), Some(Action::Pause));
//! let token = worker.callouts()[0].token;
//! worker.respond_callout(token, 200, [("x-verdict", "allow")], b"ok")?;
//! assert_eq!(stream.request_resumed(), 1);
//! stream.finish()?;
//! # Ok(())
//! # }
//! ```
//!
//! Hostcalls that get bad guest pointers return `INVALID_MEMORY_ACCESS`; a
//! trap in the module surfaces as [`Error::Trap`]. Imports the harness does
//! not implement are stubbed to return `UNIMPLEMENTED` (12). Set
//! `HARNESS_LOG=1` to echo module logs (and WASI stderr) to stderr.

mod abi;
mod artifacts;
mod core;
mod error;
mod host;
mod memory;
mod shared;
mod state;
mod stream;
mod types;
mod worker;

pub use abi::headers::{deserialize_map, serialize_map};
pub use artifacts::{
    build_wasm, egress_filter_wasm, fixture_wasm, target_dir, workspace_root,
    EGRESS_FILTER_WASM_ENV,
};
pub use error::{Error, Result};
pub use host::Host;
pub use stream::{Stream, ROUTE_NAME_PROPERTY};
pub use types::{
    Action, BufferType, Callout, CalloutResponse, ForeignCall, Headers, LocalResponse, LogEntry,
    LogLevel, MapType, MetricType, Status, StreamType,
};
pub use worker::Worker;
