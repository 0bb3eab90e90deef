//! The `auto` engine against the `wasm` engine, both on real Envoy 1.40: the same config
//! compiled twice (`egressctl compile --engine auto|wasm`), the same requests to both, the same
//! answers, upstream requests and request log lines (ignoring `ts` and `duration`). Targets
//! without a static credential (plain HTTP stand-ins, and an OAuth2 target whose token the
//! stand-in issues), so this tests routing, refusals, header removal and the log; credential
//! injection is in `auto_credentials.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_e2e::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

const CONFIG: &str = r#"
http:
  addr: "127.0.0.1:${AUTO_LISTEN}"
egress:
  enabled: ${AUTO_ENABLED}
  token_store:
    type: memory
  defaults:
    timeout: 10s
    retry_count: 1
    retry_delay: 100ms
  targets:
    plain:
      url: "http://127.0.0.1:${AUTO_UPSTREAM}/base/v1"
    rooted:
      url: "http://127.0.0.1:${AUTO_UPSTREAM}"
    crm:
      url: "http://127.0.0.1:${AUTO_UPSTREAM}/services/data/v58.0"
      auth:
        type: oauth2_client_credentials
        token_url: "http://127.0.0.1:${AUTO_UPSTREAM}/oauth2/token"
        client_id: "auto-client"
        client_secret: "SECRET-auto-client"
  routes:
    - path_prefix: "/egress/plain"
      target: plain
      strip_prefix: "/egress/plain"
      rewrite_prefix: "/v2"
      methods: ["GET", "POST", "DELETE"]
    - path_prefix: "/egress/plain/deep"
      target: rooted
      strip_prefix: "/egress/plain"
    - path_prefix: "/egress/keep"
      target: rooted
    - path_prefix: "/egress/crm"
      target: crm
      strip_prefix: "/egress/crm"
      rewrite_prefix: "/sobjects"
endpoints:
  health: "/health"
  ready: "/ready"
  metrics: "/metrics"
logger:
  level: info
  output: "${AUTO_LOG}"
"#;

/// One Envoy running the config compiled for one engine.
struct Running {
    _envoy: Envoy,
    base: String,
    log: PathBuf,
}

impl Running {
    fn send(&self, method: &str, path: &str) -> Response {
        Request::new(method, &format!("{}{path}", self.base))
            .send()
            .unwrap()
    }

    fn log_lines(&self, n: usize) -> Vec<Value> {
        wait_until(format!("{n} lines in {}", self.log.display()), || {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            Ok(if lines.len() >= n {
                Probe::Ready(lines)
            } else {
                Probe::Pending(format!("{} lines", lines.len()))
            })
        })
        .unwrap()
    }
}

/// The stand-in (one service for every target, a token endpoint for the OAuth2 one) and both
/// engines.
struct Pair {
    _upstream: Standin,
    _dir: TempDir,
    auto: Running,
    wasm: Running,
}

fn compile(
    dir: &Path,
    engine: Engine,
    enabled: bool,
    upstream: u16,
) -> (std::process::Output, PathBuf, u16, u16, PathBuf) {
    let config = dir.join("config.yaml");
    // `egress.enabled` is a YAML boolean (variables expand to strings).
    std::fs::write(
        &config,
        CONFIG.replace("${AUTO_ENABLED}", &enabled.to_string()),
    )
    .unwrap();
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    let out = dir.join(format!("out-{}", engine.as_str()));
    let log = dir.join(format!("requests-{}.log", engine.as_str()));
    let o = compile_command(&config, &out, admin, engine)
        .unwrap()
        .env("AUTO_LISTEN", listen.to_string())
        .env("AUTO_UPSTREAM", upstream.to_string())
        .env("AUTO_LOG", log.to_str().unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "compile {engine}: {}", output_text(&o));
    (o, out, listen, admin, log)
}

fn run(dir: &Path, engine: Engine, enabled: bool, upstream: u16) -> Running {
    let (compiled, out, listen, admin, log) = compile(dir, engine, enabled, upstream);
    let envoy = envoy_from_compile(
        &compiled,
        &out,
        admin,
        &["--file-flush-interval-msec", "50"],
    )
    .unwrap();
    Running {
        _envoy: envoy,
        base: format!("http://127.0.0.1:{listen}"),
        log,
    }
}

impl Pair {
    fn start(enabled: bool) -> Pair {
        let upstream = Standin::start(
            StandinOpts::new("upstream")
                .status_for("POST", 201)
                .token_endpoint("/oauth2/token", 3600),
        )
        .unwrap();
        let dir = scratch_dir().unwrap();
        let auto = run(dir.path(), Engine::Auto, enabled, upstream.port());
        let wasm = run(dir.path(), Engine::Wasm, enabled, upstream.port());
        Pair {
            _upstream: upstream,
            _dir: dir,
            auto,
            wasm,
        }
    }

    /// Sends the request to both engines and checks they answer the same; returns the auto
    /// engine's answer.
    fn same(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let send = |r: &Running| {
            let mut req = Request::new(method, &format!("{}{path}", r.base));
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send().unwrap()
        };
        let (a, w) = (send(&self.auto), send(&self.wasm));
        let what = format!("{method} {path}");
        assert_eq!(a.status, w.status, "{what}: {} vs {}", a.body, w.body);
        for h in ["content-type", "allow"] {
            assert_eq!(a.header(h), w.header(h), "{what}: {h}");
        }
        if a.status < 300 && a.header("content-type") != Some("text/plain; charset=UTF-8") {
            // The upstream's echo: what it received.
            // Each Envoy fetched its own OAuth2 token (`upstream-token-<n>`).
            let same_token = |mut v: Value| {
                if let Some(t) = v["headers"]["authorization"].as_str() {
                    if t.starts_with("Bearer upstream-token-") {
                        v["headers"]["authorization"] = "Bearer upstream-token".into();
                    }
                }
                v
            };
            let (ea, ew) = (same_token(a.json().unwrap()), same_token(w.json().unwrap()));
            assert_eq!(ea, ew, "{what}: the upstream saw different requests");
        } else if a.status != 200 {
            assert_eq!(a.body, w.body, "{what}");
        }
        a
    }
}

fn echo(r: &Response) -> Value {
    assert!(r.status < 300, "{} {}", r.status, r.body);
    r.json().unwrap()
}

#[test]
fn routing_rewrites_and_refusals_match_the_wasm_engine() {
    let p = Pair::start(true);
    // (method, incoming path, upstream path, upstream query)
    let rows = [
        ("GET", "/egress/plain", "/base/v1/v2", ""),
        ("GET", "/egress/plain/", "/base/v1/v2/", ""),
        ("GET", "/egress/plain/a/b", "/base/v1/v2/a/b", ""),
        (
            "POST",
            "/egress/plain/a?x=1&y=%22q%22",
            "/base/v1/v2/a",
            "x=1&y=%22q%22",
        ),
        (
            "GET",
            "/egress/plain?only=query",
            "/base/v1/v2",
            "only=query",
        ),
        ("GET", "/egress/plain/deep", "/deep", ""),
        ("GET", "/egress/plain/deep/x", "/deep/x", ""),
        ("GET", "/egress/plain/deepx", "/base/v1/v2/deepx", ""),
        ("PUT", "/egress/keep/k", "/egress/keep/k", ""),
        (
            "GET",
            "/egress/plain/a:b@c!$&'()*+,=~",
            "/base/v1/v2/a:b@c!$&'()*+,=~",
            "",
        ),
    ];
    for (method, path, upstream_path, query) in rows {
        let e = echo(&p.same(method, path, &[]));
        assert_eq!(e["path"], upstream_path, "{method} {path}");
        assert_eq!(e["query"], query, "{method} {path}");
        assert_eq!(e["method"], method);
        let port = p._upstream.port();
        assert_eq!(e["headers"]["host"], format!("127.0.0.1:{port}"), "{path}");
    }
    // Percent escapes and odd spellings: the filter (slow route) canonicalises them, as in
    // the wasm engine (`same` compares what the upstream saw).
    for path in [
        "/egress/plain/a%41b",
        "/egress/plain/%7Euser?q=%20",
        "/egress/%70lain/x",
        "/egress/plain/deep%2Fx",
        "/egress/plain/sp%20ace",
    ] {
        p.same("GET", path, &[]);
    }
    // Refusals: the same codes and JSON bodies.
    for (method, path, status) in [
        ("GET", "/egress/plainx", 404),
        ("GET", "/egress", 404),
        ("GET", "/", 404),
        ("GET", "/nothing/here?x=1", 404),
        ("PUT", "/egress/plain/a", 405),
        ("PATCH", "/egress/plain", 405),
        ("TRACE", "/egress/keep/x", 405),
        ("GET", "/egress/plain/../keep", 400),
        ("GET", "/egress/plain/./a", 400),
        ("GET", "/egress/plain/a%2fb", 400),
        ("GET", "/egress/plain//a", 400),
        ("GET", "/egress/plain/a%5cb", 400),
        ("GET", "/egress/plain/%2e%2e/x", 400),
    ] {
        let r = p.same(method, path, &[]);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        let body: Value = r.json().unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
        if status == 405 {
            assert!(r.header("allow").is_some(), "{path}");
        }
    }
    assert_eq!(p.same("GET", "/health", &[]).body, r#"{"status":"ok"}"#);
    assert_eq!(p.same("GET", "/health?probe=1", &[]).status, 200);
    assert_eq!(p.same("HEAD", "/egress/plain/x", &[]).status, 405);
    let m = p.auto.send("GET", "/metrics");
    assert_eq!(m.status, 200);
    assert!(m.body.contains("envoy_"), "{}", m.body);
}

#[test]
fn caller_headers_are_removed_and_a_callers_routing_header_picks_nothing() {
    let p = Pair::start(true);
    let hostile = [
        ("authorization", "Bearer caller-token"),
        ("proxy-authorization", "Basic Y2FsbGVy"),
        ("x-egress-target", "crm"),
        ("x-egress-anything", "1"),
        ("x-envoy-retry-on", "5xx"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-host", "internal"),
        ("forwarded", "for=10.0.0.1"),
        ("x-real-ip", "10.0.0.1"),
        ("x-http-method-override", "DELETE"),
        ("x-original-url", "/admin"),
        ("x_api_key", "underscore"),
        ("x-custom", "kept"),
    ];
    for path in ["/egress/plain/h", "/egress/keep/h", "/egress/plain/%68"] {
        let e = echo(&p.same("GET", path, &hostile));
        let h = e["headers"].as_object().unwrap();
        assert_eq!(h["x-custom"], "kept", "{path}");
        for name in h.keys() {
            assert!(
                !name.starts_with("x-egress-")
                    && !name.starts_with("x-envoy-")
                    && !name.starts_with("x-forwarded-")
                    && !name.contains('_')
                    && ![
                        "authorization",
                        "proxy-authorization",
                        "forwarded",
                        "x-real-ip"
                    ]
                    .contains(&name.as_str())
                    && !name.contains("override")
                    && name != "x-original-url",
                "{path}: caller header {name} reached the target: {e}"
            );
        }
    }
    // `x-egress-target: crm` did not send the request to the OAuth2 target.
    let e = echo(&p.same("GET", "/egress/keep/who", &[("x-egress-target", "crm")]));
    assert_eq!(e["path"], "/egress/keep/who");
    assert!(e["headers"].get("authorization").is_none());
}

#[test]
fn oauth2_routes_get_the_token_in_both_engines() {
    let p = Pair::start(true);
    let mut tokens = Vec::new();
    for r in [&p.auto, &p.wasm] {
        let e = echo(&r.send("POST", "/egress/crm/Contact?x=1"));
        assert_eq!(e["path"], "/services/data/v58.0/sobjects/Contact");
        assert_eq!(e["query"], "x=1");
        let auth = e["headers"]["authorization"].as_str().unwrap().to_string();
        assert!(auth.starts_with("Bearer upstream-token-"), "{auth}");
        tokens.push(auth);
    }
    assert_eq!(p.auto.send("GET", "/ready").status, 200);
    // A caller's Authorization never reaches the target: the token replaces it.
    let e = echo(&p.same(
        "GET",
        "/egress/crm/Contact/1",
        &[("authorization", "Bearer mine")],
    ));
    assert!(e["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer upstream-token-"));
}

#[test]
fn the_request_log_lines_are_the_same_in_both_engines() {
    let p = Pair::start(true);
    // `/ready` is among the requests: both engines must hold their OAuth2 token first (a
    // loaded machine let one Envoy answer 503 `credentials_unavailable`). Counted on the
    // admin interface, so the wait writes no request log line.
    for r in [&p.auto, &p.wasm] {
        wait_for(format!("the OAuth2 token in {}", r.base), || {
            Ok(r._envoy
                .stat("wasmcustom.egress.crm.tokens_fetched")?
                .unwrap_or(0)
                >= 1)
        })
        .unwrap();
    }
    let requests = [
        ("GET", "/egress/plain/a/b?secret=1"),
        ("POST", "/egress/plain"),
        ("GET", "/egress/plain/deep/x"),
        ("GET", "/egress/plain/a%41"),
        ("GET", "/egress/nothing"),
        ("PATCH", "/egress/plain/a"),
        ("GET", "/egress/plain/../x"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("POST", "/egress/crm/Contact"),
    ];
    for (m, path) in requests {
        p.same(m, path, &[]);
    }
    let (a, w) = (
        p.auto.log_lines(requests.len()),
        p.wasm.log_lines(requests.len()),
    );
    let strip = |mut v: Value| {
        let o = v.as_object_mut().unwrap();
        assert!(o.remove("ts").is_some() && o.remove("duration").is_some());
        v
    };
    for (la, lw) in a.into_iter().zip(w) {
        assert_eq!(strip(la), strip(lw));
    }
    // Key order and escaping too: the raw lines equal once ts and duration are blanked.
    let raw = |r: &Running| {
        let text = std::fs::read_to_string(&r.log).unwrap();
        let blank = |l: &str| {
            let v: Value = serde_json::from_str(l).unwrap();
            l.replace(v["ts"].as_str().unwrap(), "TS")
                .replace(v["duration"].as_str().unwrap(), "D")
        };
        text.lines().map(blank).collect::<Vec<_>>()
    };
    assert_eq!(raw(&p.auto), raw(&p.wasm));
    let first = &raw(&p.auto)[0];
    assert_eq!(
        *first,
        r#"{"level":"info","ts":"TS","msg":"Egress request","target":"plain","method":"GET","path":"/egress/plain/a/b","target_url":"http://127.0.0.1:PORT/base/v1/v2/a/b","duration":"D","status":200}"#
            .replace("PORT", &p._upstream.port().to_string())
    );
}

#[test]
fn egress_disabled_answers_503_on_every_route_and_keeps_health() {
    let p = Pair::start(false);
    for (m, path) in [
        ("GET", "/egress/plain/x"),
        ("PUT", "/egress/plain/x"),
        ("GET", "/egress/keep"),
        ("POST", "/egress/crm/Contact"),
    ] {
        let r = p.same(m, path, &[]);
        assert_eq!(r.status, 503, "{path}");
        assert!(r.body.contains("egress_disabled"), "{}", r.body);
    }
    assert_eq!(p.same("GET", "/egress/elsewhere", &[]).status, 404);
    assert_eq!(p.same("GET", "/health", &[]).status, 200);
}

#[test]
fn ten_thousand_routes_compile_and_envoy_accepts_and_routes_them() {
    let upstream = Standin::start(StandinOpts::new("many")).unwrap();
    let dir = scratch_dir().unwrap();
    let mut config = String::from(
        "http:\n  addr: \"127.0.0.1:${AUTO_LISTEN}\"\negress:\n  targets:\n    t:\n      url: \"http://127.0.0.1:${AUTO_UPSTREAM}/api\"\n  routes:\n",
    );
    for i in 0..10_000 {
        config.push_str(&format!(
            "    - path_prefix: \"/egress/r{i}\"\n      target: t\n      strip_prefix: \"/egress/r{i}\"\n      rewrite_prefix: \"/v{i}\"\n"
        ));
    }
    config.push_str("endpoints:\n  health: /health\nlogger:\n  level: warn\n");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    let out = dir.path().join("out");
    let started = Instant::now();
    let o = compile_command(&path, &out, admin, Engine::Auto)
        .unwrap()
        .env("AUTO_LISTEN", listen.to_string())
        .env("AUTO_UPSTREAM", upstream.port().to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let size = std::fs::metadata(out.join("lds.json")).unwrap().len();
    eprintln!(
        "10,000 routes: compile {:?}, lds.json {} MB",
        started.elapsed(),
        size / 1_000_000
    );
    let envoy_started = Instant::now();
    let envoy = Envoy::start(&out.join("envoy.yaml"), &[]).unwrap();
    // About 10 s on a loaded 2-core machine since the listener file is JSON (it was 90 s and
    // 8 GB as YAML); the deadline leaves room for a machine running the whole suite.
    envoy
        .wait_ready_within(
            &format!("127.0.0.1:{admin}"),
            scaled(std::time::Duration::from_secs(300)),
        )
        .unwrap();
    let base = format!("http://127.0.0.1:{listen}");
    wait_for("the egress listener", || {
        Ok(get(&format!("{base}/health")).is_ok_and(|r| r.status == 200))
    })
    .unwrap();
    eprintln!(
        "10,000 routes: Envoy ready in {:?}",
        envoy_started.elapsed()
    );
    for i in [0, 1, 4_999, 9_999] {
        let e = echo(&get(&format!("{base}/egress/r{i}/x?q={i}")).unwrap());
        assert_eq!(e["path"], format!("/api/v{i}/x"));
        assert_eq!(e["query"], format!("q={i}"));
    }
    assert_eq!(get(&format!("{base}/egress/r10000/x")).unwrap().status, 404);
    assert_eq!(get(&format!("{base}/egress/r1x")).unwrap().status, 404);
}
