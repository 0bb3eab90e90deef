//! Exit codes scripts can rely on.

/// `0` success; `1` the config is invalid (every error printed); `2` bad command-line usage
/// (clap's own); `3` anything else failed (I/O, Envoy missing or exited with an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    InvalidConfig = 1,
    Usage = 2,
    Failure = 3,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}
