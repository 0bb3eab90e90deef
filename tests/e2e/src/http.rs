//! A small blocking HTTP client (plain HTTP: Envoy does the upstream TLS).

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Response {
    /// A header by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The body parsed as JSON (a stand-in's echo, an error body, ...).
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| {
            format!(
                "response body is not JSON (status {}): {:?}",
                self.status, self.body
            )
        })
    }
}

/// A plain-HTTP request. 4xx/5xx are returned as responses, not errors;
/// redirects are not followed. Errors mean no response at all.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
}

impl Request {
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
            timeout: crate::patience(),
        }
    }

    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// A JSON body with `content-type: application/json`.
    pub fn json(self, value: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }

    /// The whole exchange's time limit (default: [`crate::patience`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn send(self) -> Result<Response> {
        let what = format!("{} {}", self.method, self.url);
        self.send_inner().with_context(|| what)
    }

    fn send_inner(self) -> Result<Response> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .allow_non_standard_methods(true)
            .timeout_global(Some(self.timeout))
            .build()
            .into();
        let mut builder = ureq::http::Request::builder()
            .method(self.method.as_str())
            .uri(self.url.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        // No body: nothing for GET & co. (not `content-length: 0`), and an
        // empty body with `content-length: 0` for POST/PUT/PATCH (not chunked).
        let body = match self.body {
            Some(body) => Some(body),
            None if matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") => Some(Vec::new()),
            None => None,
        };
        let mut response = match body {
            Some(body) => agent.run(builder.body(body).context("building the request")?)?,
            None => agent.run(builder.body(()).context("building the request")?)?,
        };
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_ascii_lowercase())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let mut bytes = Vec::new();
        response
            .body_mut()
            .as_reader()
            .read_to_end(&mut bytes)
            .context("reading the response body")?;
        Ok(Response {
            status: response.status().as_u16(),
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response> {
    Request::get(url).send()
}

/// Any method, optional headers and body.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response> {
    let mut req = Request::new(method, url);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    if let Some(body) = body {
        req = req.body(body.to_vec());
    }
    req.send()
}

/// One HTTP/1.1 response read off `sock`: the head, then the body as its `content-length` or
/// chunked framing says (to the close without either). Not to the close otherwise: after a
/// local reply with `Connection: close` Envoy waits up to its `delayed_close_timeout` (1 s)
/// for the client to close first. A reset or timeout ends it with what was read.
pub fn read_http1_reply(sock: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let complete = |out: &[u8]| -> bool {
        let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
        let body = &out[end + 4..];
        let header = |name: &str| {
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_string())
        };
        if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            return body.len() >= n;
        }
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            return body.ends_with(b"0\r\n\r\n");
        }
        false
    };
    while !complete(&out) {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}
