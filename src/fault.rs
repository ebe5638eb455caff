//! Faults the tests inject through environment variables, to drive a
//! moment that is otherwise too short to hit (a window between two steps)
//! or a failure that otherwise needs a bug (a panic). Each variable is
//! named where it is used; none is ever set outside tests, and unset they
//! cost one environment lookup.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The variables that have made their task panic in this process.
static PANICKED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// Panics the first time it is called in this process while the variable
/// `env` is `1`, saying that `what` panics once; does nothing otherwise.
/// For the tests that a supervised task is restarted (each task names its
/// own variable).
pub fn panic_once(env: &'static str, what: &str) {
    if std::env::var_os(env).is_none_or(|v| v != "1") {
        return;
    }
    let first = PANICKED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(env);
    if first {
        panic!("{env} is set: {what} panics once");
    }
}

/// Waits as many milliseconds as the variable `env` says (not at all when
/// it is unset or not a number), saying so in the log: it holds a window
/// open for a test to act in.
pub async fn delay(env: &'static str) {
    let Some(ms) = std::env::var(env).ok().and_then(|v| v.parse::<u64>().ok()) else {
        return;
    };
    tracing::info!(env, ms, "a test holds this moment open");
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// [`delay`] for code without a runtime (`tmux-agent hook`): blocks the
/// thread, and says so on stderr (such code has no log a test reads).
pub fn pause(env: &'static str) {
    let Some(ms) = std::env::var(env).ok().and_then(|v| v.parse::<u64>().ok()) else {
        return;
    };
    eprintln!("{env}: a test holds this moment open for {ms} ms");
    std::thread::sleep(Duration::from_millis(ms));
}
