//! One request: read the headers once, let the engine decide, write the headers once.

use crate::host;
use egress_core::engine::{Decision, Engine, LocalReply};
use egress_core::plan::{wire, LogLevel};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct EgressHttp {
    engine: Rc<Engine>,
    log_level: LogLevel,
}

impl EgressHttp {
    pub fn new(engine: Rc<Engine>, log_level: LogLevel) -> Self {
        Self { engine, log_level }
    }

    fn debug(&self, msg: impl FnOnce() -> String) {
        if self.log_level <= LogLevel::Debug {
            host::log(LogLevel::Debug, &msg());
        }
    }

    fn reply(&self, reply: &LocalReply) -> Action {
        if let Err(e) = host::send_local_reply(reply) {
            host::log(LogLevel::Error, &format!("egress: {e}"));
        }
        Action::Pause
    }

    fn handle(&mut self) -> Result<Action, host::HostError> {
        let mut headers = host::request_headers()?;
        let method = pseudo(&headers, ":method");
        let path = pseudo(&headers, ":path");
        let decision = self.engine.decide(method, path);
        match decision {
            Decision::Pass => Ok(Action::Continue),
            Decision::Ready => Ok(self.reply(&ready_reply(&self.engine))),
            Decision::Respond(reply) => {
                // Refused paths are logged as sent (without the query), escaped for the JSON line.
                let without_query = path.split_once('?').map_or(path, |(p, _)| p);
                let _ = host::set_property(wire::PROP_PATH, &wire::json_escape(without_query));
                self.debug(|| format!("egress: local reply {} {}", reply.status, reply.code));
                Ok(self.reply(&reply))
            }
            Decision::Forward(fwd) => {
                let target_name = self
                    .engine
                    .target(fwd.target)
                    .map_or("", |t| t.name.as_str());
                host::set_property(wire::PROP_TARGET, &wire::json_escape(target_name))?;
                host::set_property(wire::PROP_TARGET_URL, &wire::json_escape(&fwd.target_url))?;
                host::set_property(wire::PROP_PATH, &wire::json_escape(&fwd.original_path))?;
                // OAuth2 tokens come with the token cache; until one is held, refuse clearly.
                let token: Option<&str> = None;
                if self.engine.edit_headers(&fwd, &mut headers, token).is_err() {
                    return Ok(self.reply(&self.engine.credentials_unavailable(fwd.target)));
                }
                host::set_request_headers(&headers)?;
                host::clear_route_cache();
                self.debug(|| format!("egress: {target_name} -> {}", fwd.target_url));
                Ok(Action::Continue)
            }
        }
    }
}

fn pseudo<'h>(headers: &'h [(String, String)], name: &str) -> &'h str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Readiness: every OAuth2 target must hold a valid token (none do before the token cache).
fn ready_reply(engine: &Engine) -> LocalReply {
    let not_ready: Vec<&str> = engine
        .targets()
        .iter()
        .filter(|t| t.oauth2.is_some())
        .map(|t| t.name.as_str())
        .collect();
    let (status, body) = if not_ready.is_empty() {
        (200, serde_json::json!({ "status": "ready" }))
    } else {
        (
            503,
            serde_json::json!({ "status": "not_ready", "error": "credentials_unavailable", "targets": not_ready }),
        )
    };
    LocalReply {
        status,
        code: if status == 200 {
            "ok"
        } else {
            "credentials_unavailable"
        },
        body: body.to_string(),
        headers: vec![("content-type", "application/json".to_string())],
    }
}

impl Context for EgressHttp {}

impl HttpContext for EgressHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.handle() {
            Ok(action) => action,
            Err(e) => {
                host::log(LogLevel::Error, &format!("egress: {e}"));
                self.reply(&LocalReply::error(
                    500,
                    "internal_error",
                    "the egress filter could not process the request",
                ))
            }
        }
    }
}
