//! A proxy's token push listener, as `token refresh` and `status` talk to it: `POST /v1/tokens`
//! with a [`PushBody`], `GET /v1/status`; each call carries a fresh Ed25519-signed JWT bound to
//! its body (see `egress_core::push`), used once.

use crate::state::{State, StateDir};
use anyhow::Context;
use egress_core::push::{PushSigner, PUSH_PATH, STATUS_PATH};
use serde::Deserialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lifetime of one push or status JWT.
pub const CALL_JWT_LIFETIME_SECS: u64 = 60;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A random identifier (JWT `jti`, redis lock owner): 128 bits, hex.
pub fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The push key of a state directory; refuses to invent one (a new key would not match the
/// public key the proxies were compiled with).
pub fn signer(dir: &StateDir) -> anyhow::Result<PushSigner> {
    anyhow::ensure!(
        dir.push_key().exists(),
        "{} not found: compile into {} first (egressctl compile CONFIG --out {1}), or pass the \
         state directory whose push.key the proxies trust with --out",
        dir.push_key().display(),
        dir.dir.display()
    );
    dir.push_signer()
}

/// The proxies named by `--proxy`, else the one in the state directory.
pub fn proxy_urls(given: &[String], state: Option<&State>) -> anyhow::Result<Vec<String>> {
    if !given.is_empty() {
        for u in given {
            anyhow::ensure!(
                u.starts_with("http://"),
                "--proxy {u:?}: expected http://HOST:PORT (the proxy's push listener)"
            );
        }
        return Ok(given
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect());
    }
    let addr = state
        .and_then(|s| s.push_addr.clone())
        .context("no --proxy given and the state directory names no push address")?;
    Ok(vec![default_url(&addr)])
}

/// `http://ADDR`, with an all-interfaces bind address reached on loopback.
pub fn default_url(push_addr: &str) -> String {
    let addr = push_addr
        .strip_prefix("0.0.0.0:")
        .map(|p| format!("127.0.0.1:{p}"))
        .or_else(|| {
            push_addr
                .strip_prefix("[::]:")
                .map(|p| format!("[::1]:{p}"))
        })
        .unwrap_or_else(|| push_addr.to_string());
    format!("http://{addr}")
}

/// One target as a proxy's `GET /v1/status` reports it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TargetStatus {
    pub target: String,
    pub valid: bool,
    pub source: Option<String>,
    pub version: Option<u64>,
    pub age_ms: Option<u64>,
    pub expires_in_ms: Option<u64>,
    pub expires_at: Option<String>,
    #[serde(default)]
    pub stale: bool,
    #[serde(default)]
    pub fetch_failures: u32,
    pub last_error: Option<String>,
}

#[derive(Deserialize)]
struct StatusReply {
    targets: Vec<TargetStatus>,
}

#[derive(Deserialize)]
struct PushReply {
    version: u64,
}

#[derive(Deserialize)]
struct ErrorReply {
    error: Option<String>,
    message: Option<String>,
}

/// Talks to push listeners.
pub struct ProxyClient {
    http: reqwest::Client,
    signer: PushSigner,
}

impl ProxyClient {
    pub fn new(signer: PushSigner) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            .no_proxy()
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, signer })
    }

    fn authorization(&self, body: &[u8]) -> anyhow::Result<String> {
        let jwt = self
            .signer
            .sign(body, now_ms() / 1000, CALL_JWT_LIFETIME_SECS, &random_id())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(format!("Bearer {jwt}"))
    }

    /// Pushes a token; the proxy's new version of it.
    pub async fn push<B: serde::Serialize + Sync>(
        &self,
        proxy: &str,
        body: &B,
    ) -> anyhow::Result<u64> {
        let bytes = serde_json::to_vec(body)?;
        let request = self
            .http
            .post(format!("{proxy}{PUSH_PATH}"))
            .header("authorization", self.authorization(&bytes)?)
            .header("content-type", "application/json")
            .body(bytes);
        let reply: PushReply = answer(request, "push reply").await?;
        Ok(reply.version)
    }

    /// Every OAuth2 target of the proxy.
    pub async fn status(&self, proxy: &str) -> anyhow::Result<Vec<TargetStatus>> {
        let request = self
            .http
            .get(format!("{proxy}{STATUS_PATH}"))
            .header("authorization", self.authorization(b"")?);
        let reply: StatusReply = answer(request, "status reply").await?;
        Ok(reply.targets)
    }
}

/// Sends a request to a push listener; its 200 answer as `T` (`what` names `T` in the error),
/// or why there is none (unreachable, refused with the listener's error code).
async fn answer<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &str,
) -> anyhow::Result<T> {
    let resp = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("unreachable: {}", error_chain(&e)))?;
    let status = resp.status().as_u16();
    let text = resp.bytes().await.unwrap_or_default();
    if status != 200 {
        return Err(refused(status, &text));
    }
    serde_json::from_slice(&text).with_context(|| format!("the proxy's answer is not a {what}"))
}

fn refused(status: u16, body: &[u8]) -> anyhow::Error {
    match serde_json::from_slice::<ErrorReply>(body) {
        Ok(ErrorReply {
            error: Some(code),
            message,
        }) => anyhow::anyhow!(
            "HTTP {status} {code}{}",
            message.map(|m| format!(": {m}")).unwrap_or_default()
        ),
        _ => anyhow::anyhow!("HTTP {status} (is this a push listener?)"),
    }
}

/// An error and its causes on one line (reqwest's own message is terse).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_proxy_url_reaches_a_wildcard_bind_on_loopback() {
        assert_eq!(default_url("127.0.0.1:9902"), "http://127.0.0.1:9902");
        assert_eq!(default_url("0.0.0.0:9902"), "http://127.0.0.1:9902");
        assert_eq!(default_url("[::]:9902"), "http://[::1]:9902");
        assert_eq!(
            proxy_urls(&["http://a:1/".into()], None).unwrap(),
            vec!["http://a:1".to_string()]
        );
        assert!(proxy_urls(&["a:1".into()], None).is_err());
        assert!(proxy_urls(&[], None).is_err());
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_id(), random_id());
        assert_eq!(random_id().len(), 32);
    }
}
