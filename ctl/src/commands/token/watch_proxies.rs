//! What `token refresh --watch` does for one target, whatever it pushes (an OAuth2 token, AWS
//! credentials): retry a failed fetch after `schedule::backoff_ms` ([`FetchRetry`]); push the
//! current credential to each proxy that does not hold it yet (a failed push retries with the
//! same backoff, per proxy); every [`STATUS_EVERY_MS`] ask the others for their status, and
//! push again at once to one that shows the target without a valid credential or with a lower
//! version than we gave it (it restarted).

use super::Ctx;
use crate::proxy::now_ms;
use egress_core::tokens::schedule::backoff_ms;
use egress_core::tokens::time::rfc3339;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often each proxy's status is checked (restart detection).
pub const STATUS_EVERY_MS: u64 = 2_000;
/// Longest sleep between two looks at the schedule.
pub const MAX_SLEEP_MS: u64 = 1_000;

/// The fetches' failures in a row, and when the next attempt may start.
#[derive(Debug, Default)]
pub struct FetchRetry {
    failures: u32,
    /// No fetch before this (unix ms; 0: whenever one is due).
    pub next_ms: u64,
}

impl FetchRetry {
    /// Whether a fetch that is due may start at `now`.
    pub fn ready(&self, now: u64) -> bool {
        now >= self.next_ms
    }

    /// A credential arrived (fetched, or stored by another refresher): no backoff.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.next_ms = 0;
    }

    /// A fetch for `target` failed with `e`: backs off, and says so.
    pub fn failed(&mut self, target: &str, e: impl std::fmt::Display) {
        self.failures = self.failures.saturating_add(1);
        let failures = self.failures;
        let wait = backoff_ms(failures, rand::random::<f64>());
        self.next_ms = now_ms() + wait;
        eprintln!("{target}: {e}; {failures} failure(s) in a row, retry in {wait}ms");
    }
}

/// What we know about one proxy, for one target.
pub struct ProxyState {
    pub url: String,
    /// `expires_at_ms` of the credential the proxy holds from us (0: none, or it must be
    /// re-pushed).
    pub pushed_expires_ms: u64,
    /// The version the proxy gave our last push.
    pub pushed_version: Option<u64>,
    pub failures: u32,
    pub next_push_ms: u64,
    pub next_status_ms: u64,
}

impl ProxyState {
    /// A proxy we have pushed nothing to yet.
    pub fn new(url: String) -> Self {
        Self {
            url,
            pushed_expires_ms: 0,
            pushed_version: None,
            failures: 0,
            next_push_ms: 0,
            next_status_ms: 0,
        }
    }
}

/// How the lines name what is pushed.
pub struct Wording {
    /// `<target>: <pushed> to <url> (version v, expires t)`.
    pub pushed: &'static str,
    /// `<target>: <url> lost <lost>`.
    pub lost: &'static str,
}

enum Outcome {
    Pushed(u64),
    PushFailed(String),
    /// The proxy's status for the target: valid, version.
    Status(Option<(bool, Option<u64>)>),
    StatusFailed,
}

/// One round with every proxy: pushes `current` (the valid credential's `expires_at_ms` and
/// push body) where it is missing, asks the others how they are, and records the answers.
/// `None` when `stop` changed meanwhile.
pub async fn push_round<B>(
    ctx: &Arc<Ctx>,
    target: &str,
    proxies: &mut [ProxyState],
    current: Option<(u64, B)>,
    wording: &Wording,
    stop: &mut watch::Receiver<bool>,
) -> Option<()>
where
    B: Serialize + Clone + Send + Sync + 'static,
{
    let now = now_ms();
    let mut calls = JoinSet::new();
    for (i, p) in proxies.iter_mut().enumerate() {
        let ctx = ctx.clone();
        let url = p.url.clone();
        if let Some((expires_at_ms, body)) = &current {
            if p.pushed_expires_ms != *expires_at_ms && now >= p.next_push_ms {
                let body = body.clone();
                calls.spawn(async move {
                    let r = ctx.client.push(&url, &body).await;
                    (
                        i,
                        match r {
                            Ok(v) => Outcome::Pushed(v),
                            Err(e) => Outcome::PushFailed(format!("{e:#}")),
                        },
                    )
                });
                continue;
            }
        }
        if p.pushed_version.is_some() && now >= p.next_status_ms {
            p.next_status_ms = now + STATUS_EVERY_MS;
            let target = target.to_owned();
            calls.spawn(async move {
                let r = ctx.client.status(&url).await;
                (
                    i,
                    match r {
                        Ok(list) => Outcome::Status(
                            list.into_iter()
                                .find(|t| t.target == target)
                                .map(|t| (t.valid, t.version)),
                        ),
                        Err(_) => Outcome::StatusFailed,
                    },
                )
            });
        }
    }
    let pushed_expires = current
        .as_ref()
        .map_or(0, |(expires_at_ms, _)| *expires_at_ms);
    loop {
        let joined = tokio::select! {
            j = calls.join_next() => j,
            _ = stop.changed() => return None,
        };
        let Some(Ok((i, outcome))) = joined else {
            if joined.is_none() {
                return Some(());
            }
            continue;
        };
        let Some(p) = proxies.get_mut(i) else {
            continue;
        };
        match outcome {
            Outcome::Pushed(v) => {
                println!(
                    "{target}: {} to {} (version {v}, expires {})",
                    wording.pushed,
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
                let wait = backoff_ms(p.failures, rand::random::<f64>());
                p.next_push_ms = now_ms() + wait;
                eprintln!("{target}: push to {} failed: {e}; retry in {wait}ms", p.url);
            }
            Outcome::Status(seen) => {
                let lost = match seen {
                    None => true,
                    Some((valid, version)) => {
                        !valid || version.unwrap_or(0) < p.pushed_version.unwrap_or(0)
                    }
                };
                if lost && p.pushed_expires_ms != 0 {
                    eprintln!("{target}: {} lost {}", p.url, wording.lost);
                    p.pushed_expires_ms = 0;
                    p.failures = 0;
                    p.next_push_ms = 0;
                }
            }
            // Unreachable for now: keep asking; the push follows once it answers.
            Outcome::StatusFailed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_core::tokens::schedule::BACKOFF_MAX_MS;

    #[test]
    fn a_failed_fetch_backs_off_and_a_credential_ends_the_backoff() {
        let mut r = FetchRetry::default();
        assert!(r.ready(0));
        let before = now_ms();
        r.failed("t", "token endpoint down");
        assert_eq!(r.failures, 1);
        assert!(!r.ready(before), "retried at once");
        assert!(r.ready(before + BACKOFF_MAX_MS + 60_000));
        r.failed("t", "token endpoint down");
        assert_eq!(r.failures, 2);
        r.succeeded();
        assert_eq!((r.failures, r.next_ms), (0, 0));
        assert!(r.ready(0));
    }
}
