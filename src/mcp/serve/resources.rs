//! The built-in server's data as MCP resources, read-only:
//!
//! - `tmux-agent://goals`: every goal, newest first (JSON);
//! - `tmux-agent://goal/{id}`: one goal;
//! - `tmux-agent://context/{session}`: a session's latest saved context, by
//!   session key or name, written as is (`tmux-agent://context/host:1:$3`).
//!
//! Not done: `notifications/resources/list_changed` when tmux sessions come
//! and go (the server does not watch tmux), and subscriptions.

use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};
use rusqlite::Transaction;

use super::contexts::{self, GetContext};
use super::goals::{self, GoalId, ListGoals};
use super::store::StoreError;

const GOALS: &str = "tmux-agent://goals";
const GOAL: &str = "tmux-agent://goal/";
const CONTEXT: &str = "tmux-agent://context/";
const JSON: &str = "application/json";

/// The fixed resources.
pub fn list() -> Vec<Resource> {
    vec![
        Resource::new(GOALS, "goals")
            .with_description("Every goal this server records, newest first")
            .with_mime_type(JSON),
    ]
}

/// The resource templates.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(format!("{GOAL}{{id}}"), "goal")
            .with_description("One goal by id")
            .with_mime_type(JSON),
        ResourceTemplate::new(format!("{CONTEXT}{{session}}"), "session-context")
            .with_description("A tmux session's latest saved context, by session key or name")
            .with_mime_type(JSON),
    ]
}

/// Reads one resource.
/// An unknown URI is `NotFound`, naming the resources there are.
pub fn read(tx: &Transaction<'_>, uri: &str) -> Result<ReadResourceResult, StoreError> {
    let unknown = || {
        StoreError::NotFound(format!(
            "resource {uri:?}; this server has {GOALS}, {GOAL}{{id}} and {CONTEXT}{{session}}"
        ))
    };
    let value = if uri == GOALS {
        serde_json::to_value(goals::list(tx, &ListGoals::default())?)
    } else if let Some(id) = uri.strip_prefix(GOAL) {
        let id = id.parse().map_err(|_| unknown())?;
        serde_json::to_value(goals::get(tx, GoalId(id))?)
    } else if let Some(session) = uri.strip_prefix(CONTEXT).filter(|s| !s.is_empty()) {
        let args = GetContext {
            session: Some(session.to_owned()),
            ..GetContext::default()
        };
        serde_json::to_value(contexts::get(tx, &args)?)
    } else {
        return Err(unknown());
    };
    let text = value.map(|v| v.to_string()).unwrap_or_default();
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type(JSON),
    ]))
}
