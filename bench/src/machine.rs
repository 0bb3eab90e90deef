//! What machine and software a run was on, for the results file.

use crate::procs::output;
use std::fs;
use std::path::Path;
use std::process::Command;

fn cmd_line(program: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    output(cmd)
        .map(|s| s.lines().next().unwrap_or("").trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn proc_field(file: &str, key: &str) -> Option<String> {
    fs::read_to_string(file).ok()?.lines().find_map(|l| {
        l.strip_prefix(key)?
            .trim_start()
            .strip_prefix(':')
            .map(|v| v.trim().to_owned())
    })
}

/// `(what, value)` rows describing the machine.
pub fn describe(wrk: &Path) -> Vec<(String, String)> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = proc_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or_else(
            || "unknown".into(),
            |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0),
        );
    let os = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let wrk_version = Command::new(wrk)
        .arg("-v")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .next()
                .unwrap_or("")
                .split(" Copyright")
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default();
    vec![
        (
            "CPU".into(),
            proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
        ),
        ("cores".into(), cores.to_string()),
        ("memory".into(), mem),
        ("OS".into(), os),
        ("kernel".into(), cmd_line("uname", &["-sr"])),
        ("load generator".into(), wrk_version),
        ("upstream".into(), crate::upstream::nginx_version()),
        ("rustc".into(), cmd_line("rustc", &["--version"])),
        ("load average before the run".into(), load_average()),
    ]
}

/// The 1/5/15-minute load averages.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `git describe`-like commit of the tree, `-dirty` when it has changes.
pub fn commit(repo: &Path) -> String {
    let mut head = Command::new("git");
    head.arg("-C")
        .arg(repo)
        .args(["rev-parse", "--short", "HEAD"]);
    let head = output(head)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let mut status = Command::new("git");
    status
        .arg("-C")
        .arg(repo)
        .args(["status", "--porcelain", "--", "filter", "ctl"]);
    let dirty = output(status)
        .map(|s| !s.trim().is_empty())
        .unwrap_or(false);
    if dirty {
        format!("commit {head} (filter/ or ctl/ modified)")
    } else {
        format!("commit {head}")
    }
}

/// The current time in UTC, `YYYY-MM-DD HH:MM UTC`.
pub fn now_utc() -> String {
    cmd_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}
