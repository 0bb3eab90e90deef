//! The floor of a proxy-wasm credential filter: on request headers, read `:path` (as every
//! real filter must, to route) and set one header (`x-api-key`). Nothing else: no config, no
//! allocation beyond the SDK's, no response-side work. Built with the same profile as
//! `egress_filter.wasm` (the root release profile: opt-level "z", LTO) and the same wasm-opt pass, so the difference
//! between the two is the egress filter's own work.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot) });
}}

struct FloorRoot;

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor;

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Read the path as a routing filter must; a request without one is left alone.
        if self.get_http_request_header(":path").is_some() {
            self.set_http_request_header("x-api-key", Some("bench-api-key"));
        }
        Action::Continue
    }
}
