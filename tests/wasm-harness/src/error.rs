//! Harness error type.

/// Everything that can go wrong while loading or driving a module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The module trapped (panic, `unreachable`, out-of-bounds access, a
    /// `proc_exit`, ...) while running `callback`. The worker is unusable
    /// afterwards, like an Envoy VM that failed.
    #[error("the VM trapped in {callback}: {message}")]
    Trap {
        /// Export that was running, e.g. `proxy_on_request_headers`.
        callback: String,
        /// wasmtime's description, including the wasm backtrace.
        message: String,
    },
    /// The worker trapped earlier; no further callbacks are delivered.
    #[error("the VM of this worker already failed (trapped earlier)")]
    VmFailed,
    /// The module lacks an export the harness needs, or exports it with the
    /// wrong signature.
    #[error("module export `{0}` is missing or has an unexpected signature")]
    BadExport(String),
    /// The test asked for something that does not exist (unknown callout
    /// token, finished stream, ...).
    #[error("harness misuse: {0}")]
    Usage(String),
    /// Compiling, linking or instantiating the module failed, or building a
    /// wasm artifact failed.
    #[error("{0:#}")]
    Setup(#[from] anyhow::Error),
}

impl Error {
    /// Whether this is a trap of the module (see [`Error::Trap`]).
    pub fn is_trap(&self) -> bool {
        matches!(self, Error::Trap { .. })
    }
}

impl From<wasmtime::Error> for Error {
    fn from(err: wasmtime::Error) -> Error {
        Error::Setup(err.into())
    }
}

/// `Result` with the harness [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
