//! [`Stream`]: one HTTP stream context on a worker.

use crate::core::{len_u32, CoreRef};
use crate::error::{Error, Result};
use crate::state::StreamState;
use crate::types::{Action, BufferType, Headers, LocalResponse, MapType, StreamType};
use std::cell::Cell;
use std::collections::BTreeMap;

fn to_headers<I, K, V>(headers: I) -> Headers
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    headers
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

fn path_key(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| s.to_string()).collect()
}

/// Handle on one HTTP stream context (created by [`crate::Worker::http_request`]
/// or [`crate::Worker::create_stream`]).
///
/// Methods named after a phase (`request_headers`, `response_body`, ...)
/// deliver that phase to the module and return its [`Action`]; the other
/// methods read what the module did. The handle stays valid after
/// [`Stream::finish`] so tests can inspect the final state.
pub struct Stream {
    core: CoreRef,
    id: u32,
    last_action: Cell<Option<Action>>,
}

impl Stream {
    pub(crate) fn new(core: CoreRef, id: u32) -> Stream {
        Stream {
            core,
            id,
            last_action: Cell::new(None),
        }
    }

    /// Context id of this stream.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Action returned by the most recent phase callback.
    pub fn last_action(&self) -> Option<Action> {
        self.last_action.get()
    }

    fn with<R>(&self, f: impl FnOnce(&StreamState) -> R) -> R {
        let core = self.core.borrow();
        match core.store.data().streams.get(&self.id) {
            Some(state) => f(state),
            None => f(&StreamState::default()),
        }
    }

    /// Updates the stream state, then calls `export(id, arg, [eos])`.
    fn deliver(
        &self,
        export: &str,
        update: impl FnOnce(&mut StreamState) -> u32,
        end_of_stream: Option<bool>,
    ) -> Result<Action> {
        let mut core = self.core.borrow_mut();
        let state = core
            .store
            .data_mut()
            .streams
            .get_mut(&self.id)
            .ok_or_else(|| Error::Usage(format!("stream {} does not exist", self.id)))?;
        if state.finished {
            return Err(Error::Usage(format!("stream {} already finished", self.id)));
        }
        let arg = update(state);
        let raw = match end_of_stream {
            Some(eos) => core.call::<_, u32>(export, self.id, (self.id, arg, u32::from(eos)))?,
            None => core.call::<_, u32>(export, self.id, (self.id, arg))?,
        };
        let action = raw.map_or(Action::Continue, Action::from_raw);
        self.last_action.set(Some(action));
        Ok(action)
    }

    /// Delivers request headers: `proxy_on_request_headers(id, n, eos)`.
    pub fn request_headers<I, K, V>(&self, headers: I, end_of_stream: bool) -> Result<Action>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let headers = to_headers(headers);
        self.deliver(
            "proxy_on_request_headers",
            |s| {
                s.request_headers = headers;
                len_u32(s.request_headers.len())
            },
            Some(end_of_stream),
        )
    }

    /// Delivers a request body chunk: `proxy_on_request_body(id, size, eos)`.
    /// If the previous body callback paused, the chunk is appended to the
    /// buffered body (Envoy's StopIterationAndBuffer), otherwise it replaces it.
    pub fn request_body(&self, chunk: &[u8], end_of_stream: bool) -> Result<Action> {
        let action = self.deliver(
            "proxy_on_request_body",
            |s| {
                if !s.request_body_buffering {
                    s.request_body.clear();
                }
                s.request_body.extend_from_slice(chunk);
                len_u32(s.request_body.len())
            },
            Some(end_of_stream),
        )?;
        self.update_state(|s| s.request_body_buffering = action == Action::Pause);
        Ok(action)
    }

    /// Delivers request trailers: `proxy_on_request_trailers(id, n)`.
    pub fn request_trailers<I, K, V>(&self, trailers: I) -> Result<Action>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let trailers = to_headers(trailers);
        self.deliver(
            "proxy_on_request_trailers",
            |s| {
                s.request_trailers = trailers;
                len_u32(s.request_trailers.len())
            },
            None,
        )
    }

    /// Delivers response headers: `proxy_on_response_headers(id, n, eos)`.
    pub fn response_headers<I, K, V>(&self, headers: I, end_of_stream: bool) -> Result<Action>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let headers = to_headers(headers);
        self.deliver(
            "proxy_on_response_headers",
            |s| {
                s.response_headers = headers;
                len_u32(s.response_headers.len())
            },
            Some(end_of_stream),
        )
    }

    /// Delivers a response body chunk: `proxy_on_response_body(id, size, eos)`
    /// (buffering like [`Stream::request_body`]).
    pub fn response_body(&self, chunk: &[u8], end_of_stream: bool) -> Result<Action> {
        let action = self.deliver(
            "proxy_on_response_body",
            |s| {
                if !s.response_body_buffering {
                    s.response_body.clear();
                }
                s.response_body.extend_from_slice(chunk);
                len_u32(s.response_body.len())
            },
            Some(end_of_stream),
        )?;
        self.update_state(|s| s.response_body_buffering = action == Action::Pause);
        Ok(action)
    }

    /// Delivers response trailers: `proxy_on_response_trailers(id, n)`.
    pub fn response_trailers<I, K, V>(&self, trailers: I) -> Result<Action>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let trailers = to_headers(trailers);
        self.deliver(
            "proxy_on_response_trailers",
            |s| {
                s.response_trailers = trailers;
                len_u32(s.response_trailers.len())
            },
            None,
        )
    }

    /// Ends the stream: `proxy_on_done(id)`, `proxy_on_log(id)`,
    /// `proxy_on_delete(id)`. Phase methods fail afterwards; readers keep
    /// working.
    pub fn finish(&self) -> Result<()> {
        let mut core = self.core.borrow_mut();
        let finished = core
            .store
            .data()
            .streams
            .get(&self.id)
            .is_none_or(|s| s.finished);
        if finished {
            return Err(Error::Usage(format!("stream {} already finished", self.id)));
        }
        core.call::<_, u32>("proxy_on_done", self.id, self.id)?;
        core.call::<_, ()>("proxy_on_log", self.id, self.id)?;
        core.call::<_, ()>("proxy_on_delete", self.id, self.id)?;
        if let Some(state) = core.store.data_mut().streams.get_mut(&self.id) {
            state.finished = true;
        }
        Ok(())
    }

    fn update_state(&self, f: impl FnOnce(&mut StreamState)) {
        let mut core = self.core.borrow_mut();
        if let Some(state) = core.store.data_mut().streams.get_mut(&self.id) {
            f(state);
        }
    }

    /// Current content of a header map (as modified by the module). Map types
    /// 6/7 (callout response) are not per stream and return an empty list.
    pub fn map(&self, map_type: MapType) -> Headers {
        self.with(|s| match map_type {
            MapType::HttpRequestHeaders => s.request_headers.clone(),
            MapType::HttpRequestTrailers => s.request_trailers.clone(),
            MapType::HttpResponseHeaders => s.response_headers.clone(),
            MapType::HttpResponseTrailers => s.response_trailers.clone(),
            _ => Vec::new(),
        })
    }

    /// Current request headers (after the module's changes).
    pub fn request_header_map(&self) -> Headers {
        self.map(MapType::HttpRequestHeaders)
    }

    /// Current response headers (after the module's changes).
    pub fn response_header_map(&self) -> Headers {
        self.map(MapType::HttpResponseHeaders)
    }

    /// First request header named `name` (case-insensitive).
    pub fn request_header(&self, name: &str) -> Option<String> {
        self.with(|s| crate::abi::headers::find(&s.request_headers, name).map(str::to_owned))
    }

    /// First response header named `name` (case-insensitive).
    pub fn response_header(&self, name: &str) -> Option<String> {
        self.with(|s| crate::abi::headers::find(&s.response_headers, name).map(str::to_owned))
    }

    /// Current content of the request or response body buffer.
    pub fn buffer(&self, buffer_type: BufferType) -> Vec<u8> {
        self.with(|s| match buffer_type {
            BufferType::HttpRequestBody => s.request_body.clone(),
            BufferType::HttpResponseBody => s.response_body.clone(),
            _ => Vec::new(),
        })
    }

    /// The local response the module sent (`proxy_send_local_response`), if any.
    pub fn local_response(&self) -> Option<LocalResponse> {
        self.with(|s| s.local_response.clone())
    }

    /// How many times the module resumed the request
    /// (`proxy_continue_stream(HttpRequest)` or an alias).
    pub fn request_resumed(&self) -> usize {
        self.resumed(StreamType::HttpRequest)
    }

    /// How many times the module resumed `stream_type`.
    pub fn resumed(&self, stream_type: StreamType) -> usize {
        self.with(|s| s.resumed.get(&stream_type).copied().unwrap_or(0))
    }

    /// How many times the module closed/reset `stream_type` (`proxy_close_stream`).
    pub fn closed(&self, stream_type: StreamType) -> usize {
        self.with(|s| s.closed.get(&stream_type).copied().unwrap_or(0))
    }

    /// Provides a property for this stream only (read by `proxy_get_property`,
    /// overrides [`crate::Host::set_property`]). `path` segments as the SDK
    /// passes them, e.g. `&["request", "path"]`.
    pub fn set_property(&self, path: &[&str], value: impl Into<Vec<u8>>) {
        let value = value.into();
        self.update_state(|s| {
            s.host_properties.insert(path_key(path), value);
        });
    }

    /// Provides Envoy's `xds.route_name` for this stream: the name of the route the router
    /// picked (what a filter in the `auto` engine's routed role reads). Set it before the
    /// request headers, as Envoy has picked the route by then.
    pub fn set_route_name(&self, name: &str) {
        self.set_property(&ROUTE_NAME_PROPERTY, name.as_bytes());
    }

    /// Value the module set with `proxy_set_property` on this stream.
    pub fn filter_property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.with(|s| s.filter_properties.get(&path_key(path)).cloned())
    }

    /// Everything the module set with `proxy_set_property` on this stream.
    pub fn filter_properties(&self) -> BTreeMap<Vec<String>, Vec<u8>> {
        self.with(|s| s.filter_properties.clone())
    }

    /// Whether [`Stream::finish`] ran.
    pub fn is_finished(&self) -> bool {
        self.with(|s| s.finished)
    }
}

/// The property path of Envoy's route name (`xds.route_name`), see [`Stream::set_route_name`].
pub const ROUTE_NAME_PROPERTY: [&str; 2] = ["xds", "route_name"];

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).finish()
    }
}
