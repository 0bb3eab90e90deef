//! Child processes the tests own: stopped on drop, their log tail printed when a test fails,
//! and one way to wait for them to get ready that notices at once when they exit instead.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::wait::{wait_until, Probe};

/// How long a child gets to exit after SIGTERM before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of a child's log shown in error messages and on a failing test.
pub(crate) const LOG_TAIL_LINES: usize = 40;

/// A child process that is stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) label: String,
    child: Mutex<Child>,
    pub(crate) log: PathBuf,
}

impl Proc {
    pub(crate) fn new(label: String, child: Child, log: PathBuf) -> Self {
        Proc {
            label,
            child: Mutex::new(child),
            log,
        }
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        // A poisoned lock still guards a valid Child.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn exited(&self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after a grace period; `Ok` once the child is gone.
    pub(crate) fn stop(&self) -> Result<()> {
        self.terminate().map(drop)
    }

    /// Like [`Proc::stop`], returning how the child exited.
    pub(crate) fn terminate(&self) -> Result<ExitStatus> {
        let mut child = self.child();
        if let Some(status) = child.try_wait().ok().flatten() {
            return Ok(status);
        }
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on our own child, not reaped yet (try_wait above
            // returned None while we hold the lock), so the pid is still ours.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + crate::wait::scaled(STOP_GRACE);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().ok().flatten() {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        child
            .kill()
            .with_context(|| format!("killing {}", self.label))?;
        child
            .wait()
            .with_context(|| format!("waiting for {}", self.label))
    }

    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log, LOG_TAIL_LINES)
    }

    /// Polls `probe` until it says ready, with the shared deadline; fails at once when the
    /// process exits, and with the tail of its log either way.
    pub(crate) fn wait_ready<T>(&self, mut probe: impl FnMut() -> Result<Probe<T>>) -> Result<T> {
        wait_until(format!("{} ready", self.label), || {
            if let Some(status) = self.exited() {
                bail!(
                    "{} exited ({status}) before becoming ready; its log ({}):\n{}",
                    self.label,
                    self.log.display(),
                    self.log_tail()
                );
            }
            probe()
        })
        .map_err(|e| {
            anyhow!(
                "{e:#}\n---- {} log ({}), last {LOG_TAIL_LINES} lines ----\n{}",
                self.label,
                self.log.display(),
                self.log_tail()
            )
        })
    }

    /// Waits for the line on `stdout` for which `ready` returns `Some` (e.g. a `READY <port>`
    /// line), with the shared deadline. Keeps draining stdout on a thread afterwards so the
    /// child never blocks on a full pipe.
    pub(crate) fn wait_ready_line<T>(
        &self,
        stdout: impl Read + Send + 'static,
        mut ready: impl FnMut(&str) -> Result<Option<T>>,
    ) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Nobody listening any more is fine: keep draining.
                let _ = tx.send(line);
            }
        });
        let mut stdout_closed = false;
        self.wait_ready(|| {
            if stdout_closed {
                // The child closed stdout without a ready line: it is exiting.
                return Ok(Probe::Pending("stdout closed".to_owned()));
            }
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(line) => {
                        if let Some(value) = ready(&line)? {
                            return Ok(Probe::Ready(value));
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        return Ok(Probe::Pending("no ready line yet".to_owned()))
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        stdout_closed = true;
                        return Ok(Probe::Pending("stdout closed".to_owned()));
                    }
                }
            }
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop();
        if thread::panicking() {
            eprintln!(
                "---- {} log ({}), last {LOG_TAIL_LINES} lines ----\n{}",
                self.label,
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// The last `lines` lines of a text file (empty if unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all.get(all.len().saturating_sub(lines)..)
        .unwrap_or_default()
        .join("\n")
}
