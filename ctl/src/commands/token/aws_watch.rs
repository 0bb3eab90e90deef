//! `token refresh --watch` for one `web_identity` target: keeps valid temporary credentials in
//! every proxy. Refreshes [`super::REFRESH_BEFORE_MS`] ahead of expiry (at most half the
//! lifetime ahead), retries failures with backoff, pushes to proxies that lack the current
//! set, and re-pushes to a proxy whose status shows it lost them (a restart).

use super::{obtain, obtained_line, AwsFetcher, Held};
use crate::commands::token::watch_proxies::{
    push_round, FetchRetry, ProxyState, Wording, MAX_SLEEP_MS,
};
use crate::commands::token::Ctx;
use crate::proxy::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How the lines name pushed AWS credentials.
const AWS: Wording = Wording {
    pushed: "pushed AWS credentials",
    lost: "the AWS credentials (restarted?); pushing them again",
};

pub async fn watch_target(ctx: Arc<Ctx>, f: AwsFetcher, mut stop: watch::Receiver<bool>) {
    let mut current: Option<Held> = None;
    let mut retry = FetchRetry::default();
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
                proxies.push(ProxyState::new(u.clone()));
            }
        }

        let now = now_ms();
        let due = current.as_ref().is_none_or(|c| now >= c.refresh_at_ms());
        if due && retry.ready(now) {
            let got = tokio::select! {
                r = obtain(&ctx, &f) => r,
                _ = stop.changed() => {
                    // As the OAuth2 watch: release the lock the dropped obtain may hold.
                    ctx.release_after_stop(&super::store_name(&f.target)).await;
                    return;
                }
            };
            match got {
                Ok((held, origin)) => {
                    println!("{}", obtained_line(&f.target, &held, origin));
                    current = Some(held);
                    retry.succeeded();
                }
                Err(e) => retry.failed(&f.target, e),
            }
        }

        let now = now_ms();
        let valid = current.as_ref().filter(|c| c.is_valid(now));
        let push = valid.map(|c| (c.expires_at_ms, c.push_body(&f.target)));
        if push_round(&ctx, &f.target, &mut proxies, push, &AWS, &mut stop)
            .await
            .is_none()
        {
            return;
        }

        let now = now_ms();
        let mut next = now + MAX_SLEEP_MS;
        match &current {
            Some(c) => next = next.min(c.refresh_at_ms().max(retry.next_ms)),
            None => next = next.min(retry.next_ms),
        }
        let wait = next.saturating_sub(now).max(10);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.changed() => return,
        }
    }
}
