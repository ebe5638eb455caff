//! What the coordination commands (`join`, `leave`, `share`, `peers`,
//! `groups`, `new`) share: the `-t` flag, reaching groups (through
//! [`crate::group::access`]: the daemon or, when none answers, tmux
//! directly), and printing them.
//!
//! With a daemon, a command asks it for a pass after writing, so what it
//! prints is what tmux now holds. Without one, the options a command writes
//! are still the truth; the derived ones (`@agent-role`, `@agent-peers`, ...)
//! wait for the daemon, and the command says so on stderr while it shows
//! the groups as the daemon will make them.

use clap::Args;
use serde_json::{Value, json};

use super::GlobalArgs;
use crate::group::access::GroupAccess;
pub use crate::group::access::{Fetched, printable, who};
use crate::group::{GroupView, Role, SessionRef};

/// `-t TARGET`, shared by the commands that act on one session.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The session to act on: its exact name (any name tmux allows), else
    /// any tmux target ($3, a name prefix, =name, a pane %5). Default: the
    /// session of the pane this runs in ($TMUX_PANE).
    #[arg(
        short = 't',
        value_name = "TARGET",
        // A session may be called `-dash`: after -t, it is the name.
        allow_hyphen_values = true,
        add = clap_complete::engine::ArgValueCandidates::new(super::shell::session_candidates)
    )]
    pub target: Option<String>,
}

/// The ways to the groups of one tmux server, for a command: the library's
/// [`GroupAccess`] (reached through `Deref`), plus the `-t` flag and the
/// notes on stderr.
pub struct Groups {
    access: GroupAccess,
}

impl std::ops::Deref for Groups {
    type Target = GroupAccess;

    fn deref(&self) -> &GroupAccess {
        &self.access
    }
}

impl Groups {
    pub fn new(global: &GlobalArgs) -> Self {
        Self {
            access: GroupAccess::new(global.server()),
        }
    }

    /// Resolves `-t` to a session, with errors for a person.
    pub async fn target(&self, args: &TargetArgs) -> anyhow::Result<SessionRef> {
        Ok(self
            .access
            .direct
            .resolve_session(args.target.as_deref())
            .await?)
    }

    /// The groups after a daemon pass, or as read from tmux when no daemon
    /// answers (with a note on stderr).
    pub async fn reconciled(&self) -> anyhow::Result<Fetched> {
        let fetched = self.access.reconciled().await?;
        print_notes(&fetched);
        Ok(fetched)
    }
}

/// Says on stderr how the groups were read when the daemon did not answer.
pub fn print_notes(fetched: &Fetched) {
    for note in &fetched.notes {
        eprintln!("tmux-agent: {note}");
    }
}

/// `1 member`, `3 members`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
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
    crate::outln!("{}", serde_json::to_string(value)?);
    Ok(())
}
