//! One request: read the headers once, let the engine decide, write the headers once.
//!
//! A request whose caller token needs JWKS keys not fetched yet is paused and parked
//! ([`Parked`]); the root runs it again from the start when the keys come or its wait ends
//! ([`crate::jwks`]), so its state lives behind an `Rc` the root can reach.

use crate::host::{self, Headers, Host};
use bound::{token_of, Gate};
use egress_core::callers::jwks::JwksManager;
use egress_core::callers::TokenCache;
use egress_core::engine::{Binding, Decision, Edited, Engine, LocalReply};
use egress_core::plan::{wire, LogLevel};
use egress_core::tokens::coord::{HostError, Lookup, TokenManager};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

// Children of this module (they extend [`Request`]), in files beside this one.
#[path = "bound.rs"]
mod bound;
#[path = "routed.rs"]
mod routed;

/// This worker's requests paused for JWKS keys, by context id.
pub type Parked = Rc<RefCell<HashMap<u32, Weak<RefCell<Request>>>>>;

/// What one worker's requests share.
#[derive(Clone)]
pub struct Shared {
    pub engine: Rc<Engine>,
    pub tokens: Rc<RefCell<TokenManager>>,
    pub callers: Rc<RefCell<TokenCache>>,
    pub jwks: Rc<RefCell<JwksManager>>,
    pub parked: Parked,
    pub log_level: LogLevel,
    /// The routed role ([`routed`]): Envoy routed the request; else the egress role.
    pub routed: bool,
}

pub struct EgressHttp {
    request: Rc<RefCell<Request>>,
}

pub struct Request {
    context_id: u32,
    engine: Rc<Engine>,
    tokens: Rc<RefCell<TokenManager>>,
    callers: Rc<RefCell<TokenCache>>,
    jwks: Rc<RefCell<JwksManager>>,
    parked: Parked,
    log_level: LogLevel,
    /// The routed role: the route comes from Envoy's route name, not from `:path`.
    routed: bool,
    /// The OAuth2 token this request carries: (target, version), to mark it stale on a 401.
    injected: Option<(usize, u64)>,
    /// AWS SigV4 targets: signing after the rewrite (`crate::sigv4`).
    sigv4: crate::sigv4::Signing,
    /// The headers ended the stream (kept for a run again after a JWKS wait).
    end_of_stream: bool,
    /// Paused for JWKS keys: the body must not let the request through meanwhile.
    waiting_keys: bool,
    /// Run again after a JWKS wait that ended without keys: refuse, do not wait again.
    wait_over: bool,
}

/// How a run of the request's headers ends.
enum Flow {
    Act(Action),
    /// Paused until JWKS keys come (the request is parked).
    WaitKeys,
}

impl EgressHttp {
    pub fn new(context_id: u32, shared: &Shared) -> Self {
        Self {
            request: Rc::new(RefCell::new(Request {
                context_id,
                engine: shared.engine.clone(),
                tokens: shared.tokens.clone(),
                callers: shared.callers.clone(),
                jwks: shared.jwks.clone(),
                parked: shared.parked.clone(),
                log_level: shared.log_level,
                routed: shared.routed,
                injected: None,
                sigv4: crate::sigv4::Signing::default(),
                end_of_stream: false,
                waiting_keys: false,
                wait_over: false,
            })),
        }
    }
}

/// Runs the request's headers (first time: `wait_over` is `None`; again after a JWKS wait:
/// whether it ended without keys). A request that must wait for keys is parked.
pub fn run(request: &Rc<RefCell<Request>>, wait_over: Option<bool>) -> Action {
    let Ok(mut r) = request.try_borrow_mut() else {
        host::log(LogLevel::Error, "egress: request state busy");
        return Action::Pause;
    };
    r.waiting_keys = false;
    r.wait_over = wait_over.unwrap_or(false);
    let flow = match r.handle() {
        Ok(flow) => flow,
        Err(e) => {
            host::log(LogLevel::Error, &format!("egress: {e}"));
            Flow::Act(r.reply(&LocalReply::error(
                500,
                "internal_error",
                "the egress filter could not process the request",
            )))
        }
    };
    match flow {
        Flow::Act(action) => action,
        Flow::WaitKeys => {
            r.waiting_keys = true;
            if let Ok(mut p) = r.parked.try_borrow_mut() {
                p.insert(r.context_id, Rc::downgrade(request));
            }
            Action::Pause
        }
    }
}

impl Request {
    fn debug(&self, msg: impl FnOnce() -> String) {
        if self.log_level <= LogLevel::Debug {
            host::log(LogLevel::Debug, &msg());
        }
    }

    fn reply(&self, reply: &LocalReply) -> Action {
        if self.routed {
            // The routed role's own answers: the log line the egress role writes for the
            // same request (the leaf's log filter never runs after a local reply).
            if let Ok(headers) = host::request_headers() {
                let fragment = self
                    .engine
                    .routed_log_fragment(pseudo(&headers, ":method"), pseudo(&headers, ":path"));
                self.log_property(&fragment);
            }
        }
        host::reply_or_reset(reply);
        Action::Pause
    }

    /// The access log line's fragment: a failure is logged, never fails the request.
    fn log_property(&self, value: &str) {
        if let Err(e) = host::set_property(wire::PROP_LOG, value) {
            host::log(LogLevel::Warn, &format!("egress: access log property: {e}"));
        }
    }

    fn handle(&mut self) -> Result<Flow, HostError> {
        let action = if self.routed {
            self.routed()?
        } else {
            self.forward_or_answer()?
        };
        match action {
            Some(action) => Ok(Flow::Act(action)),
            None => Ok(Flow::WaitKeys),
        }
    }

    /// The request's action, or `None` when it waits for JWKS keys.
    fn forward_or_answer(&mut self) -> Result<Option<Action>, HostError> {
        let end_of_stream = self.end_of_stream;
        let headers = host::request_headers()?;
        let method = pseudo(&headers, ":method");
        let path = pseudo(&headers, ":path");
        let decision = self.engine.decide(method, path);
        match decision {
            Decision::Pass => {
                // Envoy's own route serves it (metrics): matched on the canonical spelling, and
                // never picked by a caller's routing header (the wasm engine's routes match on
                // it; a `/%6detrics` once reached a target that way, caller credentials and all).
                if headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case(wire::TARGET_HEADER))
                {
                    host::remove_request_header(wire::TARGET_HEADER)?;
                }
                if let Some(canonical) = self.engine.passthrough_path(path) {
                    host::set_request_header(":path", &canonical)?;
                }
                Ok(Some(Action::Continue))
            }
            Decision::Ready => {
                // Busy (never expected: one thread) is not ready, never a 200.
                let reply = match self.tokens.try_borrow_mut() {
                    Ok(mut t) => {
                        let mut not_ready = t.not_ready(&Host);
                        not_ready.extend(crate::sigv4::not_ready(&self.engine));
                        LocalReply::ready(&not_ready)
                    }
                    Err(_) => LocalReply::error(503, "not_ready", "the token manager is busy"),
                };
                Ok(Some(self.reply(&reply)))
            }
            Decision::Respond(ref reply) => {
                // Refused paths are logged as sent (without the query), escaped for the JSON line.
                if let Some(fragment) = self.engine.log_fragment(method, path, &decision) {
                    self.log_property(&fragment);
                }
                self.debug(|| format!("egress: local reply {} {}", reply.status, reply.code));
                Ok(Some(self.reply(reply)))
            }
            Decision::Forward(ref fwd) => {
                let engine = self.engine.clone();
                let target_name = engine.target(fwd.target).map_or("", |t| t.name.as_str());
                if let Some(fragment) = engine.log_fragment(method, path, &decision) {
                    self.log_property(&fragment);
                }
                let bound = Binding::from(fwd);
                if let Gate::Ends(end) = self.check_caller(bound, target_name, &headers)? {
                    return Ok(end);
                }
                let lookup = self.token_for(fwd.target);
                let (edits, edited) = engine.header_edit_list(
                    fwd,
                    headers.iter().map(|(k, _)| k.as_str()),
                    token_of(&lookup),
                );
                if edited == Edited::NeedsToken && lookup == Lookup::Unavailable {
                    return Ok(Some(self.unavailable(fwd.target)));
                }
                // Envoy picks the route again after a request-header change by a wasm filter, so
                // the new `x-egress-target` selects the target's cluster (proven end to end).
                // The headers as read, unless the caller check may have changed them since.
                let changed_since = Headers::new();
                let as_read = if engine.has_callers() {
                    &changed_since
                } else {
                    &headers
                };
                self.apply(&edits.remove, &edits.set, as_read)?;
                let signing =
                    self.sigv4
                        .on_forward(&self.engine, fwd, method, &headers, end_of_stream)?;
                if let Some(action) = signing {
                    return Ok(Some(action));
                }
                if edited == Edited::NeedsToken {
                    return Ok(Some(self.await_token(fwd.target, target_name)));
                }
                self.debug(|| format!("egress: {target_name} -> {}", fwd.target_url));
                Ok(Some(Action::Continue))
            }
        }
    }
}

/// A pseudo-header's value, or "" when absent or not UTF-8 (the engine then refuses it).
fn pseudo<'h>(headers: &'h Headers, name: &str) -> &'h str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .unwrap_or("")
}

impl Context for EgressHttp {
    fn on_done(&mut self) -> bool {
        if let Ok(r) = self.request.try_borrow() {
            if let Ok(mut t) = r.tokens.try_borrow_mut() {
                t.forget(r.context_id);
            }
            if let Ok(mut j) = r.jwks.try_borrow_mut() {
                j.forget(r.context_id);
            }
            if let Ok(mut p) = r.parked.try_borrow_mut() {
                p.remove(&r.context_id);
            }
        }
        true
    }
}

impl HttpContext for EgressHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if let Ok(mut r) = self.request.try_borrow_mut() {
            r.end_of_stream = end_of_stream;
        }
        run(&self.request, None)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Ok(mut r) = self.request.try_borrow_mut() else {
            return Action::Pause;
        };
        if r.waiting_keys {
            // Buffered until the caller is verified; continuing here would let it through.
            return Action::Pause;
        }
        r.sigv4.on_body(body_size, end_of_stream)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(r) = self.request.try_borrow() else {
            return Action::Continue;
        };
        let Ok(mut tokens) = r.tokens.try_borrow_mut() else {
            return Action::Continue;
        };
        // A request that waited for its token was resumed by the root: it knows the version.
        if let Some((target, version)) = r.injected.or_else(|| tokens.resumed_with(r.context_id)) {
            if host::status_of(MapType::HttpResponseHeaders) == Some(401) {
                tokens.mark_stale(&Host, target, version);
            }
        }
        Action::Continue
    }
}
