//! Token coordination across the workers of one proxy, host-free.
//!
//! Every worker has its own VM; they share only proxy-wasm shared data (a key-value store
//! whose writes can be compare-and-swap). This module holds everything that decides what to
//! read and write there: the fetch lease, token versions, wait deadlines, stale marking, the
//! bound on 401-driven refreshes, the push store and its replay cache. It reaches the host
//! only through [`TokenHost`], which the wasm glue implements with host calls and the tests
//! with a mock ([`mock`]) that can interleave workers at will.
//!
//! - [`shared`]: the shared-data protocol: compare-and-swap updates of the token record and
//!   the fetch state, with every conflict retried a bounded number of times and counted.
//! - [`manager`]: one worker's [`TokenManager`]: local copies, waiting requests, fetches.
//! - [`inflight`]: the callout a fetcher (tokens, JWKS) waits for, and the clock it reads.
//! - [`push_store`]: what a verified push writes (the token, the `jti` replay cache) and the
//!   status a push listener reports.

#![deny(clippy::indexing_slicing)]

pub mod inflight;
pub mod manager;
#[cfg(test)]
pub mod mock;
pub mod push_store;
pub mod shared;
#[cfg(test)]
mod tests;

pub use manager::{Lookup, TokenManager, TokenTarget};

use crate::engine::LocalReply;
use crate::plan::LogLevel;
use crate::tokens::TokenRequest;

/// How often each worker looks at its tokens (the glue sets the host's tick to this).
pub const TICK_MS: u64 = 100;

/// What a host call can fail with, as far as the coordination cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStatus {
    /// A compare-and-swap write lost: someone wrote since the read.
    CasMismatch,
    NotFound,
    BadArgument,
    /// Anything else the host reported.
    Other,
}

/// A failed host call: which call, and the host's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {status:?}")]
pub struct HostError {
    pub call: &'static str,
    pub status: HostStatus,
}

impl HostError {
    pub fn new(call: &'static str, status: HostStatus) -> Self {
        Self { call, status }
    }

    pub fn is_cas_mismatch(&self) -> bool {
        self.status == HostStatus::CasMismatch
    }
}

/// One shared-data entry as read: its bytes (if present) and its compare-and-swap token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedEntry {
    pub bytes: Option<Vec<u8>>,
    pub cas: Option<u32>,
}

/// Everything the coordination needs from a proxy-wasm host. Calls act on the worker that
/// owns the implementation (shared data is process-wide).
pub trait TokenHost {
    /// Unix milliseconds by the host's clock. An error must never be turned into a time:
    /// a zero clock would make every token look valid.
    fn now_ms(&self) -> Result<u64, HostError>;
    fn shared_get(&self, key: &str) -> Result<SharedEntry, HostError>;
    /// Writes `value`; with `cas`, only if the entry was not written since it was read
    /// (else [`HostStatus::CasMismatch`]). Without `cas` the write is unconditional (the only
    /// way to create an entry in proxy-wasm).
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
    /// Sends the token request through `cluster`; returns the callout id.
    fn dispatch(
        &self,
        cluster: &str,
        request: &TokenRequest,
        timeout_ms: u64,
    ) -> Result<u32, HostError>;
    /// Adds `authorization` to the paused request `context_id` and resumes it.
    fn resume_with(&self, context_id: u32, authorization: &str) -> Result<(), HostError>;
    /// Answers the paused request `context_id` with `reply`.
    fn answer(&self, context_id: u32, reply: &LocalReply) -> Result<(), HostError>;
    /// Resets the paused request `context_id` (when it could not be answered).
    fn reset(&self, context_id: u32) -> Result<(), HostError>;
    /// Makes `context_id` (the root) the effective context again.
    fn restore_context(&self, context_id: u32) -> Result<(), HostError>;
    fn define_counter(&self, name: &str) -> Result<u32, HostError>;
    fn increment(&self, counter: u32) -> Result<(), HostError>;
    fn log(&self, level: LogLevel, line: &str);
}
