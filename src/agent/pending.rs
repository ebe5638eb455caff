//! `@agent-pending`: how many calls are not delivered yet, as tmux shows it.
//!
//! One writer per daemon reads the count from the outbox and writes it.
//! The reactor (after committing actions) and the dispatchers (after
//! recording answers) only say that it moved. Each `set-option` costs the
//! tmux server a pass over all its sessions (it refreshes their status
//! lines and sizes after any option changes), so writing the count after
//! every dispatcher round of a burst cost tmux more than the calls did. A
//! moving count is written at most every [`EVERY`], the latest one each
//! time; when a dispatcher has nothing left in flight or due, the count is
//! written at once, so the end of a burst (often 0, which scripts wait for)
//! shows without delay. One writer, reading the count itself, also means
//! two dispatchers can never leave an older count on top of a newer one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::outbox::SharedOutbox;
use crate::control::command::Command;
use crate::control::connection::ControlHandle;
use crate::schema;

/// How often a moving count is written.
pub const EVERY: Duration = Duration::from_millis(100);

/// How many open calls make a burst whose end gives the heap back
/// ([`crate::heap::give_back`]). Not after every call: a trim releases
/// pages the next event's work would fault back in, and a single call
/// leaves little free.
const BURST: u64 = 64;

/// Where the reactor and the dispatchers say that the count moved; cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct PendingGauge(Arc<Signals>);

#[derive(Debug, Default)]
struct Signals {
    moved: Notify,
    settled: Notify,
}

impl PendingGauge {
    /// Starts the writer on `control`, reading `outbox`; it writes the
    /// count once more when `stop` fires, and ends.
    pub fn spawn(
        control: ControlHandle,
        outbox: SharedOutbox,
        stop: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let signals = Arc::new(Signals::default());
        let writer = tokio::spawn(write(signals.clone(), control, outbox, stop));
        (Self(signals), writer)
    }

    /// The count may have changed: it is written within [`EVERY`].
    pub fn moved(&self) {
        self.0.moved.notify_one();
    }

    /// A dispatcher has nothing in flight or due: the count is written now.
    pub fn settled(&self) {
        self.0.settled.notify_one();
    }
}

/// The writer: waits to be told, paces moving counts, and writes what the
/// outbox says when it is not what tmux shows already.
async fn write(
    signals: Arc<Signals>,
    control: ControlHandle,
    outbox: SharedOutbox,
    stop: CancellationToken,
) {
    let mut shown: Option<u64> = None;
    // The highest count written since the last 0.
    let mut peak = 0;
    let mut written_at: Option<Instant> = None;
    loop {
        let (urgent, last) = tokio::select! {
            () = signals.settled.notified() => (true, false),
            () = signals.moved.notified() => (false, false),
            () = stop.cancelled() => (true, true),
        };
        if let Some(quiet_until) = written_at.map(|at| at + EVERY).filter(|_| !urgent) {
            tokio::select! {
                () = tokio::time::sleep_until(quiet_until) => {}
                () = signals.settled.notified() => {}
                () = stop.cancelled() => {}
            }
        }
        if let Ok(count) = outbox.run(|outbox| outbox.open_count()).await
            && shown != Some(count)
            && let Ok(command) =
                Command::set_global_option(schema::global::PENDING, &count.to_string())
        {
            // Queued, not waited for, as the dispatchers' other options are.
            let _ = control.queue(command).await;
            peak = peak.max(count);
            if count == 0 {
                if peak >= BURST {
                    // A burst is over: what it allocated is free again.
                    crate::heap::give_back();
                }
                peak = 0;
            }
            shown = Some(count);
            written_at = Some(Instant::now());
        }
        if last || stop.is_cancelled() {
            return;
        }
    }
}
