//! A minimal blocking HTTP/1.1 client for readiness checks, sanity requests and admin reads
//! (never for load: that is wrk's job).

use anyhow::{anyhow, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` on 127.0.0.1:`port` with `Connection: close`.
pub fn get(port: u16, path: &str) -> Result<Response> {
    get_with(port, path, &[])
}

/// [`get`] with extra request header lines (`Name: value`).
pub fn get_with(port: u16, path: &str, headers: &[String]) -> Result<Response> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench.local\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the reply to GET {path} from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status in the reply from {addr}: {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Response { status, body })
}

/// The payload of a chunked body (enough for small admin replies).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `GET path` (with `headers`) until `ok` accepts the response or `timeout` passes;
/// returns the last response or error as the failure.
pub fn wait_for(
    port: u16,
    path: &str,
    headers: &[String],
    timeout: Duration,
    ok: impl FnMut(&Response) -> bool,
) -> Result<Response> {
    poll(timeout, || get_with(port, path, headers), ok)
        .with_context(|| format!("GET 127.0.0.1:{port}{path}"))
}

/// Calls `fetch` until `ok` accepts its response or `timeout` passes.
pub fn poll(
    timeout: Duration,
    mut fetch: impl FnMut() -> Result<Response>,
    mut ok: impl FnMut(&Response) -> bool,
) -> Result<Response> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match fetch() {
            Ok(r) if ok(&r) => return Ok(r),
            Ok(r) => format!("{} {}", r.status, r.body.trim()),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            return Err(anyhow!("not as expected within {timeout:?}; last: {last}"));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_joins_chunks() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
