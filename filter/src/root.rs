//! Plugin start: the filter config is parsed and compiled once here, never per request.
//!
//! In the egress role the root context owns the worker's token manager (its tick and the
//! token callouts). In the push role it verifies pushes with the configured public key. A
//! refused config still gives every request an HTTP context: one that answers a JSON 503
//! (the SDK traps when a root returns none, and the VM would be gone).

use crate::host::{self, Host};
use crate::http::{EgressHttp, Shared};
use crate::push::PushHttp;
use crate::refused::RefusedHttp;
use egress_core::callers::jwks::JwksManager;
use egress_core::callers::TokenCache;
use egress_core::engine::Engine;
use egress_core::plan::{FilterConfig, LogLevel, Role};
use egress_core::push::PushVerifier;
use egress_core::tokens::coord::manager::SetupError;
use egress_core::tokens::coord::{push_store, TokenManager, TokenTarget, TICK_MS};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, MapType};
use std::cell::RefCell;
use std::rc::Rc;

/// Why the plugin refused its config.
#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error("{0}")]
    Host(#[from] egress_core::tokens::coord::HostError),
    #[error("the plugin configuration is empty")]
    Empty,
    #[error("invalid filter config: {0}")]
    Parse(#[from] egress_core::plan::FilterConfigError),
    #[error("{0}")]
    Engine(#[from] egress_core::engine::EngineError),
    #[error("the push role needs push_public_key")]
    NoPushKey,
    #[error("{0}")]
    PushKey(#[from] egress_core::push::PushError),
    #[error("{0}")]
    Tokens(#[from] SetupError),
}

enum Running {
    /// Not configured (yet, or refused): requests get a 503.
    Refused,
    /// The worker's token manager, verified-caller cache, JWKS keys and parked requests.
    Egress(Shared),
    Push {
        engine: Rc<Engine>,
        verifier: Rc<PushVerifier>,
    },
    /// Signs `aws_sigv4` requests of `payload: signed` targets (`crate::sigv4::SignHttp`).
    Sign { engine: Rc<Engine> },
}

pub struct EgressRoot {
    context_id: u32,
    running: Running,
    log_level: LogLevel,
}

impl EgressRoot {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            running: Running::Refused,
            log_level: LogLevel::default(),
        }
    }

    fn configure(&mut self) -> Result<(), ConfigError> {
        let bytes = host::plugin_configuration()?.ok_or(ConfigError::Empty)?;
        let config = FilterConfig::from_json(&bytes)?;
        let engine = Rc::new(Engine::new(&config)?);
        let level = config.log_level;
        host::set_log_level(level);
        self.log_level = level;
        self.running = match config.role {
            Role::Sign => Running::Sign {
                engine: engine.clone(),
            },
            Role::Push => {
                let pem = config
                    .push_public_key
                    .as_deref()
                    .ok_or(ConfigError::NoPushKey)?;
                let verifier = Rc::new(PushVerifier::from_pem(pem)?);
                if let Err(e) = push_store::start(&Host) {
                    host::log(
                        LogLevel::Error,
                        &format!("egress push: creating the replay cache: {e}"),
                    );
                }
                Running::Push {
                    engine: engine.clone(),
                    verifier,
                }
            }
            // The routed role runs the same root as the egress role (token fetches, ticks,
            // JWKS): in the `auto` engine it may be the only instance on OAuth2 routes. Two
            // instances in one VM share the tokens through shared data; the fetch lease lets
            // one of them fetch.
            Role::Egress | Role::Routed => {
                let targets = TokenTarget::from_engine(&engine)?;
                let mut tokens =
                    TokenManager::new(self.context_id, targets, level, host::random_seed());
                let mut jwks = JwksManager::new(engine.jwks_sources(), host::random_seed());
                if tokens.has_targets() {
                    tokens.start(&Host);
                }
                if jwks.has_sources() {
                    jwks.start(&Host);
                }
                if tokens.has_targets() || jwks.has_sources() {
                    host::set_tick_period(TICK_MS)?;
                }
                Running::Egress(Shared {
                    engine: engine.clone(),
                    tokens: Rc::new(RefCell::new(tokens)),
                    callers: Rc::new(RefCell::new(TokenCache::default())),
                    jwks: Rc::new(RefCell::new(jwks)),
                    parked: Rc::default(),
                    log_level: level,
                    routed: config.role == Role::Routed,
                })
            }
        };
        host::log(
            LogLevel::Info,
            &serde_json::json!({
                "level": "info",
                "msg": "egress filter configured",
                "role": config.role,
                "targets": engine.targets().len(),
                "routes": engine.route_count(),
            })
            .to_string(),
        );
        Ok(())
    }
}

impl Context for EgressRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Running::Egress(shared) = &self.running else {
            return;
        };
        if crate::jwks::on_callout(
            &shared.jwks,
            &shared.parked,
            self.context_id,
            token_id,
            num_headers,
            body_size,
        ) {
            return;
        }
        let Ok(mut t) = shared.tokens.try_borrow_mut() else {
            host::log(
                LogLevel::Error,
                "egress: token callout reply while the token manager is busy",
            );
            return;
        };
        if !t.owns_callout(token_id) {
            return;
        }
        let status = if num_headers == 0 {
            None
        } else {
            host::status_of(MapType::HttpCallResponseHeaders)
        };
        let body = if status.is_some() {
            host::callout_body(body_size)
        } else {
            Vec::new()
        };
        t.on_callout(&Host, token_id, status, &body);
    }
}

impl RootContext for EgressRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        match self.configure() {
            Ok(()) => true,
            Err(reason) => {
                self.running = Running::Refused;
                let msg = serde_json::json!({
                    "level": "error",
                    "msg": "egress filter config rejected; the plugin does not start",
                    "reason": reason.to_string(),
                });
                host::log(LogLevel::Error, &msg.to_string());
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Running::Egress(shared) = &self.running {
            match shared.tokens.try_borrow_mut() {
                Ok(mut t) => t.on_tick(&Host),
                Err(_) => host::log(
                    LogLevel::Error,
                    "egress: tick while the token manager is busy",
                ),
            }
            crate::jwks::on_tick(&shared.jwks, &shared.parked, self.context_id);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.running {
            Running::Refused => Box::new(RefusedHttp),
            Running::Push { engine, verifier } => {
                Box::new(PushHttp::new(verifier.clone(), engine.clone()))
            }
            Running::Sign { engine } => {
                Box::new(crate::sigv4::SignHttp::new(engine.clone(), self.log_level))
            }
            Running::Egress(shared) => Box::new(EgressHttp::new(context_id, shared)),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
