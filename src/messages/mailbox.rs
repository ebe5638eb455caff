//! The durable mailbox (DESIGN.md D16): every message, one row per
//! recipient, in its own SQLite file next to the outbox
//! (`$XDG_STATE_HOME/tmux-agent/<server>.mailbox.db`; see
//! `docs/ARCHITECTURE.md` for why not in the outbox).
//!
//! # States
//!
//! ```text
//! queued ──► delivered ──► read        (a hook's hand-over: queued, handed, until taken)
//!    │   └─► unverified ─► read
//!    ├─► failed (reason: recipient-gone, typing-failed, …)
//!    └─► expired
//! ```
//!
//! A message is committed (`synchronous = FULL`) before [`Mailbox::post`]
//! returns, so a `send` that was answered is on disk. Posting is idempotent
//! by message id: a send retried after a lost answer gets the rows of the
//! first try back.
//!
//! # Order
//!
//! Each recipient's messages are handed out oldest first, one at a time
//! ([`Mailbox::heads`]): the next one is not offered until the one before
//! it has left `queued`. So the order from any one sender to any one
//! recipient is kept, retries and restarts included.
//!
//! # Hand-over to a hook
//!
//! A Claude `Stop` hook is handed a message ([`Mailbox::hand_over`]): the
//! row is marked handed to the pane (`handed_ms`) and stays `queued`, since
//! the daemon cannot see whether the hook's print reached the agent. The
//! next event from inside a turn in that pane makes it `delivered`
//! ([`Mailbox::taken`]); a plain `Stop` first is handed it again. See
//! `docs/ARCHITECTURE.md`, "Mailbox".
//!
//! # Typing and crashes
//!
//! Typing into a pane is not atomic with the database. The scheduler marks
//! a message `typing` ([`Mailbox::begin_typing`], committed) before it
//! types and writes the outcome after. A daemon killed in between leaves
//! rows that [`Mailbox::typing_left`] returns at the next start: the
//! scheduler then looks for the message in the pane before typing it again
//! (see `super::scheduler`), so it is delivered once.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::envelope::{MessageId, Recipient, Sender};
use crate::control::{PaneId, SessionId};

/// Where one message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    /// Waiting for its recipient (idle, no user typing) or a hook.
    Queued,
    /// Typed into the pane and seen there, or handed over by a hook.
    Delivered,
    /// Typed, but not seen in the pane within the deadline.
    Unverified,
    /// Acknowledged by the recipient (`ack_message`).
    Read,
    /// Will not be delivered: `reason` says why.
    Failed,
    /// Not delivered before its expiry.
    Expired,
}

impl MessageState {
    pub const ALL: [MessageState; 6] = [
        MessageState::Queued,
        MessageState::Delivered,
        MessageState::Unverified,
        MessageState::Read,
        MessageState::Failed,
        MessageState::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Delivered => "delivered",
            MessageState::Unverified => "unverified",
            MessageState::Read => "read",
            MessageState::Failed => "failed",
            MessageState::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Whether nothing more will happen to the message but a read.
    pub fn is_settled(self) -> bool {
        !matches!(self, MessageState::Queued)
    }

    /// Whether the recipient has it and has not said it read it.
    pub fn is_unread(self) -> bool {
        matches!(self, MessageState::Delivered | MessageState::Unverified)
    }
}

impl std::fmt::Display for MessageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a message reached its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The agent's own hook took it (Claude Code's `Stop`): nothing typed.
    Hook,
    /// Pasted into the pane and submitted.
    Pane,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Hook => "hook",
            Via::Pane => "pane",
        }
    }
}

/// One message for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    /// The id the sender gave its send: the same for every copy of a send
    /// to a group.
    pub send_id: MessageId,
    pub from: Sender,
    /// The sender's session name when it was sent, for the envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_name: Option<String>,
    pub to: Recipient,
    /// The session it is for (a pane recipient's session included).
    pub to_session: SessionId,
    /// The pane it went into (or is going into), once chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pane: Option<PaneId>,
    /// The first message of its conversation (its own id if it starts one).
    pub thread: MessageId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    pub body: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub expires_ms: i64,
    pub state: MessageState,
    /// Why it failed, or why the last try did not deliver it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    pub attempts: u32,
    /// When it last changed state, Unix milliseconds.
    pub updated_ms: i64,
    /// When a `Stop` hook in [`Message::pane`] was last handed it, while
    /// that is not yet known to have reached the agent (see the module
    /// doc); it is still `queued` meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_ms: Option<i64>,
}

/// A message to post: what the daemon makes of a checked send.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub send_id: MessageId,
    pub from: Sender,
    pub from_name: Option<String>,
    pub to: Recipient,
    pub to_session: SessionId,
    pub reply_to: Option<MessageId>,
    pub body: String,
    pub expires_ms: i64,
}

/// Why the mailbox could not do something.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("the mailbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the mailbox database holds a row it cannot read ({0}); was it written by a newer tmux-agent?"
    )]
    Corrupt(String),
    #[error("no message {0} in the mailbox")]
    NoSuchMessage(MessageId),
    #[error("message {id} is for {to}, not for {by}")]
    NotYours {
        id: MessageId,
        to: SessionId,
        by: SessionId,
    },
    #[error("message {id} is still {state}: only a delivered message can be acknowledged")]
    NotDelivered { id: MessageId, state: MessageState },
}

/// The schema's version, in `user_version`.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    send_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    sender_name TEXT,
    recipient TEXT NOT NULL,
    recipient_session TEXT NOT NULL,
    pane TEXT,
    thread TEXT NOT NULL,
    reply_to TEXT,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    via TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- Set while the message is being typed (see the module doc).
    typing_ms INTEGER,
    -- Not offered again before this (a retry's backoff).
    due_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX messages_queued ON messages (recipient, seq) WHERE state = 'queued';
CREATE INDEX messages_session ON messages (recipient_session, seq);
CREATE INDEX messages_send ON messages (send_id);
";

/// From version 1 to 2: the hook hand-over's mark (see the module doc),
/// and the index the rate limit counts a sender's last minute with.
const MIGRATE_2: &str = "
ALTER TABLE messages ADD COLUMN handed_ms INTEGER;
CREATE INDEX messages_sender ON messages (sender, created_ms);
CREATE INDEX messages_settled ON messages (updated_ms) WHERE state != 'queued';
";

const COLUMNS: &str = "id, send_id, sender, sender_name, recipient, recipient_session, pane, thread, \
     reply_to, body, created_ms, expires_ms, state, reason, via, attempts, updated_ms, handed_ms";

/// The mailbox database.
#[derive(Debug)]
pub struct Mailbox {
    db: Connection,
}

impl Mailbox {
    /// Opens (or creates, 0600) the mailbox at `path`.
    pub fn open(path: &Path) -> Result<Self, MailboxError> {
        if let Some(dir) = path.parent() {
            let _ = crate::paths::private_dir(dir);
        }
        let db = Connection::open(path)?;
        let _ = crate::paths::private_file(path);
        db.pragma_update(None, "journal_mode", "WAL")?;
        Self::init(db)
    }

    /// A mailbox that lives in memory only (tests, and a daemon that could
    /// not open its file: it says so in its log).
    pub fn in_memory() -> Result<Self, MailboxError> {
        Self::init(Connection::open_in_memory()?)
    }

    /// Opens the file, or falls back to memory with an error in the log.
    pub fn open_or_memory(path: &Path) -> Self {
        match Self::open(path) {
            Ok(mailbox) => mailbox,
            Err(err) => {
                tracing::error!(%err, path = %path.display(), "cannot open the mailbox; messages live in memory and are lost if the daemon stops");
                Self::in_memory().expect("an in-memory SQLite database")
            }
        }
    }

    fn init(db: Connection) -> Result<Self, MailboxError> {
        // A send that was answered is on disk, power cut included.
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version == 0 {
            db.execute_batch(&format!(
                "BEGIN; {SCHEMA} {MIGRATE_2} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        } else if version == 1 {
            db.execute_batch(&format!(
                "BEGIN; {MIGRATE_2} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        } else if version > SCHEMA_VERSION {
            return Err(MailboxError::Corrupt(format!(
                "schema version {version}, this build knows {SCHEMA_VERSION}"
            )));
        }
        Ok(Self { db })
    }

    /// Posts messages, all or none, and returns them as stored. A message
    /// whose id is already there is not posted again: the stored one is
    /// returned (idempotent by id).
    pub fn post(
        &mut self,
        messages: &[NewMessage],
        now_ms: i64,
    ) -> Result<Vec<Message>, MailboxError> {
        let tx = self.db.transaction()?;
        for message in messages {
            // A reply joins its parent's thread; an unknown parent starts one.
            let thread: Option<String> = match &message.reply_to {
                Some(parent) => tx
                    .query_row(
                        "SELECT thread FROM messages WHERE id = ?1 OR send_id = ?1 LIMIT 1",
                        [parent.as_str()],
                        |row| row.get(0),
                    )
                    .optional()?,
                None => None,
            };
            tx.execute(
                "INSERT OR IGNORE INTO messages (id, send_id, sender, sender_name, recipient,
                     recipient_session, pane, thread, reply_to, body, created_ms, expires_ms,
                     state, attempts, due_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'queued', 0, ?11, ?11)",
                params![
                    message.id.as_str(),
                    message.send_id.as_str(),
                    message.from.to_string(),
                    message.from_name,
                    message.to.to_string(),
                    message.to_session.to_string(),
                    match message.to {
                        Recipient::Pane(pane) => Some(pane.to_string()),
                        Recipient::Session(_) => None,
                    },
                    thread.unwrap_or_else(|| message.send_id.to_string()),
                    message.reply_to.as_ref().map(MessageId::as_str),
                    message.body,
                    now_ms,
                    message.expires_ms,
                ],
            )?;
        }
        tx.commit()?;
        messages.iter().map(|m| self.expect(&m.id)).collect()
    }

    /// How many messages `from` posted after `since_ms` (a send to a
    /// group counts once per recipient): what the rate limit counts, from
    /// the rows themselves, so a restarted daemon counts what the last one
    /// accepted.
    pub fn sent_since(&self, from: Sender, since_ms: i64) -> Result<u64, MailboxError> {
        let count: i64 = self.db.query_row(
            "SELECT COUNT(*) FROM messages WHERE sender = ?1 AND created_ms > ?2",
            params![from.to_string(), since_ms],
            |row| row.get(0),
        )?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The message with this id.
    pub fn get(&self, id: &MessageId) -> Result<Option<Message>, MailboxError> {
        self.db
            .query_row(
                &format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"),
                [id.as_str()],
                RawMessage::read,
            )
            .optional()?
            .map(RawMessage::parse)
            .transpose()
    }

    fn expect(&self, id: &MessageId) -> Result<Message, MailboxError> {
        self.get(id)?
            .ok_or_else(|| MailboxError::NoSuchMessage(id.clone()))
    }

    /// The messages with these ids, or of the sends with these ids (a send
    /// to a group is one message per member), in order.
    pub fn lookup(&self, ids: &[MessageId]) -> Result<Vec<Message>, MailboxError> {
        let mut found = Vec::new();
        let mut statement = self.db.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE id = ?1 OR send_id = ?1 ORDER BY seq"
        ))?;
        for id in ids {
            for raw in statement.query_map([id.as_str()], RawMessage::read)? {
                let message = raw?.parse()?;
                if !found.iter().any(|m: &Message| m.id == message.id) {
                    found.push(message);
                }
            }
        }
        Ok(found)
    }

    /// The oldest queued message of each recipient, in order, if it is due
    /// (a recipient whose oldest waits for a retry offers nothing: the
    /// next must not overtake it). Rows being typed are not offered; a row
    /// handed to a hook is (with its [`Message::handed_ms`]), for the
    /// scheduler to decide.
    pub fn heads(&self, now_ms: i64) -> Result<Vec<Message>, MailboxError> {
        let mut statement = self.db.prepare_cached(&format!(
            "SELECT {COLUMNS}, due_ms, typing_ms FROM messages m
             WHERE state = 'queued'
               AND seq = (SELECT MIN(seq) FROM messages o
                          WHERE o.state = 'queued' AND o.recipient = m.recipient)
             ORDER BY seq"
        ))?;
        let mut heads = Vec::new();
        let rows = statement.query_map([], |row| {
            Ok((
                RawMessage::read(row)?,
                row.get::<_, i64>(18)?,
                row.get::<_, Option<i64>>(19)?,
            ))
        })?;
        for row in rows {
            let (raw, due, typing) = row?;
            if due <= now_ms && typing.is_none() {
                heads.push(raw.parse()?);
            }
        }
        Ok(heads)
    }

    /// When the earliest queued message not yet due becomes due, if any.
    pub fn next_due(&self, now_ms: i64) -> Result<Option<i64>, MailboxError> {
        Ok(self.db.query_row(
            "SELECT MIN(t) FROM (
                 SELECT due_ms AS t FROM messages
                 WHERE state = 'queued' AND typing_ms IS NULL AND handed_ms IS NULL AND due_ms > ?1
                 UNION ALL
                 SELECT expires_ms FROM messages
                 WHERE state = 'queued' AND typing_ms IS NULL AND handed_ms IS NULL
                   AND expires_ms > ?1)",
            [now_ms],
            |row| row.get(0),
        )?)
    }

    /// Marks `id` as being typed into `pane` (committed before the typing
    /// starts), if it is still as the scheduler read it: queued, not being
    /// typed, and handed to a hook at `handed_ms` (`None`: not handed). A
    /// hand-over in between changes that, and the answer is `false`: the
    /// hook has it. Typing ends a hand-over.
    pub fn begin_typing(
        &mut self,
        id: &MessageId,
        pane: PaneId,
        handed_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool, MailboxError> {
        let changed = self.unsynced(|db| {
            db.execute(
                "UPDATE messages SET typing_ms = ?2, pane = ?3, attempts = attempts + 1,
                     handed_ms = NULL, updated_ms = ?2
                 WHERE id = ?1 AND state = 'queued' AND typing_ms IS NULL AND handed_ms IS ?4",
                params![id.as_str(), now_ms, pane.to_string(), handed_ms],
            )
        })?;
        Ok(changed == 1)
    }

    /// Rows left `typing` by a daemon that stopped mid-delivery.
    pub fn typing_left(&self) -> Result<Vec<Message>, MailboxError> {
        self.select(
            "WHERE state = 'queued' AND typing_ms IS NOT NULL ORDER BY seq",
            [],
        )
    }

    /// The typing of `id` ended with `state` (delivered or unverified).
    pub fn finish(
        &mut self,
        id: &MessageId,
        state: MessageState,
        via: Via,
        now_ms: i64,
    ) -> Result<Message, MailboxError> {
        self.unsynced(|db| {
            db.execute(
                "UPDATE messages SET state = ?2, via = ?3, typing_ms = NULL, reason = NULL, updated_ms = ?4
                 WHERE id = ?1 AND state = 'queued'",
                params![id.as_str(), state.as_str(), via.as_str(), now_ms],
            )
        })?;
        self.expect(id)
    }

    /// Puts `id` back in its queue, not offered before `due_ms`; `reason`
    /// says why the try did not deliver it.
    pub fn retry(
        &mut self,
        id: &MessageId,
        reason: &str,
        due_ms: i64,
        now_ms: i64,
    ) -> Result<Message, MailboxError> {
        self.db.execute(
            "UPDATE messages SET typing_ms = NULL, reason = ?2, due_ms = ?3, updated_ms = ?4
             WHERE id = ?1 AND state = 'queued'",
            params![id.as_str(), reason, due_ms, now_ms],
        )?;
        self.expect(id)
    }

    /// Gives up on `id`: `failed` with `reason`.
    pub fn fail(
        &mut self,
        id: &MessageId,
        reason: &str,
        now_ms: i64,
    ) -> Result<Message, MailboxError> {
        self.db.execute(
            "UPDATE messages SET state = 'failed', typing_ms = NULL, reason = ?2, updated_ms = ?3
             WHERE id = ?1 AND state = 'queued'",
            params![id.as_str(), reason, now_ms],
        )?;
        self.expect(id)
    }

    /// Marks every queued message past its expiry `expired` (those being
    /// typed are left to finish, and those handed to a hook to be taken:
    /// the agent may have them); returns them.
    pub fn expire(&mut self, now_ms: i64) -> Result<Vec<Message>, MailboxError> {
        let tx = self.db.transaction()?;
        let ids: Vec<String> = {
            let mut statement = tx.prepare(
                "SELECT id FROM messages
                 WHERE state = 'queued' AND typing_ms IS NULL AND handed_ms IS NULL AND expires_ms <= ?1",
            )?;
            statement
                .query_map([now_ms], |row| row.get(0))?
                .collect::<Result<_, _>>()?
        };
        tx.execute(
            "UPDATE messages SET state = 'expired', reason = 'expired', updated_ms = ?1
             WHERE state = 'queued' AND typing_ms IS NULL AND handed_ms IS NULL AND expires_ms <= ?1",
            [now_ms],
        )?;
        tx.commit()?;
        ids.iter()
            .map(|id| {
                self.expect(
                    &MessageId::try_from(id.clone())
                        .map_err(|e| MailboxError::Corrupt(e.to_string()))?,
                )
            })
            .collect()
    }

    /// A `Stop` hook's hand-over: the oldest queued message for `pane` (or
    /// for its session, `session`), marked handed to `pane` in the same
    /// transaction, so it goes to one hook even when the scheduler or a
    /// second hook asks at the same moment. It stays `queued` until the
    /// agent is seen to have taken it ([`Mailbox::taken`]); a message
    /// already handed to this pane is offered again (the agent stopped
    /// again without taking it: the hook was killed before its answer got
    /// out), one handed to another pane is not. Messages not yet due (a
    /// retry's backoff) are handed over too: the agent is asking now.
    pub fn hand_over(
        &mut self,
        pane: PaneId,
        session: Option<SessionId>,
        now_ms: i64,
    ) -> Result<Option<Message>, MailboxError> {
        let session = session.map(|s| s.to_string()).unwrap_or_default();
        let pane_name = pane.to_string();
        let id = self.unsynced(|db| {
            let tx = db.unchecked_transaction()?;
            let id: Option<String> = tx
                .query_row(
                    "SELECT id FROM messages
                     WHERE state = 'queued' AND typing_ms IS NULL
                       AND (handed_ms IS NULL OR pane = ?1)
                       AND (recipient = ?1 OR recipient = ?2)
                     ORDER BY seq LIMIT 1",
                    params![pane_name, session],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(id) = id else {
                return Ok(None);
            };
            // Only if it is its recipient's oldest: a message being typed
            // or handed elsewhere to the same recipient goes first.
            let blocked: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages o, messages m
                     WHERE m.id = ?1 AND o.recipient = m.recipient AND o.state = 'queued'
                       AND o.seq < m.seq)",
                [&id],
                |row| row.get(0),
            )?;
            if blocked {
                return Ok(None);
            }
            tx.execute(
                "UPDATE messages SET handed_ms = ?3, pane = ?2, attempts = attempts + 1,
                     reason = NULL, updated_ms = ?3
                 WHERE id = ?1",
                params![id, pane_name, now_ms],
            )?;
            tx.commit()?;
            Ok(Some(id))
        })?;
        let Some(id) = id else {
            return Ok(None);
        };
        let id = MessageId::try_from(id).map_err(|e| MailboxError::Corrupt(e.to_string()))?;
        self.get(&id)
    }

    /// The agent in `pane` took what its `Stop` hook was handed: every
    /// message handed to it becomes `delivered` via the hook. Returns them.
    pub fn taken(&mut self, pane: PaneId, now_ms: i64) -> Result<Vec<Message>, MailboxError> {
        let pane = pane.to_string();
        let ids: Vec<String> = {
            let mut statement = self.db.prepare_cached(
                "SELECT id FROM messages
                 WHERE pane = ?1 AND state = 'queued' AND handed_ms IS NOT NULL ORDER BY seq",
            )?;
            statement
                .query_map([&pane], |row| row.get(0))?
                .collect::<Result<_, _>>()?
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.unsynced(|db| {
            db.execute(
                "UPDATE messages SET state = 'delivered', via = 'hook', handed_ms = NULL,
                     reason = NULL, updated_ms = ?2
                 WHERE pane = ?1 AND state = 'queued' AND handed_ms IS NOT NULL",
                params![pane, now_ms],
            )
        })?;
        ids.into_iter()
            .map(|id| {
                self.expect(
                    &MessageId::try_from(id).map_err(|e| MailboxError::Corrupt(e.to_string()))?,
                )
            })
            .collect()
    }

    /// The panes with a message handed to their `Stop` hook and not yet
    /// taken (for the daemon's start).
    pub fn handed_panes(&self) -> Result<Vec<PaneId>, MailboxError> {
        let mut statement = self.db.prepare_cached(
            "SELECT DISTINCT pane FROM messages
             WHERE state = 'queued' AND handed_ms IS NOT NULL AND pane IS NOT NULL",
        )?;
        let panes: Vec<String> = statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        panes
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|_| MailboxError::Corrupt(format!("pane {p:?}")))
            })
            .collect()
    }

    /// The messages for `session` (and its panes), newest last: the
    /// unread ones only (`delivered`, `unverified`, and `queued` ones,
    /// which will arrive) if asked; at most `limit`, the newest.
    pub fn inbox(
        &self,
        session: SessionId,
        unread_only: bool,
        limit: usize,
    ) -> Result<Vec<Message>, MailboxError> {
        let filter = if unread_only {
            "AND state IN ('queued', 'delivered', 'unverified')"
        } else {
            ""
        };
        let mut messages = self.select(
            &format!("WHERE recipient_session = ?1 {filter} ORDER BY seq DESC LIMIT ?2"),
            params![session.to_string(), limit as i64],
        )?;
        messages.reverse();
        Ok(messages)
    }

    /// `by` acknowledges `id`: `read`. Acknowledging a read message again
    /// is a no-op; a message for another session, or not yet delivered,
    /// is refused.
    pub fn ack(
        &mut self,
        id: &MessageId,
        by: SessionId,
        now_ms: i64,
    ) -> Result<Message, MailboxError> {
        let message = self.expect(id)?;
        if message.to_session != by {
            return Err(MailboxError::NotYours {
                id: id.clone(),
                to: message.to_session,
                by,
            });
        }
        match message.state {
            MessageState::Read => return Ok(message),
            MessageState::Delivered | MessageState::Unverified => {}
            state => {
                return Err(MailboxError::NotDelivered {
                    id: id.clone(),
                    state,
                });
            }
        }
        self.db.execute(
            "UPDATE messages SET state = 'read', updated_ms = ?2 WHERE id = ?1",
            params![id.as_str(), now_ms],
        )?;
        self.expect(id)
    }

    /// How many messages each session has that it has not read (queued,
    /// delivered, unverified), for `@agent-unread` and `@agent-messages`.
    pub fn unread_counts(&self) -> Result<BTreeMap<SessionId, u64>, MailboxError> {
        let mut statement = self.db.prepare_cached(
            "SELECT recipient_session, COUNT(*) FROM messages
             WHERE state IN ('queued', 'delivered', 'unverified') GROUP BY recipient_session",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let (session, count) = row?;
            let session = session
                .parse()
                .map_err(|_| MailboxError::Corrupt(format!("recipient session {session:?}")))?;
            counts.insert(session, count as u64);
        }
        Ok(counts)
    }

    /// Deletes settled messages (every state but `queued`: a message
    /// being typed or handed to a hook is still queued) last changed
    /// before `before_ms`; they are kept for `inbox` and `send --wait`
    /// until then. Returns how many.
    pub fn prune(&mut self, before_ms: i64) -> Result<usize, MailboxError> {
        Ok(self.db.execute(
            "DELETE FROM messages WHERE state != 'queued' AND updated_ms < ?1",
            [before_ms],
        )?)
    }

    /// Runs `f` with `synchronous = NORMAL` instead of `FULL`: for the
    /// typing mark and a typing's outcome, which are on the delivery's
    /// path (an fsync is 4 to 9 ms on the machine of docs/PERFORMANCE.md,
    /// and they were two of figure 15's three). In WAL mode a commit at
    /// NORMAL survives the daemon being killed (it is in the WAL file,
    /// which the next open reads); only a power cut or an OS crash can
    /// lose it, and those take the tmux server and the pane typed into
    /// with them. The next `FULL` commit makes it durable too.
    fn unsynced<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, MailboxError> {
        self.db.pragma_update(None, "synchronous", "NORMAL")?;
        let result = f(&self.db);
        self.db.pragma_update(None, "synchronous", "FULL")?;
        Ok(result?)
    }

    fn select<P: rusqlite::Params>(
        &self,
        tail: &str,
        params: P,
    ) -> Result<Vec<Message>, MailboxError> {
        let mut statement = self
            .db
            .prepare_cached(&format!("SELECT {COLUMNS} FROM messages {tail}"))?;
        let rows = statement.query_map(params, RawMessage::read)?;
        rows.map(|raw| raw?.parse()).collect()
    }
}

/// A row as SQLite holds it.
struct RawMessage {
    id: String,
    send_id: String,
    sender: String,
    sender_name: Option<String>,
    recipient: String,
    recipient_session: String,
    pane: Option<String>,
    thread: String,
    reply_to: Option<String>,
    body: String,
    created_ms: i64,
    expires_ms: i64,
    state: String,
    reason: Option<String>,
    via: Option<String>,
    attempts: i64,
    updated_ms: i64,
    handed_ms: Option<i64>,
}

impl RawMessage {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            send_id: row.get(1)?,
            sender: row.get(2)?,
            sender_name: row.get(3)?,
            recipient: row.get(4)?,
            recipient_session: row.get(5)?,
            pane: row.get(6)?,
            thread: row.get(7)?,
            reply_to: row.get(8)?,
            body: row.get(9)?,
            created_ms: row.get(10)?,
            expires_ms: row.get(11)?,
            state: row.get(12)?,
            reason: row.get(13)?,
            via: row.get(14)?,
            attempts: row.get(15)?,
            updated_ms: row.get(16)?,
            handed_ms: row.get(17)?,
        })
    }

    fn parse(self) -> Result<Message, MailboxError> {
        let bad = |what: &str, value: &str| MailboxError::Corrupt(format!("{what} {value:?}"));
        let id = |what: &str, value: String| {
            MessageId::try_from(value.clone()).map_err(|_| bad(what, &value))
        };
        Ok(Message {
            id: id("id", self.id)?,
            send_id: id("send id", self.send_id)?,
            from: self
                .sender
                .parse()
                .map_err(|_| bad("sender", &self.sender))?,
            from_name: self.sender_name,
            to: self
                .recipient
                .parse()
                .map_err(|_| bad("recipient", &self.recipient))?,
            to_session: self
                .recipient_session
                .parse()
                .map_err(|_| bad("recipient session", &self.recipient_session))?,
            pane: match self.pane {
                Some(pane) => Some(pane.parse().map_err(|_| bad("pane", &pane))?),
                None => None,
            },
            thread: id("thread", self.thread)?,
            reply_to: self.reply_to.map(|r| id("reply-to", r)).transpose()?,
            body: self.body,
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
            state: MessageState::parse(&self.state).ok_or_else(|| bad("state", &self.state))?,
            reason: self.reason,
            via: match self.via.as_deref() {
                None => None,
                Some("hook") => Some(Via::Hook),
                Some("pane") => Some(Via::Pane),
                Some(other) => return Err(bad("via", other)),
            },
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            updated_ms: self.updated_ms,
            handed_ms: self.handed_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: SessionId = SessionId(1);
    const S2: SessionId = SessionId(2);

    fn new(to: Recipient, body: &str) -> NewMessage {
        let id = MessageId::generate();
        NewMessage {
            id: id.clone(),
            send_id: id,
            from: Sender::Session(S1),
            from_name: Some("one".into()),
            to,
            to_session: match to {
                Recipient::Session(s) => s,
                Recipient::Pane(_) => S2,
            },
            reply_to: None,
            body: body.into(),
            expires_ms: 1_000_000,
        }
    }

    fn to_s2(body: &str) -> NewMessage {
        new(Recipient::Session(S2), body)
    }

    #[test]
    fn a_posted_message_is_queued_with_everything_it_was_given() {
        let mut mailbox = Mailbox::in_memory().unwrap();
        let message = to_s2("hi \"there\"; #{x} $(rm -rf /) ✓ \x1b[31m");
        let stored = mailbox.post(std::slice::from_ref(&message), 10).unwrap();
        assert_eq!(stored.len(), 1);
        let stored = &stored[0];
        assert_eq!(stored.id, message.id);
        assert_eq!(stored.thread, message.id);
        assert_eq!(stored.state, MessageState::Queued);
        assert_eq!(stored.body, message.body);
        assert_eq!(stored.from, Sender::Session(S1));
        assert_eq!(stored.to, Recipient::Session(S2));
        assert_eq!(stored.created_ms, 10);
        assert_eq!(mailbox.get(&message.id).unwrap().as_ref(), Some(stored));
    }

    #[test]
    fn posting_the_same_id_again_changes_nothing() {
        let mut mailbox = Mailbox::in_memory().unwrap();
        let message = to_s2("once");
        let first = mailbox.post(std::slice::from_ref(&message), 10).unwrap();
        let mut again = message.clone();
        again.body = "twice".into();
        let second = mailbox.post(&[again], 20).unwrap();
        assert_eq!(first, second);
        assert_eq!(mailbox.inbox(S2, false, 10).unwrap().len(), 1);
    }

    #[test]
    fn each_recipient_is_offered_its_oldest_message_only_and_in_order() {
        let mut mailbox = Mailbox::in_memory().unwrap();
        let a = to_s2("a");
        let b = to_s2("b");
        let c = new(Recipient::Pane(PaneId(7)), "c");
        mailbox.post(&[a.clone(), b.clone(), c.clone()], 1).unwrap();
        let heads: Vec<_> = mailbox
            .heads(1)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(heads, ["a", "c"]);
        // `a` waits for a retry: `b` must not overtake it.
        assert!(mailbox.begin_typing(&a.id, PaneId(3), None, 2).unwrap());
        assert!(
            !mailbox.begin_typing(&a.id, PaneId(3), None, 2).unwrap(),
            "typed twice"
        );
        mailbox.retry(&a.id, "busy", 100, 3).unwrap();
        let heads: Vec<_> = mailbox
            .heads(50)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(heads, ["c"]);
        assert_eq!(mailbox.next_due(50).unwrap(), Some(100));
        let heads: Vec<_> = mailbox
            .heads(100)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(heads, ["a", "c"]);
        assert!(mailbox.begin_typing(&a.id, PaneId(3), None, 101).unwrap());
        let done = mailbox
            .finish(&a.id, MessageState::Delivered, Via::Pane, 102)
            .unwrap();
        assert_eq!(
            (done.state, done.attempts, done.pane),
            (MessageState::Delivered, 2, Some(PaneId(3)))
        );
        let heads: Vec<_> = mailbox
            .heads(102)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(heads, ["b", "c"]);
    }

    #[test]
    fn a_row_left_typing_is_found_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailbox.db");
        let message = to_s2("typed?");
        {
            let mut mailbox = Mailbox::open(&path).unwrap();
            mailbox.post(std::slice::from_ref(&message), 1).unwrap();
            mailbox
                .begin_typing(&message.id, PaneId(4), None, 2)
                .unwrap();
            // Dropped here as if killed: the commit is all there is.
        }
        let mailbox = Mailbox::open(&path).unwrap();
        let left = mailbox.typing_left().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, message.id);
        assert_eq!(left[0].pane, Some(PaneId(4)));
        assert!(
            mailbox.heads(5).unwrap().is_empty(),
            "a row being typed is not offered"
        );
    }

    #[test]
    fn a_hook_is_handed_the_oldest_message_which_is_delivered_once_taken() {
        let mut mailbox = Mailbox::in_memory().unwrap();
        let a = to_s2("a");
        let mut b = to_s2("b");
        b.expires_ms = i64::MAX;
        mailbox.post(&[a.clone(), b.clone()], 1).unwrap();
        let pane = PaneId(9);
        let handed = mailbox.hand_over(pane, Some(S2), 2).unwrap().unwrap();
        assert_eq!(
            (
                handed.id.clone(),
                handed.state,
                handed.handed_ms,
                handed.pane
            ),
            (a.id.clone(), MessageState::Queued, Some(2), Some(pane))
        );
        // The scheduler may not type it as it stands (its hand-over mark
        // is not what it read), and it does not expire meanwhile.
        assert!(!mailbox.begin_typing(&a.id, pane, None, 3).unwrap());
        assert!(mailbox.expire(a.expires_ms + 1).unwrap().is_empty());
        // Another pane of the session is not handed it, nor the next one.
        assert!(
            mailbox
                .hand_over(PaneId(10), Some(S2), 3)
                .unwrap()
                .is_none()
        );
        // The agent stopped again without taking it: offered again.
        let again = mailbox.hand_over(pane, Some(S2), 4).unwrap().unwrap();
        assert_eq!((again.id.clone(), again.handed_ms), (a.id.clone(), Some(4)));
        assert!(mailbox.taken(PaneId(10), 5).unwrap().is_empty());
        let taken = mailbox.taken(pane, 5).unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(
            (
                taken[0].id.clone(),
                taken[0].state,
                taken[0].via,
                taken[0].handed_ms
            ),
            (a.id.clone(), MessageState::Delivered, Some(Via::Hook), None)
        );
        assert!(mailbox.taken(pane, 6).unwrap().is_empty(), "taken twice");
        assert_eq!(
            mailbox.hand_over(pane, Some(S2), 7).unwrap().unwrap().id,
            b.id
        );
        assert_eq!(mailbox.handed_panes().unwrap(), [pane]);
        // A hand-over that the scheduler types (the agent showed up idle
        // at its prompt since) is typed once, with the mark it read.
        assert!(mailbox.begin_typing(&b.id, pane, Some(7), 8).unwrap());
        assert!(mailbox.handed_panes().unwrap().is_empty());
        assert!(mailbox.taken(pane, 9).unwrap().is_empty());
        mailbox
            .finish(&b.id, MessageState::Delivered, Via::Pane, 9)
            .unwrap();
        assert!(mailbox.hand_over(pane, Some(S2), 10).unwrap().is_none());
        // Another session's pane gets nothing.
        let c = to_s2("c");
        mailbox.post(std::slice::from_ref(&c), 11).unwrap();
        assert!(
            mailbox
                .hand_over(PaneId(10), Some(SessionId(8)), 12)
                .unwrap()
                .is_none()
        );
        // One being typed is not handed over, and holds back the next.
        assert!(mailbox.begin_typing(&c.id, pane, None, 13).unwrap());
        mailbox.post(&[to_s2("d")], 14).unwrap();
        assert!(mailbox.hand_over(pane, Some(S2), 15).unwrap().is_none());
    }

    #[test]
    fn pruning_deletes_settled_messages_only_and_only_old_ones() {
        let mut mailbox = Mailbox::in_memory().unwrap();
        let [mut queued, typing, delivered, read, failed, expired, fresh] = [
            "queued",
            "typing",
            "delivered",
            "read",
            "failed",
            "expired",
            "fresh",
        ]
        .map(to_s2);
        queued.expires_ms = i64::MAX;
        let all = [
            &queued, &typing, &delivered, &read, &failed, &expired, &fresh,
        ];
        mailbox.post(&all.map(|m| (*m).clone()), 1).unwrap();
        mailbox
            .begin_typing(&typing.id, PaneId(1), None, 2)
            .unwrap();
        for m in [&delivered, &read, &fresh] {
            mailbox.begin_typing(&m.id, PaneId(1), None, 2).unwrap();
            mailbox
                .finish(
                    &m.id,
                    MessageState::Delivered,
                    Via::Pane,
                    if m.id == fresh.id { 500 } else { 3 },
                )
                .unwrap();
        }
        mailbox.ack(&read.id, S2, 4).unwrap();
        mailbox.fail(&failed.id, "recipient-gone", 5).unwrap();
        mailbox.expire(1_000_000).unwrap();
        // Everything but `fresh` settled long ago (expired at 1,000,000
        // is the newest of those).
        assert_eq!(
            mailbox.prune(100).unwrap(),
            3,
            "delivered, read, failed settled before 100"
        );
        assert_eq!(
            mailbox.prune(2_000_000).unwrap(),
            2,
            "fresh and expired, later"
        );
        let left: Vec<_> = mailbox
            .inbox(S2, false, 100)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(left, ["queued", "typing"], "a queued message was pruned");
        assert_eq!(mailbox.prune(i64::MAX).unwrap(), 0);
    }

    #[test]
    fn the_rate_counts_a_senders_rows_of_the_window_whatever_became_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailbox.db");
        {
            let mut mailbox = Mailbox::open(&path).unwrap();
            mailbox.post(&[to_s2("a"), to_s2("b")], 1_000).unwrap();
            let c = to_s2("c");
            mailbox.post(std::slice::from_ref(&c), 2_000).unwrap();
            mailbox.fail(&c.id, "recipient-gone", 2_001).unwrap();
        }
        // A new process (a restarted daemon) counts what the last one took.
        let mailbox = Mailbox::open(&path).unwrap();
        assert_eq!(mailbox.sent_since(Sender::Session(S1), 0).unwrap(), 3);
        assert_eq!(mailbox.sent_since(Sender::Session(S1), 1_000).unwrap(), 1);
        assert_eq!(mailbox.sent_since(Sender::User, 0).unwrap(), 0);
    }

    #[test]
    fn a_version_1_mailbox_is_migrated_and_keeps_its_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailbox.db");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = 1; COMMIT;"))
                .unwrap();
            db.execute(
                "INSERT INTO messages (id, send_id, sender, recipient, recipient_session, thread,
                     body, created_ms, expires_ms, state, due_ms, updated_ms)
                 VALUES ('m-0000000000000001', 'm-0000000000000001', 'user', '$2', '$2',
                     'm-0000000000000001', 'old', 1, 9, 'queued', 1, 1)",
                [],
            )
            .unwrap();
        }
        let mailbox = Mailbox::open(&path).unwrap();
        assert_eq!(mailbox.inbox(S2, false, 10).unwrap()[0].body, "old");
        assert_eq!(mailbox.sent_since(Sender::User, 0).unwrap(), 1);
    }

    #[test]
    fn only_the_recipient_acknowledges_and_only_what_it_has() {
        let mut mailbox = Mailbox::in_memory().unwrap();
        let a = to_s2("a");
        mailbox.post(std::slice::from_ref(&a), 1).unwrap();
        assert!(matches!(
            mailbox.ack(&a.id, S2, 2),
            Err(MailboxError::NotDelivered { .. })
        ));
        mailbox.begin_typing(&a.id, PaneId(1), None, 2).unwrap();
        mailbox
            .finish(&a.id, MessageState::Unverified, Via::Pane, 3)
            .unwrap();
        assert!(matches!(
            mailbox.ack(&a.id, S1, 4),
            Err(MailboxError::NotYours { .. })
        ));
        assert_eq!(mailbox.unread_counts().unwrap().get(&S2), Some(&1));
        assert_eq!(mailbox.ack(&a.id, S2, 5).unwrap().state, MessageState::Read);
        assert_eq!(mailbox.ack(&a.id, S2, 6).unwrap().state, MessageState::Read);
        assert_eq!(mailbox.unread_counts().unwrap().get(&S2), None);
        let unknown = MessageId::generate();
        assert!(matches!(
            mailbox.ack(&unknown, S2, 7),
            Err(MailboxError::NoSuchMessage(_))
        ));
    }

    #[test]
    fn expiry_fails_queued_messages_and_replies_join_their_thread() {
        let mut mailbox = Mailbox::in_memory().unwrap();
        let a = to_s2("a");
        mailbox.post(std::slice::from_ref(&a), 1).unwrap();
        let mut reply = new(Recipient::Session(S1), "re");
        reply.reply_to = Some(a.id.clone());
        reply.expires_ms = 5_000_000;
        let stored = mailbox.post(&[reply], 2).unwrap();
        assert_eq!(stored[0].thread, a.id);
        let expired = mailbox.expire(1_000_000).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].state, MessageState::Expired);
        assert_eq!(mailbox.inbox(S1, true, 10).unwrap().len(), 1);
        assert_eq!(
            mailbox.lookup(std::slice::from_ref(&a.id)).unwrap()[0].state,
            MessageState::Expired
        );
        assert_eq!(
            mailbox
                .fail(&stored[0].id, "recipient-gone", 3)
                .unwrap()
                .reason
                .as_deref(),
            Some("recipient-gone")
        );
    }
}
