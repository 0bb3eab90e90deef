//! Fetching one target's token: the same request and reply logic as the filter
//! (`egress_core::tokens::build_request` / `parse_reply`), sent with reqwest.

use crate::proxy::{error_chain, now_ms, random_id};
use crate::source::Source;
use anyhow::Context;
use egress_core::config::Auth;
use egress_core::plan::{Credential, OAuth2Credential};
use egress_core::tokens::assertion::AssertionSigner;
use egress_core::tokens::exchange::parse_grant_reply;
use egress_core::tokens::grant::signs;
use egress_core::tokens::request::assertion_claims;
use egress_core::tokens::{build_request, FetchError, TokenRecord, TokenSource};
use std::time::Duration;

/// One OAuth2 target, ready to fetch.
pub struct Fetcher {
    pub target: String,
    pub cred: OAuth2Credential,
    assertion: Option<AssertionSigner>,
    /// The token file read before each fetch, if the grant needs one.
    host_token: Option<super::host_token::HostToken>,
    http: reqwest::Client,
}

/// Why a fetch failed: the filter's reason code and a message (never a token or secret).
#[derive(Debug, Clone)]
pub struct FetchFailure {
    pub reason: &'static str,
    pub message: String,
}

impl std::fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

impl From<FetchError> for FetchFailure {
    fn from(e: FetchError) -> Self {
        Self {
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

/// The fetchers of every OAuth2 target (or only `only`). Errors name the target.
pub fn fetchers(source: &Source, only: Option<&str>) -> anyhow::Result<Vec<Fetcher>> {
    // The files only the refresher reads: signing keys and service-account keys.
    let (private_keys, service_accounts) = super::keys::read(source, only)?;
    // The credential as a fetcher needs it (a push-only target has no secret in the proxy's
    // copy; the refresher needs it).
    let plan = egress_core::build::filter_config(
        &source.config,
        &egress_core::build::BuildOptions {
            for_fetcher: true,
            private_keys,
            service_accounts,
            ..Default::default()
        },
    );
    let mut out = Vec::new();
    for ft in plan.targets {
        let Credential::Oauth2(cred) = ft.credential else {
            continue;
        };
        if only.is_some_and(|n| n != ft.name) {
            continue;
        }
        let Some(target) = source.config.target(&ft.name) else {
            continue;
        };
        let Auth::OAuth2(settings) = &target.auth else {
            continue;
        };
        let assertion = match (&cred.private_key_pem, signs(&cred)) {
            (Some(pem), true) => Some(
                AssertionSigner::from_pem(cred.signing_alg, pem.expose(), cred.key_id.as_deref())
                    .map_err(|e| anyhow::anyhow!("target {}: signing key: {e}", ft.name))?,
            ),
            _ => None,
        };
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cred.token_timeout_ms))
            .connect_timeout(Duration::from_millis(cred.token_timeout_ms))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        // The token endpoint is verified with the target's CA when it has one, else the
        // system roots (also for a token URL taken from a service-account key file).
        let ca = match &settings.tls {
            Some(t) => t.ca_cert.as_ref(),
            None => target.tls.as_ref().and_then(|t| t.ca_cert.as_ref()),
        };
        if let Some(ca) = ca {
            let path = source.resolve(ca);
            let pem = std::fs::read(&path)
                .with_context(|| format!("target {}: tls.ca_cert {}", ft.name, path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "target {}: tls.ca_cert {} is not a PEM bundle",
                    ft.name,
                    path.display()
                )
            })?;
            http = http.tls_built_in_root_certs(false);
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        let http = http
            .build()
            .with_context(|| format!("target {}: cannot build the HTTP client", ft.name))?;
        out.push(Fetcher {
            host_token: super::host_token::HostToken::of(source, settings),
            target: ft.name,
            cred,
            assertion,
            http,
        });
    }
    Ok(out)
}

impl Fetcher {
    /// One client-credentials request; the token as a record (version 0, source fetched).
    pub async fn fetch(&self) -> Result<TokenRecord, FetchFailure> {
        let assertion = match (&self.assertion, assertion_claims(&self.cred)) {
            (Some(signer), Some(claims)) => Some(
                signer
                    .sign(&claims, now_ms() / 1000, &random_id())
                    .map_err(|e| FetchError::Assertion(e.to_string()))?,
            ),
            // Or the token file's content, read now (the subject token of a token exchange,
            // a federated client assertion).
            _ => match &self.host_token {
                Some(file) => Some(file.read()?),
                None => None,
            },
        };
        let req = build_request(&self.cred, assertion.as_deref())?;
        let pseudo = |name: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        let url = self
            .cred
            .token_url
            .as_ref()
            .ok_or(FetchError::NoTokenUrl)?
            .url_for(pseudo(":path"));
        let mut builder = self.http.post(&url);
        for (k, v) in &req.headers {
            if !k.starts_with(':') {
                builder = builder.header(k, v);
            }
        }
        let sent = builder.body(req.body.clone()).send().await;
        let (status, body) = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(b) => (Some(status), b.to_vec()),
                    Err(e) => {
                        return Err(FetchFailure {
                            reason: "transport",
                            message: format!("reading the reply from {url}: {}", error_chain(&e)),
                        })
                    }
                }
            }
            Err(e) => {
                return Err(FetchFailure {
                    reason: "transport",
                    message: format!("{url}: {}", error_chain(&e)),
                })
            }
        };
        let now = now_ms();
        let t = parse_grant_reply(
            &self.cred.grant,
            status,
            &body,
            now,
            self.cred.default_lifetime_ms,
        )?;
        Ok(TokenRecord {
            token: egress_core::secret::Secret::new(t.token),
            token_type: t.token_type,
            expires_at_ms: t.expires_at_ms,
            obtained_at_ms: now,
            source: TokenSource::Fetched,
            version: 0,
            stale: false,
            last_stale_mark_ms: 0,
        })
    }
}
