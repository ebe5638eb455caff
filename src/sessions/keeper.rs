//! The daemon task that keeps each session's latest snapshot in the outbox
//! database (see [`snapshot`](super::snapshot) for what and when).
//!
//! It follows the daemon's event stream (what the reactor acted on), so it
//! adds nothing to the reactor's path: after a live event of a session it
//! waits [`SETTLE`] (a burst of events, or the splits that follow a
//! `new-session`, make one snapshot) and reads the session from tmux; on a
//! timer it reads every session. A live close marks the session's
//! snapshots closed once tmux is seen to outlive it ([`CLOSE_CONFIRM`]):
//! the closes `kill-server` causes are not recorded. Late events (made from the journal at start) describe
//! a server that is gone and are not snapshotted.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::snapshot::{self, Reason, Retention};
use crate::agent::identity::{IDENTITY_FORMAT, ServerIdentity};
use crate::agent::outbox::SharedOutbox;
use crate::control::SessionId;
use crate::control::command::Command;
use crate::control::connection::ControlHandle;
use crate::events::{DaemonEvent, EventStream};
use crate::state::{EventKind, Model};

/// How long after a session's event its snapshot is taken.
pub const SETTLE: Duration = Duration::from_millis(300);

/// The default of `[snapshots] every`.
pub const EVERY: Duration = Duration::from_secs(60);

/// How long a close waits before it is recorded: `kill-server` closes
/// every session too, and a close is recorded only if tmux still answers
/// after it (a session ended on purpose), not when the server went with it.
pub const CLOSE_CONFIRM: Duration = Duration::from_millis(1000);

/// How long the last snapshot of a daemon asked to stop may take.
const LAST_GRACE: Duration = Duration::from_secs(2);

/// `[snapshots]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// `None`: the daemon takes no snapshots (`every = "0s"`).
    pub every: Option<Duration>,
    pub retention: Retention,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        Self {
            every: Some(EVERY),
            retention: Retention::default(),
        }
    }
}

impl SnapshotSettings {
    pub fn from_section(section: &crate::config::SnapshotsSection) -> Self {
        let every = section.every.map_or(EVERY, |d| d.0);
        Self {
            every: (!every.is_zero()).then_some(every),
            retention: Retention {
                per_session: section.per_session.unwrap_or(snapshot::PER_SESSION).max(1),
                total: section.total.unwrap_or(snapshot::TOTAL).max(1),
            },
        }
    }
}

/// Starts the keeper; it ends when `stop` fires (or the event stream
/// does), after a last snapshot of every session if tmux still answers.
pub fn spawn(
    control: ControlHandle,
    model: watch::Receiver<Model>,
    events: &EventStream,
    outbox: SharedOutbox,
    settings: SnapshotSettings,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let live = events.subscribe(None).live;
    tokio::spawn(async move {
        let Some(every) = settings.every else {
            return;
        };
        let identity = match control
            .run(Command::display_server(IDENTITY_FORMAT).expect("a fixed format"))
            .await
        {
            Ok(reply) => reply
                .lines
                .first()
                .and_then(|l| ServerIdentity::parse(&String::from_utf8_lossy(l))),
            Err(_) => None,
        };
        let Some(identity) = identity else {
            tracing::warn!("the server's identity cannot be read: no session snapshots");
            return;
        };
        let keeper = Keeper {
            control,
            model,
            outbox,
            identity,
            retention: settings.retention,
        };
        keeper.run(live, every, stop).await;
    })
}

struct Keeper {
    control: ControlHandle,
    model: watch::Receiver<Model>,
    outbox: SharedOutbox,
    identity: ServerIdentity,
    retention: Retention,
}

impl Keeper {
    async fn run(
        self,
        mut live: broadcast::Receiver<DaemonEvent>,
        every: Duration,
        stop: CancellationToken,
    ) {
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Sessions with an event since their last snapshot, by id, with
        // their name as of that event.
        let mut dirty: BTreeMap<SessionId, String> = BTreeMap::new();
        let settle = tokio::time::sleep(SETTLE);
        tokio::pin!(settle);
        let mut settling = false;
        // Closes seen, not yet recorded (see CLOSE_CONFIRM).
        let mut closing: Vec<SessionId> = Vec::new();
        let confirm = tokio::time::sleep(CLOSE_CONFIRM);
        tokio::pin!(confirm);
        loop {
            tokio::select! {
                event = live.recv() => match event {
                    Ok(DaemonEvent::Lifecycle(event)) if !event.late => match event.kind {
                        EventKind::SessionClosed => {
                            dirty.remove(&event.session_id);
                            if closing.is_empty() {
                                confirm.as_mut().reset(tokio::time::Instant::now() + CLOSE_CONFIRM);
                            }
                            closing.push(event.session_id);
                        }
                        EventKind::SessionMissed => {}
                        _ => {
                            dirty.insert(event.session_id, event.session.clone());
                            if !settling {
                                settle.as_mut().reset(tokio::time::Instant::now() + SETTLE);
                                settling = true;
                            }
                        }
                    },
                    // Late events are the journal's, and messages change no layout.
                    Ok(DaemonEvent::Lifecycle(_) | DaemonEvent::Message(_)) => {}
                    // Some events were missed: every session is read.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        dirty.extend(self.sessions());
                        settling = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                () = &mut confirm, if !closing.is_empty() => {
                    let closed = std::mem::take(&mut closing);
                    if self.server_answers().await {
                        for id in closed {
                            self.closed(id).await;
                        }
                    }
                }
                () = &mut settle, if settling => {
                    settling = false;
                    let sessions = std::mem::take(&mut dirty);
                    self.take(sessions, Reason::Event).await;
                }
                _ = timer.tick() => {
                    self.take(self.sessions(), Reason::Checkpoint).await;
                }
                () = stop.cancelled() => break,
            }
        }
        // A daemon stopped while tmux runs leaves each session as it is now
        // (when the server is gone, this fails at once and the latest
        // snapshots stand).
        if !self.control.is_closed() {
            let _ =
                tokio::time::timeout(LAST_GRACE, self.take(self.sessions(), Reason::DaemonStop))
                    .await;
        }
    }

    /// Every session the tracker knows, but the daemon's own.
    fn sessions(&self) -> BTreeMap<SessionId, String> {
        let model = self.model.borrow();
        model
            .sessions()
            .filter(|s| s.info.id != model.sidecar())
            .map(|s| (s.info.id, s.info.name.clone()))
            .collect()
    }

    /// Reads `sessions` from tmux and keeps their snapshots, all in one
    /// transaction (a burst of creations is one write, not one per session).
    async fn take(&self, sessions: BTreeMap<SessionId, String>, reason: Reason) {
        let mut taken = Vec::with_capacity(sessions.len());
        for (id, name) in sessions {
            // The name tmux has now: the event's may be older.
            let name = {
                let model = self.model.borrow();
                match model.session(id) {
                    Some(s) => s.info.name.clone(),
                    None => name,
                }
            };
            match snapshot::capture(&self.control, id, &name).await {
                Ok(snapshot) if !snapshot.windows.is_empty() => {
                    taken.push((self.identity.session_key(id).to_string(), snapshot));
                }
                Ok(_) => {}
                // Most often: the session closed meanwhile.
                Err(err) => tracing::debug!(%err, session_id = %id, "no snapshot"),
            }
        }
        if taken.is_empty() {
            return;
        }
        let retention = self.retention;
        let now = Utc::now().timestamp_millis();
        let count = taken.len();
        let kept = self
            .outbox
            .run(move |outbox| outbox.keep_snapshots(&taken, reason, now, retention))
            .await;
        match kept {
            Ok(kept) => tracing::debug!(
                count,
                ?reason,
                new = kept
                    .iter()
                    .filter(|k| matches!(k, snapshot::Kept::New { .. }))
                    .count(),
                "snapshots"
            ),
            Err(err) => tracing::warn!(%err, count, "snapshots could not be kept"),
        }
    }

    /// Whether tmux still answers on the daemon's connection.
    async fn server_answers(&self) -> bool {
        let ask = Command::display_server("#{pid}").expect("a fixed format");
        matches!(
            tokio::time::timeout(CLOSE_CONFIRM, self.control.run(ask)).await,
            Ok(Ok(_))
        )
    }

    async fn closed(&self, id: SessionId) {
        let key = self.identity.session_key(id).to_string();
        let now = Utc::now().timestamp_millis();
        if let Err(err) = self
            .outbox
            .run(move |outbox| outbox.close_snapshots(&key, now))
            .await
        {
            tracing::warn!(%err, session_id = %id, "a closed session's snapshots could not be marked");
        }
    }
}
