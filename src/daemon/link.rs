//! Keeping the daemon attached to a server that lives on (issue #11, item
//! 9): tmux ends the sidecar's control client for reasons that have nothing
//! to do with the daemon — `detach-client -s tmux-agent`, a `detach-client
//! -a` run by a person or a plugin (which detaches every client but one,
//! ours included), `kill-session -t tmux-agent`. None of these is a reason
//! to stop acting on the user's sessions.
//!
//! [`Link::follow`] runs the tracker on one connection after another:
//!
//! - **attached**: the tracker runs; `@agent-daemon` is `running`.
//! - **lost**: the tracker ended with the server still there. `@agent-daemon`
//!   is cleared at once through a one-shot `tmux` (the control connection
//!   is gone), so nothing shows a daemon as running while none is attached.
//! - **reconnecting**: `tmux -C new-session -A` again, first at once, then
//!   after [`crate::backoff::delay`] of the failures in a row. The new
//!   tracker starts from the last model ([`Tracker::resume`]), so what
//!   changed meanwhile comes out of the diff as ordinary events (and their
//!   calls); every [`ControlHandle`] the other tasks hold is moved to the
//!   new connection ([`ControlHandle::follow`]); `@agent-daemon` is set again.
//! - **gone**: the server exited while we were away: the sessions the model
//!   still holds are closed (their goals complete), as the tracker does when
//!   the server exits under it.
//!
//! The daemon stops only when asked, when the server exits, or when the
//! user's last session closed and no other session appeared meanwhile: a
//! session created in the moment the daemon closes its own session keeps
//! the server alive, so the daemon reattaches instead of leaving
//! `@agent-daemon=running` with nobody behind it (item 7).

use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{DaemonError, health};
use crate::control::command::Command;
use crate::control::connection::{
    ConnectOptions, Connection, ControlError, ControlHandle, ExitReason,
};
use crate::control::oneshot::OneShot;
use crate::control::server::ServerSocket;
use crate::state::model::Listing;
use crate::state::{EventKind, LifecycleEvent, Model, TrackEnd, Tracker};

/// How long a one-shot `tmux` may take while the link is down.
const ONESHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon's hold on its server, across connections.
pub(super) struct Link {
    pub server: ServerSocket,
    /// The handle every task of the daemon holds; moved to each new
    /// connection.
    pub control: ControlHandle,
    /// The model, kept across connections (the reconciler and the IPC
    /// handler hold receivers of it).
    pub snapshots: watch::Sender<Model>,
    /// Each connection's token is a child of this one: cancelled (through
    /// the daemon's drop guard) at the end of the shutdown order.
    pub closing: CancellationToken,
    /// A stop request, or the caller's shutdown.
    pub stopping: CancellationToken,
    /// To the reactor, through `forward_events`.
    pub events: mpsc::Sender<LifecycleEvent>,
}

/// How a reconnect attempt series ended.
enum Reconnect {
    Attached(Tracker),
    ServerGone,
    Stopped,
}

impl Link {
    /// Runs `tracker`, and reconnects after each loss of the connection,
    /// until the daemon is stopped or the server no longer needs it.
    pub async fn follow(self, mut tracker: Tracker) -> Result<TrackEnd, DaemonError> {
        loop {
            let run = tokio::spawn(tracker.run(self.events.clone(), self.stopping.clone()));
            let end = match run.await {
                Ok(Ok(end)) => end,
                Ok(Err(source)) => {
                    return Err(DaemonError::Tracking {
                        server: self.server.clone(),
                        source,
                    });
                }
                Err(panicked) => return Err(DaemonError::TrackerPanicked(panicked)),
            };
            let why = match &end {
                TrackEnd::Connection(ExitReason::Cancelled) | TrackEnd::ServerExited { .. } => {
                    return Ok(end);
                }
                TrackEnd::LastSessionClosed => {
                    if !self.user_sessions_remain().await {
                        return Ok(end);
                    }
                    "a session was created while the daemon closed its own".to_owned()
                }
                TrackEnd::Connection(reason) => reason.to_string(),
            };
            tracing::warn!(why = %why, "the control connection is lost but the tmux server lives: reconnecting");
            self.withdraw().await;
            tracker = match self.reconnect().await {
                Reconnect::Attached(tracker) => tracker,
                Reconnect::Stopped => return Ok(TrackEnd::Connection(ExitReason::Cancelled)),
                Reconnect::ServerGone => return Ok(self.close_all().await),
            };
            if let Err(err) = health::announce(&self.control, tracker.model().sidecar()).await {
                tracing::warn!(%err, "could not set @agent-daemon again after reconnecting");
            }
            tracing::info!(
                sessions = tracker.model().sessions().count(),
                "tmux-agent daemon attached again"
            );
        }
    }

    /// Opens a new connection and resumes the model on it, trying again
    /// with the backoff until it works, the server is gone, or we are
    /// stopped.
    async fn reconnect(&self) -> Reconnect {
        let mut failures = 0u32;
        loop {
            if let Ok(false) = self.server.is_running().await {
                return Reconnect::ServerGone;
            }
            let token = self.closing.child_token();
            let attempt = async {
                let connection =
                    Connection::open(ConnectOptions::new(self.server.clone()), token.clone())
                        .await?;
                Tracker::resume(connection, self.server.clone(), self.snapshots.clone())
                    .await
                    .map_err(AttemptError::Track)
            };
            let result = tokio::select! {
                result = attempt => result,
                () = self.stopping.cancelled() => {
                    token.cancel();
                    return Reconnect::Stopped;
                }
            };
            match result {
                Ok((tracker, missed)) => {
                    self.control.follow(&tracker.control());
                    if !missed.is_empty() {
                        tracing::info!(
                            events = missed.len(),
                            "sessions changed while the daemon was not attached"
                        );
                    }
                    for event in missed {
                        log_event(&event);
                        let _ = self.events.send(event).await;
                    }
                    return Reconnect::Attached(tracker);
                }
                Err(AttemptError::Control(ControlError::NoServer { .. })) => {
                    return Reconnect::ServerGone;
                }
                Err(err) => {
                    token.cancel();
                    failures += 1;
                    let wait = crate::backoff::delay(failures);
                    tracing::warn!(%err, failures, ?wait, "reconnecting to tmux failed; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.stopping.cancelled() => return Reconnect::Stopped,
                    }
                }
            }
        }
    }

    /// Clears `@agent-daemon` while no connection is attached.
    async fn withdraw(&self) {
        health::withdraw_oneshot(&self.server).await;
    }

    /// Whether the server still holds a session that is not the sidecar's
    /// (one-shot: our session, and with it our client, is gone).
    async fn user_sessions_remain(&self) -> bool {
        let sidecar = self.snapshots.borrow().sidecar();
        let Ok(list) = Command::list_sessions("#{session_id}") else {
            return false;
        };
        match OneShot::new(self.server.clone())
            .with_timeout(ONESHOT_TIMEOUT)
            .run(&list)
            .await
        {
            Ok(out) => String::from_utf8_lossy(&out)
                .lines()
                .any(|id| id.trim() != sidecar.to_string()),
            Err(_) => false,
        }
    }

    /// The server exited while no connection watched: close every session
    /// the model holds, so their goals complete.
    async fn close_all(&self) -> TrackEnd {
        let mut model = self.snapshots.borrow().clone();
        let closed = model.reconcile(&Listing::default(), Utc::now());
        let sessions = closed
            .iter()
            .filter(|e| e.kind == EventKind::SessionClosed)
            .count();
        tracing::warn!(
            sessions,
            "the tmux server exited while the daemon was reconnecting"
        );
        for event in closed {
            log_event(&event);
            let _ = self.events.send(event).await;
        }
        self.snapshots.send_replace(model);
        TrackEnd::ServerExited { sessions }
    }
}

fn log_event(event: &LifecycleEvent) {
    tracing::info!(event = %event.kind, session_id = %event.session_id, session = %event.session, client = ?event.client, "lifecycle");
}

/// Why one reconnect attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Track(crate::state::tracker::TrackError),
}
