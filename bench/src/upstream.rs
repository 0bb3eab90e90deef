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

/// The TLS front of case 8 (wrk cannot present a client certificate): plain HTTP in, and to
/// `envoy_port` HTTPS with the client certificate `load.crt` from `pki`, the server verified
/// against `mesh-ca.crt` as `localhost`; upstream connections kept alive and reused, so the
/// handshakes happen once per connection, not per request.
pub fn front_conf(port: u16, dir: &Path, envoy_port: u16, pki: &Path) -> String {
    let p = |name: &str| format!("\"{}\"", dir.join(name).display());
    let k = |name: &str| format!("\"{}\"", pki.join(name).display());
    format!(
        r#"# Written by egress-bench: the TLS front of the mTLS callers case.
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

    upstream envoy {{
        server 127.0.0.1:{envoy_port};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
    }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /ready {{
            return 200 "front
";
        }}
        location / {{
            proxy_pass https://envoy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_certificate {cert};
            proxy_ssl_certificate_key {key};
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
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
        cert = k("load.crt"),
        key = k("load.key"),
        ca = k("mesh-ca.crt"),
    )
}

impl Nginx {
    /// Starts the benchmark upstream pinned to `cpus` and waits until it answers.
    pub fn start(dir: &Path, cpus: &str) -> Result<Nginx> {
        Nginx::start_with(dir, cpus, nginx_conf)
    }

    /// Starts case 8's TLS front to `envoy_port` (see [`front_conf`]).
    pub fn start_front(dir: &Path, cpus: &str, envoy_port: u16, pki: &Path) -> Result<Nginx> {
        Nginx::start_with(dir, cpus, |port, dir| {
            front_conf(port, dir, envoy_port, pki)
        })
    }

    /// Starts nginx with the config `conf(port, dir)` pinned to `cpus`; waits until `/ready`
    /// answers 200.
    fn start_with(
        dir: &Path,
        cpus: &str,
        conf_for: impl Fn(u16, &Path) -> String,
    ) -> Result<Nginx> {
        let bin = find_program("nginx", &["/usr/sbin", "/usr/local/sbin"]).ok_or_else(|| {
            anyhow!("no nginx: run `bash tests/support/install-test-deps.sh` (make deps)")
        })?;
        fs::create_dir_all(dir)?;
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        fs::write(&conf, conf_for(port, dir))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_front_presents_the_load_certificate_and_keeps_connections() {
        let conf = front_conf(
            7000,
            Path::new("/w/front"),
            7100,
            Path::new("/w/callers-pki"),
        );
        assert!(conf.contains("listen 127.0.0.1:7000 backlog=4096;"));
        assert!(conf.contains("server 127.0.0.1:7100;\n        keepalive 64;"));
        assert!(conf.contains("proxy_pass https://envoy;"));
        assert!(conf.contains("proxy_ssl_certificate \"/w/callers-pki/load.crt\";"));
        assert!(conf.contains("proxy_ssl_certificate_key \"/w/callers-pki/load.key\";"));
        assert!(conf.contains("proxy_ssl_trusted_certificate \"/w/callers-pki/mesh-ca.crt\";"));
        assert!(conf.contains("proxy_ssl_verify on;"));
        // Without these nginx closes every upstream connection: a handshake per request.
        assert!(
            conf.contains("proxy_http_version 1.1;\n            proxy_set_header Connection \"\";")
        );
    }
}
