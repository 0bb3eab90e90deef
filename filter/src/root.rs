//! Plugin start: the filter config is parsed and compiled once here, never per request. The
//! root context also owns the worker's token manager: its tick and the token callouts.

use crate::host;
use crate::http::EgressHttp;
use crate::tokens::{TokenManager, TICK};
use egress_core::engine::Engine;
use egress_core::plan::{FilterConfig, LogLevel};
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
    log_level: LogLevel,
}

impl EgressRoot {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            engine: None,
            tokens: None,
            log_level: LogLevel::default(),
        }
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
        match load_engine().and_then(|(engine, level)| {
            let tokens = TokenManager::new(self.context_id, &engine, level)?;
            Ok((engine, level, tokens))
        }) {
            Ok((engine, level, tokens)) => {
                proxy_wasm::set_log_level(host::host_level(level));
                self.log_level = level;
                host::log(
                    LogLevel::Info,
                    &format!(
                        r#"{{"level":"info","msg":"egress filter configured","targets":{},"routes":{}}}"#,
                        engine.targets().len(),
                        engine.route_count()
                    ),
                );
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
                self.engine = Some(Rc::new(engine));
                true
            }
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

fn load_engine() -> Result<(Engine, LogLevel), String> {
    let bytes = host::plugin_configuration()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the plugin configuration is empty".to_string())?;
    let config =
        FilterConfig::from_json(&bytes).map_err(|e| format!("invalid filter config: {e}"))?;
    let engine = Engine::new(&config).map_err(|e| e.to_string())?;
    Ok((engine, config.log_level))
}
