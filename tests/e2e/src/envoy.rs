//! A real Envoy run by the tests: unique base ids so any number run side by side, the admin
//! interface (ready, stats), its log.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::process::Proc;
use crate::wait::{wait_within, Probe};
use crate::{envoy_bin, get, scratch_dir, Request, Response, TempDir};

/// A running Envoy; stopped on drop (SIGTERM, then SIGKILL).
#[derive(Debug)]
pub struct Envoy {
    proc: Proc,
    admin_address_file: PathBuf,
    base_id: u32,
    _dir: TempDir,
}

impl Envoy {
    /// Spawns `envoy -c <bootstrap> --concurrency 2 --base-id <unique>
    /// --admin-address-path <file>` plus `extra_args`, which may override
    /// `--concurrency` and `--base-id` (or pass `--use-dynamic-base-id` /
    /// `--disable-hot-restart`). stdout and stderr go to [`Envoy::log_path`].
    /// The base id is unique per process and call, so any number of Envoys can
    /// run side by side. Returns at once; call [`Envoy::wait_ready`].
    pub fn start(bootstrap: &Path, extra_args: &[&str]) -> Result<Envoy> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let bin = envoy_bin()?;
        let dir = scratch_dir()?;
        let log = dir.path().join("envoy.log");
        let admin_address_file = dir.path().join("admin-address");
        // pid_max is at most 2^22, so pid * 1000 + n fits a u32 and is unique
        // among live processes.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 1000;
        let base_id = std::process::id().wrapping_mul(1000).wrapping_add(n);

        let mut cmd = Command::new(&bin);
        // Like `egressctl up`: the variables of the `secrets.env` next to the bootstrap (the
        // credentials the listeners name), when there is one.
        if let Some(secrets) = bootstrap.parent().map(|d| d.join("secrets.env")) {
            if let Ok(text) = std::fs::read_to_string(&secrets) {
                cmd.envs(
                    text.lines()
                        .filter(|l| !l.starts_with('#'))
                        .filter_map(|l| l.split_once('=')),
                );
            }
        }
        cmd.arg("-c")
            .arg(bootstrap)
            .arg("--admin-address-path")
            .arg(&admin_address_file);
        let hot_restart_args = [
            "--base-id",
            "--use-dynamic-base-id",
            "--disable-hot-restart",
        ];
        if !extra_args.iter().any(|a| hot_restart_args.contains(a)) {
            cmd.args(["--base-id", &base_id.to_string()]);
        }
        if !extra_args.contains(&"--concurrency") {
            cmd.args(["--concurrency", "2"]);
        }
        let log_file = File::create(&log).context("creating the Envoy log")?;
        let child = cmd
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("cloning the log handle")?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        Ok(Envoy {
            proc: Proc::new(format!("envoy (base id {base_id})"), child, log),
            admin_address_file,
            base_id,
            _dir: dir,
        })
    }

    /// Polls `GET http://<admin_addr>/ready` until it answers 200, with the shared deadline
    /// ([`crate::patience`]); fails as soon as Envoy exits, with the tail of its log.
    pub fn wait_ready(&self, admin_addr: &str) -> Result<()> {
        self.wait_ready_within(admin_addr, crate::patience())
    }

    /// [`Envoy::wait_ready`] with an explicit deadline.
    pub fn wait_ready_within(&self, admin_addr: &str, timeout: Duration) -> Result<()> {
        let url = format!("http://{admin_addr}/ready");
        wait_within(format!("envoy ready at {url}"), timeout, || {
            if let Some(status) = self.exited() {
                bail!("envoy exited ({status}) before becoming ready");
            }
            Ok(
                match Request::get(&url).timeout(Duration::from_secs(5)).send() {
                    Ok(resp) if resp.status == 200 => Probe::Ready(()),
                    Ok(resp) => Probe::Pending(format!("{} {}", resp.status, resp.body.trim())),
                    Err(e) => Probe::Pending(format!("{e:#}")),
                },
            )
        })
        .map_err(|e| anyhow!("{e:#}; envoy log:\n{}", self.log_tail()))
    }

    /// The admin address Envoy reports (via `--admin-address-path`), e.g.
    /// `127.0.0.1:9901`; works with an admin port of 0 too. Available once the
    /// admin server is up (after [`Envoy::wait_ready`]).
    pub fn admin_addr(&self) -> Result<String> {
        let addr = fs::read_to_string(&self.admin_address_file)
            .with_context(|| {
                format!(
                    "envoy has not written its admin address yet; log:\n{}",
                    self.log_tail()
                )
            })?
            .trim()
            .to_owned();
        if addr.is_empty() {
            bail!("envoy wrote an empty admin address");
        }
        Ok(addr)
    }

    /// `GET http://<admin><path>` on the admin interface, e.g. `/stats?filter=ssl`.
    pub fn admin_get(&self, path: &str) -> Result<Response> {
        get(&format!("http://{}{path}", self.admin_addr()?))
    }

    /// The value of one counter or gauge from `/stats` (None if absent).
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        let body = self
            .admin_get(&format!("/stats?filter={}", exact_stat_filter(name)))?
            .body;
        Ok(body.lines().find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        }))
    }

    /// The base id this Envoy runs with.
    pub fn base_id(&self) -> u32 {
        self.base_id
    }

    /// Where stdout and stderr of Envoy go.
    pub fn log_path(&self) -> &Path {
        &self.proc.log
    }

    /// Envoy's whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// The last lines of Envoy's log.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// Whether (and how) Envoy has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.proc.exited()
    }

    /// Stops Envoy now without giving it up (SIGTERM, then SIGKILL after a grace period);
    /// how it exited.
    pub fn terminate(&self) -> Result<ExitStatus> {
        self.proc.terminate()
    }

    /// Stops Envoy now (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(self) -> Result<()> {
        self.proc.stop()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.proc.stop();
        // Envoy leaves its hot-restart shared memory behind even on a clean
        // exit; remove ours so test runs don't pile files up in /dev/shm.
        let shm = format!(
            "/dev/shm/envoy_shared_memory_{}",
            u64::from(self.base_id) * 10
        );
        let _ = fs::remove_file(shm);
    }
}

/// `name` as an anchored RE2 pattern, percent-encoded for a query string.
fn exact_stat_filter(name: &str) -> String {
    let mut out = String::from("%5E");
    for c in name.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => out.push(c),
            '.' => out.push_str("%5C."),
            other => {
                if "\\^$|?*+()[]{}".contains(other) {
                    out.push_str("%5C");
                }
                let mut buf = [0u8; 4];
                for byte in other.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
        }
    }
    out.push_str("%24");
    out
}
