//! Supervised tasks: a long-lived task (a dispatcher, the group reconciler)
//! that panics or fails is restarted, logged and counted, never silently
//! gone. Before this, a panic in a dispatcher left its MCP server's calls
//! undelivered until the daemon restarted, with nothing in `status` to say
//! so.
//!
//! [`supervise`] runs each attempt as a task of its own, so that a panic is
//! caught as a [`tokio::task::JoinError`] rather than taking the
//! supervisor with it. The restart waits [`crate::backoff::delay`], so a
//! task that fails at once every time does not spin. A normal return, a
//! cancelled attempt or `shutdown` ends the supervision.
//!
//! The task is made anew by its factory each time: whatever it must keep
//! across a restart (channels, handles) lives outside the future.
//!
//! [`fault_panic_once`] is the fault injection the tests of each supervised
//! task use to make it panic once, through an environment variable.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

/// How many times the daemon's supervised tasks have been restarted, shared
/// between the supervisors and `status`.
pub type Restarts = Arc<AtomicU64>;

/// Aborts the running attempt when the supervisor itself is dropped or
/// aborted, so that no attempt outlives it.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `make()`'s future until it returns `Ok`, restarting it after a panic
/// or an `Err` (logged at error level with `name`, counted in `restarts`,
/// after a backoff). Ends too when an attempt is cancelled or `shutdown`
/// fires between attempts.
pub async fn supervise<F, Fut, E>(
    name: String,
    restarts: Restarts,
    shutdown: CancellationToken,
    make: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    supervise_with(name, restarts, shutdown, make, crate::backoff::delay).await;
}

/// [`supervise`] with the wait before each restart given (tests wait
/// nothing).
async fn supervise_with<F, Fut, E>(
    name: String,
    restarts: Restarts,
    shutdown: CancellationToken,
    mut make: F,
    delay: fn(u32) -> Duration,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let mut failures: u32 = 0;
    loop {
        let attempt = tokio::spawn(make());
        let _abort = AbortOnDrop(attempt.abort_handle());
        match attempt.await {
            Ok(Ok(())) => return,
            Ok(Err(err)) => tracing::error!(task = %name, %err, "a task failed; restarting it"),
            Err(err) if err.is_panic() => {
                tracing::error!(task = %name, %err, "a task panicked; restarting it");
            }
            Err(_) => return, // cancelled
        }
        if shutdown.is_cancelled() {
            return;
        }
        failures = failures.saturating_add(1);
        restarts.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            () = tokio::time::sleep(delay(failures)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The fault variables that have made their task panic in this process.
static FAULTED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// Panics the first time it is called in this process while the variable
/// `env` is `1`, saying that `what` panics once; does nothing otherwise.
/// For the tests that a supervised task is restarted (each task names its
/// own variable); never set outside tests.
pub fn fault_panic_once(env: &'static str, what: &str) {
    if std::env::var_os(env).is_none_or(|v| v != "1") {
        return;
    }
    let first = FAULTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(env);
    if first {
        panic!("{env} is set: {what} panics once");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn no_wait(_: u32) -> Duration {
        Duration::ZERO
    }

    #[tokio::test]
    async fn a_task_that_panics_once_is_restarted_and_counted() {
        let restarts = Restarts::default();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervise_with(
            "test".into(),
            restarts.clone(),
            CancellationToken::new(),
            move || {
                let runs = counted.clone();
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("first run fails");
                    }
                    Ok::<(), String>(())
                }
            },
            no_wait,
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(restarts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_error_is_restarted_and_shutdown_ends_the_backoff() {
        let restarts = Restarts::default();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        supervise_with(
            "test".into(),
            restarts.clone(),
            shutdown,
            move || {
                stop.cancel();
                async { Err::<(), _>("broken") }
            },
            no_wait,
        )
        .await;
        // The failure after shutdown is not restarted, nor counted.
        assert_eq!(restarts.load(Ordering::SeqCst), 0);

        let restarts = Restarts::default();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervise_with(
            "test".into(),
            restarts.clone(),
            CancellationToken::new(),
            move || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                async move { if n < 2 { Err("broken") } else { Ok(()) } }
            },
            no_wait,
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(restarts.load(Ordering::SeqCst), 2);
    }
}
