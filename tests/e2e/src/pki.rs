//! The throwaway PKI made by `tests/support/gen-pki.sh`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};

use crate::repo_root;

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
