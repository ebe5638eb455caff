//! The built-in server's data as MCP resources, read-only:
//!
//! - `tmux-agent://goals`: every goal, newest first (JSON);
//! - `tmux-agent://goal/{id}`: one goal;
//! - `tmux-agent://context/{session}`: a session's latest saved context, by
//!   session key or name, written as is (`tmux-agent://context/host:1:$3`).
//!
//! Live tmux sessions (`tmux-agent://sessions`, `tmux-agent://session/{name}`)
//! are read from tmux, not the database: [`super::live`].

use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};
use rusqlite::Transaction;

use super::contexts::{self, GetContext};
use super::goals::{self, GoalId, ListGoals};
use super::store::StoreError;

const GOALS: &str = "tmux-agent://goals";
const GOAL: &str = "tmux-agent://goal/";
const CONTEXT: &str = "tmux-agent://context/";
const JSON: &str = "application/json";

/// The fixed resources; the sessions there are now follow them in
/// `resources/list` ([`super::live::resources`]).
pub fn list() -> Vec<Resource> {
    vec![
        Resource::new(GOALS, "goals")
            .with_description("Every goal this server records, newest first")
            .with_mime_type(JSON),
        super::live::fixed(),
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
        super::live::template(),
    ]
}

/// Reads one resource of the database.
/// An unknown URI is `NotFound`, naming the resources there are.
pub fn read(tx: &Transaction<'_>, uri: &str) -> Result<ReadResourceResult, StoreError> {
    let unknown = || {
        StoreError::NotFound(format!(
            "resource {uri:?}; this server has {GOALS}, {GOAL}{{id}}, {CONTEXT}{{session}}, \
             {} and {}{{name}}",
            super::live::SESSIONS,
            super::live::SESSION
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
    Ok(json(uri, &value.unwrap_or_default()))
}

/// A resource's contents: `value` as JSON text.
pub fn json(uri: &str, value: &impl serde::Serialize) -> ReadResourceResult {
    let text = serde_json::to_string(value).unwrap_or_default();
    ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type(JSON)])
}
