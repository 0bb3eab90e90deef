//! `token refresh` for `aws_sigv4` targets with `web_identity`: reads the token file (again on
//! every refresh: projected service-account tokens rotate), calls STS
//! `AssumeRoleWithWebIdentity` (`egress_core::sigv4::sts` builds the request and reads the
//! reply), and pushes the temporary credentials to every proxy as an `aws_credentials` push
//! record. With `token_store: redis` the credentials are shared through redis like tokens
//! (key `<key_prefix>aws/<target>`), so several refreshers make one STS call.
//!
//! The secret key and the session token are never printed: lines name the access key id and
//! the expiry only.

use super::fetch::FetchFailure;
use super::store::Origin;
use super::Ctx;
use crate::proxy::{error_chain, now_ms};
use crate::source::Source;
use anyhow::Context;
use egress_core::config::{Auth, AwsCredentialSource, WebIdentitySettings};
use egress_core::sigv4::pushed::{AwsPushBody, AWS_PUSH_KIND};
use egress_core::sigv4::sts::{self, TemporaryCredentials, MAX_STS_REPLY};
use egress_core::tokens::time::rfc3339;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long an STS call may take.
const STS_TIMEOUT: Duration = Duration::from_secs(10);
/// Refresh this long before expiry (at most half the lifetime ahead).
pub const REFRESH_BEFORE_MS: u64 = 5 * 60 * 1000;

/// One `web_identity` target, ready to call STS.
pub struct AwsFetcher {
    pub target: String,
    settings: WebIdentitySettings,
    token_file: PathBuf,
    http: reqwest::Client,
}

/// Credentials as a refresher holds them (and as redis stores them).
#[derive(Clone, Serialize, Deserialize)]
pub struct Held {
    pub access_key_id: String,
    pub secret_access_key: egress_core::secret::Secret,
    pub session_token: egress_core::secret::Secret,
    pub expires_at_ms: u64,
    pub obtained_at_ms: u64,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Held {{ access_key_id: {:?}, expires_at_ms: {} }}",
            self.access_key_id, self.expires_at_ms
        )
    }
}

impl Held {
    fn from_sts(c: TemporaryCredentials, now: u64) -> Self {
        Self {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: c.session_token,
            expires_at_ms: c.expires_at_ms,
            obtained_at_ms: now,
        }
    }

    pub fn is_valid(&self, now: u64) -> bool {
        now < self.expires_at_ms
    }

    /// When to refresh: [`REFRESH_BEFORE_MS`] ahead, at most half the lifetime ahead.
    pub fn refresh_at_ms(&self) -> u64 {
        let life = self.expires_at_ms.saturating_sub(self.obtained_at_ms);
        self.expires_at_ms
            .saturating_sub(REFRESH_BEFORE_MS.min(life / 2))
    }

    pub fn push_body(&self, target: &str) -> AwsPushBody {
        AwsPushBody {
            kind: AWS_PUSH_KIND.to_string(),
            target: target.to_string(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: self.session_token.clone(),
            expires_at_ms: self.expires_at_ms,
        }
    }
}

/// The STS fetchers of every `web_identity` target (or only `only`).
pub fn fetchers(source: &Source, only: Option<&str>) -> anyhow::Result<Vec<AwsFetcher>> {
    let mut out = Vec::new();
    for t in &source.config.targets {
        if only.is_some_and(|n| n != t.name) {
            continue;
        }
        let Auth::AwsSigv4(a) = &t.auth else {
            continue;
        };
        let AwsCredentialSource::WebIdentity(w) = &a.source else {
            continue;
        };
        let mut http = reqwest::Client::builder()
            .timeout(STS_TIMEOUT)
            .connect_timeout(STS_TIMEOUT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = w.tls.as_ref().and_then(|t| t.ca_cert.as_ref()) {
            let path = source.resolve(ca);
            let pem = std::fs::read(&path)
                .with_context(|| format!("target {}: tls.ca_cert {}", t.name, path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "target {}: tls.ca_cert {} is not a PEM bundle",
                    t.name,
                    path.display()
                )
            })?;
            http = http.tls_built_in_root_certs(false);
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        out.push(AwsFetcher {
            target: t.name.clone(),
            token_file: source.resolve(&w.token_file),
            settings: w.clone(),
            http: http
                .build()
                .with_context(|| format!("target {}: cannot build the HTTP client", t.name))?,
        });
    }
    Ok(out)
}

fn failure(reason: &'static str, message: String) -> FetchFailure {
    FetchFailure { reason, message }
}

impl AwsFetcher {
    /// One `AssumeRoleWithWebIdentity` call with the token file's current content.
    pub async fn fetch(&self) -> Result<Held, FetchFailure> {
        // A small local file: read synchronously (re-read on every refresh).
        let token = std::fs::read_to_string(&self.token_file).map_err(|e| {
            failure(
                "token_file",
                format!("web_identity.token_file {}: {e}", self.token_file.display()),
            )
        })?;
        let form = sts::assume_role_form(
            &self.settings.role_arn,
            &self.settings.session_name,
            &token,
            None,
        )
        .map_err(|e| failure(e.reason(), format!("{}: {e}", self.token_file.display())))?;
        let url = self.settings.sts_url.url_for("/");
        let sent = self
            .http
            .post(&url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .header("accept", "text/xml")
            .body(form)
            .send()
            .await
            .map_err(|e| failure("transport", format!("STS {url}: {}", error_chain(&e))))?;
        let status = sent.status().as_u16();
        if sent
            .content_length()
            .is_some_and(|l| l > MAX_STS_REPLY as u64)
        {
            return Err(failure("bad_reply", sts::StsError::TooLarge.to_string()));
        }
        let body = sent.bytes().await.map_err(|e| {
            failure(
                "transport",
                format!("reading the reply from STS {url}: {}", error_chain(&e)),
            )
        })?;
        let now = now_ms();
        sts::parse_reply(status, &body, now)
            .map(|c| Held::from_sts(c, now))
            .map_err(|e| failure(e.reason(), format!("STS {url}: {e}")))
    }
}

/// Why a target got no AWS credentials this round.
#[derive(Debug, thiserror::Error)]
pub enum AwsObtainError {
    #[error("STS call failed: {0}")]
    Sts(FetchFailure),
    #[error("redis: {0}")]
    Redis(anyhow::Error),
    #[error("redis: another refresher holds the lock and stored no credentials")]
    LockHeld,
}

/// The redis record (and lock) name of a target's credentials: `aws/<target>`.
pub(super) fn store_name(target: &str) -> String {
    format!("aws/{target}")
}

/// Credentials for the target: fetched (memory mode), or through redis.
pub async fn obtain(ctx: &Ctx, f: &AwsFetcher) -> Result<(Held, Origin), AwsObtainError> {
    let Some(redis) = &ctx.redis else {
        return f
            .fetch()
            .await
            .map(|h| (h, Origin::Fetched))
            .map_err(AwsObtainError::Sts);
    };
    let name = store_name(&f.target);
    let usable = |h: &Held| now_ms() < h.refresh_at_ms();
    let read = || async {
        redis
            .get_raw(&name)
            .await
            .map(|b| b.and_then(|b| serde_json::from_slice::<Held>(&b).ok()))
    };
    let lock_ttl = STS_TIMEOUT.as_millis() as u64 + 2_000;
    let deadline = now_ms() + lock_ttl + 1_000;
    loop {
        let stored = read().await.map_err(AwsObtainError::Redis)?;
        if let Some(h) = stored.as_ref().filter(|h| usable(h)) {
            return Ok((h.clone(), Origin::Shared));
        }
        if redis
            .try_lock(&name, lock_ttl)
            .await
            .map_err(AwsObtainError::Redis)?
        {
            let result = async {
                if let Some(h) = read().await?.filter(|h| usable(h)) {
                    return anyhow::Ok(Ok((h, Origin::Shared)));
                }
                match f.fetch().await {
                    Ok(h) => {
                        let ttl = h.expires_at_ms.saturating_sub(now_ms()).max(1);
                        redis.set_raw(&name, &serde_json::to_vec(&h)?, ttl).await?;
                        Ok(Ok((h, Origin::Fetched)))
                    }
                    Err(e) => Ok(Err(AwsObtainError::Sts(e))),
                }
            }
            .await;
            if let Err(e) = redis.unlock(&name).await {
                eprintln!("egressctl: {}: releasing the redis lock: {e}", f.target);
            }
            return result.map_err(AwsObtainError::Redis)?;
        }
        if now_ms() >= deadline {
            return match stored {
                Some(h) if h.is_valid(now_ms()) => Ok((h, Origin::Shared)),
                _ => Err(AwsObtainError::LockHeld),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn obtained_line(target: &str, h: &Held, origin: Origin) -> String {
    let how = match origin {
        Origin::Fetched => "AWS credentials from STS",
        Origin::Shared => "AWS credentials read from redis",
    };
    format!(
        "{target}: {how}, access key {} (expires {})",
        h.access_key_id,
        rfc3339(h.expires_at_ms)
    )
}

/// One refresh of every `web_identity` target; failures are added to `failed`.
pub async fn once(ctx: &Arc<Ctx>, fetchers: &[AwsFetcher], failed: &mut Vec<String>) {
    for f in fetchers {
        let (held, origin) = match obtain(ctx, f).await {
            Ok(x) => x,
            Err(e) => {
                println!("{}: {e}", f.target);
                failed.push(format!("{}: no AWS credentials", f.target));
                continue;
            }
        };
        let line = obtained_line(&f.target, &held, origin);
        super::push_and_report(ctx, &f.target, &held.push_body(&f.target), line, failed).await;
    }
}

#[path = "aws_watch.rs"]
mod watching;
pub use watching::watch_target;

#[cfg(test)]
#[path = "aws_tests.rs"]
mod tests;
