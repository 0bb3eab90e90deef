//! One benchmark run: build inputs, servers, one Envoy per case, interleaved rounds, report.

use crate::auth_cases;
use crate::cases::{self, Case, Kind, Setup};
use crate::envoy::{self, Envoy, EnvoyRun};
use crate::load::{busy_between, cpu_times, ClientCert, Wrk};
use crate::options::Options;
use crate::procs::{find_program, free_port};
use crate::report::{self, RunReport, Sample, WorkerMemory};
use crate::upstream::{Nginx, TokenServer};
use crate::{chart, http, machine};
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

pub(crate) fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn target_dir(repo: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo.join("target"), PathBuf::from)
}

pub(crate) fn need(path: PathBuf, how: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        bail!("{} is missing: {how}", path.display())
    }
}

pub(crate) fn envoy_bin(repo: &Path) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return need(PathBuf::from(bin), "ENVOY_BIN points at no file");
    }
    let venv = repo.join(".venv/bin/envoy");
    if venv.is_file() {
        return Ok(venv);
    }
    find_program("envoy", &[]).ok_or_else(|| anyhow!("no Envoy: run `bash envoy/install.sh`"))
}

/// Copies the raw module to `out` and runs `filter/optimize.sh` on the copy (the shipped
/// pass); returns the sizes it printed (before, after).
pub(crate) fn optimize(repo: &Path, raw: &Path, out: &Path) -> Result<(u64, u64)> {
    fs::copy(raw, out).with_context(|| format!("copying {}", raw.display()))?;
    let result = Command::new("bash")
        .arg(repo.join("filter/optimize.sh"))
        .arg(out)
        .output()
        .context("running filter/optimize.sh")?;
    let said = String::from_utf8_lossy(&result.stderr);
    if !result.status.success() {
        bail!("filter/optimize.sh {} failed: {said}", out.display());
    }
    // "optimize.sh: PATH: BEFORE -> AFTER bytes"
    let sizes = said
        .lines()
        .find_map(|l| {
            let (_, tail) = l.rsplit_once(": ")?;
            let (before, after) = tail.trim_end_matches(" bytes").split_once(" -> ")?;
            Some((before.trim().parse().ok()?, after.trim().parse().ok()?))
        })
        .ok_or_else(|| {
            anyhow!("filter/optimize.sh printed no sizes (is wasm-opt installed?): {said}")
        })?;
    Ok(sizes)
}

/// Envoy as `run` says on a `rendered` case (its log in `dir`), once one request through it got
/// the case's answer ([`sanity`]).
fn start_checked(
    run: &EnvoyRun,
    label: &str,
    case: &Case,
    setup: &Setup,
    rendered: &cases::Rendered,
    dir: &Path,
) -> Result<Envoy> {
    let envoy = Envoy::start(
        run,
        label,
        &rendered.envoy_config,
        rendered.listen,
        rendered.admin,
        &dir.join("envoy.log"),
    )?;
    sanity(case, setup, envoy.listen)?;
    Ok(envoy)
}

/// Sends the case's request until the upstream echoes the case's rewrite and credential.
fn sanity(case: &Case, setup: &Setup, port: u16) -> Result<()> {
    let headers = case.headers(setup);
    let ok = |r: &http::Response| r.status == 200 && case.upstream_saw_credential(&r.body);
    let timeout = Duration::from_secs(30);
    if case.uses_client_cert() {
        http::poll(
            timeout,
            || auth_cases::tls_get(port, &case.path(), &setup.pki),
            ok,
        )
    } else {
        http::wait_for(port, &case.path(), &headers, timeout, ok)
    }
    .with_context(|| {
        format!(
            "case {}: the upstream did not get the expected request",
            case.id
        )
    })?;
    Ok(())
}

struct Running {
    case: Case,
    envoy: Envoy,
    headers: Vec<String>,
    /// Cases 8 and 11: HTTPS with the load's client certificate.
    cert: Option<ClientCert>,
}

impl Running {
    fn url(&self) -> String {
        let scheme = if self.cert.is_some() { "https" } else { "http" };
        format!(
            "{scheme}://127.0.0.1:{}{}",
            self.envoy.listen,
            self.case.path()
        )
    }
}

/// The built artifacts and programs a run needs.
pub(crate) struct Inputs {
    pub repo: PathBuf,
    pub target: PathBuf,
    pub envoy: PathBuf,
    pub wrk: PathBuf,
    pub egressctl: PathBuf,
    pub raw_filter: PathBuf,
    pub raw_floor: PathBuf,
}

impl Inputs {
    pub fn locate() -> Result<Inputs> {
        let repo = repo_root();
        let target = target_dir(&repo);
        let build_hint = "run `make bench` (it builds everything first)";
        Ok(Inputs {
            envoy: envoy_bin(&repo)?,
            wrk: find_program("wrk", &[])
                .ok_or_else(|| anyhow!("no wrk: apt-get install wrk ({build_hint})"))?,
            egressctl: need(target.join("release/egressctl"), build_hint)?,
            raw_filter: need(
                target.join("wasm32-wasip1/release/deps/egress_filter.wasm"),
                build_hint,
            )?,
            raw_floor: need(
                target.join("floor-module/wasm32-wasip1/release/floor_module.wasm"),
                build_hint,
            )?,
            repo,
            target,
        })
    }
}

pub fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    let Inputs {
        repo,
        target,
        envoy: envoy_bin,
        wrk: wrk_bin,
        egressctl,
        raw_filter,
        raw_floor,
    } = Inputs::locate()?;
    let work = target.join("bench/work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let mut machine = machine::describe(&wrk_bin);
    machine.insert(0, ("Envoy".into(), envoy::version(&envoy_bin)));
    let commit = machine::commit(&repo);
    let stamp = machine::now_utc();

    let filter_wasm = work.join("egress_filter.wasm");
    let floor_wasm = work.join("floor_module.wasm");
    let filter_sizes = optimize(&repo, &raw_filter, &filter_wasm)?;
    let floor_sizes = optimize(&repo, &raw_floor, &floor_wasm)?;

    let mut nginx = Nginx::start(&work.join("nginx"), &opts.load_cpus)?;
    let tokens = TokenServer::start(&repo, &work, &opts.load_cpus)?;
    let wrk = Wrk {
        bin: &wrk_bin,
        cpus: &opts.load_cpus,
        threads: 1,
        connections: opts.connections,
    };
    let upstream_url = format!("http://127.0.0.1:{}/v1/items/42", nginx.port);
    let upstream_alone = wrk
        .run(
            &upstream_url,
            if opts.quick {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(3)
            },
        )?
        .requests_per_sec;
    eprintln!("egress-bench: upstream alone: {upstream_alone:.0} req/s");

    let pki = work.join("callers-pki");
    auth_cases::make_pki(&pki)?;
    let client_cert = ClientCert {
        shim: work.join("wrk-client-cert.so"),
        cert: pki.join("load.crt"),
        key: pki.join("load.key"),
    };
    auth_cases::build_wrk_client_cert(&repo, &client_cert.shim)?;
    let setup = Setup {
        egressctl,
        filter_wasm,
        floor_wasm,
        upstream_port: nginx.port,
        token_port: tokens.port,
        pki,
        // Valid far beyond the run: every request is a cache hit after the first.
        jwt: auth_cases::sign_jwt(6 * 3600)?,
    };
    let cases: Vec<Case> = Case::all()
        .into_iter()
        .filter(|c| opts.cases.as_ref().is_none_or(|ids| ids.contains(&c.id)))
        .collect();
    let run_cfg = EnvoyRun {
        bin: &envoy_bin,
        concurrency: opts.concurrency,
        cpus: &opts.envoy_cpus,
    };

    // One Envoy per case, all up for the whole run (idle ones cost next to nothing).
    let mut compile_times = Vec::new();
    let mut running = Vec::new();
    for case in &cases {
        let dir = work.join(format!("case{}", case.id));
        let t = Instant::now();
        let rendered = cases::render(case, &setup, &dir, free_port()?, free_port()?)?;
        if case.kind == Kind::OursManyRoutes {
            compile_times.push((case.id, t.elapsed()));
        }
        envoy::validate(&envoy_bin, &rendered.envoy_config)
            .with_context(|| format!("case {}: envoy --mode validate", case.id))?;
        let label = format!("Envoy case {}", case.id);
        let envoy = start_checked(&run_cfg, &label, case, &setup, &rendered, &dir)?;
        eprintln!(
            "egress-bench: case {} ready on port {} ({})",
            case.id, envoy.listen, case.what
        );
        running.push(Running {
            case: case.clone(),
            envoy,
            headers: case.headers(&setup),
            cert: case.uses_client_cert().then(|| client_cert.clone()),
        });
    }
    for many in cases.iter().filter(|c| c.kind == Kind::OursManyRoutes) {
        let config = work.join(format!("case{}/egress.yaml", many.id));
        for i in 1..opts.compile_repeats {
            let took = cases::compile(
                &setup,
                &config,
                &work.join(format!("compile{}-{i}", many.id)),
                free_port()?,
                many.engine.unwrap_or(cases::EngineSel::Wasm),
            )?;
            compile_times.push((many.id, took));
        }
    }

    for r in &running {
        wrk.run_with(&r.url(), &r.headers, r.cert.as_ref(), opts.first_warmup)?;
    }
    if let Some(r) = running.iter().find(|r| r.case.uses_token_server()) {
        // The token stays cached for the run: nothing else may reach the token server.
        eprintln!(
            "egress-bench: tokens cached (case {} answered with one)",
            r.case.id
        );
    }

    let mut samples = Vec::new();
    let n = running.len();
    for round in 0..opts.rounds {
        for k in 0..n {
            let r = &mut running[(k + round) % n];
            r.envoy.proc.check_alive()?;
            nginx.proc.check_alive()?;
            wrk.run_with(&r.url(), &r.headers, r.cert.as_ref(), opts.warmup)?;
            let before = cpu_times();
            let envoy_before = r.envoy.proc.cpu_ticks();
            let wall = Instant::now();
            let result = wrk.run_with(&r.url(), &r.headers, r.cert.as_ref(), opts.duration)?;
            let busy = busy_between(&before, &cpu_times());
            let envoy_cpu = (r.envoy.proc.cpu_ticks() - envoy_before.min(r.envoy.proc.cpu_ticks()))
                as f64
                / clock_ticks_per_sec()
                / wall.elapsed().as_secs_f64();
            eprintln!(
                "egress-bench: round {}/{} case {}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, errors {}, Envoy CPU {:.0}%",
                round + 1,
                opts.rounds,
                r.case.id,
                result.requests_per_sec,
                result.p50_us,
                result.p99_us,
                result.non_2xx + result.socket_errors,
                envoy_cpu * 100.0
            );
            samples.push(Sample {
                case: r.case.id,
                round,
                wrk: result,
                busy,
                envoy_cpu,
            });
        }
    }
    let mut rss_after_load = Vec::new();
    for r in &running {
        rss_after_load.push((r.case.id, r.envoy.proc.rss_kib()?));
    }
    let token_fetches = tokens_served(&tokens)?;
    drop(running);

    // Memory per worker: the same config at 1 and 2 workers, fresh and idle after one request.
    let mut worker_memory = Vec::new();
    for case in cases.iter().filter(|c| {
        matches!(
            c.kind,
            Kind::OursApiKey | Kind::OursManyRoutes | Kind::OursFewRoutes
        )
    }) {
        let mut kib = [0u64; 2];
        for (slot, workers) in [1u32, 2].into_iter().enumerate() {
            let dir = work.join(format!("memory-case{}-{workers}", case.id));
            let rendered = cases::render(case, &setup, &dir, free_port()?, free_port()?)?;
            let mem_run = EnvoyRun {
                concurrency: workers,
                ..run_cfg.clone()
            };
            let label = format!("Envoy case {} ({workers} workers)", case.id);
            let envoy = start_checked(&mem_run, &label, case, &setup, &rendered, &dir)?;
            thread::sleep(Duration::from_secs(1));
            kib[slot] = envoy.proc.rss_kib()?;
        }
        worker_memory.push(WorkerMemory {
            case: case.id,
            one_worker_kib: kib[0],
            two_workers_kib: kib[1],
        });
    }
    drop(nginx);
    drop(tokens);

    let summaries = report::summarize(&cases, &samples);
    let out = opts.out.clone().unwrap_or_else(|| {
        if opts.quick {
            target.join("bench/results/RESULTS.md")
        } else {
            repo.join("bench/results/RESULTS.md")
        }
    });
    let out_dir = out
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    fs::create_dir_all(&out_dir)?;
    let chart_name = format!(
        "bench-{}.svg",
        stamp
            .replace([' ', ':'], "")
            .replace("UTC", "")
            .replace('-', "")
    );
    let settings = vec![
        ("mode".into(), if opts.quick { "quick (smoke test)".into() } else { "normal".into() }),
        (
            "rounds".into(),
            format!(
                "{} × {} s measured per case (after {} s unmeasured), case order rotated each round",
                opts.rounds,
                opts.duration.as_secs(),
                opts.warmup.as_secs()
            ),
        ),
        (
            "load".into(),
            format!(
                "wrk -t1 -c{} --latency, keep-alive, GET; pinned to core(s) {}",
                opts.connections, opts.load_cpus
            ),
        ),
        (
            "Envoy".into(),
            format!(
                "--concurrency {} pinned to core(s) {} (taskset: every Envoy thread), one Envoy per case",
                opts.concurrency, opts.envoy_cpus
            ),
        ),
        (
            "upstream".into(),
            format!(
                "nginx `return 200` (one process, keep-alive), pinned to core(s) {} with wrk",
                opts.load_cpus
            ),
        ),
        (
            "mTLS callers (case 8)".into(),
            "cases 8 and 11: wrk over HTTPS to Envoy's TLS listener, keep-alive (one handshake per connection); wrk has no client-certificate option, so bench/wrk-client-cert (LD_PRELOAD) loads the certificate into wrk's OpenSSL contexts".into(),
        ),
        (
            "token endpoint".into(),
            format!(
                "examples/standins/standin.py (TTL 3600 s); token requests served during the run: {token_fetches} (one per OAuth2 Envoy expected)"
            ),
        ),
        (
            "wasm".into(),
            "both modules built with the root release profile (opt-level \"z\", LTO) and passed through filter/optimize.sh (wasm-opt -Oz); V8 runtime".into(),
        ),
        ("load average after the run".into(), machine::load_average()),
        ("run took".into(), format!("{:.0} s", started.elapsed().as_secs_f64())),
    ];
    let mut report = RunReport {
        started: stamp.clone(),
        mode: if opts.quick {
            "quick".into()
        } else {
            "normal".into()
        },
        commit,
        machine,
        settings,
        samples,
        summaries,
        rss_after_load_kib: rss_after_load,
        worker_memory,
        compile_times,
        wasm_sizes: vec![
            ("egress_filter.wasm".into(), filter_sizes.0, filter_sizes.1),
            ("floor_module.wasm".into(), floor_sizes.0, floor_sizes.1),
        ],
        upstream_alone_rps: Some(upstream_alone),
        chart: chart_name.clone(),
    };
    chart::draw(
        &out_dir.join(&chart_name),
        &format!(
            "make bench, {stamp}: Envoy 1.40, {} worker(s)",
            opts.concurrency
        ),
        &report.summaries,
    )?;
    report.chart = chart_name;
    report::insert_run(&out, &report.markdown())?;
    println!(
        "\n{}\n{}\n{}",
        report.table(),
        report.targets_table(),
        report.like_for_like_table()
    );
    println!("results: {}", out.display());
    Ok(())
}

/// How many tokens the stand-in handed out (it logs one line per request).
fn tokens_served(tokens: &TokenServer) -> Result<usize> {
    let log = fs::read_to_string(&tokens.proc.log).unwrap_or_default();
    Ok(log.lines().filter(|l| l.contains("POST /token")).count())
}

pub(crate) fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}
