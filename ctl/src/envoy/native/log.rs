//! The "Egress request" line in the `auto` engine, byte for byte the wasm engine's.
//!
//! The filter (slow route, full leaves) sets `wasm.egress_log` as in the wasm engine. Where
//! the filter does not run, `envoy.filters.http.set_filter_state` sets the same fragment
//! ([`wire::log_fragment`]) from Envoy's own values:
//! - answers of the route table (404, 405, 503, health): `wasm.egress_log` itself, `-` for
//!   target and target URL, as the filter does for its own answers;
//! - native and routed leaves: [`NATIVE_LOG_KEY`], ending with the target's origin; the
//!   outgoing path is only known after the router rewrote `:path`, so a second access log,
//!   kept for these requests, appends `%PATH(NQ:PATH)%` (the rewritten path, without query)
//!   at log time.
//!
//! The two access logs exclude each other by whether [`NATIVE_LOG_KEY`] is set (a CEL
//! filter that holds for requests that never reached a route too).
//!
//! Every value is JSON-safe without escaping: the plain-path class carries no `"` or `\`
//! (Level B of the route table), methods are HTTP tokens, target names and origins are
//! validated by the config.

use super::super::access_log::{cel_filter, file_logger, log_path, request_line};
use super::FILTER_CONFIG_TYPE;
use egress_core::config::Logger;
use egress_core::plan::wire;
use serde_json::{json, Value};

/// The filter state a native or routed leaf's request carries its log fragment in.
pub const NATIVE_LOG_KEY: &str = "egress.native_log";
/// The set_filter_state filter of native and routed leaves.
pub const LEAF_LOG_FILTER: &str = "egress.log";
/// The set_filter_state filter of the route table's own answers.
pub const REPLY_LOG_FILTER: &str = "egress.log_reply";
/// The set_filter_state filter of `strict` refusals of paths that JSON would need escaped
/// (logged as `-`, as the filter logs them: see `Engine::log_fragment`).
pub const REFUSED_LOG_FILTER: &str = "egress.log_refused";

/// Route metadata (namespace `egress`) the leaves carry for the log (and for other parts of
/// the renderer that look for a target's leaves).
pub const META_TARGET: &str = "target";
pub const META_TARGET_URL: &str = "target_url";

const SET_FILTER_STATE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config";

fn set_filter_state(name: &str, key: &str, value: &str) -> Value {
    json!({
        "name": name,
        "disabled": true,
        "typed_config": {
            "@type": SET_FILTER_STATE,
            "on_request_headers": [{
                "object_key": key,
                "factory_key": "envoy.string",
                "format_string": { "text_format_source": { "inline_string": value } },
            }],
        },
    })
}

/// The value of the wasm filter's log property, from Envoy operators evaluated before the
/// router runs (`%PATH(NQ)%` is then the path as the caller sent it, without query).
fn fragment(target: &str, target_url: &str) -> String {
    wire::log_fragment(target, "%REQ(:METHOD)%", "%PATH(NQ)%", target_url)
}

/// Both set_filter_state filters (disabled; routes enable them).
pub fn filters() -> [Value; 2] {
    let meta = |key: &str| format!("%METADATA(ROUTE:egress:{key})%");
    [
        set_filter_state(
            LEAF_LOG_FILTER,
            NATIVE_LOG_KEY,
            &fragment(&meta(META_TARGET), &meta(META_TARGET_URL)),
        ),
        set_filter_state(
            REPLY_LOG_FILTER,
            &format!("wasm.{}", wire::PROP_LOG),
            &fragment("-", "-"),
        ),
    ]
}

/// The set_filter_state filter of [`REFUSED_LOG_FILTER`] (disabled; the strict refusal of a
/// path that is not log-safe enables it).
pub fn refused_path_filter() -> Value {
    set_filter_state(
        REFUSED_LOG_FILTER,
        &format!("wasm.{}", wire::PROP_LOG),
        &wire::log_fragment("-", "%REQ(:METHOD)%", "-", "-"),
    )
}

/// `typed_per_filter_config` entry enabling a disabled filter on a route.
pub fn enable() -> Value {
    json!({ "@type": FILTER_CONFIG_TYPE, "config": {} })
}

/// The two access logs of the auto engine (none when `logger.level` drops info lines).
pub fn access_logs(logger: &Logger, with_caller: bool) -> Vec<Value> {
    let Some(path) = log_path(logger) else {
        return Vec::new();
    };
    let native_set = format!("'{NATIVE_LOG_KEY}' in filter_state");
    let mut filter_line = file_logger(
        &path,
        &super::super::access_log::egress_request_line(with_caller),
    );
    filter_line["filter"] = cel_filter(&format!("!({native_set})"));
    let mut native_line = file_logger(
        &path,
        &request_line(
            with_caller,
            &format!("%FILTER_STATE({NATIVE_LOG_KEY}:PLAIN)%%PATH(NQ:PATH)%"),
        ),
    );
    native_line["filter"] = cel_filter(&native_set);
    vec![filter_line, native_line]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_native_fragment_is_the_filters_fragment_with_envoy_operators() {
        let [leaf, reply] = filters();
        let v = |f: &Value| {
            f["typed_config"]["on_request_headers"][0]["format_string"]["text_format_source"]
                ["inline_string"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            v(&leaf),
            r#"%METADATA(ROUTE:egress:target)%","method":"%REQ(:METHOD)%","path":"%PATH(NQ)%","target_url":"%METADATA(ROUTE:egress:target_url)%"#
        );
        assert_eq!(
            v(&reply),
            r#"-","method":"%REQ(:METHOD)%","path":"%PATH(NQ)%","target_url":"-"#
        );
        assert_eq!(
            reply["typed_config"]["on_request_headers"][0]["object_key"],
            format!("wasm.{}", wire::PROP_LOG)
        );
    }
}
