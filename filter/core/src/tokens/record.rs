//! What shared data holds per OAuth2 target: the token record and the fetch state.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// Fetched by the filter itself through an HTTP callout.
    Fetched,
    /// Pushed into the proxy from outside (`egressctl token refresh`).
    Pushed,
}

/// One target's current token. The only token type: the filter's cache, pushes from
/// `egressctl`, and the redis store all carry this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub token: Secret,
    /// As the server said it (`Bearer`); requests always send `Bearer`.
    pub token_type: String,
    /// Unix milliseconds.
    pub expires_at_ms: u64,
    /// Unix milliseconds.
    pub obtained_at_ms: u64,
    pub source: TokenSource,
    /// Grows by one with every new token (or stale mark) for the target.
    pub version: u64,
    /// Set when the target answered 401 to this token: refresh now, keep using it meanwhile.
    #[serde(default)]
    pub stale: bool,
    /// When a 401 last marked a token of this target stale (unix ms; 0: never). Carried from
    /// record to record, so 401s cannot drive refreshes faster than
    /// [`super::schedule::STALE_REFRESH_MIN_INTERVAL_MS`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_stale_mark_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl TokenRecord {
    /// Usable: not expired. A stale token is still used until its replacement arrives.
    pub fn is_valid(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Coordination of fetches for one target across every worker of a proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchState {
    /// The worker holding the fetch lease, if any.
    pub lease_owner: Option<u64>,
    /// Unix ms after which a lease is considered abandoned (its worker died or lost the reply).
    pub lease_until_ms: u64,
    /// Consecutive failed fetches.
    pub failures: u32,
    /// No fetch before this (backoff after failures), unix ms.
    pub next_attempt_ms: u64,
    /// Reason code of the last failure.
    pub last_error: Option<String>,
}

impl FetchState {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn lease_held(&self, now_ms: u64) -> bool {
        self.lease_owner.is_some() && now_ms < self.lease_until_ms
    }
}

/// Shared-data keys.
pub fn token_key(target: &str) -> String {
    format!("egress/token/{target}")
}

pub fn fetch_key(target: &str) -> String {
    format!("egress/fetch/{target}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_debug_hides_the_token() {
        let r = TokenRecord {
            token: Secret::new("tok-123"),
            token_type: "Bearer".into(),
            expires_at_ms: 10,
            obtained_at_ms: 1,
            source: TokenSource::Fetched,
            version: 3,
            stale: false,
            last_stale_mark_ms: 0,
        };
        assert_eq!(TokenRecord::from_bytes(&r.to_bytes()), Some(r.clone()));
        assert!(!format!("{r:?}").contains("tok-123"));
        assert!(r.is_valid(9) && !r.is_valid(10));
        assert_eq!(TokenRecord::from_bytes(b"garbage"), None);
    }
}
