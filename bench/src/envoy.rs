//! One Envoy process per case: started pinned, waited for, read (stats, resident memory).

use crate::http;
use crate::procs::{output, pinned, Proc};
use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// How long an Envoy may take to be ready (10,000 routes included).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Envoy and its listener port.
pub struct Envoy {
    pub listen: u16,
    pub proc: Proc,
}

/// How to run Envoy: binary, worker threads, the cores it is pinned to.
#[derive(Debug, Clone)]
pub struct EnvoyRun<'a> {
    pub bin: &'a Path,
    pub concurrency: u32,
    pub cpus: &'a str,
}

impl Envoy {
    /// Starts `envoy -c config` (hot restart off, so many can run side by side) and waits for
    /// the admin's `/ready` to say LIVE.
    pub fn start(
        run: &EnvoyRun<'_>,
        label: &str,
        config: &Path,
        listen: u16,
        admin: u16,
        log: &Path,
    ) -> Result<Envoy> {
        let mut cmd = pinned(run.cpus, run.bin);
        cmd.arg("-c").arg(config);
        cmd.arg("--concurrency").arg(run.concurrency.to_string());
        cmd.args(["--disable-hot-restart", "--log-level", "warn"]);
        let mut proc = Proc::spawn(label, cmd, log)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            proc.check_alive()?;
            if matches!(http::get(admin, "/ready"), Ok(r) if r.status == 200) {
                return Ok(Envoy { listen, proc });
            }
            if Instant::now() > deadline {
                bail!(
                    "{label}: not ready within {READY_TIMEOUT:?}:\n{}",
                    proc.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `envoy --mode validate -c config`: fails with Envoy's complaint.
pub fn validate(bin: &Path, config: &Path) -> Result<()> {
    let mut cmd = Command::new(bin);
    cmd.args(["--mode", "validate", "--log-level", "error", "-c"]);
    cmd.arg(config);
    output(cmd).map(|_| ())
}

/// `envoy --version`, trimmed to the version part.
pub fn version(bin: &Path) -> String {
    let mut cmd = Command::new(bin);
    cmd.arg("--version");
    output(cmd)
        .map(|v| {
            v.split_once("version:")
                .map_or(v.as_str(), |(_, v)| v)
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|e| format!("unknown ({e})"))
}
