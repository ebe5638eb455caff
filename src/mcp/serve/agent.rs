//! The agent's own tmux session, for the tools an agent in a pane calls
//! about itself: which session the server runs in (from `$TMUX_PANE`, or a
//! session named by the caller) and its `@agent-*` options, read and written
//! with one-shot `tmux` commands.
//!
//! Every command is built by [`crate::control::command`] and run by
//! [`OneShot`], the CLI's runner: an argv tmux receives byte-exact (a goal
//! ending in `;` keeps it), a session targeted by its `$id` (names
//! prefix-match in tmux targets), values set with `set-option -t $id --
//! @name value`, which expands no formats, so a goal such as `#(reboot)` is
//! stored as text. A value must pass the same check as every other way of
//! writing one ([`check_value`]): one line, no control characters.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::goals::Goal;
use crate::control::SessionId;
use crate::control::command::{Command, CommandError};
use crate::control::oneshot::{OneShot, OneShotError};
use crate::control::server::ServerSocket;
use crate::group::names::{InputError, check_value};
use crate::schema;

/// How long one tmux command may take before the tool gives up: a tool
/// call should fail with a reason well before the client's own timeout.
const TMUX_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a tmux step failed; the message is shown to the caller.
#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    #[error(
        "this MCP server is not running inside a tmux pane ($TMUX_PANE is not set); \
         pass `session` (a session name or $id)"
    )]
    NotInPane,
    /// No server, tmux refused, timed out, or could not be run.
    #[error(transparent)]
    Tmux(#[from] OneShotError),
    /// An argument tmux cannot carry.
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("no tmux session named {0:?}")]
    NoSuchSession(String),
    #[error("this MCP server's pane {0} ($TMUX_PANE) is not on the tmux server any more")]
    PaneGone(String),
    /// A value refused before it reached tmux.
    #[error("{option} not set: {reason}")]
    BadValue {
        option: String,
        #[source]
        reason: InputError,
    },
}

/// Where the agent tools find tmux: the server process's tmux server and
/// pane, taken from its environment at start.
#[derive(Debug, Clone)]
pub struct TmuxEnv {
    pub server: ServerSocket,
    /// `$TMUX_PANE` (e.g. `%3`), when the server runs in a pane.
    pub pane: Option<String>,
    /// The config file (`--config`), for what `look` redacts and allows;
    /// `None`: the default place.
    pub config_file: Option<std::path::PathBuf>,
}

impl TmuxEnv {
    /// The pane and server of this process (`$TMUX_PANE`, `$TMUX`), with
    /// `server` overriding `$TMUX` when given.
    pub fn from_env(server: Option<ServerSocket>) -> Self {
        Self {
            server: server.unwrap_or_else(|| ServerSocket::choose(None, None)),
            pane: std::env::var("TMUX_PANE").ok().filter(|p| !p.is_empty()),
            config_file: None,
        }
    }
}

/// A tmux session, by id and current name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    pub id: SessionId,
    pub name: String,
}

/// Arguments of `whoami`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhoAmIArgs {
    /// A session name or `$id`; default: the session of the pane this server
    /// runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
}

/// Arguments of `set_goal`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetGoalArgs {
    /// The goal, one line.
    pub goal: String,
    /// A session name or `$id`; default: this pane's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
}

/// Arguments of `complete_my_goal`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteMyGoalArgs {
    /// What came of the goal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub outcome: Option<String>,
    /// A session name or `$id`; default: this pane's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
    /// Makes a replay of this call return the first call's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub idempotency_key: Option<String>,
}

/// The agent metadata of a session, as kept in its tmux options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentOptions {
    /// `@agent-goal`
    pub goal: Option<String>,
    /// `@agent-type`
    #[serde(rename = "type")]
    pub agent_type: Option<String>,
    /// `@agent-goal-id`: the goal's id in the goal server.
    pub goal_id: Option<String>,
    /// `@agent-state` (active, detached, saving, error, ...).
    pub state: Option<String>,
    /// `@agent-group`
    pub group: Option<String>,
    /// `@agent-role`: coordinator or member.
    pub role: Option<String>,
    /// `@agent-peers`, split at commas.
    pub peers: Vec<String>,
}

/// Result of `whoami` and `set_goal`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WhoAmI {
    /// tmux session id, e.g. "$3".
    pub session_id: String,
    pub session_name: String,
    /// The pane this server runs in, when the session was found through it.
    pub pane: Option<String>,
    #[serde(flatten)]
    pub options: AgentOptions,
    /// The goal named by `goal_id`, when this server's database has it.
    pub goal_record: Option<Goal>,
    /// The agent in this server's pane, as its `@agent-status` options say
    /// (`crate::status`); absent when the pane has none, or the session
    /// was named rather than found through the pane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<PaneAgentInfo>,
}

/// The agent in a pane: `@agent-status`, `@agent-kind`, `@agent-since`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PaneAgentInfo {
    /// e.g. "%3".
    pub pane: String,
    /// working, waiting, idle, exited or unknown.
    pub status: String,
    /// claude, codex, gemini, aider, opencode, or a configured name.
    pub kind: Option<String>,
    /// Since when the status holds, Unix seconds.
    pub since: Option<i64>,
}

/// The agent in `pane`, if its options name one.
pub async fn read_pane_agent(
    env: &TmuxEnv,
    pane: &str,
) -> Result<Option<PaneAgentInfo>, TmuxError> {
    let Ok(pane_id) = pane.parse::<crate::control::PaneId>() else {
        return Ok(None);
    };
    let listing = run(
        env,
        &Command::display_message(pane_id, crate::status::panes::FORMAT)?,
    )
    .await?;
    Ok(crate::status::panes::parse(&listing)
        .into_iter()
        .next()
        .map(|found| PaneAgentInfo {
            pane: found.pane.to_string(),
            status: found.status.to_string(),
            kind: found.kind,
            since: found.since,
        }))
}

/// Finds the session the caller means: `explicit` (a `$id` or an exact
/// name), else the session of this process's pane. Both are looked up in a
/// listing rather than used as a target: a target that matches nothing makes
/// `display-message` print an empty line and succeed, and a name used as a
/// target prefix-matches.
pub async fn resolve_session(
    env: &TmuxEnv,
    explicit: Option<&str>,
) -> Result<(SessionRef, Option<String>), TmuxError> {
    // A listed line whose id does not parse is skipped like any other
    // non-match: tmux always prints `$N` there.
    let session = |id: &str, name: &str| {
        Some(SessionRef {
            id: id.parse().ok()?,
            name: name.to_owned(),
        })
    };
    match explicit {
        Some(wanted) => {
            let listing = Command::list_sessions("#{session_id} #{session_name}")?;
            let out = run(env, &listing).await?;
            let by_id = is_session_id(wanted);
            out.lines()
                .filter_map(|line| line.split_once(' '))
                .find(|(id, name)| {
                    if by_id {
                        *id == wanted
                    } else {
                        *name == wanted
                    }
                })
                .and_then(|(id, name)| session(id, name))
                .map(|session| (session, None))
                .ok_or_else(|| TmuxError::NoSuchSession(wanted.to_owned()))
        }
        None => {
            let pane = env.pane.as_deref().ok_or(TmuxError::NotInPane)?;
            let listing = Command::list_all_panes("#{pane_id} #{session_id} #{session_name}")?;
            let out = run(env, &listing).await?;
            out.lines()
                .filter_map(|line| line.split_once(' '))
                .find(|(listed, _)| *listed == pane)
                .and_then(|(_, rest)| rest.split_once(' '))
                .and_then(|(id, name)| session(id, name))
                .map(|session| (session, Some(pane.to_owned())))
                .ok_or_else(|| TmuxError::PaneGone(pane.to_owned()))
        }
    }
}

/// Reads the `@agent-*` options of a session.
pub async fn read_options(env: &TmuxEnv, session_id: SessionId) -> Result<AgentOptions, TmuxError> {
    let (goal, agent_type, goal_id, state, group, role, peers) = tokio::try_join!(
        show_option(env, session_id, schema::session::GOAL),
        show_option(env, session_id, schema::session::TYPE),
        show_option(env, session_id, schema::session::GOAL_ID),
        show_option(env, session_id, schema::session::STATE),
        show_option(env, session_id, schema::session::GROUP),
        show_option(env, session_id, schema::session::ROLE),
        show_option(env, session_id, schema::session::PEERS),
    )?;
    Ok(AgentOptions {
        goal,
        agent_type,
        goal_id,
        state,
        group,
        role,
        peers: split_peers(peers.as_deref()),
    })
}

impl AgentOptions {
    /// The same fields from a session's `@agent-*` options read at once
    /// (`show-options` of the session); an empty value counts as unset.
    pub fn from_options(options: &BTreeMap<String, String>) -> Self {
        let option = |name: &str| options.get(name).filter(|v| !v.is_empty()).cloned();
        AgentOptions {
            goal: option(schema::session::GOAL),
            agent_type: option(schema::session::TYPE),
            goal_id: option(schema::session::GOAL_ID),
            state: option(schema::session::STATE),
            group: option(schema::session::GROUP),
            role: option(schema::session::ROLE),
            peers: split_peers(option(schema::session::PEERS).as_deref()),
        }
    }
}

/// `@agent-peers` as a list: split at commas, blanks dropped.
fn split_peers(list: Option<&str>) -> Vec<String> {
    list.map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|peer| !peer.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// Sets a session option to a value that passes [`check_value`] (one line,
/// no control characters), stored byte-exact.
pub async fn set_option(
    env: &TmuxEnv,
    session_id: SessionId,
    option: &str,
    value: &str,
) -> Result<(), TmuxError> {
    check_value(value).map_err(|reason| TmuxError::BadValue {
        option: option.to_owned(),
        reason,
    })?;
    run(env, &Command::set_option(session_id, option, value)?).await?;
    Ok(())
}

/// One option of one session; `None` when it is not set on the session.
async fn show_option(
    env: &TmuxEnv,
    session_id: SessionId,
    option: &str,
) -> Result<Option<String>, TmuxError> {
    let out = run(env, &Command::show_option_if_set(session_id, option)?).await?;
    // Unset prints nothing; a set value, even an empty one, ends in a newline.
    Ok(out
        .strip_suffix('\n')
        .map(str::to_owned)
        .or_else(|| (!out.is_empty()).then_some(out)))
}

/// Runs one command on the environment's server; returns its stdout as text.
async fn run(env: &TmuxEnv, command: &Command) -> Result<String, TmuxError> {
    let out = OneShot::new(env.server.clone())
        .with_timeout(TMUX_TIMEOUT)
        .run(command)
        .await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `$` followed by digits: a tmux session id, never reused by a server.
fn is_session_id(text: &str) -> bool {
    text.strip_prefix('$')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_and_lines() {
        assert!(is_session_id("$0"));
        assert!(is_session_id("$123"));
        assert!(!is_session_id("$"));
        assert!(!is_session_id("$1a"));
        assert!(!is_session_id("work"));
    }
}
