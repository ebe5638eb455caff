//! The reactor: lifecycle events become MCP calls that are never lost.
//!
//! One task turns each event into actions (`agent::decide` says which,
//! `agent::vars` fills in their values) and commits them to the outbox;
//! [`dispatch`](super::dispatch) sends them, one task per MCP server. The
//! tracker only hands events over a channel, so a slow or dead MCP server
//! delays nothing on the control connection: the outbox absorbs it.
//!
//! This file is the task loop: events in, the sessions that exist at start
//! adopted, the checkpoint timer, settings reloads, and the CLI's save
//! requests ([`ReactorCommand`]).
//!
//! What the daemon shows in tmux, all set by `$id`:
//! `@agent-goal-id` (kept from the register call), `@agent-state`
//! (`active`, `detached`, `saving`, `error: <reason>`), `@agent-saved` (time
//! of the last successful save) on the session; `@agent-pending` (actions not
//! yet delivered) globally.
//!
//! The settings come through a `watch` channel: a reload takes effect for
//! the next event, and a dispatcher starts for every newly named MCP server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::context::{self, SessionContext};
use super::decide::{self, Decision};
use super::dispatch::{Dispatchers, ToolCaller, set_session_option};
use super::identity::{IDENTITY_FORMAT, ServerIdentity, SessionKey};
use super::journal::{self, Journal, JournalChange, JournalEntry, Listed};
use super::outbox::{Batch, FirstSight, OutboxError, SharedOutbox};
use super::pending::PendingGauge;
use super::settings::ReactorSettings;
use super::trigger::Trigger;
use super::vars::{self, Memo};
use crate::control::SessionId;
use crate::control::command::Command;
use crate::control::connection::{ControlError, ControlHandle};
use crate::control::options::parse_options;
use crate::schema::{self, AgentState};
use crate::sessions::snapshot::PendingRestore;
use crate::state::{EventKind, LifecycleEvent, Model};

/// What the reactor receives.
#[derive(Debug)]
pub struct Inputs {
    /// The settings in force; a new value applies from the next event.
    pub settings: watch::Receiver<Arc<ReactorSettings>>,
    /// The tracker's lifecycle events, in order. The reactor runs until
    /// this closes (or shutdown).
    pub events: mpsc::Receiver<LifecycleEvent>,
    /// Requests from the CLI, through the daemon.
    pub commands: mpsc::Receiver<ReactorCommand>,
    /// Counts the dispatchers restarted after a panic (`status`).
    pub restarts: crate::supervise::Restarts,
    /// Where every event acted on (live or late) is published, for `watch`.
    pub published: crate::events::EventStream,
    /// Where `@agent-pending` is told the count moved (the daemon's one).
    pub pending: PendingGauge,
}

/// A request to the reactor.
#[derive(Debug)]
pub enum ReactorCommand {
    /// Save the session's context now: its `checkpoint` actions (or, when
    /// the config has none, the `session-detached` actions that carry the
    /// context: `{context}` or `{observations}`), committed at save
    /// priority under the trigger [`Trigger::Save`]. Answers with the
    /// idempotency keys of the actions committed, or why nothing was.
    Save {
        session: SessionId,
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
}

/// Errors that stop the reactor.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("reading the tmux server's identity: {0}")]
    Control(#[from] ControlError),
    #[error(transparent)]
    Command(#[from] crate::control::command::CommandError),
}

/// The most events one group commit takes: the events already waiting
/// when one arrives join its transaction (none is ever waited for), up to
/// this, so a long burst still commits, and wakes the dispatchers, every
/// so often.
const GROUP_MAX: usize = 256;

/// How often the journal records that a daemon still watches, when no
/// event does: the bound on how wrong the next daemon's "away for" is.
const JOURNAL_HEARTBEAT: Duration = Duration::from_secs(10);

/// The checkpoint timer of `settings`, if they ask for checkpoints. Its
/// first tick is one interval away (`interval` would tick at once): a
/// daemon that starts, or a reload, must not save every attached session
/// right then, and "every N" means N after start too.
fn checkpoint_timer(settings: &ReactorSettings) -> Option<tokio::time::Interval> {
    settings.checkpoint_interval.map(|every| {
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    })
}

/// Makes the reactor panic once, on the first event it handles, for the
/// test that it is restarted (`tests/it/reactor.rs`); never set outside
/// tests.
pub const FAULT_PANIC_ONCE_ENV: &str = "TMUX_AGENT_FAULT_REACTOR_PANIC_ONCE";

/// Runs the reactor until `events` closes or `shutdown` fires.
///
/// `model` is the tracker's picture at start: sessions that exist but have
/// no actions in the outbox yet are registered as if just created, so
/// starting the daemon on a busy server tracks everything.
///
/// The inputs are borrowed, not taken: a run that panicked leaves them to
/// the next (the daemon supervises the reactor, see `daemon::reacting`).
/// Calls a previous daemon left in flight are the caller's to recover,
/// once, before the first run: a later run must not re-send the calls the
/// dispatchers of the run before it still have in flight.
pub async fn run<C: ToolCaller>(
    inputs: &mut Inputs,
    control: ControlHandle,
    outbox: SharedOutbox,
    caller: Arc<C>,
    model: Model,
    shutdown: CancellationToken,
) -> Result<(), ReactorError> {
    let Inputs {
        settings: settings_rx,
        events,
        commands,
        restarts,
        published,
        pending,
    } = inputs;
    let settings = settings_rx.borrow_and_update().clone();
    let identity = server_identity(&control, model.sidecar()).await?;
    let dispatchers = Dispatchers::new(
        control.clone(),
        outbox.clone(),
        caller,
        identity.clone(),
        shutdown.clone(),
        restarts.clone(),
        pending.clone(),
    );
    let servers = settings.named_servers();
    let mut reactor = Reactor {
        settings,
        control,
        outbox,
        identity,
        dispatchers,
        memos: HashMap::new(),
        sequence: 0,
        published: published.clone(),
        staged: Staged::default(),
    };
    // Adopt the existing sessions before any dispatcher runs, so
    // `@agent-pending` only reaches 0 once their registrations are done
    // (a dispatcher racing the adoption would show 0 in between).
    let marks = reactor.adopt(&model).await;
    reactor.dispatchers.start(&servers);
    reactor.dispatchers.pending().moved();
    tokio::spawn(mark_found(reactor.control.clone(), marks));

    let mut checkpoints = checkpoint_timer(&reactor.settings);
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + JOURNAL_HEARTBEAT,
        JOURNAL_HEARTBEAT,
    );
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut settings_open, mut commands_open) = (true, true);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    reactor.on_event(event).await;
                    // Group commit: what is already waiting joins this
                    // event's transaction; nothing is waited for.
                    for _ in 1..GROUP_MAX {
                        let Ok(event) = events.try_recv() else { break };
                        reactor.on_event(event).await;
                    }
                    // A failure is logged and shown by `flush`.
                    let _ = reactor.flush().await;
                }
                None => break,
            },
            changed = settings_rx.changed(), if settings_open => match changed {
                Ok(()) => {
                    let settings = settings_rx.borrow_and_update().clone();
                    let servers = settings.named_servers();
                    reactor.dispatchers.start(&servers);
                    if settings.checkpoint_interval != reactor.settings.checkpoint_interval {
                        checkpoints = checkpoint_timer(&settings);
                    }
                    tracing::info!(?servers, "reactor settings reloaded");
                    reactor.settings = settings;
                }
                // The daemon keeps the sender while it runs; without it
                // the last settings stay.
                Err(_) => settings_open = false,
            },
            command = commands.recv(), if commands_open => match command {
                Some(ReactorCommand::Save { session, reply }) => {
                    let saved = match reactor.save(session).await {
                        Ok(keys) => reactor.flush().await.map(|()| keys),
                        Err(err) => Err(err),
                    };
                    let _ = reply.send(saved);
                }
                None => commands_open = false,
            },
            _ = async { checkpoints.as_mut().expect("guarded").tick().await }, if checkpoints.is_some() => {
                reactor.checkpoint().await;
                let _ = reactor.flush().await;
            }
            _ = heartbeat.tick() => {
                reactor.heartbeat(vec![JournalChange::Seen(reactor.identity.clone())]).await;
            }
            () = shutdown.cancelled() => break,
        }
    }
    // The events have ended (the server or the daemon is going): deliver
    // what is due while the caller's grace lasts, then stop the dispatchers.
    reactor.dispatchers.stop().await;
    Ok(())
}

/// The reactor task's state.
struct Reactor<C> {
    settings: Arc<ReactorSettings>,
    control: ControlHandle,
    /// Shared with the dispatchers and the daemon's status and save hooks.
    outbox: SharedOutbox,
    identity: ServerIdentity,
    dispatchers: Dispatchers<C>,
    memos: HashMap<SessionId, Memo>,
    /// Makes idempotency keys unique among events of the same millisecond.
    sequence: u64,
    published: crate::events::EventStream,
    /// Decided and not yet committed: see [`Reactor::flush`].
    staged: Staged,
}

/// The actions and journal changes of the events in hand, committed
/// together by [`Reactor::flush`].
#[derive(Default)]
struct Staged {
    batch: Batch,
    /// The sessions with actions in the batch, and their trigger: marked in
    /// error if the commit fails.
    sessions: Vec<(SessionId, Trigger)>,
}

impl<C: ToolCaller> Reactor<C> {
    /// Takes over the sessions that exist at start: diffs the journal
    /// against the tracker's first listing and acts on what happened while
    /// no daemon watched (see [`journal`](super::journal)), marked late;
    /// sessions the journal does not know are registered as if just
    /// created (unless an outbox from before the journal already has their
    /// calls). Ends by journaling every session as it now is.
    ///
    /// Returns the `@agent-state` marks of the sessions the daemon has never
    /// marked, for [`mark_found`] to write once their calls are committed.
    async fn adopt(&mut self, model: &Model) -> Vec<(SessionId, AgentState)> {
        let mut marks = Vec::new();
        let journal = match self.outbox.run(|outbox| outbox.journal()).await {
            Ok(journal) => journal,
            Err(err) => {
                tracing::error!(%err, "the journal cannot be read: what happened while no daemon ran is not known");
                Journal::default()
            }
        };
        let listing: Vec<Listed> = model
            .sessions()
            .map(|s| Listed {
                id: s.info.id,
                name: s.info.name.clone(),
                created: s.info.created,
                attached: s.is_attached(),
            })
            .collect();
        let now = Utc::now();
        let gap = journal::diff(&journal, &self.identity, &listing, now);
        if let Some(mark) = &journal.server {
            let away = Duration::from_millis(
                u64::try_from(now.timestamp_millis() - mark.seen_at).unwrap_or(0),
            );
            tracing::info!(
                away_secs = away.as_secs(),
                server_restarted = gap.restarted,
                closed = gap.closed.len(),
                changed = gap.changed.len(),
                new = gap.unknown.len(),
                "no daemon watched this server for a while: acting on what happened meanwhile"
            );
        }

        // Gone first: after a server restart their `$id`s may name the new
        // server's sessions, whose memos come next.
        for entry in &gap.closed {
            let event = journal::closed_event(entry, now);
            tracing::info!(session_id = %entry.session_id, session = %entry.name, "a session closed while no daemon watched");
            self.memos.insert(entry.session_id, entry.memo());
            let key = SessionKey::stored(entry.session_key.clone());
            self.act(event, key).await;
        }

        let entries: HashMap<&str, &JournalEntry> = journal
            .entries
            .iter()
            .map(|e| (e.session_key.as_str(), e))
            .collect();
        let mut journaled = Vec::new();
        let unjournaled: Vec<(String, String)> = model
            .sessions()
            .filter(|session| {
                let id = session.info.id;
                let key = self.identity.session_key(id);
                !entries.contains_key(key.as_str()) || gap.unknown.contains(&id)
            })
            .map(|session| {
                let key = self.identity.session_key(session.info.id);
                (key.to_string(), session.info.name.clone())
            })
            .collect();
        if !unjournaled.is_empty() {
            // Their registrations are moments away: the servers they go to
            // connect meanwhile, not after the commit.
            for spec in self
                .settings
                .actions
                .get(&Trigger::SessionCreated)
                .into_iter()
                .flatten()
            {
                self.dispatchers.expect_calls(&spec.server);
            }
        }
        let keys: Vec<String> = unjournaled.iter().map(|(key, _)| key.clone()).collect();
        let now_ms = now.timestamp_millis();
        let seen = self
            .outbox
            .run(move |outbox| outbox.first_sight(&unjournaled, now_ms))
            .await
            .unwrap_or_else(|err| {
                // As before a journal: each of them counts as known, so
                // nothing is registered twice; they are journaled as they are.
                tracing::warn!(%err, "could not read the outbox's history: sessions found are journaled as they are");
                Vec::new()
            });
        let mut first_sight: HashMap<String, FirstSight> = keys.into_iter().zip(seen).collect();
        let mut found = 0usize;
        for session in model.sessions() {
            let id = session.info.id;
            let key = self.identity.session_key(id);
            let entry = entries
                .get(key.as_str())
                .filter(|_| gap.unknown.iter().all(|u| *u != id));
            let mut memo = Memo {
                name: session.info.name.clone(),
                created: session.info.created,
                attached: session.is_attached(),
                ..Memo::default()
            };
            if let Some(entry) = entry {
                // A save left by the last daemon, decided before its last
                // event, must not undo that event's state either.
                self.dispatchers.stamps().set_by_event(id, entry.changed_at);
                // What the last daemon believed: the late events below
                // bring it up to date, as live ones would have.
                memo = Memo {
                    created: session.info.created,
                    ..entry.memo()
                };
            }
            memo.options = self
                .options_of(id, session.info.options.as_ref())
                .await
                .unwrap_or_default();
            // A session the daemon has never marked gets its state; one it
            // marked before a restart (an error, say) keeps it.
            if !memo.options.contains_key(schema::session::STATE) {
                let state = if session.is_attached() {
                    AgentState::Active
                } else {
                    AgentState::Detached
                };
                marks.push((id, state));
            }
            self.memos.insert(id, memo);
            if entry.is_some() {
                continue;
            }
            let restore = match first_sight.remove(key.as_str()) {
                Some(FirstSight::New(restore)) => restore,
                Some(FirstSight::Known) | None => {
                    // An outbox from before the journal: journal it as it is.
                    journaled.push(id);
                    continue;
                }
            };
            found += 1;
            tracing::debug!(session_id = %id, session = %session.info.name, "tracking a session that existed before the daemon");
            let mut event = LifecycleEvent {
                kind: EventKind::SessionCreated,
                session_id: id,
                session: session.info.name.clone(),
                time: now,
                client: None,
                old_name: None,
                session_created: Some(session.info.created),
                // Late when a daemon watched this server before: it was
                // created while none did.
                late: journal.server.is_some(),
                options: None,
                agent: None,
            };
            if let Some(pending) = restore {
                self.restore_note(&mut event, &key, pending);
            }
            // Shown to followers only when it happened while no daemon
            // watched (a first daemon's sessions were simply there), or
            // when it is a restore.
            if event.late || event.kind == EventKind::SessionRestored {
                self.publish(&event);
            }
            let decision = decide::on_trigger(&self.settings.actions, event.kind.into());
            let memo = self.memos.get(&id).cloned().unwrap_or_default();
            let changes = self
                .journal_change(&event, key.as_str(), &memo)
                .into_iter()
                .collect();
            self.stage(&event, decision.as_ref(), &memo, &key, None, changes);
        }
        if found > 0 {
            // One line, not one per session: a start-up on thousands.
            tracing::info!(
                sessions = found,
                "tracking sessions that existed before the daemon"
            );
        }
        for mut event in gap.changed {
            tracing::info!(session_id = %event.session_id, session = %event.session, event = %event.kind, "a session changed while no daemon watched");
            // The listing read its options: no `show-options` for it.
            event.options = model
                .session(event.session_id)
                .and_then(|s| s.info.options.clone());
            let key = self.identity.session_key(event.session_id);
            self.act(event, key).await;
        }
        // The journal now says what the model says, for the next daemon.
        let mut changes: Vec<JournalChange> = journaled
            .into_iter()
            .filter_map(|id| {
                let memo = self.memos.get(&id)?;
                let key = self.identity.session_key(id);
                Some(JournalChange::Session(Box::new(JournalEntry::of(
                    key.as_str(),
                    id,
                    memo,
                    now.timestamp_millis(),
                ))))
            })
            .collect();
        changes.push(JournalChange::Seen(self.identity.clone()));
        self.heartbeat(changes).await;
        marks
    }

    /// Records that a daemon watches this server, now (with `changes`):
    /// the next daemon's log says how long it was away.
    async fn heartbeat(&mut self, changes: Vec<JournalChange>) {
        self.staged.batch.changes.extend(changes);
        let _ = self.flush().await;
    }

    /// Commits what is staged in one transaction (a group commit: every
    /// event in hand, with its journal rows), then wakes the dispatchers of
    /// the servers it has calls for and publishes `@agent-pending`. A
    /// failed commit loses the batch's actions, which is said in the log
    /// and in each session's `@agent-state`.
    async fn flush(&mut self) -> Result<(), String> {
        let Staged { batch, sessions } = std::mem::take(&mut self.staged);
        if batch.is_empty() {
            return Ok(());
        }
        let servers: HashSet<String> = batch.actions.iter().map(|a| a.server.clone()).collect();
        let now = Utc::now().timestamp_millis();
        let calls = !batch.actions.is_empty();
        let result = self
            .outbox
            .run(move |outbox| outbox.commit(&batch, now))
            .await;
        let outcome = match result {
            Ok(_) => {
                for server in &servers {
                    self.dispatchers.wake(server);
                }
                Ok(())
            }
            Err(err) if sessions.is_empty() => {
                tracing::warn!(%err, "could not write the journal");
                Err(format!("could not write the journal: {err}"))
            }
            Err(err) => {
                for (id, trigger) in &sessions {
                    tracing::error!(%err, session_id = %id, %trigger, "could not commit actions: they are lost");
                    self.set_state(*id, AgentState::error(&err.to_string()))
                        .await;
                }
                Err(format!("could not commit the actions: {err}"))
            }
        };
        if calls {
            self.dispatchers.pending().moved();
        }
        outcome
    }

    /// Tells the daemon's followers (`watch`) about an event acted on.
    fn publish(&self, event: &LifecycleEvent) {
        self.published
            .publish(crate::events::DaemonEvent::Lifecycle(event.clone()));
    }

    async fn on_event(&mut self, event: LifecycleEvent) {
        crate::fault::panic_once(FAULT_PANIC_ONCE_ENV, "the reactor");
        let key = self.identity.session_key(event.session_id);
        self.act(event, key).await;
    }

    /// Acts on one event of the session `key`: the memo, `@agent-state`,
    /// the context capture, then the actions committed with the journal's
    /// change, in one transaction.
    async fn act(&mut self, mut event: LifecycleEvent, key: SessionKey) {
        self.restored(&mut event, &key).await;
        self.publish(&event);
        let id = event.session_id;
        match event.kind {
            EventKind::SessionCreated | EventKind::SessionRestored => {
                let mut memo = Memo::from_event(&event);
                memo.options = self
                    .options_of(id, event.options.as_ref())
                    .await
                    .unwrap_or_default();
                self.memos.insert(id, memo);
            }
            EventKind::SessionRenamed => {
                if let Some(memo) = self.memos.get_mut(&id) {
                    memo.name = event.session.clone();
                }
            }
            EventKind::SessionAttached | EventKind::SessionDetached => {
                let options = self.options_of(id, event.options.as_ref()).await;
                if let Some(memo) = self.memos.get_mut(&id) {
                    if let Some(options) = options {
                        memo.options = options;
                    }
                    memo.attached = event.kind == EventKind::SessionAttached;
                }
            }
            EventKind::SessionClosed
            | EventKind::ClientAttached
            | EventKind::ClientDetached
            | EventKind::SessionMissed
            | EventKind::AgentWaiting
            | EventKind::AgentWorking
            | EventKind::AgentIdle
            | EventKind::AgentExited => {}
        }
        if let Some(state) = decide::state_on(event.kind) {
            // Before the write: a save decided earlier and delivered later
            // must not undo it (see `dispatch::StateStamps`).
            self.dispatchers
                .stamps()
                .set_by_event(id, event.time.timestamp_millis());
            self.set_state(id, state).await;
        }
        let decision = decide::on_trigger(&self.settings.actions, event.kind.into());
        let context = match &decision {
            Some(decision) if decision.needs_context() && decide::captures_for(event.kind) => {
                self.capture(id).await
            }
            _ => None,
        };
        let memo = self
            .memos
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Memo::from_event(&event));
        let changes = self
            .journal_change(&event, key.as_str(), &memo)
            .into_iter()
            .collect();
        self.stage(&event, decision.as_ref(), &memo, &key, context, changes);
        if event.kind == EventKind::SessionClosed {
            self.memos.remove(&id);
            self.dispatchers.stamps().forget(id);
        }
    }

    /// Makes the `session-created` of a session `tmux-agent restore` just
    /// made its `session-restored` (see `crate::sessions::restore`): restore
    /// leaves a note under the session's name before creating it, taken
    /// here once; the goal id it had is kept for the new session key, so
    /// the preset brings that goal back rather than registering a new one.
    async fn restored(&mut self, event: &mut LifecycleEvent, key: &SessionKey) {
        if event.kind != EventKind::SessionCreated {
            return;
        }
        let name = event.session.clone();
        let now = Utc::now().timestamp_millis();
        let taken = self
            .outbox
            .run(move |outbox| outbox.take_restore(&name, now))
            .await;
        match taken {
            Ok(Some(pending)) => self.restore_note(event, key, pending),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(%err, session = %event.session, "could not read the restore notes: the session counts as new");
            }
        }
    }

    /// Makes `event` a restore, as its restore note says.
    fn restore_note(
        &mut self,
        event: &mut LifecycleEvent,
        key: &SessionKey,
        pending: PendingRestore,
    ) {
        tracing::info!(session_id = %event.session_id, session = %event.session, snapshot = pending.snapshot_id, goal_id = ?pending.goal_id, "a restored session");
        event.kind = EventKind::SessionRestored;
        let goal_id = match pending.goal_id.as_deref().map(str::trim) {
            Some(id) => id
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(id.to_owned())),
            // The preset's restore_goal registers a new goal for it.
            None => Value::String(String::new()),
        };
        self.staged
            .batch
            .kept
            .push((key.to_string(), "goal_id".to_owned(), goal_id));
    }

    /// What the journal says of the session after `event`; nothing for a
    /// missed session, which was never seen alive (journaled, it would be
    /// closed again, nameless, by the next daemon).
    fn journal_change(
        &self,
        event: &LifecycleEvent,
        key: &str,
        memo: &Memo,
    ) -> Option<JournalChange> {
        match event.kind {
            // An agent's status says nothing the journal keeps.
            kind if kind.is_agent() => None,
            EventKind::SessionMissed => None,
            EventKind::SessionClosed => Some(JournalChange::Closed(key.to_owned())),
            _ => Some(JournalChange::Session(Box::new(JournalEntry::of(
                key,
                event.session_id,
                memo,
                Utc::now().timestamp_millis(),
            )))),
        }
    }

    /// Saves a checkpoint of every attached session.
    async fn checkpoint(&mut self) {
        let Some(decision) = decide::on_trigger(&self.settings.actions, Trigger::Checkpoint) else {
            return;
        };
        let attached: Vec<(SessionId, String, i64)> = self
            .memos
            .iter()
            .filter(|(_, m)| m.attached)
            .map(|(id, m)| (*id, m.name.clone(), m.created))
            .collect();
        for (id, name, created) in attached {
            // `max_pending` bounds each server's own queue: a server that is
            // down and piling up calls loses its checkpoints, not the
            // others' (their calls are separate actions, delivered apart).
            let Some(decision) = self.unbacklogged(id, &decision).await else {
                continue;
            };
            let context = if decision.needs_context() {
                self.capture(id).await
            } else {
                None
            };
            let event = decide::synthetic_event(id, name, created);
            self.stage_save(&event, &decision, context);
        }
    }

    /// `decision` without the calls to servers whose queue is at
    /// `max_pending`, or `None` when no call is left.
    async fn unbacklogged(&self, id: SessionId, decision: &Decision) -> Option<Decision> {
        let servers: Vec<String> = decision.specs.iter().map(|s| s.server.clone()).collect();
        let max_pending = self.settings.max_pending;
        // An indexed count of each server's open actions, not of its history.
        let full: HashSet<String> = self
            .outbox
            .run(move |outbox| {
                servers
                    .into_iter()
                    .filter(|server| {
                        outbox
                            .open_count_for(server)
                            .map(|open| open >= max_pending)
                            .unwrap_or(false)
                    })
                    .collect()
            })
            .await;
        for server in &full {
            tracing::warn!(session_id = %id, %server, max_pending, "queue full: skipping a checkpoint call");
        }
        let specs: Vec<_> = decision
            .specs
            .iter()
            .filter(|s| !full.contains(&s.server))
            .cloned()
            .collect();
        (!specs.is_empty()).then(|| Decision {
            specs,
            ..decision.clone()
        })
    }

    /// A save the CLI asked for (see [`ReactorCommand::Save`]).
    async fn save(&mut self, id: SessionId) -> Result<Vec<String>, String> {
        let Some(memo) = self.memos.get(&id) else {
            return Err(format!(
                "session {id} is not tracked by the daemon (is it tmux-agent's own session, or did it just close?)"
            ));
        };
        let (name, created) = (memo.name.clone(), memo.created);
        let Some(decision) = decide::on_save(&self.settings.actions) else {
            return Err(
                "nothing in the configuration saves a session: add [[on.checkpoint]] actions (or session-detached actions that use {context}); see `tmux-agent config check`"
                    .to_owned(),
            );
        };
        self.refresh_options(id).await;
        let context = if decision.needs_context() {
            self.capture(id).await
        } else {
            None
        };
        let event = decide::synthetic_event(id, name, created);
        Ok(self.stage_save(&event, &decision, context))
    }

    /// Stages a checkpoint's or a save's actions, journaling the context
    /// they captured (what a late close would send).
    fn stage_save(
        &mut self,
        event: &LifecycleEvent,
        decision: &Decision,
        context: Option<SessionContext>,
    ) -> Vec<String> {
        let id = event.session_id;
        let key = self.identity.session_key(id);
        let memo = self
            .memos
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Memo::from_event(event));
        let changes = vec![JournalChange::Session(Box::new(JournalEntry::of(
            key.as_str(),
            id,
            &memo,
            Utc::now().timestamp_millis(),
        )))];
        self.stage(event, Some(decision), &memo, &key, context, changes)
    }

    async fn capture(&mut self, id: SessionId) -> Option<SessionContext> {
        let memo = self.memos.get(&id)?;
        match context::capture(
            &self.control,
            id,
            &memo.name,
            memo.created,
            &self.settings.capture,
        )
        .await
        {
            Ok(context) => {
                if let Some(memo) = self.memos.get_mut(&id) {
                    memo.context = Some(context.clone());
                }
                Some(context)
            }
            Err(err) => {
                tracing::warn!(session_id = %id, %err, "could not capture the session's context; using what was kept");
                None
            }
        }
    }

    /// The session's options: `listed` (what the tracker's listing read
    /// with the event, no tmux round trip), or, when the listing could not
    /// read them, `show-options`.
    async fn options_of(
        &self,
        id: SessionId,
        listed: Option<&BTreeMap<String, String>>,
    ) -> Option<BTreeMap<String, String>> {
        match listed {
            Some(options) => Some(options.clone()),
            None => self.read_options(id).await,
        }
    }

    async fn read_options(&self, id: SessionId) -> Option<BTreeMap<String, String>> {
        let reply = self.control.run(Command::show_options(id)).await.ok()?;
        parse_options(reply.lines.iter().map(|l| l.as_ref()), schema::PREFIX).ok()
    }

    async fn refresh_options(&mut self, id: SessionId) {
        if let Some(options) = self.read_options(id).await
            && let Some(memo) = self.memos.get_mut(&id)
        {
            memo.options = options;
        }
    }

    async fn set_state(&self, id: SessionId, state: AgentState) {
        set_session_option(
            &self.control,
            id,
            schema::session::STATE,
            &state.to_string(),
        )
        .await;
    }

    /// Stages `decision`'s actions for `event` of the session `key`
    /// (remembered as `memo`) with the journal's `changes`, for the next
    /// [`Reactor::flush`] to commit in one transaction; returns the
    /// actions' idempotency keys. Without a decision only the journal is
    /// written.
    fn stage(
        &mut self,
        event: &LifecycleEvent,
        decision: Option<&Decision>,
        memo: &Memo,
        key: &SessionKey,
        context: Option<SessionContext>,
        mut changes: Vec<JournalChange>,
    ) -> Vec<String> {
        let id = event.session_id;
        changes.push(JournalChange::Seen(self.identity.clone()));
        self.staged.batch.changes.extend(changes);
        let Some(decision) = decision else {
            return Vec::new();
        };
        let context = context
            .or_else(|| memo.context.clone())
            .unwrap_or_else(|| vars::minimal_context(id, memo));
        let vars = vars::vars(
            event,
            decision.trigger,
            memo,
            key,
            &context,
            &self.settings,
            &self.identity.host,
        );
        self.sequence += 1;
        let actions = decide::actions(decision, event, key, &vars, self.sequence);
        if matches!(
            decision.trigger,
            Trigger::SessionCreated | Trigger::SessionRestored
        ) {
            // The entity name of memory presets is fixed at creation.
            self.staged.batch.kept.push((
                key.to_string(),
                "created_name".to_owned(),
                Value::String(memo.name.clone()),
            ));
        }
        let keys = actions.iter().map(|a| a.idempotency_key.clone()).collect();
        self.staged.batch.actions.extend(actions);
        self.staged.sessions.push((id, decision.trigger));
        keys
    }
}

/// How many of the start-up's `@agent-state` marks are in tmux's hands at
/// once. Each `set-option` costs tmux a pass over every session and window
/// (`options_push_changes`, 0.3 ms at 500 sessions), and tmux runs a
/// client's queued commands back to back: thousands sent together would
/// keep it from every other client, the user's keys included, for as long
/// as they take. Between two chunks tmux serves the others.
const MARKS_AT_ONCE: usize = 32;

/// Writes the `@agent-state` of the sessions found at start (from
/// [`Reactor::adopt`]), after their calls are committed: a registration is
/// what the start-up is for, and its mark can come a moment later. `-o`
/// sets only an option that is unset: a state set meanwhile (a later
/// event's, a failed call's) is newer and stays.
async fn mark_found(control: ControlHandle, marks: Vec<(SessionId, AgentState)>) {
    for chunk in marks.chunks(MARKS_AT_ONCE) {
        let mut answers = Vec::with_capacity(chunk.len());
        for (id, state) in chunk {
            let Ok(command) =
                Command::set_option_if_unset(*id, schema::session::STATE, &state.to_string())
            else {
                continue;
            };
            match control.queue(command).await {
                Ok(answer) => answers.push(answer),
                Err(_) => return,
            }
        }
        // "already set", or a session gone meanwhile: nothing to do.
        for answer in answers {
            let _ = answer.await;
        }
    }
}

/// The server's host name and start time, which make session keys unique.
async fn server_identity(
    control: &ControlHandle,
    sidecar: SessionId,
) -> Result<ServerIdentity, ReactorError> {
    let reply = control
        .run(Command::display_message(sidecar, IDENTITY_FORMAT)?)
        .await?;
    let text = reply.text();
    // A tmux that printed no tab still gets keys: unique per host only.
    Ok(
        ServerIdentity::parse(&text).unwrap_or_else(|| ServerIdentity {
            host: text.trim().to_owned(),
            start_time: "0".to_owned(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::agent::actions::ActionSpec;
    use crate::agent::fake::ScriptedCaller;
    use crate::agent::outbox::Outbox;
    use crate::mcp::CallError;

    fn spec(tool: &str, args: Value, keep: &[(&str, &str)]) -> ActionSpec {
        ActionSpec {
            server: "srv".into(),
            tool: tool.into(),
            args,
            keep: keep
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// A reactor started on a scripted caller, an in-memory outbox and a
    /// recording control handle, with the ends a test drives.
    struct Started {
        events: mpsc::Sender<LifecycleEvent>,
        commands: mpsc::Sender<ReactorCommand>,
        outbox: SharedOutbox,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), ReactorError>>,
        /// Kept so the settings never read as closed.
        _settings: watch::Sender<Arc<ReactorSettings>>,
        /// Kept so the recording handle has somewhere to write.
        _control: mpsc::UnboundedReceiver<String>,
    }

    fn start(settings: ReactorSettings, caller: &Arc<ScriptedCaller>) -> Started {
        let (control, recorded) = ControlHandle::recording();
        let (settings_tx, settings_rx) = watch::channel(Arc::new(settings));
        let (events_tx, events) = mpsc::channel(16);
        let (commands_tx, commands) = mpsc::channel(4);
        let outbox = SharedOutbox::new(Outbox::in_memory().unwrap());
        let shutdown = CancellationToken::new();
        let (pending, _) = PendingGauge::spawn(control.clone(), outbox.clone(), shutdown.clone());
        let mut inputs = Inputs {
            settings: settings_rx,
            events,
            commands,
            restarts: Default::default(),
            published: Default::default(),
            pending,
        };
        let task = tokio::spawn({
            let (outbox, caller, shutdown) = (outbox.clone(), caller.clone(), shutdown.clone());
            async move {
                let model = Model::new(SessionId(0));
                run(&mut inputs, control, outbox, caller, model, shutdown).await
            }
        });
        Started {
            events: events_tx,
            commands: commands_tx,
            outbox,
            shutdown,
            task,
            _settings: settings_tx,
            _control: recorded,
        }
    }

    fn event(kind: EventKind) -> LifecycleEvent {
        event_of(kind, 1, "work")
    }

    fn event_of(kind: EventKind, id: u32, name: &str) -> LifecycleEvent {
        LifecycleEvent {
            kind,
            session_id: SessionId(id),
            session: name.into(),
            time: Utc::now(),
            client: None,
            old_name: None,
            session_created: Some(1_700_000_000),
            agent: None,
            late: false,
            options: None,
        }
    }

    /// Events in, calls out: from a session's creation to its close, with
    /// a save asked for in between, through the real outbox and
    /// dispatcher, to a scripted caller.
    #[tokio::test]
    async fn a_session_lifetime_becomes_calls_in_order() {
        let actions = [
            (
                Trigger::SessionCreated,
                vec![spec(
                    "register",
                    json!({"name": "{session}"}),
                    &[("goal_id", "$.id")],
                )],
            ),
            (
                Trigger::SessionDetached,
                vec![spec("save", json!({"context": "{context}"}), &[])],
            ),
            (
                Trigger::SessionClosed,
                vec![spec("complete", json!({"id": "{goal_id}"}), &[])],
            ),
        ]
        .into_iter()
        .collect();
        let settings = ReactorSettings {
            actions,
            ..ReactorSettings::default()
        };
        let caller = Arc::new(ScriptedCaller::default());
        caller.answer("srv", "register", Ok(json!({"id": "g-1"})));
        let Started {
            events: events_tx,
            commands: commands_tx,
            outbox,
            task: reactor,
            _settings,
            _control,
            ..
        } = start(settings, &caller);

        events_tx
            .send(event(EventKind::SessionCreated))
            .await
            .unwrap();
        // The reactor takes events and commands in either order: wait until
        // the creation has been acted on.
        tokio::time::timeout(Duration::from_secs(10), async {
            while caller.calls().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the registration never went out");
        // A save the CLI asks for sends the detach's save, recorded as `save`.
        let (reply, answer) = oneshot::channel();
        commands_tx
            .send(ReactorCommand::Save {
                session: "$1".parse().unwrap(),
                reply,
            })
            .await
            .unwrap();
        let keys = answer.await.unwrap().unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].contains("/save/"), "{keys:?}");
        let (reply, answer) = oneshot::channel();
        commands_tx
            .send(ReactorCommand::Save {
                session: "$9".parse().unwrap(),
                reply,
            })
            .await
            .unwrap();
        assert!(answer.await.unwrap().unwrap_err().contains("not tracked"));

        events_tx
            .send(event(EventKind::SessionClosed))
            .await
            .unwrap();
        // The end of the events drains what is due, then the reactor ends.
        drop(events_tx);
        tokio::time::timeout(Duration::from_secs(10), reactor)
            .await
            .expect("the reactor drains and ends")
            .unwrap()
            .unwrap();

        let calls = caller.calls();
        let tools: Vec<&str> = calls.iter().map(|c| c.tool.as_str()).collect();
        assert_eq!(tools, ["register", "save", "complete"]);
        assert_eq!(calls[0].args, json!({"name": "work"}));
        assert_eq!(calls[1].args["context"]["session"], "work");
        assert_eq!(calls[2].args, json!({"id": "g-1"}));
        assert_eq!(outbox.lock().open_count().unwrap(), 0);
    }

    #[tokio::test]
    async fn the_first_checkpoint_comes_one_interval_after_start() {
        let every = Duration::from_millis(300);
        let settings = ReactorSettings {
            checkpoint_interval: Some(every),
            ..ReactorSettings::default()
        };
        let start = tokio::time::Instant::now();
        let mut timer = checkpoint_timer(&settings).expect("a timer");
        timer.tick().await;
        assert!(start.elapsed() >= every, "{:?}", start.elapsed());
    }

    /// Checkpoints go to attached sessions only, under their own trigger.
    #[tokio::test]
    async fn checkpoints_save_attached_sessions_only() {
        let actions = [(
            Trigger::Checkpoint,
            vec![spec(
                "checkpoint",
                json!({"name": "{session}", "event": "{event}"}),
                &[],
            )],
        )]
        .into_iter()
        .collect();
        let settings = ReactorSettings {
            actions,
            checkpoint_interval: Some(Duration::from_secs(1)),
            ..ReactorSettings::default()
        };
        let caller = Arc::new(ScriptedCaller::default());
        let Started {
            events: events_tx,
            shutdown,
            task: reactor,
            _settings,
            _control,
            ..
        } = start(settings, &caller);
        for event in [
            event_of(EventKind::SessionCreated, 1, "here"),
            event_of(EventKind::SessionAttached, 1, "here"),
            event_of(EventKind::SessionCreated, 2, "away"),
        ] {
            events_tx.send(event).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while caller.calls().len() < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("no second checkpoint");
        shutdown.cancel();
        reactor.await.unwrap().unwrap();
        let calls = caller.calls();
        assert!(
            calls
                .iter()
                .all(|c| c.args == json!({"name": "here", "event": "checkpoint"})),
            "{calls:#?}"
        );
    }

    /// `max_pending` is per server: a server that is down and has a full
    /// queue loses its own checkpoint calls, and another server still gets
    /// every checkpoint.
    #[tokio::test]
    async fn a_full_queue_skips_only_its_own_servers_checkpoints() {
        let on = |server: &str| ActionSpec {
            server: server.into(),
            ..spec("checkpoint", json!({"name": "{session}"}), &[])
        };
        let actions = [(Trigger::Checkpoint, vec![on("down"), on("up")])]
            .into_iter()
            .collect();
        let settings = ReactorSettings {
            actions,
            checkpoint_interval: Some(Duration::from_millis(100)),
            max_pending: 1,
            ..ReactorSettings::default()
        };
        let caller = Arc::new(ScriptedCaller::default());
        for _ in 0..100 {
            caller.answer(
                "down",
                "checkpoint",
                Err(CallError::NotConnected {
                    server: "down".into(),
                    retry_in: Duration::from_secs(60),
                    last_error: None,
                }),
            );
        }
        let Started {
            events: events_tx,
            outbox,
            shutdown,
            task: reactor,
            _settings,
            _control,
            ..
        } = start(settings, &caller);
        for event in [
            event_of(EventKind::SessionCreated, 1, "here"),
            event_of(EventKind::SessionAttached, 1, "here"),
        ] {
            events_tx.send(event).await.unwrap();
        }
        let to_up = || caller.calls().iter().filter(|c| c.server == "up").count();
        tokio::time::timeout(Duration::from_secs(10), async {
            while to_up() < 3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the full queue of `down` stopped the checkpoints to `up`");
        shutdown.cancel();
        reactor.await.unwrap().unwrap();
        // `down` kept its first checkpoint and was given no more.
        assert_eq!(outbox.lock().open_count_for("down").unwrap(), 1);
    }
}
