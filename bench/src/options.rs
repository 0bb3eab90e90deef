//! Command-line options of `egress-bench` (`make bench BENCH_ARGS="..."`).

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
egress-bench: Envoy with the egress filter side by side with Envoy's native credential injector
(run through `make bench`, which builds the artifacts first).

Options:
  --quick             smoke test: 1 round of 2 s per case, results under target/bench/
                      (also: BENCH_QUICK=1)
  --rounds N          rounds over all cases (default 5)
  --duration SECS     measured wrk run per case and round (default 10)
  --warmup SECS       unmeasured wrk run before each measured one (default 2)
  --connections N     wrk connections (default 16)
  --concurrency N     Envoy worker threads (default 1)
  --envoy-cpus LIST   cores Envoy is pinned to (default 0)
  --load-cpus LIST    cores wrk, nginx and the token server are pinned to (default 1)
  --cases LIST        only these cases, e.g. 1,4,5 (ratios need 1, 2, 4, 5; 8-10 are
                      compared with 5, 11 with 1, 13 with 2, 14 with 4, 7 with 12, 16 with 15;
                      like-for-like: 13 with 17, 14 and 5 with 18)
  --host-calls        instead of the cases: what each proxy-wasm host call costs Envoy per
                      request (bench/probe-module; results: target/bench/results/HOST_CALLS.md
                      unless --out)
  --out FILE          results file (default bench/results/RESULTS.md; quick: target/bench/results/RESULTS.md)
  -h, --help          this text
";

#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub rounds: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// The first warm-up of each Envoy (wasm compiled, tokens fetched, pools filled).
    pub first_warmup: Duration,
    pub connections: u32,
    pub concurrency: u32,
    pub envoy_cpus: String,
    pub load_cpus: String,
    pub cases: Option<Vec<usize>>,
    pub out: Option<PathBuf>,
    /// `--host-calls`: the host-call probes instead of the cases.
    pub host_calls: bool,
    /// How many times `egressctl compile` of the 10,000-route config is timed.
    pub compile_repeats: usize,
}

impl Options {
    /// `None` when help was asked for.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>> {
        let quick_env = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let mut o = Options {
            quick: false,
            rounds: 5,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            first_warmup: Duration::from_secs(3),
            connections: 16,
            concurrency: 1,
            envoy_cpus: "0".into(),
            load_cpus: "1".into(),
            cases: None,
            out: None,
            host_calls: false,
            compile_repeats: 5,
        };
        let mut args = args.into_iter();
        let mut explicit: Vec<&str> = Vec::new();
        let mut quick = quick_env;
        while let Some(arg) = args.next() {
            let mut value =
                |name: &str| args.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "-h" | "--help" => return Ok(None),
                "--quick" => quick = true,
                "--host-calls" => o.host_calls = true,
                "--rounds" => {
                    o.rounds = value("--rounds")?.parse().context("--rounds")?;
                    explicit.push("rounds");
                }
                "--duration" => {
                    o.duration =
                        Duration::from_secs(value("--duration")?.parse().context("--duration")?);
                    explicit.push("duration");
                }
                "--warmup" => {
                    o.warmup = Duration::from_secs(value("--warmup")?.parse().context("--warmup")?);
                    explicit.push("warmup");
                }
                "--connections" => {
                    o.connections = value("--connections")?.parse().context("--connections")?
                }
                "--concurrency" => {
                    o.concurrency = value("--concurrency")?.parse().context("--concurrency")?
                }
                "--envoy-cpus" => o.envoy_cpus = value("--envoy-cpus")?,
                "--load-cpus" => o.load_cpus = value("--load-cpus")?,
                "--cases" => {
                    let list = value("--cases")?;
                    let ids = list
                        .split(',')
                        .map(|s| s.trim().parse::<usize>())
                        .collect::<Result<Vec<_>, _>>()
                        .with_context(|| format!("--cases {list}"))?;
                    if ids.iter().any(|&i| !(1..=18).contains(&i)) {
                        bail!("--cases: cases are 1 to 18");
                    }
                    o.cases = Some(ids);
                }
                "--out" => o.out = Some(PathBuf::from(value("--out")?)),
                other => bail!("unknown argument {other:?}\n\n{USAGE}"),
            }
        }
        if quick {
            o.quick = true;
            if !explicit.contains(&"rounds") {
                o.rounds = 1;
            }
            if !explicit.contains(&"duration") {
                o.duration = Duration::from_secs(2);
            }
            if !explicit.contains(&"warmup") {
                o.warmup = Duration::from_secs(1);
            }
            o.first_warmup = Duration::from_secs(1);
            o.compile_repeats = 1;
        }
        if o.rounds == 0 || o.duration.is_zero() || o.connections == 0 || o.concurrency == 0 {
            bail!("--rounds, --duration, --connections and --concurrency must be positive");
        }
        Ok(Some(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        Options::parse(args.iter().map(|s| s.to_string()))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn quick_shortens_what_was_not_given() {
        let o = parse(&["--quick", "--rounds", "2"]);
        assert!(o.quick);
        assert_eq!(o.rounds, 2);
        assert_eq!(o.duration, Duration::from_secs(2));
        let o = parse(&["--cases", "1,5"]);
        assert_eq!(o.cases, Some(vec![1, 5]));
        assert_eq!(parse(&["--cases", "17,18"]).cases, Some(vec![17, 18]));
        assert!(Options::parse(["--cases".to_string(), "19".to_string()]).is_err());
    }
}
