//! Keeps the outbox bounded: delivered actions lose their payloads (the
//! arguments, the captured context) once `[outbox] keep` has passed; their
//! history rows stay, and failed actions stay whole until
//! `tmux-agent outbox` retries or drops them. The same pass deletes
//! settled messages older than `[messages] keep` from the mailbox
//! ([`crate::messages::Messages::prune`]).
//!
//! A pass runs at start and then every [`PRUNE_INTERVAL_MAX`] (sooner for a
//! short retention), not on every call: each is an indexed read of the
//! delivered actions that still carry payloads, in short batches, off the
//! async workers.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::agent::outbox::{PRUNE_BATCH, SharedOutbox};
use crate::agent::settings::ReactorSettings;

/// The longest wait between two passes.
const PRUNE_INTERVAL_MAX: Duration = Duration::from_secs(600);
/// The shortest: a retention of a second still prunes only once a second.
const PRUNE_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// How long to wait between passes for a retention of `keep`: a quarter of
/// it, within the bounds, so a payload outlives its retention by at most a
/// quarter (or ten minutes).
fn interval(keep: Duration) -> Duration {
    (keep / 4).clamp(PRUNE_INTERVAL_MIN, PRUNE_INTERVAL_MAX)
}

/// Prunes the outbox and the mailbox until `stop`, with the retentions
/// of the current settings (a reload changes them from the next pass).
pub(super) async fn run(
    settings: watch::Receiver<Arc<ReactorSettings>>,
    outbox: SharedOutbox,
    messages: crate::messages::Messages,
    stop: CancellationToken,
) {
    loop {
        match messages.prune().await {
            Ok(0) => {}
            Ok(pruned) => {
                tracing::info!(pruned, keep = ?messages.keep(), "pruned settled messages")
            }
            Err(err) => tracing::warn!(%err, "could not prune the mailbox"),
        }
        let keep = settings.borrow().outbox_keep;
        let before =
            Utc::now().timestamp_millis() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let outbox_ = outbox.clone();
        let stop_ = stop.clone();
        let pruned = tokio::task::spawn_blocking(move || pass(&outbox_, before, &stop_)).await;
        match pruned {
            Ok(Ok(0)) => {}
            Ok(Ok(pruned)) => tracing::info!(pruned, ?keep, "pruned delivered calls' payloads"),
            Ok(Err(err)) => tracing::warn!(%err, "could not prune the outbox"),
            Err(err) => tracing::error!(%err, "the outbox pruning panicked"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval(keep.min(messages.keep()))) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One pass: batches until nothing older is left. The lock is taken per
/// batch, so dispatchers go on in between.
fn pass(
    outbox: &SharedOutbox,
    before_ms: i64,
    stop: &CancellationToken,
) -> Result<usize, crate::agent::outbox::OutboxError> {
    let mut total = 0;
    while !stop.is_cancelled() {
        let pruned = outbox.lock().prune(before_ms, PRUNE_BATCH)?;
        total += pruned;
        if pruned < PRUNE_BATCH {
            break;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_follows_the_retention_within_bounds() {
        let day = Duration::from_secs(86_400);
        assert_eq!(interval(30 * day), PRUNE_INTERVAL_MAX);
        assert_eq!(interval(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(interval(Duration::ZERO), PRUNE_INTERVAL_MIN);
    }
}
