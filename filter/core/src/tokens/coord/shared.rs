//! The shared-data protocol: each per-target entry is changed only by compare-and-swap, read
//! again and retried on a conflict (at most [`CAS_ATTEMPTS`] times), and every conflict is
//! reported to the caller, which counts it.
//!
//! proxy-wasm cannot create an entry by compare-and-swap (a write without a CAS token is
//! unconditional), so an entry that does not exist yet is written and read back: if the bytes
//! read are not ours, someone else wrote meanwhile and the update is retried as a conflict.
//! The filter creates every per-target entry when it starts ([`ensure_exists`]), so after
//! start every write is a true compare-and-swap.

use super::{HostError, HostStatus, SharedEntry, TokenHost};
use crate::tokens::record::{fetch_key, token_key};
use crate::tokens::schedule;
use crate::tokens::{FetchState, FetchedToken, TokenRecord, TokenSource};

/// How many times one update is tried before giving up (each failure is a conflict: another
/// worker wrote between our read and our write).
pub const CAS_ATTEMPTS: u32 = 8;

/// Bytes stored under a token key before any token exists: present (so later writes are
/// compare-and-swap) but not a record.
pub const NO_TOKEN: &[u8] = b"{}";

/// What an update callback decides from the current value.
pub enum Step<T> {
    Write(T),
    /// Leave the entry as it is.
    Keep,
}

/// The result of an update: the value written (or `None` when the callback kept the entry)
/// and how many compare-and-swap conflicts it took.
#[derive(Debug)]
pub struct Updated<T> {
    pub written: Option<T>,
    pub conflicts: u32,
}

/// An update that did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("{0} (after {1} compare-and-swap conflicts)")]
    Host(HostError, u32),
    #[error("gave up after {0} compare-and-swap conflicts")]
    Contended(u32),
}

impl UpdateError {
    pub fn conflicts(&self) -> u32 {
        match self {
            UpdateError::Host(_, n) | UpdateError::Contended(n) => *n,
        }
    }
}

/// Writes `bytes` over what was read with `cas`: compare-and-swap when the entry existed, else
/// create it and read it back (a different value read back is a conflict).
pub fn write_over(
    host: &dyn TokenHost,
    key: &str,
    bytes: &[u8],
    cas: Option<u32>,
) -> Result<(), HostError> {
    match cas {
        Some(c) => host.shared_set(key, bytes, Some(c)),
        None => {
            host.shared_set(key, bytes, None)?;
            let back = host.shared_get(key)?;
            if back.bytes.as_deref() == Some(bytes) {
                Ok(())
            } else {
                Err(HostError::new(
                    "shared_set(create)",
                    HostStatus::CasMismatch,
                ))
            }
        }
    }
}

/// Reads `key`, lets `step` decide from the decoded value, writes by compare-and-swap, and
/// retries on a conflict.
pub fn update<T>(
    host: &dyn TokenHost,
    key: &str,
    decode: impl Fn(&[u8]) -> Option<T>,
    encode: impl Fn(&T) -> Vec<u8>,
    mut step: impl FnMut(Option<&T>) -> Step<T>,
) -> Result<Updated<T>, UpdateError> {
    let mut conflicts = 0;
    while conflicts < CAS_ATTEMPTS {
        let entry = host
            .shared_get(key)
            .map_err(|e| UpdateError::Host(e, conflicts))?;
        let current = entry.bytes.as_deref().and_then(&decode);
        let next = match step(current.as_ref()) {
            Step::Keep => {
                return Ok(Updated {
                    written: None,
                    conflicts,
                })
            }
            Step::Write(next) => next,
        };
        let cas = if entry.bytes.is_some() {
            entry.cas
        } else {
            None
        };
        match write_over(host, key, &encode(&next), cas) {
            Ok(()) => {
                return Ok(Updated {
                    written: Some(next),
                    conflicts,
                })
            }
            Err(e) if e.is_cas_mismatch() => conflicts += 1,
            Err(e) => return Err(UpdateError::Host(e, conflicts)),
        }
    }
    Err(UpdateError::Contended(conflicts))
}

/// Creates `key` with `initial` if it does not exist. The only unconditional write: two
/// workers starting together write the same bytes.
pub fn ensure_exists(host: &dyn TokenHost, key: &str, initial: &[u8]) -> Result<(), HostError> {
    match host.shared_get(key)? {
        SharedEntry { bytes: Some(_), .. } => Ok(()),
        SharedEntry { bytes: None, .. } => host.shared_set(key, initial, None),
    }
}

/// Creates a target's token and fetch-state entries (at start).
pub fn ensure_target(host: &dyn TokenHost, target: &str) -> Result<(), HostError> {
    ensure_exists(host, &fetch_key(target), &FetchState::default().to_bytes())?;
    ensure_exists(host, &token_key(target), NO_TOKEN)
}

pub fn read_record(
    host: &dyn TokenHost,
    target: &str,
) -> Result<(Option<TokenRecord>, Option<u32>), HostError> {
    let e = host.shared_get(&token_key(target))?;
    Ok((e.bytes.as_deref().and_then(TokenRecord::from_bytes), e.cas))
}

pub fn read_state(host: &dyn TokenHost, target: &str) -> Result<FetchState, HostError> {
    let e = host.shared_get(&fetch_key(target))?;
    Ok(e.bytes
        .as_deref()
        .and_then(FetchState::from_bytes)
        .unwrap_or_default())
}

fn update_record(
    host: &dyn TokenHost,
    target: &str,
    step: impl FnMut(Option<&TokenRecord>) -> Step<TokenRecord>,
) -> Result<Updated<TokenRecord>, UpdateError> {
    update(
        host,
        &token_key(target),
        TokenRecord::from_bytes,
        TokenRecord::to_bytes,
        step,
    )
}

fn update_state(
    host: &dyn TokenHost,
    target: &str,
    step: impl FnMut(Option<&FetchState>) -> Step<FetchState>,
) -> Result<Updated<FetchState>, UpdateError> {
    update(
        host,
        &fetch_key(target),
        FetchState::from_bytes,
        FetchState::to_bytes,
        step,
    )
}

/// The version the next record gets: one more than the current one, so versions only grow
/// and no two records of a target share one.
fn next_version(current: Option<&TokenRecord>) -> u64 {
    current.map_or(0, |r| r.version).saturating_add(1)
}

/// Stores a token this worker fetched (the fetch started at `started_ms`). A pushed token
/// that arrived while the fetch was in flight is newer than the fetch: it is kept, and
/// `written` is `None`.
pub fn store_fetched(
    host: &dyn TokenHost,
    target: &str,
    fetched: &FetchedToken,
    started_ms: u64,
    now_ms: u64,
) -> Result<Updated<TokenRecord>, UpdateError> {
    update_record(host, target, |current| {
        if let Some(c) = current {
            let pushed_meanwhile = c.source == TokenSource::Pushed
                && c.obtained_at_ms >= started_ms
                && !c.stale
                && c.is_valid(now_ms);
            if pushed_meanwhile {
                return Step::Keep;
            }
        }
        Step::Write(TokenRecord {
            token: crate::secret::Secret::new(fetched.token.clone()),
            token_type: fetched.token_type.clone(),
            expires_at_ms: fetched.expires_at_ms,
            obtained_at_ms: now_ms,
            source: TokenSource::Fetched,
            version: next_version(current),
            stale: false,
            last_stale_mark_ms: current.map_or(0, |c| c.last_stale_mark_ms),
        })
    })
}

/// Stores a pushed token (its version is set here).
pub fn store_pushed(
    host: &dyn TokenHost,
    target: &str,
    record: &TokenRecord,
) -> Result<Updated<TokenRecord>, UpdateError> {
    update_record(host, target, |current| {
        Step::Write(TokenRecord {
            version: next_version(current),
            last_stale_mark_ms: current.map_or(0, |c| c.last_stale_mark_ms),
            ..record.clone()
        })
    })
}

/// What a 401 for a token version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleMark {
    /// The record is now stale (one refresh follows).
    Marked,
    /// The version is not current, or already stale: nothing to do.
    Ignored,
    /// A stale refresh happened less than [`schedule::STALE_REFRESH_MIN_INTERVAL_MS`] ago.
    Suppressed,
}

/// Marks the token of `version` stale: at most once per version, and not again within
/// [`schedule::STALE_REFRESH_MIN_INTERVAL_MS`] of the previous mark (a caller hitting a path
/// that always answers 401 must not drive fetches at the identity provider).
pub fn mark_stale(
    host: &dyn TokenHost,
    target: &str,
    version: u64,
    now_ms: u64,
) -> Result<(StaleMark, u32), UpdateError> {
    let mut outcome = StaleMark::Ignored;
    let updated = update_record(host, target, |current| {
        outcome = StaleMark::Ignored;
        let Some(r) = current.filter(|r| r.version == version && !r.stale) else {
            return Step::Keep;
        };
        if !schedule::may_mark_stale(r.last_stale_mark_ms, now_ms) {
            outcome = StaleMark::Suppressed;
            return Step::Keep;
        }
        outcome = StaleMark::Marked;
        Step::Write(TokenRecord {
            stale: true,
            version: next_version(Some(r)),
            last_stale_mark_ms: now_ms,
            ..r.clone()
        })
    })?;
    Ok((outcome, updated.conflicts))
}

/// Takes the fetch lease for `worker` if no live lease exists and no backoff is running.
/// `written` is `Some` when this worker won it.
pub fn take_lease(
    host: &dyn TokenHost,
    target: &str,
    worker: u64,
    now_ms: u64,
    token_timeout_ms: u64,
) -> Result<Updated<FetchState>, UpdateError> {
    update_state(host, target, |current| {
        let state = current.cloned().unwrap_or_default();
        if schedule::may_start_fetch(&state, now_ms) {
            Step::Write(schedule::take_lease(
                &state,
                worker,
                now_ms,
                token_timeout_ms,
            ))
        } else {
            Step::Keep
        }
    })
}

/// Records the end of `worker`'s fetch: a success clears the failures, a failure backs off.
/// The lease is released only if `worker` still holds it (a lease that lapsed may have been
/// taken by another worker, whose fetch is still running).
pub fn finish_fetch(
    host: &dyn TokenHost,
    target: &str,
    worker: u64,
    failure: Option<&str>,
    now_ms: u64,
    jitter: f64,
) -> Result<Updated<FetchState>, UpdateError> {
    update_state(host, target, |current| {
        let state = current.cloned().unwrap_or_default();
        let mut next = match failure {
            None => schedule::after_success(),
            Some(reason) => schedule::after_failure(&state, reason, now_ms, jitter),
        };
        if state.lease_owner.is_some_and(|o| o != worker) {
            next.lease_owner = state.lease_owner;
            next.lease_until_ms = state.lease_until_ms;
        }
        Step::Write(next)
    })
}
