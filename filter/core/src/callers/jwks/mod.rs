//! `jwks_url` issuers: their JWKS fetched once per proxy, shared by every worker, refreshed
//! periodically and on an unknown `kid`, and kept in use while the endpoint is down.
//!
//! Per issuer, shared data holds two entries: a small state record (the fetch lease, the
//! version of the last good JWKS, failures, the unknown-kid refresh mark), changed only by
//! compare-and-swap, and the last good document itself, written only by the worker holding
//! the lease after it checked the reply. A reply that is not a usable JWKS (an error status,
//! a body too large, not JSON, no key of a listed algorithm, a `kid` twice) is logged with
//! its reason and never replaces the document in use.
//!
//! - [`schedule`] (this file): when a fetch is due, the state record.
//! - [`manager`]: one worker's [`JwksManager`]: local key sets, fetches, waiting requests.

pub mod manager;
#[cfg(test)]
mod tests;

pub use manager::{JwksManager, NeedOutcome, Wake};

use super::jwt::KeySet;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A good JWKS is fetched again after this long.
pub const REFRESH_MS: u64 = 5 * 60 * 1000;
/// An unknown `kid` triggers at most one refresh per issuer in this window.
pub const KID_REFRESH_MIN_INTERVAL_MS: u64 = 30 * 1000;
/// A JWKS callout is given up after this long (the host answers it as failed).
pub const FETCH_TIMEOUT_MS: u64 = 4000;
/// A request whose token needs keys not fetched yet waits at most this long.
pub const WAIT_MS: u64 = 5000;
/// A JWKS reply larger than this is refused unread.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Retry delay after `failures` failed fetches in a row: 1 s doubling to 60 s.
pub fn backoff_ms(failures: u32) -> u64 {
    if failures == 0 {
        0
    } else {
        crate::tokens::schedule::doubling_ms(1000, 60_000, failures)
    }
}

/// What a request's token needs from the JWKS of issuer `issuer` (its index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksNeed {
    pub issuer: usize,
    pub kind: NeedKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeedKind {
    /// No JWKS was ever fetched: the token cannot be checked yet.
    NeverFetched,
    /// The token's `kid` is not in the JWKS in use: the issuer may have rotated its keys.
    UnknownKid,
}

/// The per-worker key sets of the `jwks_url` issuers, by issuer index.
#[derive(Debug, Default)]
pub struct KeySets {
    sets: HashMap<usize, KeySet>,
}

impl KeySets {
    pub fn get(&self, issuer: usize) -> Option<&KeySet> {
        self.sets.get(&issuer)
    }

    pub fn insert(&mut self, issuer: usize, set: KeySet) {
        self.sets.insert(issuer, set);
    }
}

/// The shared state record of one issuer's JWKS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JwksState {
    /// Bumped by every good fetch (0: never fetched).
    pub version: u64,
    /// When the last good JWKS was fetched (Unix ms).
    pub fetched_ms: u64,
    /// When the last fetch started.
    pub attempt_ms: u64,
    /// Failed fetches in a row.
    pub failures: u32,
    /// The worker fetching, until when.
    pub lease_worker: u64,
    pub lease_until_ms: u64,
    /// An unknown `kid` asked for a refresh (cleared by the fetch that takes the lease).
    pub refresh_wanted: bool,
    /// When an unknown `kid` last asked for one.
    pub kid_refresh_ms: u64,
}

impl JwksState {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn leased(&self, now: u64) -> bool {
        self.lease_worker != 0 && now < self.lease_until_ms
    }

    /// Whether a fetch should start now.
    pub fn due(&self, now: u64) -> bool {
        if self.leased(now) {
            return false;
        }
        if self.refresh_wanted {
            return true;
        }
        let retry_at = self.attempt_ms.saturating_add(backoff_ms(self.failures));
        if self.version == 0 {
            return self.attempt_ms == 0 || now >= retry_at;
        }
        now >= retry_at && now >= self.fetched_ms.saturating_add(REFRESH_MS)
    }

    /// Whether an unknown `kid` may ask for a refresh now (at most one per
    /// [`KID_REFRESH_MIN_INTERVAL_MS`]).
    pub fn kid_refresh_allowed(&self, now: u64) -> bool {
        self.kid_refresh_ms == 0
            || now
                >= self
                    .kid_refresh_ms
                    .saturating_add(KID_REFRESH_MIN_INTERVAL_MS)
    }
}

/// Shared-data keys of one issuer's JWKS: the state record and the document.
pub fn state_key(issuer: &str, url: &str) -> String {
    format!("egress.jwks.state.{issuer}.{url}")
}

pub fn doc_key(issuer: &str, url: &str) -> String {
    format!("egress.jwks.doc.{issuer}.{url}")
}
