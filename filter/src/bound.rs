//! What both roles do with a request bound to a config route ([`Binding`]): the caller check,
//! the OAuth2 token from the worker's cache, the 503 when none can come, the wait for one.
//! The egress role gets here after its own routing ([`Engine::decide`]), the routed role
//! from Envoy's route name ([`crate::routed`]).
//!
//! [`Engine::decide`]: egress_core::engine::Engine::decide

use super::Request;
use crate::callers;
use crate::host::{self, Headers, Host};
use egress_core::callers::jwks::NeedOutcome;
use egress_core::engine::Binding;
use egress_core::tokens::coord::{HostError, Lookup};
use proxy_wasm::types::Action;

/// How the caller check of a bound request ends.
pub(super) enum Gate {
    /// The caller may go on (its token is taken off the request, its name logged).
    Admitted,
    /// The request ends here: `Some` with its action (a refusal was sent), `None` when it is
    /// parked waiting for JWKS keys.
    Ends(Option<Action>),
}

impl Request {
    /// Who calls, before anything is spent on the request: a refusal never reaches the target
    /// nor starts a token fetch.
    pub(super) fn check_caller(
        &self,
        bound: Binding,
        target_name: &str,
        headers: &Headers,
    ) -> Result<Gate, HostError> {
        let mut retried = false;
        loop {
            let verdict =
                callers::authorize(&self.engine, bound, headers, &self.callers, &self.jwks);
            let refusal = match verdict {
                Ok(admitted) => {
                    callers::admit(&admitted)?;
                    return Ok(Gate::Admitted);
                }
                Err(refusal) => refusal,
            };
            // A token that fetched keys could cure waits for them (bounded), unless its wait
            // is already over: never let it through unverified.
            let need = refusal.jwks.filter(|_| !self.wait_over);
            let outcome = need.map(|n| match self.jwks.try_borrow_mut() {
                Ok(mut j) => j.need(&Host, n, self.context_id),
                Err(_) => NeedOutcome::Refuse,
            });
            match outcome {
                Some(NeedOutcome::Retry) if !retried => retried = true,
                Some(NeedOutcome::Wait) => {
                    self.debug(|| format!("egress: {target_name}: waiting for JWKS keys"));
                    return Ok(Gate::Ends(None));
                }
                _ => {
                    callers::refused(&refusal, target_name, &self.tokens);
                    return Ok(Gate::Ends(Some(self.reply(&refusal.reply))));
                }
            }
        }
    }

    /// The OAuth2 token of `target` from the worker's cache (remembered with its version for
    /// the 401 check). Targets without OAuth2 get [`Lookup::Unavailable`] and need none.
    pub(super) fn token_for(&mut self, target: usize) -> Lookup {
        if !self.engine.needs_token(target) {
            return Lookup::Unavailable;
        }
        let lookup = match self.tokens.try_borrow_mut() {
            Ok(mut t) => t.lookup(&Host, target),
            Err(_) => Lookup::Unavailable,
        };
        if let Lookup::Token(_, version) = &lookup {
            self.injected = Some((target, *version));
        }
        lookup
    }

    /// 503 `credentials_unavailable` for an OAuth2 target without a token coming (counted).
    pub(super) fn unavailable(&self, target: usize) -> Action {
        if let Ok(mut t) = self.tokens.try_borrow_mut() {
            t.count_unavailable(&Host, target);
        }
        self.reply(&self.engine.credentials_unavailable(target))
    }

    /// One host call per change (replacing the whole map costs Envoy far more).
    /// `headers`: the request's, as read (empty when not read).
    pub(super) fn apply<R: AsRef<str>, K: AsRef<str>, V: AsRef<str>>(
        &self,
        remove: &[R],
        set: &[(K, V)],
        headers: &Headers,
    ) -> Result<(), HostError> {
        for name in remove {
            host::remove_request_header(name.as_ref())?;
        }
        for (name, value) in set {
            let (name, value) = (name.as_ref(), value.as_ref());
            // Each host call costs Envoy more than the filter's whole decision: a header that
            // already has exactly this value (e.g. the `x-forwarded-proto: http` Envoy adds) is
            // left as it is.
            if !host::has_only_value(headers, name, value) {
                host::set_request_header(name, value)?;
            }
        }
        Ok(())
    }

    /// Pauses the request for the fetch in flight (the tick or the callout reply resumes it
    /// with the token), or answers 503 when the wait cannot be bounded.
    pub(super) fn await_token(&self, target: usize, target_name: &str) -> Action {
        let waiting = self
            .tokens
            .try_borrow_mut()
            .is_ok_and(|mut t| t.wait(&Host, target, self.context_id));
        if !waiting {
            return self.reply(&self.engine.credentials_unavailable(target));
        }
        self.debug(|| format!("egress: {target_name}: waiting for a token"));
        Action::Pause
    }
}

/// The token a lookup found.
pub(super) fn token_of(lookup: &Lookup) -> Option<&str> {
    match lookup {
        Lookup::Token(t, _) => Some(t.as_str()),
        _ => None,
    }
}
