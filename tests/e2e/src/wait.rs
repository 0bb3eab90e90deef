//! One way to wait: poll a condition until it holds, with one generous deadline scaled by
//! `$EGRESS_TEST_TIME_FACTOR`.
//!
//! Tests never sleep and then assert: they poll for the condition they need (a process
//! answering, a counter moving, a log line appearing). The deadline only matters when something
//! is truly broken, so it is long ([`PATIENCE`], 120 s by default); a slow machine (2 cores busy
//! compiling) just takes longer to get there. Set `EGRESS_TEST_TIME_FACTOR=3` to give
//! everything three times as long on an even slower machine.

use std::fmt::Display;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// The environment variable that scales every deadline of this crate (a positive number,
/// default 1).
pub const TIME_FACTOR_ENV: &str = "EGRESS_TEST_TIME_FACTOR";

/// The unscaled deadline for anything to become true: a process to get ready, a token to
/// arrive, a counter to move. Long on purpose: reaching it means something is broken.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// `$EGRESS_TEST_TIME_FACTOR` (default 1; a value that is not a positive number is an error
/// reported on first use, as a panic, so a typo never shortens the deadlines silently).
pub fn time_factor() -> f64 {
    static FACTOR: OnceLock<f64> = OnceLock::new();
    *FACTOR.get_or_init(|| match std::env::var(TIME_FACTOR_ENV) {
        Err(_) => 1.0,
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => f,
            #[allow(clippy::panic)]
            _ => panic!("{TIME_FACTOR_ENV}={v:?} is not a positive number"),
        },
    })
}

/// `d` times [`time_factor`].
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(time_factor())
}

/// The deadline every wait in this crate uses: [`PATIENCE`] scaled.
pub fn patience() -> Duration {
    scaled(PATIENCE)
}

/// What one look at a condition found.
#[derive(Debug)]
pub enum Probe<T> {
    /// The condition holds; this is what the wait returns.
    Ready(T),
    /// Not yet; why (shown if the deadline passes).
    Pending(String),
}

/// Polls `probe` until it returns [`Probe::Ready`], an error (returned at once: the thing
/// waited for can no longer happen, e.g. the process exited), or [`patience`] has passed.
pub fn wait_until<T>(what: impl Display, probe: impl FnMut() -> Result<Probe<T>>) -> Result<T> {
    wait_within(what, patience(), probe)
}

/// [`wait_until`] with an explicit deadline (for callers that were given one).
pub fn wait_within<T>(
    what: impl Display,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Probe<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        let last = match probe()? {
            Probe::Ready(value) => return Ok(value),
            Probe::Pending(why) => why,
        };
        if start.elapsed() >= timeout {
            bail!(
                "{what}: still not the case after {:?} (the deadline is {PATIENCE:?} x \
                 {TIME_FACTOR_ENV}); last look: {last}",
                start.elapsed()
            );
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// [`wait_until`] for a yes/no condition.
pub fn wait_for(what: impl Display, mut condition: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_until(what, || {
        Ok(if condition()? {
            Probe::Ready(())
        } else {
            Probe::Pending("condition false".to_owned())
        })
    })
}
