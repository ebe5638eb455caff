//! The reactor, supervised (issue #11, item 6): a reactor that panics or
//! fails is restarted (see [`crate::supervise`]), logged and counted in
//! `tasks restarted`, rather than leaving the daemon up with its events no
//! longer acted on.
//!
//! What a run needs to keep across a restart lives here, outside it:
//!
//! - **The inputs** (the event and command receivers, the settings) sit
//!   behind a `tokio::sync::Mutex`, which a panic releases without
//!   poisoning: the next run takes over the events still queued. Only the
//!   event being handled when a run panicked is lost to it (see below).
//!   The drain at shutdown is unchanged: a run ends when the tracker's
//!   events end, and a run that ends without failing ends the supervision.
//! - **Each run's own stop token**, a child of the reactor's: cancelled
//!   when the run ends, so the dispatchers of a run that panicked stop
//!   after their call in flight instead of running beside the next run's.
//! - **What the next run adopts.** A run adopts a model of the sessions
//!   (see `Reactor::adopt`): until one has got that far, that is the
//!   tracker's model at start, and the events queued since then lead on
//!   from it. After a panic, the journal is the model: every event a run
//!   acted on is in it (written in the same transaction as its actions),
//!   so the queued events lead on from it too, and nothing is acted on
//!   twice. A fresh listing would not do: it already shows what the queued
//!   events are about to say, and they would be acted on twice.
//!
//! The event a run panicked on is not acted on by the next run. Its change
//! is still in tmux and not in the journal, so the next daemon to start
//! finds it in its diff and acts on it then, late (a restarted run does not
//! look, as its diff would count the queued events too).
//!
//! Calls a previous daemon left in flight are recovered once, by the run
//! that adopts the model at start: a later run would otherwise re-send the
//! calls the panicked run's dispatchers still have in flight.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::journal::Journal;
use crate::agent::outbox::SharedOutbox;
use crate::agent::reactor::{self, Inputs, ReactorError};
use crate::control::SessionId;
use crate::control::connection::ControlHandle;
use crate::mcp::McpPool;
use crate::state::Model;
use crate::state::model::{ClientInfo, Listing, SessionInfo};
use crate::supervise::{Restarts, supervise};

/// What [`spawn`] starts the reactor with.
pub(super) struct Start {
    pub inputs: Inputs,
    pub control: ControlHandle,
    pub outbox: SharedOutbox,
    pub pool: Arc<McpPool>,
    /// The tracker's model when the daemon attached.
    pub model: Model,
    /// The tracker's snapshots: the sidecar session a restarted run
    /// addresses tmux through.
    pub snapshots: watch::Receiver<Model>,
    /// Stops the reactor: each run's token is a child of it.
    pub stop: CancellationToken,
    pub restarts: Restarts,
}

/// Runs the reactor under a supervisor until a run ends without failing
/// (its events ended, or `stop`) or `stop` fires between runs.
pub(super) fn spawn(start: Start) -> JoinHandle<()> {
    let Start {
        inputs,
        control,
        outbox,
        pool,
        model,
        snapshots,
        stop,
        restarts,
    } = start;
    let inputs = Arc::new(tokio::sync::Mutex::new(inputs));
    // Taken by the run that adopts it, and put back if that run fails
    // before it could (the only way a run returns an error).
    let at_start = Arc::new(Mutex::new(Some(model)));
    let supervisor_stop = stop.clone();
    tokio::spawn(supervise(
        "reactor".into(),
        restarts,
        supervisor_stop,
        move || {
            let (inputs, control, outbox, pool) = (
                inputs.clone(),
                control.clone(),
                outbox.clone(),
                pool.clone(),
            );
            let (at_start, snapshots, run_stop) =
                (at_start.clone(), snapshots.clone(), stop.child_token());
            async move {
                // Held for the run; a panic releases it for the next one.
                let mut inputs = inputs.lock_owned().await;
                // The run's dispatchers stop with it, however it ends.
                let _stop_dispatchers = run_stop.clone().drop_guard();
                let first = at_start
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let model = match first.clone() {
                    Some(model) => {
                        if let Err(err) = recover(&outbox).await {
                            put_back(&at_start, first);
                            return Err(err);
                        }
                        model
                    }
                    None => {
                        let sidecar = snapshots.borrow().sidecar();
                        journal_model(&outbox, sidecar).await
                    }
                };
                let ran = reactor::run(&mut inputs, control, outbox, pool, model, run_stop).await;
                if ran.is_err() {
                    put_back(&at_start, first);
                }
                ran
            }
        },
    ))
}

/// Leaves the model at start to the next run (when it was this run's).
fn put_back(at_start: &Mutex<Option<Model>>, model: Option<Model>) {
    if model.is_some() {
        *at_start.lock().unwrap_or_else(PoisonError::into_inner) = model;
    }
}

/// Makes what a previous daemon left in flight pending again.
async fn recover(outbox: &SharedOutbox) -> Result<(), ReactorError> {
    let recovered = outbox.run(|outbox| outbox.recover()).await?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "re-sending calls whose answer a previous daemon never saw"
        );
    }
    Ok(())
}

/// The sessions as the journal has them, as a model for a restarted run to
/// adopt: it then finds nothing that changed, and takes each session's
/// memo from its row. An unreadable journal leaves the tracker's latest
/// model (the queued events may then be acted on twice; said in the log).
async fn journal_model(outbox: &SharedOutbox, sidecar: SessionId) -> Model {
    let journal = outbox.run(|outbox| outbox.journal()).await;
    let journal = match journal {
        Ok(journal) => journal,
        Err(err) => {
            tracing::error!(%err, "the journal cannot be read: the restarted reactor adopts the sessions as tmux has them now, and may act on some changes twice");
            Journal::default()
        }
    };
    let mut model = Model::new(sidecar);
    model.reconcile(&journal_listing(&journal), Utc::now());
    model
}

/// The journal's sessions as a listing. A model counts a session as
/// attached when a client is on it, so each attached one gets a stand-in
/// client, never seen outside this model.
fn journal_listing(journal: &Journal) -> Listing {
    let sessions = journal
        .entries
        .iter()
        .map(|entry| SessionInfo {
            id: entry.session_id,
            name: entry.name.clone(),
            created: entry.created,
        })
        .collect();
    let clients = journal
        .entries
        .iter()
        .filter(|entry| entry.attached)
        .map(|entry| ClientInfo {
            name: format!("journaled client of {}", entry.session_id),
            pid: 0,
            control: false,
            session: Some(entry.session_id),
        })
        .collect();
    Listing {
        sessions,
        clients,
        next_id: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::agent::journal::JournalEntry;

    fn entry(id: u32, name: &str, attached: bool) -> JournalEntry {
        JournalEntry {
            session_key: format!("host:1:${id}"),
            session_id: SessionId(id),
            name: name.into(),
            created: 1_700_000_000,
            attached,
            options: BTreeMap::new(),
            context: None,
            changed_at: 0,
        }
    }

    #[test]
    fn the_journal_model_has_its_sessions_attached_as_journaled() {
        let journal = Journal {
            server: None,
            entries: vec![entry(3, "work", true), entry(5, "idle", false)],
        };
        let mut model = Model::new(SessionId(0));
        model.reconcile(&journal_listing(&journal), Utc::now());
        let sessions: Vec<(u32, String, bool)> = model
            .sessions()
            .map(|s| (s.info.id.0, s.info.name.clone(), s.is_attached()))
            .collect();
        assert_eq!(
            sessions,
            vec![(3, "work".into(), true), (5, "idle".into(), false)]
        );
    }
}
