//! [`Host`]: one per test. Owns the compiled module and the state all workers
//! share (shared data, queues, metrics, properties, clock).

use crate::abi;
use crate::core::WorkerCore;
use crate::error::{Error, Result};
use crate::shared::{ForeignFn, Shared};
use crate::state::StoreData;
use crate::types::{LogLevel, MetricType, Status};
use crate::worker::Worker;
use anyhow::Context as _;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime::{Config, Engine, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;

/// Compiling a filter with an unoptimized (debug) wasmtime takes seconds, so
/// compiled modules are cached per process, keyed by the wasm bytes.
fn compile(bytes: &[u8]) -> Result<(Engine, Module)> {
    static CACHE: OnceLock<Mutex<HashMap<u64, (Engine, Module)>>> = OnceLock::new();
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    let key = hasher.finish();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(hit);
    }
    let engine = Engine::new(&Config::new())?;
    let module = Module::new(&engine, bytes)?;
    if let Ok(mut c) = cache.lock() {
        c.insert(key, (engine.clone(), module.clone()));
    }
    Ok((engine, module))
}

/// The proxy side of the test: compiled module, shared state, clock.
///
/// ```no_run
/// # fn main() -> proxy_wasm_harness::Result<()> {
/// use proxy_wasm_harness::Host;
/// use std::time::Duration;
///
/// let host = Host::from_file(proxy_wasm_harness::egress_filter_wasm()?)?;
/// let (a, b) = (host.worker()?, host.worker()?);
/// assert!(a.start(b"", b"{}")? && b.start(b"", b"{}")?);
/// host.advance_and_tick(Duration::from_secs(10))?;
/// # Ok(())
/// # }
/// ```
pub struct Host {
    engine: Engine,
    module: Module,
    linker: Linker<StoreData>,
    shared: Shared,
    workers: RefCell<Vec<Worker>>,
    next_worker_id: Cell<u32>,
    stubbed_imports: Vec<String>,
}

impl Host {
    /// Loads a module from a `.wasm` (or `.wat`) file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Host> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading wasm module {}", path.display()))?;
        Host::from_bytes(&bytes)
    }

    /// Loads a module from binary wasm or WAT text.
    pub fn from_bytes(bytes: &[u8]) -> Result<Host> {
        let (engine, module) = compile(bytes)?;
        let shared = Shared::new();
        let mut linker = Linker::new(&engine);
        abi::link(&mut linker)?;
        let mut probe = Store::new(
            &engine,
            StoreData::new(WasiCtxBuilder::new().build_p1(), shared.clone(), 0),
        );
        let stubbed_imports = abi::stub_missing_imports(&mut linker, &module, &mut probe)?;
        Ok(Host {
            engine,
            module,
            linker,
            shared,
            workers: RefCell::new(Vec::new()),
            next_worker_id: Cell::new(1),
            stubbed_imports,
        })
    }

    /// Imports of the module the harness does not implement (stubbed to
    /// return `UNIMPLEMENTED`), as `module::name`.
    pub fn stubbed_imports(&self) -> &[String] {
        &self.stubbed_imports
    }

    /// Instantiates a new worker (not started: call [`Worker::start`]).
    ///
    /// WASI gets the variables set with [`Host::set_env`] (like Envoy's
    /// `vm_config.environment_variables`), no args or preopens; stderr is
    /// inherited only when `HARNESS_LOG` is set. `random_get` and clocks work.
    pub fn worker(&self) -> Result<Worker> {
        let id = self.next_worker_id.get();
        self.next_worker_id.set(id + 1);
        let mut wasi = WasiCtxBuilder::new();
        {
            let shared = self.shared.lock();
            if shared.echo_logs {
                wasi.inherit_stderr();
            }
            for (k, v) in &shared.env {
                wasi.env(k, v);
            }
        }
        let mut store = Store::new(
            &self.engine,
            StoreData::new(wasi.build_p1(), self.shared.clone(), id),
        );
        let instance = self
            .linker
            .instantiate(&mut store, &self.module)
            .map_err(Error::from)?;
        let worker = Worker {
            core: Rc::new(RefCell::new(WorkerCore {
                store,
                instance,
                failed: false,
                started: false,
            })),
            id,
        };
        self.workers.borrow_mut().push(worker.clone());
        Ok(worker)
    }

    /// Every worker created so far, in creation order.
    pub fn workers(&self) -> Vec<Worker> {
        self.workers.borrow().clone()
    }

    // ---- clock -------------------------------------------------------------

    /// Harness time, as returned by `proxy_get_current_time_nanoseconds`.
    /// Starts at 2024-01-01T00:00:00Z and only moves when told to.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.shared.lock().now_nanos)
    }

    /// Harness time in nanoseconds since the Unix epoch.
    pub fn now_nanos(&self) -> u64 {
        self.shared.lock().now_nanos
    }

    /// Sets the harness time (does not fire ticks).
    pub fn set_time(&self, time: SystemTime) {
        let nanos = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.shared.lock().now_nanos = nanos;
    }

    /// Moves the clock forward without firing anything.
    pub fn advance(&self, by: Duration) {
        let mut state = self.shared.lock();
        state.now_nanos = state
            .now_nanos
            .saturating_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Moves the clock forward by `by`, delivering in time order every event
    /// that falls due, with the clock set to the event's due time:
    /// `proxy_on_tick` on each worker whose tick period elapsed (repeatedly if
    /// several periods elapsed), and a failure response (0 headers, like
    /// Envoy's timeout) for every callout whose timeout elapsed.
    ///
    /// Returns the number of ticks fired.
    pub fn advance_and_tick(&self, by: Duration) -> Result<usize> {
        enum Event {
            Tick(Worker),
            Timeout(Worker, u32),
        }
        let target = self
            .now_nanos()
            .saturating_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX));
        let mut ticks = 0;
        loop {
            let mut next: Option<(u64, Event)> = None;
            for worker in self.workers() {
                if let Some(due) = worker.next_tick_nanos() {
                    if due <= target && next.as_ref().is_none_or(|(d, _)| due < *d) {
                        next = Some((due, Event::Tick(worker.clone())));
                    }
                }
                if let Some((token, due)) = worker.next_callout_deadline() {
                    if due <= target && next.as_ref().is_none_or(|(d, _)| due < *d) {
                        next = Some((due, Event::Timeout(worker.clone(), token)));
                    }
                }
            }
            let Some((due, event)) = next else { break };
            {
                let mut state = self.shared.lock();
                state.now_nanos = state.now_nanos.max(due);
            }
            match event {
                Event::Tick(worker) => {
                    worker.fire_scheduled_tick(due)?;
                    ticks += 1;
                }
                Event::Timeout(worker, token) => worker.fail_callout(token)?,
            }
        }
        self.shared.lock().now_nanos = target;
        Ok(ticks)
    }

    // ---- shared data & queues ------------------------------------------------

    /// Current value and CAS of shared data `key`.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.lock().data.get(key).cloned()
    }

    /// Sets shared data `key` with the module's semantics (`cas` 0 =
    /// unconditional; mismatch → `Err(Status::CasMismatch)`).
    pub fn set_shared_data(
        &self,
        key: &str,
        value: impl Into<Vec<u8>>,
        cas: u32,
    ) -> Result<(), Status> {
        match self.shared.lock().set_shared_data(key, value.into(), cas) {
            Status::Ok => Ok(()),
            status => Err(status),
        }
    }

    /// All shared-data keys, sorted.
    pub fn shared_data_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.shared.lock().data.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Id of shared queue `name`, registering it (without owner) if needed.
    pub fn register_queue(&self, name: &str) -> u32 {
        self.shared.lock().register_queue(name, None)
    }

    /// Pushes an item on queue `name` (which must exist); the owner is
    /// notified by [`Host::dispatch_queue_ready`].
    pub fn enqueue(&self, name: &str, item: impl Into<Vec<u8>>) -> Result<(), Status> {
        let mut state = self.shared.lock();
        let id = state.queue_id(name).ok_or(Status::NotFound)?;
        let queue = state.queue_mut(id).ok_or(Status::NotFound)?;
        queue.items.push_back(item.into());
        queue.pending_notifications += 1;
        Ok(())
    }

    /// Pops the front item of queue `name`.
    pub fn dequeue(&self, name: &str) -> Option<Vec<u8>> {
        let mut state = self.shared.lock();
        let id = state.queue_id(name)?;
        state.queue_mut(id)?.items.pop_front()
    }

    /// Calls `proxy_on_queue_ready` on the owning worker once for each enqueue
    /// since the last dispatch. Returns how many notifications were delivered.
    pub fn dispatch_queue_ready(&self) -> Result<usize> {
        let pending: Vec<(u32, u32, usize)> = {
            let mut state = self.shared.lock();
            let mut pending = Vec::new();
            for (index, queue) in state.queues.iter_mut().enumerate() {
                if let (Some(owner), n) = (queue.owner, queue.pending_notifications) {
                    if n > 0 {
                        pending.push((owner, u32::try_from(index + 1).unwrap_or(u32::MAX), n));
                    }
                }
                queue.pending_notifications = 0;
            }
            pending
        };
        let mut delivered = 0;
        for (owner, queue_id, n) in pending {
            if let Some(worker) = self.workers().into_iter().find(|w| w.id() == owner) {
                for _ in 0..n {
                    worker.queue_ready(queue_id)?;
                    delivered += 1;
                }
            }
        }
        Ok(delivered)
    }

    // ---- metrics -------------------------------------------------------------

    /// Current value of metric `name` (summed over all workers, since metrics
    /// are shared by name). For histograms: the last recorded value.
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.shared
            .lock()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Type of metric `name`, if defined.
    pub fn metric_type(&self, name: &str) -> Option<MetricType> {
        self.shared
            .lock()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.kind)
    }

    /// Every value recorded on histogram `name`.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        self.shared
            .lock()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.recorded.clone())
            .unwrap_or_default()
    }

    /// All metrics by name.
    pub fn metrics(&self) -> BTreeMap<String, u64> {
        self.shared
            .lock()
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.value))
            .collect()
    }

    // ---- knobs ---------------------------------------------------------------

    /// Level returned by `proxy_get_log_level` (default `Trace`).
    pub fn set_log_level(&self, level: LogLevel) {
        self.shared.lock().log_level = level;
    }

    /// Provides a property to every worker and stream (`proxy_get_property`).
    /// `path` segments as the SDK passes them, e.g. `&["plugin_name"]`.
    pub fn set_property(&self, path: &[&str], value: impl Into<Vec<u8>>) {
        let key = path.iter().map(|s| s.to_string()).collect();
        self.shared.lock().properties.insert(key, value.into());
    }

    /// Removes a host-wide property.
    pub fn remove_property(&self, path: &[&str]) {
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.shared.lock().properties.remove(&key);
    }

    /// Makes `proxy_http_call` to `upstream` fail with `status` (e.g.
    /// `BadArgument`, what Envoy returns for an unknown cluster).
    pub fn reject_http_calls_to(&self, upstream: &str, status: Status) {
        self.shared
            .lock()
            .rejected_upstreams
            .insert(upstream.to_string(), status);
    }

    /// Undoes [`Host::reject_http_calls_to`].
    pub fn accept_http_calls_to(&self, upstream: &str) {
        self.shared.lock().rejected_upstreams.remove(upstream);
    }

    /// Registers a foreign function for `proxy_call_foreign_function`
    /// (unregistered names return `NOT_FOUND`; every call is recorded, see
    /// [`Worker::foreign_calls`]).
    pub fn register_foreign_function(
        &self,
        name: &str,
        func: impl Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync + 'static,
    ) {
        let func: ForeignFn = std::sync::Arc::new(func);
        self.shared.lock().foreign.insert(name.to_string(), func);
    }

    /// Sets an environment variable of the VMs created from now on (WASI
    /// `environ_get`/`environ_sizes_get`), as Envoy does from
    /// `vm_config.environment_variables`. Workers already created keep theirs.
    pub fn set_env(&self, name: &str, value: &str) {
        let mut shared = self.shared.lock();
        shared.env.retain(|(k, _)| k != name);
        shared.env.push((name.to_string(), value.to_string()));
    }

    /// Turns echoing of module logs to stderr on or off (default: on when
    /// the `HARNESS_LOG` env var is set to something other than `0`).
    pub fn echo_logs(&self, on: bool) {
        self.shared.lock().echo_logs = on;
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("workers", &self.workers.borrow().len())
            .finish()
    }
}
