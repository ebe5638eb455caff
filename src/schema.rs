//! The `@agent-*` option schema: every tmux user option tmux-agent reads or
//! writes is named here, and nowhere else.
//!
//! tmux options are the one place group and agent state lives (so status
//! lines, `tmux show`, hooks and scripts see it), which makes their names an
//! interface: a typo in one file would be a silent fork of the schema. The
//! names are grouped by where tmux keeps them: [`session`] options are set
//! with `set -t $id`, [`pane`] ones with `set -p -t %id`, [`global`] ones
//! with `set -g`. User-editable options
//! (the ones a person or a script may set with plain tmux commands) are
//! listed in [`session::USER_EDITABLE`]; the rest are written by tmux-agent
//! and only shown.
//!
//! [`AgentState`] is the value of `@agent-state`: the one option whose
//! values the daemon writes from several places, so it is typed.

use std::fmt;

/// What every name here begins with; `show-options` output is filtered by it.
pub const PREFIX: &str = "@agent-";

/// Options set on a session (`set -t $id @agent-… value`).
pub mod session {
    /// User-editable: what the session is for.
    pub const GOAL: &str = "@agent-goal";
    /// User-editable: the kind of agent (`claude`, `codex`, free text).
    pub const TYPE: &str = "@agent-type";
    /// User-editable: the coordination group the session belongs to.
    pub const GROUP: &str = "@agent-group";
    /// The goal id an MCP server returned for the session (`{goal_id}`).
    pub const GOAL_ID: &str = "@agent-goal-id";
    /// The session's [`AgentState`](super::AgentState).
    pub const STATE: &str = "@agent-state";
    /// When the session's context was last saved (RFC 3339, seconds).
    pub const SAVED: &str = "@agent-saved";
    /// `coordinator` or `member`, kept by the group reconciler.
    pub const ROLE: &str = "@agent-role";
    /// The other members' names, comma-separated.
    pub const PEERS: &str = "@agent-peers";
    /// `SEQ:GROUP`: when (in join order) the session joined which group.
    pub const JOINED: &str = "@agent-joined";
    /// The aggregate status of the session's agents (waiting beats
    /// working beats idle beats exited beats unknown); unset while the
    /// session has none. The same name as the pane option, so a format
    /// evaluated for a pane without an agent falls back to its session's.
    pub const AGENT_STATUS: &str = "@agent-status";
    /// How many messages to the session are not read yet (queued,
    /// delivered, unverified), kept by the daemon's message scheduler.
    pub const UNREAD: &str = "@agent-unread";
    /// The prefix of shared context options: `@agent-ctx-KEY`.
    pub const CONTEXT_PREFIX: &str = "@agent-ctx-";

    /// The options a person may set by hand; the tracker watches them so a
    /// change made with plain tmux commands is seen.
    pub const USER_EDITABLE: [&str; 3] = [GROUP, GOAL, TYPE];

    /// Every session option with a fixed name (not the `@agent-ctx-*`
    /// family): what the tracker's listing carries, so the reactor needs
    /// no `show-options` per event.
    pub const LISTED: [&str; 9] = [
        GOAL, TYPE, GROUP, GOAL_ID, STATE, SAVED, ROLE, PEERS, JOINED,
    ];

    /// The option that holds shared context `key` (already validated).
    pub fn context(key: &str) -> String {
        format!("{CONTEXT_PREFIX}{key}")
    }
}

/// Options set on a pane (`set -p -t %id @agent-… value`), by the status
/// keeper (`crate::status`) or, without a daemon, by `tmux-agent hook`.
pub mod pane {
    /// What the pane's agent is doing: `working`, `waiting`, `idle`,
    /// `exited`, `unknown` ([`crate::status::AgentStatus`]).
    pub const STATUS: &str = "@agent-status";
    /// Which agent: `claude`, `codex`, `gemini`, `aider`, `opencode`, or
    /// a name from the config.
    pub const KIND: &str = "@agent-kind";
    /// Since when the status holds: Unix seconds (so a status line can do
    /// arithmetic on it with `#{e|-:…}`).
    pub const SINCE: &str = "@agent-since";
    /// The agent's own session id, when it says (Claude's `session_id`).
    pub const SESSION_ID: &str = "@agent-session-id";
    /// The agent's transcript file, when it says (Claude's `transcript_path`).
    pub const TRANSCRIPT: &str = "@agent-transcript";
}

/// Options set on the server (`set -g @agent-… value`).
pub mod global {
    /// `running` while a daemon is attached.
    pub const DAEMON: &str = "@agent-daemon";
    /// The health of the MCP servers the reactor calls: `builtin:ok memory:down`.
    pub const MCP: &str = "@agent-mcp";
    /// `memory` while the daemon's outbox is off the disk.
    pub const OUTBOX: &str = "@agent-outbox";
    /// How many MCP calls are waiting to be delivered.
    pub const PENDING: &str = "@agent-pending";
    /// The summary of groups: `build:3 review:2`.
    pub const GROUPS: &str = "@agent-groups";
    /// `@agent-name-$N`: the name session `$N` was created with, written by
    /// the daemon's [`NAME_HOOK`] and unset once the tracker has listed past
    /// `$N`: how a session that lived and died between two listings (a
    /// `session-missed` event) still has a name.
    pub const SESSION_NAME_PREFIX: &str = "@agent-name-";
    /// The `session-created` hook the daemon sets while it is attached (an
    /// index of its own, so that the user's hooks there stay).
    pub const NAME_HOOK: &str = "session-created[7391]";
    /// What [`NAME_HOOK`] runs (tmux expands the formats when it runs, the
    /// name already as tmux stores it, and never runs what is in it).
    pub const NAME_HOOK_COMMAND: &str =
        "set-option -gF \"@agent-name-#{hook_session}\" \"#{hook_session_name}\"";
    /// How many agents wait for the user, on every session.
    pub const WAITING: &str = "@agent-waiting";
    /// How many messages are not read yet, on every session (the sum of
    /// the sessions' `@agent-unread`).
    pub const MESSAGES: &str = "@agent-messages";
}

/// The value of `@agent-state`: what the daemon last did for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    /// Registered, with a client attached (or saved while attached).
    Active,
    /// No client is attached; its context was (or is being) saved.
    Detached,
    /// A save call is on its way to the MCP server.
    Saving,
    /// The last call for the session failed; the reason, short.
    Error(String),
}

/// How much of an error's first line fits a status line.
const ERROR_CHARS: usize = 60;

impl AgentState {
    /// An error state from a full message: its first line, cut to fit a
    /// status line.
    pub fn error(message: &str) -> Self {
        let first = message.lines().next().unwrap_or("");
        let mut short: String = first.chars().take(ERROR_CHARS).collect();
        if first.chars().count() > ERROR_CHARS {
            short.push('…');
        }
        AgentState::Error(short)
    }

    /// Reads an option's value back; `None` for anything tmux-agent does
    /// not write (someone else's value is left alone, not misread).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(AgentState::Active),
            "detached" => Some(AgentState::Detached),
            "saving" => Some(AgentState::Saving),
            _ => value
                .strip_prefix("error: ")
                .map(|reason| AgentState::Error(reason.to_owned())),
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentState::Active => f.write_str("active"),
            AgentState::Detached => f.write_str("detached"),
            AgentState::Saving => f.write_str("saving"),
            AgentState::Error(reason) => write!(f, "error: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_option_value() {
        for state in [
            AgentState::Active,
            AgentState::Detached,
            AgentState::Saving,
            AgentState::Error("server down".into()),
        ] {
            assert_eq!(AgentState::parse(&state.to_string()), Some(state));
        }
        assert_eq!(AgentState::parse("someone else's"), None);
    }

    #[test]
    fn errors_fit_a_status_line() {
        let long = "x".repeat(200);
        let state = AgentState::error(&long).to_string();
        assert_eq!(state.chars().count(), "error: ".len() + ERROR_CHARS + 1);
        assert_eq!(AgentState::error("a\nb").to_string(), "error: a");
    }

    #[test]
    fn every_name_has_the_prefix() {
        let names = [
            session::GOAL,
            session::TYPE,
            session::GROUP,
            session::GOAL_ID,
            session::STATE,
            session::SAVED,
            session::ROLE,
            session::PEERS,
            session::JOINED,
            session::CONTEXT_PREFIX,
            global::DAEMON,
            global::MCP,
            global::OUTBOX,
            global::PENDING,
            global::GROUPS,
            global::WAITING,
            session::AGENT_STATUS,
            pane::STATUS,
            pane::KIND,
            pane::SINCE,
            pane::SESSION_ID,
            pane::TRANSCRIPT,
        ];
        for name in names {
            assert!(name.starts_with(PREFIX), "{name}");
        }
        assert_eq!(session::context("branch"), "@agent-ctx-branch");
    }
}
