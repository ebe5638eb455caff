//! What the coordination commands (`join`, `leave`, `share`, `peers`,
//! `groups`, `new`) share: the `-t` flag, reaching groups through the daemon
//! or, when none answers, through tmux directly, and printing them.
//!
//! With a daemon, a command asks it for a pass after writing, so what it
//! prints is what tmux now holds. Without one, the options a command writes
//! are still the truth; the derived ones (`@agent-role`, `@agent-peers`, ...)
//! wait for the daemon, and the command says so on stderr while it shows
//! the groups as the daemon will make them.

use std::borrow::Cow;

use anyhow::bail;
use clap::Args;
use serde_json::{Value, json};

use super::GlobalArgs;
use crate::control::SessionId;
use crate::group::direct::{Direct, DirectError};
use crate::group::names::ContextKey;
use crate::group::plan::{Write, plan};
use crate::group::{
    CONTEXT_PREFIX, GroupName, GroupView, GroupsReport, OPTION_GROUP, Role, SessionRef,
};
use crate::ipc::{ClientError, Endpoint, Request, Response};

/// `-t TARGET`, shared by the commands that act on one session.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The session to act on: any tmux target ($3, a name, =exact-name, a
    /// pane). Default: the session of the pane this runs in ($TMUX_PANE).
    #[arg(short = 't', value_name = "TARGET")]
    pub target: Option<String>,
}

/// Groups as a command got them.
pub struct Fetched {
    pub report: GroupsReport,
    /// Whether the daemon answered (else tmux was read directly).
    pub daemon: bool,
}

/// The ways to the groups of one tmux server.
pub struct Groups {
    pub direct: Direct,
    pub endpoint: Endpoint,
}

impl Groups {
    pub fn new(global: &GlobalArgs) -> Self {
        let server = global.server();
        Self {
            endpoint: Endpoint::for_server(&server),
            direct: Direct::new(server),
        }
    }

    /// Resolves `-t` to a session, with errors for a person.
    pub async fn target(&self, args: &TargetArgs) -> anyhow::Result<SessionRef> {
        Ok(self.direct.resolve_session(args.target.as_deref()).await?)
    }

    /// The session's `@agent-group`, if it holds a valid one.
    pub async fn group_of(&self, session: SessionId) -> anyhow::Result<Option<String>> {
        let options = self.direct.session_options(session).await?;
        Ok(options.get(OPTION_GROUP).cloned().filter(|g| !g.is_empty()))
    }

    /// Sets or unsets the session's `@agent-group` (a user option: the CLI
    /// writes it itself, daemon or not).
    pub async fn set_group(
        &self,
        session: SessionId,
        group: Option<&GroupName>,
    ) -> anyhow::Result<()> {
        let write = match group {
            Some(group) => Write::Set {
                session,
                name: OPTION_GROUP.to_owned(),
                value: group.to_string(),
            },
            None => Write::Unset {
                session,
                name: OPTION_GROUP.to_owned(),
            },
        };
        Ok(self.direct.apply(&[write]).await?)
    }

    /// The groups after a daemon pass, or as read from tmux when no daemon
    /// answers (with a note on stderr).
    pub async fn reconciled(&self) -> anyhow::Result<Fetched> {
        match self.ask(&Request::Reconcile).await? {
            Some(report) => Ok(Fetched {
                report,
                daemon: true,
            }),
            None => self.read_directly().await,
        }
    }

    /// Sets (or removes) `@agent-ctx-KEY` on every member of `group`: by the
    /// daemon when it runs (it is the writer of derived options), else here.
    pub async fn share(
        &self,
        session: SessionId,
        group: &GroupName,
        key: &ContextKey,
        value: Option<&str>,
    ) -> anyhow::Result<Fetched> {
        let request = Request::Share {
            session,
            key: key.clone(),
            value: value.map(str::to_owned),
        };
        if let Some(report) = self.ask(&request).await? {
            return Ok(Fetched {
                report,
                daemon: true,
            });
        }
        let name = format!("{CONTEXT_PREFIX}{key}");
        // Members may close between the read and the write: read again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let observation = self.direct.observe().await?;
            let writes: Vec<Write> = observation
                .sessions
                .iter()
                .filter(|s| s.options.get(OPTION_GROUP).map(String::as_str) == Some(group.as_str()))
                .map(|s| match value {
                    Some(value) => Write::Set {
                        session: s.id,
                        name: name.clone(),
                        value: value.to_owned(),
                    },
                    None => Write::Unset {
                        session: s.id,
                        name: name.clone(),
                    },
                })
                .collect();
            match self.direct.apply(&writes).await {
                Ok(()) => break,
                Err(DirectError::Tmux { .. }) if attempts < 3 => continue,
                Err(err) => return Err(err.into()),
            }
        }
        self.read_directly().await
    }

    /// Asks the daemon; `None` when none runs (or it does not answer, which
    /// is said on stderr).
    async fn ask(&self, request: &Request) -> anyhow::Result<Option<GroupsReport>> {
        match crate::ipc::request(&self.endpoint, request).await {
            Ok(Response::Groups(report)) => Ok(Some(report)),
            Ok(Response::Error { message }) => bail!("{message}"),
            Ok(other) => bail!("unexpected answer from the daemon: {other:?}"),
            Err(ClientError::NotRunning { .. }) => Ok(None),
            Err(err) => {
                eprintln!("tmux-agent: {err}; reading tmux directly");
                Ok(None)
            }
        }
    }

    /// The groups as tmux options describe them, planned as the daemon
    /// would (no writes), with a note that no daemon keeps them.
    pub async fn read_directly(&self) -> anyhow::Result<Fetched> {
        let observation = self.direct.observe().await?;
        eprintln!(
            "tmux-agent: no daemon is running for `{}`: @agent-role, @agent-peers and shared context are shown as it will set them when it runs (start it: tmux-agent ensure)",
            self.direct.server()
        );
        Ok(Fetched {
            report: plan(&observation, &[]).report,
            daemon: false,
        })
    }
}

/// Text safe to print on a terminal: control characters escaped.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// `1 member`, `3 members`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `name ($id)`.
pub fn who(id: SessionId, name: &str) -> String {
    format!("{} ({id})", printable(name))
}

/// The lines describing a session's place in its group: role, coordinator,
/// peers and shared context.
pub fn session_lines(session: &SessionRef, group: Option<&GroupView>) -> Vec<String> {
    let me = who(session.id, &session.name);
    let Some(group) = group else {
        return vec![format!(
            "{me}: in no group (join one: tmux-agent join GROUP)"
        )];
    };
    let role = group
        .member(session.id)
        .map(|m| m.role)
        .unwrap_or(Role::Member);
    let mut lines = vec![match role {
        Role::Coordinator => format!(
            "{me}: coordinator of {} ({})",
            group.name,
            count(group.members.len(), "member")
        ),
        Role::Member => format!(
            "{me}: member of {}, coordinated by {} ({})",
            group.name,
            who(group.coordinator.id, &group.coordinator.name),
            count(group.members.len(), "member")
        ),
    }];
    let peers: Vec<String> = group
        .members
        .iter()
        .filter(|m| m.id != session.id)
        .map(|m| who(m.id, &m.name))
        .collect();
    lines.push(if peers.is_empty() {
        "  peers:  none yet".to_owned()
    } else {
        format!("  peers:  {}", peers.join(", "))
    });
    lines.extend(context_lines(group));
    lines
}

/// `  shared: KEY=VALUE`, one key a line.
pub fn context_lines(group: &GroupView) -> Vec<String> {
    if group.context.is_empty() {
        return vec!["  shared: nothing (tmux-agent share KEY=VALUE)".to_owned()];
    }
    group
        .context
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            let label = if i == 0 { "  shared: " } else { "          " };
            format!("{label}{}={}", printable(key), printable(value))
        })
        .collect()
}

/// A session's place in its group, for `--json`.
pub fn session_json(session: &SessionRef, group: Option<&GroupView>, daemon: bool) -> Value {
    let mut out = json!({ "session": session, "daemon": daemon });
    match group {
        None => out["group"] = Value::Null,
        Some(group) => {
            out["group"] = json!(group.name);
            out["role"] = json!(group.member(session.id).map(|m| m.role));
            out["coordinator"] = json!(group.coordinator);
            out["peers"] = json!(
                group
                    .members
                    .iter()
                    .filter(|m| m.id != session.id)
                    .collect::<Vec<_>>()
            );
            out["members"] = json!(group.members);
            out["context"] = json!(group.context);
        }
    }
    out
}

/// Prints a JSON value on one line.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
