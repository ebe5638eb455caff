//! What makes actions fire: the lifecycle events, the checkpoint
//! timer, and a save the CLI asked for.
//!
//! A closed enum rather than strings, so a misspelt trigger is a compile
//! error in the code and a problem naming the valid ones in the config.
//! The names are the config's (`[[on.session-created]]`), `watch --json`'s
//! and the outbox's `event` column: they are written down in users' files
//! and in old outboxes, so they never change.

use std::fmt;
use std::str::FromStr;

use super::outbox::Priority;
use crate::state::EventKind;

/// Something actions are attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    SessionCreated,
    SessionRenamed,
    SessionAttached,
    SessionDetached,
    SessionClosed,
    ClientAttached,
    ClientDetached,
    /// A session that lived and died between two listings (no preset acts
    /// on it; a config may).
    SessionMissed,
    /// An agent in one of the session's panes started waiting for the user.
    AgentWaiting,
    /// An agent's turn started.
    AgentWorking,
    /// An agent's turn is done.
    AgentIdle,
    /// An agent left its pane.
    AgentExited,
    /// `tmux-agent restore` brought the session back (in place of its
    /// `session-created`).
    SessionRestored,
    /// Every `checkpoint_interval`, for each attached session.
    Checkpoint,
    /// `tmux-agent save`: not configurable; it sends the `checkpoint`
    /// actions (see `decide::save_actions`), recorded under this name.
    Save,
}

impl Trigger {
    /// The triggers a config may attach actions to (`[[on.NAME]]`), in
    /// lifecycle order.
    pub const CONFIGURABLE: [Trigger; 14] = [
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
        Self::Checkpoint,
    ];

    /// The name in the config, in `watch --json` and in the outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionCreated => EventKind::SessionCreated.as_str(),
            Self::SessionRenamed => EventKind::SessionRenamed.as_str(),
            Self::SessionAttached => EventKind::SessionAttached.as_str(),
            Self::SessionDetached => EventKind::SessionDetached.as_str(),
            Self::SessionClosed => EventKind::SessionClosed.as_str(),
            Self::ClientAttached => EventKind::ClientAttached.as_str(),
            Self::ClientDetached => EventKind::ClientDetached.as_str(),
            Self::SessionMissed => EventKind::SessionMissed.as_str(),
            Self::AgentWaiting => EventKind::AgentWaiting.as_str(),
            Self::AgentWorking => EventKind::AgentWorking.as_str(),
            Self::AgentIdle => EventKind::AgentIdle.as_str(),
            Self::AgentExited => EventKind::AgentExited.as_str(),
            Self::SessionRestored => EventKind::SessionRestored.as_str(),
            Self::Checkpoint => "checkpoint",
            Self::Save => "save",
        }
    }

    /// Whether `[[on.NAME]]` may name it.
    pub fn is_configurable(self) -> bool {
        self != Self::Save
    }

    /// How urgent its calls are when a backlog builds: closing completes
    /// goals, detaching saves work; checkpoints can wait the longest.
    pub fn priority(self) -> Priority {
        match self {
            Self::SessionClosed => Priority::Complete,
            Self::SessionDetached | Self::Save => Priority::Save,
            Self::Checkpoint => Priority::Checkpoint,
            Self::SessionCreated
            | Self::SessionRenamed
            | Self::SessionAttached
            | Self::ClientAttached
            | Self::ClientDetached
            | Self::SessionMissed
            | Self::AgentWaiting
            | Self::AgentWorking
            | Self::AgentIdle
            | Self::AgentExited
            | Self::SessionRestored => Priority::Register,
        }
    }

    /// The names a config may use, for messages: `session-created, ...`.
    pub fn configurable_names() -> String {
        Self::CONFIGURABLE.map(Trigger::as_str).join(", ")
    }
}

impl From<EventKind> for Trigger {
    fn from(kind: EventKind) -> Self {
        match kind {
            EventKind::SessionCreated => Self::SessionCreated,
            EventKind::SessionRenamed => Self::SessionRenamed,
            EventKind::SessionAttached => Self::SessionAttached,
            EventKind::SessionDetached => Self::SessionDetached,
            EventKind::SessionClosed => Self::SessionClosed,
            EventKind::ClientAttached => Self::ClientAttached,
            EventKind::ClientDetached => Self::ClientDetached,
            EventKind::SessionMissed => Self::SessionMissed,
            EventKind::AgentWaiting => Self::AgentWaiting,
            EventKind::AgentWorking => Self::AgentWorking,
            EventKind::AgentIdle => Self::AgentIdle,
            EventKind::AgentExited => Self::AgentExited,
            EventKind::SessionRestored => Self::SessionRestored,
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no trigger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event `{0}` (known: {known})", known = Trigger::configurable_names())]
pub struct UnknownTrigger(pub String);

impl FromStr for Trigger {
    type Err = UnknownTrigger;

    /// Reads any trigger's name, `save` included (the outbox records it);
    /// the config checks [`Trigger::is_configurable`] on top.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::CONFIGURABLE
            .into_iter()
            .chain([Self::Save])
            .find(|t| t.as_str() == name)
            .ok_or_else(|| UnknownTrigger(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_events() {
        for trigger in Trigger::CONFIGURABLE.into_iter().chain([Trigger::Save]) {
            assert_eq!(trigger.as_str().parse::<Trigger>(), Ok(trigger));
        }
        for kind in EventKind::ALL {
            assert_eq!(Trigger::from(kind).as_str(), kind.as_str());
        }
        let err = "session-exploded".parse::<Trigger>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown event `session-exploded` (known: session-created, session-renamed, \
             session-attached, session-detached, session-closed, client-attached, \
             client-detached, session-missed, agent-waiting, agent-working, agent-idle, \
             agent-exited, session-restored, checkpoint)"
        );
    }

    #[test]
    fn priorities() {
        let cases = [
            (Trigger::SessionClosed, Priority::Complete),
            (Trigger::SessionDetached, Priority::Save),
            (Trigger::Save, Priority::Save),
            (Trigger::Checkpoint, Priority::Checkpoint),
            (Trigger::SessionCreated, Priority::Register),
            (Trigger::ClientDetached, Priority::Register),
        ];
        for (trigger, priority) in cases {
            assert_eq!(trigger.priority(), priority, "{trigger}");
        }
        assert!(!Trigger::Save.is_configurable());
        assert!(Trigger::CONFIGURABLE.iter().all(|t| t.is_configurable()));
    }
}
