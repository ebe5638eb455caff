//! The durable outbox: every MCP call the reactor decides on is committed to
//! SQLite before it is sent, and marked delivered only after the server has
//! answered. A daemon that is killed loses nothing: on start it replays
//! what is not done, in order.
//!
//! # Order and priority
//!
//! Actions of one session to one MCP server are delivered strictly in the
//! order they were decided (a goal must be registered before it can be
//! completed, and `{goal_id}` comes from the register call). Across
//! sessions, when a backlog builds up, higher priorities go first:
//! close/complete, then detach/save, then create/register, then checkpoints.
//!
//! # States
//!
//! `pending` → `inflight` (committed just before the call is sent) →
//! `delivered` (the server answered) or `failed` (the answer was a permanent
//! failure: a tool error or a schema error), or back to `pending` with a
//! later `next_attempt_at` when the failure may pass (server down, timeout).
//! An action found `inflight` at start-up was sent by a daemon that died
//! before it heard the answer: it is sent again, with the same idempotency
//! key. This is the one case where a server can see a call twice; the
//! built-in server uses the key to answer the repeat without doing it again.
//!
//! # Durability
//!
//! WAL with `synchronous = NORMAL`: a commit is in the operating system's
//! hands (written to the WAL file) before the call goes out, so it survives
//! the daemon being killed at any point, which is the README's promise ("an
//! action is on disk before its call is sent", against a daemon that dies).
//! The WAL is fsynced at checkpoints, not at every commit: a power loss can
//! take back the last commits, always a prefix of them. `FULL` would fsync
//! every commit; with the reactor's group commit and the dispatchers'
//! batches that is two fsyncs per batch, and on the machine this was
//! measured on one fsync of a 4 KiB append took 7.6 ms (p50; 17 ms p95,
//! `os.fsync` in a loop of 100, 2026-12-01): delivery would be capped far
//! below what one MCP connection carries, to guard against a failure tmux
//! itself does not survive (its sessions are gone after a power loss too).
//!
//! # Batches
//!
//! The reactor commits the actions and journal rows of every event it has
//! in hand in one transaction ([`Outbox::commit`]); a dispatcher claims the
//! calls it sends together in one ([`Outbox::claim`]) and records their
//! outcomes in one ([`Outbox::record`]). Nobody waits to fill a batch: a
//! batch is what is there.
//!
//! # When the disk fails
//!
//! A daemon whose outbox cannot be written (disk full, read-only or missing
//! state directory, I/O errors) does not stop acting on events: the outbox
//! moves to memory, taking the open actions with it, and says so
//! ([`Outbox::degraded`], shown by `tmux-agent status` and logged). Calls
//! still go out in order; what memory cannot give is survival of a daemon
//! crash. Every [`HEAL_INTERVAL`], at a moment when no call is in flight,
//! the outbox tries to go back: it writes what memory holds into the file
//! (open actions, the history made meanwhile, kept values; matched by
//! idempotency key) and carries on there. If the daemon dies first, the
//! actions that were open at the move are still open in the file, and the
//! next daemon sends them again, under the same idempotency keys.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, config::DbConfig, params};
use serde_json::Value;

use super::journal::{self, Journal, JournalChange, JournalError};
use crate::sessions::snapshot;

/// How urgent an action is when the queue is backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Checkpoint = 0,
    Register = 1,
    Save = 2,
    Complete = 3,
}

impl Priority {
    fn from_i64(value: i64) -> Self {
        match value {
            3 => Self::Complete,
            2 => Self::Save,
            1 => Self::Register,
            _ => Self::Checkpoint,
        }
    }
}

/// An action as the reactor decides it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAction {
    /// Unique over every action ever decided; a second enqueue with the same
    /// key is ignored (so a replayed event cannot double its calls).
    pub idempotency_key: String,
    /// The session, unique over time: `<host>:<server start>:<$id>`.
    pub session_key: String,
    /// The session id (`$3`) on its server, for display.
    pub session_id: String,
    /// The lifecycle event that caused it (`session-created`, ...).
    pub event: String,
    pub priority: Priority,
    /// The MCP server's name in the config.
    pub server: String,
    pub tool: String,
    /// The argument template, rendered at send time with `vars` and the
    /// session's kept values.
    pub template: Value,
    /// The event's values (`session`, `goal`, `context`, ...).
    pub vars: Value,
    /// Values to keep from the result: name → path (`goal_id` → `id`).
    pub keep: Value,
    /// Caused by an event that happened while no daemon watched (found in
    /// the journal at start), shown as such in the history.
    pub late: bool,
}

/// An action read back from the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub id: i64,
    pub new: NewAction,
    pub attempts: u32,
    /// When it was committed (Unix ms): a delivery's effects on tmux are
    /// weighed against newer events by it.
    pub decided_at: i64,
}

/// What the reactor commits in one transaction: the actions and journal
/// changes of every event it had in hand (a group commit), and values to
/// keep that no call's result gives (`created_name`).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub actions: Vec<NewAction>,
    pub changes: Vec<JournalChange>,
    /// `(session key, name, value)`, kept unless a value is there already.
    pub kept: Vec<(String, String, Value)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.changes.is_empty() && self.kept.is_empty()
    }
}

/// How a call sent ended, as the dispatcher records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The server answered: done, with the values to keep for the
    /// session's later actions.
    Delivered {
        id: i64,
        at_ms: i64,
        latency_ms: i64,
        kept: Vec<(String, Value)>,
    },
    /// The failure may pass: pending again, due at `retry_at_ms`.
    Retry {
        id: i64,
        error: String,
        retry_at_ms: i64,
    },
    /// The failure is permanent: the reason is kept, and it is never sent
    /// again (until `tmux-agent outbox retry`).
    Failed { id: i64, reason: String, at_ms: i64 },
}

/// An action claimed to be sent, with the values its session has kept so
/// far (read in the claim's transaction).
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub action: Action,
    pub kept: serde_json::Map<String, Value>,
}

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionState {
    Pending,
    Inflight,
    Delivered,
    Failed,
}

impl ActionState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Inflight => "inflight",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// Errors of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot open the outbox database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create the state directory {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make {path} private (mode 0600): {source}")]
    Permissions {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot take over the outbox {from} as {to}: {source}")]
    TakeOver {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("there is no action {id} in the outbox")]
    NoSuchAction { id: i64 },
    #[error("action {id} is {state}, not failed: only failed actions can be retried or dropped")]
    NotFailed { id: i64, state: &'static str },
    #[error("outbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("outbox row {id} holds invalid JSON: {source}")]
    Json {
        id: i64,
        #[source]
        source: serde_json::Error,
    },
}

/// Counts of actions by state, for `status` and `@agent-pending`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub pending: u64,
    pub inflight: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// Which undelivered actions [`Outbox::undelivered`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// Pending or in flight.
    Open,
    Failed,
    All,
}

/// Which failed actions a retry or a drop is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    One(i64),
    All,
}

impl Failed {
    fn id(self) -> Option<i64> {
        match self {
            Failed::One(id) => Some(id),
            Failed::All => None,
        }
    }
}

/// An undelivered action, for `tmux-agent outbox list`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutboxEntry {
    #[serde(flatten)]
    pub entry: HistoryEntry,
    /// The session on its server (`$3`), and its key unique over time.
    pub session_id: String,
    pub session_key: String,
    /// When a pending action is tried next (Unix ms; 0: at once).
    pub next_attempt_at: i64,
}

/// One row of call history, for `show` and `stats`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub event: String,
    pub server: String,
    pub tool: String,
    pub state: String,
    pub attempts: u32,
    /// Unix milliseconds.
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub latency_ms: Option<i64>,
    pub error: Option<String>,
    /// Its event happened while no daemon watched.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
}

/// The schema's version, in SQLite's `user_version`:
///
/// - 1: the first.
/// - 2: an action's context is stored once: `vars` no longer holds
///   `observations`, which repeated the whole context as text (it is derived
///   at render time, see [`crate::agent::vars`]). Migrating removes it from
///   every stored action, in one transaction.
/// - 3: an action's payload (argument template, values, what to keep) lives
///   in its own table, `payloads`, which pruning deletes from. Version 2
///   nulled the payload columns in place, and SQLite kept the row's page
///   about as full as before (a 3 KB row pruned to 200 bytes still left
///   its leaf page to itself): 10,000 calls made a 44 MiB file, growing
///   without bound. Deleted payload rows free whole pages, which SQLite
///   reuses for the next payloads, so the file holds at most the payloads
///   of `[outbox] keep` (plus the open and failed ones) and a history row
///   per call (about 300 bytes with its index entries). Migrating moves
///   the payloads that are still there and vacuums the file once.
/// - 4: the daemon's session snapshots, `snapshots`
///   ([`crate::sessions::snapshot`]), added by the step [`SNAPSHOTS_STEP`]
///   (a table of its own, so another migration can be numbered around it).
const SCHEMA_VERSION: i64 = 4;

/// From version 1 to 2 (see [`SCHEMA_VERSION`]).
const MIGRATE_TO_2: &str = "
UPDATE actions SET vars = json_remove(vars, '$.observations')
    WHERE json_type(vars, '$.observations') IS NOT NULL;
";

/// The payloads of actions, one row each, deleted once pruned.
/// `delivered_at` is the action's, copied when it is delivered, so pruning
/// reads only this table's index (the history in `actions` can be long).
const PAYLOADS: &str = "
CREATE TABLE payloads (
    action_id    INTEGER PRIMARY KEY,
    template     TEXT NOT NULL,
    vars         TEXT NOT NULL,
    keep         TEXT NOT NULL,
    delivered_at INTEGER
);
-- The delivered payloads, oldest delivery first: what pruning deletes.
CREATE INDEX payloads_prunable ON payloads (delivered_at)
    WHERE delivered_at IS NOT NULL;
";

/// From version 2 to 3 (see [`SCHEMA_VERSION`]), after [`PAYLOADS`]: the
/// payloads not pruned yet move there, and the columns go.
const MIGRATE_TO_3: &str = "
INSERT INTO payloads (action_id, template, vars, keep, delivered_at)
    SELECT id, template, vars, keep, CASE WHEN state = 'delivered' THEN delivered_at END
    FROM actions WHERE vars != 'null';
DROP INDEX IF EXISTS actions_prunable;
ALTER TABLE actions DROP COLUMN template;
ALTER TABLE actions DROP COLUMN vars;
ALTER TABLE actions DROP COLUMN keep;
";

/// The migration step that adds the snapshots table (schema version 4):
/// the table only, nothing else touched, so it applies to any older version.
const SNAPSHOTS_STEP: &str = crate::sessions::snapshot::SCHEMA;

/// The failed actions, newest last: what `status` counts and lists, and
/// what `tmux-agent outbox list --failed` shows, without reading the
/// history of delivered ones.
const FAILED_INDEX: &str = "CREATE INDEX IF NOT EXISTS actions_failed
    ON actions (id) WHERE state = 'failed';";

/// How many actions one pruning statement touches: a pass is many short
/// transactions, so the dispatchers never wait long for the lock.
pub const PRUNE_BATCH: usize = 500;

/// How many actions are open (pending or in flight). Reads only the index
/// of open actions, however long the history has grown.
const OPEN_COUNT: &str = "SELECT COUNT(*) FROM actions INDEXED BY actions_open
     WHERE state IN ('pending', 'inflight')";

/// How many actions are open for one MCP server (`?1`): the backlog check.
const OPEN_COUNT_FOR: &str = "SELECT COUNT(*) FROM actions INDEXED BY actions_open
     WHERE state IN ('pending', 'inflight') AND server = ?1";

/// How many actions failed for good.
const FAILED_COUNT: &str = "SELECT COUNT(*) FROM actions INDEXED BY actions_failed
     WHERE state = 'failed'";

/// The latest `?1` failures, one line each.
const RECENT_FAILURES: &str = "SELECT session_id, event, server, tool, COALESCE(last_error, '')
     FROM actions INDEXED BY actions_failed WHERE state = 'failed' ORDER BY id DESC LIMIT ?1";

/// Open actions per MCP server.
const OPEN_BY_SERVER: &str = "SELECT server, COUNT(*) FROM actions INDEXED BY actions_open
     WHERE state IN ('pending', 'inflight') GROUP BY server ORDER BY server";

/// Prepared statements kept per connection (rusqlite's default is 16).
const STATEMENT_CACHE: usize = 64;

/// The pending actions in the order a dispatcher considers them, so
/// [`Outbox::next_ready`] stops at the first that heads its session's queue
/// instead of grouping every open action on each call.
const READY_INDEX: &str = "CREATE INDEX IF NOT EXISTS actions_ready
    ON actions (server, priority DESC, id) WHERE state = 'pending';";

/// The pending actions of server `?1` due at `?2`, most urgent first (see
/// [`ready`]).
const READY: &str =
    "SELECT a.id, a.idempotency_key, a.session_key, a.session_id, a.event, a.priority,
        a.server, a.tool, p.template, p.vars, p.keep, a.attempts, a.late, a.created_at
     FROM actions a INDEXED BY actions_ready
     JOIN payloads p ON p.action_id = a.id
     WHERE a.server = ?1 AND a.state = 'pending' AND a.next_attempt_at <= ?2
       -- Only the head of a session's queue (its oldest open action)
       -- is sent, so a session with a call in flight has that call as
       -- its head and is skipped, and no session is listed twice.
       AND NOT EXISTS (
           SELECT 1 FROM actions b INDEXED BY actions_open
           WHERE b.server = a.server AND b.session_key = a.session_key
             AND b.id < a.id AND b.state IN ('pending', 'inflight'))
     ORDER BY a.priority DESC, a.id ASC";

/// Stamps action `?1`'s payload delivered at `?2`, for pruning.
const PAYLOAD_DELIVERED: &str = "UPDATE payloads SET delivered_at = ?2 WHERE action_id = ?1";

const SCHEMA: &str = "
CREATE TABLE actions (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    session_key     TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    server          TEXT NOT NULL,
    tool            TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    latency_ms      INTEGER,
    late            INTEGER NOT NULL DEFAULT 0
);
-- The open actions, in the order a dispatcher looks at them.
CREATE INDEX actions_open ON actions (server, session_key, id)
    WHERE state IN ('pending', 'inflight');
CREATE INDEX actions_session ON actions (session_key, id);
CREATE TABLE kept (
    session_key TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (session_key, name)
);
";

/// The most bytes the write-ahead log keeps once checkpointed.
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// The most KiB of pages SQLite keeps in memory for the outbox (its
/// default is 2,000). The daemon's statements touch the indexes' upper
/// pages and the newest rows; a page read again comes from the kernel's
/// page cache (a `pread`), which the daemon's RSS does not count. The
/// default cache filled within the first 1,000 sessions and stayed full;
/// 512 KiB took 0.4 MiB off the daemon's RSS there (figure 11); 256 KiB
/// is 64 pages, more than the indexes' upper levels and newest rows.
const PAGE_CACHE_KIB: i64 = 256;

/// How often an outbox that had to move to memory tries the disk again.
pub const HEAL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The outbox database. The daemon shares one behind a mutex between the
/// reactor, its dispatchers and the status and save hooks.
pub struct Outbox {
    db: Connection,
    /// The file behind `db`, while it is a file.
    path: Option<PathBuf>,
    /// The file this outbox belongs in, also while it is in memory.
    home: Option<PathBuf>,
    /// Why the outbox lives in memory, once it does for lack of a disk.
    degraded: Option<String>,
    /// When to try the disk again, while in memory.
    next_heal: std::time::Instant,
}

impl Outbox {
    /// Opens (creating if needed) the outbox at `path`.
    ///
    /// The directory is made 0700 and the file 0600 before SQLite opens it
    /// (SQLite gives its `-wal` and `-shm` files the main file's mode), and
    /// files left more open by older builds are closed: the outbox holds
    /// captured pane text.
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        if let Some(dir) = path.parent() {
            crate::paths::private_dir(dir).map_err(|source| OutboxError::Directory {
                path: dir.to_owned(),
                source,
            })?;
        }
        for file in sqlite_files(path) {
            let made = if file == path {
                crate::paths::private_file(&file)
            } else {
                crate::paths::restrict(&file, 0o600)
            };
            made.map_err(|source| OutboxError::Permissions {
                path: file.clone(),
                source,
            })?;
        }
        let db = Connection::open(path).map_err(|source| OutboxError::Open {
            path: path.to_owned(),
            source,
        })?;
        let mut outbox = Self::init(db).map_err(|source| match source {
            OutboxError::Sqlite(source) => OutboxError::Open {
                path: path.to_owned(),
                source,
            },
            other => other,
        })?;
        outbox.path = Some(path.to_owned());
        outbox.home = Some(path.to_owned());
        Ok(outbox)
    }

    /// [`Outbox::open`], or, when the file cannot be opened or created, an
    /// outbox in memory that says why ([`Outbox::degraded`]): the daemon
    /// still acts on events, only not durably.
    pub fn open_or_memory(path: &Path) -> Self {
        match Self::open(path) {
            Ok(outbox) => outbox,
            Err(err) => {
                let reason = err.to_string();
                tracing::error!(%reason, "the outbox cannot be written: calls are kept in memory and lost if the daemon stops");
                let mut outbox = Self::in_memory().expect("an in-memory SQLite database opens");
                outbox.degraded = Some(reason);
                outbox.home = Some(path.to_owned());
                outbox.next_heal = std::time::Instant::now() + HEAL_INTERVAL;
                outbox
            }
        }
    }

    /// Why the outbox is in memory rather than on disk, if it is.
    pub fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
    }

    fn wrap(db: Connection) -> Self {
        Self {
            db,
            path: None,
            home: None,
            degraded: None,
            next_heal: std::time::Instant::now(),
        }
    }

    /// Runs a write. When storage fails under it, the outbox moves to
    /// memory (see the module docs) and the write is done there.
    fn write<T>(
        &mut self,
        mut op: impl FnMut(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, OutboxError> {
        match op(&mut self.db) {
            // Only a writable file spills; a read-only outbox stays one.
            Err(err) if self.path.is_some() && is_storage_failure(&err) => {
                self.spill(&err);
                Ok(op(&mut self.db)?)
            }
            other => Ok(other?),
        }
    }

    /// Moves the outbox to memory, copying the open actions and the kept
    /// values from the file (reading still works on a full disk).
    fn spill(&mut self, cause: &rusqlite::Error) {
        let Some(path) = self.path.take() else {
            return;
        };
        let reason = format!("cannot write {}: {cause}", path.display());
        let memory = Self::in_memory().expect("an in-memory SQLite database opens");
        let copied = copy_open_actions(&memory.db, &path);
        match copied {
            Ok(copied) => tracing::error!(
                %reason,
                copied,
                "the outbox moved to memory: calls still go out, but are lost if the daemon stops"
            ),
            Err(err) => tracing::error!(
                %reason,
                %err,
                "the outbox moved to memory without its open actions: they wait in the file for the next daemon"
            ),
        }
        self.db = memory.db;
        self.degraded = Some(reason);
        self.next_heal = std::time::Instant::now() + HEAL_INTERVAL;
    }

    /// While in memory, every [`HEAL_INTERVAL`]: if no call is in flight
    /// (a dispatcher holds an action's id only while it is), writes what
    /// memory holds into the file and moves back to it. Ids may change in
    /// the move; nobody holds one then.
    fn heal(&mut self) {
        // Called on every enqueue and claim: return before any work when
        // the outbox is where it belongs.
        if self.degraded.is_none() || std::time::Instant::now() < self.next_heal {
            return;
        }
        let Some(home) = self.home.clone() else {
            return;
        };
        self.next_heal = std::time::Instant::now() + HEAL_INTERVAL;
        let inflight: i64 = self
            .db
            .query_row(
                "SELECT COUNT(*) FROM actions INDEXED BY actions_open
                 WHERE state IN ('pending', 'inflight') AND state = 'inflight'",
                [],
                |row| row.get(0),
            )
            .unwrap_or(1);
        if inflight > 0 {
            return;
        }
        let moved = Self::open(&home).and_then(|disk| {
            copy_back(&self.db, &home)?;
            Ok(disk)
        });
        match moved {
            Ok(disk) => {
                tracing::warn!(outbox = %home.display(), "the outbox is back on disk");
                self.db = disk.db;
                self.path = Some(home);
                self.degraded = None;
            }
            Err(err) => tracing::debug!(%err, "the outbox still cannot be written"),
        }
    }

    /// Opens an existing outbox for reading only, beside a daemon that
    /// writes it (WAL lets readers and the writer go on together); `None`
    /// when there is no outbox yet. Nothing is created or changed.
    pub fn open_read_only(path: &Path) -> Result<Option<Self>, OutboxError> {
        if !path.exists() {
            return Ok(None);
        }
        let open = |source| OutboxError::Open {
            path: path.to_owned(),
            source,
        };
        let db = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open)?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open)?;
        let version: i64 = db
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open)?;
        if version == 0 {
            // Created but never written: as good as no outbox. (Every later
            // version has the columns a reader reads.)
            return Ok(None);
        }
        Ok(Some(Self::wrap(db)))
    }

    /// An outbox that lives in memory, for tests.
    pub fn in_memory() -> Result<Self, OutboxError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Self, OutboxError> {
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        // The WAL is reset after each checkpoint but keeps its size; past
        // this it is truncated back, so a burst does not leave the file big.
        db.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        // Negative: a size in KiB, not in pages.
        db.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        // The daemon's hot path alone uses more distinct statements than
        // rusqlite's default cache of 16 holds; an evicted one is parsed
        // and planned again on its next use.
        db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // The query planner stability guarantee: a statement keeps the plan
        // it was prepared with whatever values are bound to it. Without it
        // SQLite plans around bound values it can use (a LIMIT, whether a
        // value implies a partial index's condition) and plans again when
        // they change, which the claim's `now` does every round: a tenth
        // of the daemon's time in figure 10. Our plans come from
        // `INDEXED BY` and the indexes' order, not from values.
        db.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        let version: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let steps = match version {
            0 => format!("{SCHEMA}{PAYLOADS}{SNAPSHOTS_STEP}"),
            1 => format!("{MIGRATE_TO_2}{PAYLOADS}{MIGRATE_TO_3}{SNAPSHOTS_STEP}"),
            2 => format!("{PAYLOADS}{MIGRATE_TO_3}{SNAPSHOTS_STEP}"),
            3 => SNAPSHOTS_STEP.to_owned(),
            // Current, or written by a newer build that kept these tables.
            _ => String::new(),
        };
        if !steps.is_empty() {
            let done = db.execute_batch(&format!(
                "BEGIN; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ));
            if done.is_err() {
                let _ = db.execute_batch("ROLLBACK;");
            }
            done?;
            if (1..3).contains(&version) {
                // The old payload columns' pages are free now: give them
                // back once, rather than keep a file as big as before.
                db.execute_batch("VACUUM;")?;
            }
        }
        // Added after version 1 shipped; harmless to repeat.
        db.execute_batch(READY_INDEX)?;
        db.execute_batch(FAILED_INDEX)?;
        add_late_column(&db)?;
        db.execute_batch(journal::SCHEMA)?;
        Ok(Self::wrap(db))
    }

    /// Commits new actions, all or none. Keys seen before are skipped.
    /// Returns how many were new.
    pub fn enqueue(&mut self, actions: &[NewAction], now_ms: i64) -> Result<usize, OutboxError> {
        self.commit(
            &Batch {
                actions: actions.to_vec(),
                ..Batch::default()
            },
            now_ms,
        )
    }

    /// Commits a [`Batch`] in one transaction: its actions (keys seen
    /// before are skipped), the journal's changes for the same events, and
    /// its kept values. The journal never says a session is detached unless
    /// the detach's save is committed too, and the other way round. Returns
    /// how many actions were new.
    pub fn commit(&mut self, batch: &Batch, now_ms: i64) -> Result<usize, OutboxError> {
        self.heal();
        self.write(|db| {
            let tx = db.transaction()?;
            let mut added = 0;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO actions
                 (idempotency_key, session_key, session_id, event, priority, server, tool,
                  state, created_at, late)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9)",
                )?;
                let mut payload = tx.prepare_cached(
                    "INSERT INTO payloads (action_id, template, vars, keep) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for a in &batch.actions {
                    let new = insert.execute(params![
                        a.idempotency_key,
                        a.session_key,
                        a.session_id,
                        a.event,
                        a.priority as i64,
                        a.server,
                        a.tool,
                        now_ms,
                        a.late,
                    ])?;
                    if new == 1 {
                        payload.execute(params![
                            tx.last_insert_rowid(),
                            a.template.to_string(),
                            a.vars.to_string(),
                            a.keep.to_string(),
                        ])?;
                    }
                    added += new;
                }
                let mut keep = tx.prepare_cached(
                    "INSERT INTO kept (session_key, name, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (session_key, name) DO NOTHING",
                )?;
                for (session_key, name, value) in &batch.kept {
                    keep.execute(params![session_key, name, value.to_string()])?;
                }
            }
            journal::apply(&tx, &batch.changes, now_ms)?;
            tx.commit()?;
            Ok(added)
        })
    }

    /// Keeps snapshots of sessions, `(key, snapshot)`, in one transaction
    /// (see [`crate::sessions::snapshot`]): a new row for each unless the
    /// session's latest says the same, pruned to `retention`.
    pub fn keep_snapshots(
        &mut self,
        snapshots: &[(String, snapshot::SessionSnapshot)],
        reason: snapshot::Reason,
        at_ms: i64,
        retention: snapshot::Retention,
    ) -> Result<Vec<snapshot::Kept>, OutboxError> {
        self.write(|db| {
            let tx = db.transaction()?;
            let kept = snapshots
                .iter()
                .map(|(key, s)| snapshot::insert(&tx, key, s, reason, at_ms, retention))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(kept)
        })
    }

    /// Marks the snapshots of session `key` closed: `restore --all` leaves
    /// a session the user ended alone.
    pub fn close_snapshots(&mut self, key: &str, at_ms: i64) -> Result<usize, OutboxError> {
        self.write(|db| {
            let tx = db.transaction()?;
            let marked = snapshot::mark_closed(&tx, key, at_ms)?;
            tx.commit()?;
            Ok(marked)
        })
    }

    /// Leaves the notes of a restore about to create sessions (see
    /// [`snapshot::PendingRestore`]).
    pub fn expect_restores(
        &mut self,
        notes: &[snapshot::PendingRestore],
        at_ms: i64,
    ) -> Result<(), OutboxError> {
        self.write(|db| {
            let tx = db.transaction()?;
            snapshot::expect_restores(&tx, notes, at_ms)?;
            tx.commit()
        })
    }

    /// Takes the restore note of the session just created as `name`.
    pub fn take_restore(
        &mut self,
        name: &str,
        now_ms: i64,
    ) -> Result<Option<snapshot::PendingRestore>, OutboxError> {
        self.write(|db| {
            let tx = db.transaction()?;
            let taken = snapshot::take_restore(&tx, name, now_ms)?;
            tx.commit()?;
            Ok(taken)
        })
    }

    /// What the outbox knows of sessions a starting daemon finds that the
    /// journal does not name, in one transaction: for each `(session key,
    /// name)`, [`FirstSight::Known`] when it has calls (an outbox from
    /// before the journal), else its restore note, taken. A start-up on
    /// hundreds of sessions asks once, not twice per session.
    pub fn first_sight(
        &mut self,
        sessions: &[(String, String)],
        now_ms: i64,
    ) -> Result<Vec<FirstSight>, OutboxError> {
        self.write(|db| {
            let tx = db.transaction()?;
            let mut seen = Vec::with_capacity(sessions.len());
            {
                let mut known = tx.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM actions WHERE session_key = ?1)",
                )?;
                for (key, name) in sessions {
                    if known.query_row([key], |row| row.get(0))? {
                        seen.push(FirstSight::Known);
                    } else {
                        seen.push(FirstSight::New(snapshot::take_restore(&tx, name, now_ms)?));
                    }
                }
            }
            tx.commit()?;
            Ok(seen)
        })
    }

    /// Deletes snapshot `id`; whether there was one.
    pub fn drop_snapshot(&mut self, id: i64) -> Result<bool, OutboxError> {
        self.write(|db| Ok(db.execute("DELETE FROM snapshots WHERE id = ?1", [id])? == 1))
    }

    /// The stored snapshots `which` names.
    pub fn snapshots(
        &self,
        which: snapshot::Which<'_>,
    ) -> Result<Vec<snapshot::StoredSnapshot>, snapshot::SnapshotError> {
        snapshot::list(&self.db, which)
    }

    /// The lifecycle journal (see [`journal`]), as the last commit left it.
    pub fn journal(&self) -> Result<Journal, JournalError> {
        journal::read(&self.db)
    }

    /// After a restart: whatever was in flight when the last daemon died is
    /// pending again, and every pending action is due now (the backoff of a
    /// daemon that died says nothing about the servers of this one).
    /// Returns how many were in flight.
    pub fn recover(&mut self) -> Result<usize, OutboxError> {
        self.write(|db| {
            let tx = db.transaction()?;
            let inflight = tx.execute(
                "UPDATE actions SET state = 'pending' WHERE state = 'inflight'",
                [],
            )?;
            tx.execute(
                "UPDATE actions SET next_attempt_at = 0 WHERE state = 'pending'",
                [],
            )?;
            tx.commit()?;
            Ok(inflight)
        })
    }

    /// The next action to send to `server`: the most urgent of the actions
    /// that head their session's queue, are due, and whose session has
    /// nothing in flight on this server.
    pub fn next_ready(&mut self, server: &str, now_ms: i64) -> Result<Option<Action>, OutboxError> {
        ready(&self.db, server, now_ms, 1)?
            .pop()
            .map(RawAction::parse)
            .transpose()
    }

    /// The earliest time (Unix ms) after `now_ms` at which a pending action
    /// of `server` becomes due: when nothing is ready now, the heads of the
    /// session queues are waiting for a retry, and this is when to look again.
    pub fn next_due(&self, server: &str, now_ms: i64) -> Result<Option<i64>, OutboxError> {
        Ok(self
            .db
            .prepare_cached(
                "SELECT MIN(next_attempt_at) FROM actions
             WHERE server = ?1 AND state = 'pending' AND next_attempt_at > ?2",
            )?
            .query_row(params![server, now_ms], |row| row.get(0))?)
    }

    /// Whether `server` has an action in flight, or pending and due by `now_ms`.
    pub fn has_due(&self, server: &str, now_ms: i64) -> Result<bool, OutboxError> {
        Ok(self
            .db
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM actions WHERE server = ?1
               AND (state = 'inflight' OR (state = 'pending' AND next_attempt_at <= ?2)))",
            )?
            .query_row(params![server, now_ms], |row| row.get(0))?)
    }

    /// Takes up to `limit` actions to send to `server` together and
    /// commits them in flight, in one transaction: the most urgent heads of
    /// distinct sessions' queues that are due ([`Outbox::next_ready`]), each
    /// with its session's kept values. A session never has two in flight,
    /// so per-session order holds while different sessions' calls overlap.
    /// An action's id is held only while it is in flight, which is what
    /// lets an outbox in memory move back to disk (and renumber) when none is.
    pub fn claim(
        &mut self,
        server: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, OutboxError> {
        self.heal();
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.write(|db| {
            let tx = db.transaction()?;
            let actions = ready(&tx, server, now_ms, limit)?;
            let mut claimed = Vec::with_capacity(actions.len());
            {
                let mut inflight = tx.prepare_cached(
                    "UPDATE actions SET state = 'inflight', attempts = attempts + 1 WHERE id = ?1",
                )?;
                for action in actions {
                    inflight.execute(params![action.id])?;
                    let kept = kept_values(&tx, &action.row.session_key)?;
                    claimed.push((action, kept));
                }
            }
            tx.commit()?;
            Ok(claimed)
        })?
        .into_iter()
        .map(|(action, kept)| {
            Ok(Claimed {
                action: action.parse()?,
                kept,
            })
        })
        .collect()
    }

    /// [`Outbox::claim`] of one action.
    pub fn claim_next(&mut self, server: &str, now_ms: i64) -> Result<Option<Action>, OutboxError> {
        Ok(self
            .claim(server, now_ms, 1)?
            .pop()
            .map(|claimed| claimed.action))
    }

    /// Records how calls sent ended, all in one transaction.
    pub fn record(&mut self, outcomes: &[Outcome]) -> Result<(), OutboxError> {
        self.write(|db| {
            let tx = db.transaction()?;
            for outcome in outcomes {
                match outcome {
                    Outcome::Delivered {
                        id,
                        at_ms,
                        latency_ms,
                        kept,
                    } => {
                        tx.prepare_cached(
                            "UPDATE actions SET state = 'delivered', delivered_at = ?2,
                                 latency_ms = ?3, last_error = NULL
                             WHERE id = ?1",
                        )?
                        .execute(params![id, at_ms, latency_ms])?;
                        tx.prepare_cached(PAYLOAD_DELIVERED)?
                            .execute(params![id, at_ms])?;
                        for (name, value) in kept {
                            tx.prepare_cached(
                                "INSERT INTO kept (session_key, name, value)
                                 SELECT session_key, ?2, ?3 FROM actions WHERE id = ?1
                                 ON CONFLICT (session_key, name) DO UPDATE SET value = excluded.value",
                            )?
                            .execute(params![id, name, value.to_string()])?;
                        }
                    }
                    Outcome::Retry {
                        id,
                        error,
                        retry_at_ms,
                    } => {
                        tx.prepare_cached(
                            "UPDATE actions SET state = 'pending', last_error = ?2,
                                 next_attempt_at = ?3
                             WHERE id = ?1",
                        )?
                        .execute(params![id, error, retry_at_ms])?;
                    }
                    Outcome::Failed { id, reason, at_ms } => {
                        tx.prepare_cached(
                            "UPDATE actions SET state = 'failed', last_error = ?2, delivered_at = ?3
                             WHERE id = ?1",
                        )?
                        .execute(params![id, reason, at_ms])?;
                    }
                }
            }
            tx.commit()
        })
    }

    /// Commits that the call is about to be sent.
    pub fn mark_inflight(&mut self, id: i64) -> Result<(), OutboxError> {
        self.write(|db| {
            db.execute(
                "UPDATE actions SET state = 'inflight', attempts = attempts + 1 WHERE id = ?1",
                params![id],
            )
        })?;
        Ok(())
    }

    /// [`Outbox::record`] of one delivery.
    pub fn mark_delivered(
        &mut self,
        id: i64,
        now_ms: i64,
        latency_ms: i64,
        kept: &[(String, Value)],
    ) -> Result<(), OutboxError> {
        self.record(&[Outcome::Delivered {
            id,
            at_ms: now_ms,
            latency_ms,
            kept: kept.to_vec(),
        }])
    }

    /// [`Outbox::record`] of one failure that may pass.
    pub fn mark_retry(
        &mut self,
        id: i64,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<(), OutboxError> {
        self.record(&[Outcome::Retry {
            id,
            error: error.to_owned(),
            retry_at_ms,
        }])
    }

    /// [`Outbox::record`] of one permanent failure.
    pub fn mark_failed(&mut self, id: i64, reason: &str, now_ms: i64) -> Result<(), OutboxError> {
        self.record(&[Outcome::Failed {
            id,
            reason: reason.to_owned(),
            at_ms: now_ms,
        }])
    }

    /// Keeps a value for a session directly (not from a call's result).
    pub fn keep(
        &mut self,
        session_key: &str,
        name: &str,
        value: &Value,
    ) -> Result<(), OutboxError> {
        self.write(|db| {
            db.execute(
                "INSERT INTO kept (session_key, name, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (session_key, name) DO NOTHING",
                params![session_key, name, value.to_string()],
            )
        })?;
        Ok(())
    }

    /// The values kept for a session (`goal_id`, ...).
    pub fn kept(&self, session_key: &str) -> Result<serde_json::Map<String, Value>, OutboxError> {
        Ok(kept_values(&self.db, session_key)?)
    }

    /// How many actions are not done yet (pending or in flight), for
    /// `@agent-pending`. Reads only the index of open actions, however long
    /// the history has grown.
    pub fn open_count(&self) -> Result<u64, OutboxError> {
        self.count(OPEN_COUNT, [])
    }

    /// How many actions are open for `server`: whether its queue is over
    /// `max_pending`. Reads only the index of open actions.
    pub fn open_count_for(&self, server: &str) -> Result<u64, OutboxError> {
        self.count(OPEN_COUNT_FOR, [server])
    }

    /// How many actions failed for good (kept until `tmux-agent outbox`
    /// retries or drops them). Reads only the index of failed actions.
    pub fn failed_count(&self) -> Result<u64, OutboxError> {
        self.count(FAILED_COUNT, [])
    }

    fn count<P: rusqlite::Params>(&self, sql: &str, params: P) -> Result<u64, OutboxError> {
        let n: i64 = self
            .db
            .prepare_cached(sql)?
            .query_row(params, |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Counts by state, for one MCP server or all. Reads the whole table:
    /// for the CLI's summaries and tests, never for the daemon's `status`,
    /// which must not hold the lock the dispatchers need for that long.
    pub fn counts(&self, server: Option<&str>) -> Result<Counts, OutboxError> {
        self.count_states(
            "SELECT state, COUNT(*) FROM actions WHERE ?1 IS NULL OR server = ?1 GROUP BY state",
            server,
        )
    }

    /// How many actions are open (pending or in flight) per MCP server.
    pub fn open_by_server(&self) -> Result<Vec<(String, u64)>, OutboxError> {
        let mut stmt = self.db.prepare_cached(OPEN_BY_SERVER)?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (server, n) = row?;
            out.push((server, u64::try_from(n).unwrap_or(0)));
        }
        Ok(out)
    }

    /// Runs a `state, COUNT(*)` query with one parameter into [`Counts`].
    fn count_states(&self, sql: &str, param: Option<&str>) -> Result<Counts, OutboxError> {
        let mut counts = Counts::default();
        let mut stmt = self.db.prepare_cached(sql)?;
        let rows = stmt.query_map(params![param], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            let n = u64::try_from(n).unwrap_or(0);
            match state.as_str() {
                "pending" => counts.pending = n,
                "inflight" => counts.inflight = n,
                "delivered" => counts.delivered = n,
                "failed" => counts.failed = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// The latest `limit` permanent failures, newest first, one line each.
    pub fn recent_failures(&self, limit: usize) -> Result<Vec<String>, OutboxError> {
        let mut stmt = self.db.prepare_cached(RECENT_FAILURES)?;
        let rows = stmt.query_map(params![limit as i64], |row| {
            Ok(format!(
                "{} {}: {}/{}: {}",
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Counts by state of one session's actions.
    pub fn session_counts(&self, session_key: &str) -> Result<Counts, OutboxError> {
        self.count_states(
            "SELECT state, COUNT(*) FROM actions WHERE session_key = ?1 GROUP BY state",
            Some(session_key),
        )
    }

    /// The actions with these idempotency keys, in the keys' order (keys
    /// not found are left out): how a requested save follows its calls.
    pub fn by_keys(&self, keys: &[String]) -> Result<Vec<HistoryEntry>, OutboxError> {
        let mut stmt = self.db.prepare_cached(
            "SELECT id, event, server, tool, state, attempts, created_at, delivered_at, latency_ms, last_error, late
             FROM actions WHERE idempotency_key = ?1",
        )?;
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            let entry = stmt.query_row(params![key], history_entry).optional()?;
            entries.extend(entry);
        }
        Ok(entries)
    }

    /// The latest `limit` actions of a session, newest first.
    pub fn history(
        &self,
        session_key: &str,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, OutboxError> {
        let mut stmt = self.db.prepare_cached(
            "SELECT id, event, server, tool, state, attempts, created_at, delivered_at, latency_ms, last_error, late
             FROM actions WHERE session_key = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![session_key, limit as i64], history_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes the payloads (argument template, values, what to keep) of
    /// up to `limit` actions delivered before `before_ms`, oldest first;
    /// their history rows stay. Returns how many were pruned: fewer than
    /// `limit` means nothing older is left. Failed actions are never
    /// pruned: they wait for `tmux-agent outbox retry` or `drop`. The pages
    /// freed are reused by the next payloads (see [`SCHEMA_VERSION`]).
    pub fn prune(&mut self, before_ms: i64, limit: usize) -> Result<usize, OutboxError> {
        self.write(|db| {
            db.prepare_cached(
                "DELETE FROM payloads WHERE action_id IN (
                     SELECT action_id FROM payloads INDEXED BY payloads_prunable
                     WHERE delivered_at IS NOT NULL AND delivered_at < ?1
                     ORDER BY delivered_at LIMIT ?2)",
            )?
            .execute(params![before_ms, limit as i64])
        })
    }

    /// The actions not delivered, oldest first: open ones, failed ones, or
    /// both; at most `limit`. Reads only the indexes of open and failed
    /// actions.
    pub fn undelivered(
        &self,
        which: Undelivered,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, OutboxError> {
        // The history columns first, in `history_entry`'s order (`late` is
        // its last), then this listing's own.
        const COLUMNS: &str = "id, event, server, tool, state, attempts, created_at, delivered_at, \
            latency_ms, last_error, late, session_id, session_key, next_attempt_at";
        let open = format!(
            "SELECT {COLUMNS} FROM actions INDEXED BY actions_open
             WHERE state IN ('pending', 'inflight')"
        );
        let failed = format!(
            "SELECT {COLUMNS} FROM actions INDEXED BY actions_failed WHERE state = 'failed'"
        );
        let sql = match which {
            Undelivered::Open => open,
            Undelivered::Failed => failed,
            Undelivered::All => format!("{open} UNION ALL {failed}"),
        };
        let mut stmt = self
            .db
            .prepare(&format!("SELECT * FROM ({sql}) ORDER BY id LIMIT ?1"))?;
        let rows = stmt.query_map(params![limit as i64], |row| {
            Ok(OutboxEntry {
                entry: history_entry(row)?,
                session_id: row.get(11)?,
                session_key: row.get(12)?,
                next_attempt_at: row.get(13)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Makes failed actions pending again, due now, keeping their attempts
    /// and last error: `tmux-agent outbox retry`. Returns how many.
    pub fn retry_failed(&mut self, which: Failed) -> Result<usize, OutboxError> {
        self.check_failed(which)?;
        self.write(|db| {
            db.execute(
                "UPDATE actions SET state = 'pending', next_attempt_at = 0, delivered_at = NULL
                 WHERE state = 'failed' AND (?1 IS NULL OR id = ?1)",
                params![which.id()],
            )
        })
    }

    /// Deletes failed actions, history and all: `tmux-agent outbox drop`.
    /// Returns how many.
    pub fn drop_failed(&mut self, which: Failed) -> Result<usize, OutboxError> {
        self.check_failed(which)?;
        self.write(|db| {
            let tx = db.transaction()?;
            tx.execute(
                "DELETE FROM payloads WHERE action_id IN (
                     SELECT id FROM actions WHERE state = 'failed' AND (?1 IS NULL OR id = ?1))",
                params![which.id()],
            )?;
            let dropped = tx.execute(
                "DELETE FROM actions WHERE state = 'failed' AND (?1 IS NULL OR id = ?1)",
                params![which.id()],
            )?;
            tx.commit()?;
            Ok(dropped)
        })
    }

    /// That the one action named exists and has failed: only failed ones
    /// may be retried or dropped (an open one is still being worked on; a
    /// delivered one is done).
    fn check_failed(&self, which: Failed) -> Result<(), OutboxError> {
        let Failed::One(id) = which else {
            return Ok(());
        };
        match self.state(id)? {
            Some(ActionState::Failed) => Ok(()),
            Some(state) => Err(OutboxError::NotFailed {
                id,
                state: state.as_str(),
            }),
            None => Err(OutboxError::NoSuchAction { id }),
        }
    }

    /// The state of one action (tests and diagnostics).
    pub fn state(&self, id: i64) -> Result<Option<ActionState>, OutboxError> {
        let state: Option<String> = self
            .db
            .query_row(
                "SELECT state FROM actions WHERE id = ?1",
                params![id],
                |row| row.get(0),
            )
            .optional()?;
        Ok(state.and_then(|s| {
            [
                ActionState::Pending,
                ActionState::Inflight,
                ActionState::Delivered,
                ActionState::Failed,
            ]
            .into_iter()
            .find(|st| st.as_str() == s)
        }))
    }
}

/// A history row: `id, event, server, tool, state, attempts, created_at,
/// delivered_at, latency_ms, last_error, late`.
fn history_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryEntry> {
    Ok(HistoryEntry {
        id: row.get(0)?,
        event: row.get(1)?,
        server: row.get(2)?,
        tool: row.get(3)?,
        state: row.get(4)?,
        attempts: row.get(5)?,
        created_at: row.get(6)?,
        delivered_at: row.get(7)?,
        latency_ms: row.get(8)?,
        error: row.get(9)?,
        late: row.get(10)?,
    })
}

/// What [`Outbox::first_sight`] says of one session.
#[derive(Debug)]
pub enum FirstSight {
    /// The outbox has calls of it: an outbox from before the journal.
    Known,
    /// Never seen; with its restore note when `tmux-agent restore` made it.
    New(Option<snapshot::PendingRestore>),
}

/// The next `limit` actions to send to `server` (see [`Outbox::claim`]),
/// most urgent first, unparsed.
fn ready(
    db: &Connection,
    server: &str,
    now_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<RawAction>> {
    let mut stmt = db.prepare_cached(READY)?;
    // The index gives the order, so rows stream and the iterator stops
    // after `limit`; the statement is planned once (the query planner
    // stability guarantee set in `Outbox::init`).
    let rows = stmt.query_map(params![server, now_ms], |row| {
        Ok(RawAction {
            id: row.get(0)?,
            row: NewActionRow {
                idempotency_key: row.get(1)?,
                session_key: row.get(2)?,
                session_id: row.get(3)?,
                event: row.get(4)?,
                priority: row.get(5)?,
                server: row.get(6)?,
                tool: row.get(7)?,
                template: row.get(8)?,
                vars: row.get(9)?,
                keep: row.get(10)?,
                late: row.get(12)?,
            },
            attempts: row.get(11)?,
            decided_at: row.get(13)?,
        })
    })?;
    rows.take(limit).collect()
}

/// The values kept for a session (`goal_id`, ...).
fn kept_values(
    db: &Connection,
    session_key: &str,
) -> rusqlite::Result<serde_json::Map<String, Value>> {
    let mut stmt = db.prepare_cached("SELECT name, value FROM kept WHERE session_key = ?1")?;
    let rows = stmt.query_map(params![session_key], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut kept = serde_json::Map::new();
    for row in rows {
        let (name, value) = row?;
        let value = serde_json::from_str(&value).unwrap_or(Value::String(value));
        kept.insert(name, value);
    }
    Ok(kept)
}

/// An action as read, before its JSON columns are parsed.
struct RawAction {
    id: i64,
    row: NewActionRow,
    attempts: u32,
    decided_at: i64,
}

impl RawAction {
    fn parse(self) -> Result<Action, OutboxError> {
        let Self {
            id,
            row: raw,
            attempts,
            decided_at,
        } = self;
        let json = |text: &str| {
            serde_json::from_str(text).map_err(|source| OutboxError::Json { id, source })
        };
        Ok(Action {
            id,
            new: NewAction {
                idempotency_key: raw.idempotency_key,
                session_key: raw.session_key,
                session_id: raw.session_id,
                event: raw.event,
                priority: Priority::from_i64(raw.priority),
                server: raw.server,
                tool: raw.tool,
                template: json(&raw.template)?,
                vars: json(&raw.vars)?,
                keep: json(&raw.keep)?,
                late: raw.late,
            },
            attempts,
            decided_at,
        })
    }
}

/// Column values before JSON parsing.
struct NewActionRow {
    idempotency_key: String,
    session_key: String,
    session_id: String,
    event: String,
    priority: i64,
    server: String,
    tool: String,
    template: String,
    vars: String,
    keep: String,
    late: bool,
}

/// Adds `actions.late` to an outbox made before it existed (SQLite has no
/// `ADD COLUMN IF NOT EXISTS`).
fn add_late_column(db: &Connection) -> rusqlite::Result<()> {
    let has: bool = db.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('actions') WHERE name = 'late')",
        [],
        |row| row.get(0),
    )?;
    if !has {
        db.execute_batch("ALTER TABLE actions ADD COLUMN late INTEGER NOT NULL DEFAULT 0;")?;
    }
    Ok(())
}

/// The files of the SQLite database at `path`: the database, then its
/// write-ahead log and shared-memory index.
fn sqlite_files(path: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_owned(), with("-wal"), with("-shm")]
}

/// Renames the outbox at `legacy` (with its `-wal` and `-shm`) to `path`,
/// when `path` does not exist yet and `legacy` does: how a daemon takes
/// over the outbox an older build named by the socket's file name only.
/// Returns whether it did. The caller holds the daemon lock of `path`'s
/// server, so no other daemon of this build opens `path` meanwhile; a
/// legacy file two servers shared goes to the first daemon that starts.
///
/// The log and index go first and the database last: a crash in between
/// leaves the database at `legacy`, and the next start finishes the move
/// (a missing log is then skipped, the one already moved is in place).
pub fn take_over_legacy(legacy: &Path, path: &Path) -> Result<bool, OutboxError> {
    if legacy == path || path.exists() || !legacy.exists() {
        return Ok(false);
    }
    let from = sqlite_files(legacy);
    let to = sqlite_files(path);
    for (from, to) in from.iter().zip(&to).rev() {
        match std::fs::rename(from, to) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && from.as_path() != legacy => {}
            Err(source) => {
                return Err(OutboxError::TakeOver {
                    from: from.clone(),
                    to: to.clone(),
                    source,
                });
            }
        }
    }
    Ok(true)
}

/// Whether an error means the storage under the database failed, rather
/// than the statement.
fn is_storage_failure(err: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    matches!(
        err.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
        )
    )
}

/// Runs `work` on `memory` with the outbox file at `path` attached as
/// `disk`, and detaches it whatever `work` returned.
fn with_file_attached<T>(
    memory: &Connection,
    path: &Path,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    memory.execute(
        "ATTACH DATABASE ?1 AS disk",
        params![path.to_string_lossy()],
    )?;
    let done = work(memory);
    memory.execute("DETACH DATABASE disk", [])?;
    done
}

/// Copies the open actions and every kept value of the outbox file at
/// `path` into `memory` (same schema); returns how many actions.
fn copy_open_actions(memory: &Connection, path: &Path) -> rusqlite::Result<usize> {
    with_file_attached(memory, path, |db| {
        // Each copy is tried even when the other fails.
        let copied = db
            .execute(
                "INSERT INTO main.actions SELECT * FROM disk.actions
                 WHERE state IN ('pending', 'inflight')",
                [],
            )
            .and_then(|copied| {
                db.execute(
                    "INSERT INTO main.payloads SELECT p.* FROM disk.payloads p
                     JOIN main.actions a ON a.id = p.action_id",
                    [],
                )?;
                Ok(copied)
            });
        let kept = db.execute(
            "INSERT OR REPLACE INTO main.kept SELECT * FROM disk.kept",
            [],
        );
        // The journal comes along: the reactor goes on writing it in memory,
        // and a daemon that dies there leaves the file's as it was.
        let journaled = db.execute_batch(
            "INSERT OR REPLACE INTO main.journal SELECT * FROM disk.journal;
             INSERT OR REPLACE INTO main.journal_server SELECT * FROM disk.journal_server;",
        );
        kept?;
        journaled?;
        copied
    })
}

/// Writes everything `memory` holds into the outbox file at `path`, in one
/// transaction: an action the file already has (same idempotency key) takes
/// memory's state; the others are added, in memory's order, with ids the
/// file assigns; kept values overwrite the file's.
fn copy_back(memory: &Connection, path: &Path) -> rusqlite::Result<()> {
    const COLUMNS: &str = "idempotency_key, session_key, session_id, event, priority, server, \
        tool, state, attempts, next_attempt_at, last_error, created_at, \
        delivered_at, latency_ms, late";
    with_file_attached(memory, path, |db| {
        let copied = db.execute_batch(&format!(
            "BEGIN;
             INSERT INTO disk.actions ({COLUMNS})
                 SELECT {COLUMNS} FROM main.actions WHERE true ORDER BY id
                 ON CONFLICT (idempotency_key) DO UPDATE SET
                     state = excluded.state, attempts = excluded.attempts,
                     next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,
                     delivered_at = excluded.delivered_at, latency_ms = excluded.latency_ms;
             -- Payloads follow their action's idempotency key: the file
             -- numbered the actions it did not have.
             INSERT INTO disk.payloads (action_id, template, vars, keep, delivered_at)
                 SELECT d.id, p.template, p.vars, p.keep, p.delivered_at
                 FROM main.payloads p
                 JOIN main.actions m ON m.id = p.action_id
                 JOIN disk.actions d ON d.idempotency_key = m.idempotency_key
                 WHERE true
                 ON CONFLICT (action_id) DO UPDATE SET delivered_at = excluded.delivered_at;
             INSERT OR REPLACE INTO disk.kept SELECT * FROM main.kept;
             DELETE FROM disk.journal;
             INSERT INTO disk.journal SELECT * FROM main.journal;
             INSERT OR REPLACE INTO disk.journal_server SELECT * FROM main.journal_server;
             COMMIT;"
        ));
        if copied.is_err() {
            let _ = db.execute_batch("ROLLBACK;");
        }
        copied
    })
}

/// The one outbox of a daemon, shared by the reactor, its dispatchers and
/// the status and save hooks.
///
/// A `std` mutex, not tokio's: it is held for single SQLite statements
/// (each its own transaction), never across an `.await`, so no task ever
/// waits on it for long. For the same reason a panic while it was held
/// cannot have left the outbox half-written: SQLite rolled the statement
/// back. So [`SharedOutbox::lock`] recovers from poisoning instead of
/// passing the panic on, which would stop every dispatcher, one by one,
/// at its next call.
#[derive(Clone)]
pub struct SharedOutbox {
    inner: Arc<Mutex<Outbox>>,
    /// Set once a poisoned lock has been logged: one line says it, not
    /// one per lock.
    poison_logged: Arc<AtomicBool>,
}

impl std::fmt::Debug for SharedOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedOutbox").finish_non_exhaustive()
    }
}

impl SharedOutbox {
    pub fn new(outbox: Outbox) -> Self {
        Self {
            inner: Arc::new(Mutex::new(outbox)),
            poison_logged: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs `f` on the outbox on tokio's blocking pool, never on an async
    /// worker: a statement may wait for SQLite's file lock (another writer,
    /// the busy timeout), fsync, or copy the whole outbox to memory and back
    /// (`spill`, `heal`), and a worker blocked on that stalls every task
    /// scheduled on it (the control connection's reader among them). Every
    /// use of the outbox from async code goes through here; [`Self::lock`]
    /// is for threads that may block.
    ///
    /// A panic in `f` is passed on to the caller, as if `f` had run inline.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Outbox) -> T + Send + 'static,
    ) -> T {
        let shared = self.clone();
        match tokio::task::spawn_blocking(move || f(&mut shared.lock())).await {
            Ok(value) => value,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Only a runtime shutting down cancels a blocking task, and
            // then nothing is left to carry on.
            Err(err) => panic!("the outbox task was cancelled: {err}"),
        }
    }

    /// The outbox, for one statement or a few, from a thread that may
    /// block (see [`Self::run`]). Never panics: a lock poisoned by a panic
    /// elsewhere is taken anyway (see the type's doc).
    pub fn lock(&self) -> MutexGuard<'_, Outbox> {
        self.inner.lock().unwrap_or_else(|poisoned| {
            if !self.poison_logged.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    "a task panicked while using the outbox; carrying on (every write is its own SQLite transaction)"
                );
            }
            self.inner.clear_poison();
            poisoned.into_inner()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn action(key: &str, session: &str, event: &str, priority: Priority) -> NewAction {
        NewAction {
            idempotency_key: key.into(),
            session_key: session.into(),
            session_id: "$1".into(),
            event: event.into(),
            priority,
            server: "builtin".into(),
            tool: "t".into(),
            template: json!({"a": "{session}"}),
            vars: json!({"session": "s"}),
            keep: json!({}),
            late: false,
        }
    }

    #[test]
    fn a_session_is_served_in_order_and_sessions_by_priority() {
        let mut outbox = Outbox::in_memory().unwrap();
        outbox
            .enqueue(
                &[
                    action("a1", "A", "session-created", Priority::Register),
                    action("b1", "B", "session-created", Priority::Register),
                    action("a2", "A", "session-closed", Priority::Complete),
                    action("b2", "B", "session-detached", Priority::Save),
                ],
                0,
            )
            .unwrap();
        assert_eq!(outbox.open_count().unwrap(), 4);
        // Both sessions' heads are registers; the older goes first.
        let first = outbox.next_ready("builtin", 0).unwrap().unwrap();
        assert_eq!(first.new.idempotency_key, "a1");
        outbox.mark_inflight(first.id).unwrap();
        // A is busy, so B's head is next even though A's close is more urgent.
        let second = outbox.next_ready("builtin", 0).unwrap().unwrap();
        assert_eq!(second.new.idempotency_key, "b1");
        outbox.mark_inflight(second.id).unwrap();
        assert!(outbox.next_ready("builtin", 0).unwrap().is_none());
        outbox
            .mark_delivered(first.id, 1, 1, &[("goal_id".into(), json!(7))])
            .unwrap();
        outbox.mark_delivered(second.id, 1, 1, &[]).unwrap();
        // Now both have a head again: the close outranks the save.
        let third = outbox.next_ready("builtin", 0).unwrap().unwrap();
        assert_eq!(third.new.idempotency_key, "a2");
        assert_eq!(outbox.kept("A").unwrap()["goal_id"], json!(7));
    }

    #[test]
    fn replayed_keys_are_ignored_and_inflight_recovers() {
        let mut outbox = Outbox::in_memory().unwrap();
        let a = action("k", "A", "session-created", Priority::Register);
        assert_eq!(outbox.enqueue(std::slice::from_ref(&a), 0).unwrap(), 1);
        assert_eq!(outbox.enqueue(&[a], 0).unwrap(), 0);
        let next = outbox.next_ready("builtin", 0).unwrap().unwrap();
        outbox.mark_inflight(next.id).unwrap();
        assert_eq!(outbox.recover().unwrap(), 1);
        let again = outbox.next_ready("builtin", 0).unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (next.id, 1));
    }

    #[test]
    fn retries_wait_and_failures_stop() {
        let mut outbox = Outbox::in_memory().unwrap();
        outbox
            .enqueue(
                &[action("k", "A", "session-created", Priority::Register)],
                0,
            )
            .unwrap();
        let a = outbox.next_ready("builtin", 0).unwrap().unwrap();
        outbox.mark_inflight(a.id).unwrap();
        outbox.mark_retry(a.id, "server down", 1000).unwrap();
        assert!(outbox.next_ready("builtin", 999).unwrap().is_none());
        // A new daemon does not inherit the old one's backoff.
        let mut reopened = Outbox::in_memory().unwrap();
        reopened
            .enqueue(
                &[action("r", "R", "session-created", Priority::Register)],
                0,
            )
            .unwrap();
        let r = reopened.next_ready("builtin", 0).unwrap().unwrap();
        reopened.mark_inflight(r.id).unwrap();
        reopened.mark_retry(r.id, "down", 60_000).unwrap();
        reopened.recover().unwrap();
        assert!(reopened.next_ready("builtin", 1).unwrap().is_some());
        assert_eq!(outbox.next_due("builtin", 0).unwrap(), Some(1000));
        assert_eq!(outbox.next_due("builtin", 1000).unwrap(), None);
        let a = outbox.next_ready("builtin", 1000).unwrap().unwrap();
        outbox.mark_failed(a.id, "isError: bad", 1000).unwrap();
        assert!(outbox.next_ready("builtin", i64::MAX).unwrap().is_none());
        assert_eq!(outbox.state(a.id).unwrap(), Some(ActionState::Failed));
        let counts = outbox.counts(None).unwrap();
        assert_eq!((counts.failed, counts.pending), (1, 0));
        assert_eq!(outbox.open_count().unwrap(), 0);
        let history = outbox.history("A", 10).unwrap();
        assert_eq!(history[0].error.as_deref(), Some("isError: bad"));
    }

    #[test]
    fn a_reader_sees_what_the_writer_commits_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        assert!(Outbox::open_read_only(&path).unwrap().is_none());
        let mut writer = Outbox::open(&path).unwrap();
        let mut reader = Outbox::open_read_only(&path).unwrap().unwrap();
        writer
            .enqueue(
                &[
                    action("k1", "A", "session-created", Priority::Register),
                    action("k2", "A", "save", Priority::Save),
                    action("k3", "B", "save", Priority::Save),
                ],
                0,
            )
            .unwrap();
        // B's save outranks A's register.
        let first = writer.next_ready("builtin", 0).unwrap().unwrap();
        assert_eq!(first.new.idempotency_key, "k3");
        writer.mark_inflight(first.id).unwrap();
        writer.mark_failed(first.id, "no", 1).unwrap();
        let found = reader
            .by_keys(&["k3".into(), "missing".into(), "k1".into()])
            .unwrap();
        let states: Vec<(&str, &str)> = found
            .iter()
            .map(|e| (e.event.as_str(), e.state.as_str()))
            .collect();
        assert_eq!(states, [("save", "failed"), ("session-created", "pending")]);
        let counts = reader.session_counts("A").unwrap();
        assert_eq!((counts.pending, counts.failed), (2, 0));
        let counts = reader.session_counts("B").unwrap();
        assert_eq!((counts.pending, counts.failed), (0, 1));
        assert!(
            reader.keep("A", "x", &json!(1)).is_err(),
            "the reader wrote"
        );
    }

    /// Makes the outbox's file as full as a full disk would: its connection
    /// may not grow it by a page, so the next write that needs one gets
    /// SQLite's own "database or disk is full". (A new connection to the
    /// file has no such limit: the disk "has room again".)
    fn fill_the_disk(outbox: &Outbox) {
        let pages: i64 = outbox
            .db
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        outbox
            .db
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
    }

    /// An action too big to fit in the file's free pages.
    fn big_action(key: &str, session: &str, event: &str, priority: Priority) -> NewAction {
        let mut big = action(key, session, event, priority);
        big.vars = json!({"context": "x".repeat(64 * 1024)});
        big
    }

    #[test]
    fn a_full_disk_moves_the_outbox_to_memory_with_its_open_actions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let mut outbox = Outbox::open(&path).unwrap();
        outbox
            .enqueue(
                &[
                    action("done", "A", "session-created", Priority::Register),
                    action("open", "B", "session-created", Priority::Register),
                ],
                0,
            )
            .unwrap();
        let done = outbox.next_ready("builtin", 0).unwrap().unwrap();
        outbox.mark_inflight(done.id).unwrap();
        outbox
            .mark_delivered(done.id, 1, 1, &[("goal_id".into(), json!("g-1"))])
            .unwrap();
        fill_the_disk(&outbox);
        let big = big_action("later", "C", "session-closed", Priority::Complete);
        assert_eq!(outbox.enqueue(&[big], 2).unwrap(), 1);

        let reason = outbox.degraded().expect("the outbox says it is in memory");
        assert!(reason.contains("outbox.db"), "{reason}");
        assert!(reason.contains("full"), "{reason}");
        // The open action came along, the delivered one did not, the kept
        // value did; the new one is there, first by priority.
        assert_eq!(outbox.open_count().unwrap(), 2);
        assert_eq!(outbox.kept("A").unwrap()["goal_id"], json!("g-1"));
        let next = outbox.next_ready("builtin", 3).unwrap().unwrap();
        assert_eq!(next.new.idempotency_key, "later");
        outbox.mark_inflight(next.id).unwrap();
        outbox.mark_delivered(next.id, 4, 1, &[]).unwrap();
        let last = outbox.next_ready("builtin", 5).unwrap().unwrap();
        assert_eq!(last.new.idempotency_key, "open");
        // The file still holds the open action for the next daemon.
        let file = Outbox::open_read_only(&path).unwrap().unwrap();
        assert_eq!(file.open_count().unwrap(), 1);
    }

    #[test]
    fn an_outbox_in_memory_goes_back_to_disk_when_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let mut outbox = Outbox::open(&path).unwrap();
        outbox
            .enqueue(
                &[
                    action("a1", "A", "session-created", Priority::Register),
                    action("b1", "B", "session-created", Priority::Register),
                ],
                0,
            )
            .unwrap();
        fill_the_disk(&outbox);
        let big = big_action("c1", "C", "session-created", Priority::Register);
        outbox.enqueue(&[big], 1).unwrap();
        assert!(outbox.degraded().is_some());
        // In memory: A's register is delivered, with a kept goal id.
        let a1 = outbox.claim_next("builtin", 2).unwrap().unwrap();
        assert_eq!(a1.new.idempotency_key, "a1");
        // While a call is in flight the outbox stays put, even when due.
        outbox.next_heal = std::time::Instant::now();
        outbox
            .enqueue(
                &[action("a2", "A", "session-closed", Priority::Complete)],
                3,
            )
            .unwrap();
        assert!(outbox.degraded().is_some(), "moved with a call in flight");
        outbox
            .mark_delivered(a1.id, 4, 1, &[("goal_id".into(), json!("g-a"))])
            .unwrap();

        // The disk has room again (a new connection has no limit): the next
        // claim moves everything back.
        outbox.next_heal = std::time::Instant::now();
        let next = outbox.claim_next("builtin", 5).unwrap().unwrap();
        assert!(outbox.degraded().is_none(), "still in memory");
        // The most urgent open action, A's complete, with its kept goal id.
        assert_eq!(next.new.idempotency_key, "a2");
        assert_eq!(outbox.kept("A").unwrap()["goal_id"], json!("g-a"));
        outbox.mark_delivered(next.id, 6, 1, &[]).unwrap();
        let file = Outbox::open_read_only(&path).unwrap().unwrap();
        let states: Vec<(String, String)> = file
            .by_keys(&["a1".into(), "a2".into(), "b1".into(), "c1".into()])
            .unwrap()
            .into_iter()
            .map(|e| (e.event, e.state))
            .collect();
        assert_eq!(states.len(), 4, "{states:?}");
        assert_eq!(
            states.iter().filter(|(_, s)| s == "delivered").count(),
            2,
            "{states:?}"
        );
        assert_eq!(file.open_count().unwrap(), 2, "b1 and c1 wait");
    }

    #[test]
    fn an_unwritable_place_gives_an_outbox_in_memory_that_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, "").unwrap();
        let mut outbox = Outbox::open_or_memory(&not_a_dir.join("outbox.db"));
        let reason = outbox.degraded().expect("in memory").to_owned();
        assert!(reason.contains("file"), "{reason}");
        outbox
            .enqueue(
                &[action("k", "A", "session-created", Priority::Register)],
                0,
            )
            .unwrap();
        assert_eq!(outbox.open_count().unwrap(), 1);
    }

    /// The `actions` table as versions 1 and 2 made it, payload columns
    /// and all, with the index on them version 2 added.
    const V2_ACTIONS: &str = "
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE,
        session_key TEXT NOT NULL, session_id TEXT NOT NULL, event TEXT NOT NULL,
        priority INTEGER NOT NULL, server TEXT NOT NULL, tool TEXT NOT NULL,
        template TEXT NOT NULL, vars TEXT NOT NULL, keep TEXT NOT NULL,
        state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0, last_error TEXT,
        created_at INTEGER NOT NULL, delivered_at INTEGER, latency_ms INTEGER,
        late INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX actions_open ON actions (server, session_key, id)
        WHERE state IN ('pending', 'inflight');
    CREATE INDEX actions_session ON actions (session_key, id);
    CREATE INDEX actions_prunable ON actions (delivered_at)
        WHERE state = 'delivered' AND vars != 'null';
    CREATE TABLE kept (session_key TEXT NOT NULL, name TEXT NOT NULL,
        value TEXT NOT NULL, PRIMARY KEY (session_key, name));
    ";

    /// An outbox file of schema `version` (1 or 2) holding `rows`:
    /// `(key, session, state, vars)`, delivered ones at 1 s.
    fn old_outbox(path: &Path, version: i64, rows: &[(&str, &str, &str, &str)]) {
        let db = Connection::open(path).unwrap();
        db.execute_batch(V2_ACTIONS).unwrap();
        for (key, session, state, vars) in rows {
            db.execute(
                "INSERT INTO actions (idempotency_key, session_key, session_id, event, priority,
                     server, tool, template, vars, keep, state, created_at, delivered_at)
                 VALUES (?1, ?2, '$1', 'session-detached', 2, 'builtin', 't', '{\"a\":1}', ?4,
                     '{}', ?3, 0, CASE WHEN ?3 = 'delivered' THEN 1000 END)",
                params![key, session, state, vars],
            )
            .unwrap();
        }
        db.pragma_update(None, "user_version", version).unwrap();
    }

    fn user_version(outbox: &Outbox) -> i64 {
        outbox
            .db
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_version_1_outbox_is_migrated_to_store_each_context_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        // What version 1 wrote: the context twice.
        let vars = r#"{"session":"s","context":{"windows":[]},"observations":["x"]}"#;
        old_outbox(&path, 1, &[("k", "A", "pending", vars)]);
        let mut outbox = Outbox::open(&path).unwrap();
        assert_eq!(user_version(&outbox), SCHEMA_VERSION);
        let next = outbox.next_ready("builtin", 0).unwrap().unwrap();
        assert_eq!(
            next.new.vars,
            json!({"session": "s", "context": {"windows": []}})
        );
    }

    #[test]
    fn a_version_2_outbox_moves_its_payloads_to_their_own_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let big = json!({"context": "x".repeat(64 * 1024)}).to_string();
        old_outbox(
            &path,
            2,
            &[
                ("open", "A", "pending", r#"{"session":"a"}"#),
                ("done", "B", "delivered", &big),
                ("pruned", "C", "delivered", "null"),
                ("bad", "D", "failed", r#"{"session":"d"}"#),
            ],
        );
        let mut outbox = Outbox::open(&path).unwrap();
        assert_eq!(user_version(&outbox), SCHEMA_VERSION);
        // Vacuumed once: the old columns' pages are not kept free.
        let free: i64 = outbox
            .db
            .pragma_query_value(None, "freelist_count", |r| r.get(0))
            .unwrap();
        assert_eq!(free, 0, "free pages left after the migration");
        let columns: Vec<String> = outbox
            .db
            .prepare("SELECT name FROM pragma_table_info('actions')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for gone in ["template", "vars", "keep"] {
            assert!(!columns.iter().any(|c| c == gone), "{columns:?}");
        }
        // The open action comes out whole; every history row stayed.
        let next = outbox.next_ready("builtin", 0).unwrap().unwrap();
        assert_eq!(next.new.idempotency_key, "open");
        assert_eq!(next.new.vars, json!({"session": "a"}));
        assert_eq!(next.new.template, json!({"a": 1}));
        let history: usize = ["A", "B", "C", "D"]
            .iter()
            .map(|s| outbox.history(s, 10).unwrap().len())
            .sum();
        assert_eq!(history, 4);
        // The delivered payload moved and prunes; the pruned one did not
        // come back; the failed one is kept.
        assert_eq!(payload_count(&outbox), 3);
        assert_eq!(outbox.prune(2_000, PRUNE_BATCH).unwrap(), 1);
        assert_eq!(payload_count(&outbox), 2);
        drop(outbox);
        // Opening again migrates nothing more.
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(payload_count(&outbox), 2);
    }

    fn payload_count(outbox: &Outbox) -> i64 {
        outbox
            .db
            .query_row("SELECT COUNT(*) FROM payloads", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/outbox.db");
        {
            let mut outbox = Outbox::open(&path).unwrap();
            outbox
                .enqueue(
                    &[action("k", "A", "session-created", Priority::Register)],
                    0,
                )
                .unwrap();
        }
        let mut outbox = Outbox::open(&path).unwrap();
        assert!(outbox.next_ready("builtin", 0).unwrap().is_some());
    }

    /// `status` and the reactor's backlog check run under the lock every
    /// dispatcher needs: each of their queries must read an index (of open
    /// or failed actions), never the whole table, whose history grows with
    /// every call.
    #[test]
    fn the_queries_status_and_the_backlog_check_run_read_an_index() {
        let outbox = Outbox::in_memory().unwrap();
        let queries: [(&str, &[&dyn rusqlite::ToSql]); 5] = [
            (OPEN_COUNT, &[]),
            (OPEN_COUNT_FOR, &[&"builtin"]),
            (FAILED_COUNT, &[]),
            (RECENT_FAILURES, &[&5]),
            (OPEN_BY_SERVER, &[]),
        ];
        for (sql, params) in queries {
            let mut stmt = outbox
                .db
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let plan: Vec<String> = stmt
                .query_map(params, |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let on_actions: Vec<&String> = plan.iter().filter(|l| l.contains("actions")).collect();
            assert!(!on_actions.is_empty(), "{sql}: {plan:?}");
            for line in on_actions {
                assert!(line.contains("INDEX"), "{sql} scans the table: {plan:?}");
            }
        }
    }

    #[test]
    fn the_dispatchers_statements_are_planned_once() {
        // SQLite plans a statement again when a value bound to it changes
        // and the plan consulted that value, as it does for a bound LIMIT
        // and for a partial index whose condition the values might imply.
        // The claim's `now` and the payload's id change on every use.
        let mut outbox = Outbox::in_memory().unwrap();
        for round in 0..4_i64 {
            let key = format!("k{round}");
            let session = format!("S{round}");
            outbox
                .enqueue(
                    &[action(
                        &key,
                        &session,
                        "session-created",
                        Priority::Register,
                    )],
                    round,
                )
                .unwrap();
            let claimed = outbox.claim("builtin", 100 + round, 8).unwrap();
            assert_eq!(claimed.len(), 1);
            outbox
                .mark_delivered(claimed[0].action.id, 200 + round, 1, &[])
                .unwrap();
        }
        for sql in [READY, PAYLOAD_DELIVERED] {
            let stmt = outbox.db.prepare_cached(sql).unwrap();
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "planned again: {sql}"
            );
        }
    }

    #[test]
    fn delivered_payloads_are_pruned_after_the_retention_and_history_stays() {
        let mut outbox = Outbox::in_memory().unwrap();
        outbox
            .enqueue(
                &[
                    big_action("old", "A", "session-detached", Priority::Save),
                    big_action("new", "B", "session-detached", Priority::Save),
                    big_action("bad", "C", "session-detached", Priority::Save),
                ],
                0,
            )
            .unwrap();
        for (at, fail) in [(1_000, false), (5_000, false), (1_000, true)] {
            let a = outbox.claim_next("builtin", 0).unwrap().unwrap();
            if fail {
                outbox.mark_failed(a.id, "no", at).unwrap();
            } else {
                outbox.mark_delivered(a.id, at, 1, &[]).unwrap();
            }
        }
        // Delivered before 2 s: only "old" (the failed one is kept whole).
        assert_eq!(outbox.prune(2_000, PRUNE_BATCH).unwrap(), 1);
        assert_eq!(outbox.prune(2_000, PRUNE_BATCH).unwrap(), 0, "pruned twice");
        let payload = |key: &str| -> Option<i64> {
            outbox
                .db
                .query_row(
                    "SELECT length(p.vars) FROM payloads p JOIN actions a ON a.id = p.action_id
                     WHERE a.idempotency_key = ?1",
                    [key],
                    |r| r.get(0),
                )
                .optional()
                .unwrap()
        };
        assert_eq!(payload("old"), None);
        assert!(payload("new").unwrap() > 60_000);
        assert!(payload("bad").unwrap() > 60_000);
        let history = outbox.history("A", 10).unwrap();
        assert_eq!((history.len(), history[0].state.as_str()), (1, "delivered"));
        // Batches: one at a time, oldest first.
        assert_eq!(outbox.prune(i64::MAX, 1).unwrap(), 1);
        assert_eq!(outbox.prune(i64::MAX, 1).unwrap(), 0);
    }

    /// Pruned payloads give their pages back for the next ones: rounds of
    /// 3 KB calls, delivered and pruned, grow the file by their history
    /// rows only. (Version 2, which nulled payloads in place, grew by about
    /// a page per call.)
    #[test]
    fn pruned_payloads_pages_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(&dir.path().join("outbox.db")).unwrap();
        const PER_ROUND: usize = 50;
        let mut pages_after = Vec::new();
        for round in 0..20 {
            let actions: Vec<NewAction> = (0..PER_ROUND)
                .map(|n| {
                    let mut a = action(
                        &format!("{round}/{n}"),
                        &format!("S{n}"),
                        "save",
                        Priority::Save,
                    );
                    a.vars = json!({"context": "x".repeat(3000)});
                    a
                })
                .collect();
            outbox.enqueue(&actions, 0).unwrap();
            while let Some(a) = outbox.claim_next("builtin", 0).unwrap() {
                outbox.mark_delivered(a.id, 1, 1, &[]).unwrap();
            }
            assert_eq!(outbox.prune(2, PRUNE_BATCH).unwrap(), PER_ROUND);
            let pages: i64 = outbox
                .db
                .pragma_query_value(None, "page_count", |r| r.get(0))
                .unwrap();
            pages_after.push(pages);
        }
        // 50 payloads of 3 KB are about 40 pages of 4 KiB; 50 history rows
        // with their index entries about 4.
        let per_round = (pages_after[19] - pages_after[4]) as f64 / 15.0;
        assert!(
            per_round < 10.0,
            "{per_round} pages per round: {pages_after:?}"
        );
    }

    #[test]
    fn failed_actions_are_listed_retried_and_dropped_and_nothing_else_is() {
        let mut outbox = Outbox::in_memory().unwrap();
        outbox
            .enqueue(
                &[
                    action("f1", "A", "session-created", Priority::Register),
                    action("f2", "B", "session-created", Priority::Register),
                    action("ok", "C", "session-created", Priority::Register),
                    action("open", "D", "session-created", Priority::Register),
                ],
                0,
            )
            .unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            let a = outbox.claim_next("builtin", 0).unwrap().unwrap();
            if n < 2 {
                outbox.mark_failed(a.id, "tool said no", 1).unwrap();
            } else {
                outbox.mark_delivered(a.id, 1, 1, &[]).unwrap();
            }
            ids.push(a.id);
        }
        let listed = |which| -> Vec<String> {
            outbox
                .undelivered(which, 100)
                .unwrap()
                .into_iter()
                .map(|e| format!("{}:{}", e.session_key, e.entry.state))
                .collect()
        };
        assert_eq!(listed(Undelivered::Failed), ["A:failed", "B:failed"]);
        assert_eq!(listed(Undelivered::Open), ["D:pending"]);
        assert_eq!(
            listed(Undelivered::All),
            ["A:failed", "B:failed", "D:pending"]
        );
        assert_eq!(outbox.failed_count().unwrap(), 2);

        let err = outbox.retry_failed(Failed::One(ids[2])).unwrap_err();
        assert!(
            err.to_string().contains("is delivered, not failed"),
            "{err}"
        );
        let err = outbox.drop_failed(Failed::One(999)).unwrap_err();
        assert!(err.to_string().contains("no action 999"), "{err}");

        assert_eq!(outbox.retry_failed(Failed::One(ids[0])).unwrap(), 1);
        assert_eq!(outbox.state(ids[0]).unwrap(), Some(ActionState::Pending));
        assert_eq!(outbox.drop_failed(Failed::All).unwrap(), 1);
        assert_eq!(outbox.state(ids[1]).unwrap(), None);
        assert_eq!(outbox.failed_count().unwrap(), 0);
        // The retried action goes out again.
        let again = outbox.claim_next("builtin", 0).unwrap().unwrap();
        assert_eq!(again.new.idempotency_key, "f1");
    }

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let shared = SharedOutbox::new(Outbox::in_memory().unwrap());
        let clone = shared.clone();
        let panicked = std::thread::spawn(move || {
            let _held = clone.lock();
            panic!("a task dies holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(shared.lock().open_count().unwrap(), 0);
        // Recovered once, the lock is healthy again.
        assert!(!shared.inner.is_poisoned());
        assert!(shared.poison_logged.load(Ordering::Relaxed));
    }
}
