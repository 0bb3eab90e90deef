//! Where things are: the repository, cargo's target directory, Envoy, the filter module,
//! `egressctl`; scratch directories and free ports; and the check that a third-party
//! dependency is installed (a missing one fails the test, naming the install step).

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Context, Result};

use crate::TempDir;

/// The step that installs every third-party server the tests run against.
pub const INSTALL_TEST_DEPS: &str =
    "bash tests/support/install-test-deps.sh (run by `make test` and `make deps`)";

/// Fails (never skips) when a dependency is missing: `found` is what looking for it gave;
/// the error names `what` and the install step.
pub fn require<T>(what: &str, found: Result<T>) -> Result<T> {
    found.map_err(|e| {
        e.context(format!(
            "{what} is required by this test and missing; install it with {INSTALL_TEST_DEPS}"
        ))
    })
}

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

pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The built filter module: `$EGRESS_FILTER_WASM`, else this tree's release build
/// (`make wasm` builds it before the tests run).
pub fn filter_wasm() -> PathBuf {
    std::env::var_os("EGRESS_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("wasm32-wasip1/release/egress_filter.wasm"))
}

/// The `egressctl` binary as a [`Command`] ready for arguments.
///
/// Uses `$EGRESSCTL_BIN` if set. Otherwise runs `cargo build -p egressctl`
/// once per test process (a no-op when up to date; cargo does not hold its
/// build lock while tests run) and uses `<target>/debug/egressctl`, so the
/// binary is never stale.
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
