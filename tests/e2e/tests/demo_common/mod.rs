//! What the demo-config tests share: the spec's seed config pointed at local stand-ins,
//! compiled by `egressctl compile`, run by a real Envoy.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::{Context, Result};
use egress_e2e::*;
use serde_json::Value;
use std::path::PathBuf;

/// The seed's secrets, unique so any leak is easy to find.
pub const SECRETS: [(&str, &str); 7] = [
    ("SALESFORCE_CLIENT_ID", "e2e-sf-client"),
    ("SALESFORCE_CLIENT_SECRET", "SECRET-sf-client-secret"),
    ("NOTIFICATION_API_KEY", "SECRET-notify-key"),
    ("ANALYTICS_BEARER_TOKEN", "SECRET-analytics-token"),
    ("ERP_USERNAME", "erp-user"),
    ("ERP_PASSWORD", "SECRET-erp-password"),
    ("REDIS_PASSWORD", "SECRET-redis"),
];

pub fn demo_config() -> PathBuf {
    repo_root().join("examples/demo/config.yaml")
}

/// Stand-ins for the spec's services, Envoy with the compiled demo config, and where to reach them.
pub struct Proxy {
    pub standins: Vec<Standin>,
    pub envoy: Envoy,
    pub base: String,
    pub state: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// The engine `egressctl compile` rendered with.
    pub engine: Engine,
    /// The config file compiled (the demo config, or a changed copy).
    pub config: PathBuf,
    /// Holds a changed copy of the config.
    _config_dir: Option<tempfile::TempDir>,
}

/// What to change in the demo setup.
#[derive(Default)]
pub struct Setup {
    /// Serve notification with a certificate from another CA.
    pub notification_wrong_ca: bool,
    /// Extra environment for the config (e.g. a different CA path).
    pub env: Vec<(String, String)>,
    /// Stop the OAuth2 token endpoint before Envoy starts (so no fetch can succeed; the
    /// stand-in is removed from `standins`).
    pub token_endpoint_down: bool,
    /// `egress.enabled: false` (a changed copy of the demo config).
    pub egress_disabled: bool,
    /// `egress.path_mode: strict`, and salesforce on a static bearer token instead of OAuth2:
    /// a config of static credentials only (a changed copy of the demo config).
    pub strict_static: bool,
}

/// The salesforce target's OAuth2 block in the demo config.
const SALESFORCE_OAUTH2: &str = r#"        type: oauth2_client_credentials
        token_url: "https://127.0.0.1:${DEMO_SALESFORCE_LOGIN_PORT:-9106}/services/oauth2/token"
        client_id: "${SALESFORCE_CLIENT_ID}"
        client_secret: "${SALESFORCE_CLIENT_SECRET}"
        scopes: ["api", "refresh_token"]
        refresh_before_expiry: 300s
"#;

impl Proxy {
    pub fn start(engine: Engine) -> Result<Self> {
        Self::start_with(engine, Setup::default())
    }

    pub fn start_with(engine: Engine, setup: Setup) -> Result<Self> {
        let pki = Pki::generate()?;
        let server = pki.server();
        let notify_cert = if setup.notification_wrong_ca {
            pki.other_server()
        } else {
            pki.server()
        };
        let standins = vec![
            Standin::start(
                StandinOpts::new("salesforce")
                    .tls(server.clone())
                    .status_for("POST", 201),
            )?,
            Standin::start(
                StandinOpts::new("salesforce-login")
                    .tls(server.clone())
                    .token_endpoint("/services/oauth2/token", 3600),
            )?,
            Standin::start(StandinOpts::new("notification").tls(notify_cert))?,
            Standin::start(
                StandinOpts::new("audit")
                    .tls(server.clone())
                    .client_ca(pki.client_ca_cert()),
            )?,
            Standin::start(StandinOpts::new("analytics").tls(server.clone()))?,
            Standin::start(StandinOpts::new("legacy-erp").tls(pki.self_signed()))?,
        ];
        let mut env: Vec<(String, String)> = SECRETS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (var, s) in [
            ("DEMO_SALESFORCE_PORT", &standins[0]),
            ("DEMO_SALESFORCE_LOGIN_PORT", &standins[1]),
            ("DEMO_NOTIFY_PORT", &standins[2]),
            ("DEMO_AUDIT_PORT", &standins[3]),
            ("DEMO_ANALYTICS_PORT", &standins[4]),
            ("DEMO_ERP_PORT", &standins[5]),
        ] {
            env.push((var.into(), s.port().to_string()));
        }
        env.push(("DEMO_PKI".into(), pki.dir().display().to_string()));
        env.extend(setup.env);
        let mut standins = standins;
        if setup.token_endpoint_down {
            standins.remove(1).stop()?;
        }
        let mut config = demo_config();
        let mut config_dir = None;
        let mut edits: Vec<(&str, &str)> = Vec::new();
        if setup.egress_disabled {
            edits.push(("egress:\n  enabled: true", "egress:\n  enabled: false"));
        }
        if setup.strict_static {
            edits.push((
                "egress:\n  enabled:",
                "egress:\n  path_mode: strict\n  enabled:",
            ));
            edits.push((
                SALESFORCE_OAUTH2,
                "        type: bearer\n        token: \"${SALESFORCE_CLIENT_SECRET}\"\n",
            ));
        }
        if !edits.is_empty() {
            let mut changed = std::fs::read_to_string(&config)?;
            for (from, to) in edits {
                anyhow::ensure!(
                    changed.contains(from),
                    "{from:?} not found in the demo config"
                );
                changed = changed.replacen(from, to, 1);
            }
            let dir = scratch_dir()?;
            config = dir.path().join("config.yaml");
            std::fs::write(&config, changed)?;
            config_dir = Some(dir);
        }
        let mut proxy = Self::compile_and_start(engine, env, config)?;
        proxy._config_dir = config_dir;
        proxy.standins = standins;
        Ok(proxy)
    }

    /// A second proxy on the same stand-ins (same config, same ports of the services), rendered
    /// with `engine`: its own listener, admin, state directory and request log.
    pub fn twin(&self, engine: Engine) -> Result<Self> {
        let env = self
            .env
            .iter()
            .filter(|(k, _)| k != "DEMO_LISTEN" && k != "DEMO_STATE")
            .cloned()
            .collect();
        Self::compile_and_start(engine, env, self.config.clone())
    }

    /// `egressctl compile --engine ENGINE` of the demo config with `env` (plus a fresh
    /// `DEMO_LISTEN` and `DEMO_STATE`), and Envoy started on it; no stand-ins of its own.
    fn compile_and_start(
        engine: Engine,
        mut env: Vec<(String, String)>,
        config: PathBuf,
    ) -> Result<Self> {
        let listen = free_port()?;
        let admin = free_port()?;
        let state = scratch_dir()?;
        env.push(("DEMO_LISTEN".into(), format!("127.0.0.1:{listen}")));
        env.push(("DEMO_STATE".into(), state.path().display().to_string()));
        let out = state.path().join("out");
        let compiled = compile_command(&config, &out, admin, engine)?
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .context("running egressctl")?;
        let envoy = envoy_from_compile(
            &compiled,
            &out,
            admin,
            &["--file-flush-interval-msec", "100"],
        )
        .with_context(|| engine.to_string())?;
        Ok(Self {
            standins: Vec::new(),
            envoy,
            base: format!("http://127.0.0.1:{listen}"),
            state,
            env,
            engine,
            config,
            _config_dir: None,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn send(&self, method: &str, path: &str) -> Response {
        let engine = self.engine;
        Request::new(method, &self.url(path))
            .send()
            .unwrap_or_else(|e| panic!("{engine}: {method} {path}: {e:#}"))
    }

    /// Request lines of the access log, waiting until at least `n` are there.
    pub fn request_log(&self, n: usize) -> Vec<String> {
        let path = self.state.path().join("requests.log");
        wait_until(format!("{n} lines in the request log"), || {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            Ok(if lines.len() >= n {
                Probe::Ready(lines)
            } else {
                Probe::Pending(format!("{} lines", lines.len()))
            })
        })
        .unwrap()
    }
}

/// The upstream's echo of what it received.
pub fn echo(r: &Response) -> Value {
    assert!(
        r.status < 300,
        "expected a forwarded request, got {} {}",
        r.status,
        r.body.as_str()
    );
    r.json().unwrap()
}

pub fn assert_no_secret(text: &str) {
    assert!(!text.contains("SECRET-"), "a secret leaked: {text}");
}
