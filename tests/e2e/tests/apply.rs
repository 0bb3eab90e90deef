//! `egressctl apply` against a running Envoy: changes land without a restart and without a
//! single failed request under load; a change Envoy rejects leaves the old config serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_e2e::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn config(
    listen: u16,
    upstream: u16,
    base: &str,
    key: &str,
    extra_route: Option<&str>,
    ca: Option<&str>,
) -> String {
    let mut routes = String::from(
        "    - path_prefix: /egress/notify\n      target: notification\n      strip_prefix: /egress/notify\n",
    );
    if let Some(prefix) = extra_route {
        routes.push_str(&format!("    - path_prefix: {prefix}\n      target: notification\n      strip_prefix: {prefix}\n"));
    }
    let (scheme, tls) = match ca {
        Some(ca) => ("https", format!("\n      tls: {{ca_cert: \"{ca}\"}}")),
        None => ("http", String::new()),
    };
    format!(
        "http:\n  addr: \"127.0.0.1:{listen}\"\negress:\n  targets:\n    notification:\n      url: \"{scheme}://127.0.0.1:{upstream}{base}\"{tls}\n      auth: {{type: api_key, header: X-API-Key, key: \"{key}\"}}\n  routes:\n{routes}endpoints:\n  health: /health\n"
    )
}

struct Running {
    engine: Engine,
    dir: tempfile::TempDir,
    _upstream: Standin,
    envoy: Envoy,
    listen: u16,
    upstream_port: u16,
}

impl Running {
    fn start(engine: Engine) -> Running {
        Self::start_from(engine, |_| {})
    }

    /// Compiles, lets `prepare` change the state directory, then starts Envoy on it.
    fn start_from(engine: Engine, prepare: impl FnOnce(&std::path::Path)) -> Running {
        let upstream = Standin::start(StandinOpts::new("notification")).unwrap();
        let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
        let dir = scratch_dir().unwrap();
        std::fs::write(
            dir.path().join("config.yaml"),
            config(listen, upstream.port(), "/v1", "key-1", None, None),
        )
        .unwrap();
        compile(&dir, &format!("127.0.0.1:{admin}"), engine);
        prepare(&dir.path().join("state"));
        let envoy = Envoy::start(&dir.path().join("state/envoy.yaml"), &[]).unwrap();
        envoy.wait_ready(&format!("127.0.0.1:{admin}")).unwrap();
        Running {
            engine,
            upstream_port: upstream.port(),
            _upstream: upstream,
            dir,
            envoy,
            listen,
        }
    }

    /// Writes [`config`] for this proxy's listener and upstream with the target's base path
    /// `base` and API key `key`, an `extra_route` and the upstream CA `ca` (not yet applied).
    fn reconfigure(&self, base: &str, key: &str, extra_route: Option<&str>, ca: Option<&str>) {
        let yaml = config(self.listen, self.upstream_port, base, key, extra_route, ca);
        std::fs::write(self.dir.path().join("config.yaml"), yaml).unwrap();
    }

    /// `egressctl apply --engine <self.engine>` plus `extra`.
    fn apply(&self, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["--engine", self.engine.as_str()];
        args.extend_from_slice(extra);
        self.apply_as_is(&args)
    }

    /// `egressctl apply --engine <self.engine>`, which must succeed.
    fn apply_ok(&self) -> std::process::Output {
        let out = self.apply(&[]);
        assert!(
            out.status.success(),
            "{}: {}",
            self.engine,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `egressctl apply` with only `extra` (no `--engine`: the state's).
    fn apply_as_is(&self, extra: &[&str]) -> std::process::Output {
        // Envoy confirms a change in well under a second; the shared deadline leaves room
        // for a loaded machine (a rejection is reported as soon as Envoy counts it).
        let timeout = patience().as_secs().to_string();
        let mut args = vec![
            "apply",
            "config.yaml",
            "--out",
            "state",
            "--timeout-secs",
            &timeout,
        ];
        args.extend_from_slice(extra);
        ctl(&self.dir, &args)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.listen)
    }
}

/// `egressctl compile config.yaml --out state --admin ADMIN --engine ENGINE` in `dir`; must pass.
fn compile(dir: &tempfile::TempDir, admin: &str, engine: Engine) {
    let out = ctl(
        dir,
        &[
            "compile",
            "config.yaml",
            "--out",
            "state",
            "--admin",
            admin,
            "--engine",
            engine.as_str(),
        ],
    );
    assert!(
        out.status.success(),
        "{engine}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ctl(dir: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    let wasm = filter_wasm();
    let mut cmd = egressctl().unwrap();
    cmd.current_dir(dir.path())
        .args(args)
        .env("EGRESS_FILTER_WASM", wasm);
    cmd.output().unwrap()
}

fn apply_adds_changes_and_removes_routes_and_targets_under_load_without_a_failed_request(
    engine: Engine,
) {
    let r = Running::start(engine);
    let load = Load::start(&r.url("/egress/notify/email"));
    load.more(20);

    // 1. Add a route.
    r.reconfigure("/v1", "key-1", Some("/egress/extra"), None);
    let dry = r.apply(&["--dry-run"]);
    assert!(String::from_utf8_lossy(&dry.stdout).contains("+ route /egress/extra -> notification"));
    assert_eq!(
        get(&r.url("/egress/extra/x")).unwrap().status,
        404,
        "dry run wrote nothing"
    );
    let out = r.apply(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let extra = Request::post(&r.url("/egress/extra/x")).send().unwrap();
    assert_eq!(extra.status, 200);
    assert_eq!(extra.json().unwrap()["path"], "/v1/x");
    load.more(20);

    // 2. Change the target's URL and credential.
    r.reconfigure("/v2", "key-2", Some("/egress/extra"), None);
    let out = r.apply(&[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("credential changed (values not shown)"),
        "{text}"
    );
    assert!(
        !text.contains("key-2") && !text.contains("key-1"),
        "apply printed a credential: {text}"
    );
    let after = Request::post(&r.url("/egress/notify/email"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(after["path"], "/v2/email");
    assert_eq!(after["headers"]["x-api-key"], "key-2");
    load.more(20);

    // 3. Remove the added route.
    r.reconfigure("/v2", "key-2", None, None);
    let out = r.apply(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("- route /egress/extra"));
    assert_eq!(get(&r.url("/egress/extra/x")).unwrap().status, 404);
    load.more(20);

    let keys = load.finish(engine);
    assert!(keys.contains("key-1") && keys.contains("key-2"), "{keys:?}");
    // Envoy was never restarted.
    assert!(r.envoy.exited().is_none());
}

fn a_change_envoy_rejects_fails_apply_and_the_old_config_keeps_serving(engine: Engine) {
    let r = Running::start(engine);
    let before = std::fs::read(r.dir.path().join("state/cds.yaml")).unwrap();
    r.reconfigure("/v9", "key-9", None, Some("/nonexistent/ca.pem"));
    let out = r.apply(&[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Envoy rejected the new clusters"), "{err}");
    assert!(err.contains("the previous config keeps serving"), "{err}");
    assert_eq!(
        std::fs::read(r.dir.path().join("state/cds.yaml")).unwrap(),
        before,
        "state directory restored"
    );
    let resp = Request::post(&r.url("/egress/notify/email"))
        .send()
        .unwrap();
    assert_eq!(resp.status, 200);
    let echo = resp.json().unwrap();
    assert_eq!(echo["path"], "/v1/email");
    assert_eq!(echo["headers"]["x-api-key"], "key-1");
}

fn an_invalid_config_changes_nothing_and_exits_1(engine: Engine) {
    let r = Running::start(engine);
    let before = std::fs::read(r.dir.path().join("state/lds.json")).unwrap();
    std::fs::write(
        r.dir.path().join("config.yaml"),
        "http:\n  addr: \":x\"\negress:\n  routes:\n    - {path_prefix: /egress/a, target: nope}\n",
    )
    .unwrap();
    let out = r.apply(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("egress.routes[0].target") && err.contains("http.addr"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(r.dir.path().join("state/lds.json")).unwrap(),
        before
    );
}

/// Four threads POSTing to one URL until [`Load::finish`]: how many, which failed, which
/// `x-api-key` values the upstream saw.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    seen_keys: Arc<Mutex<BTreeSet<String>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen_keys = Arc::new(Mutex::new(BTreeSet::<String>::new()));
        let workers = (0..4)
            .map(|_| {
                let (stop, sent, failures, seen_keys) = (
                    stop.clone(),
                    sent.clone(),
                    failures.clone(),
                    seen_keys.clone(),
                );
                let url = url.to_owned();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match Request::post(&url).send() {
                            Ok(resp) if resp.status == 200 => {
                                let key = resp.json().unwrap()["headers"]["x-api-key"]
                                    .as_str()
                                    .unwrap_or("")
                                    .to_string();
                                seen_keys.lock().unwrap().insert(key);
                            }
                            Ok(resp) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{} {}", resp.status, resp.body)),
                            Err(e) => failures.lock().unwrap().push(format!("{e:#}")),
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failures,
            seen_keys,
            workers,
        }
    }

    /// Waits until `n` more requests were sent (counted, not timed).
    fn more(&self, n: usize) {
        let from = self.sent.load(Ordering::Relaxed);
        wait_for(format!("{n} more requests under load"), || {
            Ok(self.sent.load(Ordering::Relaxed) >= from + n)
        })
        .unwrap();
    }

    /// Stops the load; asserts enough was sent and nothing failed; the keys seen.
    fn finish(mut self, engine: Engine) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            w.join().unwrap();
        }
        let failures = self.failures.lock().unwrap();
        let total = self.sent.load(Ordering::Relaxed);
        assert!(
            total > 50,
            "{engine}: too little load to prove anything: {total}"
        );
        assert!(
            failures.is_empty(),
            "{engine}: {} of {total} requests failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        self.seen_keys.lock().unwrap().clone()
    }
}

/// The `engine` a state directory's state.json records.
/// What `compile` recorded in the state directory.
fn state_json(r: &Running) -> serde_json::Value {
    let text = std::fs::read_to_string(r.dir.path().join("state/state.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn state_engine(r: &Running) -> String {
    state_json(r)["engine"]
        .as_str()
        .unwrap_or("wasm")
        .to_owned()
}

fn switching_the_engine_with_apply_under_load_fails_no_request_and_is_kept(engine: Engine) {
    let r = Running::start(engine);
    let other = match engine {
        Engine::Wasm => Engine::Auto,
        Engine::Auto => Engine::Wasm,
    };
    assert_eq!(state_engine(&r), engine.as_str());
    let load = Load::start(&r.url("/egress/notify/email"));
    load.more(20);
    let out = r.apply_as_is(&["--engine", other.as_str()]);
    assert!(
        out.status.success(),
        "{engine} -> {other}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(state_engine(&r), other.as_str(), "{engine} -> {other}");
    load.more(20);
    // A later apply without --engine keeps the switched one.
    r.reconfigure("/v1", "key-2", None, None);
    let out = r.apply_as_is(&[]);
    assert!(
        out.status.success(),
        "{engine} -> {other}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(state_engine(&r), other.as_str(), "{engine} -> {other}");
    load.more(20);
    let keys = load.finish(engine);
    assert!(keys.contains("key-1") && keys.contains("key-2"), "{keys:?}");
    assert!(r.envoy.exited().is_none());
}

/// A state directory as an egressctl before `lds.json` wrote it: the listeners in `lds.yaml`
/// (the same JSON after a YAML comment), the bootstrap naming that file.
fn make_legacy(state: &std::path::Path) {
    let json = std::fs::read_to_string(state.join("lds.json")).unwrap();
    std::fs::write(
        state.join("lds.yaml"),
        format!("# Generated by egressctl. Do not edit.\n{json}"),
    )
    .unwrap();
    std::fs::remove_file(state.join("lds.json")).unwrap();
    let bootstrap = std::fs::read_to_string(state.join("envoy.yaml")).unwrap();
    assert!(bootstrap.contains("/lds.json"), "{bootstrap}");
    std::fs::write(
        state.join("envoy.yaml"),
        bootstrap.replace("/lds.json", "/lds.yaml"),
    )
    .unwrap();
}

fn apply_in_a_directory_an_older_egressctl_compiled_writes_the_lds_yaml_envoy_watches(
    engine: Engine,
) {
    let r = Running::start_from(engine, make_legacy);
    let state = r.dir.path().join("state");
    let before = std::fs::read(state.join("lds.yaml")).unwrap();
    // A new route (a listener change Envoy must see) and a new key.
    r.reconfigure("/v2", "key-2", Some("/egress/extra"), None);
    let out = r.apply_ok();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("accepted the new clusters and listeners"),
        "{engine}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_ne!(std::fs::read(state.join("lds.yaml")).unwrap(), before);
    assert!(
        !state.join("lds.json").exists(),
        "{engine}: apply wrote a listener file the running Envoy does not watch"
    );
    let echo = get(&r.url("/egress/extra/x")).unwrap().json().unwrap();
    assert_eq!(echo["path"], "/v2/x", "{engine}");
    assert_eq!(echo["headers"]["x-api-key"], "key-2", "{engine}");
    assert!(r.envoy.exited().is_none());
}

/// `compile` over a directory an older egressctl compiled, while the Envoy started from it
/// keeps running: the new bootstrap names `lds.json` and `lds.yaml` is gone, but that Envoy
/// still watches `lds.yaml`. `apply` writes both: the change is live, and a restart on the new
/// bootstrap keeps it.
fn apply_after_compile_over_an_older_directory_reaches_the_envoy_still_running_on_it(
    engine: Engine,
) {
    let r = Running::start_from(engine, make_legacy);
    let state = r.dir.path().join("state");
    let admin = state_json(&r)["admin"].as_str().unwrap().to_owned();
    compile(&r.dir, &admin, engine);
    assert!(
        !state.join("lds.yaml").exists(),
        "{engine}: compile removes lds.yaml"
    );
    r.reconfigure("/v2", "key-2", Some("/egress/extra"), None);
    r.apply_ok();
    let echo = get(&r.url("/egress/extra/x")).unwrap().json().unwrap();
    assert_eq!(echo["path"], "/v2/x", "{engine}");
    assert_eq!(echo["headers"]["x-api-key"], "key-2", "{engine}");
    assert_eq!(
        std::fs::read(state.join("lds.yaml")).unwrap(),
        std::fs::read(state.join("lds.json")).unwrap(),
        "{engine}: the watched file and the bootstrap's hold the same listeners"
    );
    assert!(r.envoy.exited().is_none());
}

/// Two state directories, one admin address: `apply` in the directory the running Envoy was
/// not started from refuses by name and writes nothing (before, it wrote files no Envoy
/// watched and waited for a confirmation that could not come).
fn apply_to_an_envoy_started_from_another_directory_is_refused_and_writes_nothing(engine: Engine) {
    let r = Running::start(engine);
    let admin = state_json(&r)["admin"].as_str().unwrap().to_owned();
    let other = scratch_dir().unwrap();
    std::fs::write(
        other.path().join("config.yaml"),
        config(
            r.listen,
            r.upstream_port,
            "/v2",
            "key-2",
            Some("/egress/extra"),
            None,
        ),
    )
    .unwrap();
    compile(&other, &admin, engine);
    let lds = other.path().join("state/lds.json");
    let before = std::fs::read(&lds).unwrap();
    let out = ctl(&other, &["apply", "config.yaml", "--out", "state"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{engine}: {stderr}");
    assert!(
        stderr.contains("was not started from"),
        "{engine}: {stderr}"
    );
    assert!(
        stderr.contains(&r.dir.path().join("state/lds.json").display().to_string()),
        "{engine}: names the file Envoy watches: {stderr}"
    );
    assert!(stderr.contains("nothing was written"), "{engine}: {stderr}");
    assert_eq!(std::fs::read(&lds).unwrap(), before, "{engine}");
    // The running Envoy still serves its own config.
    assert_eq!(
        get(&r.url("/egress/extra/x")).unwrap().status,
        404,
        "{engine}"
    );
    assert_eq!(
        get(&r.url("/egress/notify/x")).unwrap().status,
        200,
        "{engine}"
    );
}

engine_tests!(
    apply_after_compile_over_an_older_directory_reaches_the_envoy_still_running_on_it,
    apply_to_an_envoy_started_from_another_directory_is_refused_and_writes_nothing,
    apply_in_a_directory_an_older_egressctl_compiled_writes_the_lds_yaml_envoy_watches,
    apply_adds_changes_and_removes_routes_and_targets_under_load_without_a_failed_request,
    a_change_envoy_rejects_fails_apply_and_the_old_config_keeps_serving,
    an_invalid_config_changes_nothing_and_exits_1,
    switching_the_engine_with_apply_under_load_fails_no_request_and_is_kept,
);
