//! A real OAuth2 authorization server for the token-fetching tests: panva's certified
//! `oidc-provider` (npm, pinned in `tests/support/oauth-server/package.json`), run by
//! `tests/support/oauth-server/server.mjs` with the client-credentials grant only.
//!
//! [`OAuthServer::start`] writes the server's JSON config into a scratch directory, spawns
//! `node server.mjs --port P --control-port C --config FILE` and waits for its `READY <port>`
//! line. The token endpoint is [`OAuthServer::token_url`] (`<scheme>://127.0.0.1:P/token`);
//! tokens are opaque unless [`OAuthOpts::jwt_audience`] is set, and `expires_in` is always
//! [`OAuthOpts::ttl_seconds`].
//!
//! Client authentication: `client_secret_basic` (id and secret form-urlencoded, then Basic, as
//! RFC 6749 §2.3.1 says; oidc-provider decodes them), `client_secret_post`, and
//! `private_key_jwt`, whose assertion needs `iss` = `sub` = client id, `jti` (each accepted
//! once), `exp`, and `aud` equal to the issuer ([`OAuthServer::issuer`]) or to the token
//! endpoint URL as the server sees it (scheme + the request's `Host` + `/token`), or an array
//! holding one of them. Assertion algorithms RS/PS/ES 256–512 and EdDSA are accepted; the JWK
//! made from each public key carries the given `kid` and `alg`.
//!
//! Test control goes over a second, plain-HTTP port (so it works when the token port speaks
//! TLS): [`OAuthServer::stats`], [`OAuthServer::reset`], [`OAuthServer::fail_next`]. A
//! [`OAuthServer::restart`] brings the server back on the same ports (fresh counters, fresh
//! in-memory state) for outage tests. The process is stopped on drop and its log tail printed
//! when dropped during a panic.
//!
//! Needs `node` (>= 20.18; `$NODE` or `PATH`) and `npm ci` having been run in
//! `tests/support/oauth-server` (`bash tests/support/install-test-deps.sh`, run by
//! `make deps`). Without them [`OAuthServer::start`] fails, naming that step
//! ([`require_oauth_server`]); nothing is skipped.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::wait::{wait_until, Probe};

mod control;
use crate::{find_on_path, free_port, repo_root, require, scratch_dir, CertKey, Proc, TempDir};
pub use control::FailMode;

/// The token endpoint path (oidc-provider's default, which `server.mjs` keeps).
pub const OAUTH_TOKEN_PATH: &str = "/token";

/// `tests/support/oauth-server`.
pub fn oauth_server_dir() -> PathBuf {
    repo_root().join("tests/support/oauth-server")
}

/// A compact JWT signed by `jose` (`sign-jwt.mjs` in [`oauth_server_dir`]), a library
/// independent of the proxy's own JWT code. `spec` is what that script reads: `alg`, the key
/// (`secret` for HMAC, else `key_file`, a PKCS#8 PEM), an optional `kid`, and `claims`.
pub fn jose_sign(spec: &Value) -> Result<String> {
    let out = Command::new(node_bin()?)
        .arg(oauth_server_dir().join("sign-jwt.mjs"))
        .arg(spec.to_string())
        .output()
        .context("running sign-jwt.mjs")?;
    if !out.status.success() {
        bail!(
            "sign-jwt.mjs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("sign-jwt.mjs printed a non-UTF-8 token")
}

/// The node binary: `$NODE` if set, else `node` on `PATH`; checked to be >= 20.18 (what
/// oidc-provider 9 needs) once per test process.
pub fn node_bin() -> Result<PathBuf> {
    static NODE: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    NODE.get_or_init(|| locate_node().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn locate_node() -> Result<PathBuf> {
    let bin = match std::env::var_os("NODE") {
        Some(bin) => PathBuf::from(bin),
        None => find_on_path("node").ok_or_else(|| {
            anyhow!("no `node` on PATH (the OAuth2 server needs Node.js >= 20.18 and npm)")
        })?,
    };
    let out = Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut parts = version
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (20, 18) {
        bail!(
            "{} is Node.js {version:?}; the OAuth2 server needs >= 20.18",
            bin.display()
        );
    }
    Ok(bin)
}

/// Everything [`OAuthServer::start`] needs: node and the installed `oidc-provider`.
pub fn oauth_server_available() -> Result<()> {
    node_bin()?;
    let module = oauth_server_dir().join("node_modules/oidc-provider/package.json");
    if !module.is_file() {
        bail!(
            "{} is missing: run `bash tests/support/install-test-deps.sh` (or `make deps`), \
             which runs `npm ci` there",
            module.display()
        );
    }
    Ok(())
}

/// Node and the installed `oidc-provider`, or an error naming the install step: a test that
/// needs the OAuth2 server fails without it (never skips).
pub fn require_oauth_server() -> Result<()> {
    require(
        "the OAuth2 server (node + oidc-provider)",
        oauth_server_available(),
    )
}

/// Kept for tests written before nothing was skipped: `Ok(true)` when the OAuth2 server can
/// run, else the error of [`require_oauth_server`]. Never `Ok(false)`.
pub fn oauth_server_or_skip(_test: &str) -> Result<bool> {
    require_oauth_server().map(|()| true)
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret.
    Basic { secret: String },
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post { secret: String },
    /// `private_key_jwt`: a client assertion signed with the private half of `public_pem`.
    PrivateKeyJwt {
        /// A public key PEM (`openssl rsa|ec|pkey -pubout`).
        public_pem: PathBuf,
        kid: String,
        /// e.g. `RS256`, `ES256`.
        alg: String,
    },
}

/// One registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    pub client_id: String,
    pub auth: OAuthClientAuth,
    /// Scopes the client may request (default `api refresh_token`).
    pub scopes: Vec<String>,
    /// The client's grant types (default `client_credentials` only).
    pub grant_types: Option<Vec<String>>,
}

impl OAuthClient {
    fn new(client_id: &str, auth: OAuthClientAuth) -> Self {
        OAuthClient {
            client_id: client_id.to_owned(),
            auth,
            scopes: vec!["api".to_owned(), "refresh_token".to_owned()],
            grant_types: None,
        }
    }

    /// A `client_secret_basic` client.
    pub fn basic(client_id: &str, secret: &str) -> Self {
        Self::new(
            client_id,
            OAuthClientAuth::Basic {
                secret: secret.to_owned(),
            },
        )
    }

    /// A `client_secret_post` client.
    pub fn post(client_id: &str, secret: &str) -> Self {
        Self::new(
            client_id,
            OAuthClientAuth::Post {
                secret: secret.to_owned(),
            },
        )
    }

    /// A `private_key_jwt` client with one public key.
    pub fn private_key_jwt(
        client_id: &str,
        public_pem: impl Into<PathBuf>,
        kid: &str,
        alg: &str,
    ) -> Self {
        Self::new(
            client_id,
            OAuthClientAuth::PrivateKeyJwt {
                public_pem: public_pem.into(),
                kid: kid.to_owned(),
                alg: alg.to_owned(),
            },
        )
    }

    /// Replaces the allowed scopes.
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Replaces the grant types the client may use (e.g. the token-exchange URN, registered
    /// by `tests/support/oauth-server/grants/`).
    pub fn grant_types(mut self, grants: &[&str]) -> Self {
        self.grant_types = Some(grants.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    fn to_json(&self) -> Value {
        let mut client = json!({
            "client_id": self.client_id,
            "scopes": self.scopes,
        });
        if let Some(g) = &self.grant_types {
            client["grant_types"] = json!(g);
        }
        match &self.auth {
            OAuthClientAuth::Basic { secret } => {
                client["token_endpoint_auth_method"] = json!("client_secret_basic");
                client["client_secret"] = json!(secret);
            }
            OAuthClientAuth::Post { secret } => {
                client["token_endpoint_auth_method"] = json!("client_secret_post");
                client["client_secret"] = json!(secret);
            }
            OAuthClientAuth::PrivateKeyJwt {
                public_pem,
                kid,
                alg,
            } => {
                client["token_endpoint_auth_method"] = json!("private_key_jwt");
                client["public_keys"] = json!([{
                    "pem": public_pem.display().to_string(),
                    "kid": kid,
                    "alg": alg,
                }]);
            }
        }
        client
    }
}

/// How to run the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthOpts {
    /// `expires_in` of every access token (default 600).
    pub ttl_seconds: u64,
    /// Serve HTTPS with this cert + key (e.g. [`crate::Pki::server`]).
    pub tls: Option<CertKey>,
    pub clients: Vec<OAuthClient>,
    /// Issue JWT access tokens with this `aud` (an absolute URI) instead of opaque ones.
    pub jwt_audience: Option<String>,
    /// The issuer identifier (default `http(s)://127.0.0.1:<port>`); also an accepted `aud`
    /// of client assertions, e.g. `https://login.salesforce.com`.
    pub issuer: Option<String>,
    /// More top-level keys of the server's config: the grants of
    /// `tests/support/oauth-server/grants/` read theirs (e.g. `jwt_bearer`).
    pub extra: Vec<(String, Value)>,
}

impl Default for OAuthOpts {
    fn default() -> Self {
        OAuthOpts {
            ttl_seconds: 600,
            tls: None,
            clients: Vec::new(),
            jwt_audience: None,
            issuer: None,
            extra: Vec::new(),
        }
    }
}

impl OAuthOpts {
    /// Plain HTTP, opaque tokens living `ttl_seconds`, these clients.
    pub fn new(ttl_seconds: u64, clients: Vec<OAuthClient>) -> Self {
        OAuthOpts {
            ttl_seconds,
            clients,
            ..Default::default()
        }
    }

    pub fn tls(mut self, cert_key: CertKey) -> Self {
        self.tls = Some(cert_key);
        self
    }

    pub fn jwt_audience(mut self, audience: &str) -> Self {
        self.jwt_audience = Some(audience.to_owned());
        self
    }

    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.to_owned());
        self
    }

    /// Sets a top-level key of the server's config (see [`OAuthOpts::extra`]).
    pub fn config(mut self, key: &str, value: Value) -> Self {
        self.extra.push((key.to_owned(), value));
        self
    }

    fn config_json(&self, port: u16) -> Value {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut cfg = json!({
            "issuer": self.issuer.clone().unwrap_or_else(|| format!("{scheme}://127.0.0.1:{port}")),
            "ttl_seconds": self.ttl_seconds,
            "token_path": OAUTH_TOKEN_PATH,
            "clients": self.clients.iter().map(OAuthClient::to_json).collect::<Vec<_>>(),
        });
        if let Some(tls) = &self.tls {
            cfg["cert"] = json!(tls.cert.display().to_string());
            cfg["key"] = json!(tls.key.display().to_string());
        }
        if let Some(aud) = &self.jwt_audience {
            cfg["jwt_audience"] = json!(aud);
        }
        for (k, v) in &self.extra {
            cfg[k.as_str()] = v.clone();
        }
        cfg
    }
}

/// A running oidc-provider on `127.0.0.1:<port>`; stopped on drop.
#[derive(Debug)]
pub struct OAuthServer {
    opts: OAuthOpts,
    port: u16,
    control_port: u16,
    config: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
    dir: TempDir,
}

impl OAuthServer {
    /// Starts the server on a free port and waits until it is ready.
    pub fn start(opts: OAuthOpts) -> Result<OAuthServer> {
        require_oauth_server()?;
        if opts.clients.is_empty() {
            bail!("OAuthOpts.clients is empty");
        }
        let dir = scratch_dir()?;
        let port = free_port()?;
        let control_port = free_port()?;
        let config = dir.path().join("oauth-server.json");
        let text = serde_json::to_string_pretty(&opts.config_json(port))?;
        fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut server = OAuthServer {
            opts,
            port,
            control_port,
            config,
            log: dir.path().join("oauth-server.log"),
            proc: None,
            dir,
        };
        server.spawn(None)?;
        Ok(server)
    }

    /// Starts the server process; with `fail`, its first token requests fail from the start.
    fn spawn(&mut self, fail: Option<(FailMode, u32)>) -> Result<()> {
        let node = node_bin()?;
        let script = oauth_server_dir().join("server.mjs");
        // Appends, so the log of a restarted server still shows the earlier run.
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("opening the OAuth2 server log")?;
        let mut child = Command::new(&node)
            .arg(&script)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--control-port")
            .arg(self.control_port.to_string())
            .arg("--config")
            .arg(&self.config)
            .args(
                fail.map(|(mode, count)| {
                    ["--fail".to_string(), format!("{}:{count}", mode.as_str())]
                })
                .into_iter()
                .flatten(),
            )
            .current_dir(oauth_server_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("spawning {} {}", node.display(), script.display()))?;
        let stdout = child.stdout.take();
        let proc = Proc::new(
            format!("oauth server (port {})", self.port),
            child,
            self.log.clone(),
        );
        let stdout = stdout.ok_or_else(|| anyhow!("OAuth2 server stdout not captured"))?;
        proc.wait_ready_line(stdout, |line| Ok(line.starts_with("READY ").then_some(())))?;
        self.proc = Some(proc);
        Ok(())
    }

    /// The token port (HTTPS when started with TLS).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The plain-HTTP port of the test-control endpoints.
    pub fn control_port(&self) -> u16 {
        self.control_port
    }

    pub fn tls(&self) -> bool {
        self.opts.tls.is_some()
    }

    /// `http(s)://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// `http(s)://127.0.0.1:<port>/token`.
    pub fn token_url(&self) -> String {
        self.url(OAUTH_TOKEN_PATH)
    }

    /// The issuer identifier (always an accepted client-assertion `aud`).
    pub fn issuer(&self) -> String {
        self.opts.issuer.clone().unwrap_or_else(|| self.url(""))
    }

    pub fn opts(&self) -> &OAuthOpts {
        &self.opts
    }

    /// The JSON config file the server runs with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The scratch directory (config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far (one line per token request; all runs when restarted).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.proc.as_ref().is_some_and(|p| p.exited().is_none())
    }

    /// Stops the server (SIGTERM, then SIGKILL); the ports stay reserved for
    /// [`OAuthServer::restart`]. A no-op when already stopped.
    pub fn stop(&mut self) -> Result<()> {
        match self.proc.take() {
            Some(proc) => proc.stop(),
            None => Ok(()),
        }
    }

    /// Stops the server if running and starts it again on the same ports with the same
    /// config (counters zero, issued tokens forgotten). Waits until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        self.respawn(None)
    }

    /// [`OAuthServer::restart`] with the first `count` token requests failing as `mode` from
    /// the moment it listens ([`OAuthServer::fail_next`] after a restart leaves a window in
    /// which a request is answered normally).
    pub fn restart_failing(&mut self, mode: FailMode, count: u32) -> Result<()> {
        self.respawn(Some((mode, count)))
    }

    fn respawn(&mut self, fail: Option<(FailMode, u32)>) -> Result<()> {
        self.stop()?;
        // The port is free as soon as the old process is gone, but retry in case the kernel
        // is slow to release it.
        wait_until("the OAuth2 server restarted on its ports", || {
            match self.spawn(fail) {
                Ok(()) => Ok(Probe::Ready(())),
                Err(e) if format!("{e:#}").contains("EADDRINUSE") => {
                    Ok(Probe::Pending(format!("{e:#}")))
                }
                Err(e) => Err(e),
            }
        })
    }
}
