//! OAuth2 client credentials end to end: real Envoy (`--concurrency` >= 2) running the built
//! `egress_filter.wasm`, a TLS echo stand-in as the target `crm`, and the real OAuth2 server
//! (`oidc-provider`, [`OAuthServer`]) over TLS verified with the test CA. Each test writes its
//! own small config, compiles it with `egressctl compile` and starts its own processes on free
//! loopback ports, so the tests run side by side.
//!
//! What the filter promises (README, "OAuth2 tokens"): the bearer it injects is a token the
//! server issued; one fetch per refresh per proxy whatever the load and the number of workers;
//! a background refresh `refresh_before_expiry` ahead of expiry, so no request waits.
//! Outages are in `oauth2_outage.rs`, client authentication and logs in
//! `oauth2_client_auth.rs`.
//!
//! Needs Envoy, `egress_filter.wasm` (`make wasm`), node + `npm ci` in
//! tests/support/oauth-server, python3, openssl; a missing one fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use egress_e2e::*;

const CLIENT_ID: &str = "crm-e2e-client";
/// Unique, so a leak is easy to find.
const CLIENT_SECRET: &str = "SECRET-crm-oauth-client-secret-5d1c";

fn tls_server(ttl: u64) -> Result<OAuthServer> {
    OAuthServer::start(
        OAuthOpts::new(ttl, vec![OAuthClient::basic(CLIENT_ID, CLIENT_SECRET)])
            .tls(Pki::generate()?.server()),
    )
}

fn opts(server: &OAuthServer, engine: Engine) -> OAuth2ProxyOpts {
    OAuth2ProxyOpts::new(&server.token_url(), CLIENT_ID, CLIENT_SECRET).engine(engine)
}

/// Milliseconds between fetches: `ttl - min(refresh_before, ttl / 2)`.
fn refresh_interval_ms(ttl_s: u64, refresh_before_ms: u64) -> u64 {
    ttl_s * 1000 - refresh_before_ms.min(ttl_s * 1000 / 2)
}

fn injected_bearer_is_a_token_the_server_issued_and_accepts(engine: Engine) -> Result<()> {
    let server = tls_server(600)?;
    let proxy = OAuth2Proxy::start(&opts(&server, engine))?;
    proxy.wait_token()?;

    // A caller's own Authorization is replaced, not forwarded.
    let resp = Request::get(&format!("{}{CRM}/accounts?id=7", proxy.base))
        .header("authorization", "Bearer caller-supplied")
        .send()?;
    let token = bearer(&resp)?;
    assert_ne!(token, "caller-supplied");
    let echo = resp.json()?;
    assert_eq!(echo["path"], "/api/accounts", "{echo}");
    let exp = server.check_issued(&token, CLIENT_ID)?;
    assert!(exp * 1000 > now_unix_ms() + 500_000, "ttl 600s, exp {exp}");
    // The check is real: a token the server never issued is inactive.
    assert_eq!(server.introspect("not-a-token-it-issued")?["active"], false);

    // Every worker injects the same token (one per proxy), and the server issued exactly one.
    for _ in 0..10 {
        assert_eq!(bearer(&proxy.get(&format!("{CRM}/x"))?)?, token);
    }
    assert_eq!(server.stats()?, (1, 1));
    assert_eq!(proxy.stat("wasmcustom.egress.crm.tokens_fetched")?, 1);
    Ok(())
}

fn one_token_fetch_per_lifetime_under_concurrent_load(engine: Engine) -> Result<()> {
    const TTL: u64 = 4;
    const CLIENTS: usize = 8;
    let interval = refresh_interval_ms(TTL, 1000);
    let server = tls_server(TTL)?;
    let proxy = Arc::new(OAuth2Proxy::start(&opts(&server, engine).workers(4))?);
    let t0 = proxy.wait_token()?;
    let server = Arc::new(server);
    let end = t0 + Duration::from_secs(3 * TTL);

    // Tokens seen so far and their `exp` (Unix s): each new one is checked with the server
    // when first seen, and no token may be used after it expired.
    let seen: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (proxy, server, seen) = (proxy.clone(), server.clone(), seen.clone());
            thread::spawn(move || -> Result<(u64, Vec<String>)> {
                let (mut ok, mut bad) = (0u64, Vec::new());
                while Instant::now() < end {
                    let at = now_unix_ms();
                    let resp = proxy.get(&format!("{CRM}/load/{i}"))?;
                    let token = match bearer(&resp) {
                        Ok(token) => token,
                        Err(e) => {
                            bad.push(format!("{e:#}"));
                            continue;
                        }
                    };
                    let known = seen.lock().unwrap().get(&token).copied();
                    let exp = match known {
                        Some(exp) => exp,
                        None => {
                            let exp = server.check_issued(&token, CLIENT_ID)?;
                            seen.lock().unwrap().insert(token, exp);
                            exp
                        }
                    };
                    // `exp` is whole seconds, at most 1s before the filter's own expiry.
                    if at >= exp * 1000 + 1000 {
                        bad.push(format!("a token used {}ms after its exp", at - exp * 1000));
                    } else {
                        ok += 1;
                    }
                }
                Ok((ok, bad))
            })
        })
        .collect();
    let (mut ok, mut bad) = (0, Vec::new());
    for h in handles {
        let (o, b) = h.join().unwrap()?;
        ok += o;
        bad.extend(b);
    }
    assert!(
        bad.is_empty(),
        "{} of {} requests lacked a valid token, e.g. {:?}",
        bad.len(),
        ok + bad.len() as u64,
        bad.first()
    );

    // Fetches keep happening in the background: read the server's count and Envoy's counter
    // at a quiet moment (both unchanged across the read).
    let ((requests, successes), fetched, at) = wait_until("a quiet moment to read counts", || {
        let before = server.stats()?;
        let at = Instant::now();
        let fetched = proxy.stat("wasmcustom.egress.crm.tokens_fetched")?;
        Ok(if server.stats()? == before && fetched == before.1 {
            Probe::Ready((before, fetched, at))
        } else {
            Probe::Pending(format!("server {before:?}, envoy {fetched}"))
        })
    })?;
    let elapsed = at.duration_since(t0).as_millis() as u64;
    let lifetimes = elapsed / interval;
    eprintln!(
        "{ok} requests from {CLIENTS} threads over {elapsed}ms (refresh every {interval}ms): \
         {requests} token requests, {} distinct tokens",
        seen.lock().unwrap().len()
    );
    assert!(ok > 50, "too little load to prove anything: {ok} requests");
    assert!(
        (lifetimes..=lifetimes + 1).contains(&requests),
        "{requests} token requests in {elapsed}ms with a refresh every {interval}ms: want \
         {lifetimes} or {}",
        lifetimes + 1
    );
    assert_eq!(requests, successes, "no fetch failed");
    assert_eq!(
        fetched, successes,
        "tokens_fetched counts the server's issued tokens"
    );
    let distinct = seen.lock().unwrap().len() as u64;
    assert!(
        distinct + 1 >= successes && distinct <= successes,
        "{distinct} distinct tokens used, {successes} issued"
    );
    assert_eq!(
        proxy.stat("wasmcustom.egress.crm.credentials_unavailable")?,
        0
    );
    Ok(())
}

/// The refresh runs in the background: while it is in flight (the server holds its answer
/// back), requests keep flowing with the old token instead of waiting for the new one. No
/// latency guess: a request that waited would come back with the new token, after the server
/// issued it.
fn token_is_refreshed_before_expiry_without_requests_waiting(engine: Engine) -> Result<()> {
    // A 10s token refreshed 5s ahead; the refresh is answered 2.5s late, still before expiry.
    const TTL: u64 = 10;
    const DELAY_MS: u64 = 2_500;
    let server = tls_server(TTL)?;
    let proxy = OAuth2Proxy::start(&opts(&server, engine).refresh_before_expiry("5s"))?;
    proxy.wait_token()?;
    let old = bearer(&proxy.get(&format!("{CRM}/poll"))?)?;
    let old_exp_ms = server.check_issued(&old, CLIENT_ID)? * 1000;
    server.delay_next(DELAY_MS)?;

    // The refresh reached the server and is held there.
    wait_until("the background refresh to reach the server", || {
        let stats = server.stats()?;
        Ok(if stats.0 >= 2 {
            Probe::Ready(())
        } else {
            Probe::Pending(format!("{stats:?}"))
        })
    })?;
    let mut during = 0;
    loop {
        let resp = proxy.get(&format!("{CRM}/poll"))?;
        let token = bearer(&resp)?;
        let (_, issued) = server.stats()?;
        if issued >= 2 {
            let seen_at = now_unix_ms();
            assert!(
                seen_at < old_exp_ms,
                "the refresh was answered {}ms after the old token expired",
                seen_at - old_exp_ms
            );
            break;
        }
        // The new token did not exist yet when this request completed: it did not wait.
        assert_eq!(token, old, "a token other than the only one issued so far");
        during += 1;
    }
    assert!(
        during >= 1,
        "no request completed while the refresh was in flight"
    );
    let new = wait_until("the new token to reach the upstream", || {
        let token = bearer(&proxy.get(&format!("{CRM}/poll"))?)?;
        Ok(if token == old {
            Probe::Pending("still the old token".into())
        } else {
            Probe::Ready((now_unix_ms(), token))
        })
    })?;
    server.check_issued(&new.1, CLIENT_ID)?;
    eprintln!(
        "{during} requests served with the old token during the refresh; the new one in use \
         {}ms before the old one's expiry",
        old_exp_ms as i64 - new.0 as i64
    );
    assert_eq!(server.stats()?, (2, 2));
    assert_eq!(
        proxy.stat("wasmcustom.egress.crm.credentials_unavailable")?,
        0
    );
    let refreshed = proxy
        .envoy
        .log()
        .lines()
        .filter(|l| {
            l.contains(r#""msg":"Credentials refreshed""#) && l.contains(r#""target":"crm""#)
        })
        .count();
    assert!(
        refreshed >= 2,
        "{refreshed} `Credentials refreshed` lines in Envoy's log"
    );
    Ok(())
}

engine_tests!(
    injected_bearer_is_a_token_the_server_issued_and_accepts,
    one_token_fetch_per_lifetime_under_concurrent_load,
    token_is_refreshed_before_expiry_without_requests_waiting,
);
