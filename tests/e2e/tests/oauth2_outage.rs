//! OAuth2 tokens when the token endpoint misbehaves, end to end (real Envoy, the built filter,
//! the real OAuth2 server over TLS, a TLS echo stand-in as `crm`): the last good token is used
//! through an outage until it expires, then 503 `credentials_unavailable` fast, and recovery
//! once the server is back; a cold start is not ready and concurrent requests share one
//! fetch; an unreachable or silent endpoint counts as a `transport` failure.
//!
//! Needs Envoy, `egress_filter.wasm` (`make wasm`), node + `npm ci` in
//! tests/support/oauth-server, python3, openssl; a missing one fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use egress_e2e::*;

const CLIENT_ID: &str = "crm-e2e-client";
const CLIENT_SECRET: &str = "SECRET-crm-oauth-client-secret-5d1c";

/// A 503 for want of a token is answered at once: far below the time a request waiting for a
/// fetch would take (the token timeout, 5 s here, plus margins), with room for a loaded
/// 2-core machine.
const FAIL_FAST: Duration = Duration::from_secs(4);

fn tls_server(ttl: u64) -> Result<OAuthServer> {
    OAuthServer::start(
        OAuthOpts::new(ttl, vec![OAuthClient::basic(CLIENT_ID, CLIENT_SECRET)])
            .tls(Pki::generate()?.server()),
    )
}

fn opts(server: &OAuthServer, engine: Engine) -> OAuth2ProxyOpts {
    OAuth2ProxyOpts::new(&server.token_url(), CLIENT_ID, CLIENT_SECRET).engine(engine)
}

fn outage_uses_the_last_token_until_expiry_then_fails_fast_and_recovers(
    engine: Engine,
) -> Result<()> {
    const TTL: u64 = 4;
    let mut server = tls_server(TTL)?;
    let proxy = OAuth2Proxy::start(&opts(&server, engine))?;
    proxy.wait_token()?;
    // The filter obtained the token before /ready said so: it expires by then + TTL.
    let expires_by = now_unix_ms() + TTL * 1000;
    let token = bearer(&proxy.get(&format!("{CRM}/before"))?)?;
    let exp_ms = server.check_issued(&token, CLIENT_ID)? * 1000;
    server.stop()?;

    // (Unix ms at the request's start, status, error code, latency), until 5 requests were
    // sent well after expiry (however long that takes on this machine).
    let mut samples: Vec<(u64, u16, String, Duration)> = Vec::new();
    wait_for("5 requests after the token expired", || {
        let at = now_unix_ms();
        let (resp, latency) = proxy.timed_get(&format!("{CRM}/during"))?;
        let code = if resp.status == 200 {
            assert_eq!(bearer(&resp)?, token, "no other token can exist");
            String::new()
        } else {
            resp.json()?["error"].as_str().unwrap_or("?").to_owned()
        };
        samples.push((at, resp.status, code, latency));
        thread::sleep(Duration::from_millis(100));
        Ok(samples.iter().filter(|s| s.0 > expires_by + 200).count() >= 5)
    })?;
    // Before expiry: the last good token, although every refresh fails.
    let before: Vec<_> = samples.iter().filter(|s| s.0 + 100 < exp_ms).collect();
    assert!(!before.is_empty(), "no request before expiry: {samples:?}");
    for s in &before {
        assert_eq!(s.1, 200, "{}ms before expiry: {s:?}", exp_ms - s.0);
    }
    // After expiry: 503 credentials_unavailable, fast.
    for s in samples.iter().filter(|s| s.0 > expires_by + 200) {
        assert_eq!(
            (s.1, s.2.as_str()),
            (503, "credentials_unavailable"),
            "{}ms after expiry: {s:?}",
            s.0 - expires_by
        );
        assert!(s.3 < FAIL_FAST, "a 503 took {:?}", s.3);
    }
    let mut unavailable_seen = samples.iter().filter(|s| s.1 == 503).count() as u64;
    let failures = proxy.stats_under("wasmcustom.egress.crm.token_fetch_failures.")?;
    assert!(
        failures.values().sum::<u64>() > 0,
        "no token_fetch_failures counted: {failures:?}"
    );

    // The server comes back on the same port: requests recover (each refused one fast).
    server.restart()?;
    let back = Instant::now();
    let recovered = wait_until("requests to recover after the restart", || {
        let (resp, latency) = proxy.timed_get(&format!("{CRM}/after"))?;
        if resp.status == 200 {
            return Ok(Probe::Ready(bearer(&resp)?));
        }
        ensure!(latency < FAIL_FAST, "a refused request took {latency:?}");
        assert_eq!(resp.json()?["error"], "credentials_unavailable");
        unavailable_seen += 1;
        thread::sleep(Duration::from_millis(100));
        Ok(Probe::Pending(format!("{} {}", resp.status, resp.body)))
    })?;
    eprintln!(
        "failures {failures:?}; recovered {:?} after the restart",
        back.elapsed()
    );
    assert_ne!(recovered, token);
    server.check_issued(&recovered, CLIENT_ID)?;
    assert_eq!(proxy.get("/ready")?.status, 200);
    let counted = proxy.stat("wasmcustom.egress.crm.credentials_unavailable")?;
    assert_eq!(
        counted, unavailable_seen,
        "credentials_unavailable counts each 503 we got, once"
    );
    let warn = proxy
        .envoy
        .log()
        .lines()
        .any(|l| l.contains(r#""msg":"Token fetch failed""#));
    assert!(warn, "no `Token fetch failed` line in Envoy's log");
    Ok(())
}

fn cold_start_is_not_ready_and_concurrent_requests_share_one_fetch(engine: Engine) -> Result<()> {
    const CLIENTS: usize = 16;
    // The first token request is answered only after DELAY_MS (under the token timeout), so
    // the burst below surely arrives while it is held, even on a slow machine.
    const DELAY_MS: u64 = 8_000;
    let server = tls_server(600)?;
    server.delay_next(DELAY_MS)?;
    let proxy = Arc::new(OAuth2Proxy::start(
        &opts(&server, engine).token_timeout("15s").workers(4),
    )?);
    // The fetch has reached the server: from now on, DELAY_MS without a token.
    wait_for(
        "the filter to ask for a token",
        || Ok(server.stats()?.0 > 0),
    )?;
    let fetch_seen = Instant::now();
    let ready = proxy.get("/ready")?;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()?["targets"], serde_json::json!(["crm"]));
    assert_eq!(server.stats()?.1, 0, "still no token issued");

    let burst_at = fetch_seen.elapsed();
    ensure!(
        burst_at < Duration::from_millis(DELAY_MS - 3_000),
        "too slow to send the burst while the fetch is delayed ({burst_at:?})"
    );
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (proxy, barrier) = (proxy.clone(), barrier.clone());
            thread::spawn(move || -> Result<(String, Duration)> {
                barrier.wait();
                let (resp, latency) = proxy.timed_get(&format!("{CRM}/cold/{i}"))?;
                Ok((bearer(&resp)?, latency))
            })
        })
        .collect();
    let results: Vec<(String, Duration)> = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect::<Result<_>>()?;
    let tokens: BTreeSet<&str> = results.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(tokens.len(), 1, "one token for all: {tokens:?}");
    server.check_issued(results[0].0.as_str(), CLIENT_ID)?;
    // They were paused until the fetch completed (at least 3s after they were sent), then
    // resumed (none got a 503).
    let quick: Vec<_> = results
        .iter()
        .map(|r| r.1)
        .filter(|l| *l < Duration::from_secs(1))
        .collect();
    assert!(quick.is_empty(), "requests that did not wait: {quick:?}");
    assert_eq!(server.stats()?, (1, 1), "exactly one token request");
    assert_eq!(proxy.stat("wasmcustom.egress.crm.tokens_fetched")?, 1);
    assert_eq!(proxy.get("/ready")?.status, 200);
    Ok(())
}

/// README: a failed fetch is logged and counted with a reason, `transport` for a token
/// endpoint that could not be reached. Envoy turns a refused connection and a callout
/// timeout into its own 503/504 reply, which the filter takes for the server's answer.
fn unreachable_or_silent_token_endpoint_counts_as_transport_failure(engine: Engine) -> Result<()> {
    let mut server = tls_server(600)?;
    // Nothing listens on the token port (connection refused).
    server.stop()?;
    let proxy = OAuth2Proxy::start(&opts(&server, engine).token_timeout("1s"))?;
    let prefix = "wasmcustom.egress.crm.token_fetch_failures.";
    wait_for("a fetch failure to be counted", || {
        Ok(proxy.stats_under(prefix)?.values().sum::<u64>() > 0)
    })?;
    let refused = proxy.stats_under(prefix)?;
    // The server is back but never answers: the fetch times out after token_timeout. (Hanging
    // from its first request: a fetch answered between a restart and a later fail_next got a
    // token, and no failure followed.)
    server.restart_failing(FailMode::Hang, 100)?;
    wait_for("a timeout to be counted", || {
        Ok(server.stats()?.0 > 0 && proxy.stats_under(prefix)? != refused)
    })?;
    let all = proxy.stats_under(prefix)?;
    let log: Vec<String> = proxy
        .envoy
        .log()
        .lines()
        .filter(|l| l.contains("Token fetch failed"))
        .map(str::to_owned)
        .collect();
    eprintln!("refused: {refused:?}; then with a silent server: {all:?}\n{log:#?}");
    assert_eq!(
        all.keys().cloned().collect::<Vec<_>>(),
        vec![format!("{prefix}transport")],
        "connection refused and timeouts are transport failures, not replies"
    );
    Ok(())
}

engine_tests!(
    outage_uses_the_last_token_until_expiry_then_fails_fast_and_recovers,
    cold_start_is_not_ready_and_concurrent_requests_share_one_fetch,
    unreachable_or_silent_token_endpoint_counts_as_transport_failure,
);
