//! The built-in server's SQLite database: opening it safely for several
//! processes at once, the versioned schema, write transactions, and the
//! idempotency ledger that makes replayed calls return their first result.
//!
//! Several `tmux-agent mcp serve` processes share one file (the daemon's and
//! one per agent that added the server to its MCP config), so the database
//! runs in WAL mode with a busy timeout, and every write takes the write lock
//! up front (`BEGIN IMMEDIATE`): a deferred transaction that reads and then
//! writes can fail with `SQLITE_BUSY` at once, whatever the timeout, when
//! another process wrote in between.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long a statement waits for another process's write lock before it
/// gives up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon a switch to WAL that found the file busy is tried again.
const WAL_SWITCH_RETRY: Duration = Duration::from_millis(10);

/// How long an idempotency key is remembered. The daemon replays its outbox
/// within minutes of a crash; a month is generous and keeps the table small.
const IDEMPOTENCY_RETENTION_DAYS: i64 = 30;

/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// Version 1: goals with their status history, saved session contexts (one
/// current record per session plus every save), a full-text index over the
/// saves, and the idempotency ledger.
const SCHEMA_V1: &str = "
CREATE TABLE goals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    description  TEXT,
    type         TEXT,
    session      TEXT,
    status       TEXT NOT NULL
                 CHECK (status IN ('active', 'detached', 'completed', 'failed')),
    metadata     TEXT,
    note         TEXT,
    outcome      TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    completed_at TEXT
);
CREATE INDEX goals_by_status ON goals (status, id);
CREATE INDEX goals_by_session ON goals (session, id);

CREATE TABLE goal_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    goal_id INTEGER NOT NULL REFERENCES goals (id),
    status  TEXT NOT NULL,
    note    TEXT,
    at      TEXT NOT NULL
);
CREATE INDEX goal_events_by_goal ON goal_events (goal_id, id);

CREATE TABLE context_saves (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    session      TEXT NOT NULL,
    session_name TEXT NOT NULL,
    saved_at     TEXT NOT NULL,
    context      TEXT NOT NULL
);
CREATE INDEX context_saves_by_session ON context_saves (session, id);

CREATE TABLE sessions (
    session        TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    latest_save    INTEGER NOT NULL REFERENCES context_saves (id),
    saves          INTEGER NOT NULL,
    first_saved_at TEXT NOT NULL,
    last_saved_at  TEXT NOT NULL
);
CREATE INDEX sessions_by_name ON sessions (name, latest_save);

CREATE VIRTUAL TABLE context_text USING fts5 (
    session_name,
    body,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TABLE idempotency (
    key        TEXT PRIMARY KEY,
    tool       TEXT NOT NULL,
    arguments  TEXT NOT NULL,
    result     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idempotency_by_age ON idempotency (created_at);
";

/// What can go wrong below the MCP surface. Each variant's message is shown
/// to the caller as the text of an `isError` tool result.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // Causes are part of each message (not `source`), so that the text a
    // caller sees is complete and a CLI printing the chain repeats nothing.
    #[error("cannot create {path}: {error}")]
    Create {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("database {path}: {error}")]
    Open {
        path: PathBuf,
        error: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this tmux-agent understands \
         ({SCHEMA_VERSION}); upgrade tmux-agent"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("JSON error: {0}")]
    Json(serde_json::Error),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but not allowed (bad state change, bad
    /// combination of arguments, reused idempotency key).
    #[error("{0}")]
    Rejected(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        Self::Json(error)
    }
}

/// An open database. One connection per process; callers serialise on it.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, switches it to
    /// WAL, and creates or checks the schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|error| StoreError::Create {
                path: dir.to_path_buf(),
                error,
            })?;
        }
        create_private_file(path).map_err(|error| StoreError::Create {
            path: path.to_path_buf(),
            error,
        })?;
        let open_err = |error| StoreError::Open {
            path: path.to_path_buf(),
            error,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // WAL lets readers run while another process writes; the setting is
        // stored in the file, so whichever process opens it first sets it.
        // Two processes switching the same new file at once: the loser can
        // get SQLITE_BUSY at once, without the busy handler being asked
        // (seen in `serve_concurrency` under load), so it asks again until
        // the busy timeout has passed.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mode: String = loop {
            match conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0)) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(WAL_SWITCH_RETRY);
                }
                other => break other.map_err(open_err)?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), %mode, "database is not in WAL mode");
        }
        // NORMAL is durable across process crashes in WAL mode, which is what
        // the daemon's outbox relies on; only a power cut can lose the tail.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Brings the schema to [`SCHEMA_VERSION`]. Runs under the write lock so
    /// two processes starting on a new file do not both create tables.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path, found });
        }
        if found < 1 {
            tx.execute_batch(SCHEMA_V1)?;
        }
        if found < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Runs `f` in a write transaction, committed only if `f` succeeds.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `f` in a read transaction, so that several queries see one
    /// snapshot even while another process writes.
    pub fn read<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs the write `f` at most once per idempotency key.
    ///
    /// Without a key this is [`Self::write`]. With one, a key seen before
    /// returns the result stored with it (the write is not repeated), as long
    /// as it names the same tool and the same arguments; anything else is
    /// rejected, because silently returning the result of a different call
    /// would hide a bug in the caller. The check, the write and the ledger
    /// entry share one transaction, so a crash leaves either all or none.
    pub fn write_once<T>(
        &mut self,
        tool: &str,
        key: Option<&str>,
        arguments: &serde_json::Value,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>
    where
        T: Serialize + DeserializeOwned,
    {
        let Some(key) = key else {
            return self.write(f);
        };
        self.write(|tx| {
            let seen: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT tool, arguments, result FROM idempotency WHERE key = ?1",
                    [key],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            if let Some((seen_tool, seen_arguments, result)) = seen {
                if seen_tool != tool {
                    return Err(StoreError::Rejected(format!(
                        "idempotency_key {key:?} was already used for {seen_tool}, not {tool}"
                    )));
                }
                let seen_arguments: serde_json::Value = serde_json::from_str(&seen_arguments)?;
                if &seen_arguments != arguments {
                    return Err(StoreError::Rejected(format!(
                        "idempotency_key {key:?} was already used for a {tool} call with \
                         different arguments"
                    )));
                }
                return Ok(serde_json::from_str(&result)?);
            }
            let value = f(tx)?;
            let now = now();
            tx.execute(
                "DELETE FROM idempotency WHERE created_at < ?1",
                [days_ago(IDEMPOTENCY_RETENTION_DAYS)],
            )?;
            tx.execute(
                "INSERT INTO idempotency (key, tool, arguments, result, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (
                    key,
                    tool,
                    serde_json::to_string(arguments)?,
                    serde_json::to_string(&value)?,
                    now,
                ),
            )?;
            Ok(value)
        })
    }
}

/// The current time as stored and returned: RFC 3339, UTC, milliseconds.
/// Fixed width, so text order is time order.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Creates `dir` and its parents; the last component gets mode 0700 because
/// saved contexts hold terminal contents.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Creates the database file with mode 0600 if it does not exist; SQLite
/// would create it world-readable, and gives its -wal and -shm files the
/// main file's mode.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_schema_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/builtin.db");
        let store = Store::open(&path).unwrap();
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        drop(store);
        Store::open(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("builtin.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn write_once_replays_and_rejects_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("b.db")).unwrap();
        let args = serde_json::json!({"name": "x"});
        let mut runs = 0;
        let mut call = |store: &mut Store, tool: &str, args: &serde_json::Value| {
            store.write_once(tool, Some("k1"), args, |_| {
                runs += 1;
                Ok(runs)
            })
        };
        assert_eq!(call(&mut store, "register_goal", &args).unwrap(), 1);
        assert_eq!(call(&mut store, "register_goal", &args).unwrap(), 1);
        let other = serde_json::json!({"name": "y"});
        assert!(matches!(
            call(&mut store, "register_goal", &other),
            Err(StoreError::Rejected(_))
        ));
        assert!(matches!(
            call(&mut store, "update_goal", &args),
            Err(StoreError::Rejected(_))
        ));
        assert_eq!(runs, 1);
    }
}
