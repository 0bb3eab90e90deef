//! Child processes stopped on drop, free ports, the scratch directory.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashSet;
use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// A running child process, its stdout and stderr in `log`; SIGTERM (then SIGKILL) on drop.
#[derive(Debug)]
pub struct Proc {
    pub label: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout + stderr appended to `log`.
    pub fn spawn(label: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("cloning a log handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("{label}: spawning {cmd:?}"))?;
        Ok(Proc {
            label: label.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` when the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Fails with the log tail when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.exited() {
            Some(status) => bail!(
                "{} exited ({status}); its log {}:\n{}",
                self.label,
                self.log.display(),
                self.log_tail()
            ),
            None => Ok(()),
        }
    }

    /// CPU time used so far by all its threads (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command (which may hold spaces) start at state; utime and stime
        // are the 14th and 15th fields overall.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|v| v.parse().ok())
            .collect();
        f.iter().sum()
    }

    /// CPU time used so far in user space by all its threads, in clock ticks (without the
    /// kernel's share, which moves with how many requests each wake-up finds).
    pub fn user_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        rest.split_whitespace()
            .nth(11)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Resident memory (VmRSS) in KiB, from /proc.
    pub fn rss_kib(&self) -> Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .with_context(|| format!("{}: reading /proc status", self.label))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("{}: no VmRSS in /proc status", self.label))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, never the same twice in this process.
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(Default::default);
    for _ in 0..100 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .context("binding 127.0.0.1:0")?
            .port();
        let mut seen = handed_out
            .lock()
            .map_err(|_| anyhow!("port set poisoned"))?;
        if seen.insert(port) {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1")
}

/// `program` found on `PATH`, or in the extra directories given.
pub fn find_program(program: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A command run under `taskset -c <cpus>` (pinned to those cores).
pub fn pinned(cpus: &str, program: &Path) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(cpus).arg(program);
    cmd
}

/// Runs `cmd` to completion and returns its stdout; fails with stderr on a non-zero exit.
pub fn output(mut cmd: Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
