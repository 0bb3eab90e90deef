//! State shared by every worker of one [`crate::Host`]: shared data, queues,
//! metrics, the clock and the knobs tests turn (properties, log level, ...).

use crate::types::{LogLevel, MetricType, Status};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Host-side implementation of a foreign function (`proxy_call_foreign_function`).
///
/// Receives the argument bytes; returns the result bytes or a status.
pub type ForeignFn = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync>;

/// Start of the harness clock: 2024-01-01T00:00:00Z.
pub(crate) const EPOCH_NANOS: u64 = 1_704_067_200 * 1_000_000_000;

#[derive(Clone, Debug)]
pub(crate) struct Metric {
    pub(crate) kind: MetricType,
    pub(crate) name: String,
    pub(crate) value: u64,
    pub(crate) recorded: Vec<u64>,
}

#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) name: String,
    pub(crate) items: VecDeque<Vec<u8>>,
    /// Worker that registered the queue (gets `proxy_on_queue_ready`).
    pub(crate) owner: Option<u32>,
    /// Enqueues since the owner was last notified.
    pub(crate) pending_notifications: usize,
}

pub(crate) struct SharedState {
    pub(crate) now_nanos: u64,
    pub(crate) log_level: LogLevel,
    /// key -> (value, cas)
    pub(crate) data: HashMap<String, (Vec<u8>, u32)>,
    pub(crate) next_cas: u32,
    pub(crate) queues: Vec<Queue>,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) properties: BTreeMap<Vec<String>, Vec<u8>>,
    pub(crate) rejected_upstreams: HashMap<String, Status>,
    pub(crate) foreign: HashMap<String, ForeignFn>,
    pub(crate) echo_logs: bool,
    /// Environment variables of every worker created from now on (WASI `environ_get`).
    pub(crate) env: Vec<(String, String)>,
}

impl SharedState {
    pub(crate) fn new() -> SharedState {
        SharedState {
            now_nanos: EPOCH_NANOS,
            log_level: LogLevel::Trace,
            data: HashMap::new(),
            next_cas: 1,
            queues: Vec::new(),
            metrics: Vec::new(),
            properties: BTreeMap::new(),
            rejected_upstreams: HashMap::new(),
            foreign: HashMap::new(),
            env: Vec::new(),
            echo_logs: std::env::var("HARNESS_LOG").is_ok_and(|v| !v.is_empty() && v != "0"),
        }
    }

    fn bump_cas(&mut self) -> u32 {
        let cas = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        cas
    }

    /// Envoy/proxy-wasm-cpp-host semantics: `cas == 0` always writes; a
    /// non-zero `cas` must match the current one when the key exists.
    pub(crate) fn set_shared_data(&mut self, key: &str, value: Vec<u8>, cas: u32) -> Status {
        let new_cas = self.bump_cas();
        match self.data.get_mut(key) {
            Some(entry) => {
                if cas != 0 && cas != entry.1 {
                    return Status::CasMismatch;
                }
                *entry = (value, new_cas);
            }
            None => {
                self.data.insert(key.to_string(), (value, new_cas));
            }
        }
        Status::Ok
    }

    pub(crate) fn queue_id(&self, name: &str) -> Option<u32> {
        self.queues
            .iter()
            .position(|q| q.name == name)
            .and_then(|i| u32::try_from(i + 1).ok())
    }

    pub(crate) fn queue_mut(&mut self, id: u32) -> Option<&mut Queue> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.queues.get_mut(index)
    }

    pub(crate) fn register_queue(&mut self, name: &str, owner: Option<u32>) -> u32 {
        if let Some(id) = self.queue_id(name) {
            if let Some(q) = self.queue_mut(id) {
                if owner.is_some() {
                    q.owner = owner;
                }
            }
            return id;
        }
        self.queues.push(Queue {
            name: name.to_string(),
            items: VecDeque::new(),
            owner,
            pending_notifications: 0,
        });
        u32::try_from(self.queues.len()).unwrap_or(u32::MAX)
    }

    pub(crate) fn metric_mut(&mut self, id: u32) -> Option<&mut Metric> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.metrics.get_mut(index)
    }

    pub(crate) fn define_metric(&mut self, kind: MetricType, name: &str) -> u32 {
        if let Some(i) = self.metrics.iter().position(|m| m.name == name) {
            return u32::try_from(i + 1).unwrap_or(u32::MAX);
        }
        self.metrics.push(Metric {
            kind,
            name: name.to_string(),
            value: 0,
            recorded: Vec::new(),
        });
        u32::try_from(self.metrics.len()).unwrap_or(u32::MAX)
    }
}

/// Cheaply clonable handle on the shared state.
#[derive(Clone)]
pub(crate) struct Shared(Arc<Mutex<SharedState>>);

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared(Arc::new(Mutex::new(SharedState::new())))
    }

    /// Locks the state; a poisoned lock (a test panicked while holding it) is
    /// recovered rather than propagated, the data is plain bookkeeping.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
