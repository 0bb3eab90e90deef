//! What every fetcher of a worker (OAuth2 tokens, `jwks_url` keys) keeps about the callout it
//! dispatched after winning a fetch lease, and the clock it acts on.

use super::TokenHost;
use crate::plan::LogLevel;

/// One slot's (a target's, an issuer's) fetch callout in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflight {
    pub callout: u32,
    /// When it was dispatched.
    pub started_ms: u64,
    /// Past this, the reply is not expected any more (the host dropped the callout).
    pub until_ms: u64,
}

/// The position of the slot whose callout in flight is `callout`, given each slot's.
pub fn slot_awaiting<'a>(
    flights: impl IntoIterator<Item = Option<&'a Inflight>>,
    callout: u32,
) -> Option<usize> {
    flights
        .into_iter()
        .position(|f| f.is_some_and(|f| f.callout == callout))
}

/// The host's clock; a failure is logged and never turned into a time.
pub fn clock_ms(host: &dyn TokenHost) -> Option<u64> {
    match host.now_ms() {
        Ok(now) => Some(now),
        Err(e) => {
            host.log(LogLevel::Error, &format!("egress: reading the clock: {e}"));
            None
        }
    }
}
