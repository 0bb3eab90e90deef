//! `make bench`: Envoy 1.40 with our egress filter side by side with Envoy alone, Envoy's
//! native credential injector (generic and OAuth2) and a minimal proxy-wasm module, under wrk,
//! in interleaved rounds on pinned cores. See the README's "Benchmarks" section.

mod auth_cases;
mod cases;
mod chart;
mod envoy;
mod host_calls;
mod http;
mod load;
mod machine;
mod options;
mod procs;
mod report;
mod run;
mod upstream;

use std::process::ExitCode;

fn main() -> ExitCode {
    let opts = match options::Options::parse(std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("egress-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = if opts.host_calls {
        host_calls::run(&opts)
    } else {
        run::run(&opts)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("egress-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
