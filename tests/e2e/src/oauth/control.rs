//! The stand-in's test-control endpoints (`/__stats`, `/__reset`, `/__fail`, `/__introspect`
//! on its plain-HTTP control port), and how its token requests are made to fail.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use super::OAuthServer;
use crate::Request;

/// How the next token requests fail ([`OAuthServer::fail_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// `500` with `{"error":"server_error",...}`.
    Status500,
    /// `200` with a body that is not JSON.
    Garbage,
    /// No answer at all; the connection stays open until the server stops.
    Hang,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Status500 => "500",
            FailMode::Garbage => "garbage",
            FailMode::Hang => "hang",
        }
    }
}

impl OAuthServer {
    fn control_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.control_port)
    }

    fn control(&self, req: Request, what: &str) -> Result<Value> {
        if self.proc.is_none() {
            bail!("{what}: the OAuth2 server is stopped");
        }
        let resp = req.send()?;
        if resp.status != 200 {
            bail!("{what}: {} {}", resp.status, resp.body);
        }
        resp.json()
    }

    /// The whole `GET /__stats` answer (`token_requests`, `token_successes`,
    /// `successes_by_client`, `fail_mode`, `fail_remaining`).
    pub fn stats_json(&self) -> Result<Value> {
        self.control(Request::get(&self.control_url("/__stats")), "stats")
    }

    /// `(token requests, tokens issued)` since start, restart or [`OAuthServer::reset`].
    /// Requests count every POST to the token endpoint, injected failures included.
    pub fn stats(&self) -> Result<(u64, u64)> {
        let v = self.stats_json()?;
        let n = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| anyhow!("stats without {k}: {v}"))
        };
        Ok((n("token_requests")?, n("token_successes")?))
    }

    /// Zeroes the counters and cancels pending injected failures.
    pub fn reset(&self) -> Result<()> {
        self.control(Request::post(&self.control_url("/__reset")), "reset")
            .map(drop)
    }

    /// Makes the next `count` token requests fail as `mode`.
    pub fn fail_next(&self, mode: FailMode, count: u32) -> Result<()> {
        let url = self.control_url(&format!("/__fail?mode={}&count={count}", mode.as_str()));
        self.control(Request::post(&url), "fail_next").map(drop)
    }

    /// Answers the next token request normally, after `ms` milliseconds.
    pub fn delay_next(&self, ms: u64) -> Result<()> {
        let url = self.control_url(&format!("/__fail?mode=delay&count=1&ms={ms}"));
        self.control(Request::post(&url), "delay_next").map(drop)
    }

    /// What the server says about a token it may have issued (`/__introspect` on the
    /// control port: the provider's own token store): `active`, `client_id`, `exp`.
    pub fn introspect(&self, token: &str) -> Result<Value> {
        let encoded: String = token
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let url = self.control_url(&format!("/__introspect?token={encoded}"));
        self.control(Request::get(&url), "introspect")
    }

    /// Checks that the server issued `token` to `client_id` and that it is valid now;
    /// returns its `exp` (Unix seconds).
    pub fn check_issued(&self, token: &str, client_id: &str) -> Result<u64> {
        let info = self.introspect(token)?;
        if info["active"] != true || info["client_id"] != client_id {
            bail!("the server does not know this token as valid for {client_id}: {info}");
        }
        info["exp"]
            .as_u64()
            .ok_or_else(|| anyhow!("introspection without exp: {info}"))
    }
}
