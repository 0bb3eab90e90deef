//! Places where the `auto` engine once differed from the `wasm` engine, each run on both
//! engines on a real Envoy (`engine_tests!`):
//!
//! - `caller_token_headers_that_are_removed_headers_still_identify_the_caller`: a JWT read
//!   from `x-egress-caller-token` or `Proxy-Authorization` (`callers.jwt[i].from_headers`),
//!   names the auto engine removes before routing: the caller is admitted, and the upstream
//!   sees neither that header nor any other `x-egress-*` (a caller's `x-egress-target` never
//!   routes). The request log names the target and the outgoing URL on every line, the
//!   routed role's refusals (401, 403) included, as the wasm engine does.
//! - `envoys_own_answers_are_our_json_errors`: a target on a closed port gets Envoy's own
//!   503, one that never answers Envoy's 504, mapped by the connection manager's `local_reply_config` to our JSON error; the
//!   route table's own 404 is untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_e2e::*;
use jwt_simple::prelude::*;
use serde_json::Value;
use std::path::Path;

const HS_SECRET: &str = "gaps-shared-secret-0123456789abcdef";

struct Proxy {
    _dir: TempDir,
    listen: u16,
    _envoy: Envoy,
}

impl Proxy {
    /// Envoy on what `egressctl compile --engine <engine>` renders for `config` (its
    /// `{listen}` replaced).
    fn start(engine: Engine, config: &str) -> Proxy {
        let dir = scratch_dir().unwrap();
        let listen = free_port().unwrap();
        let admin = free_port().unwrap();
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, config.replace("{listen}", &listen.to_string())).unwrap();
        let out = dir.path().join("out");
        let compiled = compile_command(&cfg, &out, admin, engine)
            .unwrap()
            .output()
            .unwrap();
        let envoy = envoy_from_compile(&compiled, &out, admin, &[])
            .unwrap_or_else(|e| panic!("{engine}: {e:#}"));
        Proxy {
            _dir: dir,
            listen,
            _envoy: envoy,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.listen)
    }
}

fn token(subject: &str) -> String {
    let key = HS256Key::from_bytes(HS_SECRET.as_bytes());
    let claims = Claims::create(jwt_simple::prelude::Duration::from_mins(10))
        .with_issuer("auth-service")
        .with_subject(subject);
    key.authenticate(claims).unwrap()
}

fn callers_config(upstream: &Standin, log: &Path) -> String {
    format!(
        r#"
http: {{ addr: "127.0.0.1:{{listen}}" }}
egress:
  callers:
    jwt:
      - issuer: auth-service
        algorithms: [HS256]
        secret: "{HS_SECRET}"
        from_headers:
          - {{ name: X-Egress-Caller-Token }}
          - {{ name: Proxy-Authorization, value_prefix: "Bearer " }}
  targets:
    crm:
      url: {url}
      auth: {{ type: api_key, header: X-Api-Key, key: SECRET-gaps-key }}
      allow: {{ subjects: [user-service] }}
  routes:
    - path_prefix: /egress/crm
      target: crm
logger: {{ output: {log} }}
"#,
        url = upstream.url("/api"),
        log = log.display(),
    )
}

fn caller_token_headers_that_are_removed_headers_still_identify_the_caller(engine: Engine) {
    let upstream = Standin::start(StandinOpts::new("crm")).unwrap();
    let scratch = scratch_dir().unwrap();
    let log = scratch.path().join("requests.log");
    let p = Proxy::start(engine, &callers_config(&upstream, &log));
    let jwt = token("user-service");
    let cases: [(&str, String); 2] = [
        ("x-egress-caller-token", jwt.clone()),
        ("proxy-authorization", format!("Bearer {jwt}")),
    ];
    for (header, value) in &cases {
        let r = Request::get(&p.url("/egress/crm/Contact/1"))
            .header(header, value)
            .header("x-egress-target", "elsewhere")
            .header("x-egress-debug", "1")
            .send()
            .unwrap();
        assert_eq!(r.status, 200, "{engine}: token in {header}: {}", r.body);
        let body: Value = r.json().unwrap();
        assert_eq!(body["service"], "crm", "{engine}: {body}");
        assert_eq!(
            body["path"], "/api/egress/crm/Contact/1",
            "{engine}: {body}"
        );
        assert_eq!(body["headers"]["x-api-key"], "SECRET-gaps-key", "{engine}");
        let seen: Vec<&String> = body["headers"].as_object().unwrap().keys().collect();
        for name in &seen {
            assert!(
                !name.starts_with("x-egress-") && name.as_str() != "proxy-authorization",
                "{engine}: the upstream saw {name} (token in {header}): {body}"
            );
        }
    }
    // Without a token, or with another subject's, the caller is refused as before.
    let r = Request::get(&p.url("/egress/crm/Contact/1"))
        .send()
        .unwrap();
    assert_eq!(r.status, 401, "{engine}: {}", r.body);
    let r = Request::get(&p.url("/egress/crm/Contact/1"))
        .header("x-egress-caller-token", &token("intruder"))
        .send()
        .unwrap();
    assert_eq!(r.status, 403, "{engine}: {}", r.body);
    // Every line, the refusals' too, names the target and the outgoing URL as the wasm
    // engine logs them (the routed role's refusals once logged `-` and no path at all).
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    wait_for(format!("{engine}: 4 request-log lines"), || {
        Ok(read().len() >= 4)
    })
    .unwrap();
    let lines = read();
    let statuses: Vec<&Value> = lines.iter().map(|l| &l["status"]).collect();
    assert_eq!(statuses, [200, 200, 401, 403], "{engine}: {lines:?}");
    let target_url = upstream.url("/api/egress/crm/Contact/1");
    for line in &lines {
        assert_eq!(line["target"], "crm", "{engine}: {line}");
        assert_eq!(line["method"], "GET", "{engine}: {line}");
        assert_eq!(line["path"], "/egress/crm/Contact/1", "{engine}: {line}");
        assert_eq!(line["target_url"], target_url.as_str(), "{engine}: {line}");
    }
}

fn envoys_own_answers_are_our_json_errors(engine: Engine) {
    let closed = free_port().unwrap();
    // A target that accepts and never answers: Envoy's route timeout (504).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    let config = format!(
        r#"
http: {{ addr: "127.0.0.1:{{listen}}" }}
egress:
  targets:
    down:
      url: http://127.0.0.1:{closed}/api
      auth: {{ type: api_key, header: X-Api-Key, key: SECRET-down-key }}
    silent:
      url: http://127.0.0.1:{silent_port}
      timeout: 1s
  routes:
    - path_prefix: /egress/down
      target: down
    - path_prefix: /egress/silent
      target: silent
"#
    );
    let p = Proxy::start(engine, &config);
    let r = Request::get(&p.url("/egress/down/x")).send().unwrap();
    assert_eq!(r.status, 503, "{engine}: {}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{engine}: {:?}",
        r.headers
    );
    let body: Value = r
        .json()
        .unwrap_or_else(|e| panic!("{engine}: {e:#}: {}", r.body));
    assert_eq!(body["error"], "upstream_connect_failed", "{engine}: {body}");
    assert_eq!(
        body["message"], "the proxy could not connect to the target",
        "{engine}: {body}"
    );
    assert!(!r.body.contains("SECRET") && !r.body.contains(&closed.to_string()));
    let r = Request::get(&p.url("/egress/silent/x")).send().unwrap();
    assert_eq!(r.status, 504, "{engine}: {}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body: Value = r
        .json()
        .unwrap_or_else(|e| panic!("{engine}: {e:#}: {}", r.body));
    assert_eq!(
        body,
        serde_json::json!({"error": "upstream_timeout", "message": "the target did not answer in time"}),
        "{engine}"
    );
    // The engine's own answers keep their bodies.
    let r = Request::get(&p.url("/egress/nowhere")).send().unwrap();
    assert_eq!(r.status, 404, "{engine}: {}", r.body);
    let body: Value = r.json().unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "route_not_found", "message": "no egress route matches this path"}),
        "{engine}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
}

engine_tests!(
    caller_token_headers_that_are_removed_headers_still_identify_the_caller,
    envoys_own_answers_are_our_json_errors,
);
