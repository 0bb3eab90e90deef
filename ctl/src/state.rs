//! The state directory `compile`, `up` and `apply` share (`--out DIR`, default `.egressctl/`):
//!
//! - `envoy.yaml`: the bootstrap (admin; listeners and clusters from the two files below).
//! - `lds.json`, `cds.yaml`: listeners and clusters, watched by Envoy (file-based xDS). A
//!   directory an older egressctl compiled has `lds.yaml` (the same JSON, read by Envoy's
//!   YAML parser): `apply` writes the file the running Envoy watches and the one the bootstrap
//!   names ([`StateDir::listener_files`]).
//! - `filter.json`: the filter's config, as inlined in the listener (credential references and
//!   sealed values, no credential in clear).
//! - `secrets.env`: the credential variables and the seal key Envoy must be started with (see
//!   [`crate::secrets`]).
//! - `sds/<target>.yaml` (`auto` engine): the header value Envoy's `credential_injector` sets
//!   for each static-credential target, as an SDS `generic_secret` (see
//!   [`crate::envoy::credentials`]); the directory is the owner's only.
//! - `state.json`: what later commands need without repeating flags (admin address, module,
//!   CA bundle, the config file compiled).
//!
//! Every file is written to a temporary name and renamed into place (Envoy reloads on the
//! rename), readable by the owner only: they hold credentials.

use crate::admin::WatchedFiles;
use crate::envoy::credentials::{self, StaticCredential};
use crate::envoy::{self, Rendered, CDS_FILE, CLUSTER_TYPE, LDS_FILE};
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
/// The name [`LDS_FILE`] had before it was JSON (Envoy parsed it with its YAML parser).
pub const LEGACY_LDS_FILE: &str = "lds.yaml";

/// Recorded at compile time, read by `apply` and `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub admin: String,
    /// The filter module; `None` when compile found none (and the listeners load none).
    pub wasm: Option<PathBuf>,
    pub system_ca: Option<PathBuf>,
    pub config: PathBuf,
    /// The token push listener (`egressctl token refresh` and `status` talk to it).
    #[serde(default)]
    pub push_addr: Option<String>,
    /// `--engine` (a state directory from before engines were chosen was rendered for `wasm`).
    #[serde(default = "wasm_engine")]
    pub engine: egress_core::native::EngineChoice,
    /// Whether the listeners hold the push listener at `push_addr`: not when Envoy loads no
    /// wasm module (an `auto` config of static credentials with `egress.path_mode: strict`).
    #[serde(default = "yes")]
    pub push_listener: bool,
}

fn yes() -> bool {
    true
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
    /// The listener file `compile` writes and its bootstrap names.
    pub fn lds(&self) -> PathBuf {
        self.dir.join(LDS_FILE)
    }
    /// The listener file the bootstrap in this directory names, which an Envoy started from it
    /// reads: [`StateDir::lds`], or [`LEGACY_LDS_FILE`] in a directory an older egressctl
    /// compiled.
    pub fn bootstrap_lds(&self) -> PathBuf {
        let named = std::fs::read_to_string(self.envoy_yaml())
            .ok()
            .and_then(|t| serde_yaml::from_str::<serde_json::Value>(&t).ok())
            .and_then(|b| {
                b.pointer("/dynamic_resources/lds_config/path_config_source/path")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|p| Path::new(p).file_name())
                    .map(|n| n == LEGACY_LDS_FILE)
            });
        if named == Some(true) {
            self.dir.join(LEGACY_LDS_FILE)
        } else {
            self.lds()
        }
    }

    /// The listener files `apply` writes, the one the running Envoy watches last: that file (so
    /// Envoy sees the change) and the one this directory's bootstrap names (so a restart keeps
    /// it), once when they are the same. They differ after `compile` ran over a directory an
    /// older egressctl compiled while its Envoy kept running on `lds.yaml`. Refused when Envoy
    /// watches the files of another directory: writing here would change nothing it serves.
    pub fn listener_files(
        &self,
        admin: &str,
        watched: &WatchedFiles,
    ) -> Result<Vec<PathBuf>, ForeignEnvoy> {
        let live = watched
            .lds
            .as_deref()
            .filter(|p| self.holds(p, &[LDS_FILE, LEGACY_LDS_FILE]))
            .and_then(Path::file_name)
            .map(|name| self.dir.join(name));
        let cds_here = watched
            .cds
            .as_deref()
            .is_some_and(|p| self.holds(p, &[CDS_FILE]));
        let (Some(live), true) = (live, cds_here) else {
            return Err(ForeignEnvoy {
                admin: admin.to_string(),
                dir: self.dir.clone(),
                lds: shown(watched.lds.as_deref()),
                cds: shown(watched.cds.as_deref()),
            });
        };
        let boot = self.bootstrap_lds();
        Ok(if boot == live {
            vec![live]
        } else {
            vec![boot, live]
        })
    }

    /// Whether `path` is the file of one of `names` in this directory (compared through the
    /// file system: Envoy may have been given another spelling of the directory's path).
    fn holds(&self, path: &Path, names: &[&str]) -> bool {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let same_dir = match (
            std::fs::canonicalize(parent),
            std::fs::canonicalize(&self.dir),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => parent == self.dir,
        };
        same_dir && names.iter().any(|n| name == *n)
    }

    /// The listener file an older egressctl wrote, which `compile` removes (its bootstrap names
    /// [`StateDir::lds`] instead).
    pub fn remove_legacy_lds(&self) -> anyhow::Result<()> {
        let path = self.dir.join(LEGACY_LDS_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    pub fn cds(&self) -> PathBuf {
        self.dir.join(CDS_FILE)
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

    /// The SDS files of the static credentials (`auto` engine).
    pub fn sds_dir(&self) -> PathBuf {
        self.dir.join(credentials::SDS_DIR)
    }

    /// Which targets' SDS files [`StateDir::write_sds`] would create or rewrite.
    pub fn sds_changes(&self, creds: &[StaticCredential]) -> SdsChanges {
        let mut out = SdsChanges::default();
        for c in creds {
            match std::fs::read(c.sds_path(&self.sds_dir())) {
                Ok(old) if old == c.sds_file().expose().as_bytes() => {}
                Ok(_) => out.rotated.push(c.target.clone()),
                Err(_) => out.added.push(c.target.clone()),
            }
        }
        out
    }

    /// Writes the SDS file of every static credential whose contents changed (each by
    /// write-then-rename: a running Envoy picks the new value up without a listener change);
    /// the directory is made private (0700). Returns what it wrote.
    pub fn write_sds(&self, creds: &[StaticCredential]) -> anyhow::Result<SdsChanges> {
        let changes = self.sds_changes(creds);
        if creds.is_empty() {
            return Ok(changes);
        }
        let dir = self.sds_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make {} private", dir.display()))?;
        }
        for c in creds {
            if changes.added.contains(&c.target) || changes.rotated.contains(&c.target) {
                write_private(&c.sds_path(&dir), c.sds_file().expose().as_bytes())?;
            }
        }
        Ok(changes)
    }

    /// Removes the SDS files of targets that no longer have a static credential; their names.
    pub fn remove_stale_sds(&self, creds: &[StaticCredential]) -> anyhow::Result<Vec<String>> {
        let dir = self.sds_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        let mut removed = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let Some(target) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".yaml"))
            else {
                continue;
            };
            if !creds.iter().any(|c| c.target == target) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
                removed.push(target.to_string());
            }
        }
        removed.sort();
        Ok(removed)
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

    /// Writes the listeners to `path` (one of [`StateDir::listener_files`]) as
    /// compact JSON ([`envoy::listener_file_text`]): the auto engine's listener holds a matcher
    /// tree per route, and Envoy loads JSON of it many times faster than YAML. JSON is YAML
    /// too, so an Envoy watching a legacy `lds.yaml` reads it as well.
    pub fn write_listeners(&self, path: &Path, r: &Rendered) -> anyhow::Result<()> {
        write_private(path, listener_text(r)?.as_bytes())
    }

    /// Whether the listener file at `path` already holds exactly `text` (then writing it again
    /// would only make Envoy count an update that changes nothing).
    pub fn holds_listeners(&self, path: &Path, text: &str) -> bool {
        std::fs::read(path).is_ok_and(|old| old == text.as_bytes())
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

/// The listener file's text ([`envoy::listener_file_text`]): rendered once, then compared
/// with and written to each file `apply` keeps ([`StateDir::listener_files`]).
pub fn listener_text(r: &Rendered) -> anyhow::Result<String> {
    envoy::listener_file_text(&r.listeners).context("cannot render JSON")
}

/// `apply` against an Envoy that watches the files of another directory (or none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Envoy at {admin} was not started from {dir}: it watches {lds} and {cds}, not this directory's lds.json and cds.yaml; apply to the directory it was started from, or restart it on this one (egressctl up --out {dir})", dir = .dir.display())]
pub struct ForeignEnvoy {
    pub admin: String,
    pub dir: PathBuf,
    pub lds: String,
    pub cds: String,
}

fn shown(path: Option<&Path>) -> String {
    path.map_or_else(|| "no file".to_string(), |p| p.display().to_string())
}

/// What writing the SDS files changes, by target name (values never shown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdsChanges {
    /// A target with a static credential that had no file yet.
    pub added: Vec<String>,
    /// A target whose credential value changed (rotated).
    pub rotated: Vec<String>,
}

const HEADER: &str = "# Generated by egressctl. Do not edit: change the config and run `egressctl compile` or `egressctl apply`.\n";

fn yaml_text(value: &serde_json::Value) -> anyhow::Result<String> {
    let yaml = serde_yaml::to_string(value).context("cannot render YAML")?;
    Ok(format!("{HEADER}{yaml}"))
}

fn write_yaml(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    write_private(path, yaml_text(value)?.as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(target: &str, value: &str) -> StaticCredential {
        StaticCredential {
            target: target.into(),
            header: "authorization".into(),
            value: Secret::new(value),
        }
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn sds_files_are_private_and_rewritten_only_when_their_value_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let first = [cred("a", "Bearer one"), cred("b", "Bearer two")];
        let c = dir.write_sds(&first).unwrap();
        assert_eq!(c.added, ["a", "b"]);
        assert!(c.rotated.is_empty());
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.sds_dir()), 0o700);
            assert_eq!(mode(&dir.sds_dir().join("a.yaml")), 0o600);
        }
        let b_before = std::fs::metadata(dir.sds_dir().join("b.yaml"))
            .unwrap()
            .modified()
            .unwrap();
        let second = [cred("a", "Bearer three"), cred("b", "Bearer two")];
        assert_eq!(
            dir.sds_changes(&second),
            SdsChanges {
                added: vec![],
                rotated: vec!["a".into()]
            }
        );
        dir.write_sds(&second).unwrap();
        let text = std::fs::read_to_string(dir.sds_dir().join("a.yaml")).unwrap();
        assert!(text.contains("Bearer three") && !text.contains("Bearer one"));
        assert_eq!(
            std::fs::metadata(dir.sds_dir().join("b.yaml"))
                .unwrap()
                .modified()
                .unwrap(),
            b_before,
            "an unchanged file is not rewritten (Envoy would reload it)"
        );
        assert!(dir.sds_changes(&second).added.is_empty());
        assert!(dir.sds_changes(&second).rotated.is_empty());
    }

    fn watched(lds: &Path, cds: &Path) -> WatchedFiles {
        WatchedFiles {
            lds: Some(lds.to_path_buf()),
            cds: Some(cds.to_path_buf()),
        }
    }

    #[test]
    fn apply_writes_the_listener_file_envoy_watches_and_the_one_the_bootstrap_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let admin = ListenAddr::parse("127.0.0.1:9901").unwrap();
        dir.write_bootstrap(&admin).unwrap();
        // Started from this bootstrap: one file.
        let files = dir.listener_files("a", &watched(&dir.lds(), &dir.cds()));
        assert_eq!(files, Ok(vec![dir.lds()]));
        // Started on an older egressctl's bootstrap (`lds.yaml`), then `compile` wrote a new
        // one naming `lds.json` (and removed `lds.yaml`) while that Envoy kept running: both,
        // the watched one last.
        let legacy = tmp.path().join(LEGACY_LDS_FILE);
        let files = dir.listener_files("a", &watched(&legacy, &dir.cds()));
        assert_eq!(files, Ok(vec![dir.lds(), legacy]));
    }

    #[test]
    fn another_spelling_of_the_directory_is_the_same_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("state")).unwrap();
        let dir = StateDir::new(&tmp.path().join("state"));
        let dotted = tmp.path().join("state/../state");
        let files = dir.listener_files(
            "a",
            &watched(&dotted.join("lds.json"), &dotted.join("cds.yaml")),
        );
        assert_eq!(files, Ok(vec![dir.lds()]));
    }

    #[test]
    fn an_envoy_started_from_another_directory_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let other = tempfile::tempdir().unwrap();
        let (lds, cds) = (other.path().join("lds.json"), other.path().join("cds.yaml"));
        let err = dir
            .listener_files("127.0.0.1:9901", &watched(&lds, &cds))
            .unwrap_err();
        let text = err.to_string();
        for part in [
            "127.0.0.1:9901".to_string(),
            tmp.path().display().to_string(),
            lds.display().to_string(),
            cds.display().to_string(),
        ] {
            assert!(text.contains(&part), "{text} names {part}");
        }
        // The listeners here but the clusters elsewhere, a file name egressctl never writes,
        // and an Envoy without file-based xDS: refused as well.
        for w in [
            watched(&dir.lds(), &cds),
            watched(&tmp.path().join("listeners.json"), &dir.cds()),
            WatchedFiles::default(),
        ] {
            assert!(dir.listener_files("a", &w).is_err(), "{w:?}");
        }
        assert!(dir
            .listener_files("a", &WatchedFiles::default())
            .unwrap_err()
            .to_string()
            .contains("it watches no file and no file"));
    }

    #[test]
    fn the_bootstrap_listener_file_is_the_one_the_bootstrap_names_legacy_lds_yaml_included() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        // No bootstrap yet: the current name.
        assert_eq!(dir.bootstrap_lds(), tmp.path().join("lds.json"));
        let admin = ListenAddr::parse("127.0.0.1:9901").unwrap();
        dir.write_bootstrap(&admin).unwrap();
        assert_eq!(dir.bootstrap_lds(), dir.lds());
        // A bootstrap an older egressctl wrote (possibly from another path to the directory).
        write_yaml(
            &dir.envoy_yaml(),
            &envoy::bootstrap(&admin, Path::new("/elsewhere/state/lds.yaml"), &dir.cds()),
        )
        .unwrap();
        assert_eq!(dir.bootstrap_lds(), tmp.path().join(LEGACY_LDS_FILE));
        // compile removes the legacy file; a missing one is no error.
        std::fs::write(tmp.path().join(LEGACY_LDS_FILE), "{}").unwrap();
        dir.remove_legacy_lds().unwrap();
        assert!(!tmp.path().join(LEGACY_LDS_FILE).exists());
        dir.remove_legacy_lds().unwrap();
    }

    #[test]
    fn the_listener_file_is_plain_json_envoy_parses_by_its_extension() {
        assert!(LDS_FILE.ends_with(".json"));
        let text = envoy::listener_file_text(&[serde_json::json!({"name": "egress"})]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["resources"][0]["name"], "egress");
        assert_eq!(v["resources"][0]["@type"], envoy::LISTENER_TYPE);
    }

    #[test]
    fn sds_files_of_targets_that_are_gone_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        dir.write_sds(&[cred("a", "x"), cred("b.c", "y")]).unwrap();
        assert_eq!(dir.remove_stale_sds(&[cred("a", "x")]).unwrap(), ["b.c"]);
        assert!(dir.sds_dir().join("a.yaml").exists());
        assert!(!dir.sds_dir().join("b.c.yaml").exists());
        assert_eq!(dir.remove_stale_sds(&[]).unwrap(), ["a"]);
        // No directory at all (wasm engine): nothing to do.
        let empty = StateDir::new(&tmp.path().join("none"));
        assert!(empty.remove_stale_sds(&[]).unwrap().is_empty());
    }
}
