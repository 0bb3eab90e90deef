//! The "Egress request" line of the spec's section 7, written by Envoy's access log from what
//! the filter hands it in filter state.

use egress_core::config::{LogOutput, Logger};
use egress_core::plan::{wire, LogLevel};
use serde_json::{json, Value};

/// The access log of the egress listener, or none when `logger.level` drops info lines.
pub fn access_logs(logger: &Logger, with_caller: bool) -> Vec<Value> {
    match log_path(logger) {
        Some(path) => vec![file_logger(&path, &egress_request_line(with_caller))],
        None => Vec::new(),
    }
}

/// Where the "Egress request" lines go; `None` when `logger.level` drops info lines.
pub fn log_path(logger: &Logger) -> Option<String> {
    if logger.level > LogLevel::Info {
        return None;
    }
    Some(match &logger.output {
        LogOutput::Stdout => "/dev/stdout".to_string(),
        LogOutput::Stderr => "/dev/stderr".to_string(),
        LogOutput::File(p) => p.clone(),
    })
}

/// A file access log writing `line` (an Envoy format string) to `path`.
pub fn file_logger(path: &str, line: &str) -> Value {
    json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": { "text_format_source": { "inline_string": line } },
        },
    })
}

/// An access-log filter (also a local-reply mapper's) holding when the CEL `expression` does.
pub fn cel_filter(expression: &str) -> Value {
    json!({ "extension_filter": {
        "name": "envoy.access_loggers.extension_filters.cel",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
            "expression": expression,
        },
    }})
}

/// The "Egress request" line with its keys in the spec's order (Envoy's `json_format` sorts
/// keys). One filter-state value, set by the filter, carries target, method, path and target
/// URL (see `wire::log_fragment`); a request the filter did not route logs `"target":"-"`.
/// With `egress.callers`, `"caller"` follows `status`: the SPIFFE ID or `<iss>/<sub>` the filter
/// set (`wire::PROP_CALLER`), `-` for an unidentified caller.
pub fn egress_request_line(with_caller: bool) -> String {
    request_line(
        with_caller,
        &format!("%FILTER_STATE(wasm.{}:PLAIN)%", wire::PROP_LOG),
    )
}

/// The "Egress request" line with `target_value` (Envoy operators) as the value of
/// `"target"`: whatever it prints continues the line up to the closing quote of `target_url`.
pub fn request_line(with_caller: bool, target_value: &str) -> String {
    let caller = if with_caller {
        format!(
            r#","caller":"%FILTER_STATE(wasm.{}:PLAIN)%""#,
            wire::PROP_CALLER
        )
    } else {
        String::new()
    };
    format!(
        concat!(
            r#"{{"level":"info","ts":"%START_TIME(%Y-%m-%dT%H:%M:%SZ)%","msg":"Egress request","#,
            r#""target":"{}","#,
            r#""duration":"%DURATION%ms","status":%RESPONSE_CODE%{}}}"#,
            "\n"
        ),
        target_value, caller,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Envoy makes of the template: the filter-state operator replaced by its value (or
    /// `-`), the others by sample values.
    fn rendered(state: Option<&str>) -> serde_json::Value {
        let line = egress_request_line(false)
            .replace("%START_TIME(%Y-%m-%dT%H:%M:%SZ)%", "2025-01-15T10:30:00Z")
            .replace(
                &format!("%FILTER_STATE(wasm.{}:PLAIN)%", wire::PROP_LOG),
                state.unwrap_or("-"),
            )
            .replace("%DURATION%", "245")
            .replace("%RESPONSE_CODE%", "201");
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn the_line_has_the_spec_fields_in_order_and_survives_hostile_values() {
        let frag = wire::log_fragment(
            "salesforce",
            "POST",
            "/egress/crm/\"Contact\"",
            "https://x/sobjects/Contact",
        );
        let v = rendered(Some(&frag));
        assert_eq!(v["target"], "salesforce");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/egress/crm/\"Contact\"");
        assert_eq!(v["target_url"], "https://x/sobjects/Contact");
        assert_eq!(v["status"], 201);
        assert_eq!(v["duration"], "245ms");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 9);
        let line = egress_request_line(false).replace(
            &format!("%FILTER_STATE(wasm.{}:PLAIN)%", wire::PROP_LOG),
            &frag,
        );
        let order = [
            "level",
            "ts",
            "msg",
            "target",
            "method",
            "path",
            "target_url",
            "duration",
            "status",
        ];
        let pos: Vec<usize> = order
            .iter()
            .map(|k| line.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{line}");
    }

    #[test]
    fn without_the_filter_state_the_line_is_still_valid_json() {
        let v = rendered(None);
        assert_eq!(v["target"], "-");
        assert_eq!(v["msg"], "Egress request");
    }

    #[test]
    fn with_callers_the_caller_follows_status_and_cannot_break_the_line() {
        let line = egress_request_line(true)
            .replace("%START_TIME(%Y-%m-%dT%H:%M:%SZ)%", "2025-01-15T10:30:00Z")
            .replace(
                &format!("%FILTER_STATE(wasm.{}:PLAIN)%", wire::PROP_LOG),
                "crm",
            )
            .replace(
                &format!("%FILTER_STATE(wasm.{}:PLAIN)%", wire::PROP_CALLER),
                &wire::json_escape("auth-service/\"evil\",\"status\":200"),
            )
            .replace("%DURATION%", "245")
            .replace("%RESPONSE_CODE%", "403");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["caller"], "auth-service/\"evil\",\"status\":200");
        assert_eq!(v["status"], 403);
        assert!(line.find("\"status\"").unwrap() < line.find("\"caller\"").unwrap());
    }
}
