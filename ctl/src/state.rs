//! The state directory `compile`, `up` and `apply` share (`--out DIR`, default `.egressctl/`):
//!
//! - `envoy.yaml`: the bootstrap (admin; listeners and clusters from the two files below).
//! - `lds.yaml`, `cds.yaml`: listeners and clusters, watched by Envoy (file-based xDS).
//! - `filter.json`: the filter's config, as inlined in the listener (credential references and
//!   sealed values, no credential in clear).
//! - `secrets.env`: the credential variables and the seal key Envoy must be started with (see
//!   [`crate::secrets`]).
//! - `state.json`: what later commands need without repeating flags (admin address, module,
//!   CA bundle, the config file compiled).
//!
//! Every file is written to a temporary name and renamed into place (Envoy reloads on the
//! rename), readable by the owner only: they hold credentials.

use crate::envoy::{self, Rendered, CLUSTER_TYPE, LISTENER_TYPE};
use anyhow::Context;
use egress_core::build::SecretVar;
use egress_core::config::ListenAddr;
use egress_core::plan::FilterConfig;
use egress_core::secret::Secret;
use egress_core::secret_ref::SealKey;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEFAULT_DIR: &str = ".egressctl";

/// Recorded at compile time, read by `apply` and `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub admin: String,
    pub wasm: PathBuf,
    pub system_ca: Option<PathBuf>,
    pub config: PathBuf,
    /// The token push listener (`egressctl token refresh` and `status` talk to it).
    #[serde(default)]
    pub push_addr: Option<String>,
    /// `--engine` (a state directory from before engines were chosen was rendered for `wasm`).
    #[serde(default = "wasm_engine")]
    pub engine: egress_core::native::EngineChoice,
}

fn wasm_engine() -> egress_core::native::EngineChoice {
    egress_core::native::EngineChoice::Wasm
}

pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: &Path) -> Self {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self { dir }
    }

    pub fn envoy_yaml(&self) -> PathBuf {
        self.dir.join("envoy.yaml")
    }
    pub fn lds(&self) -> PathBuf {
        self.dir.join("lds.yaml")
    }
    pub fn cds(&self) -> PathBuf {
        self.dir.join("cds.yaml")
    }
    pub fn filter_json(&self) -> PathBuf {
        self.dir.join("filter.json")
    }
    pub fn state_json(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn secrets_env(&self) -> PathBuf {
        self.dir.join("secrets.env")
    }

    /// The variables of `secrets.env` (empty when there is none).
    pub fn read_secrets(&self) -> anyhow::Result<Vec<(String, Secret)>> {
        crate::secrets::read_env_file(&self.secrets_env())
    }

    /// The seal key of `secrets.env`, or a new one when there is none: kept across compiles, so a
    /// running Envoy (started with the key) can open what a later compile or apply seals.
    pub fn seal_key(&self) -> anyhow::Result<SealKey> {
        Ok(crate::secrets::seal_key_of(&self.read_secrets()?)
            .unwrap_or_else(crate::secrets::new_seal_key))
    }

    pub fn write_secrets(&self, vars: &[SecretVar], key: &SealKey) -> anyhow::Result<()> {
        write_private(
            &self.secrets_env(),
            crate::secrets::env_file(vars, key).as_bytes(),
        )
    }

    /// Ed25519 private key signing token pushes (mode 0600); the proxies know only the public key.
    pub fn push_key(&self) -> PathBuf {
        self.dir.join("push.key")
    }

    /// The push key pair, created on first use.
    pub fn push_signer(&self) -> anyhow::Result<egress_core::push::PushSigner> {
        let path = self.push_key();
        if let Ok(pem) = std::fs::read_to_string(&path) {
            return egress_core::push::PushSigner::from_pem(&pem)
                .with_context(|| format!("{} is not a valid push key", path.display()));
        }
        std::fs::create_dir_all(&self.dir)?;
        let signer = egress_core::push::PushSigner::generate();
        write_private(&path, signer.to_pem().as_bytes())?;
        Ok(signer)
    }

    pub fn read_state(&self) -> anyhow::Result<State> {
        let path = self.state_json();
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "{} not found: compile into {} first (egressctl compile CONFIG --out {0})",
                path.display(),
                self.dir.display()
            )
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid", path.display()))
    }

    pub fn read_filter_config(&self) -> Option<FilterConfig> {
        std::fs::read(self.filter_json())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    pub fn write_clusters(&self, r: &Rendered) -> anyhow::Result<()> {
        write_yaml(
            &self.cds(),
            &envoy::resource_file(CLUSTER_TYPE, &r.clusters),
        )
    }

    pub fn write_listeners(&self, r: &Rendered) -> anyhow::Result<()> {
        write_yaml(
            &self.lds(),
            &envoy::resource_file(LISTENER_TYPE, &r.listeners),
        )
    }

    pub fn write_bootstrap(&self, admin: &ListenAddr) -> anyhow::Result<()> {
        write_yaml(
            &self.envoy_yaml(),
            &envoy::bootstrap(admin, &self.lds(), &self.cds()),
        )
    }

    pub fn write_filter_config(&self, fc: &FilterConfig) -> anyhow::Result<()> {
        write_private(
            &self.filter_json(),
            serde_json::to_string_pretty(fc)?.as_bytes(),
        )
    }

    pub fn write_state(&self, state: &State) -> anyhow::Result<()> {
        write_private(
            &self.state_json(),
            serde_json::to_string_pretty(state)?.as_bytes(),
        )
    }

    /// The current contents of a file, to put back if Envoy rejects its replacement.
    pub fn snapshot(&self, path: &Path) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }

    pub fn restore(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        write_private(path, bytes)
    }
}

const HEADER: &str = "# Generated by egressctl. Do not edit: change the config and run `egressctl compile` or `egressctl apply`.\n";

fn write_yaml(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let yaml = serde_yaml::to_string(value).context("cannot render YAML")?;
    write_private(path, format!("{HEADER}{yaml}").as_bytes())
}

/// Writes a file readable by its owner only, atomically (temp file, then rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
