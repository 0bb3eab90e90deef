//! Load: wrk runs (pinned to their own core) and what they print, and per-core CPU use
//! during a run (from /proc/stat) to show where the bottleneck was.

use crate::procs::{output, pinned};
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub requests: u64,
    /// `Non-2xx or 3xx responses`.
    pub non_2xx: u64,
    /// connect + read + write + timeout socket errors.
    pub socket_errors: u64,
}

/// How wrk is run.
#[derive(Debug, Clone)]
pub struct Wrk<'a> {
    pub bin: &'a Path,
    pub cpus: &'a str,
    pub threads: u32,
    pub connections: u32,
}

/// A client certificate for wrk: `shim` (bench/wrk-client-cert, preloaded) loads `cert` and
/// `key` into wrk's TLS contexts.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub shim: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Wrk<'_> {
    /// `wrk -t T -c C -d D --latency URL`, pinned; returns the parsed summary.
    pub fn run(&self, url: &str, duration: Duration) -> Result<WrkResult> {
        self.run_with(url, &[], None, duration)
    }

    /// [`Wrk::run`] with extra request headers (`-H "Name: value"` each) and, for `https`
    /// URLs, a client certificate.
    pub fn run_with(
        &self,
        url: &str,
        headers: &[String],
        cert: Option<&ClientCert>,
        duration: Duration,
    ) -> Result<WrkResult> {
        let mut cmd = pinned(self.cpus, self.bin);
        if let Some(c) = cert {
            cmd.env("LD_PRELOAD", &c.shim);
            cmd.env("BENCH_CLIENT_CERT", &c.cert);
            cmd.env("BENCH_CLIENT_KEY", &c.key);
        }
        for h in headers {
            cmd.arg("-H").arg(h);
        }
        cmd.arg("-t").arg(self.threads.to_string());
        cmd.arg("-c").arg(self.connections.to_string());
        cmd.arg("-d").arg(format!("{}s", duration.as_secs().max(1)));
        cmd.arg("--latency").arg(url);
        let text = output(cmd)?;
        parse_wrk(&text).with_context(|| format!("parsing wrk's output:\n{text}"))
    }
}

/// A wrk duration (`512.00us`, `1.23ms`, `2.00s`, `1.00m`) in microseconds.
fn parse_latency_us(s: &str) -> Result<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| anyhow!("latency without unit: {s:?}"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("latency {s:?}"))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => bail!("latency unit {unit:?} in {s:?}"),
    };
    Ok(n * scale)
}

/// Parses wrk's `--latency` report.
pub fn parse_wrk(text: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let (mut rps, mut p50, mut p99, mut reqs) = (None, None, None, None);
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => rps = Some(v.parse::<f64>()?),
            (Some("50%"), Some(v)) => p50 = Some(parse_latency_us(v)?),
            (Some("99%"), Some(v)) => p99 = Some(parse_latency_us(v)?),
            (Some(n), Some("requests")) => reqs = Some(n.parse::<u64>()?),
            _ => {}
        }
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = n.trim().parse()?;
        }
        if let Some(errs) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            r.socket_errors = errs
                .split(',')
                .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    r.requests_per_sec = rps.ok_or_else(|| anyhow!("no Requests/sec line"))?;
    r.p50_us = p50.ok_or_else(|| anyhow!("no 50% latency line (was --latency given?)"))?;
    r.p99_us = p99.ok_or_else(|| anyhow!("no 99% latency line"))?;
    r.requests = reqs.ok_or_else(|| anyhow!("no 'N requests in' line"))?;
    Ok(r)
}

/// Busy and total jiffies of each CPU (`cpu0`, `cpu1`, …) from /proc/stat.
pub fn cpu_times() -> Vec<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().sum();
            // idle + iowait are not busy.
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// Per-core busy fraction between two [`cpu_times`] samples.
pub fn busy_between(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(&(b0, t0), &(b1, t1))| {
            let total = t1.saturating_sub(t0);
            if total == 0 {
                0.0
            } else {
                b1.saturating_sub(b0) as f64 / total as f64
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OK: &str = "\
Running 10s test @ http://127.0.0.1:40001/egress/api/v1/items/42
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.34us  120.11us   9.87ms   91.20%
    Req/Sec    19.63k   510.22    20.41k    80.00%
  Latency Distribution
     50%  798.00us
     75%  850.00us
     90%  912.00us
     99%    1.23ms
  195412 requests in 10.00s, 30.12MB read
Requests/sec:  19540.87
Transfer/sec:      3.01MB
";

    #[test]
    fn parses_a_clean_run() {
        let r = parse_wrk(WRK_OK).unwrap_or_default();
        assert_eq!(r.requests_per_sec, 19540.87);
        assert_eq!(r.p50_us, 798.0);
        assert!((r.p99_us - 1230.0).abs() < 1e-6);
        assert_eq!(r.requests, 195_412);
        assert_eq!((r.non_2xx, r.socket_errors), (0, 0));
    }

    #[test]
    fn counts_errors_and_reads_second_latencies() {
        let text = WRK_OK
            .replace("     99%    1.23ms", "     99%    2.50s")
            .replace(
                "Requests/sec:",
                "  Socket errors: connect 0, read 3, write 1, timeout 2\n  Non-2xx or 3xx responses: 17\nRequests/sec:",
            );
        let r = parse_wrk(&text).unwrap_or_default();
        assert_eq!(r.p99_us, 2_500_000.0);
        assert_eq!(r.non_2xx, 17);
        assert_eq!(r.socket_errors, 6);
    }

    #[test]
    fn refuses_output_without_latency_distribution() {
        let text: String = WRK_OK
            .lines()
            .filter(|l| !l.contains('%') || l.contains("Stdev"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_wrk(&text).is_err());
        assert!(parse_latency_us("12.0").is_err());
        assert_eq!(parse_latency_us("1.50m").unwrap_or_default(), 90e6);
    }

    #[test]
    fn busy_fraction_per_core() {
        let before = [(100, 1000), (0, 1000)];
        let after = [(1100, 2000), (250, 2000)];
        assert_eq!(busy_between(&before, &after), vec![1.0, 0.25]);
    }
}
