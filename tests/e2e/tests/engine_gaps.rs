//! Places where the `auto` engine once differed from the `wasm` engine, each run on both
//! engines on a real Envoy (`engine_tests!`):
//!
//! - `caller_token_headers_that_are_removed_headers_still_identify_the_caller`: a JWT read
//!   from `x-egress-caller-token` or `Proxy-Authorization` (`callers.jwt[i].from_headers`),
//!   names the auto engine removes before routing: the caller is admitted, and the upstream
//!   sees neither that header nor any other `x-egress-*` (a caller's `x-egress-target` never
//!   routes). The request log names the target and the outgoing URL on every line, the
//!   routed role's refusals (401, 403) included, as the wasm engine does.
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
        let compiled = egressctl()
            .unwrap()
            .args([
                "compile",
                cfg.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--admin",
                &format!("127.0.0.1:{admin}"),
                "--wasm",
                filter_wasm().to_str().unwrap(),
                "--engine",
                engine.as_str(),
            ])
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

engine_tests!(caller_token_headers_that_are_removed_headers_still_identify_the_caller);
