//! `egress-bench --host-calls`: what each proxy-wasm host call the egress filter makes costs
//! Envoy, per request. `bench/probe-module` is the floor module (read `:path`, set one header)
//! plus `N` repetitions of one host call; each probe runs in its own Envoy (case 4's config
//! plus the access log `egressctl` renders), and the cost of a call is Envoy's CPU time per
//! request (user + system, all threads, from /proc) minus the bare probe's, divided by `N`,
//! taken within a round and then the median over rounds. CPU time per request rather than
//! requests per second: on a shared machine the other processes change how much CPU Envoy
//! gets far more than what each request costs it.
//!
//! The same measure is taken of the floor (case 4) and of the egress filter on an API-key
//! target (case 5), so the table shows how much of the gap between them the calls explain.

use crate::cases::{self, Case, Kind, Setup};
use crate::envoy::{Envoy, EnvoyRun};
use crate::load::Wrk;
use crate::machine;
use crate::options::Options;
use crate::procs::free_port;
use crate::run::{self, Inputs};
use crate::upstream::Nginx;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Calls per request for every probe but `none`.
pub const REPEAT: u32 = 40;

/// The probes: (configuration op, what it measures).
const PROBES: &[(&str, &str)] = &[
    (
        "none",
        "the probe module itself (floor work: get `:path`, set `x-api-key`)",
    ),
    (
        "get_header",
        "`get_header_map_value` of a present header (`:method`)",
    ),
    (
        "get_header_missing",
        "`get_header_map_value` of an absent header",
    ),
    (
        "get_map",
        "`get_header_map_pairs` (the whole request header map, as bytes)",
    ),
    (
        "set_header",
        "`replace_header_map_value` (`x-probe`, present after the first)",
    ),
    (
        "set_path",
        "`replace_header_map_value` of `:path` (same value)",
    ),
    (
        "remove_missing",
        "`remove_header_map_value` of an absent header",
    ),
    ("set_remove", "`replace` + `remove` of `x-probe` (a pair)"),
    (
        "set_property",
        "`set_property([\"egress_log\"], 110 bytes)` (read by the access log)",
    ),
    (
        "get_route_name",
        "`get_property([\"xds\", \"route_name\"])`",
    ),
    ("get_time", "`get_current_time_nanoseconds`"),
    (
        "log_debug",
        "`log(debug)` dropped by Envoy (log level warn)",
    ),
    (
        "set_map",
        "`set_header_map_pairs`: the whole map (the request's + 1); includes 1/40 of a `get_map`",
    ),
    (
        "egress_calls",
        "once: the egress filter's 8 host calls on an API-key request, without its work",
    ),
];

/// Probes run once per request (their row's "per call" is the whole set).
const ONCE: &[&str] = &["egress_calls"];

/// One Envoy under measure: a label and what it is.
struct Subject {
    label: String,
    what: String,
    /// Host calls per request (0 for the reference rows).
    calls: u32,
    envoy: Envoy,
    path: String,
}

/// The access log `egressctl` renders (the probe's `set_property` is read by it).
fn access_log() -> Value {
    json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": "/dev/null",
            "log_format": { "text_format_source": { "inline_string":
                "{\"level\":\"info\",\"ts\":\"%START_TIME(%Y-%m-%dT%H:%M:%SZ)%\",\"msg\":\"Egress request\",\"target\":\"%FILTER_STATE(wasm.egress_log:PLAIN)%\",\"duration\":\"%DURATION%ms\",\"status\":%RESPONSE_CODE%}\n" } }
        }
    }])
}

/// Case 4's bootstrap with the probe module configured for `op`, plus the access log.
fn probe_bootstrap(
    setup: &Setup,
    probe_wasm: &Path,
    op: &str,
    n: u32,
    listen: u16,
    admin: u16,
) -> Value {
    let probe_setup = Setup {
        floor_wasm: probe_wasm.to_path_buf(),
        ..setup.clone()
    };
    let mut b = cases::native_bootstrap(Kind::Floor, &probe_setup, listen, admin);
    let hcm = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    hcm["access_log"] = access_log();
    let wasm = &mut hcm["http_filters"][0]["typed_config"]["config"];
    wasm["configuration"] = json!({
        "@type": "type.googleapis.com/google.protobuf.StringValue",
        "value": format!("{op} {n}")
    });
    // Its own VM: two probes must never share one.
    wasm["vm_config"]["vm_id"] = json!(format!("probe_{op}"));
    b
}

/// Envoy CPU microseconds per request of one measured wrk run: (user + system, user only).
fn cpu_us_per_request(wrk: &Wrk<'_>, s: &Subject, duration: Duration) -> Result<(f64, f64)> {
    let url = format!("http://127.0.0.1:{}{}", s.envoy.listen, s.path);
    let before = s.envoy.proc.cpu_ticks();
    let user_before = s.envoy.proc.user_ticks();
    let result = wrk.run(&url, duration)?;
    let ticks = s.envoy.proc.cpu_ticks().saturating_sub(before);
    let user = s.envoy.proc.user_ticks().saturating_sub(user_before);
    if result.requests == 0 || result.non_2xx + result.socket_errors > 0 {
        bail!(
            "{}: {} requests, {} errors",
            s.label,
            result.requests,
            result.non_2xx + result.socket_errors
        );
    }
    let per_request = |t: u64| t as f64 / run::clock_ticks_per_sec() * 1e6 / result.requests as f64;
    Ok((per_request(ticks), per_request(user)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn run(opts: &Options) -> Result<()> {
    let inputs = Inputs::locate()?;
    let work = inputs.target.join("bench/host-calls");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let raw_probe = run::need(
        inputs
            .target
            .join("floor-module/wasm32-wasip1/release/probe_module.wasm"),
        "build bench/probe-module (`make bench` builds it)",
    )?;
    let probe_wasm = work.join("probe_module.wasm");
    run::optimize(&inputs.repo, &raw_probe, &probe_wasm)?;
    let filter_wasm = work.join("egress_filter.wasm");
    run::optimize(&inputs.repo, &inputs.raw_filter, &filter_wasm)?;
    let floor_wasm = work.join("floor_module.wasm");
    run::optimize(&inputs.repo, &inputs.raw_floor, &floor_wasm)?;

    let nginx = Nginx::start(&work.join("nginx"), &opts.load_cpus)?;
    let wrk = Wrk {
        bin: &inputs.wrk,
        cpus: &opts.load_cpus,
        threads: 1,
        connections: opts.connections,
    };
    let setup = Setup {
        egressctl: inputs.egressctl.clone(),
        filter_wasm,
        floor_wasm,
        upstream_port: nginx.port,
        token_port: 0,
        pki: work.join("unused-pki"),
        jwt: String::new(),
    };
    let run_cfg = EnvoyRun {
        bin: &inputs.envoy,
        concurrency: 1,
        cpus: &opts.envoy_cpus,
    };
    let mut subjects = Vec::new();
    for case in Case::all()
        .into_iter()
        .filter(|c| matches!(c.kind, Kind::Floor | Kind::OursApiKey))
    {
        let dir = work.join(format!("case{}", case.id));
        let rendered = cases::render(&case, &setup, &dir, free_port()?, free_port()?)?;
        let envoy = start(
            &run_cfg,
            &case,
            &rendered.envoy_config,
            rendered.listen,
            rendered.admin,
            &dir,
        )?;
        subjects.push(Subject {
            label: format!("case {}", case.id),
            what: case.what.to_owned(),
            calls: 0,
            envoy,
            path: case.path(),
        });
    }
    let floor_case = Case::all()
        .into_iter()
        .find(|c| c.kind == Kind::Floor)
        .context("no floor case")?;
    for (op, what) in PROBES {
        let n = match *op {
            "none" => 0,
            op if ONCE.contains(&op) => 1,
            _ => REPEAT,
        };
        let dir = work.join(format!("probe-{op}"));
        fs::create_dir_all(&dir)?;
        let (listen, admin) = (free_port()?, free_port()?);
        let config = dir.join("envoy.json");
        let bootstrap = probe_bootstrap(&setup, &probe_wasm, op, n, listen, admin);
        fs::write(&config, serde_json::to_string_pretty(&bootstrap)?)?;
        let envoy = start(&run_cfg, &floor_case, &config, listen, admin, &dir)
            .with_context(|| format!("probe {op}"))?;
        subjects.push(Subject {
            label: (*op).to_owned(),
            what: (*what).to_owned(),
            calls: n,
            envoy,
            path: floor_case.path(),
        });
    }
    // Case 5's own Envoy config with the probe doing the filter's host calls in place of the
    // filter: case 5 minus this is the filter's own work inside the VM; this minus the
    // `egress_calls` probe is what case 5's Envoy config costs beyond case 4's.
    {
        let case5 = work.join("case5/out");
        let dir = work.join("probe-egress_calls-case5");
        fs::create_dir_all(&dir)?;
        // The listener and cluster files, where the bootstrap names them (moved to `dir` below).
        let bootstrap = fs::read_to_string(case5.join("envoy.yaml"))?;
        let lds = watched_file(&bootstrap, "lds_config")?;
        let cds = watched_file(&bootstrap, "cds_config")?;
        let in_dir = |file: &Path| -> Result<PathBuf> {
            let name = file.file_name().context("a watched file without a name")?;
            Ok(dir.join(name))
        };
        fs::copy(&cds, in_dir(&cds)?)?;
        fs::copy(case5.join("secrets.env"), dir.join("secrets.env"))?;
        let envoy_yaml =
            bootstrap.replace(&case5.display().to_string(), &dir.display().to_string());
        fs::write(dir.join("envoy.yaml"), envoy_yaml)?;
        let ours = subjects
            .iter()
            .find(|s| s.label == "case 5")
            .context("no case 5 row")?;
        let listen = ours.envoy.listen;
        let admin = admin_port(&case5)?;
        // Case 5's Envoy holds its ports: the copy gets new ones (the push listener's fixed
        // port too).
        let (new_listen, new_admin) = (free_port()?, free_port()?);
        let ports = [
            (u64::from(listen), u64::from(new_listen)),
            (9902, u64::from(free_port()?)),
        ];
        let listeners = swap_module(&fs::read_to_string(&lds)?, &probe_wasm, &ports)?;
        fs::write(in_dir(&lds)?, listeners)?;
        let envoy_yaml = fs::read_to_string(dir.join("envoy.yaml"))?.replace(
            &format!("port_value: {admin}\n"),
            &format!("port_value: {new_admin}\n"),
        );
        fs::write(dir.join("envoy.yaml"), envoy_yaml)?;
        let case = Case::all()
            .into_iter()
            .find(|c| c.kind == Kind::OursApiKey)
            .context("no case 5")?;
        let envoy = start(
            &run_cfg,
            &case,
            &dir.join("envoy.yaml"),
            new_listen,
            new_admin,
            &dir,
        )
        .context("probe egress_calls_rewrite in case 5's config")?;
        subjects.push(Subject {
            label: "egress_calls in case 5".to_owned(),
            what:
                "`egress_calls` (rewriting `:path`) in case 5's Envoy config in place of the filter"
                    .to_owned(),
            calls: 1,
            envoy,
            path: case.path(),
        });
    }

    let warm = Duration::from_secs(1);
    for s in &subjects {
        cpu_us_per_request(&wrk, s, warm)?;
    }
    // per_round[i][r]: subject i's µs per request in round r (user + system; user only).
    let mut per_round = vec![Vec::new(); subjects.len()];
    let mut user_round = vec![Vec::new(); subjects.len()];
    for round in 0..opts.rounds {
        let n = subjects.len();
        for k in 0..n {
            let i = (k + round) % n;
            let (us, user) = cpu_us_per_request(&wrk, &subjects[i], opts.duration)?;
            eprintln!(
                "egress-bench: host calls round {}/{} {}: {us:.2} µs/request ({user:.2} in user space)",
                round + 1,
                opts.rounds,
                subjects[i].label
            );
            per_round[i].push(us);
            user_round[i].push(user);
        }
    }
    let index_of = |label: &str| subjects.iter().position(|s| s.label == label);
    let base = index_of("none").context("no bare probe")?;
    let floor = index_of(&format!("case {}", floor_case.id)).context("no floor row")?;
    let mut md = String::new();
    md.push_str(&format!(
        "## {} — host calls, {}\n\n",
        machine::now_utc(),
        machine::commit(&inputs.repo)
    ));
    md.push_str(&format!(
        "Envoy CPU time (user + system, all threads) per request, median of {} rounds × {} s \
         (wrk -c{}, Envoy 1 worker pinned to core(s) {}, load on {}); a probe repeats its call {REPEAT} × \
         per request; \"per call\" = (probe − bare probe) ÷ {REPEAT}, per round, median. \
         \"user\": user-space CPU only (the kernel's share per request moves with how many \
         requests each wake-up finds, i.e. with the machine's load). \
         Load average at the end: {}.\n\n",
        opts.rounds,
        opts.duration.as_secs(),
        opts.connections,
        opts.envoy_cpus,
        opts.load_cpus,
        machine::load_average()
    ));
    md.push_str(
        "| subject | what | µs/request | per call (µs) | × case 4 | user µs/request | per call, user (µs) | user × case 4 |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let columns = |rounds: &[Vec<f64>], i: usize, calls: u32| {
        let us = median(rounds[i].clone());
        let per_call = if calls > 0 {
            let diffs = rounds[i]
                .iter()
                .zip(&rounds[base])
                .map(|(p, b)| (p - b) / f64::from(calls))
                .collect();
            format!("{:.3}", median(diffs))
        } else {
            "–".to_owned()
        };
        let vs_floor = median(
            rounds[i]
                .iter()
                .zip(&rounds[floor])
                .map(|(p, f)| p / f)
                .collect(),
        );
        format!("{us:.2} | {per_call} | {vs_floor:.3}")
    };
    for (i, s) in subjects.iter().enumerate() {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            s.label,
            s.what,
            columns(&per_round, i, s.calls),
            columns(&user_round, i, s.calls)
        ));
    }
    drop(subjects);
    drop(nginx);
    let out: PathBuf = opts
        .out
        .clone()
        .unwrap_or_else(|| inputs.target.join("bench/results/HOST_CALLS.md"));
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    let old = fs::read_to_string(&out).unwrap_or_default();
    fs::write(&out, format!("{md}\n{old}"))?;
    println!("{md}");
    println!("results: {}", out.display());
    Ok(())
}

fn start(
    run_cfg: &EnvoyRun<'_>,
    case: &Case,
    config: &Path,
    listen: u16,
    admin: u16,
    dir: &Path,
) -> Result<Envoy> {
    let envoy = Envoy::start(
        run_cfg,
        &format!("Envoy {}", dir.display()),
        config,
        listen,
        admin,
        &dir.join("envoy.log"),
    )?;
    crate::http::wait_for(listen, &case.path(), &[], Duration::from_secs(30), |r| {
        r.status == 200 && case.upstream_saw_credential(&r.body)
    })
    .with_context(|| {
        format!(
            "{}: the upstream did not get the expected request",
            dir.display()
        )
    })?;
    Ok(envoy)
}

/// An `egressctl` listener file (JSON) with the egress-role wasm filter's module and
/// configuration replaced by the probe's (`egress_calls_rewrite`, its own `vm_id`) and the
/// listener ports moved (`ports`: old -> new); the push listener keeps the filter.
fn swap_module(lds: &str, probe: &Path, ports: &[(u64, u64)]) -> Result<String> {
    let mut v: Value = serde_json::from_str(lds).context("case 5's listener file is not JSON")?;
    let mut swapped = 0;
    edit(&mut v, probe, ports, &mut swapped);
    if swapped == 0 {
        bail!("case 5's listener file has no egress-role wasm filter to swap");
    }
    Ok(serde_json::to_string(&v)?)
}

fn edit(v: &mut Value, probe: &Path, ports: &[(u64, u64)], swapped: &mut usize) {
    match v {
        Value::Object(o) => {
            if let Some(port) = o.get_mut("port_value") {
                if let Some((_, new)) = ports.iter().find(|(old, _)| port.as_u64() == Some(*old)) {
                    *port = json!(new);
                }
            }
            let egress_role = o
                .get("configuration")
                .and_then(|c| c.get("value"))
                .and_then(Value::as_str)
                .is_some_and(|c| c.contains(r#""role":"egress""#));
            if egress_role && o.contains_key("vm_config") {
                o["configuration"]["value"] = json!("egress_calls_rewrite 1");
                o["vm_config"]["vm_id"] = json!("probe");
                o["vm_config"]["code"]["local"]["filename"] = json!(probe.display().to_string());
                *swapped += 1;
            }
            for child in o.values_mut() {
                edit(child, probe, ports, swapped);
            }
        }
        Value::Array(a) => {
            for child in a {
                edit(child, probe, ports, swapped);
            }
        }
        _ => {}
    }
}

/// The file the text of an `egressctl` bootstrap has Envoy watch for `source` (`lds_config`
/// or `cds_config`: file-based xDS).
fn watched_file(bootstrap: &str, source: &str) -> Result<PathBuf> {
    let v: Value = serde_yaml::from_str(bootstrap).context("the bootstrap is not YAML")?;
    v.pointer(&format!(
        "/dynamic_resources/{source}/path_config_source/path"
    ))
    .and_then(Value::as_str)
    .map(PathBuf::from)
    .with_context(|| format!("the bootstrap names no {source} file"))
}

/// The admin port of an `egressctl` `envoy.yaml` (its only `port_value`).
fn admin_port(out: &Path) -> Result<u16> {
    let text = fs::read_to_string(out.join("envoy.yaml"))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("port_value: ")?.parse().ok())
        .context("no admin port in envoy.yaml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_and_cluster_files_are_read_from_the_bootstrap() {
        // As `egressctl compile` writes it.
        let bootstrap = r#"# Generated by egressctl. Do not edit.
admin:
  address:
    socket_address:
      address: 127.0.0.1
      port_value: 9901
dynamic_resources:
  cds_config:
    path_config_source:
      path: /s/out/cds.yaml
    resource_api_version: V3
  lds_config:
    path_config_source:
      path: /s/out/lds.json
    resource_api_version: V3
"#;
        assert_eq!(
            watched_file(bootstrap, "lds_config").unwrap(),
            Path::new("/s/out/lds.json")
        );
        assert_eq!(
            watched_file(bootstrap, "cds_config").unwrap(),
            Path::new("/s/out/cds.yaml")
        );
        assert!(watched_file("admin: {}\n", "lds_config").is_err());
    }

    fn wasm_filter(role: &str) -> Value {
        json!({
            "name": "egress",
            "typed_config": { "config": {
                "vm_config": { "vm_id": "egress", "code": { "local": { "filename": "/f.wasm" } } },
                "configuration": { "value": format!(r#"{{"version":1,"role":"{role}"}}"#) },
            } },
        })
    }

    #[test]
    fn the_probe_replaces_only_the_egress_role_filter_and_the_ports_move() {
        let lds = json!({ "resources": [
            { "address": { "socket_address": { "port_value": 8080 } },
              "filter_chains": [{ "filters": [{ "typed_config": { "http_filters": [wasm_filter("egress")] } }] }] },
            { "address": { "socket_address": { "port_value": 9902 } },
              "filter_chains": [{ "filters": [{ "typed_config": { "http_filters": [wasm_filter("push")] } }] }] },
        ] });
        let out = swap_module(
            &lds.to_string(),
            Path::new("/probe.wasm"),
            &[(8080, 18080), (9902, 19902)],
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let filter = |i: usize| {
            v["resources"][i]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
                ["typed_config"]["config"]
                .clone()
        };
        assert_eq!(
            filter(0)["configuration"]["value"],
            "egress_calls_rewrite 1"
        );
        assert_eq!(filter(0)["vm_config"]["vm_id"], "probe");
        assert_eq!(
            filter(0)["vm_config"]["code"]["local"]["filename"],
            "/probe.wasm"
        );
        assert_eq!(filter(1)["vm_config"]["vm_id"], "egress");
        assert_eq!(
            filter(1)["vm_config"]["code"]["local"]["filename"],
            "/f.wasm"
        );
        assert_eq!(
            v["resources"][0]["address"]["socket_address"]["port_value"],
            18080
        );
        assert_eq!(
            v["resources"][1]["address"]["socket_address"]["port_value"],
            19902
        );
        // No egress-role filter: an error, never a silent copy of case 5.
        let push_only = json!({ "resources": [{ "http_filters": [wasm_filter("push")] }] });
        assert!(swap_module(&push_only.to_string(), Path::new("/p"), &[]).is_err());
    }
}
