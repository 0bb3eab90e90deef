//! `egressctl validate CONFIG`

use super::load_or_report;
use crate::cli::ValidateArgs;
use crate::exit::ExitCode;

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let source = match load_or_report(&args.config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let c = &source.config;
    println!(
        "{}: ok ({} targets, {} routes, listener {})",
        args.config.display(),
        c.targets.len(),
        c.routes.len(),
        c.http.listen
    );
    Ok(ExitCode::Success)
}
