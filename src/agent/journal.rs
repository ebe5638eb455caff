//! The lifecycle journal: the daemon's model of each session, kept in the
//! outbox database so that what happens while no daemon watches is not
//! lost.
//!
//! Without it, a daemon knows only what it sees: a session killed or
//! detached while the daemon was down (or while its events waited in memory
//! and a SIGKILL took them) never completes its goal or saves its context.
//! So the reactor writes, in the same SQLite transaction as the actions an
//! event causes ([`Outbox::enqueue_journaled`](super::outbox::Outbox::enqueue_journaled)),
//! what it now believes of the session: its key, name, whether it is
//! attached, its `@agent-*` options (goal, type, group, role), the last
//! context it captured, and the tmux server's identity with the time the
//! daemon last wrote. Values kept from results (`{goal_id}`) are already
//! durable in the same database (the `kept` table, by session key).
//!
//! At start the reactor [`diff`]s the journal against tmux's listing and
//! makes the events that happened meanwhile, marked `late`: `session-closed`
//! for sessions gone (all of them when the server's start time changed),
//! `session-renamed`, `session-detached` and `session-attached` for those
//! that changed. An event is journaled only when committed, so whatever a
//! SIGKILL drops from the in-memory queues is found again by the diff.
//!
//! What no journal can show is a change undone while nobody watched (a
//! session attached and detached again, renamed and renamed back): the diff
//! compares two pictures, not the moves between them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use super::context::SessionContext;
use super::identity::ServerIdentity;
use super::vars::Memo;
use crate::control::SessionId;
use crate::state::{EventKind, LifecycleEvent};

/// The journal's tables, created with the outbox's (and harmless to repeat,
/// so outboxes made before the journal get them on their next open).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS journal (
    session_key TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    created     INTEGER NOT NULL,
    attached    INTEGER NOT NULL,
    options     TEXT NOT NULL,
    context     TEXT,
    changed_at  INTEGER NOT NULL
);
-- One row: the server the journal describes, and when a daemon last wrote.
CREATE TABLE IF NOT EXISTS journal_server (
    one        INTEGER PRIMARY KEY CHECK (one = 1),
    host       TEXT NOT NULL,
    start_time TEXT NOT NULL,
    seen_at    INTEGER NOT NULL
);
";

/// What the daemon believed of one session when it last committed.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub session_key: String,
    pub session_id: SessionId,
    pub name: String,
    /// Unix seconds, tmux's `session_created`.
    pub created: i64,
    pub attached: bool,
    /// The `@agent-*` options as last read.
    pub options: BTreeMap<String, String>,
    /// The last context captured (what a late close sends).
    pub context: Option<SessionContext>,
    /// Unix ms of the commit that wrote this row.
    pub changed_at: i64,
}

impl JournalEntry {
    /// The row for a session as the reactor remembers it.
    pub(crate) fn of(session_key: &str, id: SessionId, memo: &Memo, now_ms: i64) -> Self {
        Self {
            session_key: session_key.to_owned(),
            session_id: id,
            name: memo.name.clone(),
            created: memo.created,
            attached: memo.attached,
            options: memo.options.clone(),
            context: memo.context.clone(),
            changed_at: now_ms,
        }
    }

    /// What the reactor remembers of a session it knows only from here.
    pub(crate) fn memo(&self) -> Memo {
        Memo {
            name: self.name.clone(),
            created: self.created,
            options: self.options.clone(),
            context: self.context.clone(),
            attached: self.attached,
        }
    }
}

/// The server a journal describes, and when a daemon last wrote to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMark {
    pub host: String,
    pub start_time: String,
    /// Unix ms.
    pub seen_at: i64,
}

/// The whole journal, as read at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Journal {
    /// `None` when no daemon has written a journal here yet.
    pub server: Option<ServerMark>,
    pub entries: Vec<JournalEntry>,
}

/// One change written with an event's actions.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalChange {
    /// The session is as this row says.
    Session(Box<JournalEntry>),
    /// The session has closed: nothing is left to remember.
    Closed(String),
    /// A daemon watches this server, now.
    Seen(ServerIdentity),
}

/// Errors reading the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("journal row {key} holds an invalid {what}: {detail}")]
    Row {
        key: String,
        what: &'static str,
        detail: String,
    },
}

/// Writes `changes` inside the caller's transaction (the outbox's, holding
/// the event's actions): both are committed, or neither.
pub(crate) fn apply(
    tx: &Transaction<'_>,
    changes: &[JournalChange],
    now_ms: i64,
) -> rusqlite::Result<()> {
    for change in changes {
        match change {
            JournalChange::Session(entry) => {
                let options = serde_json::to_string(&entry.options).unwrap_or_default();
                let context = entry
                    .context
                    .as_ref()
                    .and_then(|c| serde_json::to_string(c).ok());
                tx.prepare_cached(
                    "INSERT INTO journal
                     (session_key, session_id, name, created, attached, options, context, changed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (session_key) DO UPDATE SET
                         name = excluded.name, attached = excluded.attached,
                         options = excluded.options,
                         context = COALESCE(excluded.context, journal.context),
                         changed_at = excluded.changed_at",
                )?
                .execute(params![
                    entry.session_key,
                    entry.session_id.to_string(),
                    entry.name,
                    entry.created,
                    entry.attached,
                    options,
                    context,
                    entry.changed_at,
                ])?;
            }
            JournalChange::Closed(key) => {
                tx.prepare_cached("DELETE FROM journal WHERE session_key = ?1")?
                    .execute(params![key])?;
            }
            JournalChange::Seen(identity) => {
                tx.prepare_cached(
                    "INSERT INTO journal_server (one, host, start_time, seen_at)
                     VALUES (1, ?1, ?2, ?3)
                     ON CONFLICT (one) DO UPDATE SET host = excluded.host,
                         start_time = excluded.start_time, seen_at = excluded.seen_at",
                )?
                .execute(params![identity.host, identity.start_time, now_ms])?;
            }
        }
    }
    Ok(())
}

/// Reads the whole journal (a handful of rows per session).
pub(crate) fn read(db: &rusqlite::Connection) -> Result<Journal, JournalError> {
    let server = db
        .query_row(
            "SELECT host, start_time, seen_at FROM journal_server WHERE one = 1",
            [],
            |row| {
                Ok(ServerMark {
                    host: row.get(0)?,
                    start_time: row.get(1)?,
                    seen_at: row.get(2)?,
                })
            },
        )
        .optional()?;
    let mut stmt = db.prepare_cached(
        "SELECT session_key, session_id, name, created, attached, options, context, changed_at
         FROM journal ORDER BY session_key",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, bool>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, Option<String>>(6)?,
            row.get::<_, i64>(7)?,
        ))
    })?;
    let mut entries = Vec::new();
    for row in rows {
        let (key, id, name, created, attached, options, context, changed_at) = row?;
        let bad = |what, detail: String| JournalError::Row {
            key: key.clone(),
            what,
            detail,
        };
        let session_id = id
            .parse::<SessionId>()
            .map_err(|_| bad("session id", id.clone()))?;
        let options = serde_json::from_str(&options).map_err(|e| bad("options", e.to_string()))?;
        // A context that no longer reads (an older shape) is as good as none:
        // the late close falls back to what the row says.
        let context = context.and_then(|c| serde_json::from_str(&c).ok());
        entries.push(JournalEntry {
            session_key: key,
            session_id,
            name,
            created,
            attached,
            options,
            context,
            changed_at,
        });
    }
    Ok(Journal { server, entries })
}

/// A session in tmux's listing, as the diff needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: SessionId,
    pub name: String,
    pub created: i64,
    pub attached: bool,
}

/// What happened while no daemon watched, found by [`diff`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gap {
    /// Sessions the journal has and tmux no longer does; every one of them
    /// when the server was restarted.
    pub closed: Vec<JournalEntry>,
    /// Late events of sessions that still exist, in causal order per
    /// session (a rename first, so that a detach carries the new name).
    pub changed: Vec<LifecycleEvent>,
    /// Sessions tmux has and the journal does not (created meanwhile, or
    /// from before there was a journal): the reactor adopts them.
    pub unknown: Vec<SessionId>,
    /// The server's start time differs from the journal's.
    pub restarted: bool,
}

/// Diffs the journal against tmux's listing of `identity`'s server.
/// `now` is the time the late events carry (when they were found).
pub fn diff(
    journal: &Journal,
    identity: &ServerIdentity,
    listing: &[Listed],
    now: DateTime<Utc>,
) -> Gap {
    let restarted = journal
        .server
        .as_ref()
        .is_some_and(|mark| mark.host != identity.host || mark.start_time != identity.start_time);
    let now_listed: HashMap<String, &Listed> = listing
        .iter()
        .map(|l| (identity.session_key(l.id).to_string(), l))
        .collect();
    let mut gap = Gap {
        restarted,
        ..Gap::default()
    };
    let mut journaled = HashMap::new();
    for entry in &journal.entries {
        // After a restart `$3` is somebody else's session: only a key of
        // this server, found in the listing, is the same session.
        match now_listed.get(&entry.session_key) {
            Some(listed) if identity.owns(&entry.session_key) => {
                journaled.insert(listed.id, ());
                let event = |kind, old_name: Option<String>| LifecycleEvent {
                    kind,
                    session_id: listed.id,
                    session: listed.name.clone(),
                    time: now,
                    client: None,
                    old_name,
                    session_created: Some(listed.created),
                    late: true,
                    agent: None,
                };
                if listed.name != entry.name {
                    gap.changed
                        .push(event(EventKind::SessionRenamed, Some(entry.name.clone())));
                }
                match (entry.attached, listed.attached) {
                    (true, false) => gap.changed.push(event(EventKind::SessionDetached, None)),
                    (false, true) => gap.changed.push(event(EventKind::SessionAttached, None)),
                    _ => {}
                }
            }
            _ => gap.closed.push(entry.clone()),
        }
    }
    gap.unknown = listing
        .iter()
        .filter(|l| !journaled.contains_key(&l.id))
        .map(|l| l.id)
        .collect();
    gap
}

/// The `session-closed` event of a session found gone.
pub(crate) fn closed_event(entry: &JournalEntry, now: DateTime<Utc>) -> LifecycleEvent {
    LifecycleEvent {
        kind: EventKind::SessionClosed,
        session_id: entry.session_id,
        session: entry.name.clone(),
        time: now,
        client: None,
        old_name: None,
        session_created: Some(entry.created),
        agent: None,
        late: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(start: &str) -> ServerIdentity {
        ServerIdentity {
            host: "box".into(),
            start_time: start.into(),
        }
    }

    fn entry(id: u32, name: &str, attached: bool) -> JournalEntry {
        JournalEntry {
            session_key: identity("100").session_key(SessionId(id)).to_string(),
            session_id: SessionId(id),
            name: name.into(),
            created: 1,
            attached,
            options: BTreeMap::new(),
            context: None,
            changed_at: 0,
        }
    }

    fn listed(id: u32, name: &str, attached: bool) -> Listed {
        Listed {
            id: SessionId(id),
            name: name.into(),
            created: 1,
            attached,
        }
    }

    fn journal(entries: Vec<JournalEntry>) -> Journal {
        Journal {
            server: Some(ServerMark {
                host: "box".into(),
                start_time: "100".into(),
                seen_at: 0,
            }),
            entries,
        }
    }

    fn kinds(gap: &Gap) -> Vec<(EventKind, u32, &str)> {
        gap.changed
            .iter()
            .map(|e| (e.kind, e.session_id.0, e.session.as_str()))
            .collect()
    }

    #[test]
    fn the_diff_finds_what_happened_meanwhile() {
        let journal = journal(vec![
            entry(1, "same", false),
            entry(2, "gone", true),
            entry(3, "was-attached", true),
            entry(4, "was-detached", false),
            entry(5, "old-name", true),
        ]);
        let listing = [
            listed(1, "same", false),
            listed(3, "was-attached", false),
            listed(4, "was-detached", true),
            listed(5, "new-name", false),
            listed(6, "new", false),
        ];
        let gap = diff(&journal, &identity("100"), &listing, Utc::now());
        assert!(!gap.restarted);
        assert_eq!(
            gap.closed
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["gone"]
        );
        assert_eq!(
            kinds(&gap),
            [
                (EventKind::SessionDetached, 3, "was-attached"),
                (EventKind::SessionAttached, 4, "was-detached"),
                (EventKind::SessionRenamed, 5, "new-name"),
                (EventKind::SessionDetached, 5, "new-name"),
            ]
        );
        assert_eq!(gap.changed[2].old_name.as_deref(), Some("old-name"));
        assert!(gap.changed.iter().all(|e| e.late));
        assert_eq!(gap.unknown, [SessionId(6)]);
    }

    #[test]
    fn a_restarted_server_closes_every_journaled_session() {
        let journal = journal(vec![entry(1, "a", false), entry(2, "b", true)]);
        // The new server reuses the ids: they are other sessions.
        let listing = [listed(1, "a", false), listed(2, "other", false)];
        let gap = diff(&journal, &identity("200"), &listing, Utc::now());
        assert!(gap.restarted);
        assert_eq!(gap.closed.len(), 2);
        assert!(gap.changed.is_empty());
        assert_eq!(gap.unknown, [SessionId(1), SessionId(2)]);
        let event = closed_event(&gap.closed[1], Utc::now());
        assert_eq!((event.kind, event.late), (EventKind::SessionClosed, true));
    }

    #[test]
    fn rows_survive_the_database_with_the_context() {
        let mut db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(SCHEMA).unwrap();
        let mut row = entry(3, "work", true);
        row.options
            .insert("@agent-goal".into(), "fix the build".into());
        let tx = db.transaction().unwrap();
        apply(
            &tx,
            &[
                JournalChange::Session(Box::new(row.clone())),
                JournalChange::Session(Box::new(entry(4, "other", false))),
                JournalChange::Closed(entry(4, "other", false).session_key),
                JournalChange::Seen(identity("100")),
            ],
            42,
        )
        .unwrap();
        tx.commit().unwrap();
        let read = read(&db).unwrap();
        assert_eq!(read.entries, [row]);
        assert_eq!(
            read.server,
            Some(ServerMark {
                host: "box".into(),
                start_time: "100".into(),
                seen_at: 42
            })
        );
    }
}
