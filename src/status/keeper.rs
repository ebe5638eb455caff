//! The daemon's status keeper: the one task that owns the [`Board`], takes
//! [`Observation`]s from everything that learns about agents, and writes
//! what changed to tmux (`@agent-status`, `@agent-kind`, `@agent-since` per
//! pane, the session aggregate, `@agent-waiting`).
//!
//! # How to submit observations
//!
//! Get an [`ObservationSender`] from [`KeeperHandle::sender`] (clone it
//! freely) and call [`ObservationSender::observe`]. It never waits: the
//! queue is bounded ([`OBSERVATION_BACKLOG`]) and an observation that does
//! not fit is dropped and logged, so no observer (the IPC handler answering
//! a hook, the pane-activity fallback) is ever held up by tmux. Set `at` to
//! the time of the *evidence* (when the screen settled, when the hook ran),
//! not the time you send it: the merge rule compares evidence times (see
//! [`super::model`]), so a fallback that is slow to decide cannot undo a
//! hook that ran meanwhile. The fallback sends [`Source::Activity`]; the
//! process tree sends [`Source::Process`] (and `Exited` when a pane's
//! agent left or the pane closed); hooks send [`Source::Hook`].
//!
//! What the keeper does with it, in order: places the pane in its session
//! (one `display-message` the first time; a pane that no longer exists is
//! dropped with a log line), merges it, writes the options that changed
//! over the daemon's control connection, publishes the new board
//! ([`KeeperHandle::board`], for `status`, `show`, `whoami`, `next-waiting`)
//! and broadcasts the [`Change`] ([`KeeperHandle::changes`]), which
//! [`forward_to_reactor`] turns into `agent-*` lifecycle events for the
//! reactor's `[[on.agent-waiting]]` and friends.
//!
//! # Panes that close, agents that start and leave
//!
//! tmux says nothing about a pane closing except that the layout changed,
//! which makes the tracker re-read the server and publish a snapshot; nor
//! about a command starting in a pane, except (with `automatic-rename`, on
//! by default) that the window was renamed after it, which does the same.
//! On each snapshot the keeper lists the server's panes once, with their
//! foreground command ([`super::process`]): it marks the known panes that
//! are gone `exited` (and forgets them, their options having gone with
//! them), puts a pane whose process is an agent on the board (`unknown`,
//! for the activity fallback to read), and marks `exited` an agent seen
//! only that way whose pane is back at its shell. Snapshots come only when
//! tmux changed something, and one that comes while a listing is under way
//! waits for it (the watch keeps only the latest): an idle server costs
//! nothing, a burst one listing at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::model::{AgentStatus, Board, Change, Observation, Outcome, Source};
use super::process::{self, PaneProcess, ProcessNames};
use crate::control::command::{Command, CommandError};
use crate::control::connection::{ControlError, ControlHandle};
use crate::control::{PaneId, SessionId};
use crate::schema;
use crate::state::event::AgentChange;
use crate::state::{EventKind, LifecycleEvent, Model};

/// How many observations may wait for the keeper. Hooks come a few per
/// second per agent at most; this only absorbs a burst.
pub const OBSERVATION_BACKLOG: usize = 1024;

/// How many changes a slow listener (`watch`) may fall behind before it
/// loses the oldest (it is told how many, by `broadcast`'s `Lagged`).
const CHANGE_BACKLOG: usize = 1024;

/// A cloneable way in to the keeper (see the module doc).
#[derive(Debug, Clone)]
pub struct ObservationSender {
    queue: mpsc::Sender<Observation>,
}

impl ObservationSender {
    /// Hands one observation to the keeper, without waiting. `false` if it
    /// was dropped (the queue was full, or the keeper has stopped); the
    /// reason is logged.
    pub fn observe(&self, observation: Observation) -> bool {
        match self.queue.try_send(observation) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(observation)) => {
                tracing::warn!(pane = %observation.pane, status = %observation.status, "the status keeper is behind; an observation was dropped");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// What the daemon keeps of the keeper: the way in, the board, the changes.
#[derive(Debug, Clone)]
pub struct KeeperHandle {
    sender: ObservationSender,
    board: watch::Receiver<Arc<Board>>,
    changes: broadcast::Sender<Change>,
}

impl KeeperHandle {
    /// The way in for observers.
    pub fn sender(&self) -> ObservationSender {
        self.sender.clone()
    }

    /// The board as of the last observation.
    pub fn board(&self) -> Arc<Board> {
        self.board.borrow().clone()
    }

    /// The board as a watch, for the tasks that follow which panes run
    /// agents (the activity fallback, `super::activity`).
    pub fn boards(&self) -> watch::Receiver<Arc<Board>> {
        self.board.clone()
    }

    /// Every status change from now on.
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

/// Starts the keeper on the daemon's connection; it runs until `stop` is
/// cancelled. `snapshots` are the tracker's (see "Panes that close").
pub fn spawn(
    control: ControlHandle,
    names: ProcessNames,
    snapshots: watch::Receiver<Model>,
    stop: CancellationToken,
) -> (KeeperHandle, JoinHandle<()>) {
    let (queue, observations) = mpsc::channel(OBSERVATION_BACKLOG);
    let (board_tx, board) = watch::channel(Arc::new(Board::new()));
    let (changes, _) = broadcast::channel(CHANGE_BACKLOG);
    let keeper = Keeper {
        control,
        names,
        board: Board::new(),
        published: board_tx,
        changes: changes.clone(),
    };
    let task = tokio::spawn(keeper.run(observations, snapshots, stop));
    let handle = KeeperHandle {
        sender: ObservationSender { queue },
        board,
        changes,
    };
    (handle, task)
}

struct Keeper {
    control: ControlHandle,
    /// Which processes are agents (see [`super::process`]).
    names: ProcessNames,
    board: Board,
    published: watch::Sender<Arc<Board>>,
    changes: broadcast::Sender<Change>,
}

impl Keeper {
    async fn run(
        mut self,
        mut observations: mpsc::Receiver<Observation>,
        snapshots: watch::Receiver<Model>,
        stop: CancellationToken,
    ) {
        let mut snapshots = Some(snapshots);
        self.adopt().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                observation = observations.recv() => {
                    let Some(observation) = observation else { return };
                    self.observe(observation).await;
                }
                changed = next_snapshot(&mut snapshots) => {
                    if !changed {
                        // The tracker is gone; observations still count.
                        snapshots = None;
                        continue;
                    }
                    if self.board.panes().next().is_some() {
                        let closed = self.closed_sessions(snapshots.as_ref());
                        for session in closed {
                            // Its options went with it; its agents' end is
                            // the session's close, not an agent event.
                            let outcome = self.board.forget_session(session);
                            self.write_shared(&outcome).await;
                        }
                    }
                    self.check_panes().await;
                }
            }
        }
    }

    /// Takes over what the pane options say (a previous daemon's board, or
    /// hooks that ran without a daemon), so a restart keeps the agents it
    /// knew; then writes the aggregates and the waiting count, `0` too,
    /// so the status line has a value from the start. An adopted status
    /// counts as a hook's from its `@agent-since`: the options hold only
    /// what the merge rule let through.
    async fn adopt(&mut self) {
        let Ok(command) = Command::list_all_panes(super::panes::FORMAT) else {
            return;
        };
        let listing = match self.control.run(command).await {
            Ok(reply) => reply.text(),
            Err(err) => {
                tracing::debug!(%err, "could not read the panes' agent options");
                String::new()
            }
        };
        let mut outcome = Outcome::default();
        for found in super::panes::parse(&listing) {
            let at = found
                .since
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .unwrap_or_else(Utc::now);
            let kind = found.kind.as_deref().map(super::model::AgentKind::named);
            let observation = Observation::new(found.pane, kind, found.status, Source::Hook, at);
            if let Ok(applied) = self.board.apply(observation) {
                outcome = merge(outcome, applied);
            }
            outcome = merge(outcome, self.board.place(found.pane, found.session_id));
        }
        outcome.waiting = Some(self.board.waiting_count());
        outcome.change = None;
        self.write_shared(&outcome).await;
        self.published.send_replace(Arc::new(self.board.clone()));
        if self.board.panes().next().is_some() {
            tracing::info!(
                agents = self.board.panes().count(),
                "took over the agents the pane options show"
            );
        }
    }

    /// The sessions the board places panes in that the tracker's latest
    /// snapshot no longer has.
    fn closed_sessions(&self, snapshots: Option<&watch::Receiver<Model>>) -> Vec<SessionId> {
        let Some(snapshots) = snapshots else {
            return Vec::new();
        };
        let model = snapshots.borrow();
        let mut closed: Vec<SessionId> = self
            .board
            .panes()
            .filter_map(|agent| agent.session)
            .filter(|session| model.session(*session).is_none())
            .collect();
        closed.sort();
        closed.dedup();
        closed
    }

    async fn observe(&mut self, observation: Observation) {
        self.observe_in(observation, None).await;
    }

    /// [`Self::observe`], with the pane's session when the caller has just
    /// read it from tmux (a pane listing): then tmux is not asked again.
    async fn observe_in(&mut self, observation: Observation, listed: Option<SessionId>) {
        let pane = observation.pane;
        let mut outcome = Outcome::default();
        let placed = self.board.pane(pane).and_then(|agent| agent.session);
        let session = match placed.or(listed) {
            Some(session) => Some(session),
            None => match self.session_of(pane).await {
                Ok(session) => session,
                Err(err) => {
                    tracing::warn!(%pane, %err, "could not ask tmux which session a pane is in");
                    None
                }
            },
        };
        if session.is_none() && observation.status != AgentStatus::Exited {
            tracing::info!(%pane, status = %observation.status, source = %observation.source, "an agent status for a pane that does not exist; ignored");
            return;
        }
        let status = observation.status;
        match self.board.apply(observation) {
            Ok(applied) => outcome = merge(outcome, applied),
            Err(why) => {
                tracing::debug!(%pane, %status, ?why, "an agent status not applied");
                return;
            }
        }
        if placed.is_none()
            && let Some(session) = session
        {
            outcome = merge(outcome, self.board.place(pane, session));
            if let Some(change) = &mut outcome.change {
                change.session = Some(session);
            }
        }
        self.write(pane, outcome).await;
    }

    /// Lists the server's panes; marks the known ones that are gone
    /// `exited`, and forgets them; follows the agents their processes show
    /// (see the module doc).
    async fn check_panes(&mut self) {
        let listed = match self.live_panes().await {
            Ok(listed) => listed,
            Err(err) => {
                tracing::debug!(%err, "could not list panes");
                return;
            }
        };
        let live: BTreeMap<PaneId, SessionId> =
            listed.iter().map(|p| (p.pane, p.session)).collect();
        self.follow_processes(&listed).await;
        let gone: Vec<PaneId> = self
            .board
            .panes()
            .map(|agent| agent.pane)
            .filter(|pane| !live.contains_key(pane))
            .collect();
        for pane in gone {
            let exited =
                Observation::new(pane, None, AgentStatus::Exited, Source::Process, Utc::now());
            let mut outcome = match self.board.apply(exited) {
                Ok(outcome) => outcome,
                Err(_) => continue,
            };
            // The pane's options went with it: only what it changed
            // elsewhere is written.
            let change = outcome.change.take();
            outcome = merge(outcome, self.board.forget(pane));
            self.write_shared(&outcome).await;
            self.publish(change);
        }
        // Panes moved to another session (`join-pane`, `break-pane`).
        let moved: Vec<(PaneId, SessionId)> = self
            .board
            .panes()
            .filter_map(|agent| {
                let now = *live.get(&agent.pane)?;
                (agent.session != Some(now)).then_some((agent.pane, now))
            })
            .collect();
        for (pane, session) in moved {
            let outcome = self.board.place(pane, session);
            self.write_shared(&outcome).await;
        }
        self.published.send_replace(Arc::new(self.board.clone()));
    }

    async fn session_of(&self, pane: PaneId) -> Result<Option<SessionId>, ControlError> {
        // Infallible: a fixed format.
        let Ok(command) = Command::display_message(pane, "#{session_id}") else {
            return Ok(None);
        };
        match self.control.run(command).await {
            Ok(reply) => Ok(reply.text().trim().parse().ok()),
            // tmux: "can't find pane: %9".
            Err(ControlError::Command { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn live_panes(&self) -> Result<Vec<PaneProcess>, ControlError> {
        // Infallible: a fixed format.
        let Ok(command) = Command::list_all_panes(process::FORMAT) else {
            return Ok(Vec::new());
        };
        let reply = self.control.run(command).await?;
        Ok(process::parse(&reply.text()))
    }

    /// Puts on the board the panes whose process is an agent it does not
    /// follow yet, and follows the agents it knows only from their process
    /// (no hook ever spoke for them): `exited` when the pane runs something
    /// else, back on when the agent runs there again. A hooked agent is left
    /// to its hooks: its process may go by another name (`node`, a
    /// wrapper), and it may linger a moment after its `SessionEnd`.
    async fn follow_processes(&mut self, listed: &[PaneProcess]) {
        let now = Utc::now();
        for pane in listed {
            let agent = self.names.agent_of(pane);
            let known = self.board.pane(pane.pane);
            // Known only from its process: no hook ever spoke for it.
            let unhooked = known.map(|k| (k.last_hook.is_none(), k.status));
            let observation = match (agent, unhooked) {
                // New, or back in a pane its process had left.
                (Some(kind), None | Some((true, AgentStatus::Exited))) => {
                    tracing::info!(pane = %pane.pane, agent = %kind.as_str(), "an agent started in a pane (its process)");
                    Observation::new(
                        pane.pane,
                        Some(kind),
                        AgentStatus::Unknown,
                        Source::Process,
                        now,
                    )
                }
                (None, Some((true, status))) if status != AgentStatus::Exited => {
                    tracing::info!(pane = %pane.pane, command = %pane.command, "an agent seen by its process left its pane");
                    Observation::new(pane.pane, None, AgentStatus::Exited, Source::Process, now)
                }
                _ => continue,
            };
            self.observe_in(observation, Some(pane.session)).await;
        }
    }

    /// Writes what `outcome` changed for `pane` and elsewhere, then
    /// publishes.
    async fn write(&mut self, pane: PaneId, mut outcome: Outcome) {
        if outcome.is_empty() {
            return;
        }
        if (outcome.change.is_some() || outcome.details_changed)
            && let Some(agent) = self.board.pane(pane)
        {
            let mut commands = vec![
                Command::set_pane_option(pane, schema::pane::STATUS, agent.status.as_str()),
                Command::set_pane_option(
                    pane,
                    schema::pane::SINCE,
                    &agent.since.timestamp().to_string(),
                ),
            ];
            if let Some(kind) = &agent.kind {
                commands.push(Command::set_pane_option(
                    pane,
                    schema::pane::KIND,
                    kind.as_str(),
                ));
            }
            if let Some(id) = &agent.agent_session_id {
                commands.push(Command::set_pane_option(pane, schema::pane::SESSION_ID, id));
            }
            if let Some(path) = &agent.transcript_path {
                commands.push(Command::set_pane_option(
                    pane,
                    schema::pane::TRANSCRIPT,
                    &path.to_string_lossy(),
                ));
            }
            self.run_all(commands).await;
        }
        self.write_shared(&outcome).await;
        self.publish(outcome.change.take());
    }

    /// Writes the session aggregates and the waiting count `outcome` changed.
    async fn write_shared(&self, outcome: &Outcome) {
        let mut commands = Vec::new();
        for (session, status) in &outcome.sessions {
            commands.push(match status {
                Some(status) => {
                    Command::set_option(*session, schema::session::AGENT_STATUS, status.as_str())
                }
                None => Command::unset_option(*session, schema::session::AGENT_STATUS),
            });
        }
        if let Some(waiting) = outcome.waiting {
            commands.push(Command::set_global_option(
                schema::global::WAITING,
                &waiting.to_string(),
            ));
        }
        self.run_all(commands).await;
    }

    /// Queues every command before waiting for any (they run in order), so
    /// one observation costs one round trip.
    async fn run_all(&self, commands: Vec<Result<Command, CommandError>>) {
        let mut replies = Vec::with_capacity(commands.len());
        for command in commands {
            match command {
                Ok(command) => match self.control.queue(command).await {
                    Ok(reply) => replies.push(reply),
                    Err(err) => {
                        tracing::warn!(%err, "could not write an agent status option");
                        return;
                    }
                },
                // Only a NUL in an agent's session id or path gets here.
                Err(err) => tracing::warn!(%err, "an agent status option not written"),
            }
        }
        for reply in replies {
            match reply.await {
                Ok(Ok(_)) => {}
                // A pane or session closed meanwhile.
                Ok(Err(err)) => tracing::debug!(%err, "an agent status option not written"),
                Err(_) => tracing::debug!("the connection closed before an option was written"),
            }
        }
    }

    fn publish(&self, change: Option<Change>) {
        self.published.send_replace(Arc::new(self.board.clone()));
        if let Some(change) = change {
            tracing::info!(pane = %change.pane, session = ?change.session, old = ?change.old, new = %change.new, source = %change.source, "agent status");
            // Nobody listening is fine.
            let _ = self.changes.send(change);
        }
    }
}

/// Passes each status change on to the reactor as an `agent-*` lifecycle
/// event (`[[on.agent-waiting]]`, …), named with the session's name from
/// the tracker's latest snapshot, until `stop`. A change for a pane not
/// placed in a session, or to `unknown`, has no event.
pub async fn forward_to_reactor(
    mut changes: broadcast::Receiver<Change>,
    snapshots: watch::Receiver<Model>,
    reactor: mpsc::Sender<LifecycleEvent>,
    stop: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            () = stop.cancelled() => return,
            change = changes.recv() => change,
        };
        let change = match change {
            Ok(change) => change,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "agent status events were dropped before the reactor saw them"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(event) = lifecycle_event(&change, &snapshots.borrow()) else {
            continue;
        };
        if reactor.send(event).await.is_err() {
            return;
        }
    }
}

/// The lifecycle event of a status change, if it has one.
pub fn lifecycle_event(change: &Change, model: &Model) -> Option<LifecycleEvent> {
    let kind = EventKind::of_agent_status(change.new)?;
    let session_id = change.session?;
    let session = model.session(session_id)?;
    Some(LifecycleEvent {
        kind,
        session_id,
        session: session.info.name.clone(),
        time: change.since,
        client: None,
        old_name: None,
        session_created: Some(session.info.created),
        late: false,
        // Made from the keeper's board, not a listing: the reactor reads
        // the session's options if it needs them.
        options: None,
        agent: Some(AgentChange {
            pane: change.pane,
            agent: change.kind.clone(),
            old_status: change.old,
            status: change.new,
            source: change.source,
        }),
    })
}

/// Waits for the tracker's next snapshot: `false` once it has gone, and
/// forever after that.
async fn next_snapshot(snapshots: &mut Option<watch::Receiver<Model>>) -> bool {
    match snapshots {
        Some(snapshots) => snapshots.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// One outcome from two steps on the board.
fn merge(mut first: Outcome, second: Outcome) -> Outcome {
    if second.change.is_some() {
        first.change = second.change;
    }
    first.details_changed |= second.details_changed;
    for (session, status) in second.sessions {
        first.sessions.retain(|(s, _)| *s != session);
        first.sessions.push((session, status));
    }
    if second.waiting.is_some() {
        first.waiting = second.waiting;
    }
    first
}
