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
//! - `envoys_own_408_and_413_are_our_json_errors`: a body that never arrives within
//!   `http.read_timeout` (`request_timeout`), headers that never end within the 10 s
//!   `request_headers_timeout`, an exchange longer than `http.write_timeout`
//!   (`max_stream_duration`), all Envoy's own 408, and a body over the 16 MiB a
//!   `payload: signed` target holds (the buffer filter's 413): each is our JSON error; so is
//!   the push listener's 408 for a push whose body never ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_e2e::*;
use jwt_simple::prelude::*;
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;

const HS_SECRET: &str = "gaps-shared-secret-0123456789abcdef";

struct Proxy {
    _dir: TempDir,
    listen: u16,
    /// The token push listener.
    push: u16,
    _envoy: Envoy,
}

impl Proxy {
    /// Envoy on what `egressctl compile --engine <engine>` renders for `config` (its
    /// `{listen}` replaced).
    fn start(engine: Engine, config: &str) -> Proxy {
        let dir = scratch_dir().unwrap();
        let listen = free_port().unwrap();
        let admin = free_port().unwrap();
        let push = free_port().unwrap();
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, config.replace("{listen}", &listen.to_string())).unwrap();
        let out = dir.path().join("out");
        let compiled = compile_command(&cfg, &out, admin, engine)
            .unwrap()
            .args(["--push-addr", &format!("127.0.0.1:{push}")])
            .output()
            .unwrap();
        let envoy = envoy_from_compile(&compiled, &out, admin, &[])
            .unwrap_or_else(|e| panic!("{engine}: {e:#}"));
        Proxy {
            _dir: dir,
            listen,
            push,
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
    let silent_port = silent_target();
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

/// A target that accepts connections and never answers; its port.
fn silent_target() -> u16 {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    port
}

/// An answer read off a raw connection.
struct RawReply {
    status: u16,
    content_type: Option<String>,
    body: String,
}

/// One HTTP/1.1 exchange on a raw connection: `head` and then `body_len` bytes, written from
/// a thread (so an answer Envoy gives in the middle of the body is read while the body is
/// still being sent); the connection is left open until Envoy answers. `None`: the
/// connection closed without a complete answer.
fn raw_exchange(port: u16, head: &[u8], body_len: usize) -> Option<RawReply> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(patience())).unwrap();
    let mut w = s.try_clone().unwrap();
    let head = head.to_vec();
    let writer = std::thread::spawn(move || {
        if w.write_all(&head).is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = body_len;
        while left > 0 {
            let n = left.min(chunk.len());
            if w.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
    });
    let mut got = Vec::new();
    let mut r = &s;
    let reply = loop {
        if let Some(reply) = parse_reply(&got) {
            break Some(reply);
        }
        let mut buf = [0u8; 16 * 1024];
        match r.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "reading Envoy's answer: {e}: {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    };
    let _ = s.shutdown(Shutdown::Both);
    writer.join().unwrap();
    reply
}

/// A complete answer with a `content-length` body, if `got` holds one.
fn parse_reply(got: &[u8]) -> Option<RawReply> {
    let text = String::from_utf8_lossy(got);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")?.parse().ok()?;
    (body.len() >= length).then(|| RawReply {
        status,
        content_type: header("content-type"),
        body: body[..length].to_string(),
    })
}

fn assert_our_error(engine: Engine, what: &str, reply: Option<RawReply>, status: u16, error: &str) {
    let reply = reply.unwrap_or_else(|| panic!("{engine}: {what}: no answer"));
    assert_eq!(reply.status, status, "{engine}: {what}: {}", reply.body);
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/json"),
        "{engine}: {what}"
    );
    let body: Value = serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("{engine}: {what}: {e}: {}", reply.body));
    assert_eq!(body["error"], error, "{engine}: {what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{engine}: {what}: {body}"
    );
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "{engine}: {what}: {body}"
    );
}

fn envoys_own_408_and_413_are_our_json_errors(engine: Engine) {
    let silent = silent_target();
    let closed = free_port().unwrap();
    let targets = format!(
        r#"
  targets:
    silent:
      url: http://127.0.0.1:{silent}
      timeout: 30s
    aws:
      url: http://127.0.0.1:{closed}
      auth:
        type: aws_sigv4
        region: us-east-1
        service: s3
        access_key_id: AKIAGAPS
        secret_access_key: SECRETGAPSKEY
        payload: signed
  routes:
    - path_prefix: /egress/silent
      target: silent
    - path_prefix: /egress/aws
      target: aws
"#
    );
    // The request timer (2 s) runs out before the stream's (4 s): a body that never arrives
    // is `request_timeout`; a complete request whose answer never comes is cut at 4 s.
    let short = Proxy::start(
        engine,
        &format!(
            "http: {{ addr: \"127.0.0.1:{{listen}}\", read_timeout: 2s, write_timeout: 4s }}\negress:{targets}"
        ),
    );
    let reply = raw_exchange(
        short.listen,
        b"POST /egress/silent/x HTTP/1.1\r\nHost: egress\r\nContent-Length: 100\r\n\r\n",
        10,
    );
    assert_our_error(
        engine,
        "a body that never arrives",
        reply,
        408,
        "request_timeout",
    );
    let reply = raw_exchange(
        short.listen,
        b"GET /egress/silent/x HTTP/1.1\r\nHost: egress\r\n\r\n",
        0,
    );
    assert_our_error(
        engine,
        "an answer later than write_timeout",
        reply,
        408,
        "request_duration_exceeded",
    );

    // Default timeouts: headers that never end get the 10 s `request_headers_timeout`, and
    // a push whose body never ends the push listener's 10 s `request_timeout` (meanwhile a
    // body over the signed-payload limit gets the buffer filter's 413).
    let long = Proxy::start(
        engine,
        &format!("http: {{ addr: \"127.0.0.1:{{listen}}\" }}\negress:{targets}"),
    );
    let port = long.listen;
    let headers = std::thread::spawn(move || {
        raw_exchange(
            port,
            b"GET /egress/silent/x HTTP/1.1\r\nHost: egress\r\nX-Slow: a",
            0,
        )
    });
    let port = long.push;
    let push = std::thread::spawn(move || {
        raw_exchange(
            port,
            b"POST /v1/tokens HTTP/1.1\r\nHost: egress\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
            0,
        )
    });
    let over = egress_core::sigv4::SIGNED_PAYLOAD_MAX_BYTES as usize + 64 * 1024;
    let reply = raw_exchange(
        long.listen,
        format!(
            "PUT /egress/aws/bucket/key HTTP/1.1\r\nHost: egress\r\nContent-Length: {over}\r\n\r\n"
        )
        .as_bytes(),
        over,
    );
    assert_our_error(
        engine,
        "a body over the signed-payload limit",
        reply,
        413,
        "body_too_large",
    );
    assert_our_error(
        engine,
        "headers that never end",
        headers.join().unwrap(),
        408,
        "request_timeout",
    );
    assert_our_error(
        engine,
        "a push whose body never ends",
        push.join().unwrap(),
        408,
        "request_timeout",
    );
    // A request within the limits still reaches the route table (and its own JSON).
    let r = Request::get(&long.url("/egress/nowhere")).send().unwrap();
    assert_eq!(r.status, 404, "{engine}: {}", r.body);
    assert_eq!(r.json().unwrap()["error"], "route_not_found", "{engine}");
}

engine_tests!(
    caller_token_headers_that_are_removed_headers_still_identify_the_caller,
    envoys_own_answers_are_our_json_errors,
    envoys_own_408_and_413_are_our_json_errors,
);
