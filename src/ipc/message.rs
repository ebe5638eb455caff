//! The messages between the CLI and the daemon: one JSON object per line,
//! one request and one response per connection.
//!
//! ```text
//! → {"request":"status"}
//! ← {"response":"status","pid":4242,"version":"0.1.0",...}
//! → {"request":"share","session":"$3","key":"task","value":"refactor"}
//! ← {"response":"groups","groups":[{"name":"build",...}]}
//! → {"request":"save","session":"$3","timeout_secs":10}
//! ← {"response":"saved","session":"$3","complete":true,"calls":[...]}
//! → {"request":"mcp-stats"}
//! ← {"response":"mcp-stats","servers":[{"server":"builtin","calls":12,...}]}
//! → {"request":"agent-status","observation":{"pane":"%5","kind":"claude","status":"waiting",...}}
//! ← {"response":"observed","accepted":true}
//! → {"request":"send","id":"m-3f9c2a71d04b6e88","from":"user","to":{"kind":"session","name":"$3"},"body":"hi"}
//! ← {"response":"messages","messages":[{"id":"m-3f9c2a71d04b6e88","state":"queued",...}]}
//! ← {"response":"refused","rule":"messages.scope","message":"..."}
//! → {"request":"messages","ids":["m-3f9c2a71d04b6e88"]}
//! → {"request":"inbox","session":"$3","unread_only":true}
//! → {"request":"ack","id":"m-3f9c2a71d04b6e88","by":"$3"}
//! → {"request":"stop-hook","observation":{...},"stop_hook_active":false}
//! ← {"response":"handed-over","accepted":true,"text":"[tmux-agent message ...]\nhi"}
//! → {"request":"stop"}
//! ← {"response":"stopping","pid":4242}
//! → {"request":"events","since":"2026-11-21T16:00:00.000Z"}
//! ← {"response":"events","pid":4242,"replayed":1}
//! ← {"event":"session-closed","session_id":"$3","session":"work",...,"late":true}
//! ← ...one event per line, for as long as the daemon runs
//! ← {"response":"lagged","missed":12}
//! ← {"response":"error","message":"session $9 does not exist"}
//! ```
//!
//! `events` is the one request answered with more than one line: a header,
//! then the daemon's events (see [`crate::events`]) as they are published,
//! each in its own shape, with a `lagged` line when the follower fell so
//! far behind that some were dropped for it. It ends when the daemon stops
//! or the follower closes the connection.
//!
//! Fields the daemon may not fill (MCP servers, actions) are optional, so a
//! newer CLI can read an older daemon's answer and the other way round; an
//! unknown request gets an `error` response naming it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::control::SessionId;
use crate::group::{ContextKey, GroupsReport};
use crate::messages::{Message, MessageId, SendRequest};
use crate::status::{Observation, PaneAgent};

/// What the CLI asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// Health of the daemon: answered from what it already knows, at once.
    Status,
    /// Shut down cleanly.
    Stop,
    /// Re-read the configuration (as SIGHUP does) and rebuild groups from tmux.
    Reload,
    /// Rebuild groups from tmux options now; answered with the result.
    Reconcile,
    /// Set (`value` given) or remove (`value` absent) `@agent-ctx-KEY` on
    /// every member of `session`'s group.
    Share {
        session: SessionId,
        key: ContextKey,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    },
    /// Save `session`'s context now and wait, at most `timeout_secs` (the
    /// daemon caps it at [`MAX_SAVE_WAIT_SECS`]), for the calls' outcome.
    Save {
        session: SessionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u64>,
    },
    /// The daemon's live MCP figures (calls, outcomes, latency) per server
    /// and tool, as `mcp stats` prints them.
    McpStats,
    /// Follow the daemon's events: those it still keeps that were
    /// published at or after `since` (none without it), then each new one.
    Events {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<DateTime<Utc>>,
    },
    /// What an agent's hook said (`tmux-agent hook`): handed to the status
    /// keeper and answered at once, without waiting on tmux.
    AgentStatus {
        observation: Observation,
        /// The event comes from inside a turn (a tool call …): a message
        /// the pane's `Stop` hook was handed has reached the agent
        /// (`crate::status::hook::HookReading::in_turn`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        in_turn: bool,
    },
    /// Post a message (`tmux-agent send`, `send_message`, `broadcast`):
    /// answered once it is committed, with one message per recipient, or
    /// `refused` with the rule.
    Send(SendRequest),
    /// The messages with these ids, or of the sends with these ids (for
    /// `send --wait`).
    Messages { ids: Vec<MessageId> },
    /// A session's messages, newest last (`inbox`, `read_messages`).
    Inbox {
        session: SessionId,
        #[serde(default)]
        unread_only: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// `by` has read message `id` (`ack_message`).
    Ack { id: MessageId, by: SessionId },
    /// Claude Code's `Stop` hook: the status, and the next message for the
    /// pane handed over as the hook's continuation, unless the agent is
    /// already continuing because of a hook (`stop_hook_active`).
    StopHook {
        observation: Observation,
        #[serde(default)]
        stop_hook_active: bool,
    },
}

/// The longest a `save` request waits for its calls (the daemon answers
/// every request within 30 s).
pub const MAX_SAVE_WAIT_SECS: u64 = 25;

impl Request {
    /// Reads one request line as the daemon receives it. The error says
    /// what was wrong, for the `error` response.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        serde_json::from_slice(line).map_err(|err| {
            format!(
                "bad request ({err}); this daemon is tmux-agent {}",
                env!("CARGO_PKG_VERSION")
            )
        })
    }

    /// The request's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Stop => "stop",
            Request::Reload => "reload",
            Request::Reconcile => "reconcile",
            Request::Share { .. } => "share",
            Request::Save { .. } => "save",
            Request::McpStats => "mcp-stats",
            Request::Events { .. } => "events",
            Request::AgentStatus { .. } => "agent-status",
            Request::Send(_) => "send",
            Request::Messages { .. } => "messages",
            Request::Inbox { .. } => "inbox",
            Request::Ack { .. } => "ack",
            Request::StopHook { .. } => "stop-hook",
        }
    }
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum Response {
    /// Boxed: the report is much larger than the other answers.
    Status(Box<StatusReport>),
    /// The groups after a pass (`reconcile`, `share`).
    Groups(GroupsReport),
    /// The daemon is shutting down; `pid` exits shortly.
    Stopping {
        pid: u32,
    },
    Reloaded {
        message: String,
    },
    /// The outcome of a `save`.
    Saved(SaveReport),
    /// The daemon's MCP figures: a JSON array of `mcp::metrics::ServerStats`
    /// (kept as JSON here so this enum stays comparable).
    McpStats {
        servers: serde_json::Value,
    },
    /// The header of an `events` stream: `replayed` kept events follow,
    /// then the live ones.
    Events {
        pid: u32,
        replayed: usize,
    },
    /// In an `events` stream: the follower fell behind, and `missed`
    /// events were dropped for it.
    Lagged {
        missed: u64,
    },
    /// An `agent-status` was taken (`accepted`), or dropped because the
    /// status keeper is behind or stopped.
    Observed {
        accepted: bool,
    },
    /// Messages: those a send posted, looked up, or in an inbox.
    Messages {
        messages: Vec<Message>,
    },
    /// A send the policy refused: which rule, and how to change it.
    Refused {
        rule: String,
        message: String,
    },
    /// A `stop-hook`: the status taken (`accepted`), and the text handed
    /// over to the agent, if a message was waiting.
    HandedOver {
        accepted: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    Error {
        message: String,
    },
}

/// The daemon's health, as `tmux-agent status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub pid: u32,
    /// tmux-agent's version.
    pub version: String,
    /// The tmux server, as the command line that reaches it (`tmux -L work`).
    pub server: String,
    /// The tmux server's version (`#{version}`).
    pub tmux_version: String,
    pub started: DateTime<Utc>,
    pub uptime_secs: u64,
    /// User sessions the tracker follows (the sidecar's own not counted).
    pub sessions: usize,
    /// Sessions that lived and died between two listings, seen only as a
    /// skipped id (each was a `session-missed` event).
    #[serde(default)]
    pub sessions_missed: u64,
    /// How many times a supervised task (a dispatcher, the group
    /// reconciler) was restarted after a panic: 0 unless something broke.
    #[serde(default)]
    pub tasks_restarted: u64,
    /// The groups as of the reconciler's last pass.
    pub groups: GroupsReport,
    /// Each configured MCP server's state (filled by the reactor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<McpServerStatus>,
    /// The outbox: actions not yet delivered, and failures (filled by the reactor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<ActionsStatus>,
    /// The agents in panes, as the status keeper knows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<PaneAgent>,
}

/// One MCP server in a status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerStatus {
    pub name: String,
    /// e.g. `ready`, `connecting`, `backoff`, `down`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The outbox in a status report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionsStatus {
    pub pending: u64,
    pub failed: u64,
    /// The latest failures, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_failures: Vec<String>,
    /// Set when the outbox could not be written and lives in memory: why.
    /// Calls still go out, but are lost if the daemon stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_memory: Option<String>,
    /// Open calls for MCP server names no config defines any more (server
    /// → count): they wait until a server of that name is configured.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub unconfigured: std::collections::BTreeMap<String, u64>,
}

/// What a `save` did: one entry per call it committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveReport {
    pub session: SessionId,
    /// Whether every call was delivered or failed for good before the
    /// daemon answered (else some are still queued and will be sent).
    pub complete: bool,
    pub calls: Vec<SavedCall>,
}

/// One call of a `save`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCall {
    pub server: String,
    pub tool: String,
    pub state: CallState,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// Why it failed (or, while pending, why the last attempt failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where one call of a `save` stands; on the wire, the outbox's word for
/// it (`delivered`, `failed`, `pending`, `inflight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    /// Waiting to be sent (again, if an attempt failed).
    Pending,
    /// Being sent now.
    Inflight,
    /// The MCP server answered.
    Delivered,
    /// Failed for good: it will not be sent again.
    Failed,
}

impl CallState {
    /// The state the outbox records in this word, if it is one.
    pub fn from_outbox(state: &str) -> Option<Self> {
        match state {
            "pending" => Some(Self::Pending),
            "inflight" => Some(Self::Inflight),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    /// The word on the wire and in the outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Inflight => "inflight",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Whether nothing more will happen to the call.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed)
    }
}

impl std::fmt::Display for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_documented_wire_form() {
        let cases = [
            (Request::Status, r#"{"request":"status"}"#),
            (Request::Stop, r#"{"request":"stop"}"#),
            (Request::Reload, r#"{"request":"reload"}"#),
            (Request::Reconcile, r#"{"request":"reconcile"}"#),
            (
                Request::Save {
                    session: SessionId(3),
                    timeout_secs: Some(10),
                },
                r#"{"request":"save","session":"$3","timeout_secs":10}"#,
            ),
            (
                Request::Save {
                    session: SessionId(3),
                    timeout_secs: None,
                },
                r#"{"request":"save","session":"$3"}"#,
            ),
            (
                Request::Share {
                    session: SessionId(3),
                    key: ContextKey::new("task").unwrap(),
                    value: Some("refactor".into()),
                },
                r#"{"request":"share","session":"$3","key":"task","value":"refactor"}"#,
            ),
            (
                Request::Share {
                    session: SessionId(3),
                    key: ContextKey::new("task").unwrap(),
                    value: None,
                },
                r#"{"request":"share","session":"$3","key":"task"}"#,
            ),
        ];
        for (request, json) in cases {
            assert_eq!(serde_json::to_string(&request).unwrap(), json);
            assert_eq!(serde_json::from_str::<Request>(json).unwrap(), request);
        }
    }

    #[test]
    fn bad_requests_do_not_parse() {
        for bad in [
            r#"{"request":"format-disk"}"#,
            r#"{"request":"share","session":"3","key":"task"}"#,
            r#"{"request":"share","session":"$3","key":"a b"}"#,
            r#"{}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn call_states_are_the_outbox_words_on_the_wire() {
        for state in [
            CallState::Pending,
            CallState::Inflight,
            CallState::Delivered,
            CallState::Failed,
        ] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
            assert_eq!(CallState::from_outbox(state.as_str()), Some(state));
            assert_eq!(serde_json::from_str::<CallState>(&json).unwrap(), state);
        }
        assert_eq!(CallState::from_outbox("lost"), None);
    }

    #[test]
    fn responses_round_trip() {
        let status = Response::Status(Box::new(StatusReport {
            pid: 1,
            version: "0.1.0".into(),
            server: "tmux -L x".into(),
            tmux_version: "3.3a".into(),
            started: "2026-11-21T16:00:00Z".parse().unwrap(),
            uptime_secs: 5,
            sessions: 2,
            sessions_missed: 0,
            tasks_restarted: 0,
            groups: GroupsReport::default(),
            mcp_servers: vec![],
            actions: None,
            agents: vec![],
        }));
        let json = serde_json::to_string(&status).unwrap();
        assert!(
            json.starts_with(r#"{"response":"status","pid":1,"#),
            "{json}"
        );
        assert!(!json.contains("mcp_servers"), "{json}");
        assert_eq!(serde_json::from_str::<Response>(&json).unwrap(), status);
        let error = Response::Error {
            message: "no".into(),
        };
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"response":"error","message":"no"}"#
        );
    }
}
