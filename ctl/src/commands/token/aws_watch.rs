//! `token refresh --watch` for one `web_identity` target: keeps valid temporary credentials in
//! every proxy. Refreshes [`super::REFRESH_BEFORE_MS`] ahead of expiry (at most half the
//! lifetime ahead), retries failures with backoff, pushes to proxies that lack the current
//! set, and re-pushes to a proxy whose status shows it lost them (a restart).

use super::{backoff, obtain, obtained_line, AwsFetcher, Held, MAX_SLEEP_MS, STATUS_EVERY_MS};
use crate::commands::token::Ctx;
use crate::proxy::now_ms;
use egress_core::tokens::time::rfc3339;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

struct ProxyState {
    url: String,
    /// `expires_at_ms` of the set the proxy holds from us (0: none, or re-push).
    pushed_expires_ms: u64,
    pushed_version: Option<u64>,
    failures: u32,
    next_push_ms: u64,
    next_status_ms: u64,
}

enum Outcome {
    Pushed(u64),
    PushFailed(String),
    /// Whether the proxy shows valid credentials for the target, and their version.
    Status(Option<(bool, Option<u64>)>),
    StatusFailed,
}

pub async fn watch_target(ctx: Arc<Ctx>, f: AwsFetcher, mut stop: watch::Receiver<bool>) {
    let mut current: Option<Held> = None;
    let mut failures = 0u32;
    let mut next_fetch_ms = 0u64;
    let mut proxies: Vec<ProxyState> = Vec::new();
    loop {
        if *stop.borrow() {
            return;
        }
        // The proxies there are now (names looked up again each round).
        let r = ctx.proxies.resolve().await;
        for e in &r.failed {
            eprintln!("{}: cannot look up proxies: {e}", f.target);
        }
        if r.failed.is_empty() {
            proxies.retain(|p| r.urls.contains(&p.url));
        }
        for u in &r.urls {
            if !proxies.iter().any(|p| &p.url == u) {
                proxies.push(ProxyState {
                    url: u.clone(),
                    pushed_expires_ms: 0,
                    pushed_version: None,
                    failures: 0,
                    next_push_ms: 0,
                    next_status_ms: 0,
                });
            }
        }

        let now = now_ms();
        let due = current.as_ref().is_none_or(|c| now >= c.refresh_at_ms());
        if due && now >= next_fetch_ms {
            let got = tokio::select! {
                r = obtain(&ctx, &f) => r,
                _ = stop.changed() => return,
            };
            match got {
                Ok((held, origin)) => {
                    println!("{}", obtained_line(&f.target, &held, origin));
                    current = Some(held);
                    failures = 0;
                    next_fetch_ms = 0;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(failures);
                    next_fetch_ms = now_ms() + wait;
                    eprintln!(
                        "{}: {e}; {failures} failure(s) in a row, retry in {wait}ms",
                        f.target
                    );
                }
            }
        }

        let now = now_ms();
        let valid = current.as_ref().filter(|c| c.is_valid(now)).cloned();
        let mut calls = JoinSet::new();
        for (i, p) in proxies.iter_mut().enumerate() {
            let (ctx, url) = (ctx.clone(), p.url.clone());
            if let Some(cur) = &valid {
                if p.pushed_expires_ms != cur.expires_at_ms && now >= p.next_push_ms {
                    let body = cur.push_body(&f.target);
                    calls.spawn(async move {
                        match ctx.client.push(&url, &body).await {
                            Ok(v) => (i, Outcome::Pushed(v)),
                            Err(e) => (i, Outcome::PushFailed(format!("{e:#}"))),
                        }
                    });
                    continue;
                }
            }
            if p.pushed_version.is_some() && now >= p.next_status_ms {
                p.next_status_ms = now + STATUS_EVERY_MS;
                let target = f.target.clone();
                calls.spawn(async move {
                    match ctx.client.status(&url).await {
                        Ok(list) => (
                            i,
                            Outcome::Status(
                                list.into_iter()
                                    .find(|t| t.target == target)
                                    .map(|t| (t.valid, t.version)),
                            ),
                        ),
                        Err(_) => (i, Outcome::StatusFailed),
                    }
                });
            }
        }
        let pushed_expires = valid.as_ref().map_or(0, |c| c.expires_at_ms);
        loop {
            let joined = tokio::select! {
                j = calls.join_next() => j,
                _ = stop.changed() => return,
            };
            let Some(joined) = joined else { break };
            let Ok((i, outcome)) = joined else { continue };
            let Some(p) = proxies.get_mut(i) else {
                continue;
            };
            match outcome {
                Outcome::Pushed(v) => {
                    println!(
                        "{}: pushed AWS credentials to {} (version {v}, expires {})",
                        f.target,
                        p.url,
                        rfc3339(pushed_expires)
                    );
                    p.pushed_expires_ms = pushed_expires;
                    p.pushed_version = Some(v);
                    p.failures = 0;
                    p.next_push_ms = 0;
                    p.next_status_ms = now_ms() + STATUS_EVERY_MS;
                }
                Outcome::PushFailed(e) => {
                    p.failures = p.failures.saturating_add(1);
                    let wait = backoff(p.failures);
                    p.next_push_ms = now_ms() + wait;
                    eprintln!(
                        "{}: push to {} failed: {e}; retry in {wait}ms",
                        f.target, p.url
                    );
                }
                Outcome::Status(seen) => {
                    let lost = match seen {
                        None => true,
                        Some((valid, version)) => {
                            !valid || version.unwrap_or(0) < p.pushed_version.unwrap_or(0)
                        }
                    };
                    if lost && p.pushed_expires_ms != 0 {
                        eprintln!(
                            "{}: {} lost the AWS credentials (restarted?); pushing them again",
                            f.target, p.url
                        );
                        p.pushed_expires_ms = 0;
                        p.failures = 0;
                        p.next_push_ms = 0;
                    }
                }
                Outcome::StatusFailed => {}
            }
        }

        let now = now_ms();
        let mut next = now + MAX_SLEEP_MS;
        match &current {
            Some(c) => next = next.min(c.refresh_at_ms().max(next_fetch_ms)),
            None => next = next.min(next_fetch_ms),
        }
        let wait = next.saturating_sub(now).max(10);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.changed() => return,
        }
    }
}
