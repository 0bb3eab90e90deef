//! `token refresh --watch`: one task per target keeps a valid token in every proxy.
//!
//! - Refresh `refresh_before_expiry` ahead of expiry, at most half the lifetime ahead (the
//!   filter's own `schedule::refresh_at_ms`); failed fetches retry after `schedule::backoff_ms`
//!   (exponential, jittered).
//! - Push to each proxy that does not hold the current token yet; a failed push retries with
//!   the same backoff, per proxy. Every [`STATUS_EVERY_MS`], ask each proxy for its status: one
//!   that shows the target without a valid token, or with a lower version than we gave it (it
//!   restarted), gets the current token again at once ([`super::watch_proxies`], shared with
//!   the AWS credentials' watch).
//! - With redis, a token another refresher stored is adopted and pushed.
//! - Every [`RESOLVE_EVERY_MS`], `--proxy-dns` names are looked up again: a new address gets
//!   the current token at once, a vanished one is dropped (kept while its name fails to
//!   resolve: a DNS hiccup is not a scale-down).
//! - Ctrl-C or SIGTERM stops every task (exit 0).

use super::{obtained_line, push_body, Ctx};
use crate::exit::ExitCode;
use crate::proxy::now_ms;
use egress_core::tokens::schedule::{need, refresh_at_ms, Need};
use egress_core::tokens::TokenRecord;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::fetch::Fetcher;
pub use super::watch_proxies::STATUS_EVERY_MS;
use super::watch_proxies::{push_round, FetchRetry, ProxyState, Wording, MAX_SLEEP_MS};

/// How often `--proxy-dns` names are looked up again.
pub const RESOLVE_EVERY_MS: u64 = 2_000;
/// How often the redis store is read for a token another refresher stored.
const REDIS_EVERY_MS: u64 = 1_000;

pub async fn run(
    ctx: Arc<Ctx>,
    fetchers: Vec<Fetcher>,
    aws: Vec<super::aws::AwsFetcher>,
) -> anyhow::Result<ExitCode> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for f in fetchers {
        tasks.spawn(watch_target(ctx.clone(), f, stop_rx.clone()));
    }
    for f in aws {
        tasks.spawn(super::aws::watch_target(ctx.clone(), f, stop_rx.clone()));
    }
    eprintln!(
        "egressctl: watching {} target(s), pushing to {}; Ctrl-C stops",
        tasks.len(),
        ctx.proxies.describe()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    eprintln!("egressctl: stopped");
    Ok(ExitCode::Success)
}

/// How the lines name a pushed token.
const TOKEN: Wording = Wording {
    pushed: "pushed",
    lost: "the token (restarted?); pushing it again",
};

async fn watch_target(ctx: Arc<Ctx>, f: Fetcher, mut stop: watch::Receiver<bool>) {
    let f = Arc::new(f);
    let before = f.cred.refresh_before_expiry_ms;
    let mut current: Option<TokenRecord> = None;
    let mut retry = FetchRetry::default();
    let mut next_redis_ms = 0u64;
    let mut proxies: Vec<ProxyState> = Vec::new();
    let mut next_resolve_ms = 0u64;
    let mut resolve_failed: Vec<String> = Vec::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let now = now_ms();

        // Which proxies there are now.
        if now >= next_resolve_ms {
            next_resolve_ms = now + RESOLVE_EVERY_MS;
            let r = ctx.proxies.resolve().await;
            if r.failed != resolve_failed {
                for e in &r.failed {
                    eprintln!("{}: cannot look up proxies: {e}", f.target);
                }
                resolve_failed = r.failed.clone();
            }
            reconcile(&mut proxies, &r.urls, r.failed.is_empty(), &f.target);
        }

        // A token another refresher stored (redis) replaces ours when it lives longer.
        if let Some(redis) = &ctx.redis {
            if now >= next_redis_ms {
                next_redis_ms = now + REDIS_EVERY_MS;
                if let Ok(Some(stored)) = redis.get(&f.target).await {
                    let newer = current
                        .as_ref()
                        .is_none_or(|c| stored.expires_at_ms > c.expires_at_ms);
                    if stored.is_valid(now) && newer {
                        println!(
                            "{}",
                            obtained_line(&f.target, &stored, super::Origin::Shared)
                        );
                        current = Some(stored);
                        retry.succeeded();
                    }
                }
            }
        }

        // Refresh when due.
        if need(current.as_ref(), now, before) != Need::Nothing && retry.ready(now) {
            let got = tokio::select! {
                r = ctx.obtain(&f) => r,
                _ = stop.changed() => {
                    // The dropped obtain may hold the redis lock: release it now, not at its
                    // expiry (another refresher would wait that long).
                    ctx.release_after_stop(&f.target).await;
                    return;
                }
            };
            match got {
                Ok((record, origin)) => {
                    println!("{}", obtained_line(&f.target, &record, origin));
                    current = Some(record);
                    retry.succeeded();
                }
                Err(e) => retry.failed(&f.target, e),
            }
        }

        // Push to proxies missing the current token; ask the others how they are.
        let now = now_ms();
        let valid = current.as_ref().filter(|c| c.is_valid(now));
        let push = valid.map(|c| (c.expires_at_ms, push_body(&f.target, c)));
        if push_round(&ctx, &f.target, &mut proxies, push, &TOKEN, &mut stop)
            .await
            .is_none()
        {
            return;
        }

        // Sleep until the next thing to do.
        let now = now_ms();
        let mut next = now + MAX_SLEEP_MS;
        match &current {
            Some(c) => {
                let due = if c.stale || !c.is_valid(now) {
                    now
                } else {
                    refresh_at_ms(c, before)
                };
                next = next.min(due.max(retry.next_ms));
            }
            None => next = next.min(retry.next_ms),
        }
        if let Some(c) = current.as_ref().filter(|c| c.is_valid(now)) {
            for p in &proxies {
                if p.pushed_expires_ms != c.expires_at_ms {
                    next = next.min(p.next_push_ms);
                }
            }
        }
        for p in proxies.iter().filter(|p| p.pushed_version.is_some()) {
            next = next.min(p.next_status_ms);
        }
        if !ctx.proxies.dns.is_empty() {
            next = next.min(next_resolve_ms);
        }
        if ctx.redis.is_some() {
            next = next.min(next_redis_ms);
        }
        let wait = next.saturating_sub(now).max(10);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Makes `proxies` the `urls` of this round: new ones start with nothing pushed; ones no
/// longer listed are dropped only when every name resolved (`complete`).
fn reconcile(proxies: &mut Vec<ProxyState>, urls: &[String], complete: bool, target: &str) {
    if complete {
        proxies.retain(|p| {
            let keep = urls.contains(&p.url);
            if !keep {
                println!("{target}: {} is gone (no longer resolved)", p.url);
            }
            keep
        });
    }
    for u in urls {
        if !proxies.iter().any(|p| &p.url == u) {
            proxies.push(ProxyState::new(u.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(p: &[ProxyState]) -> Vec<&str> {
        p.iter().map(|p| p.url.as_str()).collect()
    }

    #[test]
    fn reconcile_adds_new_replicas_and_drops_gone_ones_only_on_a_complete_lookup() {
        let mut p = Vec::new();
        let a = "http://10.0.0.1:9902".to_string();
        let b = "http://10.0.0.2:9902".to_string();
        reconcile(&mut p, &[a.clone(), b.clone()], true, "t");
        assert_eq!(urls(&p), [a.as_str(), b.as_str()]);
        p[0].pushed_version = Some(3);
        // The lookup failed: b is kept.
        reconcile(&mut p, std::slice::from_ref(&a), false, "t");
        assert_eq!(urls(&p), [a.as_str(), b.as_str()]);
        reconcile(&mut p, std::slice::from_ref(&a), true, "t");
        assert_eq!(urls(&p), [a.as_str()]);
        // What we knew about a is kept.
        assert_eq!(p[0].pushed_version, Some(3));
    }
}
