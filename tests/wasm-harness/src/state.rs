//! Per-worker state living inside the wasmtime `Store`: everything hostcalls
//! read or record that is not shared between workers.

use crate::shared::Shared;
use crate::types::{
    Callout, CalloutResponse, ForeignCall, Headers, LocalResponse, LogEntry, StreamType,
};
use std::collections::{BTreeMap, HashMap};
use wasmtime::{Memory, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;

/// Everything the harness knows about one HTTP stream context.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub(crate) request_headers: Headers,
    pub(crate) request_trailers: Headers,
    pub(crate) response_headers: Headers,
    pub(crate) response_trailers: Headers,
    pub(crate) request_body: Vec<u8>,
    pub(crate) response_body: Vec<u8>,
    pub(crate) local_response: Option<LocalResponse>,
    /// `proxy_continue_stream` calls, by stream type.
    pub(crate) resumed: HashMap<StreamType, usize>,
    /// `proxy_close_stream` calls, by stream type.
    pub(crate) closed: HashMap<StreamType, usize>,
    /// Properties the test provides for this stream (override host-wide ones).
    pub(crate) host_properties: BTreeMap<Vec<String>, Vec<u8>>,
    /// Properties the module set with `proxy_set_property` in this context.
    pub(crate) filter_properties: BTreeMap<Vec<String>, Vec<u8>>,
    /// Whether the last body callback paused (Envoy then buffers the next chunk).
    pub(crate) request_body_buffering: bool,
    pub(crate) response_body_buffering: bool,
    pub(crate) finished: bool,
}

/// The `T` of `Store<T>` for one worker.
pub(crate) struct StoreData {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) shared: Shared,
    pub(crate) worker_id: u32,
    pub(crate) root_id: u32,
    pub(crate) next_context_id: u32,
    /// Context hostcalls apply to (set before each callback, changed by
    /// `proxy_set_effective_context`).
    pub(crate) effective_context: u32,
    pub(crate) vm_config: Vec<u8>,
    pub(crate) plugin_config: Vec<u8>,
    pub(crate) streams: HashMap<u32, StreamState>,
    /// Properties set by the module from the root context.
    pub(crate) root_properties: BTreeMap<Vec<String>, Vec<u8>>,
    pub(crate) logs: Vec<LogEntry>,
    pub(crate) callouts: BTreeMap<u32, Callout>,
    pub(crate) next_token: u32,
    /// Response being delivered by `proxy_on_http_call_response`.
    pub(crate) callout_response: Option<CalloutResponse>,
    /// Tick period in ms (0 = disabled) and when the next tick is due.
    pub(crate) tick_period_ms: u32,
    pub(crate) next_tick_nanos: u64,
    pub(crate) foreign_calls: Vec<ForeignCall>,
    pub(crate) unimplemented_calls: Vec<String>,
    pub(crate) done_calls: usize,
    pub(crate) memory: Option<Memory>,
    pub(crate) allocator: Option<TypedFunc<u32, u32>>,
}

impl StoreData {
    pub(crate) fn new(wasi: WasiP1Ctx, shared: Shared, worker_id: u32) -> StoreData {
        StoreData {
            wasi,
            shared,
            worker_id,
            root_id: 1,
            next_context_id: 2,
            effective_context: 1,
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            streams: HashMap::new(),
            root_properties: BTreeMap::new(),
            logs: Vec::new(),
            callouts: BTreeMap::new(),
            next_token: 1,
            callout_response: None,
            tick_period_ms: 0,
            next_tick_nanos: 0,
            foreign_calls: Vec::new(),
            unimplemented_calls: Vec::new(),
            done_calls: 0,
            memory: None,
            allocator: None,
        }
    }

    /// Stream state of the effective context, if it is a stream.
    pub(crate) fn current_stream(&mut self) -> Option<&mut StreamState> {
        self.streams.get_mut(&self.effective_context)
    }
}
