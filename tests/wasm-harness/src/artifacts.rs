//! Locating and building the wasm modules the tests load.
//!
//! * The egress filter is built by whoever runs its tests (see
//!   [`egress_filter_wasm`]); the harness only finds it.
//! * The harness' own fixture module is built on demand by
//!   [`fixture_wasm`], so `cargo test -p proxy-wasm-harness` works from a
//!   fresh clone.

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Env var overriding the path of the egress filter module.
pub const EGRESS_FILTER_WASM_ENV: &str = "EGRESS_FILTER_WASM";

/// Root of the workspace this crate lives in (`tests/wasm-harness/../..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Directory holding the workspace's build output: `$CARGO_TARGET_DIR` if
/// set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}

/// Path of the compiled egress filter: `$EGRESS_FILTER_WASM` if set, else
/// `<target>/wasm32-wasip1/release/egress_filter.wasm`. Errors (with the build
/// command to run) when the file does not exist. Build it with:
///
/// ```text
/// cargo build -p egress-filter --target wasm32-wasip1 --release
/// ```
pub fn egress_filter_wasm() -> crate::Result<PathBuf> {
    let path = match std::env::var_os(EGRESS_FILTER_WASM_ENV) {
        Some(path) => PathBuf::from(path),
        None => target_dir().join("wasm32-wasip1/release/egress_filter.wasm"),
    };
    if !path.is_file() {
        return Err(anyhow::anyhow!(
            "egress filter module not found at {} (set {EGRESS_FILTER_WASM_ENV}, or build it: \
             cargo build -p egress-filter --target wasm32-wasip1 --release)",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// Runs `cargo build --manifest-path <manifest> --target wasm32-wasip1
/// --release --target-dir <target_dir>` and returns
/// `<target_dir>/wasm32-wasip1/release/<artifact>.wasm`.
///
/// Uses the `cargo` running the tests (`$CARGO`) and drops inherited
/// `RUSTFLAGS` variants (e.g. coverage instrumentation) that would break a
/// wasm build. Concurrent calls are serialized.
pub fn build_wasm(manifest: &Path, target_dir: &Path, artifact: &str) -> crate::Result<PathBuf> {
    static BUILD_LOCK: Mutex<()> = Mutex::new(());
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["--target", "wasm32-wasip1", "--release", "--target-dir"])
        .arg(target_dir);
    if let Some(dir) = manifest.parent() {
        cmd.current_dir(dir);
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MANIFEST_DIR",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .with_context(|| format!("running cargo build for {}", manifest.display()))?;
    if !output.status.success() {
        return Err(anyhow::anyhow!(
            "building {} failed ({}):\n{}",
            manifest.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let wasm = target_dir
        .join("wasm32-wasip1/release")
        .join(format!("{artifact}.wasm"));
    if !wasm.is_file() {
        return Err(anyhow::anyhow!("build succeeded but {} is missing", wasm.display()).into());
    }
    Ok(wasm)
}

/// Builds (once per process) and returns the harness' fixture module,
/// `tests/wasm-harness/fixture` → `<target>/wasm-harness-fixture/.../proxy_wasm_harness_fixture.wasm`.
pub fn fixture_wasm() -> crate::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixture/Cargo.toml");
        let target = target_dir().join("wasm-harness-fixture");
        build_wasm(&manifest, &target, "proxy_wasm_harness_fixture").map_err(|e| e.to_string())
    });
    match result {
        Ok(path) => Ok(path.clone()),
        Err(message) => Err(crate::Error::Setup(anyhow::anyhow!("{message}"))),
    }
}
