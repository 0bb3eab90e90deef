//! A hostile internal caller against real Envoy 1.40 running the built filter: other spellings
//! of a route, traversal-like segments, TRACE and odd method tokens, headers that change what
//! the target does. Each check looks at what the upstream actually received (the stand-ins
//! echo every request), or proves it received nothing (a refusal is never an echo).
//!
//! HTTP/1.1 requests with exact bytes go over a raw TCP socket; HTTP/2 requests use
//! `curl --http2-prior-knowledge --request-target` (a missing curl with HTTP/2 fails the test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::{Context, Result};
use egress_e2e::*;
use serde_json::Value;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

const CRM_KEY: &str = "SECRET-crm-key";
const BULK_TOKEN: &str = "SECRET-bulk-token";
const STANDARD_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Two targets on nested routes: `/egress/crm` (API key, any standard method) and the more
/// specific `/egress/crm/bulk` (bearer, POST only), each on a plain-HTTP stand-in.
struct Proxy {
    _crm: Standin,
    _bulk: Standin,
    envoy: Envoy,
    listen: u16,
    _state: TempDir,
}

impl Proxy {
    fn start(engine: Engine) -> Result<Self> {
        let crm = Standin::start(StandinOpts::new("crm"))?;
        let bulk = Standin::start(StandinOpts::new("bulk"))?;
        let listen = free_port()?;
        let admin = free_port()?;
        let state = scratch_dir()?;
        let config = state.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                r#"http:
  addr: "127.0.0.1:{listen}"
egress:
  enabled: true
  token_store:
    type: memory
  targets:
    crm:
      url: "http://127.0.0.1:{crm_port}/services/data/v58.0"
      auth:
        type: api_key
        header: "X-API-Key"
        key: "${{CRM_KEY}}"
    bulk:
      url: "http://127.0.0.1:{bulk_port}/base"
      auth:
        type: bearer
        token: "${{BULK_TOKEN}}"
  routes:
    - path_prefix: "/egress/crm"
      target: crm
      strip_prefix: "/egress/crm"
      rewrite_prefix: "/sobjects"
    - path_prefix: "/egress/crm/bulk"
      target: bulk
      strip_prefix: "/egress/crm/bulk"
      methods: ["POST"]
"#,
                crm_port = crm.port(),
                bulk_port = bulk.port(),
            ),
        )?;
        let out = state.path().join("out");
        let compiled = compile_command(&config, &out, admin, engine)?
            .env("CRM_KEY", CRM_KEY)
            .env("BULK_TOKEN", BULK_TOKEN)
            .output()
            .context("running egressctl compile")?;
        let envoy = envoy_from_compile(&compiled, &out, admin, &[]).context(engine)?;
        Ok(Self {
            _crm: crm,
            _bulk: bulk,
            envoy,
            listen,
            _state: state,
        })
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let url = format!("http://127.0.0.1:{}{path}", self.listen);
        request(method, &url, headers, None).unwrap()
    }

    /// One HTTP/1.1 request with exactly these bytes in the request line.
    fn raw(&self, method: &str, target: &[u8], headers: &[(&str, &str)]) -> (u16, String) {
        let mut req = Vec::new();
        req.extend_from_slice(method.as_bytes());
        req.push(b' ');
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: egress\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let mut sock = TcpStream::connect(("127.0.0.1", self.listen)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        sock.write_all(&req).unwrap();
        // A reset after the response still leaves the response read.
        let reply = read_http1_reply(&mut sock);
        let text = String::from_utf8_lossy(&reply).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no HTTP response to {:?}: {text:?}",
                    String::from_utf8_lossy(target)
                )
            });
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    /// One HTTP/2 (prior knowledge) request with exactly this `:method` and `:path`:
    /// (status, headers block, body).
    fn h2(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--http2-prior-knowledge",
            "--path-as-is",
            "--max-time",
            "60",
            "-D",
            "-",
            "-X",
            method,
            "--request-target",
            path,
        ]);
        for (k, v) in headers {
            cmd.args(["-H", &format!("{k}: {v}")]);
        }
        cmd.arg(format!("http://127.0.0.1:{}", self.listen));
        let out = cmd
            .output()
            .expect("running curl (HTTP/2 tests need curl with HTTP/2)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && text.starts_with("HTTP/2 "),
            "curl {method} {path:?} over HTTP/2 failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }
}

/// The upstream's echo: the request was forwarded.
fn echo(status: u16, body: &str) -> Value {
    assert_eq!(status, 200, "expected a forward: {body}");
    let v: Value = serde_json::from_str(body).unwrap();
    assert!(v["service"].is_string(), "not an echo: {body}");
    v
}

/// A refusal with `status`: never an upstream echo; when the filter made it (a JSON body),
/// its error code.
fn refused(status: u16, body: &str, want: u16, code: &str, what: &str) {
    assert_eq!(status, want, "{what}: {body}");
    assert!(
        !body.contains("\"service\""),
        "{what} reached an upstream: {body}"
    );
    assert!(
        !body.contains("SECRET-"),
        "{what}: a secret in the reply: {body}"
    );
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        assert_eq!(v["error"], code, "{what}: {body}");
    }
}

fn hostile_requests_reach_no_upstream_with_a_credential(engine: Engine) {
    let p = Proxy::start(engine).unwrap();

    // 1. Another spelling of the more specific route is that route: its method list holds,
    // and its own target (and credential) gets the request.
    for spelled in [
        "/egress/crm/bul%6B/jobs",
        "/egress/crm/bul%6b/jobs",
        "/egress/crm/%62ulk/jobs",
        "/egress/%63rm/bulk/jobs",
        "/%65gress/crm/%62%75%6c%6b/jobs",
    ] {
        let r = p.send("GET", spelled, &[]);
        refused(r.status, &r.body, 405, "method_not_allowed", spelled);
        assert_eq!(r.header("allow"), Some("POST"), "{spelled}");
        let r = p.send("POST", spelled, &[]);
        let e = echo(r.status, &r.body);
        assert_eq!(e["service"], "bulk", "{spelled}");
        assert_eq!(e["path"], "/base/jobs", "{spelled}");
        assert_eq!(
            e["headers"]["authorization"],
            format!("Bearer {BULK_TOKEN}")
        );
        assert!(e["headers"]["x-api-key"].is_null());
    }
    // The canonical spelling is what leaves; legitimate percent-encoded UTF-8 still works.
    let r = p.send("GET", "/egress/crm/Contact/%c3%a9?q=%6b", &[]);
    let e = echo(r.status, &r.body);
    assert_eq!(e["service"], "crm");
    assert_eq!(e["path"], "/services/data/v58.0/sobjects/Contact/%C3%A9");
    assert_eq!(e["query"], "q=%6b");
    assert_eq!(e["headers"]["x-api-key"], CRM_KEY);

    // 2. Traversal-like segments over HTTP/1.1, exact bytes: 400, nothing forwarded.
    let attacks: [&[u8]; 16] = [
        b"/egress/crm/..;x/bulk/jobs",
        b"/egress/crm/.;/bulk/jobs",
        b"/egress/crm/bulk;x/jobs",
        b"/egress/crm/%2e%2e/x",
        b"/egress/crm/%252e%252e/x",
        b"/egress/crm/%25%32%65%25%32%65/x",
        b"/egress/crm/%c0%ae%c0%ae/x",
        b"/egress/crm/%e0%80%ae/x",
        b"/egress/crm/%ef%bc%8e%ef%bc%8e/x",
        b"/egress/crm/%ff/x",
        b"/egress/crm/a\\..\\x",
        b"/egress/crm/a%5c..%5cx",
        b"/egress/crm/..%2fx",
        b"/egress/crm/a%00b",
        b"/egress/crm/\xc3\xa9",
        b"/egress/crm/%3b/x",
    ];
    for target in attacks {
        let what = String::from_utf8_lossy(target).into_owned();
        let (status, body) = p.raw("GET", target, &[]);
        refused(status, &body, 400, "invalid_path", &what);
    }

    // 3. TRACE, TRACK, CONNECT-like and unknown tokens on a route without a method list.
    for method in ["TRACE", "TRACK", "PROPFIND", "BREW"] {
        let (status, body) = p.raw(method, b"/egress/crm/Contact", &[]);
        if status == 400 {
            // Envoy's HTTP/1.1 parser refuses a method it does not know, before any filter.
            assert!(body.starts_with("Bad Request"), "{method}: {body}");
        } else {
            refused(status, &body, 405, "method_not_allowed", method);
        }
    }
    let r = p.send("TRACE", "/egress/crm/Contact", &[]);
    refused(r.status, &r.body, 405, "method_not_allowed", "TRACE");
    assert_eq!(r.header("allow"), Some(STANDARD_METHODS));

    // 4. Headers that change what the target does, or describe our network, never arrive.
    let hostile = [
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-Original-URL", "/admin-marker"),
        ("X-Rewrite-URL", "/admin-marker"),
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-original-path", "/admin-marker"),
        ("X-Forwarded-For", "10.66.66.66"),
        ("X-Forwarded-Host", "internal-marker.corp"),
        ("X-Forwarded-Prefix", "/admin-marker"),
        ("Forwarded", "for=10.66.66.66"),
        ("X-Real-IP", "10.66.66.66"),
    ];
    let r = p.send("GET", "/egress/crm/Contact/1", &hostile);
    let e = echo(r.status, &r.body);
    assert_eq!(e["method"], "GET");
    assert_eq!(e["path"], "/services/data/v58.0/sobjects/Contact/1");
    let received = e["headers"].as_object().unwrap();
    for (name, value) in received {
        let value = value.as_str().unwrap_or_default();
        for (h, _) in hostile {
            let caller_forwarding = h.to_ascii_lowercase().starts_with("x-forwarded")
                || h.eq_ignore_ascii_case("forwarded")
                || h.eq_ignore_ascii_case("x-real-ip");
            // Envoy may add its own forwarding headers; the caller's never arrive.
            if !caller_forwarding {
                assert!(!name.eq_ignore_ascii_case(h), "{name}: {value} arrived");
            }
        }
        assert!(
            !value.contains("10.66.66.66") && !value.contains("marker"),
            "the caller's {name}: {value} arrived"
        );
    }
    // A header name with an underscore (some servers read x_api_key as x-api-key): dropped
    // by the filter, or the whole request refused by Envoy.
    let (status, body) = p.raw(
        "GET",
        b"/egress/crm/Contact/1",
        &[("x_api_key", "caller-key")],
    );
    if status == 200 {
        let e = echo(status, &body);
        assert!(e["headers"]["x_api_key"].is_null(), "{body}");
        assert_eq!(e["headers"]["x-api-key"], CRM_KEY);
    } else {
        // Envoy's own refusal (headers_with_underscores_action), not the filter's.
        assert_eq!(status, 400, "{body}");
        assert!(!body.contains("\"service\""), "{body}");
    }

    // 5. HTTP/2: any method token, raw bytes in :path, the same rules.
    for method in ["TRACE", "FOO", "get", "CONNECTX"] {
        let (status, head, body) = p.h2(method, "/egress/crm/Contact", &[]);
        refused(
            status,
            &body,
            405,
            "method_not_allowed",
            &format!("h2 {method}"),
        );
        assert!(
            head.contains(&format!("allow: {}", STANDARD_METHODS.to_ascii_lowercase())),
            "{head}"
        );
    }
    for path in [
        "/egress/crm/é/x",
        "/egress/crm/..;x/bulk/jobs",
        "/egress/crm/%252e%252e/x",
        "/egress/crm/%c0%ae%c0%ae/x",
        "/egress/crm/a\\..\\x",
    ] {
        let (status, _, body) = p.h2("GET", path, &[]);
        refused(status, &body, 400, "invalid_path", &format!("h2 {path}"));
    }
    let (status, _, body) = p.h2("POST", "/egress/crm/bul%6B/jobs", &[("x_api_key", "k")]);
    if status == 200 {
        let e = echo(status, &body);
        assert_eq!(e["service"], "bulk");
        assert_eq!(e["path"], "/base/jobs");
        assert!(e["headers"]["x_api_key"].is_null(), "{body}");
    } else {
        assert_eq!(status, 400, "{body}");
        assert!(!body.contains("\"service\""), "{body}");
    }
    let (status, _, body) = p.h2("GET", "/egress/crm/Contact/%C3%A9", &[]);
    assert_eq!(
        echo(status, &body)["path"],
        "/services/data/v58.0/sobjects/Contact/%C3%A9"
    );

    assert!(
        p.envoy.exited().is_none(),
        "Envoy exited: {}",
        p.envoy.log_tail()
    );
    assert!(
        !p.envoy.log().contains("SECRET-"),
        "a secret in Envoy's log"
    );
}

engine_tests!(hostile_requests_reach_no_upstream_with_a_credential,);
