//! [`Worker`]: one instance of the module with its own root context, like an
//! Envoy worker thread.

use crate::core::{len_u32, CoreRef};
use crate::error::{Error, Result};
use crate::state::StreamState;
use crate::stream::Stream;
use crate::types::{Callout, CalloutResponse, ForeignCall, LogEntry, LogLevel};
use std::time::Duration;

/// One wasm instance (own `Store`, own root context). Workers created from the
/// same [`crate::Host`] share shared data, queues, metrics, properties and the
/// clock, and nothing else.
///
/// Cloning a `Worker` clones the handle, not the instance.
#[derive(Clone)]
pub struct Worker {
    pub(crate) core: CoreRef,
    pub(crate) id: u32,
}

impl Worker {
    /// Harness-assigned worker number (1, 2, ... in creation order).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Context id of this worker's root context.
    pub fn root_context_id(&self) -> u32 {
        self.core.borrow().root_id()
    }

    /// Boots the VM like Envoy: `_initialize` (or `_start`),
    /// `proxy_on_context_create(root, 0)`, `proxy_on_vm_start(root, len)` and
    /// `proxy_on_configure(root, len)`. The configurations are readable through
    /// `proxy_get_buffer_bytes` (VmConfiguration / PluginConfiguration).
    ///
    /// Returns `Ok(false)` when `proxy_on_vm_start` or `proxy_on_configure`
    /// returned false (Envoy would reject the config), `Err` on a trap.
    /// Call it once per worker; use [`Worker::configure`] to reconfigure.
    pub fn start(&self, vm_config: &[u8], plugin_config: &[u8]) -> Result<bool> {
        let mut core = self.core.borrow_mut();
        if core.started {
            return Err(Error::Usage("worker already started".into()));
        }
        core.started = true;
        let root = core.root_id();
        core.store.data_mut().vm_config = vm_config.to_vec();
        core.initialize()?;
        core.call::<_, ()>("proxy_on_context_create", root, (root, 0u32))?;
        let vm_ok = core
            .call::<_, u32>("proxy_on_vm_start", root, (root, len_u32(vm_config.len())))?
            .unwrap_or(1);
        if vm_ok == 0 {
            return Ok(false);
        }
        drop(core);
        self.configure(plugin_config)
    }

    /// Delivers a (new) plugin configuration: `proxy_on_configure(root, len)`.
    /// Returns what the module returned.
    pub fn configure(&self, plugin_config: &[u8]) -> Result<bool> {
        let mut core = self.core.borrow_mut();
        let root = core.root_id();
        core.store.data_mut().plugin_config = plugin_config.to_vec();
        let ok = core
            .call::<_, u32>(
                "proxy_on_configure",
                root,
                (root, len_u32(plugin_config.len())),
            )?
            .unwrap_or(1);
        Ok(ok != 0)
    }

    /// Calls `proxy_on_tick(root)` now, regardless of the tick period.
    pub fn tick(&self) -> Result<()> {
        let mut core = self.core.borrow_mut();
        let root = core.root_id();
        core.call::<_, ()>("proxy_on_tick", root, root)?;
        Ok(())
    }

    /// Period last set with `proxy_set_tick_period_milliseconds` (`None` when
    /// unset or 0).
    pub fn tick_period(&self) -> Option<Duration> {
        let period = self.core.borrow().store.data().tick_period_ms;
        (period > 0).then(|| Duration::from_millis(u64::from(period)))
    }

    /// Creates an HTTP stream context (`proxy_on_context_create(id, root)`)
    /// without delivering anything yet.
    pub fn create_stream(&self) -> Result<Stream> {
        let mut core = self.core.borrow_mut();
        let root = core.root_id();
        let data = core.store.data_mut();
        let id = data.next_context_id;
        data.next_context_id += 1;
        data.streams.insert(id, StreamState::default());
        core.call::<_, ()>("proxy_on_context_create", id, (id, root))?;
        Ok(Stream::new(self.core.clone(), id))
    }

    /// Creates a stream and delivers request headers
    /// (`proxy_on_request_headers(id, n, end_of_stream)`); the returned
    /// action is available as [`Stream::last_action`].
    ///
    /// ```no_run
    /// # fn demo(worker: &proxy_wasm_harness::Worker) -> proxy_wasm_harness::Result<()> {
    /// use proxy_wasm_harness::Action;
    /// let stream = worker.http_request([(":method", "GET"), (":path", "/")], true)?;
    /// assert_eq!(stream.last_action(), Some(Action::Continue));
    /// # Ok(())
    /// # }
    /// ```
    pub fn http_request<I, K, V>(&self, headers: I, end_of_stream: bool) -> Result<Stream>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let stream = self.create_stream()?;
        stream.request_headers(headers, end_of_stream)?;
        Ok(stream)
    }

    /// HTTP callouts (`proxy_http_call`) not answered yet, by token.
    pub fn callouts(&self) -> Vec<Callout> {
        self.core
            .borrow()
            .store
            .data()
            .callouts
            .values()
            .cloned()
            .collect()
    }

    /// The pending callout with `token`, if any.
    pub fn callout(&self, token: u32) -> Option<Callout> {
        self.core
            .borrow()
            .store
            .data()
            .callouts
            .get(&token)
            .cloned()
    }

    /// Answers callout `token` with `status` (sent as the `:status` header),
    /// extra `headers` and `body`, via
    /// `proxy_on_http_call_response(root, token, n_headers, body_len, 0)`.
    pub fn respond_callout<I, K, V>(
        &self,
        token: u32,
        status: u16,
        headers: I,
        body: &[u8],
    ) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut all = vec![(":status".to_string(), status.to_string())];
        all.extend(headers.into_iter().map(|(k, v)| (k.into(), v.into())));
        self.respond_callout_with(
            token,
            CalloutResponse {
                headers: all,
                body: body.to_vec(),
                trailers: Vec::new(),
            },
        )
    }

    /// Answers callout `token` with a fully specified response.
    pub fn respond_callout_with(&self, token: u32, response: CalloutResponse) -> Result<()> {
        self.core.borrow_mut().deliver_callout(token, response)
    }

    /// Fails callout `token` the way Envoy reports a reset/timeout: a response
    /// with 0 headers, empty body and no trailers.
    pub fn fail_callout(&self, token: u32) -> Result<()> {
        self.respond_callout_with(token, CalloutResponse::default())
    }

    /// Everything the module logged so far with `proxy_log`.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.core.borrow().store.data().logs.clone()
    }

    /// Returns and clears the captured logs.
    pub fn take_logs(&self) -> Vec<LogEntry> {
        std::mem::take(&mut self.core.borrow_mut().store.data_mut().logs)
    }

    /// Whether some log line at `level` or above contains `needle`.
    pub fn logged(&self, level: LogLevel, needle: &str) -> bool {
        self.core
            .borrow()
            .store
            .data()
            .logs
            .iter()
            .any(|l| l.level >= level && l.message.contains(needle))
    }

    /// Calls made with `proxy_call_foreign_function`, in order.
    pub fn foreign_calls(&self) -> Vec<ForeignCall> {
        self.core.borrow().store.data().foreign_calls.clone()
    }

    /// Imports the harness does not implement that the module called
    /// (`module::name`, in call order). They returned `UNIMPLEMENTED`.
    pub fn unimplemented_calls(&self) -> Vec<String> {
        self.core.borrow().store.data().unimplemented_calls.clone()
    }

    /// How many times the module called `proxy_done`.
    pub fn done_calls(&self) -> usize {
        self.core.borrow().store.data().done_calls
    }

    /// Delivers `proxy_on_queue_ready(root, queue_id)`.
    pub fn queue_ready(&self, queue_id: u32) -> Result<()> {
        let mut core = self.core.borrow_mut();
        let root = core.root_id();
        core.call::<_, ()>("proxy_on_queue_ready", root, (root, queue_id))?;
        Ok(())
    }

    /// Shuts the root context down: `proxy_on_done(root)`; when it returns
    /// true also `proxy_on_log` and `proxy_on_delete`. Returns what
    /// `proxy_on_done` returned (false = the module will call `proxy_done`).
    pub fn shutdown(&self) -> Result<bool> {
        let mut core = self.core.borrow_mut();
        let root = core.root_id();
        let done = core
            .call::<_, u32>("proxy_on_done", root, root)?
            .unwrap_or(1)
            != 0;
        if done {
            core.call::<_, ()>("proxy_on_log", root, root)?;
            core.call::<_, ()>("proxy_on_delete", root, root)?;
        }
        Ok(done)
    }

    /// Whether the VM trapped; a failed worker refuses further calls with
    /// [`crate::Error::VmFailed`].
    pub fn is_failed(&self) -> bool {
        self.core.borrow().failed
    }

    /// Properties the module set with `proxy_set_property` from its root
    /// context (e.g. during `on_configure` or `on_tick`).
    pub fn root_property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.core
            .borrow()
            .store
            .data()
            .root_properties
            .get(&key)
            .cloned()
    }

    pub(crate) fn next_tick_nanos(&self) -> Option<u64> {
        let core = self.core.borrow();
        let data = core.store.data();
        (!core.failed && data.tick_period_ms > 0).then_some(data.next_tick_nanos)
    }

    /// Schedules the next tick one period after `due` and fires `on_tick`.
    pub(crate) fn fire_scheduled_tick(&self, due: u64) -> Result<()> {
        {
            let mut core = self.core.borrow_mut();
            let data = core.store.data_mut();
            data.next_tick_nanos = due.saturating_add(u64::from(data.tick_period_ms) * 1_000_000);
        }
        self.tick()
    }

    /// Earliest callout deadline (token, deadline) among pending callouts.
    pub(crate) fn next_callout_deadline(&self) -> Option<(u32, u64)> {
        let core = self.core.borrow();
        if core.failed {
            return None;
        }
        core.store
            .data()
            .callouts
            .values()
            .filter(|c| !c.timeout.is_zero())
            .map(|c| {
                let timeout = u64::try_from(c.timeout.as_nanos()).unwrap_or(u64::MAX);
                (c.token, c.dispatched_at_nanos.saturating_add(timeout))
            })
            .min_by_key(|(_, deadline)| *deadline)
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("id", &self.id).finish()
    }
}
