//! One worker's side of OAuth2 tokens: a local copy of each target's token, the requests
//! waiting for one, and fetches coordinated with the other workers through shared data.
//!
//! A worker re-reads a target's record on its tick (one host call, parsed only when the
//! compare-and-swap token changed) and when its copy has expired. Only the worker that wins
//! the fetch lease dispatches the callout, so a cold start or a refresh makes one fetch per
//! proxy whatever the number of workers. Requests without a token are paused and resumed (or
//! answered 503) from the tick or the callout reply.

use super::inflight::{clock_ms, slot_awaiting, Inflight};
use super::shared::{self, StaleMark, Updated};
use super::{TokenHost, TICK_MS};
use crate::engine::LocalReply;
use crate::plan::LogLevel;
use crate::tokens::reply::is_proxy_local_reply;
use crate::tokens::request::assertion_claims;
use crate::tokens::schedule::{self, Need};
use crate::tokens::time::rfc3339;
use crate::tokens::{build_request, parse_reply, FetchError, TokenRecord};
use std::collections::HashMap;

mod target;
mod telemetry;

pub use target::{SetupError, SignAssertion, TokenTarget};

/// What a request for an OAuth2 target gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A valid token and its version (to mark it stale on a 401).
    Token(String, u64),
    /// Pause until a fetch in flight ends.
    Wait,
    /// No valid token and none coming soon (fetching is failing, tokens come only from
    /// pushes, or the clock cannot be read): 503 now.
    Unavailable,
}

struct Waiter {
    context_id: u32,
    deadline_ms: u64,
}

struct Slot {
    target: TokenTarget,
    local: Option<TokenRecord>,
    local_cas: Option<u32>,
    inflight: Option<Inflight>,
    waiters: Vec<Waiter>,
}

pub struct TokenManager {
    /// The root context: made effective again after acting on paused requests, so callouts
    /// always belong to it (a callout made while a request's context is effective dies with it).
    root_id: u32,
    /// Requests resumed with a token: (target, token version), for the 401 check.
    resumed: HashMap<u32, (usize, u64)>,
    worker: u64,
    rng: u64,
    log_level: LogLevel,
    slots: Vec<Slot>,
    counters: HashMap<String, u32>,
}

impl TokenManager {
    /// `seed` comes from the host's randomness; it names this worker in leases and seeds the
    /// jitter and assertion ids.
    pub fn new(root_id: u32, targets: Vec<TokenTarget>, log_level: LogLevel, seed: u64) -> Self {
        Self {
            root_id,
            resumed: HashMap::new(),
            worker: seed | 1,
            rng: seed.rotate_left(17) | 1,
            log_level,
            slots: targets
                .into_iter()
                .map(|target| Slot {
                    target,
                    local: None,
                    local_cas: None,
                    inflight: None,
                    waiters: Vec::new(),
                })
                .collect(),
            counters: HashMap::new(),
        }
    }

    pub fn has_targets(&self) -> bool {
        !self.slots.is_empty()
    }

    /// This worker's id in fetch leases.
    pub fn worker_id(&self) -> u64 {
        self.worker
    }

    /// Creates each target's shared entries, so every later write is a compare-and-swap.
    pub fn start(&mut self, host: &dyn TokenHost) {
        for i in 0..self.slots.len() {
            let Some(name) = self.slots.get(i).map(|s| s.target.name.clone()) else {
                continue;
            };
            if let Err(e) = shared::ensure_target(host, &name) {
                self.error(
                    host,
                    &name,
                    "Creating the shared token entries failed",
                    &e.to_string(),
                );
            }
        }
    }

    fn slot_of(&self, target: usize) -> Option<usize> {
        self.slots.iter().position(|s| s.target.index == target)
    }

    /// The token for a request to `target`, from the local copy when it is still valid.
    pub fn lookup(&mut self, host: &dyn TokenHost, target: usize) -> Lookup {
        let (Some(i), Some(now)) = (self.slot_of(target), clock_ms(host)) else {
            return Lookup::Unavailable;
        };
        let Some(s) = self.slots.get_mut(i) else {
            return Lookup::Unavailable;
        };
        if let Some(r) = s.local.as_ref().filter(|r| r.is_valid(now)) {
            return Lookup::Token(r.token.expose().to_string(), r.version);
        }
        refresh_local(host, s);
        if let Some(r) = s.local.as_ref().filter(|r| r.is_valid(now)) {
            return Lookup::Token(r.token.expose().to_string(), r.version);
        }
        if !s.target.cred.fetch {
            // Tokens come only from pushes (token_store: redis): nothing to wait for.
            return Lookup::Unavailable;
        }
        let failing = shared::read_state(host, &s.target.name)
            .is_ok_and(|state| schedule::fail_fast(None, &state, now));
        if failing {
            Lookup::Unavailable
        } else {
            Lookup::Wait
        }
    }

    /// Pauses request `context_id` until a token for `target` arrives or its wait ends.
    /// Returns false (the caller answers 503 itself) when the wait cannot be bounded.
    pub fn wait(&mut self, host: &dyn TokenHost, target: usize, context_id: u32) -> bool {
        let (Some(i), Some(now)) = (self.slot_of(target), clock_ms(host)) else {
            return false;
        };
        let Some(s) = self.slots.get_mut(i) else {
            return false;
        };
        let deadline_ms = schedule::wait_deadline_ms(now, s.target.cred.token_timeout_ms, TICK_MS);
        s.waiters.push(Waiter {
            context_id,
            deadline_ms,
        });
        true
    }

    /// A request ended: forget it (it may have been waiting, or resumed).
    pub fn forget(&mut self, context_id: u32) {
        for s in &mut self.slots {
            s.waiters.retain(|w| w.context_id != context_id);
        }
        self.resumed.remove(&context_id);
    }

    /// The (target, token version) a paused request was resumed with, if any.
    pub fn resumed_with(&self, context_id: u32) -> Option<(usize, u64)> {
        self.resumed.get(&context_id).copied()
    }

    /// The target answered 401 to the token of this version: mark it stale so one refresh
    /// happens now (the request itself is not replayed). At most one mark per version and
    /// per [`schedule::STALE_REFRESH_MIN_INTERVAL_MS`].
    pub fn mark_stale(&mut self, host: &dyn TokenHost, target: usize, version: u64) {
        let (Some(i), Some(now)) = (self.slot_of(target), clock_ms(host)) else {
            return;
        };
        let Some(name) = self.slots.get(i).map(|s| s.target.name.clone()) else {
            return;
        };
        match shared::mark_stale(host, &name, version, now) {
            Ok((mark, conflicts)) => {
                self.count_conflicts(host, &name, conflicts);
                match mark {
                    StaleMark::Marked => {
                        self.count(host, &format!("egress.{name}.token_rejected_by_target"));
                        self.log(
                            host,
                            LogLevel::Info,
                            &name,
                            "Token rejected by target, refreshing",
                            now,
                            None,
                        );
                    }
                    StaleMark::Suppressed => {
                        self.count(host, &format!("egress.{name}.stale_refresh_suppressed"));
                        self.log(
                            host,
                            LogLevel::Debug,
                            &name,
                            "Token rejected by target; refreshed too recently to refresh again",
                            now,
                            None,
                        );
                    }
                    StaleMark::Ignored => {}
                }
            }
            Err(e) => self.update_failed(host, &name, "marking the token stale", &e),
        }
    }

    /// Targets without a valid token (for the readiness endpoint). Every target is named
    /// when the clock cannot be read.
    pub fn not_ready(&mut self, host: &dyn TokenHost) -> Vec<String> {
        let now = clock_ms(host);
        let mut out = Vec::new();
        for s in &mut self.slots {
            refresh_local(host, s);
            let valid = now.is_some_and(|now| s.local.as_ref().is_some_and(|r| r.is_valid(now)));
            if !valid {
                out.push(s.target.name.clone());
            }
        }
        out
    }

    /// The tick: pick up tokens other workers stored, start due fetches, serve waiters.
    pub fn on_tick(&mut self, host: &dyn TokenHost) {
        let Some(now) = clock_ms(host) else {
            return;
        };
        for i in 0..self.slots.len() {
            let Some(s) = self.slots.get_mut(i) else {
                continue;
            };
            refresh_local(host, s);
            if s.inflight.as_ref().is_some_and(|f| now > f.until_ms) {
                // The reply never came (the host dropped the callout): the lease has lapsed too.
                s.inflight = None;
            }
            let need = schedule::need(
                s.local.as_ref(),
                now,
                s.target.cred.refresh_before_expiry_ms,
            );
            if need != Need::Nothing && s.inflight.is_none() && s.target.cred.fetch {
                self.try_fetch(host, i, now);
            }
            self.serve_waiters(host, i, now);
        }
    }

    fn try_fetch(&mut self, host: &dyn TokenHost, i: usize, now: u64) {
        let Some(s) = self.slots.get(i) else { return };
        let name = s.target.name.clone();
        let timeout = s.target.cred.token_timeout_ms;
        match shared::take_lease(host, &name, self.worker, now, timeout) {
            Ok(Updated { written, conflicts }) => {
                self.count_conflicts(host, &name, conflicts);
                if written.is_none() {
                    return; // another worker holds the lease, or backoff runs
                }
            }
            Err(e) => {
                self.update_failed(host, &name, "taking the fetch lease", &e);
                return;
            }
        }
        let nonce = self.next_u64();
        let jti = format!("{:016x}{nonce:016x}", self.worker);
        let Some(s) = self.slots.get(i) else { return };
        let cred = &s.target.cred;
        let signed = match (&s.target.signer, assertion_claims(cred)) {
            (Some(signer), Some(claims)) => signer.sign(&claims, now / 1000, &jti).map(Some),
            _ => Ok(None),
        };
        let request = signed.and_then(|a| build_request(cred, a.as_deref()));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                let detail = e.to_string();
                self.record_failure(host, i, &e, now, &detail);
                return;
            }
        };
        match host.dispatch(&cred.token_cluster, &request, timeout) {
            Ok(callout) => {
                if let Some(s) = self.slots.get_mut(i) {
                    s.inflight = Some(Inflight {
                        callout,
                        started_ms: now,
                        until_ms: schedule::callout_deadline_ms(now, timeout),
                    });
                }
            }
            Err(e) => {
                let detail = format!("dispatch failed: {e}");
                self.record_failure(host, i, &FetchError::Transport, now, &detail);
            }
        }
    }

    /// Whether `callout` is one of this worker's token fetches.
    pub fn owns_callout(&self, callout: u32) -> bool {
        self.slot_awaiting(callout).is_some()
    }

    fn slot_awaiting(&self, callout: u32) -> Option<usize> {
        slot_awaiting(self.slots.iter().map(|s| s.inflight.as_ref()), callout)
    }

    /// A token callout answered: `status` is `None` when it failed (no headers), `body` the
    /// reply's body. Returns false if the callout was not ours.
    pub fn on_callout(
        &mut self,
        host: &dyn TokenHost,
        callout: u32,
        status: Option<u16>,
        body: &[u8],
    ) -> bool {
        let Some(i) = self.slot_awaiting(callout) else {
            return false;
        };
        let Some(s) = self.slots.get_mut(i) else {
            return false;
        };
        let Some(flight) = s.inflight.take() else {
            return false;
        };
        // Without a clock, expiry is computed from when the fetch started: earlier, never later.
        let now = clock_ms(host).unwrap_or(flight.started_ms);
        // Envoy answers for an unreachable or silent endpoint itself: not the server's reply.
        let (status, body) = if is_proxy_local_reply(status, body) {
            (None, &[][..])
        } else {
            (status, body)
        };
        let Some(s) = self.slots.get(i) else {
            return true;
        };
        let name = s.target.name.clone();
        match parse_reply(status, body, now, s.target.cred.default_lifetime_ms) {
            Ok(fetched) => {
                match shared::store_fetched(host, &name, &fetched, flight.started_ms, now) {
                    Ok(Updated {
                        written: Some(record),
                        conflicts,
                    }) => {
                        self.count_conflicts(host, &name, conflicts);
                        if let Some(s) = self.slots.get_mut(i) {
                            s.local = Some(record);
                            s.local_cas = None;
                        }
                        self.count(host, &format!("egress.{name}.tokens_fetched"));
                        self.log(
                            host,
                            LogLevel::Debug,
                            &name,
                            "Credentials refreshed",
                            now,
                            Some(fetched.expires_at_ms),
                        );
                    }
                    Ok(Updated {
                        written: None,
                        conflicts,
                    }) => {
                        // A token was pushed while this fetch ran: it is newer, keep it.
                        self.count_conflicts(host, &name, conflicts);
                        self.count(host, &format!("egress.{name}.fetched_token_superseded"));
                        if let Some(s) = self.slots.get_mut(i) {
                            refresh_local(host, s);
                        }
                    }
                    Err(e) => {
                        // Not shared, but valid: this worker uses it (version 0 is never
                        // stored, so a 401 for it marks nothing).
                        self.update_failed(host, &name, "storing the fetched token", &e);
                        if let Some(s) = self.slots.get_mut(i) {
                            s.local = Some(TokenRecord {
                                token: crate::secret::Secret::new(fetched.token),
                                token_type: fetched.token_type,
                                expires_at_ms: fetched.expires_at_ms,
                                obtained_at_ms: now,
                                source: crate::tokens::TokenSource::Fetched,
                                version: 0,
                                stale: false,
                                last_stale_mark_ms: 0,
                            });
                            s.local_cas = None;
                        }
                    }
                }
                if let Err(e) = shared::finish_fetch(host, &name, self.worker, None, now, 0.0) {
                    self.update_failed(host, &name, "releasing the fetch lease", &e);
                }
            }
            Err(e) => {
                let detail = e.to_string();
                self.record_failure(host, i, &e, now, &detail);
            }
        }
        self.serve_waiters(host, i, now);
        true
    }

    fn record_failure(
        &mut self,
        host: &dyn TokenHost,
        i: usize,
        e: &FetchError,
        now: u64,
        detail: &str,
    ) {
        let Some(name) = self.slots.get(i).map(|s| s.target.name.clone()) else {
            return;
        };
        let jitter = self.next_jitter();
        let next =
            match shared::finish_fetch(host, &name, self.worker, Some(e.reason()), now, jitter) {
                Ok(u) => {
                    self.count_conflicts(host, &name, u.conflicts);
                    u.written
                }
                Err(err) => {
                    self.update_failed(host, &name, "recording a failed fetch", &err);
                    None
                }
            };
        self.count(
            host,
            &format!("egress.{name}.token_fetch_failures.{}", e.reason()),
        );
        if self.log_level <= LogLevel::Warn {
            let line = serde_json::json!({
                "level": "warn",
                "ts": rfc3339(now),
                "msg": "Token fetch failed",
                "target": name,
                "reason": e.reason(),
                "detail": detail,
                "failures": next.as_ref().map(|n| n.failures),
                "retry_in_ms": next.as_ref().map(|n| n.next_attempt_ms.saturating_sub(now)),
            });
            host.log(LogLevel::Warn, &line.to_string());
        }
    }

    /// Resumes waiters when a token is there; answers 503 to those past their deadline, or
    /// to all when fetching is known to be failing. Makes the root context effective again
    /// afterwards, so a callout made later in the same callback belongs to the root.
    fn serve_waiters(&mut self, host: &dyn TokenHost, i: usize, now: u64) {
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        if s.waiters.is_empty() {
            return;
        }
        if let Some(r) = s.local.as_ref().filter(|r| r.is_valid(now)) {
            let value = crate::credentials::bearer(r.token.expose());
            let (target, version) = (s.target.index, r.version);
            for w in s.waiters.drain(..) {
                match host.resume_with(w.context_id, &value) {
                    Ok(()) => {
                        self.resumed.insert(w.context_id, (target, version));
                    }
                    Err(e) => {
                        // Not resumed: answer it rather than leave it paused.
                        host.log(
                            LogLevel::Warn,
                            &format!("egress: resuming a waiting request: {e}"),
                        );
                        answer_or_reset(host, w.context_id, &s.target.unavailable);
                    }
                }
            }
            self.restore(host);
            return;
        }
        let failing = shared::read_state(host, &s.target.name)
            .is_ok_and(|state| schedule::fail_fast(None, &state, now));
        let (expired, kept): (Vec<Waiter>, Vec<Waiter>) = s
            .waiters
            .drain(..)
            .partition(|w| failing || now >= w.deadline_ms);
        s.waiters = kept;
        if expired.is_empty() {
            return;
        }
        let name = s.target.name.clone();
        for w in &expired {
            answer_or_reset(host, w.context_id, &s.target.unavailable);
        }
        self.restore(host);
        for _ in &expired {
            self.count(host, &format!("egress.{name}.credentials_unavailable"));
        }
    }

    fn restore(&self, host: &dyn TokenHost) {
        if let Err(e) = host.restore_context(self.root_id) {
            host.log(
                LogLevel::Error,
                &format!("egress: restoring the root context: {e}"),
            );
        }
    }

    /// A per-worker xorshift seeded by the host's randomness (jitter, assertion ids).
    fn next_u64(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Uniform in [0, 1).
    fn next_jitter(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Answers a paused request; if that fails, resets it (never leaves it hanging).
fn answer_or_reset(host: &dyn TokenHost, context_id: u32, reply: &LocalReply) {
    if let Err(e) = host.answer(context_id, reply) {
        host.log(
            LogLevel::Warn,
            &format!("egress: answering a waiting request: {e}; resetting it"),
        );
        if let Err(e) = host.reset(context_id) {
            host.log(
                LogLevel::Error,
                &format!("egress: resetting a waiting request: {e}"),
            );
        }
    }
}

/// Re-reads the shared record if it changed since the last read.
fn refresh_local(host: &dyn TokenHost, s: &mut Slot) {
    let entry = match host.shared_get(&crate::tokens::record::token_key(&s.target.name)) {
        Ok(e) => e,
        Err(e) => {
            host.log(
                LogLevel::Debug,
                &format!("egress: reading the shared token: {e}"),
            );
            return;
        }
    };
    if entry.cas.is_some() && entry.cas == s.local_cas {
        return;
    }
    if let Some(record) = entry.bytes.as_deref().and_then(TokenRecord::from_bytes) {
        s.local = Some(record);
        s.local_cas = entry.cas;
    }
}
