//! `freeze`: the sessions on a tmux server written as a [`SessionsFile`],
//! so that `up` of it on a fresh server reproduces them: windows (index,
//! name, layout), panes (directory, start command), the agent options a
//! user sets, and what tmux-agent knows of each pane's agent.
//!
//! What is read, and from where:
//! - one `list-panes -a` for every pane, each field percent-encoded
//!   ([`listed_option`]) so that no value can break a line or a field;
//! - a pane's command is its `#{pane_start_command}`, split back into the
//!   arguments it was started with. A pane started as the default shell has
//!   none, whatever runs in it now (`#{pane_current_command}` names a
//!   program, not how to start it again), so `up` gives it a shell again;
//! - one `show-options -t $id` per session for its `@agent-*` options:
//!   goal, type, group and role to their keys, the other user options
//!   (`@agent-ctx-*`, a user's own) to `options`, and the ones the daemon
//!   writes (`@agent-state`, `@agent-goal-id` …) left out;
//! - the pane options `@agent-kind` and `@agent-session-id` to `agent` and
//!   `resume_id`.
//!
//! Sessions come in the order they were made (by id), so `up` makes them
//! in the same order; the daemon's own session is left out.

use std::collections::BTreeMap;

use super::file::{PaneCommand, PaneSpec, Role, SessionSpec, SessionsFile, WindowSpec};
use crate::control::SessionId;
use crate::control::command::{Command, SessionTarget};
use crate::control::connection::is_sidecar_pane;
use crate::control::oneshot::{OneShot, OneShotError};
use crate::control::options::{decode_listed, listed_option, parse_options, split_command};
use crate::group::GroupName;
use crate::schema;
use crate::status::AgentKind;

/// Which sessions to freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// Every session but the daemon's own.
    All,
    /// These sessions, as a person names them (`work`, `$3`, `=work`).
    Sessions(Vec<String>),
}

/// Why a freeze failed.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    #[error(transparent)]
    Tmux(#[from] OneShotError),
    /// A session asked for that the server does not have.
    #[error("no session {target:?} on the server: {message}")]
    NoSession { target: String, message: String },
    /// tmux printed something this cannot read (a bug, or another tmux).
    #[error("cannot read tmux's output: {0}")]
    Output(String),
}

/// The fields of the `list-panes` listing, in order.
const FIELDS: [&str; 12] = [
    "session_id",
    "session_name",
    "session_path",
    "window_index",
    "window_name",
    "window_layout",
    "window_active",
    "pane_current_path",
    "pane_start_command",
    "pane_active",
    schema::pane::KIND,
    schema::pane::SESSION_ID,
];

/// The current state of the sessions `which` names, as a file.
pub async fn freeze(tmux: &OneShot, which: &Which) -> Result<SessionsFile, FreezeError> {
    let wanted = match which {
        Which::All => None,
        Which::Sessions(targets) => {
            let mut ids = Vec::new();
            for target in targets {
                ids.push(resolve(tmux, target).await?);
            }
            Some(ids)
        }
    };
    let format = FIELDS
        .iter()
        .map(|f| listed_option(f))
        .collect::<Vec<_>>()
        .join("\t");
    let list = Command::list_all_panes(&format).expect("a constant format has no NUL");
    let out = tmux.run(&list).await?;

    // Sessions by id, each with its windows by index.
    let mut sessions: BTreeMap<u32, Frozen> = BTreeMap::new();
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let fields: Vec<String> = line.split(|&b| b == b'\t').map(decode_listed).collect();
        let [
            sid,
            name,
            path,
            index,
            window_name,
            layout,
            _,
            cwd,
            start,
            _,
            kind,
            resume,
        ] = fields.as_slice()
        else {
            return Err(FreezeError::Output(format!(
                "a list-panes line has {} fields, not {}",
                fields.len(),
                FIELDS.len()
            )));
        };
        let id: SessionId = sid
            .parse()
            .map_err(|_| FreezeError::Output(format!("not a session id: {sid:?}")))?;
        if wanted.as_ref().is_some_and(|w| !w.contains(&id)) {
            continue;
        }
        let index: u32 = index
            .parse()
            .map_err(|_| FreezeError::Output(format!("not a window index: {index:?}")))?;
        let words =
            split_command(start.as_bytes()).map_err(|err| FreezeError::Output(err.to_string()))?;
        let session = sessions.entry(id.0).or_insert_with(|| Frozen {
            id,
            spec: SessionSpec {
                name: name.clone(),
                cwd: Some(path.clone()).filter(|p| !p.is_empty()),
                ..SessionSpec::default()
            },
            sidecar: false,
        });
        if is_sidecar_pane(&words) {
            session.sidecar = true;
        }
        let pane = PaneSpec {
            cwd: Some(cwd.clone()).filter(|c| !c.is_empty()),
            command: PaneCommand::from_words(words),
            agent: Some(kind.as_str())
                .filter(|k| !k.is_empty())
                .map(AgentKind::named),
            resume_id: Some(resume.clone()).filter(|r| !r.is_empty()),
        };
        match session.spec.windows.last_mut() {
            Some(window) if window.index == Some(index) => window.panes.push(pane),
            _ => session.spec.windows.push(WindowSpec {
                name: Some(window_name.clone()),
                index: Some(index),
                layout: Some(layout.clone()).filter(|l| !l.is_empty()),
                panes: vec![pane],
            }),
        }
    }

    let mut file = SessionsFile::default();
    for (_, mut session) in sessions {
        if session.sidecar && wanted.is_none() {
            continue;
        }
        let options = session_options(tmux, session.id).await?;
        apply_options(&mut session.spec, options);
        file.sessions.push(session.spec);
    }
    Ok(file)
}

/// A session being read.
struct Frozen {
    id: SessionId,
    spec: SessionSpec,
    /// Whether it is the daemon's own session.
    sidecar: bool,
}

/// The id of the session a person named.
async fn resolve(tmux: &OneShot, target: &str) -> Result<SessionId, FreezeError> {
    let list = Command::list_windows(SessionTarget::Given(target.to_owned()), "#{session_id}")
        .map_err(|err| FreezeError::NoSession {
            target: target.to_owned(),
            message: err.to_string(),
        })?;
    match tmux.run(&list).await {
        Ok(out) => String::from_utf8_lossy(&out)
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| FreezeError::Output(format!("no session id for {target:?}"))),
        Err(OneShotError::Refused { message, .. }) => Err(FreezeError::NoSession {
            target: target.to_owned(),
            message,
        }),
        Err(err) => Err(err.into()),
    }
}

/// The session's own `@agent-*` options.
async fn session_options(
    tmux: &OneShot,
    id: SessionId,
) -> Result<BTreeMap<String, String>, FreezeError> {
    let out = tmux.run(&Command::show_options(id)).await?;
    parse_options(out.split(|&b| b == b'\n'), schema::PREFIX)
        .map_err(|err| FreezeError::Output(err.to_string()))
}

/// Options a session's `@agent-*` options say, to their keys; what the
/// daemon writes itself is left out.
fn apply_options(spec: &mut SessionSpec, options: BTreeMap<String, String>) {
    use schema::session::{
        AGENT_STATUS, GOAL, GOAL_ID, GROUP, JOINED, PEERS, ROLE, SAVED, STATE, TYPE,
    };
    for (name, value) in options {
        match name.as_str() {
            GOAL => spec.goal = Some(value),
            TYPE => spec.agent_type = Some(value),
            // A group name the file could not hold is kept as an option
            // value, so that nothing is lost (and `up` says what is wrong).
            GROUP => match GroupName::new(&value) {
                Ok(group) => spec.group = Some(group),
                Err(_) => {
                    spec.options.insert(name, value);
                }
            },
            ROLE => {
                spec.role = match value.as_str() {
                    "coordinator" => Some(Role::Coordinator),
                    "member" => Some(Role::Member),
                    _ => None,
                }
            }
            GOAL_ID | STATE | SAVED | PEERS | JOINED | AGENT_STATUS => {}
            _ => {
                spec.options.insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_options_are_left_out_and_user_options_kept() {
        let mut spec = SessionSpec::default();
        let options: BTreeMap<String, String> = [
            ("@agent-goal", "ship"),
            ("@agent-type", "coder"),
            ("@agent-group", "build"),
            ("@agent-role", "coordinator"),
            ("@agent-state", "active"),
            ("@agent-goal-id", "g-1"),
            ("@agent-joined", "3:build"),
            ("@agent-ctx-branch", "main"),
            ("@agent-note", "mine"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        apply_options(&mut spec, options);
        assert_eq!(spec.goal.as_deref(), Some("ship"));
        assert_eq!(spec.agent_type.as_deref(), Some("coder"));
        assert_eq!(spec.group.as_ref().map(GroupName::as_str), Some("build"));
        assert_eq!(spec.role, Some(Role::Coordinator));
        assert_eq!(
            spec.options.keys().collect::<Vec<_>>(),
            ["@agent-ctx-branch", "@agent-note"]
        );
    }
}
