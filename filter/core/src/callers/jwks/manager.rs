//! One worker's side of the `jwks_url` issuers: its copy of each issuer's keys (read again
//! when the shared version changes), the fetch lease (only its winner dispatches the
//! callout, from the root context: on a tick), the checks a reply must pass before it
//! replaces the keys in use, and the requests waiting for keys.

use super::{
    doc_key, state_key, JwksNeed, JwksState, KeySets, NeedKind, FETCH_TIMEOUT_MS, MAX_JWKS_BYTES,
    WAIT_MS,
};
use crate::callers::jwt::{JwksSource, KeyError, KeySet};
use crate::plan::{wire, LogLevel};
use crate::tokens::coord::inflight::{clock_ms, slot_awaiting, Inflight};
use crate::tokens::coord::shared::{self, Step};
use crate::tokens::coord::TokenHost;
use crate::tokens::TokenRequest;

/// What a request whose token needs keys does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeedOutcome {
    /// The keys changed meanwhile: check the token again now.
    Retry,
    /// Pause: a fetch is due or in flight; [`JwksManager::on_tick`] or
    /// [`JwksManager::on_callout`] wakes the request.
    Wait,
    /// Refuse now: no fetch is coming (fetches are failing, or an unknown `kid` already asked
    /// for a refresh in the last 30 s).
    Refuse,
}

/// A paused request to run again: with new keys, or `expired` (its wait is over without
/// them: the request is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    pub context_id: u32,
    pub expired: bool,
}

struct Waiter {
    context_id: u32,
    slot: usize,
    since_ms: u64,
    deadline_ms: u64,
    seen_version: u64,
}

struct Slot {
    source: JwksSource,
    cluster: String,
    state_key: String,
    doc_key: String,
    /// The state record as last read or written, and its CAS token.
    state: JwksState,
    state_cas: Option<u32>,
    /// The version of the keys in `JwksManager::keys` for this issuer (0: none).
    local_version: u64,
    inflight: Option<Inflight>,
}

pub struct JwksManager {
    worker: u64,
    slots: Vec<Slot>,
    keys: KeySets,
    waiters: Vec<Waiter>,
}

impl JwksManager {
    /// `seed` names this worker in leases (from the host's randomness).
    pub fn new(sources: Vec<JwksSource>, seed: u64) -> Self {
        Self {
            worker: seed | 1,
            slots: sources
                .into_iter()
                .map(|source| Slot {
                    cluster: wire::jwks_cluster(source.index),
                    state_key: state_key(&source.issuer, &source.url_text),
                    doc_key: doc_key(&source.issuer, &source.url_text),
                    source,
                    state: JwksState::default(),
                    state_cas: None,
                    local_version: 0,
                    inflight: None,
                })
                .collect(),
            keys: KeySets::default(),
            waiters: Vec::new(),
        }
    }

    pub fn has_sources(&self) -> bool {
        !self.slots.is_empty()
    }

    /// This worker's keys of every `jwks_url` issuer.
    pub fn keys(&self) -> &KeySets {
        &self.keys
    }

    /// Creates the shared state entries (so later writes are compare-and-swap) and takes in
    /// keys another worker (or an earlier config) already fetched.
    pub fn start(&mut self, host: &dyn TokenHost) {
        for i in 0..self.slots.len() {
            if let Some(s) = self.slots.get(i) {
                let initial = JwksState::default().to_bytes();
                if let Err(e) = shared::ensure_exists(host, &s.state_key, &initial) {
                    log_issuer(
                        host,
                        LogLevel::Error,
                        s,
                        "creating the JWKS state",
                        &e.to_string(),
                    );
                }
            }
            self.sync(host, i);
        }
    }

    fn slot_of(&self, issuer: usize) -> Option<usize> {
        self.slots.iter().position(|s| s.source.index == issuer)
    }

    /// Reads the shared state (parsed only when it changed) and, on a new version, the
    /// document, into this worker's keys.
    fn sync(&mut self, host: &dyn TokenHost, i: usize) {
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        let Ok(entry) = host.shared_get(&s.state_key) else {
            return;
        };
        if entry.cas.is_some() && entry.cas == s.state_cas {
            return;
        }
        if let Some(state) = entry.bytes.as_deref().and_then(JwksState::from_bytes) {
            s.state = state;
            s.state_cas = entry.cas;
        }
        if s.state.version <= s.local_version {
            return;
        }
        let doc = host.shared_get(&s.doc_key).ok().and_then(|e| e.bytes);
        let text = doc.as_deref().and_then(|d| std::str::from_utf8(d).ok());
        match text.map(|t| KeySet::from_jwks(&s.source.issuer, &s.source.algorithms, t)) {
            Some(Ok(set)) => {
                self.keys.insert(s.source.index, set);
                s.local_version = s.state.version;
            }
            Some(Err(e)) => {
                log_issuer(host, LogLevel::Error, s, "the shared JWKS", &e.to_string());
            }
            None => {}
        }
    }

    /// Starts a fetch when one is due and this worker wins the lease. Only from the root
    /// context (a tick, a callout reply): the callout belongs to the context that made it.
    fn maybe_fetch(&mut self, host: &dyn TokenHost, i: usize, now: u64) {
        let worker = self.worker;
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        if let Some(f) = &s.inflight {
            if now < f.until_ms {
                return;
            }
            s.inflight = None;
        }
        let until_ms = now + FETCH_TIMEOUT_MS + 1000;
        let taken = shared::update(
            host,
            &s.state_key,
            JwksState::from_bytes,
            JwksState::to_bytes,
            |cur| {
                let cur = cur.cloned().unwrap_or_default();
                if !cur.due(now) {
                    return Step::Keep;
                }
                Step::Write(JwksState {
                    lease_worker: worker,
                    lease_until_ms: until_ms,
                    attempt_ms: now,
                    refresh_wanted: false,
                    ..cur
                })
            },
        );
        let state = match taken {
            Ok(shared::Updated {
                written: Some(state),
                ..
            }) => state,
            Ok(_) => return,
            Err(e) => {
                log_issuer(
                    host,
                    LogLevel::Warn,
                    s,
                    "taking the JWKS lease",
                    &e.to_string(),
                );
                return;
            }
        };
        s.state = state;
        s.state_cas = None;
        let path = if s.source.url.base_path.is_empty() {
            "/".to_string()
        } else {
            s.source.url.base_path.clone()
        };
        let request = TokenRequest {
            headers: vec![
                (":method".into(), "GET".into()),
                (":path".into(), path),
                (":authority".into(), s.source.url.authority()),
                ("accept".into(), "application/json".into()),
            ],
            body: Vec::new(),
        };
        match host.dispatch(&s.cluster, &request, FETCH_TIMEOUT_MS) {
            Ok(callout) => {
                s.inflight = Some(Inflight {
                    callout,
                    started_ms: now,
                    until_ms,
                })
            }
            Err(e) => {
                log_issuer(
                    host,
                    LogLevel::Warn,
                    s,
                    "JWKS fetch not sent",
                    &e.to_string(),
                );
                self.finish(host, i, now, None);
            }
        }
    }

    /// Ends this worker's fetch: a good reply's version and time, or one more failure; the
    /// lease is released either way.
    fn finish(&mut self, host: &dyn TokenHost, i: usize, now: u64, good: Option<KeySet>) {
        let worker = self.worker;
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        let ok = good.is_some();
        let done = shared::update(
            host,
            &s.state_key,
            JwksState::from_bytes,
            JwksState::to_bytes,
            |cur| {
                let mut next = cur.cloned().unwrap_or_default();
                if next.lease_worker == worker {
                    next.lease_worker = 0;
                    next.lease_until_ms = 0;
                }
                if ok {
                    next.version += 1;
                    next.fetched_ms = now;
                    next.failures = 0;
                } else {
                    next.failures = next.failures.saturating_add(1);
                }
                Step::Write(next)
            },
        );
        match done {
            Ok(shared::Updated {
                written: Some(state),
                ..
            }) => {
                s.state = state;
                s.state_cas = None;
                if let Some(set) = good {
                    host.log(
                        LogLevel::Info,
                        &serde_json::json!({
                            "level": "info",
                            "msg": "JWKS fetched",
                            "issuer": s.source.issuer,
                            "url": s.source.url_text,
                            "keys": set.len(),
                            "version": s.state.version,
                        })
                        .to_string(),
                    );
                    self.keys.insert(s.source.index, set);
                    s.local_version = s.state.version;
                }
            }
            Ok(_) => {}
            Err(e) => log_issuer(
                host,
                LogLevel::Warn,
                s,
                "recording the fetch",
                &e.to_string(),
            ),
        }
    }

    /// Whether `callout` is one of this worker's JWKS fetches.
    pub fn owns_callout(&self, callout: u32) -> bool {
        self.slot_awaiting(callout).is_some()
    }

    fn slot_awaiting(&self, callout: u32) -> Option<usize> {
        slot_awaiting(self.slots.iter().map(|s| s.inflight.as_ref()), callout)
    }

    /// A JWKS reply: `status` is `None` when the callout failed (timeout, connection, TLS).
    /// `body` is read by the glue only when `body_size` is within [`MAX_JWKS_BYTES`].
    pub fn on_callout(
        &mut self,
        host: &dyn TokenHost,
        callout: u32,
        status: Option<u16>,
        body_size: usize,
        body: &[u8],
    ) -> Vec<Wake> {
        let Some(i) = self.slot_awaiting(callout) else {
            return Vec::new();
        };
        let Some(now) = clock_ms(host) else {
            return Vec::new();
        };
        let Some(s) = self.slots.get_mut(i) else {
            return Vec::new();
        };
        s.inflight = None;
        let checked = check_reply(&s.source, status, body_size, body);
        let good = match checked {
            Ok(set) => match host.shared_set(&s.doc_key, body, None) {
                Ok(()) => Some(set),
                Err(e) => {
                    log_issuer(host, LogLevel::Warn, s, "storing the JWKS", &e.to_string());
                    None
                }
            },
            Err(reason) => {
                host.log(
                    LogLevel::Warn,
                    &serde_json::json!({
                        "level": "warn",
                        "msg": "JWKS reply refused; the keys in use are kept",
                        "issuer": s.source.issuer,
                        "url": s.source.url_text,
                        "reason": reason.to_string(),
                        "keys_version": s.local_version,
                    })
                    .to_string(),
                );
                None
            }
        };
        self.finish(host, i, now, good);
        self.wakes(now)
    }

    /// The tick: new keys from other workers, fetches that are due, waits that are over.
    pub fn on_tick(&mut self, host: &dyn TokenHost) -> Vec<Wake> {
        let Some(now) = clock_ms(host) else {
            return Vec::new();
        };
        for i in 0..self.slots.len() {
            self.sync(host, i);
            self.maybe_fetch(host, i, now);
        }
        self.wakes(now)
    }

    /// A request's token needs keys this worker lacks. Never dispatches (this runs in the
    /// request's context); the next tick fetches.
    pub fn need(&mut self, host: &dyn TokenHost, need: JwksNeed, context_id: u32) -> NeedOutcome {
        let (Some(i), Some(now)) = (self.slot_of(need.issuer), clock_ms(host)) else {
            return NeedOutcome::Refuse;
        };
        let before = self.slots.get(i).map_or(0, |s| s.local_version);
        self.sync(host, i);
        let Some(s) = self.slots.get_mut(i) else {
            return NeedOutcome::Refuse;
        };
        if s.local_version > before {
            return NeedOutcome::Retry;
        }
        let wait = match need.kind {
            NeedKind::NeverFetched => s.state.leased(now) || s.state.due(now),
            NeedKind::UnknownKid => {
                let asked = shared::update(
                    host,
                    &s.state_key,
                    JwksState::from_bytes,
                    JwksState::to_bytes,
                    |cur| {
                        let cur = cur.cloned().unwrap_or_default();
                        if cur.kid_refresh_allowed(now) {
                            Step::Write(JwksState {
                                refresh_wanted: true,
                                kid_refresh_ms: now,
                                ..cur
                            })
                        } else {
                            Step::Keep
                        }
                    },
                );
                match asked {
                    Ok(shared::Updated {
                        written: Some(state),
                        ..
                    }) => {
                        s.state = state;
                        s.state_cas = None;
                        true
                    }
                    // Within 30 s of the last one: join a refresh still pending, else refuse.
                    Ok(_) => {
                        s.state.refresh_wanted
                            || (s.state.leased(now) && s.state.attempt_ms >= s.state.kid_refresh_ms)
                    }
                    Err(e) => {
                        log_issuer(
                            host,
                            LogLevel::Warn,
                            s,
                            "asking for a refresh",
                            &e.to_string(),
                        );
                        false
                    }
                }
            }
        };
        if !wait {
            return NeedOutcome::Refuse;
        }
        self.waiters.push(Waiter {
            context_id,
            slot: i,
            since_ms: now,
            deadline_ms: now + WAIT_MS,
            seen_version: before,
        });
        NeedOutcome::Wait
    }

    /// Waiters to run again: new keys, an attempt made since they came that brought none,
    /// or their deadline passed.
    fn wakes(&mut self, now: u64) -> Vec<Wake> {
        let slots = &self.slots;
        let mut out = Vec::new();
        self.waiters.retain(|w| {
            let Some(s) = slots.get(w.slot) else {
                out.push(Wake {
                    context_id: w.context_id,
                    expired: true,
                });
                return false;
            };
            let wake = if s.local_version > w.seen_version {
                Some(false)
            } else if now >= w.deadline_ms
                || (!s.state.leased(now)
                    && !s.state.refresh_wanted
                    && s.state.attempt_ms >= w.since_ms)
            {
                Some(true)
            } else {
                None
            };
            match wake {
                Some(expired) => {
                    out.push(Wake {
                        context_id: w.context_id,
                        expired,
                    });
                    false
                }
                None => true,
            }
        });
        out
    }

    /// A request ended: forget it.
    pub fn forget(&mut self, context_id: u32) {
        self.waiters.retain(|w| w.context_id != context_id);
    }

    /// Requests waiting for keys.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }
}

/// Why a JWKS reply was refused (logged as the `reason`; the keys in use are kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("no reply (timeout, connection or TLS failure)")]
    NoReply,
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("a body of {size} bytes is larger than the {MAX_JWKS_BYTES} allowed")]
    TooLarge { size: usize },
    #[error("the body is not UTF-8")]
    NotUtf8,
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// A reply becomes the keys in use only if it is a 200 with a JWKS of a usable key.
fn check_reply(
    source: &JwksSource,
    status: Option<u16>,
    body_size: usize,
    body: &[u8],
) -> Result<KeySet, ReplyError> {
    match status {
        None => return Err(ReplyError::NoReply),
        Some(200) => {}
        Some(s) => return Err(ReplyError::Status(s)),
    }
    if body_size > MAX_JWKS_BYTES || body.len() > MAX_JWKS_BYTES {
        return Err(ReplyError::TooLarge {
            size: body_size.max(body.len()),
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| ReplyError::NotUtf8)?;
    Ok(KeySet::from_jwks(&source.issuer, &source.algorithms, text)?)
}

fn log_issuer(host: &dyn TokenHost, level: LogLevel, s: &Slot, what: &str, error: &str) {
    host.log(
        level,
        &serde_json::json!({
            "level": match level {
                LogLevel::Error => "error",
                LogLevel::Warn => "warn",
                _ => "info",
            },
            "msg": format!("egress: {what} failed"),
            "issuer": s.source.issuer,
            "url": s.source.url_text,
            "error": error,
        })
        .to_string(),
    );
}
