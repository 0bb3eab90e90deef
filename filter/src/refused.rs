//! The HTTP context of a plugin whose config was refused: every request is answered with a
//! JSON 503, nothing is forwarded.

use crate::host;
use egress_core::engine::LocalReply;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

pub struct RefusedHttp;

impl Context for RefusedHttp {}

impl HttpContext for RefusedHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        host::reply_or_reset(&LocalReply::error(
            503,
            "filter_unavailable",
            "the egress filter refused its configuration; see the proxy log",
        ));
        Action::Pause
    }
}
