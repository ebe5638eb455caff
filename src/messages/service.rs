//! The daemon's side of messages, for its IPC handler: [`Messages`] checks
//! a send against the policy, expands its target into recipients, posts
//! it, and answers `inbox`, `ack` and the lookups of `send --wait`; it
//! also hands a waiting message to a Claude `Stop` hook. The scheduler
//! (`super::scheduler`) shares it and does the deliveries.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::envelope::{self, MessageId, Recipient, Sender, Target};
use super::mailbox::{Mailbox, MailboxError, Message, MessageState, NewMessage};
use super::policy::{Policy, Refusal};
use crate::control::command::Command;
use crate::control::connection::ControlHandle;
use crate::control::{PaneId, SessionId};
use crate::events::{DaemonEvent, EventStream};
use crate::group::GroupHandle;
use crate::state::Model;
use crate::status::{AgentKind, KeeperHandle};

/// A send, as the CLI or an MCP tool asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// Made by the sender, so that a retried send is not queued twice.
    pub id: MessageId,
    pub from: Sender,
    pub to: Target,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
}

/// Why a request about messages failed.
#[derive(Debug, thiserror::Error)]
pub enum MessagesError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("no session {0} on this tmux server")]
    NoSuchSession(SessionId),
    #[error("no pane {0} on this tmux server")]
    NoSuchPane(PaneId),
    #[error("no group {0:?} on this tmux server (see tmux-agent groups)")]
    NoSuchGroup(String),
    #[error(
        "{0} is in no group, so it has no group to broadcast to: join one (tmux-agent join GROUP)"
    )]
    NoGroup(Sender),
    #[error("a person (user) has no group: broadcast from an agent, or send with --group G")]
    UserHasNoGroup,
    #[error("nobody to send to: {0}")]
    NoRecipients(String),
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    #[error("the mailbox task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What happened to a message, for `watch --json` and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEvent {
    /// `message-queued`, `message-delivered` (delivered or unverified: see
    /// `state`), `message-read`, `message-failed` (failed or expired).
    pub event: String,
    pub id: MessageId,
    pub send_id: MessageId,
    pub from: Sender,
    pub to: Recipient,
    pub to_session: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pane: Option<PaneId>,
    pub thread: MessageId,
    pub state: MessageState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<super::mailbox::Via>,
    pub attempts: u32,
    /// RFC 3339, milliseconds.
    pub time: String,
}

impl MessageEvent {
    pub fn of(message: &Message) -> Self {
        let event = match message.state {
            MessageState::Queued => "message-queued",
            MessageState::Delivered | MessageState::Unverified => "message-delivered",
            MessageState::Read => "message-read",
            MessageState::Failed | MessageState::Expired => "message-failed",
        };
        Self {
            event: event.to_owned(),
            id: message.id.clone(),
            send_id: message.send_id.clone(),
            from: message.from,
            to: message.to,
            to_session: message.to_session,
            pane: message.pane,
            thread: message.thread.clone(),
            state: message.state,
            reason: message.reason.clone(),
            via: message.via,
            attempts: message.attempts,
            time: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// The daemon's messages: the mailbox and what it is checked against.
/// Cheap to clone.
#[derive(Clone)]
pub struct Messages {
    pub(super) mailbox: Arc<Mutex<Mailbox>>,
    pub(super) policy: watch::Receiver<Arc<Policy>>,
    /// `[delivery]` and the submit keys (`super::pane`).
    pub(super) delivery: watch::Receiver<Arc<super::pane::Delivery>>,
    /// Wakes the scheduler: something was posted.
    pub(super) posted: Arc<Notify>,
    /// The panes whose `Stop` hook was handed a message the agent has not
    /// been seen to take (see [`Messages::taken`]): every hook event asks,
    /// and only these cost a look at the mailbox.
    handed: Arc<Mutex<HashSet<PaneId>>>,
    pub(super) events: EventStream,
    pub(super) agents: KeeperHandle,
    groups: GroupHandle,
    pub(super) snapshots: watch::Receiver<Model>,
    pub(super) control: ControlHandle,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages").finish_non_exhaustive()
    }
}

/// The parts of the daemon [`Messages`] works with.
pub struct MessagesParts {
    pub mailbox: Mailbox,
    pub policy: watch::Receiver<Arc<Policy>>,
    pub delivery: watch::Receiver<Arc<super::pane::Delivery>>,
    pub events: EventStream,
    pub agents: KeeperHandle,
    pub groups: GroupHandle,
    pub snapshots: watch::Receiver<Model>,
    pub control: ControlHandle,
}

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Messages {
    pub fn new(parts: MessagesParts) -> Self {
        // Hand-overs a stopped daemon left open are still to be taken.
        let handed = match parts.mailbox.handed_panes() {
            Ok(panes) => panes.into_iter().collect(),
            Err(err) => {
                tracing::error!(%err, "could not read the open hand-overs");
                HashSet::new()
            }
        };
        Self {
            handed: Arc::new(Mutex::new(handed)),
            mailbox: Arc::new(Mutex::new(parts.mailbox)),
            policy: parts.policy,
            delivery: parts.delivery,
            posted: Arc::default(),
            events: parts.events,
            agents: parts.agents,
            groups: parts.groups,
            snapshots: parts.snapshots,
            control: parts.control,
        }
    }

    /// Runs `f` on the mailbox off the async threads.
    pub(super) async fn with_mailbox<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Mailbox) -> Result<T, MailboxError> + Send + 'static,
    ) -> Result<T, MessagesError> {
        let mailbox = self.mailbox.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut mailbox = mailbox.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut mailbox)
        })
        .await?;
        Ok(result?)
    }

    /// Tells followers what happened to each of `messages`.
    pub(super) fn publish(&self, messages: &[Message]) {
        for message in messages {
            self.events
                .publish(DaemonEvent::Message(MessageEvent::of(message)));
        }
    }

    /// Checks, expands and posts a send; returns one message per
    /// recipient, as stored (committed before this returns).
    pub async fn send(&self, request: SendRequest) -> Result<Vec<Message>, MessagesError> {
        // A retried send: the first try's messages, whatever changed since.
        let id = request.id.clone();
        let known = self.with_mailbox(move |m| m.lookup(&[id])).await?;
        if !known.is_empty() {
            return Ok(known);
        }
        let policy = self.policy.borrow().clone();
        policy.check_body(&request.body)?;
        if request.to == Target::All {
            policy.check_all()?;
        }
        let recipients = self.recipients(&request).await?;
        let mut groups = self.groups.latest();
        let mut reconciled = false;
        for (recipient, session) in &recipients {
            let _ = recipient;
            loop {
                let from_group = request
                    .from
                    .session()
                    .and_then(|s| groups.group_of(s))
                    .map(|g| g.name.as_str().to_owned());
                let to_group = groups
                    .group_of(*session)
                    .map(|g| g.name.as_str().to_owned());
                match policy.check_pair(
                    request.from,
                    from_group.as_deref(),
                    *session,
                    to_group.as_deref(),
                ) {
                    Ok(()) => break,
                    // Groups as of the last pass may miss a join of a
                    // moment ago: one fresh pass before refusing.
                    Err(_) if !reconciled => {
                        reconciled = true;
                        if let Ok(report) = self.groups.reconcile().await {
                            groups = report;
                        }
                    }
                    Err(refusal) => return Err(refusal.into()),
                }
            }
        }
        let expires_ms =
            now_ms() + i64::try_from(policy.expiry.as_millis()).unwrap_or(i64::MAX / 2);
        let from_name = request.from.session().and_then(|s| {
            self.snapshots
                .borrow()
                .session(s)
                .map(|s| s.info.name.clone())
        });
        let fan_out = recipients.len() > 1
            || matches!(
                request.to,
                Target::Group(_) | Target::OwnGroup | Target::All
            );
        let new: Vec<NewMessage> = recipients
            .iter()
            .map(|(recipient, session)| NewMessage {
                id: if fan_out {
                    MessageId::for_recipient(&request.id, recipient)
                } else {
                    request.id.clone()
                },
                send_id: request.id.clone(),
                from: request.from,
                from_name: from_name.clone(),
                to: *recipient,
                to_session: *session,
                reply_to: request.reply_to.clone(),
                body: request.body.clone(),
                expires_ms,
            })
            .collect();
        let now = now_ms();
        let from = request.from;
        let window = i64::try_from(super::policy::RATE_WINDOW.as_millis()).unwrap_or(60_000);
        // Counted and posted under one lock: two sends at once cannot both
        // pass a count that only one of them fits in.
        let posted = self
            .with_mailbox(move |m| {
                let sent = m.sent_since(from, now - window)?;
                if let Err(refusal) = policy.check_rate(from, sent, new.len()) {
                    return Ok(Err(refusal));
                }
                m.post(&new, now).map(Ok)
            })
            .await??;
        self.publish(&posted);
        self.posted.notify_one();
        Ok(posted)
    }

    /// Whom a send reaches: (recipient, its session), never the sender.
    async fn recipients(
        &self,
        request: &SendRequest,
    ) -> Result<Vec<(Recipient, SessionId)>, MessagesError> {
        let me = request.from.session();
        let model = self.snapshots.borrow().clone();
        let sessions = |ids: Vec<SessionId>| -> Vec<(Recipient, SessionId)> {
            ids.into_iter()
                .filter(|id| Some(*id) != me && model.session(*id).is_some())
                .map(|id| (Recipient::Session(id), id))
                .collect()
        };
        let found = match &request.to {
            Target::Session(session) => {
                // The snapshot may not have a session made a moment ago yet.
                if model.session(*session).is_none() && !self.session_exists(*session).await {
                    return Err(MessagesError::NoSuchSession(*session));
                }
                vec![(Recipient::Session(*session), *session)]
            }
            Target::Pane(pane) => {
                let session = self
                    .pane_session(*pane)
                    .await
                    .ok_or(MessagesError::NoSuchPane(*pane))?;
                vec![(Recipient::Pane(*pane), session)]
            }
            Target::Group(name) => {
                let mut groups = self.groups.latest();
                if groups.group(name).is_none()
                    && let Ok(report) = self.groups.reconcile().await
                {
                    groups = report;
                }
                let group = groups
                    .group(name)
                    .ok_or_else(|| MessagesError::NoSuchGroup(name.clone()))?;
                sessions(group.members.iter().map(|m| m.id).collect())
            }
            Target::OwnGroup => {
                let me = me.ok_or(MessagesError::UserHasNoGroup)?;
                let mut groups = self.groups.latest();
                if groups.group_of(me).is_none()
                    && let Ok(report) = self.groups.reconcile().await
                {
                    groups = report;
                }
                let group = groups
                    .group_of(me)
                    .ok_or(MessagesError::NoGroup(request.from))?;
                sessions(group.members.iter().map(|m| m.id).collect())
            }
            Target::All => sessions(model.sessions().map(|s| s.info.id).collect()),
        };
        if found.is_empty() {
            return Err(MessagesError::NoRecipients(match &request.to {
                Target::Group(name) => format!("group {name:?} has no member but the sender"),
                Target::OwnGroup => "the sender's group has no other member".to_owned(),
                _ => "no other session on this tmux server".to_owned(),
            }));
        }
        Ok(found)
    }

    /// Whether tmux has `session` now (the tracker's snapshot can lag a
    /// session made or closed a moment ago). A connection that fails says
    /// yes: only tmux saying no makes a session gone.
    pub(super) async fn session_exists(&self, session: SessionId) -> bool {
        match self.control.run(Command::has_session(session)).await {
            Ok(_) => true,
            Err(crate::control::connection::ControlError::Command { .. }) => false,
            Err(_) => true,
        }
    }

    /// The session `pane` is in, as tmux says.
    pub(super) async fn pane_session(&self, pane: PaneId) -> Option<SessionId> {
        let reply = self
            .control
            .run(Command::display_message(pane, "#{pane_id} #{session_id}").ok()?)
            .await
            .ok()?;
        let text = reply.text();
        let (listed, session) = text.trim_end().split_once(' ')?;
        (listed == pane.to_string()).then(|| session.parse().ok())?
    }

    /// The messages with these ids (or of these sends).
    pub async fn lookup(&self, ids: Vec<MessageId>) -> Result<Vec<Message>, MessagesError> {
        self.with_mailbox(move |m| m.lookup(&ids)).await
    }

    /// `session`'s messages, newest last.
    pub async fn inbox(
        &self,
        session: SessionId,
        unread_only: bool,
        limit: usize,
    ) -> Result<Vec<Message>, MessagesError> {
        self.with_mailbox(move |m| m.inbox(session, unread_only, limit))
            .await
    }

    /// How long settled messages are kept (`[messages] keep`).
    pub fn keep(&self) -> std::time::Duration {
        self.policy.borrow().keep
    }

    /// Deletes the settled messages older than `[messages] keep` (for
    /// the daemon's pruning, `daemon::prune`); returns how many.
    pub async fn prune(&self) -> Result<usize, MessagesError> {
        let keep = i64::try_from(self.keep().as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(keep);
        self.with_mailbox(move |m| m.prune(before)).await
    }

    /// `by` has read `id`.
    pub async fn ack(&self, id: MessageId, by: SessionId) -> Result<Message, MessagesError> {
        let now = now_ms();
        let before = {
            let id = id.clone();
            self.with_mailbox(move |m| m.get(&id)).await?
        };
        let message = self.with_mailbox(move |m| m.ack(&id, by, now)).await?;
        if before.is_some_and(|b| b.state != MessageState::Read) {
            self.publish(std::slice::from_ref(&message));
            self.posted.notify_one();
        }
        Ok(message)
    }

    /// A Claude `Stop` hook in `pane` asks for its next message: the
    /// oldest waiting for the pane or its session (or the one it was handed
    /// before and did not take), as the text the agent reads (envelope and
    /// body); `None` if none waits. The message stays `queued` until the
    /// agent is seen to take it ([`Messages::taken`]).
    pub async fn hand_over(
        &self,
        pane: PaneId,
        kind: &AgentKind,
    ) -> Result<Option<String>, MessagesError> {
        if *kind != AgentKind::Claude {
            return Ok(None);
        }
        let session = match self.agents.board().pane(pane).and_then(|a| a.session) {
            Some(session) => Some(session),
            None => self.pane_session(pane).await,
        };
        let now = now_ms();
        let Some(message) = self
            .with_mailbox(move |m| m.hand_over(pane, session, now))
            .await?
        else {
            return Ok(None);
        };
        self.handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pane);
        tracing::debug!(id = %message.id, %pane, attempt = message.attempts, "handed a message to a Stop hook");
        Ok(Some(envelope::render(
            &message.id,
            message.from,
            message.from_name.as_deref(),
            &message.thread,
            &message.body,
        )))
    }

    /// A hook event from `pane` shows its agent took what its `Stop` hook
    /// was handed (a tool call, or a `Stop` continuing because a hook
    /// blocked it): those messages are `delivered`. Costs nothing for a
    /// pane with no open hand-over.
    pub async fn taken(&self, pane: PaneId) -> Result<(), MessagesError> {
        if !self
            .handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&pane)
        {
            return Ok(());
        }
        let now = now_ms();
        let taken = self.with_mailbox(move |m| m.taken(pane, now)).await?;
        self.handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&pane);
        if !taken.is_empty() {
            self.publish(&taken);
            self.posted.notify_one();
        }
        Ok(())
    }
}
