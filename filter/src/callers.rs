//! Caller identity glue: the peer's SPIFFE ID from the connection, the request headers to the
//! core's [`Engine::authorize`], its verdict applied (token taken off, or the refusal logged
//! and counted). Every rule lives in `egress_core::callers`.

use crate::host::{self, Headers, Host};
use egress_core::callers::auth::CallerInput;
use egress_core::callers::jwks::{JwksManager, KeySets};
use egress_core::callers::{Authorized, Refusal, TokenCache};
use egress_core::engine::{Binding, Engine};
use egress_core::plan::{wire, LogLevel};
use egress_core::tokens::coord::{HostError, TokenManager};
use std::cell::RefCell;

/// A request header by lower-case name; several `cookie` headers are joined with `; `.
fn header_of(headers: &Headers, name: &str) -> Option<String> {
    let mut values = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok());
    let first = values.next()?.to_string();
    if name == "cookie" {
        Some(values.fold(first, |acc, v| format!("{acc}; {v}")))
    } else {
        Some(first)
    }
}

/// The engine's verdict on this request's caller. Without `egress.callers` no host call is
/// made and every request passes.
pub fn authorize(
    engine: &Engine,
    bound: Binding,
    headers: &Headers,
    cache: &RefCell<TokenCache>,
    jwks: &RefCell<JwksManager>,
) -> Result<Authorized, Box<Refusal>> {
    if !engine.has_callers() {
        return Ok(Authorized::default());
    }
    let peer = if engine.wants_peer_identity() {
        host::peer_uri_san()
    } else {
        None
    };
    let header = |name: &str| header_of(headers, name);
    let input = CallerInput {
        peer_spiffe_id: peer.as_deref(),
        header: &header,
    };
    // Only tokens have a validity in time: without `callers.jwt` the clock is not read.
    // A clock error is no time: every token would look expired or valid by accident.
    let now = if engine.verifies_tokens() {
        match host::now_ms() {
            Ok(ms) => ms / 1000,
            Err(_) => u64::MAX,
        }
    } else {
        0
    };
    let none = KeySets::default();
    let jwks = jwks.try_borrow();
    let keys = jwks.as_ref().map_or(&none, |j| j.keys());
    match cache.try_borrow_mut() {
        Ok(mut c) => engine.authorize(bound, &input, now, &mut c, keys),
        Err(_) => engine.authorize(bound, &input, now, &mut TokenCache::new(1), keys),
    }
}

/// Takes the caller's token off the request and records the caller for the access log.
pub fn admit(authorized: &Authorized) -> Result<(), HostError> {
    for name in &authorized.remove {
        host::remove_request_header(name)?;
    }
    match &authorized.cookie {
        Some(Some(kept)) => host::set_request_header("cookie", kept)?,
        Some(None) => host::remove_request_header("cookie")?,
        None => {}
    }
    if let Some(name) = authorized.caller.log_name() {
        set_caller(&name);
    }
    Ok(())
}

/// Logs (with the reason, never sent to the caller) and counts a refusal.
pub fn refused(refusal: &Refusal, target: &str, tokens: &RefCell<TokenManager>) {
    if let Some(name) = refusal.caller.log_name() {
        set_caller(&name);
    }
    host::log(
        LogLevel::Info,
        &serde_json::json!({
            "level": "info",
            "msg": "caller refused",
            "target": target,
            "status": refusal.reply.status,
            "error": refusal.reply.code,
            "reason": refusal.reason,
            "caller": refusal.caller.log_name(),
        })
        .to_string(),
    );
    if let Ok(mut t) = tokens.try_borrow_mut() {
        t.count_caller_refused(&Host, target, refusal.reply.status);
    }
}

fn set_caller(name: &str) {
    if let Err(e) = host::set_property(wire::PROP_CALLER, &wire::json_escape(name)) {
        host::log(LogLevel::Warn, &format!("egress: caller log property: {e}"));
    }
}
