//! The agent's own tmux session, for the tools an agent in a pane calls
//! about itself: which session the server runs in (from `$TMUX_PANE`, or a
//! session named by the caller) and its `@agent-*` options, read and written
//! by running the `tmux` binary.
//!
//! Every command is an argv (no shell), targets a session by its `$id`
//! (names prefix-match in tmux targets), and sets values with
//! `set-option -t $id -- @name value`, which expands no formats, so a goal
//! such as `#(reboot)` is stored as text.

use std::process::Stdio;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::goals::Goal;
use crate::control::server::ServerSocket;
use crate::schema;

/// How long one tmux command may take before the tool gives up.
const TMUX_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a tmux step failed; the message is shown to the caller.
#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    #[error(
        "this MCP server is not running inside a tmux pane ($TMUX_PANE is not set); \
         pass `session` (a session name or $id)"
    )]
    NotInPane,
    #[error("cannot run tmux: {0}")]
    Spawn(std::io::Error),
    #[error("tmux {command} timed out after {TMUX_TIMEOUT:?}")]
    Timeout { command: String },
    #[error("tmux {command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("no tmux session named {0:?}")]
    NoSuchSession(String),
    #[error("this MCP server's pane {0} ($TMUX_PANE) is not on the tmux server any more")]
    PaneGone(String),
    #[error("{0}")]
    BadValue(String),
}

/// Where the agent tools find tmux: the server process's tmux server and
/// pane, taken from its environment at start.
#[derive(Debug, Clone)]
pub struct TmuxEnv {
    pub server: ServerSocket,
    /// `$TMUX_PANE` (e.g. `%3`), when the server runs in a pane.
    pub pane: Option<String>,
}

impl TmuxEnv {
    /// The pane and server of this process (`$TMUX_PANE`, `$TMUX`), with
    /// `server` overriding `$TMUX` when given.
    pub fn from_env(server: Option<ServerSocket>) -> Self {
        Self {
            server: server.unwrap_or_else(|| ServerSocket::choose(None, None)),
            pane: std::env::var("TMUX_PANE").ok().filter(|p| !p.is_empty()),
        }
    }
}

/// A tmux session, by id and current name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    pub id: String,
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
    match explicit {
        Some(wanted) => {
            let out = run(
                env,
                &["list-sessions", "-F", "#{session_id} #{session_name}"],
            )
            .await?;
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
                .map(|(id, name)| {
                    let session = SessionRef {
                        id: id.to_owned(),
                        name: name.to_owned(),
                    };
                    (session, None)
                })
                .ok_or_else(|| TmuxError::NoSuchSession(wanted.to_owned()))
        }
        None => {
            let pane = env.pane.as_deref().ok_or(TmuxError::NotInPane)?;
            let out = run(
                env,
                &[
                    "list-panes",
                    "-a",
                    "-F",
                    "#{pane_id} #{session_id} #{session_name}",
                ],
            )
            .await?;
            out.lines()
                .filter_map(|line| line.split_once(' '))
                .find(|(listed, _)| *listed == pane)
                .and_then(|(_, rest)| rest.split_once(' '))
                .map(|(id, name)| {
                    let session = SessionRef {
                        id: id.to_owned(),
                        name: name.to_owned(),
                    };
                    (session, Some(pane.to_owned()))
                })
                .ok_or_else(|| TmuxError::PaneGone(pane.to_owned()))
        }
    }
}

/// Reads the `@agent-*` options of a session.
pub async fn read_options(env: &TmuxEnv, session_id: &str) -> Result<AgentOptions, TmuxError> {
    let (goal, agent_type, goal_id, state, group, role, peers) = tokio::try_join!(
        show_option(env, session_id, schema::session::GOAL),
        show_option(env, session_id, schema::session::TYPE),
        show_option(env, session_id, schema::session::GOAL_ID),
        show_option(env, session_id, schema::session::STATE),
        show_option(env, session_id, schema::session::GROUP),
        show_option(env, session_id, schema::session::ROLE),
        show_option(env, session_id, schema::session::PEERS),
    )?;
    let peers = peers
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|peer| !peer.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(AgentOptions {
        goal,
        agent_type,
        goal_id,
        state,
        group,
        role,
        peers,
    })
}

/// Sets a session option to a single-line value.
pub async fn set_option(
    env: &TmuxEnv,
    session_id: &str,
    option: &str,
    value: &str,
) -> Result<(), TmuxError> {
    if value.contains(['\n', '\r']) {
        return Err(TmuxError::BadValue(format!(
            "{option} must be one line; the value has a line break"
        )));
    }
    run(env, &["set-option", "-t", session_id, "--", option, value]).await?;
    Ok(())
}

/// One option of one session; `None` when it is not set on the session.
async fn show_option(
    env: &TmuxEnv,
    session_id: &str,
    option: &str,
) -> Result<Option<String>, TmuxError> {
    let out = run(env, &["show-options", "-q", "-t", session_id, "-v", option]).await?;
    // Unset prints nothing; a set value, even an empty one, ends in a newline.
    Ok(out
        .strip_suffix('\n')
        .map(str::to_owned)
        .or_else(|| (!out.is_empty()).then_some(out)))
}

/// Runs `tmux <server flags> <args>` and returns its stdout.
async fn run(env: &TmuxEnv, args: &[&str]) -> Result<String, TmuxError> {
    let command = args.first().copied().unwrap_or_default().to_owned();
    let mut cmd = env.server.command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(TMUX_TIMEOUT, cmd.output())
        .await
        .map_err(|_| TmuxError::Timeout {
            command: command.clone(),
        })?
        .map_err(TmuxError::Spawn)?;
    if !output.status.success() {
        return Err(TmuxError::Failed {
            command,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
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
