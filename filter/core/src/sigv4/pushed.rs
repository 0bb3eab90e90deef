//! Temporary AWS credentials of `web_identity` targets, as the proxy receives and keeps them.
//!
//! `egressctl token refresh` obtains them from STS and pushes them as a push record of kind
//! [`AWS_PUSH_KIND`] (the same signed push as OAuth2 tokens: Ed25519 JWT bound to the body,
//! `jti` replay cache). The push listener stores them in shared data under [`aws_key`]; every
//! worker keeps a local copy ([`AwsCredCache`]) re-read at most every [`RECHECK_MS`] or as
//! soon as it expires. A request for a target without valid credentials is answered 503
//! `credentials_unavailable`, never forwarded unsigned. Host-free: shared data is reached
//! through [`TokenHost`].

#![deny(clippy::indexing_slicing)]

use super::AwsKeys;
use crate::push::{PushError, MAX_PUSH_BODY};
use crate::secret::Secret;
use crate::tokens::coord::shared::{update, Step, UpdateError, Updated};
use crate::tokens::coord::TokenHost;
use crate::tokens::time::rfc3339;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The `kind` of a push body carrying AWS credentials (an OAuth2 token push has no `kind`).
pub const AWS_PUSH_KIND: &str = "aws_credentials";
/// How long a worker uses its local copy before looking at shared data again (a new push is
/// picked up within this; an expired copy is re-read at once).
pub const RECHECK_MS: u64 = 100;

/// Shared-data key of a target's pushed AWS credentials.
pub fn aws_key(target: &str) -> String {
    format!("egress/aws/{target}")
}

/// A push of temporary credentials for one `aws_sigv4` `web_identity` target.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsPushBody {
    /// Always [`AWS_PUSH_KIND`].
    pub kind: String,
    pub target: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    /// Unix milliseconds.
    pub expires_at_ms: u64,
}

impl std::fmt::Debug for AwsPushBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AwsPushBody {{ target: {:?}, access_key_id: {:?}, secret_access_key: <redacted>, session_token: <redacted>, expires_at_ms: {} }}",
            self.target, self.access_key_id, self.expires_at_ms
        )
    }
}

/// What shared data holds per target.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsCredRecord {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expires_at_ms: u64,
    pub obtained_at_ms: u64,
    /// Grows by one with every push for the target.
    pub version: u64,
}

impl std::fmt::Debug for AwsCredRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AwsCredRecord {{ access_key_id: {:?}, expires_at_ms: {}, version: {} }}",
            self.access_key_id, self.expires_at_ms, self.version
        )
    }
}

impl AwsCredRecord {
    pub fn is_valid(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }

    pub fn keys(&self) -> AwsKeys {
        AwsKeys {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: Some(self.session_token.clone()),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        serde_json::from_slice(b).ok()
    }
}

/// Whether a push body is an AWS credentials push (its `kind`), without trusting it further.
pub fn is_aws_push(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default)]
        kind: Option<String>,
    }
    body.len() <= MAX_PUSH_BODY
        && serde_json::from_slice::<Kind>(body)
            .ok()
            .and_then(|k| k.kind)
            .is_some_and(|k| k == AWS_PUSH_KIND)
}

fn is_key_text(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-_.~".contains(&b))
}

/// Parses and checks an AWS credentials push into the record to store (version set when
/// stored).
pub fn record_from_body(body: &[u8], now_ms: u64) -> Result<(String, AwsCredRecord), PushError> {
    if body.len() > MAX_PUSH_BODY {
        return Err(PushError::BadBody("too large".into()));
    }
    let b: AwsPushBody = serde_json::from_slice(body)
        .map_err(|_| PushError::BadBody("not an AWS credentials push".into()))?;
    if b.kind != AWS_PUSH_KIND {
        return Err(PushError::BadBody("not an AWS credentials push".into()));
    }
    if b.access_key_id.is_empty()
        || b.access_key_id.len() > 128
        || !b.access_key_id.bytes().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(PushError::BadBody("access_key_id is not valid".into()));
    }
    if !is_key_text(b.secret_access_key.expose(), 256) {
        return Err(PushError::BadBody("secret_access_key is not valid".into()));
    }
    if !is_key_text(b.session_token.expose(), super::sts::MAX_SESSION_TOKEN) {
        return Err(PushError::BadBody("session_token is not valid".into()));
    }
    if b.expires_at_ms <= now_ms {
        return Err(PushError::BadBody("the credentials have expired".into()));
    }
    Ok((
        b.target,
        AwsCredRecord {
            access_key_id: b.access_key_id,
            secret_access_key: b.secret_access_key,
            session_token: b.session_token,
            expires_at_ms: b.expires_at_ms,
            obtained_at_ms: now_ms,
            version: 0,
        },
    ))
}

/// Stores pushed credentials (compare-and-swap, retried); returns the stored record.
pub fn store(
    host: &dyn TokenHost,
    target: &str,
    record: &AwsCredRecord,
) -> Result<Updated<AwsCredRecord>, UpdateError> {
    update(
        host,
        &aws_key(target),
        AwsCredRecord::from_bytes,
        AwsCredRecord::to_bytes,
        |current| {
            Step::Write(AwsCredRecord {
                version: current.map_or(0, |c| c.version) + 1,
                ..record.clone()
            })
        },
    )
}

/// Reads a target's stored credentials (`None`: none, or unreadable).
pub fn read(host: &dyn TokenHost, target: &str) -> Option<AwsCredRecord> {
    host.shared_get(&aws_key(target))
        .ok()
        .and_then(|e| e.bytes)
        .as_deref()
        .and_then(AwsCredRecord::from_bytes)
}

struct Local {
    record: Option<AwsCredRecord>,
    cas: Option<u32>,
    checked_ms: u64,
}

/// One worker's copies of pushed AWS credentials.
#[derive(Default)]
pub struct AwsCredCache {
    local: HashMap<String, Local>,
}

impl AwsCredCache {
    /// The keys to sign a request to `target` with at `now_ms`, or `None` (no valid
    /// credentials: answer 503).
    pub fn keys(&mut self, host: &dyn TokenHost, target: &str, now_ms: u64) -> Option<AwsKeys> {
        let l = self.local.entry(target.to_string()).or_insert(Local {
            record: None,
            cas: None,
            checked_ms: 0,
        });
        let fresh = now_ms.saturating_sub(l.checked_ms) < RECHECK_MS;
        let valid = l.record.as_ref().is_some_and(|r| r.is_valid(now_ms));
        if !(fresh && valid) {
            if let Ok(e) = host.shared_get(&aws_key(target)) {
                if e.cas != l.cas || e.cas.is_none() {
                    l.record = e.bytes.as_deref().and_then(AwsCredRecord::from_bytes);
                    l.cas = e.cas;
                }
                l.checked_ms = now_ms;
            }
        }
        l.record
            .as_ref()
            .filter(|r| r.is_valid(now_ms))
            .map(AwsCredRecord::keys)
    }
}

/// Why an AWS credentials push was not stored.
#[derive(Debug)]
pub enum Refused {
    /// The push itself is wrong (answered 400/401 by the listener's usual refusal).
    Push(PushError),
    /// Shared data could not be updated: this status and body (the pusher retries).
    Retry(u16, serde_json::Value),
}

/// Stores a verified AWS credentials push for one of `targets` (the proxy's `web_identity`
/// targets); the reply body on success.
pub fn accept(
    host: &dyn TokenHost,
    targets: &[&str],
    body: &[u8],
    now_ms: u64,
) -> Result<serde_json::Value, Refused> {
    let (target, record) = record_from_body(body, now_ms).map_err(Refused::Push)?;
    if !targets.contains(&target.as_str()) {
        return Err(Refused::Push(PushError::BadBody(format!(
            "{target:?} is not an aws_sigv4 web_identity target of this proxy"
        ))));
    }
    match store(host, &target, &record) {
        Ok(Updated {
            written: Some(r), ..
        }) => Ok(serde_json::json!({
            "status": "stored", "target": target, "kind": AWS_PUSH_KIND,
            "version": r.version, "expires_at": rfc3339(r.expires_at_ms),
        })),
        Ok(Updated { written: None, .. }) | Err(UpdateError::Contended(_)) => Err(Refused::Retry(
            409,
            serde_json::json!({ "error": "conflict", "message": "the credentials changed meanwhile; push again" }),
        )),
        Err(e) => Err(Refused::Retry(
            503,
            serde_json::json!({ "error": "unavailable", "message": format!("the credentials could not be stored ({e}); push again") }),
        )),
    }
}

/// The status of `targets` for `GET /v1/status` (never a secret).
pub fn status(host: &dyn TokenHost, targets: &[&str], now_ms: u64) -> Vec<serde_json::Value> {
    targets
        .iter()
        .map(|name| match read(host, name) {
            Some(r) => serde_json::json!({
                "target": name,
                "kind": AWS_PUSH_KIND,
                "valid": r.is_valid(now_ms),
                "source": "pushed",
                "version": r.version,
                "access_key_id": r.access_key_id,
                "age_ms": now_ms.saturating_sub(r.obtained_at_ms),
                "expires_in_ms": r.expires_at_ms.saturating_sub(now_ms),
                "expires_at": rfc3339(r.expires_at_ms),
            }),
            None => serde_json::json!({
                "target": name, "kind": AWS_PUSH_KIND, "valid": false, "source": null,
            }),
        })
        .collect()
}

#[cfg(test)]
#[path = "pushed_tests.rs"]
mod tests;
