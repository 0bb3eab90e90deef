//! `egressctl up CONFIG`: compile into the state directory and run Envoy in the foreground.

use super::compile::compile;
use super::load_or_report;
use crate::cli::UpArgs;
use crate::envoy::locate;
use crate::exit::ExitCode;
use anyhow::Context;
use egress_core::config::LogOutput;
use egress_core::plan::LogLevel;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub fn run(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let source = match load_or_report(&args.config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let envoy = match locate::envoy(args.envoy.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("egressctl: {e}");
            return Ok(ExitCode::Failure);
        }
    };
    let (dir, _) = compile(&source, &args.render, &args.out)?;
    let level = match source.config.logger.level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info | LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let mut cmd = Command::new(&envoy);
    // The credentials: the listeners name these variables, the filter reads them.
    cmd.envs(
        dir.read_secrets()?
            .into_iter()
            .map(|(k, v)| (k, v.expose().to_string())),
    );
    cmd.arg("-c")
        .arg(dir.envoy_yaml())
        .arg("--concurrency")
        .arg(args.concurrency.to_string())
        .arg("--log-level")
        .arg(level)
        // The filter's own lines (config accepted/refused, debug) at the configured level.
        .arg("--component-log-level")
        .arg(format!("wasm:{}", source.config.logger.level.as_str()))
        // Request lines reach the log within a quarter second (Envoy's default is 10s).
        .arg("--file-flush-interval-msec")
        .arg("250");
    if let Some(id) = args.base_id {
        cmd.arg("--base-id").arg(id.to_string());
    }
    if matches!(source.config.logger.output, LogOutput::Stdout) {
        eprintln!(
            "egressctl: Envoy {} listening on {} (admin {}); request log on stdout; Ctrl-C stops it",
            envoy.display(),
            source.config.http.listen,
            args.render.admin
        );
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", envoy.display()))?;

    // Ctrl-C reaches Envoy too (same process group); SIGTERM may reach only us: forward it.
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(SIGTERM, Arc::clone(&stop))?;
    let mut forwarded = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if stop.load(Ordering::Relaxed) && !forwarded {
            forwarded = true;
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) on our own child's pid; no memory is touched.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if forwarded || status.success() {
        eprintln!("egressctl: Envoy stopped");
        Ok(ExitCode::Success)
    } else {
        eprintln!("egressctl: Envoy exited with {status}");
        Ok(ExitCode::Failure)
    }
}
