//! A save the CLI asked for: the reactor commits the session's save calls,
//! then the daemon follows them in the outbox until each is delivered or
//! failed, or the requester's wait is over (what is left stays queued and
//! is still sent).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::HandlerError;
use crate::agent::outbox::HistoryEntry;
use crate::agent::outbox::SharedOutbox;
use crate::agent::reactor::ReactorCommand;
use crate::control::SessionId;
use crate::ipc::{CallState, SaveReport, SavedCall};

/// How often a save looks at the outbox for its calls' outcome.
const SAVE_POLL: Duration = Duration::from_millis(25);

/// Asks the reactor to save `session`, then follows the calls it committed
/// for at most `wait`.
pub(super) async fn save(
    reactor: &mpsc::Sender<ReactorCommand>,
    outbox: &SharedOutbox,
    session: SessionId,
    wait: Duration,
) -> Result<SaveReport, HandlerError> {
    let deadline = tokio::time::Instant::now() + wait;
    let (reply, answer) = oneshot::channel();
    reactor
        .send(ReactorCommand::Save { session, reply })
        .await
        .map_err(|_| HandlerError::ReactorStopped)?;
    let keys = answer
        .await
        .map_err(|_| HandlerError::ReactorStopped)?
        .map_err(HandlerError::NotSaved)?;
    loop {
        // The lock is held for one statement, never across the sleep.
        let wanted = keys.clone();
        let entries = outbox.run(move |outbox| outbox.by_keys(&wanted)).await?;
        let calls = entries
            .into_iter()
            .map(saved_call)
            .collect::<Result<Vec<_>, _>>()?;
        let complete = calls.iter().all(|call| call.state.is_final());
        if complete || tokio::time::Instant::now() >= deadline {
            return Ok(SaveReport {
                session,
                complete,
                calls,
            });
        }
        tokio::time::sleep(SAVE_POLL).await;
    }
}

fn saved_call(entry: HistoryEntry) -> Result<SavedCall, HandlerError> {
    let state =
        CallState::from_outbox(&entry.state).ok_or(HandlerError::UnknownCallState(entry.state))?;
    Ok(SavedCall {
        server: entry.server,
        tool: entry.tool,
        state,
        attempts: entry.attempts,
        latency_ms: entry.latency_ms,
        error: entry.error,
    })
}
