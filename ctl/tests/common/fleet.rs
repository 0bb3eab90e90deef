//! What the fleet test files share: a scratch folder with a config, a stand-in module and a
//! client certificate; `egressctl render` there; and the published-schema validators.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
pub fn schemas() -> PathBuf {
    repo().join("tests/support/schemas")
}
/// A stand-in module: render only needs its digest.
pub const MODULE: &[u8] = b"\0asm\x01\0\0\0";

pub fn ctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_egressctl"))
        .current_dir(dir)
        .args(args)
        .env("FLEET_API_KEY", "fleet-secret-value-1234")
        .output()
        .unwrap()
}

/// Writes `c.crt` and `c.key` in `dir`: a self-signed certificate for audit.example.com,
/// valid for `days`.
pub fn self_signed_cert(dir: &Path, days: u32) {
    let days = days.to_string();
    let gen = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "c.key",
            "-out",
            "c.crt",
            "-days",
            &days,
            "-subj",
            "/CN=audit.example.com",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(gen.status.success());
}

pub fn setup(extra_target: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    self_signed_cert(p, 1);
    std::fs::write(p.join("m.wasm"), MODULE).unwrap();
    std::fs::write(
        p.join("config.yaml"),
        format!(
            "http:\n  addr: \"0.0.0.0:8080\"\negress:\n  targets:\n    open:\n      url: \"http://inventory.internal:9000\"\n    audit_svc:\n      url: \"https://audit.example.com\"\n      auth: {{type: mtls}}\n      tls: {{ca_cert: c.crt, client_cert: c.crt, client_key: c.key}}\n{extra_target}endpoints:\n  health: /healthz\n  ready: /readyz\n"
        ),
    )
    .unwrap();
    d
}

pub fn render(d: &Path, what: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "render",
        what,
        "config.yaml",
        "--out",
        "out",
        "--module-image",
        "registry.example.com/egress/filter",
        "--wasm",
        "m.wasm",
    ];
    args.extend_from_slice(extra);
    ctl(d, &args)
}

pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

pub fn load(p: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

pub fn kubernetes_validate(files: &[PathBuf]) -> Output {
    let bin = schemas().join(".venv/bin/kubernetes-validate");
    assert!(
        bin.exists(),
        "{} missing: run bash tests/support/install-fleet-deps.sh",
        bin.display()
    );
    Command::new(bin)
        .args(["-k", "1.35.0", "--strict", "--quiet"])
        .args(files)
        .output()
        .unwrap()
}

pub fn istio_validate(objects: &[Value]) -> Output {
    let modules = schemas().join("node_modules/@kubernetes-models/istio");
    assert!(
        modules.exists(),
        "{} missing: run bash tests/support/install-fleet-deps.sh",
        modules.display()
    );
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), serde_json::to_vec(objects).unwrap()).unwrap();
    Command::new("node")
        .arg(schemas().join("validate-istio.mjs"))
        .arg(f.path())
        .current_dir(schemas())
        .output()
        .unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
