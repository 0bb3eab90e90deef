//! When a token is refreshed, which worker fetches it, and how failures back off.
//!
//! Coalescing: every worker reads the [`FetchState`] from shared data and takes the fetch
//! lease with a compare-and-swap write; only the winner dispatches the callout. A lease
//! expires (its worker may have died), so a fetch is never blocked for longer than
//! `token_timeout` plus a margin.

use super::record::{FetchState, TokenRecord};

/// First retry delay after a failed fetch; doubles per failure up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_BASE_MS: u64 = 500;
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// Added to `token_timeout` for the lease, so a reply arriving at the deadline still counts.
pub const LEASE_MARGIN_MS: u64 = 2_000;

/// A worker that dispatched a fetch gives up on its callout this long after the lease ran
/// out: a late reply is still taken until then; only a host that never answers makes the
/// worker start over.
pub const CALLOUT_GRACE_MS: u64 = 5_000;
/// At most one 401-triggered (stale) refresh per target in this interval.
pub const STALE_REFRESH_MIN_INTERVAL_MS: u64 = 30_000;

/// When a lease taken at `now_ms` lapses.
pub fn lease_until_ms(now_ms: u64, token_timeout_ms: u64) -> u64 {
    now_ms
        .saturating_add(token_timeout_ms)
        .saturating_add(LEASE_MARGIN_MS)
}

/// Until when a worker waits for the reply to a callout it dispatched at `now_ms`.
pub fn callout_deadline_ms(now_ms: u64, token_timeout_ms: u64) -> u64 {
    lease_until_ms(now_ms, token_timeout_ms).saturating_add(CALLOUT_GRACE_MS)
}

/// Until when a request that arrived at `now_ms` without a token waits for one: as long as
/// a fetch started now may take (its lease), plus two ticks for the workers that did not
/// fetch to see the result.
pub fn wait_deadline_ms(now_ms: u64, token_timeout_ms: u64, tick_ms: u64) -> u64 {
    lease_until_ms(now_ms, token_timeout_ms).saturating_add(tick_ms.saturating_mul(2))
}

/// Whether a 401 may mark a token stale now, given when the last mark was (0: never).
pub fn may_mark_stale(last_mark_ms: u64, now_ms: u64) -> bool {
    last_mark_ms == 0 || now_ms >= last_mark_ms.saturating_add(STALE_REFRESH_MIN_INTERVAL_MS)
}

/// What a target's token needs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Valid and not near expiry.
    Nothing,
    /// Valid, but due for a background refresh (near expiry, or marked stale by a 401).
    Refresh,
    /// No valid token: requests wait or fail.
    Fetch,
}

/// When a token should be refreshed: `refresh_before` ahead of expiry, but never earlier than
/// half its lifetime (a 60s token with `refresh_before_expiry: 300s` is refreshed after 30s,
/// not continuously).
pub fn refresh_at_ms(record: &TokenRecord, refresh_before_ms: u64) -> u64 {
    let lifetime = record.expires_at_ms.saturating_sub(record.obtained_at_ms);
    let lead = refresh_before_ms.min(lifetime / 2);
    record.expires_at_ms.saturating_sub(lead)
}

pub fn need(record: Option<&TokenRecord>, now_ms: u64, refresh_before_ms: u64) -> Need {
    match record {
        Some(r) if r.is_valid(now_ms) => {
            if r.stale || now_ms >= refresh_at_ms(r, refresh_before_ms) {
                Need::Refresh
            } else {
                Need::Nothing
            }
        }
        _ => Need::Fetch,
    }
}

/// Whether a fetch may start now (no live lease, not in backoff).
pub fn may_start_fetch(state: &FetchState, now_ms: u64) -> bool {
    !state.lease_held(now_ms) && now_ms >= state.next_attempt_ms
}

/// The state to write (by compare-and-swap) to take the lease.
pub fn take_lease(
    state: &FetchState,
    worker: u64,
    now_ms: u64,
    token_timeout_ms: u64,
) -> FetchState {
    FetchState {
        lease_owner: Some(worker),
        lease_until_ms: lease_until_ms(now_ms, token_timeout_ms),
        ..state.clone()
    }
}

/// After a successful fetch: lease released, failures forgotten.
pub fn after_success() -> FetchState {
    FetchState::default()
}

/// After a failed fetch: lease released, next attempt after a jittered exponential backoff.
/// `jitter` is uniform in `[0, 1)`.
pub fn after_failure(state: &FetchState, reason: &str, now_ms: u64, jitter: f64) -> FetchState {
    let failures = state.failures.saturating_add(1);
    FetchState {
        lease_owner: None,
        lease_until_ms: 0,
        failures,
        next_attempt_ms: now_ms.saturating_add(backoff_ms(failures, jitter)),
        last_error: Some(reason.to_string()),
    }
}

/// Delay before attempt `failures + 1`: half fixed, half random ("equal jitter").
pub fn backoff_ms(failures: u32, jitter: f64) -> u64 {
    let full = doubling_ms(BACKOFF_BASE_MS, BACKOFF_MAX_MS, failures);
    let j = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    full / 2 + ((full / 2) as f64 * j) as u64
}

/// Exponential backoff: `base_ms` after the first failure (and for none), doubled for each
/// further one, at most `max_ms`. Every fetcher's retry delay (tokens, JWKS) grows this way.
pub fn doubling_ms(base_ms: u64, max_ms: u64, failures: u32) -> u64 {
    let exp = failures.saturating_sub(1).min(16);
    base_ms.saturating_mul(1u64 << exp).min(max_ms)
}

/// Requests for a target without a valid token fail at once (503) instead of waiting when
/// fetching is known to be failing: the last attempt failed and the next is not due yet.
pub fn fail_fast(record: Option<&TokenRecord>, state: &FetchState, now_ms: u64) -> bool {
    let valid = record.is_some_and(|r| r.is_valid(now_ms));
    !valid && state.failures > 0 && !state.lease_held(now_ms) && now_ms < state.next_attempt_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::tokens::TokenSource;

    fn record(obtained: u64, expires: u64) -> TokenRecord {
        TokenRecord {
            token: Secret::new("t"),
            token_type: "Bearer".into(),
            expires_at_ms: expires,
            obtained_at_ms: obtained,
            source: TokenSource::Fetched,
            version: 1,
            stale: false,
            last_stale_mark_ms: 0,
        }
    }

    #[test]
    fn refresh_is_due_refresh_before_expiry_but_not_before_half_the_lifetime() {
        let r = record(0, 3_600_000);
        assert_eq!(refresh_at_ms(&r, 300_000), 3_300_000);
        assert_eq!(need(Some(&r), 3_299_999, 300_000), Need::Nothing);
        assert_eq!(need(Some(&r), 3_300_000, 300_000), Need::Refresh);
        assert_eq!(need(Some(&r), 3_600_000, 300_000), Need::Fetch);
        let short = record(0, 60_000);
        assert_eq!(refresh_at_ms(&short, 300_000), 30_000);
        assert_eq!(need(None, 0, 1), Need::Fetch);
    }

    #[test]
    fn a_stale_token_is_refreshed_but_still_used() {
        let mut r = record(0, 100_000);
        r.stale = true;
        assert_eq!(need(Some(&r), 10, 1), Need::Refresh);
        assert!(r.is_valid(10));
    }

    #[test]
    fn only_one_lease_at_a_time_and_an_abandoned_lease_expires() {
        let s = FetchState::default();
        assert!(may_start_fetch(&s, 0));
        let leased = take_lease(&s, 7, 1_000, 5_000);
        assert!(!may_start_fetch(&leased, 1_001));
        assert!(may_start_fetch(&leased, 1_000 + 5_000 + LEASE_MARGIN_MS));
    }

    #[test]
    fn backoff_grows_is_jittered_and_bounded() {
        assert_eq!(backoff_ms(1, 0.0), 250);
        assert_eq!(backoff_ms(1, 0.999_999), 499);
        assert_eq!(backoff_ms(2, 0.0), 500);
        assert_eq!(backoff_ms(3, 0.0), 1_000);
        assert_eq!(backoff_ms(30, 0.0), BACKOFF_MAX_MS / 2);
        assert!(backoff_ms(30, 1.0) <= BACKOFF_MAX_MS);
        assert_ne!(backoff_ms(4, 0.1), backoff_ms(4, 0.9));
        let s = after_failure(&FetchState::default(), "status_5xx", 10_000, 0.0);
        assert_eq!((s.failures, s.next_attempt_ms), (1, 10_250));
        let s2 = after_failure(&s, "transport", 10_250, 0.0);
        assert_eq!((s2.failures, s2.next_attempt_ms), (2, 10_750));
        assert_eq!(after_success(), FetchState::default());
    }

    #[test]
    fn requests_fail_fast_only_while_fetching_is_known_to_fail_and_no_token_is_valid() {
        let failing = after_failure(&FetchState::default(), "transport", 0, 0.0);
        assert!(fail_fast(None, &failing, 100));
        assert!(
            !fail_fast(None, &failing, failing.next_attempt_ms),
            "a retry is due: wait for it"
        );
        assert!(
            !fail_fast(Some(&record(0, 1_000)), &failing, 100),
            "the last good token is still used"
        );
        assert!(
            !fail_fast(None, &FetchState::default(), 100),
            "cold start: wait for the first fetch"
        );
    }
}
