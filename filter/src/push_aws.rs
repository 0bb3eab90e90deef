//! The push listener's side of temporary AWS credentials (`web_identity` targets): the
//! decisions are `egress_core::sigv4::pushed`'s; this only names the targets and adds them to
//! the status report.

use crate::host::Host;
use egress_core::engine::Engine;
pub use egress_core::sigv4::pushed::{is_aws_push, Refused};

/// The proxy's `aws_sigv4` targets whose credentials come by push.
fn web_identity_targets(engine: &Engine) -> Vec<&str> {
    engine
        .targets()
        .iter()
        .filter(|t| t.sigv4.as_ref().is_some_and(|c| c.keys.is_none()))
        .map(|t| t.name.as_str())
        .collect()
}

/// Stores a verified AWS credentials push; the reply body.
pub fn store(engine: &Engine, body: &[u8], now_ms: u64) -> Result<serde_json::Value, Refused> {
    egress_core::sigv4::pushed::accept(&Host, &web_identity_targets(engine), body, now_ms)
}

/// Appends the `web_identity` targets to a status report (`{"targets": [...]}`).
pub fn add_status(engine: &Engine, status: &mut serde_json::Value, now_ms: u64) {
    let names = web_identity_targets(engine);
    if names.is_empty() {
        return;
    }
    let extra = egress_core::sigv4::pushed::status(&Host, &names, now_ms);
    if let Some(list) = status
        .get_mut("targets")
        .and_then(serde_json::Value::as_array_mut)
    {
        list.extend(extra);
    }
}
