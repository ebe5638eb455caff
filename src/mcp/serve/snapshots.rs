//! The built-in server's tools about restored sessions (issue #14 item 6):
//! `list_snapshots` (what the daemon can restore), `restore_hint` (what a
//! session was doing when last saved: its goal, its last saved context
//! with the captured lines, and its snapshot, so that an agent resumed in a
//! fresh pane can reload its own context), and `restore_goal`, which the
//! daemon's `session-restored` preset calls to bring a goal back.
//!
//! Snapshots live in the daemon's outbox (see `crate::sessions::snapshot`),
//! read here read-only beside the daemon (SQLite WAL); goals and contexts
//! are this server's own store. The tools are a second tool router, added
//! to the one in [`super::tools`].

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::contexts::{self, ContextSave, GetContext};
use super::goals::{self, Goal, GoalId, RegisterGoal};
use super::store::StoreError;
use super::tools::BuiltinServer;
use crate::agent::outbox::Outbox;
use crate::sessions::snapshot::{StoredSnapshot, Which};

/// Arguments of `list_snapshots`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSnapshots {
    /// Only this session name's snapshots (all kept, newest first); without
    /// it, the latest snapshot of each session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
}

/// One snapshot, summed up.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotSummary {
    pub id: i64,
    pub session: String,
    pub session_key: String,
    /// When it was taken (RFC 3339, UTC).
    pub taken_at: String,
    /// `event`, `checkpoint`, `daemon-stop` or `import`.
    pub reason: String,
    /// Set when the session was seen closing: `restore --all` skips it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    pub windows: usize,
    pub panes: usize,
    /// `agent` or `agent:resume-id` per agent pane.
    pub agents: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_id: Option<String>,
}

impl SnapshotSummary {
    pub fn of(stored: &StoredSnapshot) -> Self {
        let s = &stored.snapshot;
        let stamp =
            |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Self {
            id: stored.id,
            session: s.name.clone(),
            session_key: stored.session_key.clone(),
            taken_at: stamp(stored.taken_at),
            reason: stored.reason.as_str().to_owned(),
            closed_at: stored.closed_at.map(stamp),
            windows: s.windows.len(),
            panes: s.panes().count(),
            agents: s
                .panes()
                .filter_map(|(_, p)| {
                    let agent = p.agent.as_deref()?;
                    Some(match &p.resume_id {
                        Some(id) => format!("{agent}:{id}"),
                        None => agent.to_owned(),
                    })
                })
                .collect(),
            goal: s.options.get(crate::schema::session::GOAL).cloned(),
            goal_id: s.goal_id().map(str::to_owned),
        }
    }
}

/// Result of `list_snapshots`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotSummary>,
}

/// Arguments of `restore_hint`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreHintArgs {
    /// The session's name; default: the session of this pane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
}

/// Result of `restore_hint`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RestoreHint {
    pub session: String,
    /// The session's latest snapshot (its layout and agents), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotSummary>,
    /// The goal the session worked on, as this server has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    /// The session's last saved context (windows, panes and their captured
    /// lines), from before the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_context: Option<ContextSave>,
    /// What is missing and why, in words.
    pub notes: Vec<String>,
}

/// Arguments of `restore_goal`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreGoal {
    /// The goal's id; empty when the snapshot had none, and then a goal is
    /// registered from `name`, `description` and `type`.
    #[schemars(with = "Value")]
    pub id: Value,
    /// The restored session's key.
    pub session: String,
    /// The session's name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub description: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub goal_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub idempotency_key: Option<String>,
}

/// `restore_goal`: the goal back to active, or a new one when there is no
/// goal of that id here.
fn restore(tx: &rusqlite::Transaction<'_>, args: &RestoreGoal) -> Result<Goal, StoreError> {
    let id = match &args.id {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    if let Some(id) = id {
        match goals::revive(tx, GoalId(id), Some(&args.session), args.note.as_deref()) {
            Err(StoreError::NotFound(_)) => {}
            other => return other,
        }
    }
    let empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    goals::register(
        tx,
        &RegisterGoal {
            name: args.name.clone(),
            description: empty(&args.description),
            goal_type: empty(&args.goal_type),
            session: Some(args.session.clone()),
            metadata: None,
            idempotency_key: None,
        },
    )
}

#[tool_router(router = snapshot_router, vis = "pub(super)")]
impl BuiltinServer {
    #[tool(
        description = "What tmux-agent can restore: the latest snapshot of each tmux session \
                       the daemon kept (or all kept snapshots of one session), with when it was \
                       taken, its windows and panes, its agents and their resume ids, and its \
                       goal.",
        annotations(
            title = "List snapshots",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_snapshots(
        &self,
        Parameters(args): Parameters<ListSnapshots>,
    ) -> Result<Json<SnapshotList>, String> {
        let stored = self.stored_snapshots(args.session).await?;
        Ok(Json(SnapshotList {
            snapshots: stored.iter().map(SnapshotSummary::of).collect(),
        }))
    }

    #[tool(
        description = "What this pane's session (or the session named) was doing when it was \
                       last saved, for an agent resumed in a fresh pane: its goal, its last saved \
                       context (windows, panes, captured lines) and its latest snapshot.",
        annotations(title = "Restore hint", read_only_hint = true, open_world_hint = false)
    )]
    async fn restore_hint(
        &self,
        Parameters(args): Parameters<RestoreHintArgs>,
    ) -> Result<Json<RestoreHint>, String> {
        let name = match args.session {
            Some(name) => name,
            None => {
                let (session, _) = super::agent::resolve_session(self.tmux_env(), None)
                    .await
                    .map_err(|err| err.to_string())?;
                session.name
            }
        };
        let snapshots = self.stored_snapshots(Some(name.clone())).await?;
        let mut notes = Vec::new();
        // The newest snapshot of an earlier life of the session: the one a
        // restore came from (the restored session's own come after it, and
        // carry no saved context yet).
        let latest = snapshots.first().cloned();
        if latest.is_none() {
            notes.push(format!(
                "the daemon kept no snapshot of a session named {name:?}"
            ));
        }
        let keys: Vec<String> = snapshots.iter().map(|s| s.session_key.clone()).collect();
        let goal_id = snapshots
            .iter()
            .find_map(|s| s.snapshot.goal_id().and_then(|id| id.trim().parse().ok()));
        let (goal, last_context) = self
            .with_store(move |store| {
                store.read(|tx| {
                    let goal = match goal_id {
                        Some(id) => match goals::get(tx, GoalId(id)) {
                            Ok(goal) => Some(goal),
                            Err(StoreError::NotFound(_)) => None,
                            Err(err) => return Err(err),
                        },
                        None => None,
                    };
                    let mut context = None;
                    for key in &keys {
                        let args = GetContext {
                            session: Some(key.clone()),
                            ..GetContext::default()
                        };
                        match contexts::get(tx, &args) {
                            Ok(history) => {
                                context = history.saves.into_iter().next();
                                break;
                            }
                            Err(StoreError::NotFound(_)) => continue,
                            Err(err) => return Err(err),
                        }
                    }
                    Ok((goal, context))
                })
            })
            .await?;
        if goal.is_none() {
            notes.push("no goal of this session is known to this server".into());
        }
        if last_context.is_none() {
            notes.push("no context of this session was saved (the daemon saves one on detach and at checkpoints)".into());
        }
        Ok(Json(RestoreHint {
            session: name,
            snapshot: latest.as_ref().map(SnapshotSummary::of),
            goal,
            last_context,
            notes,
        }))
    }

    #[tool(
        description = "Bring a restored tmux session's goal back to active under its new \
                       session key (the daemon calls it on session-restored); with no goal of \
                       that id, a new goal is registered. Pass idempotency_key to make a retried \
                       call return the same goal.",
        annotations(
            title = "Restore goal",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn restore_goal(
        &self,
        Parameters(args): Parameters<RestoreGoal>,
    ) -> Result<Json<Goal>, String> {
        let key = args.idempotency_key.clone();
        self.write_once("restore_goal", key, args, restore).await
    }
}

impl BuiltinServer {
    /// The daemon's snapshots of session `name` (or the latest of each).
    async fn stored_snapshots(&self, name: Option<String>) -> Result<Vec<StoredSnapshot>, String> {
        let path = crate::paths::outbox(&self.tmux_env().server);
        tokio::task::spawn_blocking(move || {
            let Some(outbox) = Outbox::open_read_only(&path).map_err(|err| err.to_string())? else {
                return Ok(Vec::new());
            };
            let which = match &name {
                Some(name) => Which::Named(name),
                None => Which::Latest,
            };
            outbox.snapshots(which).map_err(|err| err.to_string())
        })
        .await
        .map_err(|err| format!("internal error: {err}"))?
    }
}
