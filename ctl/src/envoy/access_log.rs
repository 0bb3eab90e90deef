//! The "Egress request" line of the spec's section 7, written by Envoy's access log from what
//! the filter hands it in filter state.

use egress_core::config::{LogOutput, Logger};
use egress_core::plan::{wire, LogLevel};
use serde_json::{json, Value};

/// The access log of the egress listener, or none when `logger.level` drops info lines.
pub fn access_logs(logger: &Logger) -> Vec<Value> {
    if logger.level > LogLevel::Info {
        return Vec::new();
    }
    let path = match &logger.output {
        LogOutput::Stdout => "/dev/stdout".to_string(),
        LogOutput::Stderr => "/dev/stderr".to_string(),
        LogOutput::File(p) => p.clone(),
    };
    vec![json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": { "text_format_source": { "inline_string": egress_request_line() } },
        },
    })]
}

/// The "Egress request" line with its keys in the spec's order (Envoy's `json_format` sorts
/// keys). String values come from filter state the filter JSON-escaped; a request the filter
/// did not route has `"target":"-"`.
pub fn egress_request_line() -> String {
    let state = |name: &str| format!("%FILTER_STATE(wasm.{name}:PLAIN)%");
    format!(
        concat!(
            r#"{{"level":"info","ts":"%START_TIME(%Y-%m-%dT%H:%M:%SZ)%","msg":"Egress request","#,
            r#""target":"{}","method":"%REQ(:METHOD)%","path":"{}","target_url":"{}","#,
            r#""duration":"%DURATION%ms","status":%RESPONSE_CODE%}}"#,
            "\n"
        ),
        state(wire::PROP_TARGET),
        state(wire::PROP_PATH),
        state(wire::PROP_TARGET_URL),
    )
}
