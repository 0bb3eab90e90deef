//! An Envoy proxy with one OAuth2 client-credentials target `crm`, written as a config,
//! compiled by `egressctl compile` and started: the setup the OAuth2 and token-push tests
//! share. The target's upstream is a TLS echo stand-in; the token endpoint is usually an
//! [`crate::OAuthServer`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};

use crate::wait::Probe;
use crate::{
    compile_command, free_port, scratch_dir, wait_until, Engine, Envoy, Pki, Request, Response,
    Standin, StandinOpts, TempDir,
};

/// The route prefix to the target `crm`.
pub const CRM: &str = "/egress/crm";

/// Milliseconds since the Unix epoch (to compare with a token's `exp`).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// stdout and stderr of a finished command, together.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// How the filter authenticates at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAuth {
    Basic {
        secret: String,
    },
    Post {
        secret: String,
    },
    PrivateKeyJwt {
        key: PathBuf,
        alg: String,
        kid: String,
    },
    /// The whole `auth:` block as written (its `type` included, one field a line, not
    /// indented): auth types this builder does not spell, e.g. `oauth2_jwt_bearer`.
    Yaml(String),
}

/// Where the proxy keeps tokens (`egress.token_store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenStore {
    /// The default: each proxy fetches its own.
    Memory,
    /// Push-only: tokens come from `egressctl token refresh`, sharing redis at this address.
    Redis(String),
}

/// The target `crm` and how its proxy runs.
#[derive(Debug, Clone)]
pub struct OAuth2ProxyOpts {
    pub token_url: String,
    pub client_id: String,
    pub auth: TargetAuth,
    pub refresh_before_expiry: String,
    pub token_timeout: String,
    pub store: TokenStore,
    /// `logger.level` of the request log (`debug` also logs token refreshes).
    pub log_level: String,
    /// Envoy `--concurrency` (default 2).
    pub workers: u32,
    /// Envoy's `wasm` component at debug level.
    pub wasm_debug: bool,
    /// A push key copied into the state directory before compiling, so one key signs pushes
    /// to several proxies.
    pub push_key: Option<PathBuf>,
    /// `egressctl compile --engine` (default `wasm`).
    pub engine: Engine,
}

impl OAuth2ProxyOpts {
    /// `client_secret_basic`, refresh 1s ahead, token timeout 5s, memory store, debug logs,
    /// 2 workers, the wasm engine.
    pub fn new(token_url: &str, client_id: &str, secret: &str) -> Self {
        OAuth2ProxyOpts {
            token_url: token_url.to_owned(),
            client_id: client_id.to_owned(),
            auth: TargetAuth::Basic {
                secret: secret.to_owned(),
            },
            refresh_before_expiry: "1s".to_owned(),
            token_timeout: "5s".to_owned(),
            store: TokenStore::Memory,
            log_level: "debug".to_owned(),
            workers: 2,
            wasm_debug: true,
            push_key: None,
            engine: Engine::Wasm,
        }
    }

    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    pub fn auth(mut self, auth: TargetAuth) -> Self {
        self.auth = auth;
        self
    }

    pub fn refresh_before_expiry(mut self, d: &str) -> Self {
        self.refresh_before_expiry = d.to_owned();
        self
    }

    pub fn token_timeout(mut self, d: &str) -> Self {
        self.token_timeout = d.to_owned();
        self
    }

    pub fn store(mut self, store: TokenStore) -> Self {
        self.store = store;
        self
    }

    pub fn workers(mut self, workers: u32) -> Self {
        self.workers = workers;
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    pub fn push_key(mut self, key: &Path) -> Self {
        self.push_key = Some(key.to_path_buf());
        self
    }

    /// The `auth:` block of the target.
    fn auth_yaml(&self) -> String {
        if let TargetAuth::Yaml(block) = &self.auth {
            return block.lines().map(|l| format!("        {l}\n")).collect();
        }
        let mut y = format!(
            "        type: oauth2_client_credentials\n        \
             token_url: \"{}\"\n        client_id: \"{}\"\n        \
             scopes: [\"api\"]\n        refresh_before_expiry: {}\n        token_timeout: {}\n",
            self.token_url, self.client_id, self.refresh_before_expiry, self.token_timeout
        );
        match &self.auth {
            TargetAuth::Basic { secret } => {
                y += &format!(
                    "        client_secret: \"{secret}\"\n        client_auth: client_secret_basic\n"
                );
            }
            TargetAuth::Post { secret } => {
                y += &format!(
                    "        client_secret: \"{secret}\"\n        client_auth: client_secret_post\n"
                );
            }
            TargetAuth::PrivateKeyJwt { key, alg, kid } => {
                y += &format!(
                    "        client_auth: private_key_jwt\n        private_key: \"{}\"\n        \
                     signing_alg: {alg}\n        key_id: \"{kid}\"\n",
                    key.display()
                );
            }
            TargetAuth::Yaml(_) => {}
        }
        y
    }

    /// The whole config: listener on `listen`, target `crm` at `upstream` (TLS, `ca`).
    pub fn config_yaml(&self, listen: u16, upstream: u16, ca: &Path, request_log: &Path) -> String {
        let store = match &self.store {
            TokenStore::Memory => String::new(),
            TokenStore::Redis(addr) => format!(
                "  token_store:\n    type: redis\n    redis:\n      address: \"{addr}\"\n      \
                 key_prefix: \"egress:tokens:\"\n"
            ),
        };
        format!(
            "http:\n  addr: \"127.0.0.1:{listen}\"\n\
             egress:\n  enabled: true\n{store}  targets:\n    crm:\n      \
             url: \"https://127.0.0.1:{upstream}/api\"\n      timeout: 10s\n      \
             tls:\n        ca_cert: \"{ca}\"\n      auth:\n{auth}\
             \x20 routes:\n    - path_prefix: \"{CRM}\"\n      target: crm\n      strip_prefix: \"{CRM}\"\n\
             endpoints:\n  egress: /egress\n  health: /health\n  ready: /ready\n\
             logger:\n  level: {level}\n  format: json\n  output: \"{log}\"\n",
            ca = ca.display(),
            auth = self.auth_yaml(),
            level = self.log_level,
            log = request_log.display(),
        )
    }
}

/// A running proxy for target `crm`: its Envoy, state directory and addresses.
#[derive(Debug)]
pub struct OAuth2Proxy {
    pub envoy: Envoy,
    /// `http://127.0.0.1:<listener>`.
    pub base: String,
    /// The config file `egressctl` compiled.
    pub config: PathBuf,
    /// The state directory (`--out`): envoy.yaml, push.key, state.json, ...
    pub out: PathBuf,
    /// `http://127.0.0.1:<push listener>`.
    pub push_url: String,
    /// What `egressctl compile` printed.
    pub compile_output: String,
    admin: String,
    envoy_args: Vec<String>,
    upstream: Option<Standin>,
    pub dir: TempDir,
}

impl OAuth2Proxy {
    /// A TLS echo stand-in as `crm` owned by the proxy, then [`OAuth2Proxy::start_with`].
    pub fn start(opts: &OAuth2ProxyOpts) -> Result<OAuth2Proxy> {
        let pki = Pki::generate()?;
        let upstream = Standin::start(StandinOpts::new("crm").tls(pki.server()))?;
        let mut proxy = Self::start_with(opts, upstream.port())?;
        proxy.upstream = Some(upstream);
        Ok(proxy)
    }

    /// Writes the config (target `crm` at `127.0.0.1:<upstream_port>`, TLS verified with the
    /// test CA), compiles it and starts Envoy. Waits for Envoy's admin, not for a token.
    pub fn start_with(opts: &OAuth2ProxyOpts, upstream_port: u16) -> Result<OAuth2Proxy> {
        let pki = Pki::generate()?;
        let (listen, admin, push) = (free_port()?, free_port()?, free_port()?);
        let dir = scratch_dir()?;
        let config = dir.path().join("config.yaml");
        let text = opts.config_yaml(
            listen,
            upstream_port,
            &pki.ca_cert(),
            &dir.path().join("requests.log"),
        );
        std::fs::write(&config, text).context("writing the config")?;
        let out = dir.path().join("out");
        if let Some(key) = &opts.push_key {
            std::fs::create_dir_all(&out)?;
            std::fs::copy(key, out.join("push.key")).context("copying the push key")?;
        }
        let compiled = compile_command(&config, &out, admin, opts.engine)?
            .args(["--push-addr", &format!("127.0.0.1:{push}")])
            .stdin(Stdio::null())
            .output()
            .context("running egressctl compile")?;
        let compile_output = output_text(&compiled);
        ensure!(
            compiled.status.success(),
            "egressctl compile ({}) failed: {compile_output}",
            opts.engine
        );
        let mut envoy_args = vec![
            "--concurrency".to_owned(),
            opts.workers.to_string(),
            "--file-flush-interval-msec".to_owned(),
            "100".to_owned(),
        ];
        if opts.wasm_debug {
            envoy_args.extend(["--component-log-level".to_owned(), "wasm:debug".to_owned()]);
        }
        let admin = format!("127.0.0.1:{admin}");
        let envoy = start_envoy(&out, &admin, &envoy_args)?;
        Ok(OAuth2Proxy {
            envoy,
            base: format!("http://127.0.0.1:{listen}"),
            config,
            out,
            push_url: format!("http://127.0.0.1:{push}"),
            compile_output,
            admin,
            envoy_args,
            upstream: None,
            dir,
        })
    }

    /// Stops Envoy and starts it again from the same state directory (same ports, empty
    /// shared data); waits for its admin.
    pub fn restart_envoy(&mut self) -> Result<()> {
        // The old one must be gone before the new one binds the same ports.
        self.envoy.terminate()?;
        let fresh = start_envoy(&self.out, &self.admin, &self.envoy_args)?;
        self.envoy = fresh;
        Ok(())
    }

    /// The push signing key in the state directory.
    pub fn key(&self) -> PathBuf {
        self.out.join("push.key")
    }

    /// `GET <base><path>`.
    pub fn get(&self, path: &str) -> Result<Response> {
        Request::get(&format!("{}{path}", self.base)).send()
    }

    /// `GET` timed.
    pub fn timed_get(&self, path: &str) -> Result<(Response, Duration)> {
        let start = Instant::now();
        let resp = self.get(path)?;
        Ok((resp, start.elapsed()))
    }

    /// Polls the filter's ready endpoint until 200 (a token is held), with the shared
    /// deadline; returns when.
    pub fn wait_token(&self) -> Result<Instant> {
        wait_until("the proxy holds a token (/ready 200)", || {
            if let Some(status) = self.envoy.exited() {
                anyhow::bail!("envoy exited ({status}); log:\n{}", self.envoy.log_tail());
            }
            let resp = self.get("/ready")?;
            Ok(if resp.status == 200 {
                Probe::Ready(Instant::now())
            } else {
                Probe::Pending(format!("/ready {} {}", resp.status, resp.body.trim()))
            })
        })
        .with_context(|| format!("envoy log:\n{}", self.envoy.log_tail()))
    }

    /// A counter (0 when not defined yet).
    pub fn stat(&self, name: &str) -> Result<u64> {
        Ok(self.envoy.stat(name)?.unwrap_or(0))
    }

    /// Every stat whose name starts with `prefix`.
    pub fn stats_under(&self, prefix: &str) -> Result<BTreeMap<String, u64>> {
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

    /// The request log so far.
    pub fn requests_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default()
    }
}

fn start_envoy(out: &Path, admin: &str, args: &[String]) -> Result<Envoy> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let envoy = Envoy::start(&out.join("envoy.yaml"), &args)?;
    envoy.wait_ready(admin)?;
    Ok(envoy)
}

/// The bearer token the echo upstream received (the response must be a 200 echo).
pub fn bearer(resp: &Response) -> Result<String> {
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
