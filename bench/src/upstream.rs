//! The servers behind the Envoys: nginx answering `return 200` (the benchmark upstream, never
//! the bottleneck) and the Python stand-in serving OAuth2 tokens (fetched once per Envoy).

use crate::http;
use crate::procs::{find_program, free_port, pinned, Proc};
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// nginx on 127.0.0.1:`port`. Every request is answered 200 with one short line naming what
/// arrived (`<uri> key=<x-api-key> auth=<authorization>`), so the harness can check each
/// case's credential and rewrite before measuring; the variables cost nginx next to nothing.
pub struct Nginx {
    pub port: u16,
    pub proc: Proc,
}

/// The whole `nginx.conf`: one process (no master), no access log, keep-alive connections
/// that are never recycled (so Envoy's upstream pool stays warm), everything under `dir`.
pub fn nginx_conf(port: u16, dir: &Path) -> String {
    let p = |name: &str| format!("\"{}\"", dir.join(name).display());
    format!(
        r#"# Written by egress-bench: the benchmark upstream.
daemon off;
master_process off;
worker_processes 1;
pid {pid};
error_log {error_log} warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_body_temp_path {body};
    proxy_temp_path {proxy};
    fastcgi_temp_path {fastcgi};
    uwsgi_temp_path {uwsgi};
    scgi_temp_path {scgi};

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "$uri key=$http_x_api_key auth=$http_authorization\n";
        }}
    }}
}}
"#,
        pid = p("nginx.pid"),
        error_log = p("error.log"),
        body = p("client_body_temp"),
        proxy = p("proxy_temp"),
        fastcgi = p("fastcgi_temp"),
        uwsgi = p("uwsgi_temp"),
        scgi = p("scgi_temp"),
    )
}

impl Nginx {
    /// Starts nginx pinned to `cpus` and waits until it answers.
    pub fn start(dir: &Path, cpus: &str) -> Result<Nginx> {
        let bin = find_program("nginx", &["/usr/sbin", "/usr/local/sbin"]).ok_or_else(|| {
            anyhow!("no nginx: run `bash tests/support/install-test-deps.sh` (make deps)")
        })?;
        fs::create_dir_all(dir)?;
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        fs::write(&conf, nginx_conf(port, dir))
            .with_context(|| format!("writing {}", conf.display()))?;
        let mut cmd = pinned(cpus, &bin);
        cmd.arg("-p").arg(dir).arg("-e").arg(dir.join("error.log"));
        cmd.arg("-c").arg(&conf);
        let mut proc = Proc::spawn("nginx", cmd, &dir.join("stdio.log"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            proc.check_alive()?;
            if matches!(http::get(port, "/ready"), Ok(r) if r.status == 200) {
                return Ok(Nginx { port, proc });
            }
            if Instant::now() > deadline {
                bail!("nginx did not answer on port {port}: {}", proc.log_tail());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `examples/standins/standin.py` serving tokens at `/token` (TTL one hour: no refresh during
/// the run).
pub struct TokenServer {
    pub port: u16,
    pub proc: Proc,
}

impl TokenServer {
    pub fn start(repo: &Path, dir: &Path, cpus: &str) -> Result<TokenServer> {
        let python = find_program("python3", &[]).ok_or_else(|| anyhow!("no python3 on PATH"))?;
        let mut cmd = pinned(cpus, &python);
        cmd.arg(repo.join("examples/standins/standin.py"));
        cmd.args(["--name", "tokens", "--listen", "127.0.0.1:0"]);
        cmd.args(["--token-path", "/token", "--token-ttl", "3600"]);
        let log = dir.join("token-server.log");
        let mut proc = Proc::spawn("token server (standin.py)", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            proc.check_alive()?;
            let text = fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = text
                .lines()
                .find_map(|l| l.strip_prefix("READY tokens "))
                .and_then(|p| p.trim().parse().ok())
            {
                return Ok(TokenServer { port, proc });
            }
            if Instant::now() > deadline {
                bail!("standin.py printed no READY line: {}", proc.log_tail());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `nginx -v` (for the results' Setup table).
pub fn nginx_version() -> String {
    let Some(bin) = find_program("nginx", &["/usr/sbin", "/usr/local/sbin"]) else {
        return "nginx (not found)".into();
    };
    Command::new(bin)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default()
}
