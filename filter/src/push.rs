//! The push listener's requests (role `push`): `egressctl token refresh` puts tokens into the
//! shared-data token store, `egressctl status` reads what is there. Every request carries an
//! Ed25519-signed JWT bound to its body (see `egress_core::push`); anything else gets 401 and
//! changes nothing.

use crate::host::{self, Host};
use egress_core::engine::{Engine, LocalReply};
use egress_core::plan::LogLevel;
use egress_core::push::{
    record_from_body, remember_jti, PushError, PushVerifier, MAX_PUSH_BODY, PUSH_PATH, STATUS_PATH,
};
use egress_core::tokens::coord::push_store::{self, RememberError};
use egress_core::tokens::coord::shared::{self, UpdateError, Updated};
use egress_core::tokens::time::rfc3339;
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
        host::reply_or_reset(&reply);
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
        let now = match host::now_ms() {
            Ok(now) => now,
            Err(e) => {
                host::log(LogLevel::Error, &format!("egress push: {e}"));
                return self.reply(503, serde_json::json!({ "error": "unavailable", "message": "the proxy cannot read its clock" }));
            }
        };
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
        // One use per JWT: remember its id until it expires.
        let remembered = push_store::remember_jti(&Host, |cache| {
            remember_jti(cache, &verified.jti, verified.expires_at_secs, now / 1000)
        });
        match remembered {
            Ok(_) => {}
            Err(RememberError::Refused(e)) => return self.refuse(&e),
            Err(RememberError::Store(e)) => {
                host::log(LogLevel::Warn, &format!("egress push: replay cache: {e}"));
                return self.reply(503, serde_json::json!({ "error": "busy", "message": "too many concurrent pushes; retry" }));
            }
        }
        if route == STATUS_PATH {
            let names: Vec<&str> = self
                .engine
                .targets()
                .iter()
                .filter(|t| t.oauth2.is_some())
                .map(|t| t.name.as_str())
                .collect();
            let mut status = push_store::status(&Host, &names, now);
            crate::push_aws::add_status(&self.engine, &mut status, now);
            return self.reply(200, status);
        }
        if crate::push_aws::is_aws_push(body) {
            return match crate::push_aws::store(&self.engine, body, now) {
                Ok(reply) => self.reply(200, reply),
                Err(crate::push_aws::Refused::Push(e)) => self.refuse(&e),
                Err(crate::push_aws::Refused::Retry(status, reply)) => self.reply(status, reply),
            };
        }
        let (target, record) = match record_from_body(body, now) {
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
        let record = match shared::store_pushed(&Host, &target, &record) {
            Ok(Updated {
                written: Some(r), ..
            }) => r,
            Ok(Updated { written: None, .. }) | Err(UpdateError::Contended(_)) => {
                return self.reply(409, serde_json::json!({ "error": "conflict", "message": "the token changed meanwhile; push again" }));
            }
            Err(e) => {
                host::log(
                    LogLevel::Error,
                    &format!("egress push: storing the token: {e}"),
                );
                return self.reply(503, serde_json::json!({ "error": "unavailable", "message": "the token could not be stored; push again" }));
            }
        };
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
        match host::request_body(body_size) {
            Ok(body) => self.handle(&body),
            Err(e) => {
                host::log(LogLevel::Error, &format!("egress push: {e}"));
                self.reply(500, serde_json::json!({ "error": "internal_error" }))
            }
        }
    }
}
