//! Python stand-ins for the external services (`examples/standins/standin.py`): an echo of
//! what they received, optional TLS and mTLS, an OAuth2 token endpoint.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context, Result};

use crate::process::Proc;
use crate::{repo_root, scratch_dir, CertKey, TempDir};

/// How to run one stand-in (`examples/standins/standin.py`).
#[derive(Debug, Clone, Default)]
pub struct StandinOpts {
    pub name: String,
    /// Serve HTTPS with this cert + key.
    pub tls: Option<CertKey>,
    /// Require a client certificate signed by this CA (needs `tls`).
    pub client_ca: Option<PathBuf>,
    /// Status for every request (default 200).
    pub status: Option<u16>,
    /// Per-method status overrides, e.g. `("POST", 201)`.
    pub status_for: Vec<(String, u16)>,
    /// Serve OAuth2 tokens on POST to this path (see standin.py).
    pub token_path: Option<String>,
    /// `expires_in` of those tokens, seconds.
    pub token_ttl: Option<u64>,
}

impl StandinOpts {
    /// Plain HTTP, 200 for everything.
    pub fn new(name: &str) -> Self {
        StandinOpts {
            name: name.to_owned(),
            ..Default::default()
        }
    }

    pub fn tls(mut self, cert_key: CertKey) -> Self {
        self.tls = Some(cert_key);
        self
    }

    pub fn client_ca(mut self, ca_cert: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(ca_cert.into());
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn status_for(mut self, method: &str, status: u16) -> Self {
        self.status_for.push((method.to_owned(), status));
        self
    }

    pub fn token_endpoint(mut self, path: &str, ttl_seconds: u64) -> Self {
        self.token_path = Some(path.to_owned());
        self.token_ttl = Some(ttl_seconds);
        self
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--name".to_owned(),
            self.name.clone(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        if let Some(tls) = &self.tls {
            args.push("--tls-cert".to_owned());
            args.push(tls.cert.display().to_string());
            args.push("--tls-key".to_owned());
            args.push(tls.key.display().to_string());
        }
        if let Some(ca) = &self.client_ca {
            args.push("--client-ca".to_owned());
            args.push(ca.display().to_string());
        }
        if let Some(status) = self.status {
            args.push("--status".to_owned());
            args.push(status.to_string());
        }
        for (method, status) in &self.status_for {
            args.push("--status-for".to_owned());
            args.push(format!("{method}={status}"));
        }
        if let Some(path) = &self.token_path {
            args.push("--token-path".to_owned());
            args.push(path.clone());
        }
        if let Some(ttl) = self.token_ttl {
            args.push("--token-ttl".to_owned());
            args.push(ttl.to_string());
        }
        args
    }
}

/// A running stand-in service on 127.0.0.1 (a random port); stopped on drop.
#[derive(Debug)]
pub struct Standin {
    name: String,
    port: u16,
    tls: bool,
    proc: Proc,
    _dir: TempDir,
}

impl Standin {
    /// Spawns `standin.py` (with `$PYTHON`, default `python3`) and waits for
    /// its `READY <name> <port>` line.
    pub fn start(opts: StandinOpts) -> Result<Standin> {
        let script = repo_root().join("examples/standins/standin.py");
        let dir = scratch_dir()?;
        let log = dir.path().join("standin.log");
        let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        let mut child = Command::new(python)
            .arg("-u")
            .arg(&script)
            .args(opts.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).context("creating the stand-in log")?)
            .spawn()
            .with_context(|| format!("spawning {}", script.display()))?;
        let stdout = child.stdout.take();
        let proc = Proc::new(format!("stand-in {}", opts.name), child, log);
        let stdout = stdout.ok_or_else(|| anyhow!("stand-in stdout not captured"))?;
        // `READY <name> <port>` once it listens.
        let port = proc.wait_ready_line(stdout, |line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("READY"), Some(_name), Some(port)) => Ok(Some(
                    port.parse::<u16>()
                        .with_context(|| format!("bad READY line {line:?}"))?,
                )),
                _ => Ok(None),
            }
        })?;
        Ok(Standin {
            name: opts.name,
            port,
            tls: opts.tls.is_some(),
            proc,
            _dir: dir,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http(s)://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// What the stand-in logged so far (one line per request, errors).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// Stops the stand-in now (also done on drop).
    pub fn stop(self) -> Result<()> {
        self.proc.stop()
    }
}
