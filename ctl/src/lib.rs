//! `egressctl`: validates the egress config, compiles it into Envoy's and the filter's config,
//! and runs Envoy with it.
//!
//! - [`cli`]: the command line, turned into one typed options struct per command.
//! - [`commands`]: one file per subcommand.
//! - [`envoy`]: rendering the Envoy bootstrap (listener, clusters, TLS, access log) and finding
//!   the Envoy binary.
//! - [`source`]: reading a config file and printing its errors.
//! - [`secrets`]: credential variables (`secrets.env`), kept out of Envoy's configuration.
//! - [`state`]: the state directory shared by compile, up and apply.
//! - [`admin`]: Envoy's admin API (update counters, stats).
//! - [`oci`]: the filter module as an OCI image (`package`, and the digest `render` pins).
//! - [`proxy`]: a proxy's token push listener (signed pushes and status calls).

pub mod admin;
pub mod cli;
pub mod commands;
pub mod diff;
pub mod envoy;
pub mod exit;
pub mod oci;
pub mod proxy;
pub mod secrets;
pub mod source;
pub mod state;

use clap::Parser;

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn run() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match commands::execute(cli.command) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("egressctl: error: {err:#}");
            exit::ExitCode::Failure.into()
        }
    }
}
