//! Saved session contexts: what a tmux session looked like when it was
//! saved (windows, panes, captured lines, group, goal). The argument and
//! result types of the context tools and the SQL behind them.
//!
//! A session is identified by the key its saver supplies (the daemon uses
//! `<host>:<session_id>:<created>`): tmux reuses names, so a name is only an
//! index, and looking a session up by name finds the one saved most
//! recently. Each session has one current record (`sessions`) and a bounded
//! history of saves (`context_saves`), and every save is indexed for
//! full-text search (FTS5) in the same transaction.

use rusqlite::{OptionalExtension, Transaction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::store::{StoreError, now};

/// The context of one tmux session. Every field is optional, and fields not
/// named here are kept as given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
// Inline, so that `context` reads as `"type": "object"` to clients that do
// not follow `$ref`s (the MCP Inspector's CLI, for one).
#[schemars(inline)]
pub struct SessionContext {
    /// tmux session id, e.g. "$3".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The session's goal text (`@agent-goal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    /// Coordination group (`@agent-group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowContext>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One window of a saved session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WindowContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// tmux window id, e.g. "@4".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub panes: Vec<PaneContext>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One pane of a saved window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaneContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// tmux pane id, e.g. "%7".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The command running in the pane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The pane's working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Captured lines of the pane, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Arguments of `save_context`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveContext {
    /// Stable key of the session (e.g. "host:$3:1732200000").
    pub session: String,
    /// The session's name now.
    pub session_name: String,
    pub context: SessionContext,
    /// Makes a replay of this call return the first call's receipt instead
    /// of saving again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub idempotency_key: Option<String>,
}

/// Result of `save_context`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SaveReceipt {
    pub session: String,
    pub session_name: String,
    /// Id of this save in the session's history.
    pub save_id: i64,
    /// RFC 3339 UTC.
    pub saved_at: String,
    /// Saves of this session now kept (older ones are dropped past the
    /// server's limit).
    pub saves: i64,
}

/// Arguments of `get_context`: `session` or `session_name`, not both.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetContext {
    /// Session key, as given to save_context; a session name is accepted too
    /// (when no key matches, the session saved most recently under that name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
    /// Session name; the session saved most recently under it wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session_name: Option<String>,
    /// Return up to `limit` saves, newest first, instead of the latest only.
    #[serde(default)]
    pub history: bool,
    /// With history: at most this many saves (default 10, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    pub limit: Option<u32>,
}

/// Result of `get_context`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ContextHistory {
    pub session: String,
    /// The name of the latest save.
    pub session_name: String,
    /// Saves kept for this session.
    pub saves_total: i64,
    /// Newest first: one save, or up to `limit` with history.
    pub saves: Vec<ContextSave>,
}

/// One save of a session.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ContextSave {
    pub save_id: i64,
    pub saved_at: String,
    pub session_name: String,
    pub context: SessionContext,
}

/// Arguments of `search_context`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchContext {
    /// Words to find; a save matches when it contains all of them (case and
    /// accents ignored). Punctuation separates words.
    pub query: String,
    /// Search every kept save, not only each session's latest.
    #[serde(default)]
    pub history: bool,
    /// At most this many matches, best first (default 20, at most 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    pub limit: Option<u32>,
}

/// Result of `search_context`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SearchResults {
    pub query: String,
    /// Best match first.
    pub matches: Vec<ContextMatch>,
}

/// A save that matched a search.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ContextMatch {
    pub session: String,
    pub session_name: String,
    pub save_id: i64,
    pub saved_at: String,
    /// Whether this is the session's current save.
    pub latest: bool,
    /// Matching text with the found words in «».
    pub snippet: String,
}

/// Saves a context as the session's current one, keeps it in the history,
/// and drops saves beyond the newest `keep` of this session.
pub fn save(
    tx: &Transaction<'_>,
    args: &SaveContext,
    keep: u32,
) -> Result<SaveReceipt, StoreError> {
    if args.session.is_empty() {
        return Err(StoreError::Rejected("session key must not be empty".into()));
    }
    let saved_at = now();
    let context = serde_json::to_value(&args.context)?;
    tx.execute(
        "INSERT INTO context_saves (session, session_name, saved_at, context)
         VALUES (?1, ?2, ?3, ?4)",
        (
            &args.session,
            &args.session_name,
            &saved_at,
            serde_json::to_string(&context)?,
        ),
    )?;
    let save_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO context_text (rowid, session_name, body) VALUES (?1, ?2, ?3)",
        (save_id, &args.session_name, searchable_text(&context)),
    )?;
    tx.execute(
        "INSERT INTO sessions (session, name, latest_save, saves, first_saved_at, last_saved_at)
         VALUES (?1, ?2, ?3, 1, ?4, ?4)
         ON CONFLICT (session) DO UPDATE SET
             name = excluded.name,
             latest_save = excluded.latest_save,
             last_saved_at = excluded.last_saved_at",
        (&args.session, &args.session_name, save_id, &saved_at),
    )?;
    let keep = i64::from(keep.max(1));
    let doomed: Vec<i64> = tx
        .prepare(
            "SELECT id FROM context_saves WHERE session = ?1
             ORDER BY id DESC LIMIT -1 OFFSET ?2",
        )?
        .query_map((&args.session, keep), |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &doomed {
        tx.execute("DELETE FROM context_text WHERE rowid = ?1", [id])?;
        tx.execute("DELETE FROM context_saves WHERE id = ?1", [id])?;
    }
    let saves: i64 = tx.query_row(
        "SELECT count(*) FROM context_saves WHERE session = ?1",
        [&args.session],
        |row| row.get(0),
    )?;
    tx.execute(
        "UPDATE sessions SET saves = ?2 WHERE session = ?1",
        (&args.session, saves),
    )?;
    Ok(SaveReceipt {
        session: args.session.clone(),
        session_name: args.session_name.clone(),
        save_id,
        saved_at,
        saves,
    })
}

/// The latest save of a session, or its history.
pub fn get(tx: &Transaction<'_>, args: &GetContext) -> Result<ContextHistory, StoreError> {
    let by_name = |name: &str| -> Result<Option<String>, StoreError> {
        Ok(tx
            .query_row(
                "SELECT session FROM sessions WHERE name = ?1
                 ORDER BY latest_save DESC LIMIT 1",
                [name],
                |row| row.get(0),
            )
            .optional()?)
    };
    let session = match (&args.session, &args.session_name) {
        // A person types a session's name where a key is asked for: a key
        // is tried first, then the name (the most recent such session).
        (Some(key), None) => {
            let is_key: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE session = ?1)",
                [key],
                |row| row.get(0),
            )?;
            if is_key {
                key.clone()
            } else {
                by_name(key)?.ok_or_else(|| {
                    StoreError::NotFound(format!(
                        "no saved context for session key or name {key:?}"
                    ))
                })?
            }
        }
        (None, Some(name)) => by_name(name)?.ok_or_else(|| {
            StoreError::NotFound(format!("no saved context for a session named {name:?}"))
        })?,
        _ => {
            return Err(StoreError::Rejected(
                "give exactly one of `session` (the key) and `session_name`".into(),
            ));
        }
    };
    let (session_name, saves_total): (String, i64) = tx
        .query_row(
            "SELECT name, saves FROM sessions WHERE session = ?1",
            [&session],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .ok_or_else(|| {
            StoreError::NotFound(format!("no saved context for session key {session:?}"))
        })?;
    let limit = if args.history {
        i64::from(args.limit.unwrap_or(10).clamp(1, 1000))
    } else {
        1
    };
    let rows: Vec<(i64, String, String, String)> = tx
        .prepare(
            "SELECT id, saved_at, session_name, context FROM context_saves
             WHERE session = ?1 ORDER BY id DESC LIMIT ?2",
        )?
        .query_map((&session, limit), |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let saves = rows
        .into_iter()
        .map(|(save_id, saved_at, session_name, context)| {
            Ok(ContextSave {
                save_id,
                saved_at,
                session_name,
                context: serde_json::from_str(&context)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(ContextHistory {
        session,
        session_name,
        saves_total,
        saves,
    })
}

/// Full-text search over saved contexts.
pub fn search(tx: &Transaction<'_>, args: &SearchContext) -> Result<SearchResults, StoreError> {
    let fts_query = fts_query(&args.query).ok_or_else(|| {
        StoreError::Rejected(format!("query {:?} has no words to search for", args.query))
    })?;
    let limit = i64::from(args.limit.unwrap_or(20).clamp(1, 200));
    let mut stmt = tx.prepare(
        "SELECT s.session, s.session_name, s.id, s.saved_at, cur.latest_save = s.id,
                snippet(context_text, 1, '«', '»', '…', 24)
         FROM context_text
         JOIN context_saves s ON s.id = context_text.rowid
         JOIN sessions cur ON cur.session = s.session
         WHERE context_text MATCH ?1 AND (?2 OR cur.latest_save = s.id)
         ORDER BY rank LIMIT ?3",
    )?;
    let matches = stmt
        .query_map((&fts_query, args.history, limit), |row| {
            Ok(ContextMatch {
                session: row.get(0)?,
                session_name: row.get(1)?,
                save_id: row.get(2)?,
                saved_at: row.get(3)?,
                latest: row.get(4)?,
                snippet: row.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(SearchResults {
        query: args.query.clone(),
        matches,
    })
}

/// Turns free text into an FTS5 query that cannot be a syntax error: every
/// word becomes a quoted string and all must match. FTS5's own operators
/// (`AND`, `NEAR`, `*`, `:`, `"`) are never interpreted, so a query is never
/// a syntax error and never reaches outside the index.
fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| format!("\"{word}\""))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Every string in a context, one per line: what the full-text index sees.
fn searchable_text(context: &Value) -> String {
    fn walk(value: &Value, out: &mut String) {
        match value {
            Value::String(text) => {
                out.push_str(text);
                out.push('\n');
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            Value::Object(map) => map.values().for_each(|item| walk(item, out)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    let mut out = String::new();
    walk(context, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_quotes_every_word_and_drops_operators() {
        assert_eq!(
            fts_query(r#"cargo "test" AND x*:y NEAR(a)"#).as_deref(),
            Some(r#""cargo" "test" "AND" "x" "y" "NEAR" "a""#)
        );
        assert_eq!(fts_query("été ünï").as_deref(), Some(r#""été" "ünï""#));
        assert_eq!(fts_query(" -- '\" ;"), None);
    }

    #[test]
    fn context_keeps_unknown_fields() {
        let given = serde_json::json!({
            "goal": "g", "cwd": "/x",
            "windows": [{"name": "w", "zoomed": true, "panes": [{"lines": ["a"], "pid": 4}]}]
        });
        let context: SessionContext = serde_json::from_value(given.clone()).unwrap();
        assert_eq!(serde_json::to_value(&context).unwrap(), given);
    }
}
