//! Host-free logic of the egress filter, shared by the wasm filter and `egressctl`.
//!
//! - [`config`]: the user-facing YAML config (model, `${VAR}` expansion, validation) and the
//!   validated [`config::Config`] built from it.
//! - [`plan`]: [`plan::FilterConfig`], the JSON the filter reads. `egressctl` writes it from a
//!   validated config; the filter parses it. One type, so the two cannot drift.
//! - [`routing`]: path normalization, the route table (longest prefix at a segment boundary,
//!   cost independent of the number of routes) and the path rewrite.
//! - [`credentials`]: what each auth type puts on the request, rendered once at load.
//! - [`tokens`]: OAuth2 token record, request, reply parsing, refresh and backoff schedule.
//! - [`engine`]: one request head in, one decision out (forward with header edits, or a local
//!   JSON response). The wasm glue only moves headers between the host and this.

pub mod build;
pub mod callers;
pub mod config;
pub mod credentials;
pub mod duration;
pub mod engine;
pub mod native;
pub mod plan;
#[cfg(feature = "jwt")]
pub mod push;
pub mod routing;
pub mod secret;
pub mod secret_ref;
pub mod sigv4;
pub mod target_url;
pub mod tokens;
pub mod types;
