//! `egressctl apply CONFIG [--out DIR] [--dry-run]`: change a running Envoy.
//!
//! Validates, prints what changes, then updates the watched xDS files make-before-break:
//! clusters first as the union of old and new (so routes of the old listener keep their
//! clusters while it drains), then listeners, then the final clusters. Each step is confirmed
//! by Envoy's update counters on its admin (`cluster_manager.cds.update_*`,
//! `listener_manager.lds.update_*`). If Envoy rejects a step, the previous files are put back
//! and the previous config keeps serving.
//!
//! With the `auto` engine, static credentials live in SDS files (`sds/<target>.yaml`): only the
//! files whose value changed are rewritten, before the listeners (which name them), each
//! rotation confirmed by `sds.egress.cred.<target>.update_success`. Listeners identical to the
//! running ones are not written again, so a rotation alone changes no listener.
//!
//! The files written are the ones the running Envoy watches, as its admin reports them
//! (`/config_dump` of its bootstrap): an Envoy started from another directory is refused
//! before anything is written (exit 3), and an Envoy still running on the `lds.yaml` of an
//! older egressctl after `compile` gets that file as well as `lds.json`.

use super::compile::render;
use super::load_or_report;
use crate::admin;
use crate::cli::ApplyArgs;
use crate::diff::{changes, clusters_by_name};
use crate::envoy::{locate, RenderOptions, Rendered};
use crate::exit::ExitCode;
use crate::state::StateDir;
use anyhow::Context;
use egress_core::config::ListenAddr;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const STATS_FILTER: &str =
    "^(cluster_manager\\.cds|listener_manager\\.lds)\\.update_(success|rejected)$";

pub fn run(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let source = match load_or_report(&args.config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let dir = StateDir::new(&args.out);
    let state = dir.read_state()?;
    let push = match &state.push_addr {
        Some(a) => Some(crate::envoy::PushListener {
            addr: ListenAddr::parse(a)
                .map_err(|e| anyhow::anyhow!("{}: push_addr: {e}", dir.state_json().display()))?,
            public_key_pem: dir.push_signer()?.public_pem(),
        }),
        None => None,
    };
    let old_secrets = dir.read_secrets()?;
    let Some(seal_key) = crate::secrets::seal_key_of(&old_secrets) else {
        anyhow::bail!(
            "{} has no {}: the running Envoy cannot open changed credentials; compile into {} and restart Envoy with it (egressctl up)",
            dir.secrets_env().display(),
            egress_core::secret_ref::SEAL_KEY_ENV,
            dir.dir.display()
        );
    };
    let opts = RenderOptions {
        seal_key: Some(seal_key.clone()),
        push,
        admin: ListenAddr::parse(&state.admin)
            .map_err(|e| anyhow::anyhow!("{}: admin: {e}", dir.state_json().display()))?,
        // None recorded (compile found none and loaded none): looked for again, in case this
        // config loads it.
        wasm: state.wasm.clone().map_or_else(|| locate::wasm(None), Ok),
        system_ca: state.system_ca.clone(),
        engine: args.engine.unwrap_or(state.engine),
        sds_dir: Some(dir.sds_dir()),
    };
    let rendered = render(&source, &opts)?;
    let old_fc = dir.read_filter_config();
    let old_clusters = read_resources(&dir.cds());
    let new_clusters = clusters_by_name(&rendered.clusters);
    let list = changes(
        old_fc.as_ref(),
        &rendered.filter_config,
        &clusters_by_name(&old_clusters),
        &new_clusters,
        &crate::secrets::changed_targets(&old_secrets, &rendered.secret_vars),
    );
    if list.is_empty() {
        println!("no route or target changes");
    }
    for c in &list {
        println!("{c}");
    }
    let sds = dir.sds_changes(&rendered.credentials);
    for t in &sds.rotated {
        println!(
            "~ target {t}: credential rotated (Envoy reloads {}; values not shown)",
            crate::envoy::credentials::sds_path(&dir.sds_dir(), t).display()
        );
    }
    if args.dry_run {
        println!("dry run: nothing written");
        return Ok(ExitCode::Success);
    }
    // The files the running Envoy watches must be this directory's: otherwise nothing
    // written here would reach it (and a restart would pick up changes never confirmed).
    let watched = admin::watched_files(&state.admin)?;
    let lds_files = match dir.listener_files(&state.admin, &watched) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("egressctl: {e}");
            eprintln!("egressctl: nothing was written");
            return Ok(ExitCode::Failure);
        }
    };
    // The watched file is the last one; the bootstrap's, if another, is written for restarts.
    let Some(live) = lds_files.last().cloned() else {
        anyhow::bail!("no listener file to write");
    };
    let lds_text = crate::state::listener_text(&rendered)?;
    let listeners_unchanged = dir.holds_listeners(&live, &lds_text);
    let lds_to_write: Vec<PathBuf> = lds_files
        .iter()
        .filter(|p| !dir.holds_listeners(p, &lds_text))
        .cloned()
        .collect();
    let before = admin::stats(&state.admin, STATS_FILTER)?;
    let sds_before = admin::stats(&state.admin, SDS_STATS_FILTER)?;
    let old_cds = dir.snapshot(&dir.cds());
    let old_lds: Vec<(PathBuf, Option<Vec<u8>>)> = lds_to_write
        .iter()
        .map(|p| (p.clone(), dir.snapshot(p)))
        .collect();
    let changed_sds: Vec<PathBuf> = sds
        .added
        .iter()
        .chain(&sds.rotated)
        .map(|t| crate::envoy::credentials::sds_path(&dir.sds_dir(), t))
        .collect();
    let old_sds: Vec<(PathBuf, Option<Vec<u8>>)> = changed_sds
        .iter()
        .map(|p| (p.clone(), dir.snapshot(p)))
        .collect();
    let restore_sds = || restore_all(&dir, &old_sds);
    let timeout = Duration::from_secs(args.timeout_secs);

    // 1. Clusters: union of old and new.
    let mut union = Rendered {
        listeners: rendered.listeners.clone(),
        clusters: rendered.clusters.clone(),
        filter_config: rendered.filter_config.clone(),
        secret_vars: Vec::new(),
        missing_files: Vec::new(),
        credentials: Vec::new(),
        loads_module: rendered.loads_module,
    };
    let new_names: std::collections::BTreeSet<String> = new_clusters.keys().cloned().collect();
    for c in &old_clusters {
        if let Some(name) = c.get("name").and_then(Value::as_str) {
            if !new_names.contains(name) {
                let mut c = c.clone();
                if let Some(o) = c.as_object_mut() {
                    o.remove("@type");
                }
                union.clusters.push(c);
            }
        }
    }
    dir.write_clusters(&union)?;
    let mut seen = before.clone();
    if let Err(e) = confirm(&state.admin, "cluster_manager.cds", &mut seen, timeout) {
        restore(&dir, &dir.cds(), old_cds.as_deref());
        return rejected(&e);
    }
    // 2. Static credentials (auto engine): the files the new listeners name exist first.
    dir.write_sds(&rendered.credentials)?;
    if let Err(e) = confirm_sds(&state.admin, &sds.rotated, &sds_before, timeout) {
        restore_sds();
        restore(&dir, &dir.cds(), old_cds.as_deref());
        return rejected(&e);
    }
    // 3. Listeners, unless they are the ones Envoy runs (the watched file written last).
    for path in &lds_to_write {
        crate::state::write_private(path, lds_text.as_bytes())?;
    }
    if !listeners_unchanged {
        if let Err(e) = confirm(&state.admin, "listener_manager.lds", &mut seen, timeout) {
            restore_all(&dir, &old_lds);
            restore_sds();
            restore(&dir, &dir.cds(), old_cds.as_deref());
            return rejected(&e);
        }
    }
    dir.remove_stale_sds(&rendered.credentials)?;
    // 4. Clusters no longer used go.
    if union.clusters.len() != rendered.clusters.len() {
        dir.write_clusters(&rendered)?;
        confirm(&state.admin, "cluster_manager.cds", &mut seen, timeout)
            .context("removing clusters no longer used")?;
    }
    dir.write_filter_config(&rendered.filter_config)?;
    // The running Envoy got changed credentials sealed in the listeners; the next start gets
    // them from secrets.env (same key).
    dir.write_secrets(&rendered.secret_vars, &seal_key)?;
    let mut state = state;
    state.config = std::path::absolute(&source.path).unwrap_or_else(|_| source.path.clone());
    state.engine = opts.engine;
    state.push_listener = opts.push.is_some() && rendered.loads_module;
    dir.write_state(&state)?;
    if !sds.rotated.is_empty() {
        println!(
            "credentials rotated: {} (Envoy reloaded their SDS files)",
            sds.rotated.join(", ")
        );
    }
    if listeners_unchanged {
        println!(
            "applied: Envoy at {} accepted the new clusters; listeners unchanged (not reloaded)",
            state.admin
        );
    } else {
        println!(
            "applied: Envoy at {} accepted the new clusters and listeners",
            state.admin
        );
    }
    Ok(ExitCode::Success)
}

/// Envoy's counters of the SDS secrets of static credentials.
const SDS_STATS_FILTER: &str = "^sds\\.egress\\.cred\\.";

/// Waits until Envoy has reloaded the SDS file of each rotated target it subscribes to (one
/// more `sds.egress.cred.<target>.update_success` than in `before`); a rejected file is an error.
fn confirm_sds(
    addr: &str,
    rotated: &[String],
    before: &std::collections::BTreeMap<String, u64>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let key = |t: &str, what: &str| {
        format!(
            "sds.{}.update_{what}",
            crate::envoy::credentials::filter_name(t)
        )
    };
    // A target Envoy does not subscribe to yet (its listener is not loaded) has no counter.
    let pending: Vec<&String> = rotated
        .iter()
        .filter(|t| before.contains_key(&key(t, "success")))
        .collect();
    let deadline = Instant::now() + timeout;
    let get = |m: &std::collections::BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    loop {
        let now = admin::stats(addr, SDS_STATS_FILTER)?;
        let mut waiting = Vec::new();
        for t in &pending {
            if get(&now, &key(t, "rejected")) > get(before, &key(t, "rejected")) {
                anyhow::bail!("Envoy rejected the new credential of target {t} (see its log)");
            }
            if get(&now, &key(t, "success")) <= get(before, &key(t, "success")) {
                waiting.push(t.as_str());
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "Envoy did not confirm the new credential of {} within {timeout:?}",
                waiting.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rejected(e: &anyhow::Error) -> anyhow::Result<ExitCode> {
    eprintln!("egressctl: {e:#}");
    eprintln!("egressctl: the previous config keeps serving; the state directory was restored");
    Ok(ExitCode::Failure)
}

fn restore(dir: &StateDir, path: &Path, bytes: Option<&[u8]>) {
    if let Some(b) = bytes {
        if let Err(e) = dir.restore(path, b) {
            eprintln!("egressctl: could not restore {}: {e:#}", path.display());
        }
    }
}

/// Puts back files as they were: a file that did not exist is removed.
fn restore_all(dir: &StateDir, files: &[(PathBuf, Option<Vec<u8>>)]) {
    for (path, bytes) in files {
        match bytes {
            Some(b) => restore(dir, path, Some(b)),
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Waits until Envoy counts one more `<prefix>.update_success` (accepted) or
/// `<prefix>.update_rejected` (an error) than in `seen`.
fn confirm(
    addr: &str,
    prefix: &str,
    seen: &mut std::collections::BTreeMap<String, u64>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let ok_key = format!("{prefix}.update_success");
    let bad_key = format!("{prefix}.update_rejected");
    let deadline = Instant::now() + timeout;
    loop {
        let now = admin::stats(addr, STATS_FILTER)?;
        let get =
            |m: &std::collections::BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
        if get(&now, &bad_key) > get(seen, &bad_key) {
            *seen = now;
            anyhow::bail!(
                "Envoy rejected the new {} (see its log for the reason)",
                what(prefix)
            );
        }
        if get(&now, &ok_key) > get(seen, &ok_key) {
            *seen = now;
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "Envoy did not confirm the new {} within {timeout:?}",
                what(prefix)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn what(prefix: &str) -> &'static str {
    if prefix.starts_with("cluster") {
        "clusters"
    } else {
        "listeners"
    }
}

fn read_resources(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_yaml::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("resources").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}
