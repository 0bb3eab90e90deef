//! Retries through a real Envoy and the built filter, counted at the upstream: a request that
//! may have reached the target is never replayed unless its method is idempotent. The upstream
//! is a raw TCP server written here, so it can do what no well-behaved server does: read a
//! whole request and then reset the connection (RST) without answering, or answer 503.
//!
//! Promised (config `egress.defaults.retry_count`, README): idempotent methods (GET, PUT,
//! DELETE, ...) are retried on a reset and on 502/503/504, up to `retry_count` times; POST and
//! PATCH only when the request cannot have reached the target (connect failure, refused
//! stream), so a reset or a 503 after the upstream read the request is never replayed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{ensure, Context, Result};
use egress_e2e::*;

/// Retries after the first attempt, as configured below.
const RETRY_COUNT: usize = 2;

/// A raw HTTP/1.1 upstream that records `(method, path)` of every request it fully read,
/// then, for a path containing `/reset`, resets the connection without answering, and for
/// any other path answers `503` (keeping the connection).
struct FlakyUpstream {
    port: u16,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl FlakyUpstream {
    fn start() -> Result<FlakyUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the upstream")?;
        let port = listener.local_addr()?.port();
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let log = seen.clone();
        // The thread ends with the test process; it only ever blocks in accept.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                thread::spawn(move || serve(stream, &log));
            }
        });
        Ok(FlakyUpstream { port, seen })
    }

    /// How many requests with this method and path arrived.
    fn count(&self, method: &str, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count()
    }
}

/// One connection: requests until the peer closes or a reset is due.
fn serve(stream: TcpStream, log: &Mutex<Vec<(String, String)>>) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut out = write_half;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = request_line.split_whitespace();
        let (method, path) = (
            words.next().unwrap_or("").to_owned(),
            words.next().unwrap_or("").to_owned(),
        );
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push((method, path.clone()));
        if path.contains("/reset") {
            reset(&out);
            return;
        }
        let reply = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Closes with RST instead of FIN: SO_LINGER on with a zero timeout, then close.
fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized `linger` value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Envoy with one plain-HTTP target `flaky` at the upstream, retries on.
struct Proxy {
    envoy: Envoy,
    base: String,
    _dir: TempDir,
}

impl Proxy {
    fn start(engine: Engine, upstream: u16) -> Result<Proxy> {
        let (listen, admin) = (free_port()?, free_port()?);
        let dir = scratch_dir()?;
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "http:\n  addr: \"127.0.0.1:{listen}\"\n\
                 egress:\n  defaults:\n    retry_count: {RETRY_COUNT}\n    retry_delay: 50ms\n  \
                 targets:\n    flaky:\n      url: \"http://127.0.0.1:{upstream}/api\"\n      \
                 auth: {{type: api_key, header: X-API-Key, key: \"k-1\"}}\n  \
                 routes:\n    - path_prefix: /egress/flaky\n      target: flaky\n      \
                 strip_prefix: /egress/flaky\n"
            ),
        )?;
        let out = dir.path().join("out");
        let compiled = compile_command(&config, &out, admin, engine)?
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            compiled.status.success(),
            "egressctl compile: {}",
            output_text(&compiled)
        );
        let envoy = Envoy::start(&out.join("envoy.yaml"), &[])?;
        envoy.wait_ready(&format!("127.0.0.1:{admin}"))?;
        Ok(Proxy {
            envoy,
            base: format!("http://127.0.0.1:{listen}/egress/flaky"),
            _dir: dir,
        })
    }

    /// Sends `method path` (with a small body for methods that carry one); the status.
    fn send(&self, method: &str, path: &str) -> Result<u16> {
        let mut req = Request::new(method, &format!("{}{path}", self.base));
        if matches!(method, "POST" | "PUT" | "PATCH") {
            req = req
                .header("content-type", "application/json")
                .body(r#"{"order":42}"#);
        }
        Ok(req.send()?.status)
    }
}

fn a_post_is_not_replayed_after_the_upstream_reset_the_connection_while_a_get_is_retried(
    engine: Engine,
) -> Result<()> {
    let upstream = FlakyUpstream::start()?;
    let proxy = Proxy::start(engine, upstream.port)?;

    let status = proxy.send("POST", "/reset/order")?;
    assert!(status >= 500, "POST through a reset: {status}");
    let status = proxy.send("GET", "/reset/order")?;
    assert!(status >= 500, "GET through resets: {status}");

    // The counts are final once the client has its answer: Envoy answers after its last try.
    assert_eq!(
        upstream.count("POST", "/api/reset/order"),
        1,
        "a POST the upstream read must never be sent again"
    );
    assert_eq!(
        upstream.count("GET", "/api/reset/order"),
        1 + RETRY_COUNT,
        "a GET is retried retry_count times after a reset"
    );
    let retries = proxy
        .envoy
        .stat("cluster.egress_target_flaky.upstream_rq_retry")?
        .unwrap_or(0);
    assert_eq!(retries, RETRY_COUNT as u64, "only the GET was retried");
    Ok(())
}

fn non_idempotent_methods_are_never_replayed_after_a_reset_or_a_503_idempotent_ones_are(
    engine: Engine,
) -> Result<()> {
    let upstream = FlakyUpstream::start()?;
    let proxy = Proxy::start(engine, upstream.port)?;
    for (method, replayed) in [
        ("POST", false),
        ("PATCH", false),
        ("GET", true),
        ("PUT", true),
        ("DELETE", true),
    ] {
        for path in ["/reset/x", "/unavailable/x"] {
            let status = proxy.send(method, path)?;
            assert!(status >= 500, "{method} {path}: {status}");
            let want = if replayed { 1 + RETRY_COUNT } else { 1 };
            assert_eq!(
                upstream.count(method, &format!("/api{path}")),
                want,
                "{method} {path} arrived at the upstream"
            );
        }
    }
    Ok(())
}

engine_tests!(
    a_post_is_not_replayed_after_the_upstream_reset_the_connection_while_a_get_is_retried,
    non_idempotent_methods_are_never_replayed_after_a_reset_or_a_503_idempotent_ones_are,
);
