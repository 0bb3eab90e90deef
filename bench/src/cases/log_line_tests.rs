//! Tests of [`super`] (cases 17 and 18): the parts come from the listener the real
//! `egressctl compile --engine auto` renders (built by `make build` before `make test`).
use super::*;
use crate::cases::{native_bootstrap, Case};
use serde_json::json;
use std::path::PathBuf;

fn target_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || manifest.parent().unwrap_or(manifest).join("target"),
        PathBuf::from,
    )
}

fn setup(egressctl: PathBuf) -> Setup {
    Setup {
        egressctl,
        filter_wasm: PathBuf::from("/bench/egress_filter.wasm"),
        floor_wasm: PathBuf::from("/bench/floor_module.wasm"),
        upstream_port: 4711,
        token_port: 2,
        pki: PathBuf::from("/pki"),
        jwt: "h.p.s".into(),
    }
}

/// Case 13's listener, compiled by the workspace's `egressctl` into a fresh directory.
fn compiled(name: &str) -> (Setup, PathBuf, LogParts) {
    let egressctl = target_dir().join("debug/egressctl");
    assert!(
        egressctl.is_file(),
        "{} is missing: run `cargo build -p egressctl` (make build)",
        egressctl.display()
    );
    let dir = std::env::temp_dir().join(format!("egress-bench-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    // `egressctl compile --wasm` wants a module file; nothing here loads it.
    let module = dir.join("module.wasm");
    fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let setup = Setup {
        filter_wasm: module.clone(),
        floor_wasm: module,
        ..setup(egressctl)
    };
    let parts = compiled_log_parts(&setup, &dir.join("auto"), 7000, 7001).unwrap();
    (setup, dir, parts)
}

fn hcm(bootstrap: &Value) -> &Value {
    bootstrap
        .pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .unwrap()
}

#[test]
fn the_log_parts_are_the_ones_auto_renders_for_a_native_leaf() {
    let (_, dir, parts) = compiled("parts");
    let listener = read_listener(&dir.join("auto/out")).unwrap();
    let rendered = hcm_of_listener(&listener).unwrap();
    // The filter is auto's own entry, only enabled for every request.
    let original = rendered["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == parts.filter["name"])
        .unwrap();
    assert_eq!(original["disabled"], true);
    let mut enabled = original.clone();
    enabled.as_object_mut().unwrap().remove("disabled");
    assert_eq!(parts.filter, enabled);
    // The logger is one of auto's two, the one printing that filter state, without its CEL.
    let loggers = rendered["access_log"].as_array().unwrap();
    assert_eq!(loggers.len(), 2, "auto renders two loggers");
    let line = logger_line(&parts.logger).unwrap();
    assert!(loggers.iter().any(|l| logger_line(l) == Some(line)));
    assert!(parts.logger.get("filter").is_none());
    let key = parts.filter["typed_config"]["on_request_headers"][0]["object_key"]
        .as_str()
        .unwrap();
    assert!(
        line.contains(&format!("%FILTER_STATE({key}:PLAIN)%")),
        "{line}"
    );
    assert!(line.contains("\"msg\":\"Egress request\""), "{line}");
    // The metadata names the target and its URL, as the fragment reads them.
    let fragment = format_string(&parts.filter).unwrap();
    assert!(
        fragment.contains("%METADATA(ROUTE:egress:target)%"),
        "{fragment}"
    );
    assert_eq!(
        parts.route_metadata["filter_metadata"]["egress"]["target"],
        "api"
    );
    assert_eq!(
        parts.route_metadata["filter_metadata"]["egress"]["target_url"],
        "http://127.0.0.1:4711"
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn cases_17_and_18_are_cases_2_and_4_with_the_log_parts_grafted() {
    let (setup, dir, parts) = compiled("graft");
    let cases = Case::all();
    for (id, base_id) in [(17, 2), (18, 4)] {
        let case = cases.iter().find(|c| c.id == id).unwrap();
        let base = cases.iter().find(|c| c.id == base_id).unwrap();
        assert_eq!(case.kind.without_log_line(), Some(base.kind));
        let rendered =
            crate::cases::render(case, &setup, &dir.join(format!("case{id}")), 7000, 7001).unwrap();
        let got: Value =
            serde_json::from_str(&fs::read_to_string(&rendered.envoy_config).unwrap()).unwrap();
        let plain = native_bootstrap(base.kind, &setup, 7000, 7001);
        // The base's filters stay in order, the log filter goes right before the router.
        let names = |b: &Value| -> Vec<String> {
            hcm(b)["http_filters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let mut want = names(&plain);
        want.insert(
            want.len() - 1,
            parts.filter["name"].as_str().unwrap().to_owned(),
        );
        assert_eq!(names(&got), want, "case {id}");
        assert_eq!(hcm(&got)["access_log"], json!([parts.logger]), "case {id}");
        let route = &hcm(&got)["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(route["metadata"], parts.route_metadata, "case {id}");
        // Nothing else of the base changed.
        let mut stripped = got.clone();
        let h = stripped
            .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
            .unwrap();
        h.as_object_mut().unwrap().remove("access_log");
        let fl = h["http_filters"].as_array_mut().unwrap();
        fl.retain(|f| f["name"] != parts.filter["name"]);
        h["route_config"]["virtual_hosts"][0]["routes"][0]
            .as_object_mut()
            .unwrap()
            .remove("metadata");
        assert_eq!(stripped, plain, "case {id}");
    }
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_listener_without_a_logged_leaf_is_an_error() {
    let listener = json!({"resources": [{"filter_chains": [{"filters": [{"typed_config": {
        "http_filters": [{"name": "envoy.filters.http.router"}],
        "route_config": {"virtual_hosts": [{"routes": [{
            "match": {"prefix": "/"}, "route": {"cluster": "c"}, "metadata": {}
        }]}]}
    }}]}]}]});
    let err = log_parts(&listener).unwrap_err().to_string();
    assert!(err.contains("no route leaf"), "{err}");
}

#[test]
fn grafting_needs_the_one_route_of_a_native_bootstrap() {
    let parts = LogParts {
        filter: json!({"name": "log"}),
        logger: json!({"name": "file"}),
        route_metadata: json!({}),
    };
    let mut b = native_bootstrap(Kind::NativeGeneric, &setup(PathBuf::new()), 1, 2);
    b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"] = json!([]);
    assert!(graft(&mut b, &parts).is_err());
}

/// Answers every request with what case 17's sanity check reads, as the bench's nginx does:
/// `<uri> key=<x-api-key> auth=<authorization>` (keep-alive).
fn echo_upstream() -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut reader = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let uri = line.split(' ').nth(1).unwrap_or("").to_owned();
                    let (mut key, mut auth, mut length) = (String::new(), String::new(), 0);
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (name, value) = h.split_once(':').unwrap_or((h, ""));
                        match name.to_ascii_lowercase().as_str() {
                            "x-api-key" => key = value.trim().to_owned(),
                            "authorization" => auth = value.trim().to_owned(),
                            "content-length" => length = value.trim().parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let echo = format!("{uri} key={key} auth={auth}\n");
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{echo}",
                        echo.len()
                    );
                    if out.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Case 17 through the real Envoy: the upstream gets the credential (the run's sanity
/// check) and the log line is the spec's (section 7), filled from the grafted parts.
#[test]
fn case_17_answers_through_envoy_and_writes_the_spec_line() {
    use crate::envoy::{Envoy, EnvoyRun};
    use crate::procs::free_port;
    use std::time::{Duration, Instant};
    let (setup, dir, _) = compiled("envoy");
    let upstream = echo_upstream();
    let setup = Setup {
        upstream_port: upstream,
        ..setup
    };
    let case = Case::all().into_iter().find(|c| c.id == 17).unwrap();
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    let rendered = crate::cases::render(&case, &setup, &dir.join("case17"), listen, admin).unwrap();
    // The same config with the logger writing to a file instead of /dev/null.
    let log = dir.join("requests.log");
    let mut doc: Value =
        serde_json::from_str(&fs::read_to_string(&rendered.envoy_config).unwrap()).unwrap();
    doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["access_log"][0]["typed_config"]["path"] = json!(log.display().to_string());
    fs::write(&rendered.envoy_config, doc.to_string()).unwrap();
    let bin = crate::run::envoy_bin(&crate::run::repo_root()).unwrap();
    let run = EnvoyRun {
        bin: &bin,
        concurrency: 1,
        cpus: "0",
    };
    let envoy = Envoy::start(
        &run,
        "case 17",
        &rendered.envoy_config,
        listen,
        admin,
        &dir.join("envoy.log"),
    )
    .unwrap();
    let deadline = Duration::from_secs(60);
    let ok = |r: &crate::http::Response| r.status == 200 && case.upstream_saw_credential(&r.body);
    crate::http::wait_for(envoy.listen, &case.path(), &[], deadline, ok).unwrap();
    let start = Instant::now();
    let line = loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("\"status\":200")) {
            break line.to_owned();
        }
        assert!(start.elapsed() < deadline, "no request line in {text:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Timestamp and duration vary; the rest is the spec's line for this request.
    let (head, rest) = line.split_once(r#""ts":""#).unwrap();
    let (ts, rest) = rest.split_once('"').unwrap();
    assert_eq!(ts.len(), "2025-01-15T10:30:00Z".len(), "{line}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{line}");
    let (before, after) = rest.split_once(r#""duration":""#).unwrap();
    let (ms, after) = after.split_once("ms\"").unwrap();
    assert!(ms.parse::<u64>().is_ok(), "{line}");
    assert_eq!(
        format!("{head}\"ts\":\"TS\"{before}\"duration\":\"Dms\"{after}"),
        format!(
            r#"{{"level":"info","ts":"TS","msg":"Egress request","target":"api","method":"GET","path":"/egress/api/v1/items/42","target_url":"http://127.0.0.1:{upstream}/v1/items/42","duration":"Dms","status":200}}"#
        )
    );
    drop(envoy);
    let _ = fs::remove_dir_all(dir);
}
