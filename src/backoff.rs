//! One backoff for everything that tries again: the MCP supervisor's
//! reconnects and the dispatchers' call retries.
//!
//! Both wait 1 s after the first failure, twice as long after each further
//! one, at most 60 s, with ±20% jitter. The jitter is why there is one
//! function and not two: a fleet of retries (every session's calls to a
//! server that went down together) must not arrive together when it comes
//! back, and two hand-rolled versions had drifted apart (one jittered only
//! upwards).

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The wait after the first failure.
pub const START: Duration = Duration::from_secs(1);
/// The longest wait: a server down for an hour is tried every minute.
pub const MAX: Duration = Duration::from_secs(60);
/// How far each wait may stray from its base, as a fraction of it.
const JITTER: f64 = 0.2;

/// The wait before the next try after `failures` failures in a row
/// (`failures` ≥ 1; 0 counts as 1): [`START`] doubling up to [`MAX`], ±20%.
pub fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let base = START.saturating_mul(1u32 << doublings).min(MAX);
    base.mul_f64(1.0 - JITTER + 2.0 * JITTER * random_unit())
}

/// A number in [0, 1) that differs between calls and processes (jitter
/// only: not for anything that needs real randomness).
fn random_unit() -> f64 {
    // `RandomState::new()` is keyed per process and per call; the counter
    // makes two calls in the same instant differ too.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_cap_with_jitter() {
        for (failures, base) in [
            (0, 1.0),
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (6, 32.0),
            (7, 60.0),
            (40, 60.0),
            (u32::MAX, 60.0),
        ] {
            let d = delay(failures).as_secs_f64();
            assert!(
                d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                "{failures}: {d}"
            );
        }
        let samples: Vec<_> = (0..20).map(|_| delay(3)).collect();
        assert!(
            samples.iter().any(|d| *d != samples[0]),
            "no jitter: {samples:?}"
        );
    }
}
