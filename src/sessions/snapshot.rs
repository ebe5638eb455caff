//! The daemon's session snapshots (DESIGN.md D17, issue #14 item 3): what
//! each session looked like when last seen, kept in the outbox database so
//! that `tmux-agent restore` can bring it back after `kill-server`, a crash
//! or a reboot.
//!
//! A snapshot is one session: its name, its `@agent-*` options (goal, type,
//! group, the goal id, the group join stamp), and its windows (index, name,
//! layout string) and panes (cwd, the command it was started with, the
//! agent in it and the agent's own session id, which is the resume id:
//! Claude's `SessionStart` hook reports it, and the status keeper keeps it
//! in the pane's `@agent-session-id`). It is read from tmux in one
//! `list-panes -s` and one `show-options` ([`capture`]).
//!
//! # When
//!
//! The [`keeper`](super::keeper) takes one after each live event of a
//! session (created, attached, detached, renamed, an agent's status: the
//! hook that brings the resume id is one of them), and of every session on
//! a timer (`[snapshots] every`, default 60 s, which is also what catches a
//! split or a layout change, which tmux reports as no lifecycle event). A
//! snapshot identical to the session's latest is not stored again; the
//! latest one's time is moved instead, so "when" is the last time it was
//! seen so.
//!
//! A close seen live marks the session's snapshots closed: a session the
//! user ended is not brought back by `restore --all` (it can still be
//! restored by name). When the server exits (`kill-server`, a crash), tmux
//! can no longer be read: the latest snapshot, at most `every` old, is what
//! restore has, and no close is recorded.
//!
//! # Retention
//!
//! At most `[snapshots] per_session` (default 5) snapshots per session
//! name and `[snapshots] total` (default 500) in all; the oldest go first,
//! pruned in the same transaction as the insert that passes the bound.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::control::SessionId;
use crate::control::command::Command;
use crate::control::connection::{ControlError, ControlHandle};
use crate::control::options::{decode_listed, listed_option, parse_options, split_command};
use crate::schema;

/// The snapshots table: the migration step the outbox applies (schema
/// version 4, see `agent::outbox`). `body` is a [`SessionSnapshot`] as
/// JSON.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS snapshots (
    id          INTEGER PRIMARY KEY,
    session     TEXT NOT NULL,
    session_key TEXT NOT NULL,
    taken_at    INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    closed_at   INTEGER,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_session ON snapshots (session, id);
CREATE INDEX IF NOT EXISTS snapshots_by_key ON snapshots (session_key, id);
-- Restores under way: the note `restore` leaves under a session's name
-- before creating it, taken by the reactor on that session's creation.
CREATE TABLE IF NOT EXISTS restores (
    session     TEXT PRIMARY KEY,
    snapshot_id INTEGER NOT NULL,
    goal_id     TEXT,
    asked_at    INTEGER NOT NULL
);
";

/// How long a restore's note waits for its session to be created: past
/// this, a session of that name is a new one (the restore failed, or it
/// ran with no daemon, whose next start adopts the session as restored
/// only within this time).
pub const RESTORE_NOTE_TTL_MS: i64 = 10 * 60 * 1000;

/// The note a restore leaves before creating a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRestore {
    pub session: String,
    pub snapshot_id: i64,
    pub goal_id: Option<String>,
}

/// Leaves the notes of a restore (replacing older ones of the same names).
pub(crate) fn expect_restores(
    tx: &Transaction<'_>,
    notes: &[PendingRestore],
    at_ms: i64,
) -> rusqlite::Result<()> {
    let mut put = tx.prepare_cached(
        "INSERT OR REPLACE INTO restores (session, snapshot_id, goal_id, asked_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for note in notes {
        put.execute(params![note.session, note.snapshot_id, note.goal_id, at_ms])?;
    }
    Ok(())
}

/// Takes the note of session `name`, if one was left less than
/// [`RESTORE_NOTE_TTL_MS`] ago (an older one is dropped).
pub(crate) fn take_restore(
    tx: &Transaction<'_>,
    name: &str,
    now_ms: i64,
) -> rusqlite::Result<Option<PendingRestore>> {
    let found: Option<(i64, Option<String>, i64)> = tx
        .query_row(
            "SELECT snapshot_id, goal_id, asked_at FROM restores WHERE session = ?1",
            [name],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((snapshot_id, goal_id, asked_at)) = found else {
        return Ok(None);
    };
    tx.execute("DELETE FROM restores WHERE session = ?1", [name])?;
    Ok(
        (now_ms - asked_at <= RESTORE_NOTE_TTL_MS).then(|| PendingRestore {
            session: name.to_owned(),
            snapshot_id,
            goal_id,
        }),
    )
}

/// The default of `[snapshots] per_session`.
pub const PER_SESSION: usize = 5;
/// The default of `[snapshots] total`.
pub const TOTAL: usize = 500;

/// One session as it was: what restore recreates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    pub name: String,
    /// Its `@agent-*` session options worth bringing back: the
    /// user-editable ones (goal, type, group), the goal id and the join
    /// stamp, and the shared context (`@agent-ctx-*`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub windows: Vec<WindowSnapshot>,
}

/// A window as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSnapshot {
    pub index: u32,
    pub name: String,
    /// tmux's layout string (`#{window_layout}`).
    pub layout: String,
    #[serde(default)]
    pub active: bool,
    pub panes: Vec<PaneSnapshot>,
}

/// A pane as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaneSnapshot {
    pub index: u32,
    pub cwd: String,
    /// The command the pane was started with, as words
    /// (`#{pane_start_command}` split back, see
    /// `control::options::split_command`): one word is run by the shell,
    /// several directly; none is the default shell.
    #[serde(default)]
    pub command: Vec<String>,
    /// The agent in the pane (`@agent-kind`: `claude`, `codex`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The agent's own session id (`@agent-session-id`): the resume id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_id: Option<String>,
    #[serde(default)]
    pub active: bool,
}

impl SessionSnapshot {
    /// The panes, with their window's index.
    pub fn panes(&self) -> impl Iterator<Item = (u32, &PaneSnapshot)> {
        self.windows
            .iter()
            .flat_map(|w| w.panes.iter().map(move |p| (w.index, p)))
    }

    /// The goal id the session had (`@agent-goal-id`).
    pub fn goal_id(&self) -> Option<&str> {
        self.options
            .get(schema::session::GOAL_ID)
            .map(String::as_str)
            .filter(|id| !id.is_empty())
    }
}

/// Why a snapshot was taken, as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// After a lifecycle event of the session (its name is in `event`).
    Event,
    /// The periodic snapshot of every session.
    Checkpoint,
    /// The daemon was asked to stop while tmux still ran.
    DaemonStop,
    /// Imported from a tmux-resurrect save file.
    Import,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Checkpoint => "checkpoint",
            Self::DaemonStop => "daemon-stop",
            Self::Import => "import",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "checkpoint" => Self::Checkpoint,
            "daemon-stop" => Self::DaemonStop,
            "import" => Self::Import,
            _ => Self::Event,
        }
    }
}

/// A snapshot as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredSnapshot {
    pub id: i64,
    /// The session's key (`host:server-start:$id`, see `agent::identity`),
    /// or `import:FILE` for an imported one: where its saved contexts and
    /// goal are found.
    pub session_key: String,
    #[serde(serialize_with = "rfc3339")]
    pub taken_at: DateTime<Utc>,
    pub reason: Reason,
    /// When the session was seen closing, if it was.
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub closed_at: Option<DateTime<Utc>>,
    pub snapshot: SessionSnapshot,
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// The bounds of [`insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub per_session: usize,
    pub total: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            per_session: PER_SESSION,
            total: TOTAL,
        }
    }
}

/// What [`insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// A new row, with how many old ones retention pruned.
    New { id: i64, pruned: usize },
    /// The session's latest snapshot was the same: only its time moved.
    Same { id: i64 },
}

/// Stores `snapshot` of session `key`, unless it is what the session's
/// latest snapshot already says; then prunes past `retention`.
pub(crate) fn insert(
    tx: &Transaction<'_>,
    key: &str,
    snapshot: &SessionSnapshot,
    reason: Reason,
    at_ms: i64,
    retention: Retention,
) -> rusqlite::Result<Kept> {
    let body = serde_json::to_string(snapshot).expect("a snapshot serializes");
    let latest: Option<(i64, String)> = tx
        .query_row(
            "SELECT id, body FROM snapshots INDEXED BY snapshots_by_key
             WHERE session_key = ?1 AND closed_at IS NULL ORDER BY id DESC LIMIT 1",
            [key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((id, old)) = latest
        && old == body
    {
        tx.execute(
            "UPDATE snapshots SET taken_at = ?2, reason = ?3 WHERE id = ?1",
            params![id, at_ms, reason.as_str()],
        )?;
        return Ok(Kept::Same { id });
    }
    tx.execute(
        "INSERT INTO snapshots (session, session_key, taken_at, reason, body)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![snapshot.name, key, at_ms, reason.as_str(), body],
    )?;
    let id = tx.last_insert_rowid();
    let per_session = i64::try_from(retention.per_session.max(1)).unwrap_or(i64::MAX);
    let total = i64::try_from(retention.total.max(1)).unwrap_or(i64::MAX);
    let mut pruned = tx.execute(
        "DELETE FROM snapshots WHERE session = ?1 AND id NOT IN
            (SELECT id FROM snapshots WHERE session = ?1 ORDER BY id DESC LIMIT ?2)",
        params![snapshot.name, per_session],
    )?;
    pruned += tx.execute(
        "DELETE FROM snapshots WHERE id NOT IN
            (SELECT id FROM snapshots ORDER BY id DESC LIMIT ?1)",
        [total],
    )?;
    Ok(Kept::New { id, pruned })
}

/// Marks the snapshots of session `key` closed at `at_ms`.
pub(crate) fn mark_closed(tx: &Transaction<'_>, key: &str, at_ms: i64) -> rusqlite::Result<usize> {
    tx.execute(
        "UPDATE snapshots SET closed_at = ?2 WHERE session_key = ?1 AND closed_at IS NULL",
        params![key, at_ms],
    )
}

/// Which snapshots [`list`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which<'a> {
    /// Every stored snapshot, newest first.
    All,
    /// The latest snapshot of each session name, newest first.
    Latest,
    /// The snapshots of one session name, newest first.
    Named(&'a str),
    /// One snapshot by id.
    Id(i64),
}

/// Reads stored snapshots. A row whose body cannot be read (written by
/// hand, or by a newer build) is an error naming its id, not skipped.
pub(crate) fn list(
    db: &Connection,
    which: Which<'_>,
) -> Result<Vec<StoredSnapshot>, SnapshotError> {
    const COLUMNS: &str = "id, session_key, taken_at, reason, closed_at, body";
    // An outbox of a build before snapshots, opened read-only, has no table.
    let table: Option<i64> = db
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshots'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if table.is_none() {
        return Ok(Vec::new());
    }
    let sql = match which {
        Which::All => format!("SELECT {COLUMNS} FROM snapshots ORDER BY id DESC"),
        Which::Latest => format!(
            "SELECT {COLUMNS} FROM snapshots WHERE id IN
                (SELECT MAX(id) FROM snapshots GROUP BY session)
             ORDER BY taken_at DESC, id DESC"
        ),
        Which::Named(_) => {
            format!("SELECT {COLUMNS} FROM snapshots WHERE session = ?1 ORDER BY id DESC")
        }
        Which::Id(_) => format!("SELECT {COLUMNS} FROM snapshots WHERE id = ?1"),
    };
    let mut stmt = db.prepare(&sql)?;
    let row = |row: &rusqlite::Row<'_>| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, Option<i64>>(4)?,
            row.get::<_, String>(5)?,
        ))
    };
    let rows: Vec<_> = match which {
        Which::All | Which::Latest => stmt.query_map([], row)?.collect::<Result<_, _>>()?,
        Which::Named(name) => stmt.query_map([name], row)?.collect::<Result<_, _>>()?,
        Which::Id(id) => stmt.query_map([id], row)?.collect::<Result<_, _>>()?,
    };
    rows.into_iter()
        .map(|(id, session_key, taken_at, reason, closed_at, body)| {
            let snapshot = serde_json::from_str(&body).map_err(|err| SnapshotError::Corrupt {
                id,
                reason: err.to_string(),
            })?;
            Ok(StoredSnapshot {
                id,
                session_key,
                taken_at: millis(taken_at),
                reason: Reason::parse(&reason),
                closed_at: closed_at.map(millis),
                snapshot,
            })
        })
        .collect()
}

fn millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Snapshots that cannot be read or taken.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "snapshot {id} in the outbox cannot be read ({reason}); drop it with `tmux-agent snapshots drop {id}`"
    )]
    Corrupt { id: i64, reason: String },
    #[error("outbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("reading session {session} from tmux: {source}")]
    Control {
        session: SessionId,
        #[source]
        source: ControlError,
    },
    #[error("session {session}: tmux's listing of its panes is not what was asked for: {line:?}")]
    Listing { session: SessionId, line: String },
}

/// One line per pane of a session, with its window's fields, each
/// field percent-encoded so that tabs and newlines in names and paths stay
/// inside it (`control::options::listed_option`).
fn panes_format() -> String {
    [
        "window_index",
        "window_name",
        "window_layout",
        "window_active",
        "pane_index",
        "pane_active",
        "pane_current_path",
        "pane_start_command",
        "@agent-kind",
        "@agent-session-id",
    ]
    .map(listed_option)
    .join("\t")
}

/// Whether a session option belongs in a snapshot: what restore sets again.
/// The daemon's own marks (state, saved time, role, peers, the agents'
/// aggregate status) are left out: the daemon writes them anew.
pub fn kept_option(name: &str) -> bool {
    use schema::session as s;
    [s::GOAL, s::TYPE, s::GROUP, s::GOAL_ID, s::JOINED].contains(&name)
        || name.starts_with(s::CONTEXT_PREFIX)
}

/// Reads session `id` (named `name`) from tmux.
pub async fn capture(
    control: &ControlHandle,
    id: SessionId,
    name: &str,
) -> Result<SessionSnapshot, SnapshotError> {
    let failed = |source| SnapshotError::Control {
        session: id,
        source,
    };
    let panes = Command::list_panes(id, &panes_format()).expect("a fixed format");
    let reply = control.run(panes).await.map_err(failed)?;
    let lines: Vec<Vec<String>> = reply
        .lines
        .iter()
        .map(|l| l.split(|&b| b == b'\t').map(decode_listed).collect())
        .collect();
    let options = control
        .run(Command::show_options(id))
        .await
        .map_err(failed)?;
    let options = parse_options(options.lines.iter().map(|l| l.as_ref()), schema::PREFIX)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| kept_option(k))
        .collect();
    from_listing(id, name, options, &lines)
}

/// A snapshot from the lines of [`panes_format`], split and decoded.
fn from_listing(
    id: SessionId,
    name: &str,
    options: BTreeMap<String, String>,
    lines: &[Vec<String>],
) -> Result<SessionSnapshot, SnapshotError> {
    let mut windows: Vec<WindowSnapshot> = Vec::new();
    for f in lines {
        let bad = || SnapshotError::Listing {
            session: id,
            line: f.join("\t"),
        };
        if f.len() != 10 {
            return Err(bad());
        }
        let command = split_command(f[7].as_bytes()).map_err(|_| bad())?;
        let index: u32 = f[0].parse().map_err(|_| bad())?;
        let pane_index: u32 = f[4].parse().map_err(|_| bad())?;
        let optional = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let pane = PaneSnapshot {
            index: pane_index,
            cwd: f[6].to_owned(),
            command,
            agent: optional(&f[8]),
            resume_id: optional(&f[9]),
            active: f[5] == "1",
        };
        match windows.last_mut().filter(|w| w.index == index) {
            Some(window) => window.panes.push(pane),
            None => windows.push(WindowSnapshot {
                index,
                name: f[1].to_owned(),
                layout: f[2].to_owned(),
                active: f[3] == "1",
                panes: vec![pane],
            }),
        }
    }
    Ok(SessionSnapshot {
        name: name.to_owned(),
        options,
        windows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(name: &str, layout: &str) -> SessionSnapshot {
        SessionSnapshot {
            name: name.into(),
            options: BTreeMap::new(),
            windows: vec![WindowSnapshot {
                index: 0,
                name: "w".into(),
                layout: layout.into(),
                active: true,
                panes: vec![PaneSnapshot {
                    index: 0,
                    cwd: "/tmp".into(),
                    command: Vec::new(),
                    agent: Some("claude".into()),
                    resume_id: Some("abc".into()),
                    active: true,
                }],
            }],
        }
    }

    fn db() -> Connection {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(SCHEMA).unwrap();
        db
    }

    fn put(db: &mut Connection, key: &str, s: &SessionSnapshot, at: i64, r: Retention) -> Kept {
        let tx = db.transaction().unwrap();
        let kept = insert(&tx, key, s, Reason::Event, at, r).unwrap();
        tx.commit().unwrap();
        kept
    }

    #[test]
    fn the_same_snapshot_is_stored_once_and_its_time_moves() {
        let mut db = db();
        let s = snapshot("a", "l1");
        let first = put(&mut db, "k", &s, 1_000, Retention::default());
        assert!(matches!(first, Kept::New { pruned: 0, .. }));
        let again = put(&mut db, "k", &s, 2_000, Retention::default());
        let Kept::New { id, .. } = first else {
            unreachable!()
        };
        assert_eq!(again, Kept::Same { id });
        let all = list(&db, Which::All).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].taken_at.timestamp_millis(), 2_000);
        assert_eq!(all[0].snapshot, s);
    }

    #[test]
    fn retention_bounds_each_session_and_the_total() {
        let mut db = db();
        let r = Retention {
            per_session: 2,
            total: 3,
        };
        for n in 0..5 {
            put(&mut db, "ka", &snapshot("a", &format!("a{n}")), n, r);
        }
        assert_eq!(list(&db, Which::Named("a")).unwrap().len(), 2);
        for n in 0..2 {
            put(&mut db, "kb", &snapshot("b", &format!("b{n}")), 10 + n, r);
        }
        let all = list(&db, Which::All).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        let latest = list(&db, Which::Latest).unwrap();
        let names: Vec<_> = latest.iter().map(|s| s.snapshot.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(latest[1].snapshot.windows[0].layout, "a4");
    }

    #[test]
    fn a_closed_session_is_marked_and_a_corrupt_row_is_named() {
        let mut db = db();
        put(&mut db, "k", &snapshot("a", "l"), 1, Retention::default());
        let tx = db.transaction().unwrap();
        assert_eq!(mark_closed(&tx, "k", 5).unwrap(), 1);
        tx.commit().unwrap();
        let all = list(&db, Which::All).unwrap();
        assert_eq!(all[0].closed_at.map(|t| t.timestamp_millis()), Some(5));
        db.execute("UPDATE snapshots SET body = '{not json'", [])
            .unwrap();
        let err = list(&db, Which::All).unwrap_err().to_string();
        assert!(
            err.starts_with("snapshot 1 in the outbox cannot be read"),
            "{err}"
        );
    }

    #[test]
    fn a_listing_becomes_windows_and_panes() {
        let line = |w: &str, p: &str, agent: &str, id: &str| {
            [
                w,
                "editor",
                "abcd,80x24,0,0,1",
                "1",
                p,
                "1",
                "/tmp/x y",
                "claude",
                agent,
                id,
            ]
            .map(String::from)
            .to_vec()
        };
        let lines = vec![
            line("0", "0", "claude", "abc"),
            line("0", "1", "", ""),
            line("2", "0", "", ""),
        ];
        let s = from_listing(SessionId(1), "s", BTreeMap::new(), &lines).unwrap();
        assert_eq!(s.windows.len(), 2);
        assert_eq!(s.windows[0].panes.len(), 2);
        assert_eq!(s.windows[0].panes[0].resume_id.as_deref(), Some("abc"));
        assert_eq!(s.windows[0].panes[1].agent, None);
        assert_eq!(s.windows[1].index, 2);
        assert_eq!(s.windows[0].panes[0].command, ["claude"]);
        let err =
            from_listing(SessionId(1), "s", BTreeMap::new(), &[vec!["x".into()]]).unwrap_err();
        assert!(err.to_string().contains("not what was asked for"), "{err}");
    }
}
