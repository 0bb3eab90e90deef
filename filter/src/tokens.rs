//! The per-worker side of OAuth2 tokens: a local copy of each target's token, requests
//! waiting for one, and fetches coordinated with the other workers through shared data.
//!
//! Shared data holds, per target, the token record and the fetch state (see
//! `egress_core::tokens`). A worker re-reads the record on its tick (one host call per target,
//! parsed only when the compare-and-swap token changed) and when its copy has expired. Only
//! the worker that wins the fetch lease (a CAS write) dispatches the callout, so a cold start
//! or a refresh makes one fetch per proxy, whatever the number of workers. Requests without a
//! token are paused and resumed (or answered 503) from the tick or the callout reply.

use crate::host;
use egress_core::config::ClientAuth;
use egress_core::engine::{Engine, LocalReply};
use egress_core::plan::{LogLevel, OAuth2Credential};
use egress_core::tokens::assertion::AssertionSigner;
use egress_core::tokens::record::{fetch_key, token_key};
use egress_core::tokens::request::assertion_audience;
use egress_core::tokens::schedule::{self, Need};
use egress_core::tokens::time::rfc3339;
use egress_core::tokens::{
    build_request, parse_reply, FetchError, FetchState, TokenRecord, TokenSource,
};
use proxy_wasm::traits::Context;
use proxy_wasm::types::MapType;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How often each worker looks at its tokens.
pub const TICK: Duration = Duration::from_millis(100);

struct Waiter {
    context_id: u32,
    deadline_ms: u64,
}

struct TargetTokens {
    name: String,
    /// `private_key_jwt`: the parsed key, signing one assertion per fetch.
    signer: Option<AssertionSigner>,
    /// Index of the target in the engine.
    target: usize,
    cred: OAuth2Credential,
    local: Option<TokenRecord>,
    local_cas: Option<u32>,
    /// Callout token of this worker's fetch in flight, and when to give up on it.
    inflight: Option<u32>,
    inflight_until_ms: u64,
    waiters: Vec<Waiter>,
}

/// What a request for an OAuth2 target gets.
pub enum Lookup {
    /// A valid token and its version (to mark it stale on a 401).
    Token(String, u64),
    /// Pause until a fetch in flight ends.
    Wait,
    /// Fetching is failing and no token is valid: 503 now.
    Unavailable,
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
    targets: Vec<TargetTokens>,
    counters: HashMap<String, u32>,
}

impl TokenManager {
    /// Fails when a `private_key_jwt` key cannot be parsed (the plugin then refuses to start).
    pub fn new(root_id: u32, engine: &Engine, log_level: LogLevel) -> Result<Self, String> {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            ^ host::now_ms();
        let mut targets = Vec::new();
        for (i, t) in engine.targets().iter().enumerate() {
            let Some(cred) = t.oauth2.as_ref() else {
                continue;
            };
            let signer = match (cred.client_auth, &cred.private_key_pem) {
                (ClientAuth::PrivateKeyJwt, Some(pem)) => Some(
                    AssertionSigner::from_pem(
                        cred.signing_alg,
                        pem.expose(),
                        cred.key_id.as_deref(),
                    )
                    .map_err(|e| format!("target {}: {e}", t.name))?,
                ),
                (ClientAuth::PrivateKeyJwt, None) => {
                    return Err(format!(
                        "target {}: private_key_jwt without a private key",
                        t.name
                    ));
                }
                _ => None,
            };
            targets.push(TargetTokens {
                name: t.name.clone(),
                signer,
                target: i,
                cred: cred.clone(),
                local: None,
                local_cas: None,
                inflight: None,
                inflight_until_ms: 0,
                waiters: Vec::new(),
            });
        }
        Ok(Self {
            root_id,
            resumed: HashMap::new(),
            worker: seed | 1,
            rng: seed.rotate_left(17) | 1,
            log_level,
            targets,
            counters: HashMap::new(),
        })
    }

    pub fn has_targets(&self) -> bool {
        !self.targets.is_empty()
    }

    fn slot(&mut self, target: usize) -> Option<&mut TargetTokens> {
        self.targets.iter_mut().find(|t| t.target == target)
    }

    /// The token for a request to `target`, from the local copy when it is still valid.
    pub fn lookup(&mut self, target: usize, now: u64) -> Lookup {
        let Some(t) = self.slot(target) else {
            return Lookup::Unavailable;
        };
        if let Some(r) = t.local.as_ref().filter(|r| r.is_valid(now)) {
            return Lookup::Token(r.token.expose().to_string(), r.version);
        }
        refresh_local(t);
        if let Some(r) = t.local.as_ref().filter(|r| r.is_valid(now)) {
            return Lookup::Token(r.token.expose().to_string(), r.version);
        }
        if !t.cred.fetch {
            // Tokens come only from pushes (token_store: redis): nothing to wait for.
            return Lookup::Unavailable;
        }
        let state = read_state(&t.name).0;
        if schedule::fail_fast(None, &state, now) {
            Lookup::Unavailable
        } else {
            Lookup::Wait
        }
    }

    pub fn wait(&mut self, target: usize, context_id: u32, now: u64) {
        if let Some(t) = self.slot(target) {
            let bound =
                t.cred.token_timeout_ms + schedule::LEASE_MARGIN_MS + 2 * TICK.as_millis() as u64;
            t.waiters.push(Waiter {
                context_id,
                deadline_ms: now + bound,
            });
        }
    }

    /// A request ended: forget it (it may have been waiting, or resumed).
    pub fn forget(&mut self, context_id: u32) {
        for t in &mut self.targets {
            t.waiters.retain(|w| w.context_id != context_id);
        }
        self.resumed.remove(&context_id);
    }

    /// The (target, token version) a paused request was resumed with, if any.
    pub fn resumed_with(&self, context_id: u32) -> Option<(usize, u64)> {
        self.resumed.get(&context_id).copied()
    }

    /// The target answered 401 to the token of this version: mark it stale so one refresh
    /// happens now (the request itself is not replayed).
    pub fn mark_stale(&mut self, target: usize, version: u64) {
        let Some(t) = self.slot(target) else { return };
        let name = t.name.clone();
        let (bytes, cas) = host::shared_get(&token_key(&name));
        let Some(mut record) = bytes.as_deref().and_then(TokenRecord::from_bytes) else {
            return;
        };
        if record.version != version || record.stale {
            return;
        }
        record.stale = true;
        record.version += 1;
        if host::shared_set(&token_key(&name), &record.to_bytes(), cas).is_ok() {
            self.count(&format!("egress.{name}.token_rejected_by_target"));
            self.log(
                LogLevel::Info,
                &name,
                "Token rejected by target, refreshing",
                None,
            );
        }
    }

    /// Targets without a valid token (for the readiness endpoint).
    pub fn not_ready(&mut self, now: u64) -> Vec<String> {
        let mut out = Vec::new();
        for t in &mut self.targets {
            refresh_local(t);
            if !t.local.as_ref().is_some_and(|r| r.is_valid(now)) {
                out.push(t.name.clone());
            }
        }
        out
    }

    /// The tick: pick up tokens other workers stored, start due fetches, serve waiters.
    pub fn on_tick(&mut self, ctx: &dyn Context, engine: &Engine) {
        let now = host::now_ms();
        for i in 0..self.targets.len() {
            refresh_local(&mut self.targets[i]);
            let t = &mut self.targets[i];
            if t.inflight.is_some() && now > t.inflight_until_ms {
                // The reply never came (the host dropped the callout): the lease has lapsed too.
                t.inflight = None;
            }
            let need = schedule::need(t.local.as_ref(), now, t.cred.refresh_before_expiry_ms);
            if need != Need::Nothing && t.inflight.is_none() {
                self.try_fetch(i, ctx, now);
            }
            self.serve_waiters(i, engine, now);
        }
    }

    fn try_fetch(&mut self, i: usize, ctx: &dyn Context, now: u64) {
        if !self.targets[i].cred.fetch {
            return;
        }
        let name = self.targets[i].name.clone();
        let (state, cas) = read_state(&name);
        if !schedule::may_start_fetch(&state, now) {
            return;
        }
        let leased = schedule::take_lease(
            &state,
            self.worker,
            now,
            self.targets[i].cred.token_timeout_ms,
        );
        // No state yet: create it only if still absent (CAS token 0 would overwrite).
        let written = match cas {
            Some(c) => host::shared_set(&fetch_key(&name), &leased.to_bytes(), Some(c)),
            None => create_if_absent(&fetch_key(&name), &leased),
        };
        if written.is_err() {
            return; // another worker took the lease
        }
        let nonce = self.next_u64();
        let jti = format!("{:016x}{nonce:016x}", self.worker);
        let assertion = match &self.targets[i].signer {
            Some(signer) => {
                let cred = &self.targets[i].cred;
                match signer.sign(&cred.client_id, &assertion_audience(cred), now / 1000, &jti) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        let err = FetchError::Assertion(e.to_string());
                        self.record_failure(i, &err, now, &e.to_string());
                        return;
                    }
                }
            }
            None => None,
        };
        let cred = &self.targets[i].cred;
        let req = build_request(cred, assertion.as_deref());
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match ctx.dispatch_http_call(
            &cred.token_cluster,
            headers,
            Some(&req.body),
            vec![],
            Duration::from_millis(cred.token_timeout_ms),
        ) {
            Ok(token) => {
                let t = &mut self.targets[i];
                t.inflight = Some(token);
                // Well past the lease: a late reply is still taken; only a host that never
                // answers makes this worker start over.
                t.inflight_until_ms =
                    now + t.cred.token_timeout_ms + schedule::LEASE_MARGIN_MS + 5_000;
            }
            Err(status) => {
                let reason = format!("dispatch failed: {status:?}");
                self.record_failure(i, &FetchError::Transport, now, &reason);
            }
        }
    }

    /// A token callout answered (or failed: no headers). Returns false if it was not ours.
    pub fn on_callout(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        engine: &Engine,
    ) -> bool {
        let Some(i) = self
            .targets
            .iter()
            .position(|t| t.inflight == Some(token_id))
        else {
            return false;
        };
        self.targets[i].inflight = None;
        let now = host::now_ms();
        let status = if num_headers == 0 {
            None
        } else {
            host::status_of(MapType::HttpCallResponseHeaders)
        };
        let mut body = if status.is_some() {
            host::callout_body(body_size)
        } else {
            Vec::new()
        };
        // Envoy answers for an unreachable or silent endpoint itself: not the server's reply.
        let status = if egress_core::tokens::reply::is_proxy_local_reply(status, &body) {
            body.clear();
            None
        } else {
            status
        };
        let t = &self.targets[i];
        match parse_reply(status, &body, now, t.cred.default_lifetime_ms) {
            Ok(fetched) => {
                let name = t.name.clone();
                let (old, _) = host::shared_get(&token_key(&name));
                let version = old
                    .as_deref()
                    .and_then(TokenRecord::from_bytes)
                    .map_or(0, |r| r.version)
                    .max(t.local.as_ref().map_or(0, |r| r.version))
                    + 1;
                let record = TokenRecord {
                    token: egress_core::secret::Secret::new(fetched.token),
                    token_type: fetched.token_type,
                    expires_at_ms: fetched.expires_at_ms,
                    obtained_at_ms: now,
                    source: TokenSource::Fetched,
                    version,
                    stale: false,
                };
                let _ = host::shared_set(&token_key(&name), &record.to_bytes(), None);
                let _ = host::shared_set(
                    &fetch_key(&name),
                    &schedule::after_success().to_bytes(),
                    None,
                );
                self.targets[i].local = Some(record);
                self.targets[i].local_cas = None;
                self.count(&format!("egress.{name}.tokens_fetched"));
                self.log(
                    LogLevel::Debug,
                    &name,
                    "Credentials refreshed",
                    Some(fetched.expires_at_ms),
                );
            }
            Err(e) => {
                let detail = e.to_string();
                self.record_failure(i, &e, now, &detail);
            }
        }
        self.serve_waiters(i, engine, now);
        true
    }

    fn record_failure(&mut self, i: usize, e: &FetchError, now: u64, detail: &str) {
        let name = self.targets[i].name.clone();
        let (state, _) = read_state(&name);
        let jitter = self.next_jitter();
        let next = schedule::after_failure(&state, e.reason(), now, jitter);
        let _ = host::shared_set(&fetch_key(&name), &next.to_bytes(), None);
        self.count(&format!(
            "egress.{name}.token_fetch_failures.{}",
            e.reason()
        ));
        if self.log_level <= LogLevel::Warn {
            let line = serde_json::json!({
                "level": "warn",
                "ts": rfc3339(now),
                "msg": "Token fetch failed",
                "target": name,
                "reason": e.reason(),
                "detail": detail,
                "failures": next.failures,
                "retry_in_ms": next.next_attempt_ms.saturating_sub(now),
            });
            host::log(LogLevel::Warn, &line.to_string());
        }
    }

    /// Resumes waiters when a token is there; answers 503 to those past their deadline, or
    /// to all when fetching is known to be failing. Makes the root context effective again
    /// afterwards, so a callout made later in the same callback belongs to the root.
    fn serve_waiters(&mut self, i: usize, engine: &Engine, now: u64) {
        if self.targets[i].waiters.is_empty() {
            return;
        }
        let root_id = self.root_id;
        let t = &mut self.targets[i];
        if let Some(r) = t.local.as_ref().filter(|r| r.is_valid(now)) {
            let value = egress_core::credentials::bearer(r.token.expose());
            let (target, version) = (t.target, r.version);
            for w in t.waiters.drain(..) {
                let resumed = host::set_effective_context(w.context_id)
                    .and_then(|()| host::add_request_header("authorization", &value))
                    .and_then(|()| host::resume_request());
                match resumed {
                    Ok(()) => {
                        self.resumed.insert(w.context_id, (target, version));
                    }
                    Err(e) => host::log(
                        LogLevel::Debug,
                        &format!("egress: resuming a waiting request: {e}"),
                    ),
                }
            }
            let _ = host::set_effective_context(root_id);
            return;
        }
        let failing = schedule::fail_fast(None, &read_state(&t.name).0, now);
        let (expired, kept): (Vec<Waiter>, Vec<Waiter>) = t
            .waiters
            .drain(..)
            .partition(|w| failing || now >= w.deadline_ms);
        t.waiters = kept;
        if expired.is_empty() {
            return;
        }
        let target = t.target;
        let name = t.name.clone();
        let reply: LocalReply = engine.credentials_unavailable(target);
        for w in &expired {
            if host::set_effective_context(w.context_id).is_ok() {
                let _ = host::send_local_reply(&reply);
            }
        }
        let _ = host::set_effective_context(root_id);
        for _ in &expired {
            self.count(&format!("egress.{name}.credentials_unavailable"));
        }
    }

    /// Counts a request answered 503 for want of a token.
    pub fn count_unavailable(&mut self, target: usize) {
        if let Some(name) = self.slot(target).map(|t| t.name.clone()) {
            self.count(&format!("egress.{name}.credentials_unavailable"));
        }
    }

    fn count(&mut self, name: &str) {
        let id = match self.counters.get(name) {
            Some(id) => Some(*id),
            None => host::define_counter(name).inspect(|id| {
                self.counters.insert(name.to_string(), *id);
            }),
        };
        if let Some(id) = id {
            host::increment(id);
        }
    }

    fn log(&self, level: LogLevel, target: &str, msg: &str, expires_at_ms: Option<u64>) {
        if self.log_level > level {
            return;
        }
        let mut line = serde_json::json!({
            "level": level.as_str(),
            "ts": rfc3339(host::now_ms()),
            "msg": msg,
            "target": target,
            "type": "oauth2",
        });
        if let Some(exp) = expires_at_ms {
            line["expires_at"] = serde_json::Value::String(rfc3339(exp));
        }
        host::log(level, &line.to_string());
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

/// Re-reads the shared record if it changed since the last read.
fn refresh_local(t: &mut TargetTokens) {
    let (bytes, cas) = host::shared_get(&token_key(&t.name));
    if cas.is_some() && cas == t.local_cas {
        return;
    }
    if let Some(record) = bytes.as_deref().and_then(TokenRecord::from_bytes) {
        t.local = Some(record);
        t.local_cas = cas;
    }
}

fn read_state(name: &str) -> (FetchState, Option<u32>) {
    let (bytes, cas) = host::shared_get(&fetch_key(name));
    let state = bytes
        .as_deref()
        .and_then(FetchState::from_bytes)
        .unwrap_or_default();
    (state, if bytes.is_some() { cas } else { None })
}

/// Creating a key that does not exist yet cannot use CAS; a second check right after the
/// write detects a race (the last writer wins, and the loser stands down).
fn create_if_absent(key: &str, state: &FetchState) -> Result<(), proxy_wasm::types::Status> {
    host::shared_set(key, &state.to_bytes(), None)?;
    let (bytes, _) = host::shared_get(key);
    match bytes.as_deref().and_then(FetchState::from_bytes) {
        Some(s) if s.lease_owner == state.lease_owner => Ok(()),
        _ => Err(proxy_wasm::types::Status::CasMismatch),
    }
}
