//! Slow and idle clients, the metrics endpoint under a burst, and what a target receives of a
//! caller's forwarding headers: every listener `egressctl compile` renders, on real Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_e2e::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const KEY: &str = "lim-key-J4s8Qe";

struct Running {
    _dir: tempfile::TempDir,
    _upstream: Standin,
    envoy: Envoy,
    listen: u16,
    push: u16,
}

fn start(engine: Engine) -> Running {
    let upstream = Standin::start(StandinOpts::new("upstream")).unwrap();
    let (listen, admin, push) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let dir = scratch_dir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "http:\n  addr: \"127.0.0.1:{listen}\"\negress:\n  targets:\n    echo:\n      url: \"http://127.0.0.1:{}\"\n      auth: {{type: api_key, header: X-API-Key, key: \"{KEY}\"}}\n  routes:\n    - {{path_prefix: /egress/echo, target: echo, strip_prefix: /egress/echo}}\nendpoints:\n  health: /health\n  metrics: /metrics\n",
            upstream.port()
        ),
    )
    .unwrap();
    let mut cmd = egressctl().unwrap();
    let out = cmd
        .current_dir(dir.path())
        .env("EGRESS_FILTER_WASM", filter_wasm())
        .args(["compile", "config.yaml", "--out", "state", "--admin"])
        .arg(format!("127.0.0.1:{admin}"))
        .arg("--push-addr")
        .arg(format!("127.0.0.1:{push}"))
        .args(engine.args())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{engine}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let envoy = Envoy::start(&dir.path().join("state/envoy.yaml"), &[]).unwrap();
    envoy.wait_ready(&format!("127.0.0.1:{admin}")).unwrap();
    let r = Running {
        _dir: dir,
        _upstream: upstream,
        envoy,
        listen,
        push,
    };
    wait_for_listener(r.listen);
    wait_for_listener(r.push);
    r
}

fn wait_for_listener(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `head` then `drip` one byte at a time (a byte every 300 ms, cycling), never
/// finishing the request, until Envoy closes the connection. Returns what Envoy sent, or
/// panics if the connection is still open at the (generous) deadline.
fn slowloris(port: u16, head: &[u8], drip: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s.write_all(head).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut got = Vec::new();
    let mut i = 0usize;
    loop {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return String::from_utf8_lossy(&got).into_owned(),
        }
        assert!(
            Instant::now() < deadline,
            "a client dripping bytes is still connected to {port}"
        );
        let b = drip[i % drip.len()];
        i += 1;
        if s.write_all(&[b]).is_err() {
            return String::from_utf8_lossy(&got).into_owned();
        }
    }
}

fn a_slowloris_is_cut_off_on_the_egress_and_the_push_listener(engine: Engine) {
    let r = start(engine);
    // Headers that never end.
    let drip = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    for port in [r.listen, r.push] {
        let reply = slowloris(
            port,
            b"GET /egress/echo/x HTTP/1.1\r\nHost: egress\r\n",
            drip,
        );
        assert!(
            reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
            "{reply}"
        );
    }
    // A push whose body never completes.
    let reply = slowloris(
        r.push,
        b"POST /v1/tokens HTTP/1.1\r\nHost: egress\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
        b" ",
    );
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
    // The listeners still serve.
    let resp = get(&format!("http://127.0.0.1:{}/egress/echo/ok", r.listen)).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(r.envoy.exited().is_none());
    // The connection limit is set (this also silences Envoy's start-up warning).
    assert!(!r
        .envoy
        .log()
        .contains("no configured limit to the number of allowed active downstream connections"));
}

fn an_idle_connection_is_closed_long_before_an_hour(engine: Engine) {
    let r = start(engine);
    let mut s = TcpStream::connect(("127.0.0.1", r.listen)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: egress\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Reads the answer, then waits (no request in flight) for Envoy to close.
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the idle connection was not closed within 5 minutes: {e}"),
        }
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
}

fn a_metrics_burst_is_limited_while_egress_requests_still_work(engine: Engine) {
    let r = start(engine);
    let metrics = format!("http://127.0.0.1:{}/metrics", r.listen);
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(get(&metrics).unwrap().status);
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    for _ in 0..10 {
        let resp = get(&format!("http://127.0.0.1:{}/egress/echo/x", r.listen)).unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    // The limit refills: metrics answer again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&metrics).unwrap().status != 200 {
        assert!(Instant::now() < deadline, "metrics never answered again");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn a_target_receives_none_of_the_callers_forwarding_headers(engine: Engine) {
    let r = start(engine);
    let resp = Request::get(&format!("http://127.0.0.1:{}/egress/echo/x", r.listen))
        .header("X-Forwarded-For", "10.1.2.3")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "internal.corp")
        .header("Forwarded", "for=10.1.2.3")
        .header("X-Real-IP", "10.1.2.3")
        .header("X-Request-Id", "caller-chosen-id")
        .header("X_API_KEY", "caller-key")
        .header("X_Custom", "1")
        .send()
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let echo = resp.json().unwrap();
    let headers = echo["headers"].as_object().unwrap();
    for name in headers.keys() {
        let n = name.to_ascii_lowercase();
        assert!(
            !n.starts_with("x-forwarded")
                && !n.starts_with("x-envoy")
                && !n.contains('_')
                && !["forwarded", "x-real-ip", "x-request-id"].contains(&n.as_str()),
            "the target received {name}: {headers:?}"
        );
    }
    assert_eq!(echo["headers"]["x-api-key"], KEY);
    assert!(!echo.to_string().contains("10.1.2.3"));
}

engine_tests!(
    a_slowloris_is_cut_off_on_the_egress_and_the_push_listener,
    an_idle_connection_is_closed_long_before_an_hour,
    a_metrics_burst_is_limited_while_egress_requests_still_work,
    a_target_receives_none_of_the_callers_forwarding_headers,
);
