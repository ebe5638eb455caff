//! Goals: what a tmux session is for, and where it stands. The argument and
//! result types of the goal tools (with their JSON Schemas) and the SQL that
//! carries them out, each write inside the caller's transaction.
//!
//! A goal is `active` or `detached` while its session lives and ends
//! `completed` or `failed`. A finished goal stays finished: a late or
//! replayed `update_goal(active)` must not revive it, and completing it again
//! changes nothing, so the daemon's close-time call and an agent's own
//! `complete_my_goal` can both happen without an error.

use std::borrow::Cow;

use rusqlite::{OptionalExtension, Row, Transaction};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::store::{StoreError, now};

/// Where a goal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GoalStatus {
    /// Being worked on; its session has a client attached.
    Active,
    /// Its session lives but nobody is attached.
    Detached,
    /// Done.
    Completed,
    /// Given up or broken.
    Failed,
}

impl GoalStatus {
    /// The word stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Detached => "detached",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "active" => Self::Active,
            "detached" => Self::Detached,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Completed or failed: no further change of status.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// A goal id. Serialised as an integer; accepted as an integer or a decimal
/// string, because callers often hold it as text (the `@agent-goal-id` tmux
/// option, a template placeholder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct GoalId(pub i64);

impl<'de> Deserialize<'de> for GoalId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(text) => text.trim().parse().map(Self).map_err(|_| {
                serde::de::Error::custom(format!("goal id {text:?} is not an integer"))
            }),
        }
    }
}

impl JsonSchema for GoalId {
    fn schema_name() -> Cow<'static, str> {
        "GoalId".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Goal id as returned by register_goal (an integer; a decimal string is accepted too).",
            "type": ["integer", "string"],
        })
    }
}

impl std::fmt::Display for GoalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A goal as stored and returned by every goal tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Goal {
    /// Id to pass to update_goal and complete_goal.
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    /// Kind of agent or work (e.g. "claude", "build").
    #[serde(rename = "type")]
    pub goal_type: Option<String>,
    /// Key of the tmux session the goal belongs to.
    pub session: Option<String>,
    pub status: GoalStatus,
    /// Caller-defined data, returned as given.
    pub metadata: Option<Map<String, Value>>,
    /// Note from the latest status update.
    pub note: Option<String>,
    /// What came of it, given to complete_goal.
    pub outcome: Option<String>,
    /// When it was registered (RFC 3339, UTC).
    pub created_at: String,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: String,
    /// When it was completed or failed (RFC 3339, UTC).
    pub completed_at: Option<String>,
}

/// Arguments of `register_goal`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterGoal {
    /// Short name of the goal, usually the session name.
    pub name: String,
    /// What the goal is, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub description: Option<String>,
    /// Kind of agent or work (e.g. "claude", "build").
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub goal_type: Option<String>,
    /// Stable key of the tmux session (e.g. "host:$3:1732200000"); names are
    /// reused over time, keys are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
    /// Any JSON object, stored and returned as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Map<String, Value>")]
    pub metadata: Option<Map<String, Value>>,
    /// Makes a replay of this call return the first call's goal instead of
    /// registering another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub idempotency_key: Option<String>,
}

/// Arguments of `update_goal`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGoal {
    pub id: GoalId,
    /// New status. A completed or failed goal cannot become active or
    /// detached again.
    pub status: GoalStatus,
    /// Why, or what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub note: Option<String>,
    /// Makes a replay of this call return the first call's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub idempotency_key: Option<String>,
}

/// Arguments of `complete_goal`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteGoal {
    pub id: GoalId,
    /// What came of the goal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub outcome: Option<String>,
    /// Makes a replay of this call return the first call's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub idempotency_key: Option<String>,
}

/// Arguments of `list_goals`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListGoals {
    /// Only goals with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "GoalStatus")]
    pub status: Option<GoalStatus>,
    /// Only goals of this session key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    pub limit: Option<u32>,
}

/// Result of `list_goals`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GoalList {
    /// Newest first.
    pub goals: Vec<Goal>,
}

const GOAL_COLUMNS: &str = "id, name, description, type, session, status, metadata, note, \
                            outcome, created_at, updated_at, completed_at";

fn goal_from_row(row: &Row<'_>) -> rusqlite::Result<Goal> {
    let status: String = row.get(5)?;
    let metadata: Option<String> = row.get(6)?;
    let bad = |index, what: String| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, what.into())
    };
    Ok(Goal {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        goal_type: row.get(3)?,
        session: row.get(4)?,
        status: GoalStatus::parse(&status)
            .ok_or_else(|| bad(5, format!("unknown goal status {status:?}")))?,
        metadata: metadata
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|err| bad(6, format!("goal metadata: {err}")))?,
        note: row.get(7)?,
        outcome: row.get(8)?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
        completed_at: row.get(11)?,
    })
}

/// The goal with this id.
pub fn get(tx: &Transaction<'_>, id: GoalId) -> Result<Goal, StoreError> {
    tx.query_row(
        &format!("SELECT {GOAL_COLUMNS} FROM goals WHERE id = ?1"),
        [id.0],
        goal_from_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("no goal with id {id}")))
}

/// Inserts a new active goal.
pub fn register(tx: &Transaction<'_>, args: &RegisterGoal) -> Result<Goal, StoreError> {
    if args.name.trim().is_empty() {
        return Err(StoreError::Rejected("name must not be empty".into()));
    }
    let now = now();
    let metadata = args
        .metadata
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?;
    tx.execute(
        "INSERT INTO goals (name, description, type, session, status, metadata,
                            created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?6)",
        (
            &args.name,
            &args.description,
            &args.goal_type,
            &args.session,
            metadata,
            &now,
        ),
    )?;
    let id = GoalId(tx.last_insert_rowid());
    record_event(tx, id, GoalStatus::Active, None, &now)?;
    get(tx, id)
}

/// Changes a goal's status and note.
pub fn update(tx: &Transaction<'_>, args: &UpdateGoal) -> Result<Goal, StoreError> {
    let goal = get(tx, args.id)?;
    if goal.status.is_finished() && goal.status != args.status {
        return Err(StoreError::Rejected(format!(
            "goal {} is already {}; a finished goal cannot become {}",
            goal.id,
            goal.status.as_str(),
            args.status.as_str()
        )));
    }
    let now = now();
    let completed_at = match (args.status.is_finished(), goal.completed_at) {
        (true, None) => Some(now.clone()),
        (_, kept) => kept,
    };
    tx.execute(
        "UPDATE goals SET status = ?2, note = ?3, updated_at = ?4, completed_at = ?5
         WHERE id = ?1",
        (
            args.id.0,
            args.status.as_str(),
            &args.note,
            &now,
            completed_at,
        ),
    )?;
    record_event(tx, args.id, args.status, args.note.as_deref(), &now)?;
    get(tx, args.id)
}

/// Brings goal `id` back to `active`, whatever its status, under the
/// session key `session`: the one exception to "a finished goal stays
/// finished", made only by `restore_goal` for a session `tmux-agent
/// restore` recreated (its close completed the goal; the work goes on).
/// The event is recorded with `note` like any other status change.
pub fn revive(
    tx: &Transaction<'_>,
    id: GoalId,
    session: Option<&str>,
    note: Option<&str>,
) -> Result<Goal, StoreError> {
    get(tx, id)?;
    let now = now();
    tx.execute(
        "UPDATE goals SET status = 'active', session = COALESCE(?2, session), note = ?3,
                          updated_at = ?4, completed_at = NULL
         WHERE id = ?1",
        (id.0, session, note, &now),
    )?;
    record_event(tx, id, GoalStatus::Active, note, &now)?;
    get(tx, id)
}

/// Marks a goal completed with its outcome; a finished goal is returned
/// unchanged.
pub fn complete(tx: &Transaction<'_>, args: &CompleteGoal) -> Result<Goal, StoreError> {
    let goal = get(tx, args.id)?;
    if goal.status.is_finished() {
        return Ok(goal);
    }
    let now = now();
    tx.execute(
        "UPDATE goals SET status = 'completed', outcome = ?2, updated_at = ?3,
                          completed_at = ?3
         WHERE id = ?1",
        (args.id.0, &args.outcome, &now),
    )?;
    record_event(
        tx,
        args.id,
        GoalStatus::Completed,
        args.outcome.as_deref(),
        &now,
    )?;
    get(tx, args.id)
}

/// Goals matching the filters, newest first.
pub fn list(tx: &Transaction<'_>, args: &ListGoals) -> Result<GoalList, StoreError> {
    let limit = i64::from(args.limit.unwrap_or(100).clamp(1, 1000));
    let mut stmt = tx.prepare(&format!(
        "SELECT {GOAL_COLUMNS} FROM goals
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR session = ?2)
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let goals = stmt
        .query_map(
            (args.status.map(GoalStatus::as_str), &args.session, limit),
            goal_from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GoalList { goals })
}

fn record_event(
    tx: &Transaction<'_>,
    id: GoalId,
    status: GoalStatus,
    note: Option<&str>,
    at: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO goal_events (goal_id, status, note, at) VALUES (?1, ?2, ?3, ?4)",
        (id.0, status.as_str(), note, at),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goal_id_accepts_integer_and_decimal_string() {
        let id: GoalId = serde_json::from_value(serde_json::json!(7)).unwrap();
        assert_eq!(id, GoalId(7));
        let id: GoalId = serde_json::from_value(serde_json::json!(" 42 ")).unwrap();
        assert_eq!(id, GoalId(42));
        let err = serde_json::from_value::<GoalId>(serde_json::json!("4x")).unwrap_err();
        assert!(err.to_string().contains("not an integer"), "{err}");
        assert!(serde_json::from_value::<GoalId>(serde_json::json!(1.5)).is_err());
    }
}
