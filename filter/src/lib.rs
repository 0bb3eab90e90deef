//! The proxy-wasm glue of the egress filter. Everything it decides comes from `egress-core`;
//! this crate only moves data between the host and the core:
//!
//! - [`root`]: plugin start: parse and compile the config, refuse to start on a bad one.
//! - [`http`]: one request: read the headers once, ask the engine, write the headers once.
//!   In the routed role (`auto` engine, `http::routed`) Envoy has routed the request: the
//!   route comes from `xds.route_name`, and only the caller check and the OAuth2 token remain
//!   (`http::bound`, shared with the egress role).
//! - [`push`]: the push listener's requests (token pushes, status).
//! - [`callers`]: the caller's identity handed to the core, its verdict applied.
//! - [`jwks`]: JWKS callout replies to the core; requests waiting for keys run again.
//! - [`refused`]: what every request gets when the config was refused (a JSON 503).
//! - [`host`]: the only place that calls proxy-wasm host functions and maps their `Status`;
//!   it implements the core's `TokenHost`, so token coordination lives in `egress-core`.
//!
//! Natively the crate is empty: its code only links against a proxy-wasm host.

#![deny(clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
mod callers;
#[cfg(target_arch = "wasm32")]
mod host;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod jwks;
#[cfg(target_arch = "wasm32")]
mod push;
#[cfg(target_arch = "wasm32")]
mod push_aws;
#[cfg(target_arch = "wasm32")]
mod refused;
#[cfg(target_arch = "wasm32")]
mod root;
#[cfg(target_arch = "wasm32")]
mod sigv4;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    host::set_log_level(egress_core::plan::LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::EgressRoot::new(context_id))
    });
}}
