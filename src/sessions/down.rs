//! `down`: the sessions of a [`SessionsFile`] closed, through the normal
//! lifecycle: `kill-session`, which the daemon sees as any other close (it
//! saves the session's last context and completes its goal, as its
//! `session-closed` actions say). Sessions of the file that are not running
//! are reported, not an error; sessions not in the file are never touched.
//!
//! They are closed in the reverse of `up`'s order, so a group's members go
//! before its coordinator and the role does not move on the way down.

use serde::Serialize;

use super::file::SessionsFile;
use super::up::{creation_order, existing_sessions};
use crate::control::SessionId;
use crate::control::command::Command;
use crate::control::oneshot::{OneShot, OneShotError};

/// What `down` did with one session of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownSession {
    pub name: String,
    /// The session closed; none when it was not running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// Why closing it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Closes every session of `file` that runs on the server. One that fails
/// to close does not stop the others; each says how it went.
pub async fn bring_down(
    tmux: &OneShot,
    file: &SessionsFile,
) -> Result<Vec<DownSession>, OneShotError> {
    let existing = existing_sessions(tmux).await?;
    let mut report = Vec::new();
    for spec in creation_order(file).into_iter().rev() {
        let Some(&id) = existing.get(&spec.name) else {
            report.push(DownSession {
                name: spec.name.clone(),
                session_id: None,
                error: None,
            });
            continue;
        };
        let error = match tmux.run(&Command::kill_session(id)).await {
            Ok(_) => None,
            // The server went away with its last session: it is closed.
            Err(OneShotError::NoServer { .. }) => None,
            Err(err) => Some(err.to_string()),
        };
        report.push(DownSession {
            name: spec.name.clone(),
            session_id: Some(id),
            error,
        });
    }
    Ok(report)
}
