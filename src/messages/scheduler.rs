//! The daemon task that delivers messages: it takes each recipient's
//! oldest queued message, finds the pane, asks the pane module's gate
//! ([`super::pane::Delivery::gate`]) whether it may be typed now, and types it
//! ([`super::pane::Delivery::type_into`]); it expires
//! what waited too long, fails what has nobody to go to
//! (`recipient-gone`), and keeps `@agent-unread` (per session) and
//! `@agent-messages` (global) current.
//!
//! # When it looks
//!
//! When something is posted or acknowledged, when an agent's status
//! changes (the keeper's changes: an agent going idle is the usual
//! trigger), when a delivery ends, when a retry or an expiry is due, and
//! once a second besides for what the board does not announce (a pane
//! leaving copy-mode, a person who stopped typing).
//!
//! # One at a time per pane
//!
//! A pane gets its next message only after the agent has reacted to the
//! last one: its status changed since (it went working, then idle again),
//! or [`SETTLE`] passed. Without it the second message would be typed
//! while the agent is still reading the first.
//!
//! # Claude Code
//!
//! A Claude pane that is working is held (`busy`) like any other; its
//! `Stop` hook then asks for the message itself ([`super::Messages::hand_over`])
//! before the keeper hears it went idle, so nothing is typed. A Claude that
//! is already idle when a message comes is typed into.
//!
//! A message handed to a hook stays `queued` until the agent is seen to
//! take it ([`super::Messages::taken`]); meanwhile it is the hook's, and
//! is not typed, unless the agent shows up `idle` at its prompt after the
//! hand-over (the hook's answer never reached it, and no `Stop` came to
//! offer it again).
//!
//! # Crashes
//!
//! A message is marked `typing` (committed) before it is typed, and its
//! outcome written after. A daemon that starts and finds rows left
//! `typing` looks for their envelope line, which holds the message id, in
//! the pane's text: found, the message is `delivered` (it was typed and
//! the agent has it); not found, it is queued again and typed. So a kill
//! between queued and delivered, or between paste and verify, ends with
//! the message delivered once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::envelope::{self, Recipient};
use super::mailbox::{Message, MessageState, Via};
use super::pane::{Gate, PaneError, Typed};
use super::service::{Messages, now_ms};
use crate::control::command::Command;
use crate::control::{PaneId, SessionId};
use crate::schema;
use crate::status::AgentStatus;

/// How long a pane that got a message waits for its agent to react before
/// it may get the next one anyway.
pub const SETTLE: Duration = Duration::from_secs(5);

/// How many times typing may fail (tmux refused) before the message fails.
pub const MAX_ATTEMPTS: u32 = 5;

/// How often held messages are looked at again without any news.
const TICK: Duration = Duration::from_secs(1);

/// The sleep with nothing in the mailbox to wait for (a post, a change, a
/// snapshot wakes it first).
const IDLE: Duration = Duration::from_secs(3600);

/// How many lines of a pane's history a restart looks through for a
/// message it may have typed.
const RECOVERY_LINES: i64 = 5_000;

/// Test faults (see [`crate::fault`]): milliseconds to hold open the
/// moment after a message is marked typing and before it is pasted, and
/// the moment after it was pasted and before its outcome is written, for a
/// test to SIGKILL the daemon in.
pub const FAULT_BEFORE_PASTE_ENV: &str = "TMUX_AGENT_FAULT_MESSAGE_BEFORE_PASTE_MS";
pub const FAULT_AFTER_PASTE_ENV: &str = "TMUX_AGENT_FAULT_MESSAGE_AFTER_PASTE_MS";

/// What a delivery task came to.
struct Done {
    recipient: Recipient,
    pane: Option<PaneId>,
    /// Whether the message was typed (the pane then settles).
    typed: bool,
    /// The pane's status `since` before it was typed: a change from it is
    /// the agent's reaction.
    since: DateTime<Utc>,
}

/// Runs until `stop`.
pub async fn run(messages: Messages, stop: CancellationToken) {
    let mut scheduler = Scheduler {
        messages,
        in_flight: HashSet::new(),
        settling: HashMap::new(),
        held_back: HashMap::new(),
        written: None,
        held: false,
    };
    scheduler.recover().await;
    let mut changes = scheduler.messages.agents.changes();
    let mut snapshots = scheduler.messages.snapshots.clone();
    let posted = scheduler.messages.posted.clone();
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut look = true;
    loop {
        if look {
            scheduler.pass(&mut tasks).await;
        }
        let wait = scheduler.next_wait().await;
        // A status change or a new snapshot matters only to a message that
        // waits (a session burst with an empty mailbox costs no pass).
        let waiting = scheduler.held || !tasks.is_empty();
        look = tokio::select! {
            () = stop.cancelled() => break,
            () = posted.notified() => true,
            change = changes.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = change {
                    // The keeper stopped; the tick still drives us.
                    changes = scheduler.messages.agents.changes();
                    tokio::time::sleep(TICK).await;
                }
                waiting
            }
            changed = snapshots.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(TICK).await;
                }
                waiting
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(done) = done {
                    scheduler.finished(done);
                }
                true
            }
            () = tokio::time::sleep(wait) => true,
        };
    }
    // A delivery cut short here is left `typing`: the next start recovers it.
    tasks.abort_all();
}

struct Scheduler {
    messages: Messages,
    /// Recipients with a delivery under way.
    in_flight: HashSet<Recipient>,
    /// Panes that got a message: when, and their status's `since` then.
    settling: HashMap<PaneId, (Instant, DateTime<Utc>)>,
    /// Recipients whose last look was held back (busy, in a mode, someone
    /// typing, tmux failed): when, and their pane's status `since` then.
    /// They are looked at again when that status changes, or after
    /// [`TICK`] for what the board does not announce; without this a
    /// message waiting for a busy agent was gated again the moment the
    /// last gate answered, two tmux round trips at a time, for the whole
    /// turn.
    held_back: HashMap<Recipient, (Instant, DateTime<Utc>)>,
    /// The counts last written to tmux.
    written: Option<BTreeMap<SessionId, u64>>,
    /// Whether the last pass left a message waiting for its recipient (so
    /// the tick is needed); an empty mailbox costs no wake-up.
    held: bool,
}

impl Scheduler {
    /// Finishes what a killed daemon left being typed (see the module doc).
    async fn recover(&mut self) {
        let left = match self.messages.with_mailbox(|m| m.typing_left()).await {
            Ok(left) => left,
            Err(err) => {
                tracing::error!(%err, "could not read the mailbox at start");
                return;
            }
        };
        for message in left {
            let seen = match message.pane {
                Some(pane) => self.typed_before(pane, &message).await,
                None => false,
            };
            let id = message.id.clone();
            let now = now_ms();
            let result = if seen {
                tracing::info!(id = %id, "a message typed before the restart is in its pane: delivered");
                self.messages
                    .with_mailbox(move |m| m.finish(&id, MessageState::Delivered, Via::Pane, now))
                    .await
            } else {
                tracing::info!(id = %id, "a message being typed at the restart is not in its pane: typing it again");
                self.messages
                    .with_mailbox(move |m| {
                        m.retry(&id, "the daemon stopped while typing it", now, now)
                    })
                    .await
            };
            match result {
                Ok(message) if seen => self.messages.publish(&[message]),
                Ok(_) => {}
                Err(err) => tracing::error!(%err, "could not recover a message"),
            }
        }
    }

    /// Whether `message`'s envelope line (which holds its id) is in the
    /// pane's text: its screen and its last [`RECOVERY_LINES`] lines of
    /// history.
    ///
    /// This is where a message can be typed twice, and only here: the
    /// daemon died after the paste reached tmux and before the outcome was
    /// committed (the verify's few milliseconds, at most `[delivery]
    /// verify_timeout`), and at the restart the pane no longer shows the
    /// id: an agent on the alternate screen (whose text tmux keeps no
    /// history of) that redrew without it, a screen cleared since, or more
    /// than [`RECOVERY_LINES`] lines printed after it. A daemon killed
    /// before the paste reached tmux types it once, found or not.
    async fn typed_before(&self, pane: PaneId, message: &Message) -> bool {
        // The id is enough, and survives a wrapped or boxed line.
        let needle = format!("message {}", message.id);
        match self
            .messages
            .control
            .run(Command::capture_pane(pane, -RECOVERY_LINES))
            .await
        {
            Ok(reply) => reply.text().contains(&needle),
            Err(_) => false,
        }
    }

    /// One look at every recipient's oldest message.
    async fn pass(&mut self, tasks: &mut JoinSet<Done>) {
        let now = now_ms();
        match self.messages.with_mailbox(move |m| m.expire(now)).await {
            Ok(expired) if !expired.is_empty() => self.messages.publish(&expired),
            Ok(_) => {}
            Err(err) => tracing::error!(%err, "could not expire messages"),
        }
        let heads = match self.messages.with_mailbox(move |m| m.heads(now)).await {
            Ok(heads) => heads,
            Err(err) => {
                tracing::error!(%err, "could not read the mailbox");
                Vec::new()
            }
        };
        self.held = !heads.is_empty();
        let board = self.messages.agents.board();
        let model = self.messages.snapshots.borrow().clone();
        for message in heads {
            if self.in_flight.contains(&message.to) {
                continue;
            }
            if model.session(message.to_session).is_none() {
                if !self.messages.session_exists(message.to_session).await {
                    self.fail(&message, "recipient-gone").await;
                }
                // Gone, or too new for the snapshot: either way, not now.
                continue;
            }
            let pane = match (message.handed_ms, message.pane, message.to) {
                // Handed to a `Stop` hook: the hook's, unless its agent has
                // shown itself at its prompt since (the answer never reached
                // it): then it is typed into that pane like any other.
                (Some(handed), Some(pane), _) => {
                    let back = board.pane(pane).is_some_and(|agent| {
                        agent.status == AgentStatus::Idle && agent.since.timestamp_millis() > handed
                    });
                    if !back {
                        continue;
                    }
                    pane
                }
                (Some(_), None, _) => continue,
                (None, _, Recipient::Pane(pane)) => pane,
                (None, _, Recipient::Session(session)) => {
                    // The session's agent: the first pane with one that has
                    // not left. None yet: it waits (until its expiry).
                    let Some(agent) = board
                        .panes_of(session)
                        .find(|agent| agent.status != AgentStatus::Exited)
                    else {
                        continue;
                    };
                    agent.pane
                }
            };
            let since = board
                .pane(pane)
                .map_or(DateTime::<Utc>::MIN_UTC, |agent| agent.since);
            if let Some((at, was)) = self.held_back.get(&message.to) {
                if *was == since && at.elapsed() < TICK {
                    continue;
                }
                self.held_back.remove(&message.to);
            }
            if let Some((at, since)) = self.settling.get(&pane) {
                let reacted = board.pane(pane).is_some_and(|agent| agent.since != *since);
                if !reacted && at.elapsed() < SETTLE {
                    continue;
                }
                self.settling.remove(&pane);
            }
            self.in_flight.insert(message.to);
            tasks.spawn(deliver(self.messages.clone(), message, pane));
        }
        self.write_counts().await;
    }

    fn finished(&mut self, done: Done) {
        self.in_flight.remove(&done.recipient);
        match (done.typed, done.pane) {
            (true, Some(pane)) => {
                self.settling.insert(pane, (Instant::now(), done.since));
            }
            (false, _) => {
                self.held_back
                    .insert(done.recipient, (Instant::now(), done.since));
            }
            (true, None) => {}
        }
    }

    async fn fail(&self, message: &Message, reason: &'static str) {
        let id = message.id.clone();
        let now = now_ms();
        match self
            .messages
            .with_mailbox(move |m| m.fail(&id, reason, now))
            .await
        {
            Ok(failed) => self.messages.publish(&[failed]),
            Err(err) => tracing::error!(%err, "could not fail a message"),
        }
    }

    /// How long to sleep with no news: to the next retry or expiry, at
    /// most [`TICK`] while a message waits for its recipient; with nothing
    /// waiting, only until the next retry or expiry (an idle daemon's
    /// mailbox wakes nothing).
    async fn next_wait(&self) -> Duration {
        let now = now_ms();
        let due = self
            .messages
            .with_mailbox(move |m| m.next_due(now))
            .await
            .ok()
            .flatten();
        let until_due = due.map(|due| Duration::from_millis(u64::try_from(due - now).unwrap_or(0)));
        match (until_due, self.held) {
            (Some(due), true) => due.min(TICK),
            (None, true) => TICK,
            (Some(due), false) => due,
            (None, false) => IDLE,
        }
    }

    /// `@agent-unread` on each session whose count changed (set while it
    /// has unread messages, unset when it has none, so a session that never
    /// had a message gets no option), and `@agent-messages`, the sum (`0`
    /// too, so a status line has a value from the start).
    async fn write_counts(&mut self) {
        let Ok(counts) = self.messages.with_mailbox(|m| m.unread_counts()).await else {
            return;
        };
        if self.written.as_ref() == Some(&counts) {
            return;
        }
        let before = self.written.clone().unwrap_or_default();
        let model = self.messages.snapshots.borrow().clone();
        let mut commands = Vec::new();
        let sessions: std::collections::BTreeSet<SessionId> =
            before.keys().chain(counts.keys()).copied().collect();
        for session in sessions {
            let now = counts.get(&session).copied().unwrap_or(0);
            if model.session(session).is_none() || before.get(&session).copied().unwrap_or(0) == now
            {
                continue;
            }
            let command = if now > 0 {
                Command::set_option(session, schema::session::UNREAD, &now.to_string())
            } else {
                Command::unset_option(session, schema::session::UNREAD)
            };
            if let Ok(command) = command {
                commands.push(command);
            }
        }
        let total: u64 = counts.values().sum();
        if let Ok(command) =
            Command::set_global_option(schema::global::MESSAGES, &total.to_string())
        {
            commands.push(command);
        }
        for command in commands {
            if let Err(err) = self.messages.control.run(command).await {
                tracing::debug!(%err, "could not write a message count");
            }
        }
        self.written = Some(counts);
    }
}

/// One delivery: gate, mark, type, record.
async fn deliver(messages: Messages, message: Message, pane: PaneId) -> Done {
    let recipient = message.to;
    let board = messages.agents.board();
    let delivery = messages.delivery.borrow().clone();
    let since = board
        .pane(pane)
        .map_or(DateTime::<Utc>::MIN_UTC, |agent| agent.since);
    let untyped = Done {
        recipient,
        pane: Some(pane),
        typed: false,
        since,
    };
    match delivery.gate(&messages.control, &board, &pane).await {
        Ok(Gate::Ready) => {}
        Ok(Gate::Hold(reason)) => {
            tracing::trace!(id = %message.id, %pane, reason = reason.as_str(), "message held");
            return untyped;
        }
        Err(PaneError::Gone) => {
            record_gone(&messages, &message).await;
            return untyped;
        }
        Err(PaneError::Tmux(err)) => {
            tracing::debug!(%err, "could not check a pane for a message");
            return untyped;
        }
    }
    let id = message.id.clone();
    let now = now_ms();
    let handed = message.handed_ms;
    match messages
        .with_mailbox(move |m| m.begin_typing(&id, pane, handed, now))
        .await
    {
        Ok(true) => {}
        // A hook was handed it meanwhile.
        Ok(false) => return untyped,
        Err(err) => {
            tracing::error!(%err, "could not mark a message typing");
            return untyped;
        }
    }
    let kind = board.pane(pane).and_then(|agent| agent.kind.clone());
    let submit = delivery.submit_key(kind.as_ref()).to_owned();
    let text = envelope::render(
        &message.id,
        message.from,
        message.from_name.as_deref(),
        &message.thread,
        &message.body,
    );
    crate::fault::delay(FAULT_BEFORE_PASTE_ENV).await;
    let typed = delivery
        .type_into(&messages.control, &board, &pane, &text, &submit)
        .await;
    crate::fault::delay(FAULT_AFTER_PASTE_ENV).await;
    let id = message.id.clone();
    let now = now_ms();
    let attempts = message.attempts + 1;
    let recorded = match typed {
        Ok(Typed::Delivered) => {
            messages
                .with_mailbox(move |m| m.finish(&id, MessageState::Delivered, Via::Pane, now))
                .await
        }
        Ok(Typed::Unverified) => {
            messages
                .with_mailbox(move |m| m.finish(&id, MessageState::Unverified, Via::Pane, now))
                .await
        }
        Err(PaneError::Gone) => {
            messages
                .with_mailbox(move |m| m.fail(&id, "recipient-gone", now))
                .await
        }
        Err(PaneError::Tmux(err)) if attempts >= MAX_ATTEMPTS => {
            let reason = format!("typing-failed: {err}");
            messages
                .with_mailbox(move |m| m.fail(&id, &reason, now))
                .await
        }
        Err(PaneError::Tmux(err)) => {
            let due =
                now + i64::try_from(crate::backoff::delay(attempts).as_millis()).unwrap_or(60_000);
            let reason = format!("typing failed, will retry: {err}");
            messages
                .with_mailbox(move |m| m.retry(&id, &reason, due, now))
                .await
        }
    };
    match recorded {
        Ok(message) if message.state != MessageState::Queued => messages.publish(&[message]),
        Ok(_) => {}
        Err(err) => tracing::error!(%err, "could not record a delivery"),
    }
    Done {
        recipient,
        pane: Some(pane),
        typed: true,
        since,
    }
}

async fn record_gone(messages: &Messages, message: &Message) {
    let id = message.id.clone();
    let now = now_ms();
    match messages
        .with_mailbox(move |m| m.fail(&id, "recipient-gone", now))
        .await
    {
        Ok(failed) => messages.publish(&[failed]),
        Err(err) => tracing::error!(%err, "could not fail a message"),
    }
}
