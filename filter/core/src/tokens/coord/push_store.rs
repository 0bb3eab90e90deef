//! The push listener's shared-data side: the `jti` replay cache (one entry, updated by
//! compare-and-swap) and the status report. Storing a pushed token is
//! [`super::shared::store_pushed`].

use super::shared::{read_record, read_state, update, Step, UpdateError, Updated};
use super::TokenHost;
use crate::tokens::time::rfc3339;

/// Shared-data key of the replay cache: the `jti`s used and not yet expired.
pub const JTI_CACHE_KEY: &str = "egress/push/jtis";

/// Creates the replay cache (an empty map) at start, so every later write to it is a
/// compare-and-swap.
pub fn start(host: &dyn TokenHost) -> Result<(), super::HostError> {
    super::shared::ensure_exists(host, JTI_CACHE_KEY, b"{}")
}

/// Why a `jti` could not be remembered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RememberError<E> {
    /// The cache refused it (a replay, or full): the push is refused.
    #[error("{0}")]
    Refused(E),
    /// Shared data could not be updated (contention or host failure): retry later.
    #[error("{0}")]
    Store(UpdateError),
}

/// Records a `jti` in the replay cache: `remember` turns the cache's current bytes into the
/// bytes to store, or refuses (a replay). Retried on compare-and-swap conflicts; returns how
/// many there were.
pub fn remember_jti<E>(
    host: &dyn TokenHost,
    mut remember: impl FnMut(Option<&[u8]>) -> Result<Vec<u8>, E>,
) -> Result<u32, RememberError<E>> {
    let mut refused = None;
    let updated: Result<Updated<Vec<u8>>, UpdateError> = update(
        host,
        JTI_CACHE_KEY,
        |b| Some(b.to_vec()),
        Clone::clone,
        |current| match remember(current.map(Vec::as_slice)) {
            Ok(next) => {
                refused = None;
                Step::Write(next)
            }
            Err(e) => {
                refused = Some(e);
                Step::Keep
            }
        },
    );
    match (updated, refused) {
        (Ok(_), Some(e)) => Err(RememberError::Refused(e)),
        (Ok(u), None) => Ok(u.conflicts),
        (Err(e), _) => Err(RememberError::Store(e)),
    }
}

/// Per OAuth2 target: where its token came from, age, time left, the last fetch result.
/// Never the token. A target whose entries cannot be read is reported with `"error"`.
pub fn status(host: &dyn TokenHost, targets: &[&str], now_ms: u64) -> serde_json::Value {
    let targets: Vec<serde_json::Value> = targets
        .iter()
        .map(|name| {
            let (record, state) = match (read_record(host, name), read_state(host, name)) {
                (Ok((r, _)), Ok(s)) => (r, s),
                (Err(e), _) | (_, Err(e)) => {
                    return serde_json::json!({ "target": name, "valid": false, "error": e.to_string() })
                }
            };
            match record {
                Some(r) => serde_json::json!({
                    "target": name,
                    "valid": r.is_valid(now_ms),
                    "source": r.source,
                    "version": r.version,
                    "age_ms": now_ms.saturating_sub(r.obtained_at_ms),
                    "expires_in_ms": r.expires_at_ms.saturating_sub(now_ms),
                    "expires_at": rfc3339(r.expires_at_ms),
                    "stale": r.stale,
                    "fetch_failures": state.failures,
                    "last_error": state.last_error,
                }),
                None => serde_json::json!({
                    "target": name, "valid": false, "source": null,
                    "fetch_failures": state.failures, "last_error": state.last_error,
                }),
            }
        })
        .collect();
    serde_json::json!({ "targets": targets })
}
