//! OAuth2 client credentials end to end: real Envoy (`--concurrency` >= 2) running the built
//! `egress_filter.wasm`, a TLS echo stand-in as the target `crm`, and the real OAuth2 server
//! (`oidc-provider`, [`OAuthServer`]) over TLS verified with the test CA. Each test writes its
//! own small config, compiles it with `egressctl compile` and starts its own processes on free
//! loopback ports, so the tests run side by side.
//!
//! What the filter promises (README, "OAuth2 tokens"): the bearer it injects is a token the
//! server issued; one fetch per refresh per proxy whatever the load and the number of workers;
//! a background refresh `refresh_before_expiry` ahead of expiry, so no request waits; the last
//! good token is used through an outage until it expires, then 503 `credentials_unavailable`
//! fast, and recovery once the server is back; readiness follows the token; every client
//! authentication method works; no secret or token is ever logged.
//!
//! Needs Envoy, `egress_filter.wasm` (`make wasm`), node + `npm ci` in
//! tests/support/oauth-server, python3, openssl. Without the OAuth2 server the tests print
//! SKIPPED (and fail under CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use egress_e2e::*;
use serde_json::Value;

const CLIENT_ID: &str = "crm-e2e-client";
/// Unique, so a leak is easy to find.
const CLIENT_SECRET: &str = "SECRET-crm-oauth-client-secret-5d1c";
/// The route to the target `crm`.
const CRM: &str = "/egress/crm";

/// Milliseconds since the Unix epoch (to compare with the server's `exp`).
fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The setup: config, egressctl compile, Envoy
// ---------------------------------------------------------------------------

/// How the filter authenticates at the token endpoint.
#[derive(Clone)]
enum Auth {
    Basic,
    Post,
    PrivateKeyJwt {
        key: PathBuf,
        alg: &'static str,
        kid: &'static str,
    },
}

/// The OAuth2 part of the target `crm`.
#[derive(Clone)]
struct Oauth2 {
    token_url: String,
    auth: Auth,
    refresh_before_expiry: &'static str,
    token_timeout: &'static str,
}

impl Oauth2 {
    fn new(server: &OAuthServer) -> Self {
        Oauth2 {
            token_url: server.token_url(),
            auth: Auth::Basic,
            refresh_before_expiry: "1s",
            token_timeout: "5s",
        }
    }

    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    fn refresh_before_expiry(mut self, d: &'static str) -> Self {
        self.refresh_before_expiry = d;
        self
    }

    fn yaml(&self) -> String {
        let mut y = format!(
            "        type: oauth2_client_credentials\n        \
             token_url: \"{}\"\n        client_id: \"{CLIENT_ID}\"\n        \
             scopes: [\"api\"]\n        refresh_before_expiry: {}\n        token_timeout: {}\n",
            self.token_url, self.refresh_before_expiry, self.token_timeout
        );
        match &self.auth {
            Auth::Basic => {
                y += &format!(
                    "        client_secret: \"{CLIENT_SECRET}\"\n        client_auth: client_secret_basic\n"
                );
            }
            Auth::Post => {
                y += &format!(
                    "        client_secret: \"{CLIENT_SECRET}\"\n        client_auth: client_secret_post\n"
                );
            }
            Auth::PrivateKeyJwt { key, alg, kid } => {
                y += &format!(
                    "        client_auth: private_key_jwt\n        private_key: \"{}\"\n        \
                     signing_alg: {alg}\n        key_id: \"{kid}\"\n",
                    key.display()
                );
            }
        }
        y
    }
}

/// The TLS echo stand-in behind `crm`, Envoy, and where to reach them.
struct Proxy {
    envoy: Envoy,
    base: String,
    dir: TempDir,
    compile_output: String,
    _upstream: Standin,
}

impl Proxy {
    /// Writes the config (one OAuth2 target `crm`), compiles it and starts Envoy with
    /// `--concurrency <workers>` and the wasm component at debug level. Waits for Envoy's
    /// admin, not for a token.
    fn start(oauth2: &Oauth2, workers: u32) -> Result<Proxy> {
        let pki = Pki::generate()?;
        let upstream = Standin::start(StandinOpts::new("crm").tls(pki.server()))?;
        let (listen, admin) = (free_port()?, free_port()?);
        let dir = scratch_dir()?;
        let config = dir.path().join("config.yaml");
        let text = format!(
            "http:\n  addr: \"127.0.0.1:{listen}\"\n\
             egress:\n  enabled: true\n  targets:\n    crm:\n      \
             url: \"https://127.0.0.1:{port}/api\"\n      timeout: 10s\n      \
             tls:\n        ca_cert: \"{ca}\"\n      auth:\n{auth}\
             \x20 routes:\n    - path_prefix: \"{CRM}\"\n      target: crm\n      strip_prefix: \"{CRM}\"\n\
             endpoints:\n  egress: /egress\n  health: /health\n  ready: /ready\n\
             logger:\n  level: debug\n  format: json\n  output: \"{log}\"\n",
            port = upstream.port(),
            ca = pki.ca_cert().display(),
            auth = oauth2.yaml(),
            log = dir.path().join("requests.log").display(),
        );
        std::fs::write(&config, text)?;
        let out = dir.path().join("out");
        let compiled = egressctl()?
            .arg("compile")
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .args(["--admin", &format!("127.0.0.1:{admin}"), "--wasm"])
            .arg(filter_wasm())
            .stdin(Stdio::null())
            .output()
            .context("running egressctl compile")?;
        let compile_output = format!(
            "{}{}",
            String::from_utf8_lossy(&compiled.stdout),
            String::from_utf8_lossy(&compiled.stderr)
        );
        if !compiled.status.success() {
            bail!("egressctl compile failed: {compile_output}");
        }
        let workers = workers.to_string();
        let envoy = Envoy::start(
            &out.join("envoy.yaml"),
            &[
                "--concurrency",
                &workers,
                "--component-log-level",
                "wasm:debug",
                "--file-flush-interval-msec",
                "100",
            ],
        )?;
        envoy.wait_ready(&format!("127.0.0.1:{admin}"))?;
        Ok(Proxy {
            envoy,
            base: format!("http://127.0.0.1:{listen}"),
            dir,
            compile_output,
            _upstream: upstream,
        })
    }

    fn get(&self, path: &str) -> Result<Response> {
        Request::get(&format!("{}{path}", self.base))
            .timeout(Duration::from_secs(20))
            .send()
    }

    /// `GET` timed.
    fn timed_get(&self, path: &str) -> Result<(Response, Duration)> {
        let start = Instant::now();
        let resp = self.get(path)?;
        Ok((resp, start.elapsed()))
    }

    /// Polls the filter's ready endpoint until 200 (a token is held); returns when.
    fn wait_token(&self, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let resp = self.get("/ready")?;
            if resp.status == 200 {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                bail!(
                    "no token within {within:?}: /ready {} {}; envoy log:\n{}",
                    resp.status,
                    resp.body,
                    self.envoy.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A counter (0 when not defined yet).
    fn stat(&self, name: &str) -> Result<u64> {
        Ok(self.envoy.stat(name)?.unwrap_or(0))
    }

    /// Every stat whose name starts with `prefix`.
    fn stats_under(&self, prefix: &str) -> Result<BTreeMap<String, u64>> {
        let body = self.envoy.admin_get("/stats")?.body;
        Ok(body
            .lines()
            .filter_map(|line| {
                let (k, v) = line.split_once(": ")?;
                let v = v.trim().parse().ok()?;
                k.starts_with(prefix).then(|| (k.to_owned(), v))
            })
            .collect())
    }

    fn requests_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default()
    }
}

/// The bearer token the echo upstream received (the response must be a 200 echo).
fn bearer(resp: &Response) -> Result<String> {
    ensure!(
        resp.status == 200,
        "expected a 200 echo, got {} {}",
        resp.status,
        resp.body
    );
    let echo = resp.json()?;
    let auth = echo["headers"]["authorization"]
        .as_str()
        .with_context(|| format!("no authorization reached the upstream: {echo}"))?;
    let token = auth
        .strip_prefix("Bearer ")
        .with_context(|| format!("not a bearer credential: {auth:?}"))?;
    ensure!(!token.is_empty(), "empty bearer token");
    Ok(token.to_owned())
}

/// What the server says about a token it may have issued (`/__introspect` on its control
/// port: the provider's own token store): `active`, `client_id`, `exp`.
fn introspect(server: &OAuthServer, token: &str) -> Result<Value> {
    let encoded: String = token
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let url = format!(
        "http://127.0.0.1:{}/__introspect?token={encoded}",
        server.control_port()
    );
    let resp = Request::get(&url).timeout(Duration::from_secs(10)).send()?;
    ensure!(
        resp.status == 200,
        "introspect: {} {}",
        resp.status,
        resp.body
    );
    resp.json()
}

/// Asserts the server issued `token` to our client and it is valid now; returns its `exp`
/// (Unix seconds).
fn assert_issued(server: &OAuthServer, token: &str) -> Result<u64> {
    let info = introspect(server, token)?;
    ensure!(
        info["active"] == true && info["client_id"] == CLIENT_ID,
        "the upstream got a token the server does not know as valid for {CLIENT_ID}: {info}"
    );
    info["exp"].as_u64().context("introspection without exp")
}

/// `POST /__fail?mode=delay`: the next token request is answered normally after `ms`.
fn delay_next_token(server: &OAuthServer, ms: u64) -> Result<()> {
    let url = format!(
        "http://127.0.0.1:{}/__fail?mode=delay&count=1&ms={ms}",
        server.control_port()
    );
    let resp = Request::post(&url)
        .timeout(Duration::from_secs(10))
        .send()?;
    ensure!(resp.status == 200, "delay: {} {}", resp.status, resp.body);
    Ok(())
}

fn secret_client() -> OAuthClient {
    OAuthClient::basic(CLIENT_ID, CLIENT_SECRET)
}

fn tls_server(ttl: u64, client: OAuthClient) -> Result<OAuthServer> {
    OAuthServer::start(OAuthOpts::new(ttl, vec![client]).tls(Pki::generate()?.server()))
}

/// Seconds between fetches: `ttl - min(refresh_before, ttl / 2)`.
fn refresh_interval_ms(ttl_s: u64, refresh_before_ms: u64) -> u64 {
    ttl_s * 1000 - refresh_before_ms.min(ttl_s * 1000 / 2)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn injected_bearer_is_a_token_the_server_issued_and_accepts() -> Result<()> {
    if !oauth_server_or_skip("injected_bearer_is_a_token_the_server_issued_and_accepts")? {
        return Ok(());
    }
    let server = tls_server(600, secret_client())?;
    let proxy = Proxy::start(&Oauth2::new(&server), 2)?;
    proxy.wait_token(Duration::from_secs(10))?;

    // A caller's own Authorization is replaced, not forwarded.
    let resp = Request::get(&format!("{}{CRM}/accounts?id=7", proxy.base))
        .header("authorization", "Bearer caller-supplied")
        .send()?;
    let token = bearer(&resp)?;
    assert_ne!(token, "caller-supplied");
    let echo = resp.json()?;
    assert_eq!(echo["path"], "/api/accounts", "{echo}");
    let exp = assert_issued(&server, &token)?;
    assert!(exp * 1000 > now_unix_ms() + 500_000, "ttl 600s, exp {exp}");
    // The check is real: a token the server never issued is inactive.
    assert_eq!(
        introspect(&server, "not-a-token-it-issued")?["active"],
        false
    );

    // Every worker injects the same token (one per proxy), and the server issued exactly one.
    for _ in 0..10 {
        assert_eq!(bearer(&proxy.get(&format!("{CRM}/x"))?)?, token);
    }
    assert_eq!(server.stats()?, (1, 1));
    assert_eq!(proxy.stat("wasmcustom.egress.crm.tokens_fetched")?, 1);
    Ok(())
}

#[test]
fn one_token_fetch_per_lifetime_under_concurrent_load() -> Result<()> {
    if !oauth_server_or_skip("one_token_fetch_per_lifetime_under_concurrent_load")? {
        return Ok(());
    }
    const TTL: u64 = 4;
    const CLIENTS: usize = 8;
    let interval = refresh_interval_ms(TTL, 1000);
    let server = tls_server(TTL, secret_client())?;
    let proxy = Arc::new(Proxy::start(&Oauth2::new(&server), 4)?);
    let t0 = proxy.wait_token(Duration::from_secs(10))?;
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
                            let exp = assert_issued(&server, &token)?;
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
    let mut last = None;
    for _ in 0..20 {
        let before = server.stats()?;
        let at = Instant::now();
        let fetched = proxy.stat("wasmcustom.egress.crm.tokens_fetched")?;
        if server.stats()? == before && fetched == before.1 {
            last = Some((before, fetched, at));
            break;
        }
        last = Some((before, fetched, at));
        thread::sleep(Duration::from_millis(150));
    }
    let ((requests, successes), fetched, at) = last.unwrap();
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

#[test]
fn token_is_refreshed_before_expiry_without_requests_waiting() -> Result<()> {
    if !oauth_server_or_skip("token_is_refreshed_before_expiry_without_requests_waiting")? {
        return Ok(());
    }
    // A 6s token refreshed 2s ahead: replaced about 4s after it was issued.
    const TTL: u64 = 6;
    let server = tls_server(TTL, secret_client())?;
    let proxy = Proxy::start(&Oauth2::new(&server).refresh_before_expiry("2s"), 2)?;
    proxy.wait_token(Duration::from_secs(10))?;

    // (Unix ms at the request's start, token, latency)
    let mut samples: Vec<(u64, String, Duration)> = Vec::new();
    let mut first_exp = None;
    let deadline = Instant::now() + Duration::from_secs(TTL + 3);
    loop {
        let at = now_unix_ms();
        let (resp, latency) = proxy.timed_get(&format!("{CRM}/poll"))?;
        let token = bearer(&resp)?;
        if first_exp.is_none() {
            first_exp = Some(assert_issued(&server, &token)?);
        }
        let switched = token != samples.first().map_or(token.as_str(), |s| s.1.as_str());
        samples.push((at, token, latency));
        if switched || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    // A little more traffic after the switch.
    for _ in 0..10 {
        let at = now_unix_ms();
        let (resp, latency) = proxy.timed_get(&format!("{CRM}/poll"))?;
        samples.push((at, bearer(&resp)?, latency));
        thread::sleep(Duration::from_millis(50));
    }

    let old = samples[0].1.clone();
    let old_exp_ms = first_exp.unwrap() * 1000;
    let Some(switch) = samples.iter().find(|s| s.1 != old) else {
        panic!("the token never changed within {}s", TTL + 3);
    };
    let new = switch.1.clone();
    assert_issued(&server, &new)?;
    // The server's exp is whole seconds, at most the filter's expiry: the old token was
    // issued in [exp - TTL, exp - TTL + 1s), so the refresh is due from exp - 2s on.
    assert!(
        switch.0 < old_exp_ms,
        "the new token first reached the upstream {}ms after the old one expired",
        switch.0 - old_exp_ms
    );
    assert!(
        switch.0 + 2_100 >= old_exp_ms,
        "refreshed {}ms before expiry, more than refresh_before_expiry (2s) ahead",
        old_exp_ms - switch.0
    );
    // No request waited for the refresh: all stayed fast, across the switch too.
    let slowest = samples.iter().map(|s| s.2).max().unwrap();
    assert!(
        slowest < Duration::from_millis(500),
        "slowest request {slowest:?}: {:?}",
        samples.iter().map(|s| s.2.as_millis()).collect::<Vec<_>>()
    );
    eprintln!(
        "token replaced {}ms before the old one's expiry; {} requests, slowest {slowest:?}",
        old_exp_ms - switch.0,
        samples.len()
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

#[test]
fn outage_uses_the_last_token_until_expiry_then_fails_fast_and_recovers() -> Result<()> {
    if !oauth_server_or_skip(
        "outage_uses_the_last_token_until_expiry_then_fails_fast_and_recovers",
    )? {
        return Ok(());
    }
    const TTL: u64 = 4;
    let mut server = tls_server(TTL, secret_client())?;
    let proxy = Proxy::start(&Oauth2::new(&server), 2)?;
    proxy.wait_token(Duration::from_secs(10))?;
    // The filter obtained the token before /ready said so: it expires by then + TTL.
    let expires_by = now_unix_ms() + TTL * 1000;
    let token = bearer(&proxy.get(&format!("{CRM}/before"))?)?;
    let exp_ms = assert_issued(&server, &token)? * 1000;
    server.stop()?;

    // (Unix ms at the request's start, status, error code, latency)
    let mut samples: Vec<(u64, u16, String, Duration)> = Vec::new();
    while now_unix_ms() < expires_by + 2_000 {
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
    }
    // Before expiry: the last good token, although every refresh fails.
    let before: Vec<_> = samples.iter().filter(|s| s.0 + 100 < exp_ms).collect();
    assert!(
        before.len() >= 10,
        "only {} requests before expiry",
        before.len()
    );
    for s in &before {
        assert_eq!(s.1, 200, "{}ms before expiry: {s:?}", exp_ms - s.0);
    }
    // After expiry: 503 credentials_unavailable, fast.
    let after: Vec<_> = samples.iter().filter(|s| s.0 > expires_by + 200).collect();
    assert!(
        after.len() >= 5,
        "only {} requests after expiry",
        after.len()
    );
    for s in &after {
        assert_eq!(
            (s.1, s.2.as_str()),
            (503, "credentials_unavailable"),
            "{}ms after expiry: {s:?}",
            s.0 - expires_by
        );
        assert!(s.3 < Duration::from_secs(1), "a 503 took {:?}", s.3);
    }
    let mut unavailable_seen = samples.iter().filter(|s| s.1 == 503).count() as u64;
    let failures = proxy.stats_under("wasmcustom.egress.crm.token_fetch_failures.")?;
    assert!(
        failures.values().sum::<u64>() > 0,
        "no token_fetch_failures counted: {failures:?}"
    );

    // The server comes back on the same port: requests recover within the backoff.
    server.restart()?;
    let back = Instant::now();
    let recovered = loop {
        let (resp, latency) = proxy.timed_get(&format!("{CRM}/after"))?;
        assert!(
            latency < Duration::from_secs(3),
            "a request took {latency:?}"
        );
        if resp.status == 200 {
            break bearer(&resp)?;
        }
        assert_eq!(resp.json()?["error"], "credentials_unavailable");
        unavailable_seen += 1;
        assert!(
            back.elapsed() < Duration::from_secs(12),
            "no recovery within 12s of the restart"
        );
        thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "failures {failures:?}; recovered {:?} after the restart",
        back.elapsed()
    );
    assert_ne!(recovered, token);
    assert_issued(&server, &recovered)?;
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

#[test]
fn cold_start_is_not_ready_and_concurrent_requests_share_one_fetch() -> Result<()> {
    if !oauth_server_or_skip("cold_start_is_not_ready_and_concurrent_requests_share_one_fetch")? {
        return Ok(());
    }
    const CLIENTS: usize = 16;
    const DELAY_MS: u64 = 4_000;
    let server = tls_server(600, secret_client())?;
    // The first token request is answered only after DELAY_MS.
    delay_next_token(&server, DELAY_MS)?;
    let proxy = Arc::new(Proxy::start(&Oauth2::new(&server), 4)?);
    // The fetch has reached the server: from now on, DELAY_MS without a token.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats()?.0 == 0 {
        assert!(
            Instant::now() < deadline,
            "the filter never asked for a token"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let fetch_seen = Instant::now();
    let ready = proxy.get("/ready")?;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()?["targets"], serde_json::json!(["crm"]));
    assert_eq!(server.stats()?.1, 0, "still no token issued");

    let burst_at = fetch_seen.elapsed();
    ensure!(
        burst_at < Duration::from_millis(DELAY_MS - 2_000),
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
    assert_issued(&server, results[0].0.as_str())?;
    // They were paused until the fetch completed, then resumed (none got a 503).
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

/// A private key and its public half (PEM), made by openssl in `dir`.
fn keypair(dir: &Path, name: &str, genpkey: &[&str]) -> Result<(PathBuf, PathBuf)> {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run = |args: &[&str]| -> Result<Output> {
        let out = Command::new("openssl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running openssl")?;
        ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out)
    };
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", private.to_str().unwrap()]);
    run(&args)?;
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ])?;
    Ok((private, public))
}

/// The server accepts only `client`'s method; a token through Envoy proves the filter used it.
fn token_through_envoy(client: OAuthClient, auth: Auth) -> Result<()> {
    let server = tls_server(600, client)?;
    let proxy = Proxy::start(&Oauth2::new(&server).auth(auth), 2)?;
    proxy.wait_token(Duration::from_secs(10))?;
    let token = bearer(&proxy.get(&format!("{CRM}/x"))?)?;
    assert_issued(&server, &token)?;
    let stats = server.stats_json()?;
    assert_eq!(stats["token_requests"], 1, "{stats}");
    assert_eq!(stats["successes_by_client"][CLIENT_ID], 1, "{stats}");
    assert_eq!(proxy.stat("wasmcustom.egress.crm.tokens_fetched")?, 1);
    Ok(())
}

#[test]
fn client_secret_post_gets_tokens_through_envoy() -> Result<()> {
    if !oauth_server_or_skip("client_secret_post_gets_tokens_through_envoy")? {
        return Ok(());
    }
    token_through_envoy(OAuthClient::post(CLIENT_ID, CLIENT_SECRET), Auth::Post)
}

#[test]
fn private_key_jwt_rs256_gets_tokens_through_envoy() -> Result<()> {
    if !oauth_server_or_skip("private_key_jwt_rs256_gets_tokens_through_envoy")? {
        return Ok(());
    }
    let dir = scratch_dir()?;
    let (key, public) = keypair(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    )?;
    token_through_envoy(
        OAuthClient::private_key_jwt(CLIENT_ID, public, "rsa-1", "RS256"),
        Auth::PrivateKeyJwt {
            key,
            alg: "RS256",
            kid: "rsa-1",
        },
    )
}

#[test]
fn private_key_jwt_es256_gets_tokens_through_envoy() -> Result<()> {
    if !oauth_server_or_skip("private_key_jwt_es256_gets_tokens_through_envoy")? {
        return Ok(());
    }
    let dir = scratch_dir()?;
    let (key, public) = keypair(
        dir.path(),
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )?;
    token_through_envoy(
        OAuthClient::private_key_jwt(CLIENT_ID, public, "ec-1", "ES256"),
        Auth::PrivateKeyJwt {
            key,
            alg: "ES256",
            kid: "ec-1",
        },
    )
}

#[test]
fn logs_never_contain_the_client_secret_or_a_token() -> Result<()> {
    if !oauth_server_or_skip("logs_never_contain_the_client_secret_or_a_token")? {
        return Ok(());
    }
    // Short tokens refreshed at half their lifetime, so refreshes and failures (garbage,
    // 500) get logged too, and the retries succeed before the token expires.
    const TTL: u64 = 6;
    let server = tls_server(TTL, secret_client())?;
    let proxy = Proxy::start(&Oauth2::new(&server).refresh_before_expiry("3s"), 2)?;
    proxy.wait_token(Duration::from_secs(10))?;
    let mut tokens = BTreeSet::new();
    let mut get_some = |n: usize| -> Result<()> {
        for _ in 0..n {
            tokens.insert(bearer(&proxy.get(&format!("{CRM}/x?q=1"))?)?);
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    };
    get_some(5)?;
    for (mode, reason) in [
        (FailMode::Garbage, "bad_json"),
        (FailMode::Status500, "status_5xx"),
    ] {
        server.fail_next(mode, 1)?;
        let counter = format!("wasmcustom.egress.crm.token_fetch_failures.{reason}");
        let deadline = Instant::now() + Duration::from_secs(2 * TTL + 2);
        while proxy.stat(&counter)? == 0 {
            assert!(Instant::now() < deadline, "no {reason} failure counted");
            get_some(1)?;
        }
    }
    // Until a fresh token replaced the one held during the failures.
    let fetched = proxy.stat("wasmcustom.egress.crm.tokens_fetched")?;
    let deadline = Instant::now() + Duration::from_secs(2 * TTL + 2);
    while proxy.stat("wasmcustom.egress.crm.tokens_fetched")? == fetched {
        assert!(Instant::now() < deadline, "no refresh after the failures");
        get_some(1)?;
    }
    get_some(3)?;
    assert!(tokens.len() >= 2, "{} tokens seen", tokens.len());
    thread::sleep(Duration::from_millis(300)); // the request log is flushed every 100ms

    let envoy_log = proxy.envoy.log();
    let requests_log = proxy.requests_log();
    // The logs do hold what they should: debug lines, failures, request lines.
    assert!(envoy_log.contains(r#""msg":"Credentials refreshed""#));
    assert!(envoy_log.contains(r#""msg":"Token fetch failed""#));
    assert!(requests_log.contains(r#""target":"crm""#), "{requests_log}");
    let basic = STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let mut secrets = vec![CLIENT_SECRET.to_owned(), basic];
    secrets.extend(tokens.iter().cloned());
    for (what, text) in [
        ("Envoy's log", &envoy_log),
        ("the request log", &requests_log),
        ("egressctl compile's output", &proxy.compile_output),
    ] {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} contains a secret or token ({}…)",
                &secret[..6]
            );
        }
    }
    Ok(())
}

/// README: a failed fetch is logged and counted with a reason, `transport` for a token
/// endpoint that could not be reached. Envoy turns a refused connection and a callout
/// timeout into its own 503/504 reply, which the filter takes for the server's answer.
#[test]
fn unreachable_or_silent_token_endpoint_counts_as_transport_failure() -> Result<()> {
    if !oauth_server_or_skip("unreachable_or_silent_token_endpoint_counts_as_transport_failure")? {
        return Ok(());
    }
    let mut server = tls_server(600, secret_client())?;
    // Nothing listens on the token port (connection refused).
    server.stop()?;
    let mut oauth2 = Oauth2::new(&server);
    oauth2.token_timeout = "1s";
    let proxy = Proxy::start(&oauth2, 2)?;
    let prefix = "wasmcustom.egress.crm.token_fetch_failures.";
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats_under(prefix)?.values().sum::<u64>() == 0 {
        assert!(Instant::now() < deadline, "no failure counted");
        thread::sleep(Duration::from_millis(50));
    }
    let refused = proxy.stats_under(prefix)?;
    // The server is back but never answers: the fetch times out after token_timeout.
    server.restart()?;
    server.fail_next(FailMode::Hang, 100)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.stats()?.0 == 0 || proxy.stats_under(prefix)? == refused {
        assert!(Instant::now() < deadline, "no timeout counted");
        thread::sleep(Duration::from_millis(50));
    }
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
