//! `egressctl token refresh CONFIG [--out DIR] [--target NAME] [--watch] [--proxy URL]...`
//!
//! Fetches each OAuth2 target's token with the filter's own request and reply logic
//! ([`fetch`]) and pushes it to every proxy ([`crate::proxy`]). With `token_store: redis` the
//! token is shared through redis ([`store`]) so several refreshers make one fetch. `--watch`
//! keeps doing it ([`watch`]).

pub mod aws;
pub mod fetch;
pub mod host_token;
pub mod keys;
pub mod store;
pub mod targets;
pub mod watch;
mod watch_proxies;

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
    pub proxies: targets::Proxies,
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

    /// After a stop dropped an obtain mid-flight: the redis lock of `name` (the target, or the
    /// AWS record's name) is released if this refresher holds it ([`Redis::release_on_stop`]).
    pub async fn release_after_stop(&self, name: &str) {
        if let Some(r) = &self.redis {
            r.release_on_stop(name).await;
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
    let aws_fetchers = aws::fetchers(&source, args.target.as_deref())?;
    if fetchers.is_empty() && aws_fetchers.is_empty() {
        match &args.target {
            Some(t) => eprintln!(
                "egressctl: {}: {t:?} is not an OAuth2 target nor an aws_sigv4 target with web_identity",
                args.config.display()
            ),
            None => eprintln!(
                "egressctl: {}: no OAuth2 target and no aws_sigv4 target with web_identity",
                args.config.display()
            ),
        }
        return Ok(ExitCode::Usage);
    }
    let dir = StateDir::new(&args.out);
    let signer = proxy::signer(&dir)?;
    let state = dir.read_state().ok();
    let fixed = if args.proxies.is_empty() && !args.proxy_dns.is_empty() {
        Vec::new()
    } else {
        proxy::proxy_urls(&args.proxies, state.as_ref())?
    };
    let proxies = targets::Proxies {
        fixed,
        dns: args.proxy_dns.clone(),
        lookup: targets::system_lookup(),
    };
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
            watch::run(ctx, fetchers, aws_fetchers).await
        } else {
            once_or_stopped(&ctx, &fetchers, &aws_fetchers).await
        }
    })
}

/// [`once`], unless Ctrl-C or SIGTERM comes first: then the redis locks a dropped fetch may
/// hold are released (another refresher would otherwise wait for their expiry), and the run
/// fails (exit 3: not every token reached every proxy).
async fn once_or_stopped(
    ctx: &Arc<Ctx>,
    fetchers: &[Fetcher],
    aws_fetchers: &[aws::AwsFetcher],
) -> anyhow::Result<ExitCode> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        code = once(ctx, fetchers, aws_fetchers) => return code,
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let names = fetchers
        .iter()
        .map(|f| f.target.clone())
        .chain(aws_fetchers.iter().map(|f| aws::store_name(&f.target)));
    for name in names {
        ctx.release_after_stop(&name).await;
    }
    eprintln!("egressctl: token refresh stopped before every token was pushed");
    Ok(ExitCode::Failure)
}

/// One refresh of every target; exit 3 unless every token reached every proxy.
async fn once(
    ctx: &Arc<Ctx>,
    fetchers: &[Fetcher],
    aws_fetchers: &[aws::AwsFetcher],
) -> anyhow::Result<ExitCode> {
    let mut failed: Vec<String> = Vec::new();
    aws::once(ctx, aws_fetchers, &mut failed).await;
    for f in fetchers {
        let (record, origin) = match ctx.obtain(f).await {
            Ok(x) => x,
            Err(e) => {
                println!("{}: {e}", f.target);
                failed.push(format!("{}: no token", f.target));
                continue;
            }
        };
        let line = obtained_line(&f.target, &record, origin);
        push_and_report(
            ctx,
            &f.target,
            &push_body(&f.target, &record),
            line,
            &mut failed,
        )
        .await;
    }
    if failed.is_empty() {
        Ok(ExitCode::Success)
    } else {
        eprintln!("egressctl: token refresh failed: {}", failed.join("; "));
        Ok(ExitCode::Failure)
    }
}

/// Pushes one target's record to every proxy, prints `line` with where it went, and adds
/// every proxy it did not reach to `failed`.
pub async fn push_and_report<B: serde::Serialize + Clone + Send + Sync + 'static>(
    ctx: &Arc<Ctx>,
    target: &str,
    body: &B,
    line: String,
    failed: &mut Vec<String>,
) {
    let (results, unresolved) = push_everywhere(ctx, body).await;
    failed.extend(unresolved);
    let mut pushed = Vec::new();
    for (url, r) in results {
        match r {
            Ok(v) => pushed.push(format!("pushed to {url} (version {v})")),
            Err(e) => {
                pushed.push(format!("push to {url} failed: {e:#}"));
                failed.push(format!("{target} not pushed to {url}"));
            }
        }
    }
    println!("{line}, {}", pushed.join(", "));
}

/// Pushes one token to every proxy there is now (names looked up afresh, pushes in
/// parallel): each URL with its result, and the names that did not resolve.
pub async fn push_everywhere<B: serde::Serialize + Clone + Send + Sync + 'static>(
    ctx: &Arc<Ctx>,
    body: &B,
) -> (Vec<(String, anyhow::Result<u64>)>, Vec<String>) {
    let resolved = ctx.proxies.resolve().await;
    let mut calls = tokio::task::JoinSet::new();
    for (i, url) in resolved.urls.iter().enumerate() {
        let (ctx, url, body) = (ctx.clone(), url.clone(), body.clone());
        calls.spawn(async move { (i, ctx.client.push(&url, &body).await) });
    }
    let mut results: Vec<(usize, anyhow::Result<u64>)> = Vec::new();
    while let Some(j) = calls.join_next().await {
        match j {
            Ok(r) => results.push(r),
            Err(e) => results.push((usize::MAX, Err(anyhow::anyhow!("push task failed: {e}")))),
        }
    }
    results.sort_by_key(|(i, _)| *i);
    let out = results
        .into_iter()
        .map(|(i, r)| {
            let url = resolved.urls.get(i).cloned().unwrap_or_default();
            (url, r)
        })
        .collect();
    (out, resolved.failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_core::push::PushSigner;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stand-in push listener: answers every signed push with its version and records the
    /// pushed bodies.
    async fn stub(addr: SocketAddr, version: u64) -> (u16, tokio::sync::mpsc::Receiver<String>) {
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() < len {
                            continue;
                        }
                        let signed = head.to_ascii_lowercase().contains("authorization: bearer ");
                        let _ = tx
                            .send(format!(
                                "{} {body}",
                                if signed { "signed" } else { "unsigned" }
                            ))
                            .await;
                        let reply = format!("{{\"version\":{version}}}");
                        let _ = s
                            .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}", reply.len()).as_bytes())
                            .await;
                        return;
                    }
                });
            }
        });
        (port, rx)
    }

    #[tokio::test]
    async fn one_name_with_two_addresses_is_two_proxies_and_both_get_the_push() {
        // Two proxies on the same port, one on 127.0.0.1, one on ::1: what a headless Service
        // name over two pods looks like.
        let (port, mut v4) = stub("127.0.0.1:0".parse().unwrap(), 4).await;
        let (_, mut v6) = stub(format!("[::1]:{port}").parse().unwrap(), 6).await;
        let lookup: targets::Lookup = Arc::new(move |d: targets::DnsProxy| {
            Box::pin(async move {
                assert_eq!(d.host, "egress-push.egress.svc");
                Ok(vec![
                    SocketAddr::from(([127, 0, 0, 1], d.port)),
                    format!("[::1]:{}", d.port).parse().unwrap(),
                ])
            })
        });
        let ctx = Arc::new(Ctx {
            client: ProxyClient::new(PushSigner::generate()).unwrap(),
            proxies: targets::Proxies {
                fixed: vec![],
                dns: vec![format!("egress-push.egress.svc:{port}").parse().unwrap()],
                lookup,
            },
            redis: None,
        });
        let body = PushBody {
            target: "crm".into(),
            access_token: egress_core::secret::Secret::new("tok-1".to_string()),
            token_type: "Bearer".into(),
            expires_at_ms: 4_000_000_000_000,
        };
        let (results, unresolved) = push_everywhere(&ctx, &body).await;
        assert!(unresolved.is_empty());
        let got: Vec<(String, u64)> = results.into_iter().map(|(u, r)| (u, r.unwrap())).collect();
        assert_eq!(
            got,
            vec![
                (format!("http://127.0.0.1:{port}"), 4),
                (format!("http://[::1]:{port}"), 6)
            ]
        );
        for rx in [&mut v4, &mut v6] {
            let seen = rx.recv().await.unwrap();
            assert!(
                seen.starts_with("signed ") && seen.contains("\"crm\""),
                "{seen}"
            );
        }
    }
}
