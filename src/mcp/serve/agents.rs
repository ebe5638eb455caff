//! The other agents, for the agent that calls: `list_agents` (who is there,
//! what each is doing, in which group) and `look` (a peer's pane text).
//!
//! Both read tmux with one-shot commands, so they work with or without a
//! daemon: the agents are the panes whose `@agent-status` is set (by the
//! daemon's status keeper, or by the hooks without one), the groups are
//! the sessions' `@agent-group`.
//!
//! `look` is [`crate::messages::look`], the same as `tmux-agent look`, with
//! one rule more: the caller (its pane from `$TMUX_PANE`, never an
//! argument) sees only panes of its own session or of sessions in its
//! group, unless `[context] look_outside_group = true`. A refusal says
//! which rule refused and how to change it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::agent::{self, TmuxEnv};
use crate::configuration::Configuration;
use crate::control::SessionId;
use crate::control::command::Command;
use crate::control::oneshot::OneShot;
use crate::messages::look::{self, DEFAULT_LINES};
use crate::schema;
use crate::status::panes;

/// Arguments of `look`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookArgs {
    /// The pane to look at: a pane id ("%3"), or a session ("$2", "=name:")
    /// for its active pane, as tmux takes targets.
    pub target: String,
    /// How many lines from the bottom (default 40, at most 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    pub lines: Option<usize>,
}

/// Result of `look`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Looked {
    /// The pane looked at, e.g. "%3".
    pub pane: String,
    pub session_id: String,
    pub session_name: String,
    /// Its last lines, oldest first, with `[context] redact` applied.
    pub lines: Vec<String>,
}

/// Arguments of `list_agents`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListAgentsArgs {
    /// Only the agents of sessions in this coordination group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub group: Option<String>,
}

/// One agent in a pane.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentEntry {
    /// e.g. "%3".
    pub pane: String,
    pub session_id: String,
    pub session_name: String,
    /// claude, codex, gemini, aider, opencode, or a configured name.
    pub kind: Option<String>,
    /// working, waiting, idle, exited or unknown.
    pub status: String,
    /// Since when the status holds, Unix seconds.
    pub since: Option<i64>,
    /// The session's coordination group, if any.
    pub group: Option<String>,
    /// Whether this is the caller's own pane.
    pub me: bool,
}

/// Result of `list_agents`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentList {
    /// Every pane with an agent, in pane order.
    pub agents: Vec<AgentEntry>,
    /// The caller's pane ($TMUX_PANE), when it runs in one.
    pub me: Option<String>,
}

/// The `list_agents` answer.
pub async fn list(env: &TmuxEnv, args: ListAgentsArgs) -> Result<AgentList, String> {
    let tmux = OneShot::new(env.server.clone());
    let listing = text(&tmux, Command::list_all_panes(panes::FORMAT)).await?;
    let groups = groups(&tmux).await?;
    let agents = panes::parse(&listing)
        .into_iter()
        .map(|found| AgentEntry {
            pane: found.pane.to_string(),
            session_id: found.session_id.to_string(),
            session_name: found.session,
            kind: found.kind,
            status: found.status.to_string(),
            since: found.since,
            group: groups.get(&found.session_id).cloned(),
            me: env.pane.as_deref() == Some(found.pane.to_string().as_str()),
        })
        .filter(|entry| args.group.is_none() || entry.group == args.group)
        .collect();
    Ok(AgentList {
        agents,
        me: env.pane.clone(),
    })
}

/// The `look` answer: the pane's text, if the caller may see it.
pub async fn look(env: &TmuxEnv, args: LookArgs) -> Result<Looked, String> {
    let configuration = Configuration::load(env.config_file.clone())
        .await
        .map_err(|err| err.to_string())?;
    let patterns = look::redaction(&configuration).map_err(|err| err.to_string())?;
    let anywhere = configuration
        .servers
        .config
        .context
        .look_outside_group
        .unwrap_or(false);
    let (caller, _) = agent::resolve_session(env, None)
        .await
        .map_err(|err| err.to_string())?;
    let tmux = OneShot::new(env.server.clone());
    let seen = look::look(
        &tmux,
        &args.target,
        args.lines.unwrap_or(DEFAULT_LINES),
        &patterns,
    )
    .await
    .map_err(|err| err.to_string())?;
    if !anywhere && seen.session_id != caller.id {
        let groups = groups(&tmux).await?;
        let mine = groups.get(&caller.id);
        let theirs = groups.get(&seen.session_id);
        if mine.is_none() || mine != theirs {
            return Err(format!(
                "look refused: pane {} is in session {:?} ({}), which is not in your group{}; \
                 an agent may look only at its own session and its group's \
                 (set `look_outside_group = true` under [context] in config.toml to allow any)",
                seen.pane,
                seen.session,
                match theirs {
                    Some(group) => format!("group {group:?}"),
                    None => "no group".to_owned(),
                },
                match mine {
                    Some(group) => format!(" ({group:?})"),
                    None => " (you are in none)".to_owned(),
                },
            ));
        }
    }
    Ok(Looked {
        pane: seen.pane.to_string(),
        session_id: seen.session_id.to_string(),
        session_name: seen.session,
        lines: seen.lines,
    })
}

/// Each session's `@agent-group`, where set.
async fn groups(tmux: &OneShot) -> Result<BTreeMap<SessionId, String>, String> {
    let format = format!("#{{session_id}}\t#{{{}}}", schema::session::GROUP);
    let listing = text(tmux, Command::list_sessions(&format)).await?;
    Ok(listing
        .lines()
        .filter_map(|line| {
            let (id, group) = line.split_once('\t')?;
            Some((id.parse().ok()?, group.to_owned())).filter(|(_, g)| !g.is_empty())
        })
        .collect())
}

/// Runs one command; its stdout as text, or the error as the tool's message.
async fn text(
    tmux: &OneShot,
    command: Result<Command, crate::control::command::CommandError>,
) -> Result<String, String> {
    let command = command.map_err(|err| err.to_string())?;
    let out = tmux.run(&command).await.map_err(|err| err.to_string())?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
