//! OAuth2 tokens (every grant), host-free: what the filter and `egressctl token refresh`
//! share. Only the transport differs between them.
//!
//! - [`record`]: the one token record type (token, type, expiry, source, version) and the
//!   fetch state, as stored in proxy-wasm shared data.
//! - [`grant`]: the grants (client credentials, JWT bearer, ...) and their assertion claims.
//! - [`request`]: the token request (form body per grant, client authentication).
//! - [`reply`]: parsing the token endpoint's reply, strictly.
//! - [`schedule`]: when to refresh, who fetches (a lease taken by compare-and-swap), backoff.
//! - [`time`]: RFC 3339 timestamps for log lines.
//! - [`coord`]: coordination across workers through shared data, behind a host trait.

#![deny(clippy::indexing_slicing)]

#[cfg(feature = "jwt")]
pub mod assertion;
pub mod coord;
pub mod exchange;
pub mod grant;
pub mod record;
pub mod reply;
pub mod request;
pub mod schedule;
pub mod service_account;
pub mod time;
pub mod token_file;

pub use record::{FetchState, TokenRecord, TokenSource};
pub use reply::{parse_reply, FetchError, FetchedToken};
pub use request::{build_request, TokenRequest};
