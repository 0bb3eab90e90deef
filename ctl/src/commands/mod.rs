//! One module per subcommand; each takes its typed options and returns an exit code.

pub mod apply;
pub mod compile;
pub mod explain;
pub mod package;
pub mod render;
pub mod routes;
pub mod status;
pub mod token;
pub mod up;
pub mod validate;

use crate::cli::Command;
use crate::exit::ExitCode;
use crate::source::{self, Source};
use std::path::Path;

pub fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate(a) => validate::run(&a),
        Command::Compile(a) => compile::run(&a),
        Command::Routes(a) => routes::run(&a),
        Command::Explain(a) => explain::run(&a),
        Command::Apply(a) => apply::run(&a),
        Command::Up(a) => up::run(&a),
        Command::Token(crate::cli::TokenCommand::Refresh(a)) => token::run(&a),
        Command::Status(a) => status::run(&a),
        Command::Render(c) => render::run(&c),
        Command::Package(a) => package::run(&a),
    }
}

/// Loads a config; on failure prints every error and gives the exit code to return.
pub fn load_or_report(path: &Path) -> Result<Source, ExitCode> {
    source::load(path).map_err(|e| {
        e.report();
        ExitCode::InvalidConfig
    })
}
