//! A proxy-wasm host in memory for the coordination tests: one [`World`] (shared data, clock,
//! metrics: process-wide, as in Envoy) and one [`MockHost`] per worker. Shared data follows
//! Envoy's rules: every write bumps a CAS token, a write with a stale token fails with
//! `CasMismatch`, a write without one (or to an absent key) is unconditional. Hooks run just
//! before a worker's next write to a key, to land another worker's write between a read and
//! a write.

use super::{HostError, HostStatus, SharedEntry, TokenHost};
use crate::engine::LocalReply;
use crate::plan::LogLevel;
use crate::tokens::TokenRequest;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

type Hook = Box<dyn FnOnce()>;

#[derive(Default)]
pub struct World {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    pub clock_ms: Cell<u64>,
    metrics: RefCell<Vec<(String, u64)>>,
    next_callout: Cell<u32>,
}

impl World {
    pub fn new(now_ms: u64) -> Rc<World> {
        let w = World::default();
        w.clock_ms.set(now_ms);
        Rc::new(w)
    }

    pub fn advance(&self, ms: u64) {
        self.clock_ms.set(self.clock_ms.get() + ms);
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.borrow().get(key).map(|(v, _)| v.clone())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let mut entries = self.entries.borrow_mut();
        if let (Some(c), Some((_, current))) = (cas.filter(|c| *c != 0), entries.get(key)) {
            if c != *current {
                return Err(HostError::new("set_shared_data", HostStatus::CasMismatch));
            }
        }
        let next = self.next_cas.get() + 1;
        self.next_cas.set(next);
        entries.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    pub fn metric(&self, name: &str) -> u64 {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    fn counter_id(&self, name: &str) -> u32 {
        let mut m = self.metrics.borrow_mut();
        if let Some(i) = m.iter().position(|(n, _)| n == name) {
            return i as u32;
        }
        m.push((name.to_string(), 0));
        (m.len() - 1) as u32
    }

    fn increment(&self, id: u32) {
        if let Some((_, v)) = self.metrics.borrow_mut().get_mut(id as usize) {
            *v += 1;
        }
    }
}

/// One worker's view of the host, with what it was asked to do and failures to inject.
pub struct MockHost {
    pub world: Rc<World>,
    hooks: RefCell<Vec<(String, Hook)>>,
    /// Callouts dispatched: (id, cluster).
    pub dispatched: RefCell<Vec<(u32, String)>>,
    /// Requests resumed: (context, authorization).
    pub resumed: RefCell<Vec<(u32, String)>>,
    /// Requests answered: (context, status).
    pub answered: RefCell<Vec<(u32, u16)>>,
    pub resets: RefCell<Vec<u32>>,
    pub restores: Cell<u32>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    pub clock_fails: Cell<bool>,
    /// Writes still to fail with a CAS mismatch (as if another worker always won).
    pub failing_sets: Cell<u32>,
    pub answer_fails: Cell<bool>,
    pub resume_fails: Cell<bool>,
    pub restore_fails: Cell<bool>,
}

impl MockHost {
    pub fn new(world: &Rc<World>) -> MockHost {
        MockHost {
            world: world.clone(),
            hooks: RefCell::new(Vec::new()),
            dispatched: RefCell::new(Vec::new()),
            resumed: RefCell::new(Vec::new()),
            answered: RefCell::new(Vec::new()),
            resets: RefCell::new(Vec::new()),
            restores: Cell::new(0),
            logs: RefCell::new(Vec::new()),
            clock_fails: Cell::new(false),
            failing_sets: Cell::new(0),
            answer_fails: Cell::new(false),
            resume_fails: Cell::new(false),
            restore_fails: Cell::new(false),
        }
    }

    /// Runs `hook` just before this worker's next write to `key` (after its read).
    pub fn before_next_write(&self, key: &str, hook: impl FnOnce() + 'static) {
        self.hooks
            .borrow_mut()
            .push((key.to_string(), Box::new(hook)));
    }

    pub fn last_callout(&self) -> Option<u32> {
        self.dispatched.borrow().last().map(|(id, _)| *id)
    }

    pub fn logged(&self, text: &str) -> bool {
        self.logs.borrow().iter().any(|(_, l)| l.contains(text))
    }
}

fn fail(call: &'static str) -> HostError {
    HostError::new(call, HostStatus::Other)
}

impl TokenHost for MockHost {
    fn now_ms(&self) -> Result<u64, HostError> {
        if self.clock_fails.get() {
            return Err(fail("get_current_time"));
        }
        Ok(self.world.clock_ms.get())
    }

    fn shared_get(&self, key: &str) -> Result<SharedEntry, HostError> {
        Ok(match self.world.entries.borrow().get(key) {
            Some((v, cas)) => SharedEntry {
                bytes: Some(v.clone()),
                cas: Some(*cas),
            },
            None => SharedEntry::default(),
        })
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let hook = {
            let mut hooks = self.hooks.borrow_mut();
            hooks
                .iter()
                .position(|(k, _)| k == key)
                .map(|i| hooks.remove(i).1)
        };
        if let Some(hook) = hook {
            hook();
        }
        if self.failing_sets.get() > 0 {
            self.failing_sets.set(self.failing_sets.get() - 1);
            return Err(HostError::new("set_shared_data", HostStatus::CasMismatch));
        }
        self.world.set(key, value, cas)
    }

    fn dispatch(
        &self,
        cluster: &str,
        _request: &TokenRequest,
        _timeout_ms: u64,
    ) -> Result<u32, HostError> {
        let id = self.world.next_callout.get() + 1;
        self.world.next_callout.set(id);
        self.dispatched.borrow_mut().push((id, cluster.to_string()));
        Ok(id)
    }

    fn resume_with(&self, context_id: u32, authorization: &str) -> Result<(), HostError> {
        if self.resume_fails.get() {
            return Err(fail("resume_http_request"));
        }
        self.resumed
            .borrow_mut()
            .push((context_id, authorization.to_string()));
        Ok(())
    }

    fn answer(&self, context_id: u32, reply: &LocalReply) -> Result<(), HostError> {
        if self.answer_fails.get() {
            return Err(fail("send_http_response"));
        }
        self.answered.borrow_mut().push((context_id, reply.status));
        Ok(())
    }

    fn reset(&self, context_id: u32) -> Result<(), HostError> {
        self.resets.borrow_mut().push(context_id);
        Ok(())
    }

    fn restore_context(&self, _context_id: u32) -> Result<(), HostError> {
        if self.restore_fails.get() {
            return Err(fail("set_effective_context"));
        }
        self.restores.set(self.restores.get() + 1);
        Ok(())
    }

    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        Ok(self.world.counter_id(name))
    }

    fn increment(&self, counter: u32) -> Result<(), HostError> {
        self.world.increment(counter);
        Ok(())
    }

    fn log(&self, level: LogLevel, line: &str) {
        self.logs.borrow_mut().push((level, line.to_string()));
    }
}
