//! Why the daemon could not start or stopped with a failure
//! ([`DaemonError`]), and why it could not answer a request
//! ([`HandlerError`]).
//!
//! Both say their cause in their message, as every error of this crate
//! does, so a message read on its own (a log line, the IPC socket's `error`
//! response) is the whole story. The CLI adds what a person should do next.

use crate::agent::outbox::OutboxError;
use crate::config::Problem;
use crate::control::command::CommandError;
use crate::control::connection::ControlError;
use crate::control::server::ServerSocket;
use crate::group::GroupError;
use crate::ipc::EndpointError;
use crate::state::tracker::TrackError;

/// What the configuration in force is after a failed reload: untouched.
const KEPT: &str = "the configuration in force is unchanged";

/// Why [`super::run`] returned an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon runs for this server, or the runtime directory or the
    /// socket cannot be used.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// Reading the configuration files stopped half-way (the reading
    /// thread panicked).
    #[error("config discovery stopped unexpectedly: {0}")]
    Discovery(#[source] tokio::task::JoinError),
    /// The configuration has problems: a daemon never runs a config it
    /// could only half read (a dropped server entry, a preset that fell
    /// back to the default makes calls nobody asked for).
    #[error("the configuration has {} problem(s), so the daemon did not start:{}", .0.len(), one_per_line(.0))]
    ConfigProblems(Vec<Problem>),
    /// No tmux server listens on the socket.
    #[error("no tmux server is running for `{server}`")]
    NoServer { server: ServerSocket },
    /// The control connection could not be opened.
    #[error("attaching to `{server}`: {source}")]
    Attach {
        server: ServerSocket,
        #[source]
        source: ControlError,
    },
    /// The first listing of sessions failed, or tracking failed later.
    #[error("reading sessions from `{server}`: {source}")]
    Tracking {
        server: ServerSocket,
        #[source]
        source: TrackError,
    },
    /// The tracker's task panicked.
    #[error("the session tracker stopped unexpectedly: {0}")]
    TrackerPanicked(#[source] tokio::task::JoinError),
    /// `@agent-daemon` could not be set.
    #[error("marking the daemon as running: {0}")]
    Announce(#[source] ControlError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Why a request over the socket (or a reload on SIGHUP) failed; put into
/// words for the requester at the IPC edge.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The reactor has stopped: the daemon is shutting down (or the reactor
    /// failed, which the log says).
    #[error("the reactor has stopped")]
    ReactorStopped,
    /// The daemon is shutting down and no longer takes this request.
    #[error("the daemon is stopping")]
    Stopping,
    /// The reactor refused the save, and says why (the session is not
    /// tracked, nothing in the configuration saves a session).
    #[error("{0}")]
    NotSaved(String),
    /// A reload was refused; the old configuration stays.
    #[error(transparent)]
    Config(#[from] ReloadError),
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The outbox holds a call in a state this daemon does not know (an
    /// outbox written by a newer tmux-agent).
    #[error("the outbox holds a call in state {0:?}, which this daemon does not know")]
    UnknownCallState(String),
}

/// Why a reload was refused. Each says that nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Reading the configuration files stopped half-way.
    #[error("config discovery stopped unexpectedly ({0}); {KEPT}")]
    Discovery(#[source] tokio::task::JoinError),
    /// The configuration has problems.
    #[error("the configuration has problems ({}); {KEPT} (see `tmux-agent config check`)", in_one_line(.0))]
    Problems(Vec<Problem>),
}

/// The problems, each on a line of its own.
fn one_per_line(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

/// The problems in one line.
fn in_one_line(problems: &[Problem]) -> String {
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    problems.join("; ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn problems_are_listed_one_per_line_at_start_and_in_one_line_on_reload() {
        let problems = vec![
            Problem::new(Path::new("/c.toml"), "on.x", "unknown event"),
            Problem::new(Path::new("/c.toml"), "servers.y", "no command"),
        ];
        assert_eq!(
            DaemonError::ConfigProblems(problems.clone()).to_string(),
            "the configuration has 2 problem(s), so the daemon did not start:\n  \
             /c.toml: on.x: unknown event\n  /c.toml: servers.y: no command"
        );
        let refused = ReloadError::Problems(problems).to_string();
        assert!(
            refused.starts_with(
                "the configuration has problems (/c.toml: on.x: unknown event; \
                 /c.toml: servers.y: no command); the configuration in force is unchanged"
            ),
            "{refused}"
        );
    }
}
