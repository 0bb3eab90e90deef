//! Plugin start: the filter config is parsed and compiled once here, never per request.

use crate::host;
use crate::http::EgressHttp;
use egress_core::engine::Engine;
use egress_core::plan::{FilterConfig, LogLevel};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

#[derive(Default)]
pub struct EgressRoot {
    engine: Option<Rc<Engine>>,
    log_level: LogLevel,
}

impl Context for EgressRoot {}

impl RootContext for EgressRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        match load_engine() {
            Ok((engine, level)) => {
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

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = self.engine.clone()?;
        Some(Box::new(EgressHttp::new(engine, self.log_level)))
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
