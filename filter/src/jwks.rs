//! JWKS glue: a callout reply handed to the core's [`JwksManager`], and the requests it
//! wakes run again in their own context. Every rule lives in `egress_core::callers::jwks`.

use crate::host::{self, Host};
use crate::http::{self, Parked};
use egress_core::callers::jwks::{JwksManager, Wake, MAX_JWKS_BYTES};
use egress_core::plan::LogLevel;
use proxy_wasm::types::{Action, MapType};
use std::cell::RefCell;

/// A callout reply, if it is one of this worker's JWKS fetches (`true`: it was).
pub fn on_callout(
    jwks: &RefCell<JwksManager>,
    parked: &Parked,
    root_id: u32,
    callout: u32,
    num_headers: usize,
    body_size: usize,
) -> bool {
    let wakes = {
        let Ok(mut j) = jwks.try_borrow_mut() else {
            return false;
        };
        if !j.owns_callout(callout) {
            return false;
        }
        let status = if num_headers == 0 {
            None
        } else {
            host::status_of(MapType::HttpCallResponseHeaders)
        };
        // A body over the limit is never read; the core refuses it by its size.
        let body = if status.is_some() && body_size <= MAX_JWKS_BYTES {
            host::callout_body(body_size)
        } else {
            Vec::new()
        };
        j.on_callout(&Host, callout, status, body_size, &body)
    };
    wake(wakes, parked, root_id);
    true
}

/// The tick: fetches due, keys from other workers, waits over.
pub fn on_tick(jwks: &RefCell<JwksManager>, parked: &Parked, root_id: u32) {
    let wakes = match jwks.try_borrow_mut() {
        Ok(mut j) => j.on_tick(&Host),
        Err(_) => return,
    };
    wake(wakes, parked, root_id);
}

/// Runs each woken request again in its own context (resumed when it may go on), then makes
/// the root the effective context again.
fn wake(wakes: Vec<Wake>, parked: &Parked, root_id: u32) {
    if wakes.is_empty() {
        return;
    }
    for w in wakes {
        let request = parked
            .try_borrow_mut()
            .ok()
            .and_then(|mut p| p.remove(&w.context_id))
            .and_then(|weak| weak.upgrade());
        let Some(request) = request else {
            continue;
        };
        if let Err(e) = host::enter_context(w.context_id) {
            host::log(LogLevel::Warn, &format!("egress: waking a request: {e}"));
            continue;
        }
        if http::run(&request, Some(w.expired)) == Action::Continue {
            if let Err(e) = host::resume_request() {
                host::log(LogLevel::Warn, &format!("egress: resuming a request: {e}"));
            }
        }
    }
    if let Err(e) = host::enter_context(root_id) {
        host::log(
            LogLevel::Error,
            &format!("egress: restoring the root context: {e}"),
        );
    }
}
