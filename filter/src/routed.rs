//! The routed role (`auto` engine): Envoy routed and rewrote the request, attaches static
//! credentials and removes the caller's headers. The filter reads the route's name once
//! (`xds.route_name`), and does what the egress role does after its routing: the caller check
//! and the OAuth2 token. It never touches `:path`, `:authority` or the routing header, and
//! sets the access log property only when it answers itself (Envoy sets the log values of a
//! forwarded request; a local reply ends the chain before Envoy's log filter runs).

use super::bound::{token_of, Gate};
use super::Request;
use crate::host::{self, Headers};
use egress_core::engine::Edited;
use egress_core::plan::LogLevel;
use egress_core::tokens::coord::{HostError, Lookup};
use proxy_wasm::types::Action;

impl Request {
    /// The request's action, or `None` when it waits for JWKS keys.
    pub(super) fn routed(&mut self) -> Result<Option<Action>, HostError> {
        let name = host::route_name();
        let bound = match self.engine.routed(name.as_deref()) {
            Ok(bound) => bound,
            Err(refusal) => {
                // A render or config mismatch: fail closed, and say why in the proxy log.
                host::log(
                    LogLevel::Error,
                    &serde_json::json!({
                        "level": "error",
                        "msg": "routed request refused",
                        "route_name": name,
                        "reason": refusal.to_string(),
                    })
                    .to_string(),
                );
                return Ok(Some(self.reply(&refusal.reply())));
            }
        };
        let engine = self.engine.clone();
        let target_name = engine.target(bound.target).map_or("", |t| t.name.as_str());
        // The header map is read only when a caller is identified from it.
        let headers = if engine.has_callers() {
            host::request_headers()?
        } else {
            Headers::new()
        };
        if let Gate::Ends(end) = self.check_caller(bound, target_name, &headers)? {
            return Ok(end);
        }
        let lookup = self.token_for(bound.target);
        let (edits, edited) = engine.routed_edits(bound, token_of(&lookup));
        if edited == Edited::NeedsToken && lookup == Lookup::Unavailable {
            return Ok(Some(self.unavailable(bound.target)));
        }
        // Read only for the caller check, which may change them: never taken as current.
        self.apply(&edits.remove, &edits.set, &Headers::new())?;
        if edited == Edited::NeedsToken {
            return Ok(Some(self.await_token(bound.target, target_name)));
        }
        self.debug(|| format!("egress: {target_name}: routed by the proxy"));
        Ok(Some(Action::Continue))
    }
}
