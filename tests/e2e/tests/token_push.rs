//! `egressctl token refresh` and `egressctl status` end to end: real Envoys (`--concurrency 2`)
//! running the built `egress_filter.wasm` with their token push listener, the real OAuth2
//! server (`oidc-provider`, [`OAuthServer`]) over TLS verified with the test CA as the token
//! endpoint, a TLS echo stand-in as the target `crm`, and a real `redis-server` (started on a
//! free port, no persistence) for `token_store: redis`.
//!
//! What is promised (README, "Tokens pushed by egressctl"): one fetch reaches every proxy and
//! requests through each carry that token; `--watch` keeps every proxy supplied (no request
//! without a valid token across several lifetimes under load); refreshers sharing redis make
//! one fetch per lifetime; the push listener refuses every forged push (401, nothing changes);
//! in redis mode the compiled files hold no client secret and the proxy serves 503
//! `credentials_unavailable` until a token is pushed; `egressctl status` reports the pushed
//! token (exit 0) and fails (exit 3) for an unreachable proxy or a target without a token.
//!
//! Needs Envoy, `egress_filter.wasm` (`make wasm`), node + `npm ci` in
//! tests/support/oauth-server, redis-server (tests/support/install-test-deps.sh), python3,
//! openssl. Without the OAuth2 server or redis the tests print SKIPPED (and fail under CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use egress_core::push::{sha256_hex, PushBody, PushSigner, PUSH_PATH};
use egress_core::secret::Secret;
use egress_e2e::*;
use serde_json::Value;

const CLIENT_ID: &str = "crm-push-client";
/// Unique, so a leak is easy to find.
const CLIENT_SECRET: &str = "SECRET-push-oauth-client-secret-83b2";
const CRM: &str = "/egress/crm";

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------

fn redis_bin() -> Option<PathBuf> {
    if let Some(b) = std::env::var_os("REDIS_SERVER_BIN") {
        return Some(PathBuf::from(b));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// Whether everything a test needs is here; under CI a missing piece is an error.
fn deps_or_skip(test: &str, redis: bool) -> Result<bool> {
    if !oauth_server_or_skip(test)? {
        return Ok(false);
    }
    if redis && redis_bin().is_none() {
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            bail!("{test}: redis-server is required when CI is set (tests/support/install-test-deps.sh)");
        }
        eprintln!("SKIPPED {test}: no redis-server (tests/support/install-test-deps.sh)");
        return Ok(false);
    }
    Ok(true)
}

/// A throwaway redis-server on a free loopback port, no persistence; killed on drop.
struct Redis {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Redis {
    fn start() -> Result<Redis> {
        let bin = redis_bin().context("no redis-server")?;
        let dir = scratch_dir()?;
        let port = free_port()?;
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("redis.log"))?)
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let r = Redis {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.command("PING").ok().as_deref() != Some("+PONG") {
            ensure!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            thread::sleep(Duration::from_millis(50));
        }
        Ok(r)
    }

    /// One inline command; the first reply line.
    fn command(&self, cmd: &str) -> Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(format!("{cmd}\r\n").as_bytes())?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The setup: a token server, an echo target, proxies compiled by egressctl
// ---------------------------------------------------------------------------

struct Upstreams {
    server: OAuthServer,
    crm: Standin,
    pki: &'static Pki,
}

impl Upstreams {
    fn start(ttl: u64) -> Result<Upstreams> {
        let pki = Pki::generate()?;
        let server = OAuthServer::start(
            OAuthOpts::new(ttl, vec![OAuthClient::basic(CLIENT_ID, CLIENT_SECRET)])
                .tls(pki.server()),
        )?;
        let crm = Standin::start(StandinOpts::new("crm").tls(pki.server()))?;
        Ok(Upstreams { server, crm, pki })
    }
}

/// `token_store`: memory, or redis at a port.
#[derive(Clone, Copy)]
enum Store {
    Memory,
    Redis(u16),
}

struct Proxy {
    envoy: Envoy,
    base: String,
    config: PathBuf,
    out: PathBuf,
    push_url: String,
    dir: TempDir,
}

impl Proxy {
    /// Writes the config (one OAuth2 target `crm`), compiles it into its own state directory
    /// (with `push_key` copied in first, when given, so one key signs pushes to several
    /// proxies) and starts Envoy. Waits for Envoy's admin, not for a token.
    fn start(up: &Upstreams, store: Store, push_key: Option<&Path>) -> Result<Proxy> {
        let (listen, admin, push) = (free_port()?, free_port()?, free_port()?);
        let dir = scratch_dir()?;
        let config = dir.path().join("config.yaml");
        let store_yaml = match store {
            Store::Memory => String::new(),
            Store::Redis(port) => format!(
                "  token_store:\n    type: redis\n    redis:\n      address: \"127.0.0.1:{port}\"\n      \
                 key_prefix: \"egress:tokens:\"\n"
            ),
        };
        std::fs::write(
            &config,
            format!(
                "http:\n  addr: \"127.0.0.1:{listen}\"\n\
                 egress:\n  enabled: true\n{store_yaml}  targets:\n    crm:\n      \
                 url: \"https://127.0.0.1:{port}/api\"\n      timeout: 10s\n      \
                 tls:\n        ca_cert: \"{ca}\"\n      auth:\n        \
                 type: oauth2_client_credentials\n        token_url: \"{token_url}\"\n        \
                 client_id: \"{CLIENT_ID}\"\n        client_secret: \"{CLIENT_SECRET}\"\n        \
                 scopes: [\"api\"]\n        refresh_before_expiry: 1s\n        token_timeout: 3s\n\
                 \x20 routes:\n    - path_prefix: \"{CRM}\"\n      target: crm\n      strip_prefix: \"{CRM}\"\n\
                 endpoints:\n  egress: /egress\n  health: /health\n  ready: /ready\n\
                 logger:\n  level: info\n  format: json\n  output: \"{log}\"\n",
                port = up.crm.port(),
                ca = up.pki.ca_cert().display(),
                token_url = up.server.token_url(),
                log = dir.path().join("requests.log").display(),
            ),
        )?;
        let out = dir.path().join("out");
        if let Some(key) = push_key {
            std::fs::create_dir_all(&out)?;
            std::fs::copy(key, out.join("push.key"))?;
        }
        let compiled = egressctl()?
            .arg("compile")
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .args(["--push-addr", &format!("127.0.0.1:{push}")])
            .arg("--wasm")
            .arg(filter_wasm())
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            compiled.status.success(),
            "egressctl compile: {}",
            text(&compiled)
        );
        let envoy = Envoy::start(
            &out.join("envoy.yaml"),
            &["--file-flush-interval-msec", "100"],
        )?;
        envoy.wait_ready(&format!("127.0.0.1:{admin}"))?;
        Ok(Proxy {
            envoy,
            base: format!("http://127.0.0.1:{listen}"),
            config,
            out,
            push_url: format!("http://127.0.0.1:{push}"),
            dir,
        })
    }

    fn get(&self, path: &str) -> Result<Response> {
        Request::get(&format!("{}{path}", self.base))
            .timeout(Duration::from_secs(20))
            .send()
    }

    fn key(&self) -> PathBuf {
        self.out.join("push.key")
    }

    /// Polls the ready endpoint until the proxy holds a valid token.
    fn wait_token(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.get("/ready")?;
            if r.status == 200 {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "no token within {within:?}: /ready {} {}; envoy:\n{}",
                r.status,
                r.body,
                self.envoy.log_tail()
            );
            thread::sleep(Duration::from_millis(20));
        }
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
    Ok(auth
        .strip_prefix("Bearer ")
        .with_context(|| format!("not a bearer credential: {auth:?}"))?
        .to_owned())
}

/// `egressctl token refresh CONFIG --out OUT [--proxy URL]...`
fn refresh(config: &Path, out: &Path, proxies: &[&str]) -> Result<Output> {
    let mut cmd = egressctl()?;
    cmd.args(["token", "refresh"])
        .arg(config)
        .arg("--out")
        .arg(out);
    for p in proxies {
        cmd.args(["--proxy", p]);
    }
    Ok(cmd.stdin(Stdio::null()).output()?)
}

/// `egressctl status --out OUT --format json [--proxy URL]...`: exit code and JSON.
fn status(out: &Path, proxies: &[&str]) -> Result<(Option<i32>, Value)> {
    let mut cmd = egressctl()?;
    cmd.arg("status")
        .arg("--out")
        .arg(out)
        .args(["--format", "json"]);
    for p in proxies {
        cmd.args(["--proxy", p]);
    }
    let o = cmd.stdin(Stdio::null()).output()?;
    let v = serde_json::from_slice(&o.stdout)
        .with_context(|| format!("status output is not JSON: {}", text(&o)))?;
    Ok((o.status.code(), v))
}

/// The proxy's own view of target `crm` (first proxy of a status answer).
fn crm_status(v: &Value) -> Value {
    v["proxies"][0]["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["target"] == "crm"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A running `egressctl token refresh --watch`, its output in files; SIGTERM on [`Watcher::stop`].
struct Watcher {
    child: Option<Child>,
    log: PathBuf,
}

impl Watcher {
    fn start(config: &Path, out: &Path, proxies: &[&str], log: PathBuf) -> Result<Watcher> {
        let mut cmd = egressctl()?;
        cmd.args(["token", "refresh", "--watch"])
            .arg(config)
            .arg("--out")
            .arg(out);
        for p in proxies {
            cmd.args(["--proxy", p]);
        }
        let f = File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()?;
        Ok(Watcher {
            child: Some(child),
            log,
        })
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; the exit code.
    fn stop(&mut self) -> Result<Option<i32>> {
        let mut child = self.child.take().context("already stopped")?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = child.try_wait()? {
                return Ok(s.code());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                bail!("the watcher did not stop within 10s of SIGTERM");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Client threads hammering every proxy until `secs` have passed; (ok requests, failures).
fn load(proxies: &[Arc<Proxy>], threads: usize, secs: u64) -> (u64, Vec<String>, BTreeSet<String>) {
    let end = Instant::now() + Duration::from_secs(secs);
    let tokens: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let p = proxies[i % proxies.len()].clone();
            let tokens = tokens.clone();
            thread::spawn(move || {
                let (mut ok, mut bad) = (0u64, Vec::new());
                while Instant::now() < end {
                    match p.get(&format!("{CRM}/load/{i}")).and_then(|r| bearer(&r)) {
                        Ok(t) => {
                            ok += 1;
                            tokens.lock().unwrap().insert(t);
                        }
                        Err(e) => bad.push(format!("{e:#}")),
                    }
                }
                (ok, bad)
            })
        })
        .collect();
    let (mut ok, mut bad) = (0, Vec::new());
    for h in handles {
        let (o, b) = h.join().unwrap();
        ok += o;
        bad.extend(b);
    }
    let seen = tokens.lock().unwrap().clone();
    (ok, bad, seen)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn one_fetch_reaches_two_proxies_and_both_inject_it() -> Result<()> {
    if !deps_or_skip("one_fetch_reaches_two_proxies_and_both_inject_it", false)? {
        return Ok(());
    }
    let up = Upstreams::start(600)?;
    let a = Proxy::start(&up, Store::Memory, None)?;
    let b = Proxy::start(&up, Store::Memory, Some(&a.key()))?;
    // Memory store: each proxy fetched a token of its own first.
    a.wait_token(Duration::from_secs(15))?;
    b.wait_token(Duration::from_secs(15))?;
    let (own_a, own_b) = (bearer(&a.get(CRM)?)?, bearer(&b.get(CRM)?)?);
    assert_ne!(own_a, own_b);
    up.server.reset()?;

    let out = refresh(&a.config, &a.out, &[&a.push_url, &b.push_url])?;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("crm: token fetched (expires "), "{said}");
    for p in [&a, &b] {
        assert!(
            said.contains(&format!("pushed to {} (version ", p.push_url)),
            "{said}"
        );
    }
    assert!(!said.contains(CLIENT_SECRET), "{said}");
    // One fetch, and both proxies now inject that token (not their own).
    assert_eq!(up.server.stats()?, (1, 1));
    // Workers pick a new record up on their next tick (100ms).
    thread::sleep(Duration::from_millis(300));
    let pushed = bearer(&a.get(&format!("{CRM}/x"))?)?;
    assert_ne!(pushed, own_a);
    assert!(!said.contains(&pushed), "the token was printed: {said}");
    for _ in 0..10 {
        assert_eq!(bearer(&a.get(&format!("{CRM}/a"))?)?, pushed);
        assert_eq!(bearer(&b.get(&format!("{CRM}/b"))?)?, pushed);
    }
    // Status (signed with the same key) says where it came from.
    for p in [&a, &b] {
        let (code, v) = status(&a.out, &[&p.push_url])?;
        assert_eq!(code, Some(0), "{v}");
        let crm = crm_status(&v);
        assert_eq!(crm["source"], "pushed", "{v}");
        assert_eq!(crm["valid"], true, "{v}");
        assert!(crm["expires_in_ms"].as_u64().unwrap() > 500_000, "{v}");
    }
    Ok(())
}

#[test]
fn watch_keeps_every_request_supplied_across_lifetimes_under_load() -> Result<()> {
    if !deps_or_skip(
        "watch_keeps_every_request_supplied_across_lifetimes_under_load",
        true,
    )? {
        return Ok(());
    }
    const TTL: u64 = 4;
    let redis = Redis::start()?;
    let up = Upstreams::start(TTL)?;
    // Push-only proxies (redis store): every token they have came from the watcher.
    let a = Arc::new(Proxy::start(&up, Store::Redis(redis.port), None)?);
    let b = Arc::new(Proxy::start(&up, Store::Redis(redis.port), Some(&a.key()))?);
    let mut watcher = Watcher::start(
        &a.config,
        &a.out,
        &[&a.push_url, &b.push_url],
        a.dir.path().join("watch.log"),
    )?;
    a.wait_token(Duration::from_secs(15))
        .with_context(|| watcher.output())?;
    b.wait_token(Duration::from_secs(15))
        .with_context(|| watcher.output())?;
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
    assert!(ok > 100, "only {ok} requests");
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
    if !deps_or_skip(
        "two_refreshers_sharing_redis_make_one_fetch_per_lifetime",
        true,
    )? {
        return Ok(());
    }
    const TTL: u64 = 4;
    let redis = Redis::start()?;
    let up = Upstreams::start(TTL)?;
    let a = Arc::new(Proxy::start(&up, Store::Redis(redis.port), None)?);
    let b = Arc::new(Proxy::start(&up, Store::Redis(redis.port), Some(&a.key()))?);
    let proxies = [a.push_url.as_str(), b.push_url.as_str()];
    let mut w1 = Watcher::start(&a.config, &a.out, &proxies, a.dir.path().join("w1.log"))?;
    let mut w2 = Watcher::start(&b.config, &b.out, &proxies, b.dir.path().join("w2.log"))?;
    let started = Instant::now();
    a.wait_token(Duration::from_secs(15))
        .with_context(|| w1.output())?;
    b.wait_token(Duration::from_secs(15))
        .with_context(|| w2.output())?;
    let (ok, bad, _) = load(&[a.clone(), b.clone()], 2, 3 * TTL);
    let elapsed = started.elapsed().as_millis() as u64;
    let (requests, issued) = up.server.stats()?;
    let (l1, l2) = (w1.output(), w2.output());
    assert!(
        bad.is_empty(),
        "{:?}\nw1:\n{l1}\nw2:\n{l2}",
        &bad[..bad.len().min(5)]
    );
    assert!(ok > 50);
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
    assert_eq!(redis.command("EXISTS egress:tokens:crm:lock")?, ":0");
    assert_eq!(w1.stop()?, Some(0));
    assert_eq!(w2.stop()?, Some(0));
    Ok(())
}

/// Posts a push with the given Authorization (or none); status and body.
fn post_push(proxy: &Proxy, auth: Option<&str>, body: &[u8]) -> Result<Response> {
    let mut r = Request::post(&format!("{}{PUSH_PATH}", proxy.push_url))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .timeout(Duration::from_secs(10));
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.send()
}

fn push_body(token: &str) -> Vec<u8> {
    serde_json::to_vec(&PushBody {
        target: "crm".into(),
        access_token: Secret::new(token),
        token_type: "Bearer".into(),
        expires_at_ms: now_unix_ms() + 600_000,
    })
    .unwrap()
}

#[test]
fn the_push_listener_refuses_every_forged_push() -> Result<()> {
    if !deps_or_skip("the_push_listener_refuses_every_forged_push", false)? {
        return Ok(());
    }
    let up = Upstreams::start(600)?;
    // Push-only (redis store, no refresher): the proxy holds only what is pushed.
    let p = Proxy::start(&up, Store::Redis(free_port()?), None)?;
    let key = std::fs::read_to_string(p.key())?;
    let signer = PushSigner::from_pem(&key).unwrap();
    let now = now_unix_ms() / 1000;
    let forged = push_body("FORGED-token-0001");
    let bearer_of = |jwt: &str| format!("Bearer {jwt}");

    let forgeries = |label: &str| -> Result<()> {
        let mut attempts: Vec<(&str, Option<String>, Vec<u8>)> = vec![
            ("unsigned", None, forged.clone()),
            ("garbage", Some("Bearer not.a.jwt".into()), forged.clone()),
            (
                "expired",
                Some(bearer_of(
                    &signer
                        .sign(&forged, now - 300, 60, &format!("{label}-exp"))
                        .unwrap(),
                )),
                forged.clone(),
            ),
            (
                "wrong key",
                Some(bearer_of(
                    &PushSigner::generate()
                        .sign(&forged, now, 60, &format!("{label}-wk"))
                        .unwrap(),
                )),
                forged.clone(),
            ),
            (
                "another body",
                Some(bearer_of(
                    &signer
                        .sign(b"{}", now, 60, &format!("{label}-body"))
                        .unwrap(),
                )),
                forged.clone(),
            ),
        ];
        // Wrong audience, with the right key (jwt-simple directly).
        {
            use jwt_simple::prelude::*;
            let kp = Ed25519KeyPair::from_pem(&key).unwrap();
            let claims = Claims::with_custom_claims(
                serde_json::json!({ "body_sha256": sha256_hex(&forged) }),
                Duration::from_secs(60),
            )
            .with_issuer("egressctl")
            .with_audience("someone-else")
            .with_jwt_id(format!("{label}-aud"));
            attempts.push((
                "wrong audience",
                Some(bearer_of(&kp.sign(claims).unwrap())),
                forged.clone(),
            ));
        }
        // alg: none with the right claims.
        {
            use base64::Engine as _;
            let enc = |x: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x);
            let claims = format!(
                r#"{{"iss":"egressctl","aud":"egress-push","iat":{now},"nbf":{now},"exp":{},"jti":"{label}-none","body_sha256":"{}"}}"#,
                now + 60,
                sha256_hex(&forged)
            );
            attempts.push((
                "alg none",
                Some(bearer_of(&format!(
                    "{}.{}.",
                    enc(r#"{"alg":"none","typ":"JWT"}"#),
                    enc(&claims)
                ))),
                forged.clone(),
            ));
        }
        for (what, auth, body) in attempts {
            let r = post_push(&p, auth.as_deref(), &body)?;
            assert_eq!(r.status, 401, "{label}: {what}: {} {}", r.status, r.body);
            assert_eq!(r.json()?["error"], "push_rejected", "{what}");
        }
        Ok(())
    };

    // Before any token: every forgery refused, still no token, requests get 503.
    forgeries("before")?;
    let (code, v) = status(&p.out, &[])?;
    assert_eq!(code, Some(3), "no valid token: status must fail: {v}");
    assert_eq!(crm_status(&v)["valid"], false, "{v}");
    let r = p.get(CRM)?;
    assert_eq!(r.status, 503, "{}", r.body);

    // A real push, then its replay.
    let good = push_body("pushed-token-0001");
    let jwt = bearer_of(&signer.sign(&good, now, 60, "real-1").unwrap());
    let r = post_push(&p, Some(&jwt), &good)?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()?["version"], 1);
    let replay = post_push(&p, Some(&jwt), &good)?;
    assert_eq!(replay.status, 401, "replayed: {}", replay.body);
    let replay_forged = post_push(&p, Some(&jwt), &forged)?;
    assert_eq!(replay_forged.status, 401, "{}", replay_forged.body);

    forgeries("after")?;
    let (code, v) = status(&p.out, &[])?;
    assert_eq!(code, Some(0), "{v}");
    let crm = crm_status(&v);
    assert_eq!(
        (crm["valid"].clone(), crm["version"].clone()),
        (Value::Bool(true), Value::from(1)),
        "{v}"
    );
    assert_eq!(crm["source"], "pushed");
    for _ in 0..5 {
        assert_eq!(bearer(&p.get(&format!("{CRM}/x"))?)?, "pushed-token-0001");
    }
    Ok(())
}

#[test]
fn redis_mode_compiles_no_secret_waits_for_a_push_and_status_reports_it() -> Result<()> {
    if !deps_or_skip(
        "redis_mode_compiles_no_secret_waits_for_a_push_and_status_reports_it",
        true,
    )? {
        return Ok(());
    }
    let redis = Redis::start()?;
    let up = Upstreams::start(600)?;
    let p = Proxy::start(&up, Store::Redis(redis.port), None)?;
    for f in ["envoy.yaml", "lds.yaml", "cds.yaml", "filter.json"] {
        let body = std::fs::read_to_string(p.out.join(f))?;
        assert!(!body.contains(CLIENT_SECRET), "{f} holds the client secret");
    }
    // No push yet: the proxy does not fetch; 503 credentials_unavailable.
    let r = p.get(&format!("{CRM}/x"))?;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()?["error"], "credentials_unavailable", "{}", r.body);
    assert_eq!(up.server.stats()?, (0, 0), "the proxy must not fetch");

    // An unreachable extra proxy: the refresh says which and exits 3, the good one is served.
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    let out = refresh(&p.config, &p.out, &[&p.push_url, &dead])?;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains(&format!("push to {dead} failed")), "{said}");
    assert!(
        said.contains(&format!("pushed to {} (version 1)", p.push_url)),
        "{said}"
    );
    let token = bearer(&p.get(&format!("{CRM}/x"))?)?;
    assert_eq!(up.server.stats()?, (1, 1));
    assert!(
        !said.contains(&token) && !said.contains(CLIENT_SECRET),
        "{said}"
    );

    // The token lives in redis; a second refresh reuses it (no fetch) and pushes it.
    let out = refresh(&p.config, &p.out, &[])?;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("crm: token read from redis"), "{said}");
    assert_eq!(up.server.stats()?, (1, 1));
    assert_eq!(bearer(&p.get(&format!("{CRM}/y"))?)?, token);

    // Status: pushed, valid, requests counted from the admin; exit 0.
    let (code, v) = status(&p.out, &[])?;
    assert_eq!(code, Some(0), "{v}");
    let crm = crm_status(&v);
    assert_eq!(crm["source"], "pushed", "{v}");
    assert_eq!(crm["version"], 2, "{v}");
    assert!(crm["requests"].as_u64().unwrap_or(0) >= 2, "{v}");
    assert!(!v.to_string().contains(&token));
    // The table format too.
    let o = egressctl()?
        .args(["status", "--out"])
        .arg(&p.out)
        .stdin(Stdio::null())
        .output()?;
    let table = text(&o);
    assert_eq!(o.status.code(), Some(0), "{table}");
    assert!(table.contains("crm") && table.contains("pushed"), "{table}");
    // An unreachable proxy: exit 3, named.
    let (code, v) = status(&p.out, &[&p.push_url, &dead])?;
    assert_eq!(code, Some(3), "{v}");
    assert_eq!(v["proxies"][1]["reachable"], false, "{v}");
    assert_eq!(v["proxies"][0]["reachable"], true, "{v}");
    Ok(())
}

#[test]
fn watch_repushes_the_current_token_to_a_proxy_that_restarted() -> Result<()> {
    if !deps_or_skip(
        "watch_repushes_the_current_token_to_a_proxy_that_restarted",
        true,
    )? {
        return Ok(());
    }
    let redis = Redis::start()?;
    let up = Upstreams::start(60)?;
    // Push-only proxy: after a restart its token store is empty until the watcher notices.
    let proxy = Proxy::start(&up, Store::Redis(redis.port), None)?;
    let mut watcher = Watcher::start(
        &proxy.config,
        &proxy.out,
        &[&proxy.push_url],
        proxy.dir.path().join("watch.log"),
    )?;
    proxy
        .wait_token(Duration::from_secs(15))
        .with_context(|| watcher.output())?;
    let first = bearer(&proxy.get("/egress/crm/x")?)?;
    let (fetched_before, _) = up.server.stats()?;

    // Restart Envoy from the same state directory (same ports, empty shared data).
    let Proxy {
        envoy,
        base,
        config,
        out,
        push_url,
        dir,
    } = proxy;
    let state: Value = serde_json::from_slice(&std::fs::read(out.join("state.json"))?)?;
    let admin = state["admin"]
        .as_str()
        .context("admin in state.json")?
        .to_string();
    envoy.stop()?;
    let envoy = Envoy::start(
        &out.join("envoy.yaml"),
        &["--file-flush-interval-msec", "100"],
    )?;
    envoy.wait_ready(&admin)?;
    let proxy = Proxy {
        envoy,
        base,
        config,
        out,
        push_url,
        dir,
    };
    let restarted = Instant::now();
    assert_eq!(
        proxy.get("/ready")?.status,
        503,
        "a restarted push-only proxy starts without a token"
    );
    proxy
        .wait_token(Duration::from_secs(15))
        .with_context(|| watcher.output())?;
    assert!(
        restarted.elapsed() < Duration::from_secs(10),
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
