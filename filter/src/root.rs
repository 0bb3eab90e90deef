//! Plugin start: the filter config is parsed and compiled once here, never per request.
//!
//! In the egress role the root context owns the worker's token manager (its tick and the
//! token callouts). In the push role it verifies pushes with the configured public key.

use crate::host;
use crate::http::EgressHttp;
use crate::push::PushHttp;
use crate::tokens::{TokenManager, TICK};
use egress_core::engine::Engine;
use egress_core::plan::{FilterConfig, LogLevel, Role};
use egress_core::push::PushVerifier;
use egress_core::tokens::record::fetch_key;
use egress_core::tokens::FetchState;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

pub struct EgressRoot {
    context_id: u32,
    engine: Option<Rc<Engine>>,
    tokens: Option<Rc<RefCell<TokenManager>>>,
    push: Option<Rc<PushVerifier>>,
    log_level: LogLevel,
    /// The sign role (`crate::sigv4::SignHttp`).
    signer: bool,
}

impl EgressRoot {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            engine: None,
            tokens: None,
            push: None,
            log_level: LogLevel::default(),
            signer: false,
        }
    }

    fn configure(&mut self) -> Result<(), String> {
        let bytes = host::plugin_configuration()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the plugin configuration is empty".to_string())?;
        let config =
            FilterConfig::from_json(&bytes).map_err(|e| format!("invalid filter config: {e}"))?;
        let engine = Engine::new(&config).map_err(|e| e.to_string())?;
        let level = config.log_level;
        proxy_wasm::set_log_level(host::host_level(level));
        self.log_level = level;
        match config.role {
            Role::Sign => self.signer = true,
            Role::Push => {
                let pem = config
                    .push_public_key
                    .as_deref()
                    .ok_or_else(|| "the push role needs push_public_key".to_string())?;
                self.push = Some(Rc::new(
                    PushVerifier::from_pem(pem).map_err(|e| e.to_string())?,
                ));
            }
            Role::Egress => {
                let tokens = TokenManager::new(self.context_id, &engine, level)?;
                if tokens.has_targets() {
                    for t in engine.targets().iter().filter(|t| t.oauth2.is_some()) {
                        // Make the fetch state exist, so leases are always taken by CAS.
                        if host::shared_get(&fetch_key(&t.name)).0.is_none() {
                            let _ = host::shared_set(
                                &fetch_key(&t.name),
                                &FetchState::default().to_bytes(),
                                None,
                            );
                        }
                    }
                    self.set_tick_period(TICK);
                }
                self.tokens = Some(Rc::new(RefCell::new(tokens)));
            }
        }
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
        self.engine = Some(Rc::new(engine));
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
        if let (Some(engine), Some(tokens)) = (&self.engine, &self.tokens) {
            if let Ok(mut t) = tokens.try_borrow_mut() {
                t.on_callout(token_id, num_headers, body_size, engine);
            }
        }
    }
}

impl RootContext for EgressRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        match self.configure() {
            Ok(()) => true,
            Err(reason) => {
                let msg = serde_json::json!({
                    "level": "error",
                    "msg": "egress filter config rejected; the plugin does not start",
                    "reason": reason,
                });
                host::log(LogLevel::Error, &msg.to_string());
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let (Some(engine), Some(tokens)) = (&self.engine, &self.tokens) {
            if let Ok(mut t) = tokens.try_borrow_mut() {
                t.on_tick(self, engine);
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = self.engine.clone()?;
        if let Some(verifier) = &self.push {
            return Some(Box::new(PushHttp::new(verifier.clone(), engine)));
        }
        if self.signer {
            return Some(Box::new(crate::sigv4::SignHttp::new(
                engine,
                self.log_level,
            )));
        }
        let tokens = self.tokens.clone()?;
        Some(Box::new(EgressHttp::new(
            context_id,
            engine,
            tokens,
            self.log_level,
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
