//! A real nginx as an upstream: a well-kept third-party TLS server next to our Python
//! stand-ins, so the proxy's upstream TLS and mTLS are checked against an implementation we
//! did not write.
//!
//! [`Nginx::start`] writes a minimal `nginx.conf` into a scratch directory (every path nginx
//! writes — pid, logs, temp dirs — inside it), runs `nginx -p DIR -c DIR/nginx.conf` in the
//! foreground as a single process (`daemon off; master_process off;`), waits until the port
//! completes a TLS handshake, and stops it on drop. Every request to any path is answered
//! `200` with a JSON echo of what arrived:
//!
//! ```json
//! {"server":"nginx","method":"POST","uri":"/email","host":"...","sni":"notify.internal.svc",
//!  "x_api_key":"...","authorization":"","client_verify":"NONE","client_dn":""}
//! ```
//!
//! An absent header echoes as `""`. `client_verify` is nginx's `$ssl_client_verify`
//! (`SUCCESS`, `FAILED:<reason>` or `NONE`) and `client_dn` its `$ssl_client_s_dn`
//! (RFC 2253, e.g. `CN=egress-proxy,...`). Values are inserted as nginx has them, without
//! JSON escaping, so a header value holding `"` or `\` would break the JSON; tests send none.
//!
//! With [`NginxOpts::client_ca`] nginx sets `ssl_verify_client on`: a client without a
//! certificate from that CA gets nginx's own `400` page ("No required SSL certificate was
//! sent") instead of the echo.
//!
//! nginx is found by [`nginx_bin`]; `bash tests/support/install-test-deps.sh` (run by
//! `make deps`) installs it. Without it [`Nginx::start`] fails, naming that step
//! ([`require_nginx`]); nothing is skipped.

use std::fs::{self, File};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::wait::Probe;
use crate::{find_on_path, free_port, require, scratch_dir, CertKey, Proc, TempDir};

/// The nginx binary: `$NGINX_BIN`, else `nginx` on `PATH`, else `/usr/sbin/nginx` (Debian
/// installs it there, which is not on every user's `PATH`), else `/usr/local/sbin/nginx`.
pub fn nginx_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("NGINX_BIN") {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!("NGINX_BIN={} does not exist", bin.display());
    }
    if let Some(bin) = find_on_path("nginx") {
        return Ok(bin);
    }
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|bin| bin.is_file())
        .ok_or_else(|| {
            anyhow!(
                "no nginx found (NGINX_BIN, PATH, /usr/sbin, /usr/local/sbin): \
                 run `bash tests/support/install-test-deps.sh` (or `make deps`) to install it"
            )
        })
}

/// The nginx binary, or an error naming the install step: a test that needs nginx fails
/// without it (never skips).
pub fn require_nginx() -> Result<std::path::PathBuf> {
    require("nginx", nginx_bin())
}

/// Kept for tests written before nothing was skipped: `Ok(true)` when nginx is there, else
/// the error of [`require_nginx`]. Never `Ok(false)`.
pub fn nginx_or_skip(_test: &str) -> Result<bool> {
    require_nginx().map(|_| true)
}

/// How to run one nginx.
#[derive(Debug, Clone)]
pub struct NginxOpts {
    /// A label for logs and error messages.
    pub name: String,
    /// Serve HTTPS with this cert + key.
    pub tls: CertKey,
    /// `ssl_verify_client on` with this CA (`ssl_client_certificate`).
    pub client_ca: Option<PathBuf>,
}

impl NginxOpts {
    /// HTTPS with `tls`, no client certificate required.
    pub fn new(name: &str, tls: CertKey) -> Self {
        NginxOpts {
            name: name.to_owned(),
            tls,
            client_ca: None,
        }
    }

    /// Require a client certificate signed by `ca_cert`.
    pub fn client_ca(mut self, ca_cert: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(ca_cert.into());
        self
    }
}

/// A running nginx on `127.0.0.1:<port>`; stopped on drop (SIGTERM, then SIGKILL), printing
/// the tail of its error log when dropped during a panic.
#[derive(Debug)]
pub struct Nginx {
    name: String,
    port: u16,
    proc: Proc,
    dir: TempDir,
}

/// `s` as an nginx string in double quotes (paths from the temp dir and the PKI).
fn quoted(s: &Path) -> String {
    let s = s.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The JSON echo every request gets, as an nginx single-quoted string (it has no `'`).
const ECHO_BODY: &str = concat!(
    r#"'{"server":"nginx","method":"$request_method","uri":"$request_uri","#,
    r#""host":"$host","sni":"$ssl_server_name","#,
    r#""x_api_key":"$http_x_api_key","authorization":"$http_authorization","#,
    r#""client_verify":"$ssl_client_verify","client_dn":"$ssl_client_s_dn"}'"#,
);

/// The whole `nginx.conf` for `opts`, listening on `port`, with everything under `dir`.
pub fn nginx_conf(opts: &NginxOpts, port: u16, dir: &Path) -> String {
    let p = |name: &str| quoted(&dir.join(name));
    let client_ca = match &opts.client_ca {
        Some(ca) => format!(
            "        ssl_client_certificate {};\n        ssl_verify_client on;\n",
            quoted(ca)
        ),
        None => String::new(),
    };
    format!(
        r#"# Written by egress-e2e for nginx "{name}"; everything it writes stays in this directory.
daemon off;
master_process off;
worker_processes 1;
pid {pid};
error_log {error_log} info;

events {{
    worker_connections 64;
}}

http {{
    access_log {access_log};
    client_body_temp_path {body};
    proxy_temp_path {proxy};
    fastcgi_temp_path {fastcgi};
    uwsgi_temp_path {uwsgi};
    scgi_temp_path {scgi};

    server {{
        listen 127.0.0.1:{port} ssl;
        server_name _;
        ssl_certificate {cert};
        ssl_certificate_key {key};
{client_ca}
        location / {{
            default_type application/json;
            return 200 {echo};
        }}
    }}
}}
"#,
        name = opts.name.replace(['\n', '\r'], " "),
        pid = p("nginx.pid"),
        error_log = p("error.log"),
        access_log = p("access.log"),
        body = p("client_body_temp"),
        proxy = p("proxy_temp"),
        fastcgi = p("fastcgi_temp"),
        uwsgi = p("uwsgi_temp"),
        scgi = p("scgi_temp"),
        cert = quoted(&opts.tls.cert),
        key = quoted(&opts.tls.key),
        echo = ECHO_BODY,
    )
}

impl Nginx {
    /// Writes the config, starts nginx and waits until `127.0.0.1:<port>` completes a TLS
    /// handshake (checked with `openssl s_client`), failing with nginx's error log if it
    /// exits first or is not ready within the shared deadline ([`crate::patience`]).
    pub fn start(opts: NginxOpts) -> Result<Nginx> {
        let bin = require_nginx()?;
        let dir = scratch_dir()?;
        let port = free_port()?;
        let conf = dir.path().join("nginx.conf");
        File::create(&conf)
            .and_then(|mut f| f.write_all(nginx_conf(&opts, port, dir.path()).as_bytes()))
            .with_context(|| format!("writing {}", conf.display()))?;
        // stdout/stderr (startup messages before the config is read) go next to error.log.
        let log = dir.path().join("error.log");
        let stdio_log = dir.path().join("stdio.log");
        let stdio = File::create(&stdio_log).context("creating the nginx stdio log")?;
        let child = Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(&log)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(stdio.try_clone().context("cloning the log handle")?)
            .stderr(stdio)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let nginx = Nginx {
            name: opts.name.clone(),
            port,
            proc: Proc::new(format!("nginx {}", opts.name), child, log),
            dir,
        };
        nginx.wait_ready(&stdio_log)?;
        Ok(nginx)
    }

    fn wait_ready(&self, stdio_log: &Path) -> Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        self.proc
            .wait_ready(|| {
                Ok(
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                        Ok(_) => match tls_handshake(self.port) {
                            Ok(()) => Probe::Ready(()),
                            Err(e) => Probe::Pending(format!("{e:#}")),
                        },
                        Err(e) => Probe::Pending(format!("connect {addr}: {e}")),
                    },
                )
            })
            .with_context(|| {
                format!(
                    "nginx {} stdout/stderr:\n{}",
                    self.name,
                    fs::read_to_string(stdio_log).unwrap_or_default()
                )
            })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The scratch directory holding `nginx.conf` and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// nginx's access log so far (one line per request, combined format).
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// nginx's error log so far (startup notices, TLS handshake failures at `info`).
    pub fn error_log(&self) -> String {
        fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// Stops nginx now (also done on drop).
    pub fn stop(self) -> Result<()> {
        self.proc.stop()
    }
}

/// One TLS handshake with `127.0.0.1:<port>` via `openssl s_client` (no verification: this
/// only asks whether the server speaks TLS yet).
fn tls_handshake(port: u16) -> Result<()> {
    let out = Command::new("openssl")
        .args(["s_client", "-brief", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", "localhost"])
        .stdin(Stdio::null())
        .output()
        .context("running `openssl s_client`")?;
    // -brief prints "CONNECTION ESTABLISHED" (to stderr) once the handshake is done.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("CONNECTION ESTABLISHED") {
        Ok(())
    } else {
        bail!(
            "TLS handshake with 127.0.0.1:{port} failed ({}): {}",
            out.status,
            text.trim()
        )
    }
}
