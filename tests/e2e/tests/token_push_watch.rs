//! `egressctl token refresh --watch` end to end: real Envoys running the built filter with
//! their push listener, the real OAuth2 server over TLS, a TLS echo stand-in as `crm`, a real
//! `redis-server`. `--watch` keeps every proxy supplied (no request without a valid token
//! across several lifetimes under load); refreshers sharing redis make one fetch per lifetime;
//! a proxy that restarted gets the current token again without a new fetch.
//!
//! Needs Envoy, `egress_filter.wasm` (`make wasm`), node + `npm ci` in
//! tests/support/oauth-server, redis-server (tests/support/install-test-deps.sh), python3,
//! openssl; a missing one fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod push_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use egress_e2e::*;
use push_common::{load, Upstreams, CLIENT_SECRET};

#[test]
fn watch_keeps_every_request_supplied_across_lifetimes_under_load() -> Result<()> {
    const TTL: u64 = 4;
    let redis = Redis::start()?;
    let up = Upstreams::start(TTL)?;
    // Push-only proxies (redis store): every token they have came from the watcher.
    let a = Arc::new(up.proxy(Some(&redis), None)?);
    let b = Arc::new(up.proxy(Some(&redis), Some(&a.key()))?);
    let mut watcher = Watcher::start(
        &a.config,
        &a.out,
        &[&a.push_url, &b.push_url],
        a.dir.path().join("watch.log"),
    )?;
    a.wait_token().with_context(|| watcher.output())?;
    b.wait_token().with_context(|| watcher.output())?;
    let (t0, _) = up.server.stats()?;

    // Three lifetimes (a refresh every 3s) under load on both proxies.
    let (ok, bad, seen) = load(&[a.clone(), b.clone()], 4, 3 * TTL);
    let (t1, issued) = up.server.stats()?;
    let log = watcher.output();
    assert!(
        bad.is_empty(),
        "{} of {} requests without a valid token: {:?}\nwatcher:\n{log}",
        bad.len(),
        ok + bad.len() as u64,
        &bad[..bad.len().min(5)]
    );
    assert!(ok > 40, "too little load to prove anything: {ok} requests");
    let fetched = t1 - t0;
    assert!(
        (3..=6).contains(&fetched),
        "{fetched} fetches in 3 lifetimes; watcher:\n{log}"
    );
    assert!(seen.len() >= 3, "tokens used: {}", seen.len());
    assert_eq!(issued, t1, "every token request succeeded");
    assert!(
        log.contains(&format!("crm: pushed to {} (version ", b.push_url)),
        "{log}"
    );
    assert!(!log.contains(CLIENT_SECRET) && !seen.iter().any(|t| log.contains(t)));
    assert_eq!(watcher.stop()?, Some(0), "{}", watcher.output());
    Ok(())
}

#[test]
fn two_refreshers_sharing_redis_make_one_fetch_per_lifetime() -> Result<()> {
    const TTL: u64 = 4;
    let redis = Redis::start()?;
    let up = Upstreams::start(TTL)?;
    let a = Arc::new(up.proxy(Some(&redis), None)?);
    let b = Arc::new(up.proxy(Some(&redis), Some(&a.key()))?);
    let proxies = [a.push_url.as_str(), b.push_url.as_str()];
    let mut w1 = Watcher::start(&a.config, &a.out, &proxies, a.dir.path().join("w1.log"))?;
    let mut w2 = Watcher::start(&b.config, &b.out, &proxies, b.dir.path().join("w2.log"))?;
    let started = Instant::now();
    a.wait_token().with_context(|| w1.output())?;
    b.wait_token().with_context(|| w2.output())?;
    let (ok, bad, _) = load(&[a.clone(), b.clone()], 2, 3 * TTL);
    let elapsed = started.elapsed().as_millis() as u64;
    let (requests, issued) = up.server.stats()?;
    let (l1, l2) = (w1.output(), w2.output());
    assert!(
        bad.is_empty(),
        "{:?}\nw1:\n{l1}\nw2:\n{l2}",
        &bad[..bad.len().min(5)]
    );
    assert!(ok > 20, "too little load to prove anything: {ok} requests");
    // One fetch per lifetime (a refresh every 3s) for both refreshers together; two
    // independent refreshers would make twice as many.
    let per_lifetime = elapsed / 3_000 + 1;
    assert!(
        issued <= per_lifetime + 1 && requests == issued,
        "{issued} tokens issued in {elapsed}ms (at most {} expected)\nw1:\n{l1}\nw2:\n{l2}",
        per_lifetime + 1
    );
    let fetched_lines =
        l1.matches("crm: token fetched").count() + l2.matches("crm: token fetched").count();
    assert_eq!(fetched_lines as u64, issued, "w1:\n{l1}\nw2:\n{l2}");
    // The token in redis is the one the proxies use, with its expiry as TTL.
    let pttl: i64 = redis
        .command("PTTL egress:tokens:crm")?
        .trim_start_matches(':')
        .parse()?;
    assert!(pttl > 0 && pttl <= (TTL * 1000) as i64, "PTTL {pttl}");
    assert_eq!(w1.stop()?, Some(0));
    assert_eq!(w2.stop()?, Some(0));
    // The refresh lock is held only during a fetch, and a refresher stopped mid-fetch releases
    // it: once both stopped it is gone. (Checking for it while they ran fails whenever the
    // check meets a refresh.)
    assert_eq!(
        redis.command("PTTL egress:tokens:crm:lock")?,
        ":-2",
        "the lock outlived both refreshers\nw1:\n{}\nw2:\n{}",
        w1.output(),
        w2.output()
    );
    Ok(())
}

const CRM_LOCK: &str = "egress:tokens:crm:lock";

/// A proxy sharing tokens through redis whose token endpoint hangs: with a long token timeout a
/// refresher's fetch stays in flight, under the lock (which would live 60s + the margin),
/// until the refresher is stopped.
struct HangingFetch {
    redis: Redis,
    up: Upstreams,
    proxy: OAuth2Proxy,
}

impl HangingFetch {
    fn start() -> Result<Self> {
        let redis = Redis::start()?;
        let up = Upstreams::start(60)?;
        up.server.fail_next(FailMode::Hang, 1_000)?;
        let proxy = up.proxy_with_opts(
            &up.proxy_opts(TokenStore::Redis(redis.addr()))
                .token_timeout("60s"),
        )?;
        Ok(Self { redis, up, proxy })
    }

    /// `egressctl token refresh` (`--watch` or a single refresh), output to `log`.
    fn refresher(&self, watch: bool, log: &str) -> Result<Watcher> {
        let p = &self.proxy;
        let start = if watch {
            Watcher::start
        } else {
            Watcher::start_once
        };
        start(&p.config, &p.out, &[&p.push_url], p.dir.path().join(log))
    }

    /// Waits until the refresher holds the lock and fetches, stops it (SIGTERM) and checks
    /// the lock is gone (another refresher could fetch now); its exit code.
    fn stop_mid_fetch(&self, refresher: &mut Watcher) -> Result<Option<i32>> {
        wait_for("the refresher to take the lock and fetch", || {
            Ok(self.redis.command(&format!("EXISTS {CRM_LOCK}"))? == ":1"
                && self.up.server.stats()?.0 >= 1)
        })
        .with_context(|| refresher.output())?;
        let code = refresher.stop()?;
        assert_eq!(
            self.redis.command(&format!("PTTL {CRM_LOCK}"))?,
            ":-2",
            "the stopped refresher left its lock\n{}",
            refresher.output()
        );
        assert_eq!(self.up.server.stats()?.1, 0, "no token was issued");
        Ok(code)
    }
}

#[test]
fn watch_stopped_during_a_fetch_releases_the_redis_lock() -> Result<()> {
    let f = HangingFetch::start()?;
    let mut watcher = f.refresher(true, "watch.log")?;
    // The watcher stops at once (exit 0).
    assert_eq!(
        f.stop_mid_fetch(&mut watcher)?,
        Some(0),
        "{}",
        watcher.output()
    );

    // A lock another refresher holds is never released by a stopping one.
    f.redis
        .command(&format!("SET {CRM_LOCK} another-refresher PX 60000"))?;
    let mut watcher = f.refresher(true, "watch2.log")?;
    wait_for("the second watcher to start", || {
        Ok(watcher.output().contains("watching 1 target(s)"))
    })
    .with_context(|| watcher.output())?;
    assert_eq!(watcher.stop()?, Some(0), "{}", watcher.output());
    assert_eq!(
        f.redis.command(&format!(
            "EVAL \"return redis.status_reply(redis.call('get', KEYS[1]))\" 1 {CRM_LOCK}"
        ))?,
        "+another-refresher",
        "another refresher's lock was touched\n{}",
        watcher.output()
    );
    Ok(())
}

/// The same without `--watch`: a single refresh interrupted during its fetch releases the lock
/// too, and fails (exit 3: no token reached the proxy).
#[test]
fn single_refresh_stopped_during_a_fetch_releases_the_redis_lock() -> Result<()> {
    let f = HangingFetch::start()?;
    let mut refresh = f.refresher(false, "refresh.log")?;
    assert_eq!(
        f.stop_mid_fetch(&mut refresh)?,
        Some(3),
        "{}",
        refresh.output()
    );
    assert!(
        refresh
            .output()
            .contains("stopped before every token was pushed"),
        "{}",
        refresh.output()
    );
    Ok(())
}

#[test]
fn watch_repushes_the_current_token_to_a_proxy_that_restarted() -> Result<()> {
    let redis = Redis::start()?;
    let up = Upstreams::start(60)?;
    // Push-only proxy: after a restart its token store is empty until the watcher notices.
    let mut proxy = up.proxy(Some(&redis), None)?;
    let mut watcher = Watcher::start(
        &proxy.config,
        &proxy.out,
        &[&proxy.push_url],
        proxy.dir.path().join("watch.log"),
    )?;
    proxy.wait_token().with_context(|| watcher.output())?;
    let first = bearer(&proxy.get("/egress/crm/x")?)?;
    let (fetched_before, _) = up.server.stats()?;

    // Restart Envoy from the same state directory (same ports, empty shared data).
    let lost = |w: &Watcher| w.output().matches("lost the token (restarted?)").count();
    let lost_before = lost(&watcher);
    proxy.restart_envoy()?;
    let restarted = Instant::now();
    // The watcher finds the restarted proxy without a token and pushes it again.
    wait_for("the watcher to notice the restart", || {
        Ok(lost(&watcher) > lost_before)
    })
    .with_context(|| watcher.output())?;
    proxy.wait_token().with_context(|| watcher.output())?;
    // It checks every proxy every STATUS_EVERY_MS (2 s).
    assert!(
        restarted.elapsed() < scaled(Duration::from_secs(10)),
        "re-push took {:?}",
        restarted.elapsed()
    );
    assert_eq!(
        bearer(&proxy.get("/egress/crm/x")?)?,
        first,
        "the current token was pushed again"
    );
    assert_eq!(
        up.server.stats()?.0,
        fetched_before,
        "a re-push needs no new fetch"
    );
    assert_eq!(watcher.stop()?, Some(0), "{}", watcher.output());
    Ok(())
}

#[test]
fn refresh_pushes_to_every_address_of_a_proxy_dns_name() -> Result<()> {
    let redis = Redis::start()?;
    let up = Upstreams::start(60)?;
    // Push-only: the only token it can have is the one pushed through the name.
    let proxy = up.proxy(Some(&redis), None)?;
    let port = proxy
        .push_url
        .rsplit(':')
        .next()
        .context("push url without a port")?;
    let out = egressctl()?
        .args(["token", "refresh"])
        .arg(&proxy.config)
        .arg("--out")
        .arg(&proxy.out)
        .args(["--proxy-dns", &format!("localhost:{port}")])
        .stdin(std::process::Stdio::null())
        .output()?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("pushed to http://127.0.0.1:{port} (version ")),
        "{text}"
    );
    proxy.wait_token().with_context(|| text.clone())?;
    assert!(bearer(&proxy.get("/egress/crm/x")?).is_ok());
    // A name that resolves to nothing is a failure, named.
    let out = egressctl()?
        .args(["token", "refresh"])
        .arg(&proxy.config)
        .arg("--out")
        .arg(&proxy.out)
        .args(["--proxy-dns", "no-such-host.invalid:9902"])
        .stdin(std::process::Stdio::null())
        .output()?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("no-such-host.invalid:9902"), "{text}");
    Ok(())
}
