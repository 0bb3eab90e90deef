//! `egressctl` commands as the tests run them: `compile` of a test's config, `token refresh`
//! (once, or `--watch` in the background) and `status`; and starting Envoy on what `compile`
//! wrote.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::envoy::Envoy;
use crate::{egressctl, filter_wasm, Engine};

/// `egressctl compile CONFIG --out OUT --admin 127.0.0.1:ADMIN --wasm <the built filter>
/// --engine ENGINE`, not yet run: a test adds its environment (or more arguments) and runs it,
/// then starts Envoy with [`envoy_from_compile`].
pub fn compile_command(config: &Path, out: &Path, admin: u16, engine: Engine) -> Result<Command> {
    let mut cmd = egressctl()?;
    cmd.arg("compile")
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .arg("--wasm")
        .arg(filter_wasm())
        .args(engine.args());
    Ok(cmd)
}
use crate::oauth2_proxy::output_text;
use crate::process::Proc;

/// `egressctl token refresh CONFIG --out OUT [--proxy URL]...`
pub fn token_refresh(config: &Path, out: &Path, proxies: &[&str]) -> Result<Output> {
    let mut cmd = egressctl()?;
    cmd.args(["token", "refresh"])
        .arg(config)
        .arg("--out")
        .arg(out);
    for p in proxies {
        cmd.args(["--proxy", p]);
    }
    cmd.stdin(Stdio::null())
        .output()
        .context("running egressctl token refresh")
}

/// `egressctl status --out OUT --format json [--proxy URL]...`: exit code and JSON.
pub fn status_json(out: &Path, proxies: &[&str]) -> Result<(Option<i32>, Value)> {
    let mut cmd = egressctl()?;
    cmd.arg("status")
        .arg("--out")
        .arg(out)
        .args(["--format", "json"]);
    for p in proxies {
        cmd.args(["--proxy", p]);
    }
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .context("running egressctl status")?;
    let v = serde_json::from_slice(&o.stdout)
        .with_context(|| format!("status output is not JSON: {}", output_text(&o)))?;
    Ok((o.status.code(), v))
}

/// One target's entry in the first proxy of a status answer (`Null` if absent).
pub fn target_status(v: &Value, target: &str) -> Value {
    v["proxies"][0]["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["target"] == target))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A running `egressctl token refresh` (`--watch`, or a single refresh), its output in a file;
/// stopped on drop.
#[derive(Debug)]
pub struct Watcher {
    proc: Proc,
}

impl Watcher {
    /// Starts `egressctl token refresh --watch CONFIG --out OUT --proxy ...`, output to `log`.
    pub fn start(config: &Path, out: &Path, proxies: &[&str], log: PathBuf) -> Result<Watcher> {
        Self::spawn(true, config, out, proxies, log)
    }

    /// Starts a single `egressctl token refresh CONFIG --out OUT --proxy ...` (no `--watch`),
    /// output to `log`: for what it does while it is still running.
    pub fn start_once(
        config: &Path,
        out: &Path,
        proxies: &[&str],
        log: PathBuf,
    ) -> Result<Watcher> {
        Self::spawn(false, config, out, proxies, log)
    }

    fn spawn(
        watch: bool,
        config: &Path,
        out: &Path,
        proxies: &[&str],
        log: PathBuf,
    ) -> Result<Watcher> {
        let what = if watch {
            "egressctl token refresh --watch"
        } else {
            "egressctl token refresh"
        };
        let mut cmd = egressctl()?;
        cmd.args(["token", "refresh"]);
        if watch {
            cmd.arg("--watch");
        }
        cmd.arg(config).arg("--out").arg(out);
        for p in proxies {
            cmd.args(["--proxy", p]);
        }
        let f = File::create(&log).context("creating the refresher log")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Watcher {
            proc: Proc::new(what.to_owned(), child, log),
        })
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// SIGTERM (SIGKILL after a grace period); the exit code.
    pub fn stop(&mut self) -> Result<Option<i32>> {
        Ok(self.proc.terminate()?.code())
    }
}

/// Starts Envoy on the bootstrap a finished `egressctl compile --out OUT` wrote and waits until
/// its admin at 127.0.0.1:`admin` is ready; a failed compile is the error, with its stderr.
pub fn envoy_from_compile(
    compiled: &Output,
    out: &Path,
    admin: u16,
    extra_args: &[&str],
) -> Result<Envoy> {
    if !compiled.status.success() {
        bail!(
            "egressctl compile failed: {}",
            String::from_utf8_lossy(&compiled.stderr)
        );
    }
    let envoy = Envoy::start(&out.join("envoy.yaml"), extra_args)?;
    envoy.wait_ready(&format!("127.0.0.1:{admin}"))?;
    Ok(envoy)
}
