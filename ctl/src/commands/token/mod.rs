//! `egressctl token refresh CONFIG [--out DIR] [--target NAME] [--watch] [--proxy URL]...`
//!
//! Fetches each OAuth2 target's token with the filter's own request and reply logic
//! ([`fetch`]) and pushes it to every proxy ([`crate::proxy`]). With `token_store: redis` the
//! token is shared through redis ([`store`]) so several refreshers make one fetch. `--watch`
//! keeps doing it ([`watch`]).

pub mod fetch;
pub mod store;
pub mod watch;

use super::load_or_report;
use crate::cli::TokenRefreshArgs;
use crate::exit::ExitCode;
use crate::proxy::{self, ProxyClient};
use crate::state::StateDir;
use egress_core::config::TokenStore;
use egress_core::push::PushBody;
use egress_core::tokens::time::rfc3339;
use egress_core::tokens::TokenRecord;
use fetch::Fetcher;
use std::sync::Arc;
use store::{ObtainError, Origin, Redis};

/// What every target's refresh shares: where to push, how to sign, the redis store.
pub struct Ctx {
    pub client: ProxyClient,
    pub proxies: Vec<String>,
    pub redis: Option<Redis>,
}

impl Ctx {
    /// A token for the target: fetched (memory mode), or through redis.
    pub async fn obtain(&self, f: &Fetcher) -> Result<(TokenRecord, Origin), ObtainError> {
        match &self.redis {
            Some(r) => r.obtain(f).await,
            None => f
                .fetch()
                .await
                .map(|r| (r, Origin::Fetched))
                .map_err(ObtainError::Fetch),
        }
    }
}

pub fn push_body(target: &str, r: &TokenRecord) -> PushBody {
    PushBody {
        target: target.to_string(),
        access_token: r.token.clone(),
        token_type: r.token_type.clone(),
        expires_at_ms: r.expires_at_ms,
    }
}

pub fn obtained_line(target: &str, r: &TokenRecord, origin: Origin) -> String {
    let how = match origin {
        Origin::Fetched => "token fetched",
        Origin::Shared => "token read from redis",
    };
    format!("{target}: {how} (expires {})", rfc3339(r.expires_at_ms))
}

pub fn run(args: &TokenRefreshArgs) -> anyhow::Result<ExitCode> {
    let source = match load_or_report(&args.config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let fetchers = fetch::fetchers(&source, args.target.as_deref())?;
    if fetchers.is_empty() {
        match &args.target {
            Some(t) => eprintln!(
                "egressctl: {}: {t:?} is not an oauth2_client_credentials target",
                args.config.display()
            ),
            None => eprintln!(
                "egressctl: {}: no oauth2_client_credentials target",
                args.config.display()
            ),
        }
        return Ok(ExitCode::Usage);
    }
    let dir = StateDir::new(&args.out);
    let signer = proxy::signer(&dir)?;
    let state = dir.read_state().ok();
    let proxies = proxy::proxy_urls(&args.proxies, state.as_ref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let redis = match &source.config.token_store {
            TokenStore::Redis(cfg) => Some(Redis::connect(cfg).await?),
            TokenStore::Memory => None,
        };
        let ctx = Arc::new(Ctx {
            client: ProxyClient::new(signer)?,
            proxies,
            redis,
        });
        if args.watch {
            watch::run(ctx, fetchers).await
        } else {
            once(&ctx, &fetchers).await
        }
    })
}

/// One refresh of every target; exit 3 unless every token reached every proxy.
async fn once(ctx: &Arc<Ctx>, fetchers: &[Fetcher]) -> anyhow::Result<ExitCode> {
    let mut failed: Vec<String> = Vec::new();
    for f in fetchers {
        let (record, origin) = match ctx.obtain(f).await {
            Ok(x) => x,
            Err(e) => {
                println!("{}: {e}", f.target);
                failed.push(format!("{}: no token", f.target));
                continue;
            }
        };
        let body = push_body(&f.target, &record);
        let mut pushed = Vec::new();
        for url in &ctx.proxies {
            match ctx.client.push(url, &body).await {
                Ok(v) => pushed.push(format!("pushed to {url} (version {v})")),
                Err(e) => {
                    pushed.push(format!("push to {url} failed: {e:#}"));
                    failed.push(format!("{} not pushed to {url}", f.target));
                }
            }
        }
        println!(
            "{}, {}",
            obtained_line(&f.target, &record, origin),
            pushed.join(", ")
        );
    }
    if failed.is_empty() {
        Ok(ExitCode::Success)
    } else {
        eprintln!("egressctl: token refresh failed: {}", failed.join("; "));
        Ok(ExitCode::Failure)
    }
}
