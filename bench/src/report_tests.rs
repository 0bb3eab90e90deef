//! Tests of [`super`] (the run report).
use super::*;

/// A report with nothing measured (tests fill in what they check).
/// The measured value and verdict of the first row whose text starts with `prefix`.
fn verdict(rows: Vec<Target>, prefix: &str) -> Option<(String, Option<bool>)> {
    rows.into_iter()
        .find(|t| t.what.starts_with(prefix))
        .map(|t| (t.measured, t.met))
}

/// A report of these samples (every case's summary from them), nothing else.
fn report_of(samples: Vec<Sample>) -> RunReport {
    RunReport {
        summaries: summarize(&crate::cases::Case::all(), &samples),
        samples,
        ..empty_report()
    }
}

fn empty_report() -> RunReport {
    RunReport {
        started: String::new(),
        mode: String::new(),
        commit: String::new(),
        machine: vec![],
        settings: vec![],
        summaries: vec![],
        samples: vec![],
        rss_after_load_kib: vec![],
        worker_memory: vec![],
        compile_times: vec![],
        wasm_sizes: vec![],
        upstream_alone_rps: None,
        chart: String::new(),
    }
}

fn sample(case: usize, round: usize, rps: f64, p99: f64) -> Sample {
    Sample {
        case,
        round,
        wrk: WrkResult {
            requests_per_sec: rps,
            p50_us: p99 / 2.0,
            p99_us: p99,
            requests: 1,
            non_2xx: 0,
            socket_errors: 0,
        },
        busy: vec![1.0, 0.5],
        envoy_cpu: 1.0,
    }
}

#[test]
fn ratios_are_taken_within_rounds_then_medianed() {
    // Round 1 is slow for everyone; the ratio stays 0.5.
    let s = vec![
        sample(1, 0, 100.0, 10.0),
        sample(2, 0, 50.0, 20.0),
        sample(1, 1, 10.0, 10.0),
        sample(2, 1, 5.0, 20.0),
        sample(1, 2, 100.0, 10.0),
        sample(2, 2, 60.0, 20.0),
    ];
    assert_eq!(ratio(&s, 2, 1, rps), Some(0.5));
    assert_eq!(ratio(&s, 2, 1, p99), Some(2.0));
    assert_eq!(ratio(&s, 3, 1, rps), None);
    assert_eq!(median(&[3.0, 1.0, 2.0, 4.0]), Some(2.5));
}

#[test]
fn callers_and_sigv4_goals_are_judged_against_case_5() {
    let samples = vec![
        sample(1, 0, 200.0, 1.0),
        sample(5, 0, 100.0, 1.0),
        sample(8, 0, 96.0, 1.0),
        sample(9, 0, 94.0, 1.0),
        sample(10, 0, 91.0, 1.0),
        sample(11, 0, 160.0, 1.0),
    ];
    let report = report_of(samples);
    let verdict = |prefix: &str| verdict(report.targets(), prefix);
    assert_eq!(verdict("case 8 "), Some(("0.960".into(), Some(true))));
    assert_eq!(verdict("case 9 "), Some(("0.940".into(), Some(false))));
    assert_eq!(verdict("case 10 "), Some(("0.910".into(), Some(true))));
    // TLS alone costs 0.8; case 8 lost 0.96 of case 5: 1.2 once TLS is taken out.
    assert_eq!(verdict("case 11 "), Some(("0.800".into(), None)));
    assert_eq!(verdict("(case 8"), Some(("1.200".into(), None)));
    assert!(report
        .table()
        .contains("| 8 | egress filter, API key target, callers by mTLS"));
}

/// Regression: compile times of cases 7 and 16 come interleaved (7, 16, 7, 16, ...); each
/// case gets one row (run 8 printed both rows twice).
#[test]
fn compile_times_give_one_row_per_case() {
    let ms = Duration::from_millis;
    let report = RunReport {
        compile_times: vec![(7, ms(100)), (16, ms(2000)), (7, ms(300)), (16, ms(1000))],
        ..empty_report()
    };
    let rows: Vec<(String, String)> = report
        .targets()
        .into_iter()
        .filter(|t| t.what.starts_with("`egressctl compile`"))
        .map(|t| (t.what, t.measured))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].0.ends_with("(case 7)") && rows[0].1.starts_with("200 ms median, 100 ms best of 2")
    );
    assert!(rows[1].0.ends_with("(case 16)") && rows[1].1.starts_with("1500 ms median"));
}

#[test]
fn new_runs_go_on_top() {
    let dir = std::env::temp_dir().join(format!("egress-bench-test-{}", std::process::id()));
    let file = dir.join("RESULTS.md");
    insert_run(&file, "## first\n").unwrap();
    insert_run(&file, "## second\n").unwrap();
    let text = fs::read_to_string(&file).unwrap();
    let (first, second) = (
        text.find("## first").unwrap(),
        text.find("## second").unwrap(),
    );
    assert!(text.starts_with("# Benchmark results"));
    assert!(second < first);
    assert_eq!(text.matches(RUNS_MARKER).count(), 1);
    let _ = fs::remove_dir_all(dir);
}

/// Cases 17 and 18 (cases 2 and 4 with the spec's log line) get their own rows, apart from
/// issue 11's targets, which stay judged against cases 2 and 4.
#[test]
fn like_for_like_rows_judge_against_cases_17_and_18_and_leave_issue_11_alone() {
    let samples = vec![
        sample(2, 0, 100.0, 1.0),
        sample(4, 0, 80.0, 1.0),
        sample(5, 0, 66.0, 1.0),
        sample(13, 0, 83.0, 1.0),
        sample(14, 0, 63.0, 1.0),
        sample(17, 0, 85.0, 1.0),
        sample(18, 0, 70.0, 1.0),
    ];
    let report = report_of(samples);
    // Issue 11's targets, unchanged.
    assert_eq!(
        verdict(
            report.targets(),
            "case 13 (`auto`, API key) req/s ≥ 0.97 × case 2 (issue 11)"
        ),
        Some(("0.830".into(), Some(false)))
    );
    assert_eq!(
        verdict(
            report.targets(),
            "case 14 (`auto`, OAuth2 cached) req/s ≥ 0.97 × case 4 (issue 11)"
        ),
        Some(("0.787".into(), Some(false)))
    );
    assert!(report.targets().iter().all(|t| !t.what.contains("case 17")));
    // The like-for-like rows: 83/85, 63/70, 66/70; what the line costs 2 and 4.
    let lfl = || report.like_for_like();
    assert_eq!(
        verdict(lfl(), "case 13 "),
        Some(("0.976".into(), Some(true)))
    );
    assert!(lfl()[0]
        .what
        .contains("≥ 0.97 × case 17 (native injector + the spec's log line)"));
    assert_eq!(
        verdict(lfl(), "case 14 "),
        Some(("0.900".into(), Some(false)))
    );
    assert_eq!(
        verdict(lfl(), "case 5 "),
        Some(("0.943".into(), Some(false)))
    );
    assert!(lfl()[2].what.contains("≥ 0.95 × case 18"));
    assert_eq!(verdict(lfl(), "case 17 "), Some(("0.850".into(), None)));
    assert_eq!(verdict(lfl(), "case 18 "), Some(("0.875".into(), None)));
    // The markdown: the section is labelled as proposed, after the targets; the main table has
    // the "× case 17" and "× case 18" columns.
    let md = report.markdown();
    let targets = md.find("### Targets").unwrap();
    let lfl_at = md
        .find("### Like-for-like comparisons (proposed, not issue 11's targets)")
        .unwrap();
    assert!(targets < lfl_at);
    assert!(md.contains("| × case 5 | × case 17 | × case 18 | p99 × case 4 |"));
    assert!(md.contains("| 13 | `auto` engine, API key target | 83 |"));
    let row13 = md
        .lines()
        .find(|l| l.starts_with("| 13 |"))
        .unwrap()
        .split(" | ")
        .collect::<Vec<_>>();
    assert_eq!((row13[9], row13[10]), ("0.976", "1.186"));
}
