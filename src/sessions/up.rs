//! `up`: the sessions of a [`SessionsFile`] created on a tmux server, each
//! with its agent options already set, so the daemon's `session-created`
//! event sees them.
//!
//! Each session is made by commands that tmux runs in *one* invocation
//! ([`plan`]; several sessions share one, see [`bring_up`]), without other
//! clients' commands in between, the way `tmux-agent new`
//! does (see `cli/new.rs`): `new-session` under a unique temporary name,
//! its options set on `=TEMP`, its windows and panes made and laid out,
//! and the rename to its real name last. So no one ever sees a session of
//! that name without its options, windows or panes.
//!
//! - Idempotent: a session whose name exists is left alone, or, with
//!   `reconcile`, has its agent options set to the file's (its windows and
//!   panes are never touched: they may hold work).
//! - All or nothing: when one session fails, the sessions (and worktrees)
//!   made before it in this run are removed again, and the error says what
//!   was undone and what could not be. Options already reconciled are not
//!   set back.
//!
//! This is also how `restore` brings a snapshot up: a snapshot is a
//! [`SessionsFile`] whose panes carry their resume commands.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::file::{FileError, Role, SessionSpec, SessionsFile};
use super::layout;
use super::worktree::{self, Made};
use crate::control::SessionId;
use crate::control::command::{Command, CommandError, SessionTarget, Spawn, WindowPart};
use crate::control::oneshot::{OneShot, OneShotError};
use crate::control::options::{decode_listed, listed_option};
use crate::schema;

/// How `up` treats sessions that exist already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpOptions {
    /// Set the agent options of existing sessions to the file's (else they
    /// are left alone).
    pub reconcile: bool,
}

/// What `up` did, session by session, in the order it did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpReport {
    pub sessions: Vec<UpSession>,
}

/// What `up` did with one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpSession {
    pub name: String,
    pub session_id: SessionId,
    pub outcome: Outcome,
    /// The worktree made for it, if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
}

/// What happened to a session of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// It did not exist and was made.
    Created,
    /// It existed and was left alone.
    Existing,
    /// It existed and its agent options were set to the file's.
    Reconciled,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Existing => "exists, left alone",
            Outcome::Reconciled => "exists, options reconciled",
        })
    }
}

/// What a failed `up` undid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Undone {
    /// Sessions closed again (the failed one's half-made session too).
    pub sessions: Vec<String>,
    /// Worktrees removed again.
    pub worktrees: Vec<String>,
    /// What could not be undone, and why.
    pub failed: Vec<String>,
}

impl fmt::Display for Undone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sessions.is_empty() && self.worktrees.is_empty() && self.failed.is_empty() {
            return f.write_str("nothing had been created, nothing was changed");
        }
        let mut parts = Vec::new();
        if !self.sessions.is_empty() {
            parts.push(format!(
                "closed the session(s) it had made: {}",
                self.sessions.join(", ")
            ));
        }
        if !self.worktrees.is_empty() {
            parts.push(format!(
                "removed the worktree(s) it had made: {}",
                self.worktrees.join(", ")
            ));
        }
        if !self.failed.is_empty() {
            parts.push(format!(
                "COULD NOT UNDO (clean up by hand): {}",
                self.failed.join("; ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Why `up` stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The file did not pass its checks; nothing was done.
    #[error("{0}")]
    Invalid(#[from] FileError),
    /// The server could not be asked which sessions exist; nothing was done.
    #[error("reading the server's sessions: {0}")]
    Server(#[source] OneShotError),
    /// Making one session failed; what had been made was undone.
    #[error("session {session:?}: {cause}; {undone}")]
    Failed {
        session: String,
        cause: String,
        undone: Undone,
    },
}

/// How many bytes of arguments one tmux invocation may carry: the client
/// sends them in one message of at most 16 KiB (tmux's `MAX_IMSGSIZE`,
/// "command too long" past it), and the rest of the message needs room.
const BATCH_BYTES: usize = 12 * 1024;

/// At most this many sessions go in one invocation, so that one tmux
/// command queue item does not hold the server for long.
const BATCH_SESSIONS: usize = 32;

/// A session of the file that does not exist yet, planned.
struct Pending<'a> {
    spec: &'a SessionSpec,
    temp: String,
    commands: Vec<Command>,
    worktree: Option<String>,
}

/// Brings up every session of `file` on the server `tmux` talks to.
///
/// Sessions to create go to tmux in batches: one invocation holds the
/// commands of several whole sessions (as many as fit in a tmux message),
/// since starting a tmux client per session cost more than the sessions.
/// Each session's commands stay together and end with its rename, so the
/// rule holds per session: nobody sees one half made.
pub async fn bring_up(
    tmux: &OneShot,
    file: &SessionsFile,
    options: &UpOptions,
) -> Result<UpReport, UpError> {
    file.validate()?;
    let existing = existing_sessions(tmux).await.map_err(UpError::Server)?;
    let base_index = base_index(tmux).await.map_err(UpError::Server)?;
    let mut report = UpReport {
        sessions: Vec::new(),
    };
    let mut made: Vec<(String, SessionId)> = Vec::new();
    let mut worktrees: Vec<Made> = Vec::new();
    let mut batch: Vec<Pending<'_>> = Vec::new();
    let mut batch_bytes = 0;
    let order = creation_order(file);
    for (n, spec) in order.iter().copied().enumerate() {
        if let Some(&id) = existing.get(&spec.name) {
            let outcome = if options.reconcile {
                if let Err(cause) = reconcile(tmux, id, spec).await {
                    // The sessions planned but not sent yet were never made.
                    let failure = BatchFailure {
                        session: spec.name.clone(),
                        cause: format!("reconciling its options: {cause}"),
                        half_made: None,
                    };
                    return Err(fail(tmux, failure, &made, &worktrees).await);
                }
                Outcome::Reconciled
            } else {
                Outcome::Existing
            };
            report.sessions.push(UpSession {
                name: spec.name.clone(),
                session_id: id,
                outcome,
                worktree: None,
            });
            continue;
        }

        let mut worktree_path = None;
        if let (Some(spec_worktree), Some(repo)) = (&spec.worktree, &spec.cwd) {
            match worktree::ensure(repo, spec_worktree).await {
                Ok(Some(new)) => {
                    worktree_path = Some(new.path.clone());
                    worktrees.push(new);
                }
                Ok(None) => {}
                Err(err) => {
                    // The sessions planned but not sent yet were never made.
                    let failure = BatchFailure {
                        session: spec.name.clone(),
                        cause: err.to_string(),
                        half_made: None,
                    };
                    return Err(fail(tmux, failure, &made, &worktrees).await);
                }
            }
        }

        let temp = temporary_name(n);
        let commands = match plan(spec, &temp, base_index) {
            Ok(commands) => commands,
            Err(err) => {
                // The sessions planned but not sent yet were never made.
                let failure = BatchFailure {
                    session: spec.name.clone(),
                    cause: err.to_string(),
                    half_made: None,
                };
                return Err(fail(tmux, failure, &made, &worktrees).await);
            }
        };
        let bytes: usize = Command::chain_argv(&commands)
            .iter()
            .map(|a| a.len() + 1)
            .sum();
        if !batch.is_empty() && (batch_bytes + bytes > BATCH_BYTES || batch.len() >= BATCH_SESSIONS)
        {
            let pending = std::mem::take(&mut batch);
            batch_bytes = 0;
            if let Err(err) = run_batch(tmux, pending, &mut made, &mut report).await {
                return Err(fail(tmux, err, &made, &worktrees).await);
            }
        }
        batch_bytes += bytes;
        batch.push(Pending {
            spec,
            temp,
            commands,
            worktree: worktree_path,
        });
    }
    if let Err(err) = run_batch(tmux, batch, &mut made, &mut report).await {
        return Err(fail(tmux, err, &made, &worktrees).await);
    }
    Ok(report)
}

/// How a batch failed: the session that did not come up, why, and the
/// temporary name of its half-made session if one is left.
struct BatchFailure {
    session: String,
    cause: String,
    half_made: Option<String>,
}

/// Runs one batch: every session's commands in one invocation. On success
/// each session is in `made` and `report` (tmux prints one id per
/// `new-session`, in order). On failure tmux has stopped at the failing
/// command: the sessions before it are made (and are added to `made`, for
/// the undo), the failing one may be left under its temporary name, the
/// ones after it were never started. Which is which is read back from tmux.
async fn run_batch(
    tmux: &OneShot,
    batch: Vec<Pending<'_>>,
    made: &mut Vec<(String, SessionId)>,
    report: &mut UpReport,
) -> Result<(), BatchFailure> {
    if batch.is_empty() {
        return Ok(());
    }
    let commands: Vec<Command> = batch.iter().flat_map(|p| p.commands.clone()).collect();
    let cause = match tmux.run_all(&commands).await {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out);
            let ids: Vec<SessionId> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if ids.len() == batch.len() {
                for (pending, id) in batch.into_iter().zip(ids) {
                    made.push((pending.spec.name.clone(), id));
                    report.sessions.push(UpSession {
                        name: pending.spec.name.clone(),
                        session_id: id,
                        outcome: Outcome::Created,
                        worktree: pending.worktree,
                    });
                }
                return Ok(());
            }
            format!(
                "tmux printed {} session id(s) for {} new session(s): {text:?}",
                ids.len(),
                batch.len()
            )
        }
        Err(err) => err.to_string(),
    };
    // What came up before tmux stopped: every session before the failing
    // one was renamed to its real name (a name that did not exist when
    // `up` looked, and tmux refuses a second session of a name); the
    // failing one is the first left under its temporary name, or, if its
    // `new-session` itself failed, the first without its real name.
    let now = existing_sessions(tmux).await.unwrap_or_default();
    let failing = batch
        .iter()
        .position(|p| now.contains_key(&p.temp) || !now.contains_key(&p.spec.name))
        .unwrap_or(batch.len().saturating_sub(1));
    for pending in &batch[..failing] {
        if let Some(&id) = now.get(&pending.spec.name) {
            made.push((pending.spec.name.clone(), id));
        }
    }
    let failed = &batch[failing];
    Err(BatchFailure {
        session: failed.spec.name.clone(),
        cause,
        half_made: now.contains_key(&failed.temp).then(|| failed.temp.clone()),
    })
}

/// The error of a failure (a batch's, or a session's before its batch),
/// after undoing everything made.
async fn fail(
    tmux: &OneShot,
    failure: BatchFailure,
    made: &[(String, SessionId)],
    worktrees: &[Made],
) -> UpError {
    let undone = undo(tmux, made, worktrees, failure.half_made.as_deref()).await;
    UpError::Failed {
        session: failure.session,
        cause: failure.cause,
        undone,
    }
}

/// Sets an existing session's agent options to the file's.
async fn reconcile(tmux: &OneShot, id: SessionId, spec: &SessionSpec) -> Result<(), String> {
    let commands = option_commands(&SessionTarget::Id(id), spec).map_err(|e| e.to_string())?;
    tmux.run_all(&commands).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The order sessions are made in: the file's, except that a group's
/// `coordinator` comes before the group's other members (the daemon gives
/// roles by join order).
pub fn creation_order(file: &SessionsFile) -> Vec<&SessionSpec> {
    let mut order: Vec<&SessionSpec> = Vec::with_capacity(file.sessions.len());
    let mut done = vec![false; file.sessions.len()];
    for (i, spec) in file.sessions.iter().enumerate() {
        if done[i] {
            continue;
        }
        if let Some(group) = &spec.group
            && spec.role != Some(Role::Coordinator)
            && let Some(j) = file.sessions.iter().enumerate().position(|(j, other)| {
                !done[j]
                    && other.group.as_ref() == Some(group)
                    && other.role == Some(Role::Coordinator)
            })
        {
            done[j] = true;
            order.push(&file.sessions[j]);
        }
        done[i] = true;
        order.push(spec);
    }
    order
}

/// The one invocation that makes `spec` under the name `temp` and renames
/// it last. `base_index` is the server's `base-index` (where tmux puts a
/// new session's first window).
pub fn plan(spec: &SessionSpec, temp: &str, base_index: u32) -> Result<Vec<Command>, CommandError> {
    let session = SessionTarget::Exact(temp.to_owned());
    let windows = spec.windows_or_default();
    let start = spec.start_directory().map(str::to_owned);
    let environment: Vec<(String, String)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Every window starts as big as the largest layout, so that splitting
    // it into the layout's panes has room; `select-layout` then gives each
    // window its own size.
    let size = windows
        .iter()
        .filter_map(|w| w.layout.as_deref().and_then(|l| layout::check(l).ok()))
        .fold(None, |size: Option<(u32, u32)>, l| {
            let (w, h) = size.unwrap_or((0, 0));
            Some((w.max(l.width), h.max(l.height)))
        });
    let mut commands = Vec::new();
    let mut first_index = base_index;
    for (w, window) in windows.iter().enumerate() {
        let panes = window.panes_or_default();
        let spawn_of = |p: usize, env: Vec<(String, String)>| Spawn {
            directory: panes[p].cwd.clone().or_else(|| start.clone()),
            environment: env,
            command: panes[p]
                .command
                .as_ref()
                .map(|c| c.words())
                .unwrap_or_default(),
        };
        if w == 0 {
            commands.push(Command::new_session(
                temp,
                window.name.as_deref(),
                size,
                &spawn_of(0, environment.clone()),
            )?);
            commands.extend(option_commands(&session, spec)?);
            if let Some(index) = window.index
                && index != base_index
            {
                commands.push(Command::move_window(&session, WindowPart::Current, index)?);
                first_index = index;
            }
        } else {
            commands.push(Command::new_window(
                &session,
                window.index,
                window.name.as_deref(),
                &spawn_of(0, Vec::new()),
            )?);
        }
        for p in 1..panes.len() {
            commands.push(Command::split_window(
                &session,
                WindowPart::Current,
                &spawn_of(p, Vec::new()),
            )?);
        }
        if let Some(layout) = &window.layout {
            commands.push(Command::select_layout(
                &session,
                WindowPart::Current,
                layout,
            )?);
        }
    }
    if windows.len() > 1 {
        commands.push(Command::select_window(
            &session,
            WindowPart::Index(first_index),
        )?);
    }
    commands.push(Command::rename_session(session, &spec.name)?);
    Ok(commands)
}

/// `set-option` for each agent option the file gives the session.
fn option_commands(
    session: &SessionTarget,
    spec: &SessionSpec,
) -> Result<Vec<Command>, CommandError> {
    let mut commands = Vec::new();
    let fixed = [
        (schema::session::GOAL, spec.goal.clone()),
        (schema::session::TYPE, spec.agent_type.clone()),
        (
            schema::session::GROUP,
            spec.group.as_ref().map(ToString::to_string),
        ),
    ];
    for (name, value) in fixed {
        if let Some(value) = value {
            commands.push(Command::set_option(session.clone(), name, &value)?);
        }
    }
    for (name, value) in &spec.options {
        commands.push(Command::set_option(session.clone(), name, value)?);
    }
    Ok(commands)
}

/// A session name no one else uses, of plain characters only.
fn temporary_name(n: usize) -> String {
    format!(
        "tmux-agent-up-{}-{n}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

/// The sessions on the server, by name. No server: none.
pub async fn existing_sessions(
    tmux: &OneShot,
) -> Result<BTreeMap<String, SessionId>, OneShotError> {
    let format = format!("#{{session_id}}\t{}", listed_option("session_name"));
    let list = Command::list_sessions(&format).expect("a constant format has no NUL");
    let out = match tmux.run(&list).await {
        Ok(out) => out,
        Err(OneShotError::NoServer { .. }) => return Ok(BTreeMap::new()),
        Err(err) => return Err(err),
    };
    Ok(out
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let tab = line.iter().position(|&b| b == b'\t')?;
            let id = std::str::from_utf8(&line[..tab]).ok()?.parse().ok()?;
            Some((decode_listed(&line[tab + 1..]), id))
        })
        .collect())
}

/// The server's `base-index` (0 when no server runs yet: `new-session`
/// starts one with tmux's defaults and the user's tmux.conf, which this
/// cannot know; a frozen file names its windows' indexes anyway).
async fn base_index(tmux: &OneShot) -> Result<u32, OneShotError> {
    let show = Command::show_global_option("base-index").expect("a constant has no NUL");
    match tmux.run(&show).await {
        Ok(out) => Ok(String::from_utf8_lossy(&out).trim().parse().unwrap_or(0)),
        Err(OneShotError::NoServer { .. }) => Ok(0),
        Err(err) => Err(err),
    }
}

/// Closes the sessions this run made (and the half-made `temp`), removes
/// the worktrees it made, and says what it did.
async fn undo(
    tmux: &OneShot,
    made: &[(String, SessionId)],
    worktrees: &[Made],
    temp: Option<&str>,
) -> Undone {
    let mut undone = Undone::default();
    if let Some(temp) = temp
        && let Ok(kill) = Command::kill_session_named(temp)
        && tmux.run(&kill).await.is_ok()
    {
        undone
            .sessions
            .push(format!("its half-made session {temp}"));
    }
    for (name, id) in made.iter().rev() {
        match tmux.run(&Command::kill_session(*id)).await {
            Ok(_) => undone.sessions.push(name.clone()),
            Err(err) => undone.failed.push(format!("session {name} ({id}): {err}")),
        }
    }
    for worktree in worktrees.iter().rev() {
        match worktree::remove(worktree).await {
            Ok(()) => undone.worktrees.push(worktree.path.clone()),
            Err(err) => undone.failed.push(err.to_string()),
        }
    }
    undone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupName;
    use crate::sessions::file::{PaneCommand, PaneSpec, WindowSpec};

    #[test]
    fn a_plan_creates_renames_last_and_sets_options_first() {
        let spec = SessionSpec {
            name: "api #(x)".into(),
            goal: Some("ship it".into()),
            cwd: Some("/srv".into()),
            env: [("K".to_owned(), "v".to_owned())].into(),
            windows: vec![
                WindowSpec {
                    name: Some("edit".into()),
                    index: Some(1),
                    layout: Some("c08a,100x30,0,0[100x15,0,0,0,100x14,0,16,1]".into()),
                    panes: vec![
                        PaneSpec {
                            command: Some(PaneCommand::Shell("vim".into())),
                            ..PaneSpec::default()
                        },
                        PaneSpec {
                            cwd: Some("/tmp".into()),
                            ..PaneSpec::default()
                        },
                    ],
                },
                WindowSpec::default(),
            ],
            ..SessionSpec::default()
        };
        let lines: Vec<String> = plan(&spec, "tmp", 0)
            .unwrap()
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        assert_eq!(
            lines,
            [
                "new-session -d -P -F '#{session_id}' -s tmp -n edit -x 100 -y 30 -c /srv -e K=v -- vim",
                "set-option -t =tmp: -- @agent-goal 'ship it'",
                "move-window -s =tmp: -t =tmp:1",
                "split-window -t =tmp: -c /tmp",
                "select-layout -t =tmp: 'c08a,100x30,0,0[100x15,0,0,0,100x14,0,16,1]'",
                "new-window -t =tmp: -c /srv",
                "select-window -t =tmp:1",
                "rename-session -t =tmp -- 'api ##(x)'",
            ]
        );
    }

    #[test]
    fn a_coordinator_is_made_before_its_group() {
        let group = GroupName::new("g").ok();
        let session = |name: &str, role| SessionSpec {
            name: name.into(),
            group: group.clone(),
            role,
            ..SessionSpec::default()
        };
        let file = SessionsFile {
            vars: BTreeMap::new(),
            sessions: vec![
                SessionSpec {
                    name: "solo".into(),
                    ..SessionSpec::default()
                },
                session("m1", Some(Role::Member)),
                session("m2", None),
                session("c", Some(Role::Coordinator)),
            ],
        };
        let names: Vec<&str> = creation_order(&file)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["solo", "c", "m1", "m2"]);
    }
}
