//! Lifecycle events: what happened to a session or a client, when.
//!
//! Their JSON form is what `tmux-agent watch --json` prints, one per line:
//! `{"event":"session-created","session_id":"$3","session":"work","time":"2026-11-21T16:00:00.123Z"}`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::control::{PaneId, SessionId};
use crate::status::{AgentKind, AgentStatus, Source};

/// The kinds of lifecycle event, named as in logs, history and `watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    SessionCreated,
    SessionRenamed,
    /// The session's count of non-control clients rose from 0.
    SessionAttached,
    /// The session's count of non-control clients fell to 0.
    SessionDetached,
    SessionClosed,
    /// A (non-control) client attached to, or switched to, a session.
    ClientAttached,
    /// A (non-control) client went away or switched away from a session.
    ClientDetached,
    /// A session lived and died between two listings: its id was skipped
    /// (tmux's ids only grow). Its name is not known (`session` is empty),
    /// nor its creation time.
    SessionMissed,
    /// An agent in one of the session's panes now waits for the user
    /// (`crate::status`): the event carries the pane, the agent and its
    /// old status.
    AgentWaiting,
    /// An agent's turn started (or went on after waiting).
    AgentWorking,
    /// An agent's turn is done.
    AgentIdle,
    /// An agent left its pane, or the pane closed.
    AgentExited,
    /// A session `tmux-agent restore` brought back from a snapshot: made
    /// by the reactor in place of the session's `session-created`
    /// (`crate::sessions::restore`), so its goal goes back to active under
    /// the id it had rather than a new one being registered.
    SessionRestored,
}

impl EventKind {
    /// The event's name, as in `watch --json` and the config's `[[on.NAME]]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionCreated => "session-created",
            Self::SessionRenamed => "session-renamed",
            Self::SessionAttached => "session-attached",
            Self::SessionDetached => "session-detached",
            Self::SessionClosed => "session-closed",
            Self::ClientAttached => "client-attached",
            Self::ClientDetached => "client-detached",
            Self::SessionMissed => "session-missed",
            Self::AgentWaiting => "agent-waiting",
            Self::AgentWorking => "agent-working",
            Self::AgentIdle => "agent-idle",
            Self::AgentExited => "agent-exited",
            Self::SessionRestored => "session-restored",
        }
    }

    /// The event of an agent's new status; `None` for `unknown`, which
    /// says nothing to act on.
    pub fn of_agent_status(status: AgentStatus) -> Option<Self> {
        match status {
            AgentStatus::Waiting => Some(Self::AgentWaiting),
            AgentStatus::Working => Some(Self::AgentWorking),
            AgentStatus::Idle => Some(Self::AgentIdle),
            AgentStatus::Exited => Some(Self::AgentExited),
            AgentStatus::Unknown => None,
        }
    }

    /// Whether the event is about an agent in a pane rather than the
    /// session itself.
    pub fn is_agent(self) -> bool {
        matches!(
            self,
            Self::AgentWaiting | Self::AgentWorking | Self::AgentIdle | Self::AgentExited
        )
    }

    /// Every kind, in a stable order.
    pub const ALL: [EventKind; 13] = [
        Self::SessionCreated,
        Self::SessionRenamed,
        Self::SessionAttached,
        Self::SessionDetached,
        Self::SessionClosed,
        Self::ClientAttached,
        Self::ClientDetached,
        Self::SessionMissed,
        Self::AgentWaiting,
        Self::AgentWorking,
        Self::AgentIdle,
        Self::AgentExited,
        Self::SessionRestored,
    ];
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One lifecycle event. Every event names its session by id and name.
/// Read back (`Deserialize`) by `watch` from the daemon's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    #[serde(rename = "event")]
    pub kind: EventKind,
    pub session_id: SessionId,
    /// The session's name when the event happened (the new name for a rename).
    pub session: String,
    /// When the sidecar observed the event, UTC with milliseconds.
    #[serde(serialize_with = "rfc3339_millis")]
    pub time: DateTime<Utc>,
    /// The client, for client events (`/dev/pts/3`, or `client-<pid>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The previous name, for `session-renamed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_name: Option<String>,
    /// When tmux created the session (Unix seconds), as tmux reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_created: Option<i64>,
    /// The event happened while no daemon watched: the daemon made it at
    /// start from its journal (`agent::journal`), so `time` is when it was
    /// found, not when it happened. Shown as `"late":true`, absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    /// The session's `@agent-*` options as the listing that made the event
    /// read them, so acting on it needs no `show-options`; `None` for an
    /// event not made from a listing (the journal's, a checkpoint's). Not
    /// part of the JSON form.
    #[serde(skip)]
    pub options: Option<crate::state::model::SessionOptions>,
    /// For the `agent-*` events: which pane, which agent, from which
    /// status (`"pane":"%3","agent":"claude","old_status":"working",
    /// "status":"waiting"`); absent otherwise.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentChange>,
}

/// What an `agent-*` event says about the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentChange {
    pub pane: PaneId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentKind>,
    /// `None` for an agent first seen.
    pub old_status: Option<AgentStatus>,
    pub status: AgentStatus,
    /// Where the new status came from (`hook`, `activity`, `process`).
    pub source: Source,
}

fn rfc3339_millis<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl std::fmt::Display for LifecycleEvent {
    /// The human form `watch` prints: time, event, session, and the details.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}  {:<17} {} {}",
            self.time.format("%H:%M:%S%.3f"),
            self.kind.as_str(),
            self.session_id,
            self.session
        )?;
        if let Some(old) = &self.old_name {
            write!(f, " (was {old})")?;
        }
        if let Some(client) = &self.client {
            write!(f, " client {client}")?;
        }
        if self.late {
            f.write_str(" (late)")?;
        }
        if let Some(agent) = &self.agent {
            write!(f, " pane {}", agent.pane)?;
            if let Some(kind) = &agent.agent {
                write!(f, " {kind}")?;
            }
            match agent.old_status {
                Some(old) => write!(f, " {old} → {}", agent.status)?,
                None => write!(f, " {}", agent.status)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn json_form_matches_the_design() {
        let event = LifecycleEvent {
            kind: EventKind::SessionCreated,
            session_id: SessionId(3),
            session: "work".into(),
            time: Utc.with_ymd_and_hms(2026, 11, 21, 16, 0, 0).unwrap()
                + chrono::Duration::milliseconds(123),
            client: None,
            old_name: None,
            session_created: None,
            late: false,
            options: None,
            agent: None,
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"event":"session-created","session_id":"$3","session":"work","time":"2026-11-21T16:00:00.123Z"}"#
        );
        let late = LifecycleEvent {
            late: true,
            ..event
        };
        assert!(
            serde_json::to_string(&late)
                .unwrap()
                .ends_with(r#","late":true}"#)
        );
    }
}
