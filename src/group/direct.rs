//! Group options read and written with one-shot `tmux` commands: what the
//! CLI uses to find its target session, to write the user-editable options
//! (`@agent-group`, and `@agent-ctx-*` when no daemon runs), and to show
//! groups when no daemon answers.
//!
//! Every command is a built [`Command`] run by [`OneShot`], which renders it
//! as an argv that tmux receives byte-exact (a trailing `;` in a value
//! included) and chains several into one invocation; tmux runs such a chain
//! without running any other client's commands in between.
//!
//! Sessions are always addressed by `$id` once resolved: names prefix-match.

use std::collections::BTreeMap;
use std::ffi::OsString;

use super::plan::{Observation, ObservedSession, SessionRef, Write};
use crate::control::SessionId;
use crate::control::command::{Command, CommandError, SessionTarget};
use crate::control::connection::DEFAULT_SESSION_NAME;
use crate::control::oneshot::{OneShot, OneShotError};
use crate::control::options::parse_options;
use crate::control::server::ServerSocket;
use crate::schema;

/// How often a read that met a session closing under it is retried.
const OBSERVE_ATTEMPTS: usize = 3;

/// Errors of one-shot tmux commands, worded for a person.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// No server, tmux refused, timed out, or could not be run.
    #[error(transparent)]
    Tmux(#[from] OneShotError),
    /// An argument tmux cannot carry (a NUL in a target or value).
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("no session {target:?} on `{server}` ({message})")]
    NoSession {
        target: String,
        server: ServerSocket,
        message: String,
    },
    #[error(
        "which session? this does not run inside tmux on `{server}` (no $TMUX_PANE or $TMUX of it): name one with -t SESSION"
    )]
    NoDefaultTarget { server: ServerSocket },
    #[error(
        "{name} ({id}) is tmux-agent's own session, which carries the daemon's control connection; pick one of yours"
    )]
    SidecarSession { id: SessionId, name: String },
    #[error("unexpected output from tmux {command}: {line:?}")]
    Output { command: String, line: String },
}

/// A tmux server reached through one-shot `tmux` commands.
#[derive(Debug, Clone)]
pub struct Direct {
    tmux: OneShot,
}

impl Direct {
    pub fn new(server: ServerSocket) -> Self {
        Self {
            tmux: OneShot::new(server),
        }
    }

    pub fn server(&self) -> &ServerSocket {
        self.tmux.server()
    }

    /// The runner behind it, for commands of the CLI's own (`new`, `show`).
    pub fn oneshot(&self) -> &OneShot {
        &self.tmux
    }

    /// Whether a server answers on the socket.
    pub async fn is_running(&self) -> bool {
        self.tmux.is_running().await.unwrap_or(false)
    }

    /// Resolves `-t TARGET` to its session, or with `None` the session of
    /// `$TMUX_PANE` when that pane is on this server. tmux-agent's own
    /// session is refused.
    ///
    /// An exact session name wins, looked up in a listing: tmux's own
    /// target syntax cannot reach every name it allows (`$3` is an id, a
    /// leading `=`, `%` or `@` means something else, `{last}` is a token,
    /// newer tmux keeps `:` and `.`, which split a target). Only when no
    /// session has exactly that name is `TARGET` handed to tmux as a target
    /// (`$3`, a name prefix, `=name`, a pane `%5`, `session:window`).
    pub async fn resolve_session(&self, target: Option<&str>) -> Result<SessionRef, DirectError> {
        let target = match target {
            Some(target) => {
                if let Some((id, name)) = self
                    .sessions()
                    .await?
                    .into_iter()
                    .find(|(_, name)| name == target)
                {
                    if name == DEFAULT_SESSION_NAME {
                        return Err(DirectError::SidecarSession { id, name });
                    }
                    return Ok(SessionRef { id, name });
                }
                target.to_owned()
            }
            None => self.pane_of_caller()?,
        };
        // `list-windows -t` takes a *session* target ($3, name, =name, a
        // pane id, session:window); `display-message -t` would take a pane
        // target, where a bare word is first tried as a window name in
        // whatever session tmux thinks is current.
        let listing = Command::list_windows(
            SessionTarget::Given(target.clone()),
            "#{session_id}\t#{session_name}",
        )?;
        let out = match self.tmux.run(&listing).await {
            Ok(out) => out,
            Err(OneShotError::Refused { message, .. }) => {
                return Err(DirectError::NoSession {
                    target,
                    server: self.server().clone(),
                    message,
                });
            }
            Err(err) => return Err(err.into()),
        };
        let text = String::from_utf8_lossy(&out);
        let line = text.lines().next().unwrap_or("");
        let (id, name) = line
            .split_once('\t')
            .and_then(|(id, name)| Some((id.parse::<SessionId>().ok()?, name.to_owned())))
            .ok_or_else(|| DirectError::Output {
                command: "list-windows".into(),
                line: line.to_owned(),
            })?;
        if name == DEFAULT_SESSION_NAME {
            return Err(DirectError::SidecarSession { id, name });
        }
        Ok(SessionRef { id, name })
    }

    /// The caller's own session, when the caller runs inside tmux on this
    /// server: `$TMUX_PANE` in a pane; else the session id that tmux puts
    /// last in `$TMUX` (`socket,pid,session`) for the jobs it starts
    /// (`run-shell`, `display-popup`, hooks), which have no `$TMUX_PANE`.
    fn pane_of_caller(&self) -> Result<String, DirectError> {
        let no_default = || DirectError::NoDefaultTarget {
            server: self.server().clone(),
        };
        let tmux = std::env::var("TMUX").ok().filter(|t| !t.is_empty());
        let ours = ServerSocket::choose_with_env(None, None, tmux.as_ref().map(OsString::from));
        if tmux.is_none() || !same_socket(&ours, self.server()) {
            return Err(no_default());
        }
        if let Some(pane) = std::env::var("TMUX_PANE").ok().filter(|p| !p.is_empty()) {
            return Ok(pane);
        }
        tmux.as_deref()
            .and_then(|t| t.rsplit(',').next())
            .and_then(|idx| idx.parse::<u32>().ok())
            .map(|idx| SessionId(idx).to_string())
            .ok_or_else(no_default)
    }

    /// Every user session's `@agent-*` options and the global `@agent-groups`,
    /// read in one invocation (retried if a session closes in between).
    pub async fn observe(&self) -> Result<Observation, DirectError> {
        let mut last_error = None;
        for _ in 0..OBSERVE_ATTEMPTS {
            match self.observe_once().await {
                Ok(observation) => return Ok(observation),
                // A session closed between the listing and the read.
                Err(err @ DirectError::Tmux(OneShotError::Refused { .. })) => {
                    last_error = Some(err)
                }
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or(DirectError::Output {
            command: "show-options".into(),
            line: String::new(),
        }))
    }

    /// Every session on the server (the sidecar's too): id and name. tmux
    /// escapes tabs and newlines in names (`\t`, `\n`), so one line is one
    /// session and the first tab ends the id.
    pub async fn sessions(&self) -> Result<Vec<(SessionId, String)>, DirectError> {
        let listing = self
            .tmux
            .run(&Command::list_sessions("#{session_id}\t#{session_name}")?)
            .await?;
        String::from_utf8_lossy(&listing)
            .lines()
            .map(|line| {
                line.split_once('\t')
                    .and_then(|(id, name)| Some((id.parse::<SessionId>().ok()?, name.to_owned())))
                    .ok_or_else(|| DirectError::Output {
                        command: "list-sessions".into(),
                        line: line.to_owned(),
                    })
            })
            .collect()
    }

    async fn observe_once(&self) -> Result<Observation, DirectError> {
        let names: BTreeMap<SessionId, String> = self
            .sessions()
            .await?
            .into_iter()
            .filter(|(_, name)| name != DEFAULT_SESSION_NAME)
            .collect();
        // `show-options -g` first, then per session a `$N` line (from
        // display-message) and its options. Option lines start with the
        // option's name, never with `$`, so the `$N` lines split the output.
        let mut commands = vec![Command::show_global_options()];
        for &id in names.keys() {
            commands.push(Command::display_message(id, "#{session_id}")?);
            commands.push(Command::show_options(id));
        }
        let out = self.tmux.run_all(&commands).await?;
        let mut global: Vec<&[u8]> = Vec::new();
        let mut blocks: Vec<(SessionId, Vec<&[u8]>)> = Vec::new();
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if line.first() == Some(&b'$') {
                let id = std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.parse::<SessionId>().ok())
                    .ok_or_else(|| DirectError::Output {
                        command: "display-message".into(),
                        line: String::from_utf8_lossy(line).into_owned(),
                    })?;
                blocks.push((id, Vec::new()));
            } else if let Some((_, lines)) = blocks.last_mut() {
                lines.push(line);
            } else {
                global.push(line);
            }
        }
        let parse = |lines: Vec<&[u8]>| {
            parse_options(lines, schema::PREFIX).map_err(|err| DirectError::Output {
                command: "show-options".into(),
                line: err.line,
            })
        };
        let groups_summary = parse(global)?.remove(schema::global::GROUPS);
        let mut sessions = Vec::with_capacity(blocks.len());
        for (id, lines) in blocks {
            let options = parse(lines)?;
            let name = names.get(&id).cloned().unwrap_or_default();
            sessions.push(ObservedSession { id, name, options });
        }
        Ok(Observation {
            sessions,
            groups_summary,
        })
    }

    /// The `@agent-*` options set on one session.
    pub async fn session_options(
        &self,
        session: SessionId,
    ) -> Result<BTreeMap<String, String>, DirectError> {
        let out = self.tmux.run(&Command::show_options(session)).await?;
        parse_options(
            out.split(|&b| b == b'\n').filter(|l| !l.is_empty()),
            schema::PREFIX,
        )
        .map_err(|err| DirectError::Output {
            command: "show-options".into(),
            line: err.line,
        })
    }

    /// A global `@agent-*` option, `None` when unset.
    pub async fn global_option(&self, name: &str) -> Result<Option<String>, DirectError> {
        let out = self.tmux.run(&Command::show_global_options()).await?;
        let mut options = parse_options(
            out.split(|&b| b == b'\n').filter(|l| !l.is_empty()),
            schema::PREFIX,
        )
        .map_err(|err| DirectError::Output {
            command: "show-options".into(),
            line: err.line,
        })?;
        Ok(options.remove(name))
    }

    /// Performs `writes` in one invocation. If one fails (its session closed),
    /// the ones after it are not run and the error is returned.
    pub async fn apply(&self, writes: &[Write]) -> Result<(), DirectError> {
        let commands = writes
            .iter()
            .map(Write::to_command)
            .collect::<Result<Vec<_>, _>>()?;
        self.tmux
            .run_all(&commands)
            .await
            .map(drop)
            .map_err(Into::into)
    }
}

/// Whether two ways of naming a server reach the same socket.
fn same_socket(a: &ServerSocket, b: &ServerSocket) -> bool {
    let canonical = |s: &ServerSocket| -> OsString {
        let path = s.socket_path();
        std::fs::canonicalize(&path)
            .unwrap_or(path)
            .into_os_string()
    };
    canonical(a) == canonical(b)
}
