//! The push listener's requests (role `push`): `egressctl token refresh` puts tokens into the
//! shared-data token store, `egressctl status` reads what is there. Every request carries an
//! Ed25519-signed JWT bound to its body (see `egress_core::push`); anything else gets 401 and
//! changes nothing.

use crate::host;
use egress_core::engine::{Engine, LocalReply};
use egress_core::plan::LogLevel;
use egress_core::push::{
    record_from_body, remember_jti, PushError, PushVerifier, JTI_CACHE_KEY, MAX_PUSH_BODY,
    PUSH_PATH, STATUS_PATH,
};
use egress_core::tokens::record::{fetch_key, token_key};
use egress_core::tokens::time::rfc3339;
use egress_core::tokens::{FetchState, TokenRecord};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct PushHttp {
    verifier: Rc<PushVerifier>,
    engine: Rc<Engine>,
    method: String,
    path: String,
    authorization: Option<String>,
    body_size: usize,
}

impl PushHttp {
    pub fn new(verifier: Rc<PushVerifier>, engine: Rc<Engine>) -> Self {
        Self {
            verifier,
            engine,
            method: String::new(),
            path: String::new(),
            authorization: None,
            body_size: 0,
        }
    }

    fn reply(&self, status: u16, body: serde_json::Value) -> Action {
        let reply = LocalReply {
            status,
            code: "",
            body: body.to_string(),
            headers: vec![("content-type", "application/json".to_string())],
        };
        if let Err(e) = host::send_local_reply(&reply) {
            host::log(LogLevel::Error, &format!("egress push: {e}"));
        }
        Action::Pause
    }

    fn refuse(&self, e: &PushError) -> Action {
        host::log(
            LogLevel::Warn,
            &serde_json::json!({ "level": "warn", "msg": "Push refused", "reason": e.to_string() })
                .to_string(),
        );
        self.reply(
            e.status(),
            serde_json::json!({ "error": "push_rejected", "message": e.to_string() }),
        )
    }

    /// The whole request is here: check it and act.
    fn handle(&mut self, body: &[u8]) -> Action {
        let now = host::now_ms();
        let route = match (self.method.as_str(), self.path.as_str()) {
            ("POST", PUSH_PATH) => PUSH_PATH,
            ("GET", STATUS_PATH) => STATUS_PATH,
            _ => return self.reply(404, serde_json::json!({ "error": "not_found", "message": "POST /v1/tokens or GET /v1/status" })),
        };
        let verified = match self
            .verifier
            .verify(self.authorization.as_deref(), body, now / 1000)
        {
            Ok(v) => v,
            Err(e) => return self.refuse(&e),
        };
        // One use per JWT: remember its id until it expires (compare-and-swap on one entry).
        let mut remembered = false;
        for _ in 0..8 {
            let (bytes, cas) = host::shared_get(JTI_CACHE_KEY);
            let updated = match remember_jti(
                bytes.as_deref(),
                &verified.jti,
                verified.expires_at_secs,
                now / 1000,
            ) {
                Ok(u) => u,
                Err(e) => return self.refuse(&e),
            };
            if host::shared_set(JTI_CACHE_KEY, &updated, cas).is_ok() {
                remembered = true;
                break;
            }
        }
        if !remembered {
            return self.reply(503, serde_json::json!({ "error": "busy", "message": "too many concurrent pushes; retry" }));
        }
        if route == STATUS_PATH {
            return self.status(now);
        }
        let (target, mut record) = match record_from_body(body, now) {
            Ok(r) => r,
            Err(e) => return self.refuse(&e),
        };
        if !self
            .engine
            .targets()
            .iter()
            .any(|t| t.name == target && t.oauth2.is_some())
        {
            return self.refuse(&PushError::BadBody(format!(
                "{target:?} is not an OAuth2 target of this proxy"
            )));
        }
        let (old, cas) = host::shared_get(&token_key(&target));
        record.version = old
            .as_deref()
            .and_then(TokenRecord::from_bytes)
            .map_or(0, |r| r.version)
            + 1;
        if host::shared_set(&token_key(&target), &record.to_bytes(), cas).is_err() {
            return self.reply(409, serde_json::json!({ "error": "conflict", "message": "the token changed meanwhile; push again" }));
        }
        host::log(
            LogLevel::Debug,
            &serde_json::json!({
                "level": "debug", "ts": rfc3339(now), "msg": "Credentials refreshed",
                "target": target, "type": "oauth2", "source": "pushed", "expires_at": rfc3339(record.expires_at_ms),
            })
            .to_string(),
        );
        self.reply(200, serde_json::json!({ "status": "stored", "target": target, "version": record.version, "expires_at": rfc3339(record.expires_at_ms) }))
    }

    /// Per OAuth2 target: where the token came from, its age and time left, the last fetch
    /// result. Never the token.
    fn status(&self, now: u64) -> Action {
        let targets: Vec<serde_json::Value> = self
            .engine
            .targets()
            .iter()
            .filter(|t| t.oauth2.is_some())
            .map(|t| {
                let record = host::shared_get(&token_key(&t.name))
                    .0
                    .as_deref()
                    .and_then(TokenRecord::from_bytes);
                let state = host::shared_get(&fetch_key(&t.name))
                    .0
                    .as_deref()
                    .and_then(FetchState::from_bytes)
                    .unwrap_or_default();
                match record {
                    Some(r) => serde_json::json!({
                        "target": t.name,
                        "valid": r.is_valid(now),
                        "source": r.source,
                        "version": r.version,
                        "age_ms": now.saturating_sub(r.obtained_at_ms),
                        "expires_in_ms": r.expires_at_ms.saturating_sub(now),
                        "expires_at": rfc3339(r.expires_at_ms),
                        "stale": r.stale,
                        "fetch_failures": state.failures,
                        "last_error": state.last_error,
                    }),
                    None => serde_json::json!({
                        "target": t.name, "valid": false, "source": null,
                        "fetch_failures": state.failures, "last_error": state.last_error,
                    }),
                }
            })
            .collect();
        self.reply(200, serde_json::json!({ "targets": targets }))
    }
}

impl Context for PushHttp {}

impl HttpContext for PushHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let headers = match host::request_headers() {
            Ok(h) => h,
            Err(e) => {
                host::log(LogLevel::Error, &format!("egress push: {e}"));
                return self.reply(500, serde_json::json!({ "error": "internal_error" }));
            }
        };
        let text = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .map(str::to_string)
        };
        self.method = text(":method").unwrap_or_default();
        self.path = text(":path").unwrap_or_default();
        self.authorization = text("authorization");
        if end_of_stream {
            return self.handle(&[]);
        }
        // Continue, not Pause: the host turns a paused header callback into "stop everything"
        // (proxy-wasm-cpp-host converts StopIteration to StopAllIterationAndWatermark), so the
        // body would never reach us. The listener's buffer filter, after this one, keeps the
        // router from acting on the headers; the body callback below pauses until the end.
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_size = body_size;
        if body_size > MAX_PUSH_BODY {
            return self.refuse(&PushError::BadBody("too large".into()));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = host::request_body(body_size);
        self.handle(&body)
    }
}
