//! What an agent's hook payload says about its status: the mapping from
//! each agent's hook events to [`AgentStatus`], in one table per agent.
//!
//! The formats, as their documentation gives them (looked up 2026-12):
//!
//! - **Claude Code** (code.claude.com/docs/en/hooks): JSON on stdin with
//!   `session_id`, `transcript_path`, `cwd`, `hook_event_name` and
//!   per-event fields; `Notification` has `notification_type`
//!   (`permission_prompt`, `idle_prompt`, `elicitation_dialog`, …).
//! - **Codex CLI** (developers.openai.com/codex/hooks): the same wire
//!   format in `~/.codex/hooks.json` (`session_id`, `transcript_path`,
//!   `cwd`, `hook_event_name`, `model`, `turn_id`), events `SessionStart`,
//!   `UserPromptSubmit`, `PreToolUse`, `PermissionRequest`, `PostToolUse`,
//!   `Stop` and a few more. Its older `notify = [...]` in `config.toml`
//!   passes one JSON argument (not stdin) on `agent-turn-complete`, with
//!   kebab-case keys (`thread-id`, `turn-id`, `cwd`, …).
//! - **Gemini CLI** (geminicli.com/docs/hooks/reference): JSON on stdin with
//!   `session_id`, `transcript_path`, `cwd`, `hook_event_name`,
//!   `timestamp`; events `SessionStart`, `SessionEnd`, `BeforeAgent`,
//!   `AfterAgent`, `BeforeTool`, `AfterTool`, `Notification`
//!   (`notification_type`: `ToolPermission`), `BeforeModel`, … .
//!
//! An event that says nothing about the status (Claude's `PreCompact`, a
//! notification of another type) reads as `None`: the hook still
//! announces the agent, nothing changes.

use std::path::PathBuf;

use serde::Deserialize;

use super::model::{AgentKind, AgentStatus};

/// The largest payload read; anything longer is refused whole. A
/// `PreToolUse` of a big file write is the largest real one (the file's
/// text is in `tool_input`).
pub const MAX_PAYLOAD: usize = 4 * 1024 * 1024;

/// What one hook run said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReading {
    /// The event, as the agent named it (`PreToolUse`,
    /// `agent-turn-complete`).
    pub event: String,
    /// The status it means, if any.
    pub status: Option<AgentStatus>,
    pub agent_session_id: Option<String>,
    pub transcript_path: Option<PathBuf>,
    /// Claude's `Stop`: the agent is already continuing because a Stop
    /// hook blocked it (so a hook must not block it again, or it loops).
    pub stop_hook_active: bool,
    /// Whether the event comes from inside a turn the agent is working on
    /// (see [`claude_in_turn`]): a message its `Stop` hook was handed has
    /// reached it.
    pub in_turn: bool,
}

impl HookReading {
    /// Whether this is the end of a Claude Code turn at which a waiting
    /// message may be handed over (`Stop`, not already continuing).
    pub fn is_claude_stop(&self, kind: &AgentKind) -> bool {
        *kind == AgentKind::Claude && self.event == "Stop"
    }
}

/// Why a payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("the hook payload is empty")]
    Empty,
    #[error("the hook payload is longer than {MAX_PAYLOAD} bytes")]
    TooLarge,
    #[error("the hook payload is not the JSON object expected: {0}")]
    NotJson(String),
    #[error("the hook payload names no event (no hook_event_name or type)")]
    NoEvent,
    #[error("tmux-agent has no hook mapping for agent {0:?}")]
    UnknownAgent(String),
}

/// The fields read from every agent's payload (the rest is ignored).
#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    hook_event_name: Option<String>,
    /// Codex's `notify`.
    #[serde(default, rename = "type")]
    notify_type: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    /// Codex's `notify`.
    #[serde(default, rename = "thread-id")]
    thread_id: Option<String>,
    #[serde(default)]
    transcript_path: Option<PathBuf>,
    #[serde(default)]
    notification_type: Option<String>,
    #[serde(default)]
    stop_hook_active: bool,
}

/// Reads `payload` as `kind`'s hook said it.
pub fn read(kind: &AgentKind, payload: &[u8]) -> Result<HookReading, HookError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(HookError::TooLarge);
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(HookError::Empty);
    }
    let payload: Payload =
        serde_json::from_slice(payload).map_err(|err| HookError::NotJson(err.to_string()))?;
    let event = payload
        .hook_event_name
        .clone()
        .or_else(|| payload.notify_type.clone())
        .filter(|event| !event.is_empty())
        .ok_or(HookError::NoEvent)?;
    let notification = payload.notification_type.as_deref();
    let in_turn = *kind == AgentKind::Claude
        && claude_in_turn(&event, notification, payload.stop_hook_active);
    let status = match kind {
        AgentKind::Claude => claude(&event, notification),
        AgentKind::Codex => codex(&event),
        AgentKind::Gemini => gemini(&event, notification),
        other => return Err(HookError::UnknownAgent(other.as_str().to_owned())),
    };
    Ok(HookReading {
        event,
        status,
        agent_session_id: payload.session_id.or(payload.thread_id),
        transcript_path: payload.transcript_path,
        stop_hook_active: payload.stop_hook_active,
        in_turn,
    })
}

/// Whether a Claude Code event happens inside a turn: a tool call
/// (`PreToolUse`, `PostToolUse`, a permission asked for one), a subagent
/// ending, or the turn ending after a `Stop` hook had continued it
/// (`stop_hook_active`; `StopFailure` too: an API error that ended it).
/// Such an event after a `Stop` hook's hand-over shows the agent took the
/// message. `UserPromptSubmit` does not: a hook's continuation fires none,
/// so one after a hand-over is a new prompt at an agent that never got the
/// message (its hook was killed before the answer got out), the likeliest
/// event after such a loss. Neither does a plain `Stop` (it stopped again
/// without it) nor `idle_prompt`.
fn claude_in_turn(event: &str, notification: Option<&str>, stop_hook_active: bool) -> bool {
    match event {
        "PreToolUse" | "PostToolUse" | "PermissionRequest" | "SubagentStop" | "StopFailure" => true,
        "Notification" => matches!(
            notification,
            Some("permission_prompt" | "elicitation_dialog")
        ),
        "Stop" => stop_hook_active,
        _ => false,
    }
}

/// Claude Code's events. `idle_prompt` fires on a 60 s timer after a turn
/// and does not mean "needs input": it reads as idle. `Stop` does not fire
/// on API errors or interrupts, so `StopFailure` ends a turn too. A
/// subagent stopping leaves the main turn running. `PostToolUse` clears a
/// `waiting` once a permission was granted and the tool ran.
fn claude(event: &str, notification: Option<&str>) -> Option<AgentStatus> {
    use AgentStatus::*;
    match event {
        "SessionStart" => Some(Idle),
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" | "SubagentStop" => Some(Working),
        "PermissionRequest" => Some(Waiting),
        "Notification" => match notification? {
            "permission_prompt" | "elicitation_dialog" => Some(Waiting),
            "idle_prompt" => Some(Idle),
            _ => None,
        },
        "Stop" | "StopFailure" => Some(Idle),
        "SessionEnd" => Some(Exited),
        _ => None,
    }
}

/// Codex CLI's hooks, and its `notify` (`agent-turn-complete`).
fn codex(event: &str) -> Option<AgentStatus> {
    use AgentStatus::*;
    match event {
        "SessionStart" => Some(Idle),
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" => Some(Working),
        "PermissionRequest" => Some(Waiting),
        "Stop" | "agent-turn-complete" => Some(Idle),
        _ => None,
    }
}

/// Gemini CLI's hooks. `AfterAgent` is its end of a turn; its only
/// notification type, `ToolPermission`, asks the user.
fn gemini(event: &str, notification: Option<&str>) -> Option<AgentStatus> {
    use AgentStatus::*;
    match event {
        "SessionStart" => Some(Idle),
        "BeforeAgent" | "BeforeTool" | "AfterTool" => Some(Working),
        "Notification" => match notification? {
            "ToolPermission" => Some(Waiting),
            _ => None,
        },
        "AfterAgent" => Some(Idle),
        "SessionEnd" => Some(Exited),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(kind: AgentKind, json: &str) -> Option<AgentStatus> {
        read(&kind, json.as_bytes()).unwrap().status
    }

    #[test]
    fn claude_notifications_wait_only_for_permission_and_questions() {
        let n = |t: &str| {
            format!(
                r#"{{"hook_event_name":"Notification","notification_type":"{t}","message":"m"}}"#
            )
        };
        assert_eq!(
            status(AgentKind::Claude, &n("permission_prompt")),
            Some(AgentStatus::Waiting)
        );
        assert_eq!(
            status(AgentKind::Claude, &n("elicitation_dialog")),
            Some(AgentStatus::Waiting)
        );
        assert_eq!(
            status(AgentKind::Claude, &n("idle_prompt")),
            Some(AgentStatus::Idle)
        );
        assert_eq!(status(AgentKind::Claude, &n("auth_success")), None);
    }

    #[test]
    fn session_ids_and_transcripts_are_kept() {
        let reading = read(
            &AgentKind::Claude,
            br#"{"session_id":"abc","transcript_path":"/t.jsonl","hook_event_name":"SessionStart","source":"startup"}"#,
        )
        .unwrap();
        assert_eq!(reading.agent_session_id.as_deref(), Some("abc"));
        assert_eq!(reading.transcript_path, Some(PathBuf::from("/t.jsonl")));
        let notify = read(
            &AgentKind::Codex,
            br#"{"type":"agent-turn-complete","thread-id":"t1","turn-id":"u1","cwd":"/w","input-messages":["hi"],"last-assistant-message":"done"}"#,
        )
        .unwrap();
        assert_eq!(notify.status, Some(AgentStatus::Idle));
        assert_eq!(notify.agent_session_id.as_deref(), Some("t1"));
    }

    #[test]
    fn a_claude_stop_says_whether_a_hook_already_continued_it() {
        let claude = AgentKind::Claude;
        let first = read(
            &claude,
            br#"{"hook_event_name":"Stop","stop_hook_active":false}"#,
        )
        .unwrap();
        assert!(first.is_claude_stop(&claude) && !first.stop_hook_active);
        let again = read(
            &claude,
            br#"{"hook_event_name":"Stop","stop_hook_active":true}"#,
        )
        .unwrap();
        assert!(again.stop_hook_active);
        let codex = read(&AgentKind::Codex, br#"{"hook_event_name":"Stop"}"#).unwrap();
        assert!(!codex.is_claude_stop(&AgentKind::Codex));
    }

    #[test]
    fn only_claude_events_inside_a_turn_say_a_hand_over_was_taken() {
        let in_turn = |kind: AgentKind, json: &str| read(&kind, json.as_bytes()).unwrap().in_turn;
        let claude = || AgentKind::Claude;
        for event in [
            "PreToolUse",
            "PostToolUse",
            "PermissionRequest",
            "SubagentStop",
        ] {
            let json = format!(r#"{{"hook_event_name":"{event}"}}"#);
            assert!(in_turn(claude(), &json), "{event}");
            assert!(!in_turn(AgentKind::Codex, &json), "codex {event}");
        }
        for json in [
            r#"{"hook_event_name":"UserPromptSubmit"}"#,
            r#"{"hook_event_name":"Stop","stop_hook_active":false}"#,
            r#"{"hook_event_name":"SessionStart"}"#,
            r#"{"hook_event_name":"Notification","notification_type":"idle_prompt"}"#,
        ] {
            assert!(!in_turn(claude(), json), "{json}");
        }
        assert!(in_turn(
            claude(),
            r#"{"hook_event_name":"Stop","stop_hook_active":true}"#
        ));
        assert!(in_turn(
            claude(),
            r#"{"hook_event_name":"Notification","notification_type":"permission_prompt"}"#
        ));
    }

    #[test]
    fn bad_payloads_say_why() {
        let claude = AgentKind::Claude;
        assert_eq!(read(&claude, b""), Err(HookError::Empty));
        assert_eq!(read(&claude, b" \n"), Err(HookError::Empty));
        assert!(matches!(
            read(&claude, b"\x00\xff garbage"),
            Err(HookError::NotJson(_))
        ));
        assert!(matches!(
            read(&claude, b"[1,2]"),
            Err(HookError::NotJson(_))
        ));
        assert_eq!(read(&claude, b"{}"), Err(HookError::NoEvent));
        assert_eq!(
            read(&claude, &vec![b' '; MAX_PAYLOAD + 1]),
            Err(HookError::TooLarge)
        );
        assert_eq!(
            read(&AgentKind::Aider, br#"{"hook_event_name":"Stop"}"#),
            Err(HookError::UnknownAgent("aider".into()))
        );
    }

    #[test]
    fn gemini_and_codex_turns_end_idle() {
        assert_eq!(
            status(AgentKind::Gemini, r#"{"hook_event_name":"AfterAgent"}"#),
            Some(AgentStatus::Idle)
        );
        assert_eq!(
            status(
                AgentKind::Gemini,
                r#"{"hook_event_name":"Notification","notification_type":"ToolPermission"}"#
            ),
            Some(AgentStatus::Waiting)
        );
        assert_eq!(
            status(
                AgentKind::Codex,
                r#"{"hook_event_name":"PermissionRequest"}"#
            ),
            Some(AgentStatus::Waiting)
        );
        assert_eq!(
            status(AgentKind::Codex, r#"{"hook_event_name":"Stop"}"#),
            Some(AgentStatus::Idle)
        );
    }
}
