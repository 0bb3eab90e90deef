//! Building blocks for end-to-end tests: a real Envoy, Python stand-ins for the
//! external services, a throwaway PKI and a small HTTP client.
//!
//! Everything here is blocking and owns its processes: [`Standin`] and [`Envoy`]
//! stop their child process on drop and, when dropped during a panic (a failing
//! test), print the tail of the child's log so the failure explains itself.
//!
//! ```no_run
//! use egress_e2e::*;
//! # fn main() -> anyhow::Result<()> {
//! let pki = Pki::generate()?;
//! let notify = Standin::start(StandinOpts::new("notify").tls(pki.server()))?;
//! let (listen, admin) = (free_port()?, free_port()?);
//! let scratch = scratch_dir()?;
//! let bootstrap = scratch.path().join("envoy.yaml");
//! std::fs::write(&bootstrap, format!("...uses {listen}, {admin} and {}...", notify.port()))?;
//! let envoy = Envoy::start(&bootstrap, &[])?;
//! envoy.wait_ready(&format!("127.0.0.1:{admin}"))?;
//! let echo = get(&format!("http://127.0.0.1:{listen}/notify/email"))?.json()?;
//! assert_eq!(echo["path"], "/email");
//! # Ok(()) }
//! ```
//!
//! Requirements: `python3` (or `$PYTHON`) and `openssl` on PATH, and Envoy (see
//! [`envoy_bin`]; `bash envoy/install.sh` installs it into `<repo>/.venv`).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

pub use tempfile::TempDir;

pub mod nginx;
pub use nginx::{nginx_bin, nginx_or_skip, Nginx, NginxOpts};
pub mod oauth;
pub use oauth::{
    node_bin, oauth_server_available, oauth_server_dir, oauth_server_or_skip, FailMode,
    OAuthClient, OAuthClientAuth, OAuthOpts, OAuthServer, OAUTH_TOKEN_PATH,
};

/// How long a stand-in may take to print its READY line.
pub const STANDIN_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long Envoy may take to answer 200 on the admin `/ready`.
pub const ENVOY_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a child gets to exit after SIGTERM before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of a child's log shown in error messages and on a failing test.
const LOG_TAIL_LINES: usize = 40;

// ---------------------------------------------------------------------------
// Paths and binaries
// ---------------------------------------------------------------------------

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        None => repo_root().join("target"),
    }
}

/// The Envoy binary: `$ENVOY_BIN`, else `<repo>/.venv/bin/envoy` (what
/// `envoy/install.sh` creates), else `envoy` on `PATH`.
pub fn envoy_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!("ENVOY_BIN={} does not exist", bin.display());
    }
    let venv = repo_root().join(".venv/bin/envoy");
    if venv.is_file() {
        return Ok(venv);
    }
    find_on_path("envoy").ok_or_else(|| {
        anyhow!(
            "no Envoy found: set ENVOY_BIN, or run `bash envoy/install.sh` to install it into {}",
            venv.display()
        )
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The `egressctl` binary as a [`Command`] ready for arguments.
///
/// Uses `$EGRESSCTL_BIN` if set. Otherwise runs `cargo build -p egressctl`
/// once per test process (a no-op when up to date; cargo does not hold its
/// build lock while tests run) and uses `<target>/debug/egressctl`, so the
/// binary is never stale.
/// The built filter module: `$EGRESS_FILTER_WASM`, else this tree's release build
/// (`make wasm` builds it before the tests run).
pub fn filter_wasm() -> PathBuf {
    std::env::var_os("EGRESS_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("wasm32-wasip1/release/egress_filter.wasm"))
}

pub fn egressctl() -> Result<Command> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let bin = BIN
        .get_or_init(|| locate_egressctl().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))?;
    let mut cmd = Command::new(bin);
    // Every compile renders a token push listener; give each its own port so Envoys run side
    // by side (a test that pushes passes --push-addr itself).
    cmd.env("EGRESS_PUSH_ADDR", format!("127.0.0.1:{}", free_port()?));
    Ok(cmd)
}

fn locate_egressctl() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("EGRESSCTL_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let bin = target_dir().join("debug/egressctl");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "-p", "egressctl"])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .context("running `cargo build -p egressctl`")?;
    if !out.status.success() {
        bail!(
            "`cargo build -p egressctl` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !bin.is_file() {
        bail!(
            "`cargo build -p egressctl` did not produce {}",
            bin.display()
        );
    }
    Ok(bin)
}

/// A fresh temporary directory, deleted on drop (bootstraps, configs, logs).
pub fn scratch_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("egress-e2e-")
        .tempdir()
        .context("creating a temporary directory")
}

/// A TCP port on 127.0.0.1 that was free a moment ago. Never hands out the
/// same port twice within one test process, so parallel tests don't collide.
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
    bail!("no free port found on 127.0.0.1")
}

// ---------------------------------------------------------------------------
// PKI
// ---------------------------------------------------------------------------

/// A certificate (chain) and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The test PKI made by `tests/support/gen-pki.sh` (see that script for the
/// details). Server certs are valid for `localhost`, `127.0.0.1` and every
/// host name in the spec (`notify.internal.svc`, `audit.secure.svc`, ...).
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Generates the PKI once per test process (into a per-process directory
    /// under the system temp dir) and returns it; later calls reuse it.
    pub fn generate() -> Result<&'static Pki> {
        static PKI: OnceLock<std::result::Result<Pki, String>> = OnceLock::new();
        PKI.get_or_init(|| Self::generate_into_temp().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("generating the test PKI: {e}"))
    }

    fn generate_into_temp() -> Result<Pki> {
        const PREFIX: &str = "egress-e2e-pki-";
        let tmp = std::env::temp_dir();
        // Remove the PKIs of earlier test processes that are gone.
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
                    continue;
                };
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        // A leftover from an earlier process with the same pid is reused if
        // complete and unexpired; gen-pki.sh decides.
        Self::generate_in(&tmp.join(format!("{PREFIX}{}", std::process::id())))
    }

    /// Runs `gen-pki.sh` into `dir` (idempotent) and returns the PKI there.
    pub fn generate_in(dir: &Path) -> Result<Pki> {
        let script = repo_root().join("tests/support/gen-pki.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} {} failed ({}): {}",
                script.display(),
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory holding all the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the PKI by name, e.g. `pki.path("ca.crt")`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn pair(&self, stem: &str) -> CertKey {
        CertKey {
            cert: self.path(&format!("{stem}.crt")),
            key: self.path(&format!("{stem}.key")),
        }
    }

    /// The CA that signed [`Pki::server`]: what Envoy should trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// Server cert + key signed by [`Pki::ca_cert`].
    pub fn server(&self) -> CertKey {
        self.pair("server")
    }

    /// An unrelated CA ("wrong CA" tests).
    pub fn other_ca_cert(&self) -> PathBuf {
        self.path("other-ca.crt")
    }

    /// Server cert + key signed by [`Pki::other_ca_cert`], same names as `server`.
    pub fn other_server(&self) -> CertKey {
        self.pair("other-server")
    }

    /// CA that signed [`Pki::client`]: what an mTLS stand-in requires.
    pub fn client_ca_cert(&self) -> PathBuf {
        self.path("client-ca.crt")
    }

    /// Client cert + key, CN `egress-proxy`, signed by [`Pki::client_ca_cert`].
    pub fn client(&self) -> CertKey {
        self.pair("client")
    }

    /// Self-signed server cert + key (insecure_skip_verify tests).
    pub fn self_signed(&self) -> CertKey {
        self.pair("self-signed")
    }
}

/// The CN of [`Pki::client`], as a stand-in reports it in `client_cert`.
pub const CLIENT_CERT_CN: &str = "egress-proxy";

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A child process that is stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
struct Proc {
    label: String,
    child: Mutex<Child>,
    log: PathBuf,
}

impl Proc {
    fn new(label: String, child: Child, log: PathBuf) -> Self {
        Proc {
            label,
            child: Mutex::new(child),
            log,
        }
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        // A poisoned lock still guards a valid Child.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn exited(&self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    fn stop(&self) -> Result<()> {
        let mut child = self.child();
        if child.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on our own child, not reaped yet (try_wait above
            // returned None while we hold the lock), so the pid is still ours.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        child
            .kill()
            .with_context(|| format!("killing {}", self.label))?;
        child
            .wait()
            .with_context(|| format!("waiting for {}", self.label))?;
        Ok(())
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log, LOG_TAIL_LINES)
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
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// Stand-ins
// ---------------------------------------------------------------------------

/// How to run one stand-in (`examples/standins/standin.py`).
#[derive(Debug, Clone, Default)]
pub struct StandinOpts {
    pub name: String,
    /// Serve HTTPS with this cert + key.
    pub tls: Option<CertKey>,
    /// Require a client certificate signed by this CA (needs `tls`).
    pub client_ca: Option<PathBuf>,
    /// Status for every request (default 200).
    pub status: Option<u16>,
    /// Per-method status overrides, e.g. `("POST", 201)`.
    pub status_for: Vec<(String, u16)>,
    /// Serve OAuth2 tokens on POST to this path (see standin.py).
    pub token_path: Option<String>,
    /// `expires_in` of those tokens, seconds.
    pub token_ttl: Option<u64>,
}

impl StandinOpts {
    /// Plain HTTP, 200 for everything.
    pub fn new(name: &str) -> Self {
        StandinOpts {
            name: name.to_owned(),
            ..Default::default()
        }
    }

    pub fn tls(mut self, cert_key: CertKey) -> Self {
        self.tls = Some(cert_key);
        self
    }

    pub fn client_ca(mut self, ca_cert: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(ca_cert.into());
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn status_for(mut self, method: &str, status: u16) -> Self {
        self.status_for.push((method.to_owned(), status));
        self
    }

    pub fn token_endpoint(mut self, path: &str, ttl_seconds: u64) -> Self {
        self.token_path = Some(path.to_owned());
        self.token_ttl = Some(ttl_seconds);
        self
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--name".to_owned(),
            self.name.clone(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        if let Some(tls) = &self.tls {
            args.push("--tls-cert".to_owned());
            args.push(tls.cert.display().to_string());
            args.push("--tls-key".to_owned());
            args.push(tls.key.display().to_string());
        }
        if let Some(ca) = &self.client_ca {
            args.push("--client-ca".to_owned());
            args.push(ca.display().to_string());
        }
        if let Some(status) = self.status {
            args.push("--status".to_owned());
            args.push(status.to_string());
        }
        for (method, status) in &self.status_for {
            args.push("--status-for".to_owned());
            args.push(format!("{method}={status}"));
        }
        if let Some(path) = &self.token_path {
            args.push("--token-path".to_owned());
            args.push(path.clone());
        }
        if let Some(ttl) = self.token_ttl {
            args.push("--token-ttl".to_owned());
            args.push(ttl.to_string());
        }
        args
    }
}

/// A running stand-in service on 127.0.0.1 (a random port); stopped on drop.
#[derive(Debug)]
pub struct Standin {
    name: String,
    port: u16,
    tls: bool,
    proc: Proc,
    _dir: TempDir,
}

impl Standin {
    /// Spawns `standin.py` (with `$PYTHON`, default `python3`) and waits for
    /// its `READY <name> <port>` line.
    pub fn start(opts: StandinOpts) -> Result<Standin> {
        let script = repo_root().join("examples/standins/standin.py");
        let dir = scratch_dir()?;
        let log = dir.path().join("standin.log");
        let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        let mut child = Command::new(python)
            .arg("-u")
            .arg(&script)
            .args(opts.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).context("creating the stand-in log")?)
            .spawn()
            .with_context(|| format!("spawning {}", script.display()))?;
        let stdout = child.stdout.take();
        let proc = Proc::new(format!("stand-in {}", opts.name), child, log);
        let stdout = stdout.ok_or_else(|| anyhow!("stand-in stdout not captured"))?;

        // Read stdout on a thread (it keeps draining after READY).
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Receiver gone: keep draining so the child never blocks.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + STANDIN_READY_TIMEOUT;
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let mut words = line.split_whitespace();
                    if let (Some("READY"), Some(_name), Some(port)) =
                        (words.next(), words.next(), words.next())
                    {
                        break port
                            .parse::<u16>()
                            .with_context(|| format!("bad READY line {line:?}"))?;
                    }
                }
                Err(_) => {
                    let status = proc.exited();
                    bail!(
                        "stand-in {} not ready within {:?} (exit status: {:?}); log:\n{}",
                        opts.name,
                        STANDIN_READY_TIMEOUT,
                        status,
                        proc.log_tail()
                    );
                }
            }
        };
        Ok(Standin {
            name: opts.name,
            port,
            tls: opts.tls.is_some(),
            proc,
            _dir: dir,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http(s)://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// What the stand-in logged so far (one line per request, errors).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// Stops the stand-in now (also done on drop).
    pub fn stop(self) -> Result<()> {
        self.proc.stop()
    }
}

// ---------------------------------------------------------------------------
// Envoy
// ---------------------------------------------------------------------------

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
    /// Like `egressctl up`, Envoy gets the variables of the `secrets.env` next to the
    /// bootstrap (the credentials the listeners name), when there is one.
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

    /// Polls `GET http://<admin_addr>/ready` until it answers 200, failing
    /// after [`ENVOY_READY_TIMEOUT`] or as soon as Envoy exits, with the tail
    /// of Envoy's log in the error.
    pub fn wait_ready(&self, admin_addr: &str) -> Result<()> {
        self.wait_ready_within(admin_addr, ENVOY_READY_TIMEOUT)
    }

    /// [`Envoy::wait_ready`] with an explicit timeout.
    pub fn wait_ready_within(&self, admin_addr: &str, timeout: Duration) -> Result<()> {
        let url = format!("http://{admin_addr}/ready");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                bail!(
                    "envoy exited ({status}) before becoming ready; log:\n{}",
                    self.log_tail()
                );
            }
            let last = match Request::get(&url).timeout(Duration::from_secs(2)).send() {
                Ok(resp) if resp.status == 200 => return Ok(()),
                Ok(resp) => format!("{} {}", resp.status, resp.body.trim()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "envoy not ready within {timeout:?} ({url}: {last}); log:\n{}",
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
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

// ---------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Response {
    /// A header by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The body parsed as JSON (a stand-in's echo, an error body, ...).
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| {
            format!(
                "response body is not JSON (status {}): {:?}",
                self.status, self.body
            )
        })
    }
}

/// A plain-HTTP request. 4xx/5xx are returned as responses, not errors;
/// redirects are not followed. Errors mean no response at all.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
}

impl Request {
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// A JSON body with `content-type: application/json`.
    pub fn json(self, value: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn send(self) -> Result<Response> {
        let what = format!("{} {}", self.method, self.url);
        self.send_inner().with_context(|| what)
    }

    fn send_inner(self) -> Result<Response> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .allow_non_standard_methods(true)
            .timeout_global(Some(self.timeout))
            .build()
            .into();
        let mut builder = ureq::http::Request::builder()
            .method(self.method.as_str())
            .uri(self.url.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        // No body: nothing for GET & co. (not `content-length: 0`), and an
        // empty body with `content-length: 0` for POST/PUT/PATCH (not chunked).
        let body = match self.body {
            Some(body) => Some(body),
            None if matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") => Some(Vec::new()),
            None => None,
        };
        let mut response = match body {
            Some(body) => agent.run(builder.body(body).context("building the request")?)?,
            None => agent.run(builder.body(()).context("building the request")?)?,
        };
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_ascii_lowercase())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let mut bytes = Vec::new();
        response
            .body_mut()
            .as_reader()
            .read_to_end(&mut bytes)
            .context("reading the response body")?;
        Ok(Response {
            status: response.status().as_u16(),
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response> {
    Request::get(url).send()
}

/// Any method, optional headers and body.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response> {
    let mut req = Request::new(method, url);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    if let Some(body) = body {
        req = req.body(body.to_vec());
    }
    req.send()
}
