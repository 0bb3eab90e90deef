//! The floor module (read `:path`, set `x-api-key`) plus `N` repetitions of one host call per
//! request. The plugin configuration is `"<op> <N>"` (e.g. `"get_map 10"`); `egress-bench
//! --host-calls` runs each op in its own Envoy and takes Envoy's CPU time per request minus
//! the bare floor's (`"none 0"`), divided by `N`: what one such call costs Envoy.
//!
//! A configuration it does not understand makes the plugin refuse to start (the bench then
//! fails loudly instead of measuring the floor under another name).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use std::time::SystemTime;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(ProbeRoot { op: Op::None, n: 0 })
    });
}}

/// The host call repeated, named as in the configuration.
#[derive(Clone, Copy)]
enum Op {
    None,
    /// `get_http_request_header(":method")` (present).
    GetHeader,
    /// `get_http_request_header` of a name the request does not carry.
    GetHeaderMissing,
    /// `get_map(request headers)` as bytes (the whole map).
    GetMap,
    /// `replace_header_map_value("x-probe", ...)` (present after the first).
    SetHeader,
    /// `replace_header_map_value(":path", <same value>)`.
    SetPath,
    /// `remove_header_map_value` of a name the request does not carry.
    RemoveMissing,
    /// `replace` then `remove` of `x-probe` (the pair; minus `set_header`: a present removal).
    SetRemove,
    /// `set_property(["egress_log"], <80 bytes>)` (filter state, read by the access log).
    SetProperty,
    /// `get_property(["xds", "route_name"])`.
    GetRouteName,
    /// `get_current_time_nanoseconds`.
    GetTime,
    /// `log(debug, ...)` with Envoy at log level warn (dropped by the host).
    LogDebug,
    /// `set_header_map_pairs`: the whole map replaced by the request's own headers plus
    /// `x-probe` (what one "write the map once" call would cost).
    SetMap,
    /// Once (N is ignored): the egress filter's host calls on an API-key request, without its
    /// work: get the map, set the log property, remove `x-forwarded-proto`, set `:path` (same
    /// value), `:authority`, `x-egress-target`, `x-forwarded-proto`, `x-api-key`.
    EgressCalls,
    /// [`Op::EgressCalls`] with `:path` rewritten as case 5's route does (`/egress/api`
    /// stripped): for case 5's own Envoy config.
    EgressCallsRewrite,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "none" => Op::None,
            "get_header" => Op::GetHeader,
            "get_header_missing" => Op::GetHeaderMissing,
            "get_map" => Op::GetMap,
            "set_header" => Op::SetHeader,
            "set_path" => Op::SetPath,
            "remove_missing" => Op::RemoveMissing,
            "set_remove" => Op::SetRemove,
            "set_property" => Op::SetProperty,
            "get_route_name" => Op::GetRouteName,
            "get_time" => Op::GetTime,
            "log_debug" => Op::LogDebug,
            "set_map" => Op::SetMap,
            "egress_calls" => Op::EgressCalls,
            "egress_calls_rewrite" => Op::EgressCallsRewrite,
            _ => return None,
        })
    }
}

struct ProbeRoot {
    op: Op,
    n: u32,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = self.get_plugin_configuration() else {
            return false;
        };
        let text = String::from_utf8_lossy(&config);
        let mut words = text.split_whitespace();
        let (Some(op), Some(n)) = (words.next().and_then(Op::parse), words.next()) else {
            return false;
        };
        let Ok(n) = n.parse() else {
            return false;
        };
        self.op = op;
        self.n = n;
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            op: self.op,
            n: self.n,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    op: Op,
    n: u32,
}

impl Context for Probe {}

const LOG_VALUE: &str = r#"{"target":"api","method":"GET","path":"/egress/api/v1/items/42","target_url":"http://127.0.0.1:1/v1/items/42"}"#;

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // The floor's work.
        let Some(path) = self.get_http_request_header(":path") else {
            return Action::Continue;
        };
        self.set_http_request_header("x-api-key", Some("bench-api-key"));
        let mut sink = 0usize;
        let req = MapType::HttpRequestHeaders;
        if let Op::EgressCalls | Op::EgressCallsRewrite = self.op {
            sink += hostcalls::get_map_bytes(req).map_or(0, |m| m.len());
            let _ = hostcalls::set_property(vec!["egress_log"], Some(LOG_VALUE.as_bytes()));
            let _ = hostcalls::set_map_value(req, "x-forwarded-proto", None);
            let new_path = match self.op {
                Op::EgressCallsRewrite => path.strip_prefix("/egress/api").unwrap_or(&path),
                _ => &path,
            };
            let _ = hostcalls::set_map_value(req, ":path", Some(new_path));
            let _ = hostcalls::set_map_value(req, ":authority", Some("127.0.0.1"));
            let _ = hostcalls::set_map_value(req, "x-egress-target", Some("api"));
            let _ = hostcalls::set_map_value(req, "x-forwarded-proto", Some("http"));
            let _ = hostcalls::set_map_value(req, "x-api-key", Some("bench-api-key"));
            if sink == usize::MAX {
                let _ = hostcalls::log(LogLevel::Trace, "probe sink");
            }
            return Action::Continue;
        }
        let pairs: Vec<(String, Vec<u8>)> = match self.op {
            Op::SetMap => {
                let mut m = hostcalls::get_map_bytes(req).unwrap_or_default();
                m.push(("x-probe".to_owned(), b"probe-value".to_vec()));
                m
            }
            _ => Vec::new(),
        };
        for i in 0..self.n {
            match self.op {
                Op::None => {}
                Op::GetHeader => {
                    sink += hostcalls::get_map_value_bytes(req, ":method")
                        .ok()
                        .flatten()
                        .map_or(0, |v| v.len())
                }
                Op::GetHeaderMissing => {
                    sink += hostcalls::get_map_value_bytes(req, "x-probe-absent")
                        .ok()
                        .flatten()
                        .map_or(0, |v| v.len())
                }
                Op::GetMap => sink += hostcalls::get_map_bytes(req).map_or(0, |m| m.len()),
                Op::SetHeader => {
                    let _ = hostcalls::set_map_value(req, "x-probe", Some("probe-value"));
                }
                Op::SetPath => {
                    let _ = hostcalls::set_map_value(req, ":path", Some(&path));
                }
                Op::RemoveMissing => {
                    let _ = hostcalls::set_map_value(req, "x-probe-absent", None);
                }
                Op::SetRemove => {
                    let _ = hostcalls::set_map_value(req, "x-probe", Some("probe-value"));
                    let _ = hostcalls::set_map_value(req, "x-probe", None);
                }
                Op::SetProperty => {
                    let _ = hostcalls::set_property(vec!["egress_log"], Some(LOG_VALUE.as_bytes()));
                }
                Op::GetRouteName => {
                    sink += hostcalls::get_property(vec!["xds", "route_name"])
                        .ok()
                        .flatten()
                        .map_or(0, |v| v.len())
                }
                Op::GetTime => {
                    sink += hostcalls::get_current_time()
                        .ok()
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.subsec_nanos() as usize)
                }
                Op::LogDebug => {
                    let _ = hostcalls::log(LogLevel::Debug, "probe");
                }
                Op::SetMap => {
                    let refs: Vec<(&str, &[u8])> =
                        pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
                    let _ = hostcalls::set_map_bytes(req, refs);
                }
                Op::EgressCalls | Op::EgressCallsRewrite => {}
            }
            sink = sink.wrapping_add(i as usize);
        }
        if sink == usize::MAX {
            // Never true; keeps the results alive.
            let _ = hostcalls::log(LogLevel::Trace, "probe sink");
        }
        Action::Continue
    }
}
