//! The engine a test renders with (`egressctl compile|up|apply --engine auto|wasm`), and
//! [`engine_tests!`](crate::engine_tests): one behaviour test body run once per engine.
//!
//! Behaviour parity is the test: the same requests through both engines must give the same
//! answers, so every behaviour test runs for both. A failure names its engine twice: in the
//! test name (`<test>::auto`, `<test>::wasm`) and in every message written with
//! [`Engine`]'s `Display` (`engine=auto`).

use std::fmt;

/// What renders the egress listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The filter routes, rewrites and injects every request (any proxy-wasm host).
    Wasm,
    /// Envoy routes and attaches static credentials natively; the filter only where needed.
    Auto,
}

impl Engine {
    /// Both engines, `wasm` first.
    pub const ALL: [Engine; 2] = [Engine::Wasm, Engine::Auto];

    /// The `--engine` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Wasm => "wasm",
            Engine::Auto => "auto",
        }
    }

    /// `["--engine", "<value>"]`, for an `egressctl compile|up|apply` command line.
    pub fn args(self) -> [&'static str; 2] {
        ["--engine", self.as_str()]
    }
}

impl fmt::Display for Engine {
    /// `engine=<value>`: what assertion messages carry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "engine={}", self.as_str())
    }
}

/// What a behaviour test body returns: `()` (it panics on failure) or `anyhow::Result<()>`.
pub trait Outcome {
    /// The outcome as a result, an error naming the engine.
    fn into_result(self, engine: Engine) -> anyhow::Result<()>;
}

impl Outcome for () {
    fn into_result(self, _: Engine) -> anyhow::Result<()> {
        Ok(())
    }
}

impl Outcome for anyhow::Result<()> {
    fn into_result(self, engine: Engine) -> anyhow::Result<()> {
        self.map_err(|e| e.context(engine.to_string()))
    }
}

/// For each `name` of a function `fn name(engine: Engine)` (returning `()` or
/// `anyhow::Result<()>`) in the same file, a module `name` with two tests, `name::wasm` and
/// `name::auto`, that call it with that engine. The body stays an ordinary function (rustfmt
/// formats it); `cargo test -p egress-e2e --test egress -- ::auto` runs one engine only.
///
/// ```ignore
/// fn unknown_paths_are_404(engine: Engine) {
///     let p = Proxy::start(engine).unwrap();
///     assert_eq!(p.send("GET", "/nope").status, 404, "{engine}");
/// }
/// engine_tests!(unknown_paths_are_404);
/// ```
#[macro_export]
macro_rules! engine_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn wasm() -> $crate::anyhow::Result<()> {
                $crate::Outcome::into_result(super::$name($crate::Engine::Wasm), $crate::Engine::Wasm)
            }

            #[test]
            fn auto() -> $crate::anyhow::Result<()> {
                $crate::Outcome::into_result(super::$name($crate::Engine::Auto), $crate::Engine::Auto)
            }
        }
    )+};
}
