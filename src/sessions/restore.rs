//! `tmux-agent restore`: sessions brought back from the daemon's snapshots
//! (or imported ones) after `kill-server`, a crash or a reboot.
//!
//! A snapshot becomes a [`SessionSpec`] ([`to_spec`]): its windows by
//! index, name and layout string, each pane's cwd, and each pane's command,
//! where an agent's pane gets the command that resumes its conversation
//! ([`super::resume`]; without a resume id it starts fresh, and the plan
//! says so). The specs are brought up by [`super::up::bring_up`], the one
//! creation path, all or nothing.
//!
//! What a file cannot carry, restore adds around it:
//!
//! - **The goal.** Before creating anything it leaves a note per session in
//!   the outbox (`restores`, see [`super::snapshot::PendingRestore`]): the
//!   daemon's reactor takes it when the session's creation reaches it and
//!   acts on a `session-restored` event instead of `session-created`,
//!   keeping the goal id the session had, which the builtin preset's
//!   `restore_goal` brings back to `active`.
//! - **Group order.** A group's members are created in the order of their
//!   `@agent-joined` stamps (the first as the coordinator, which `up`
//!   creates first), and each gets its old stamp back once made, so the
//!   reconciler keeps the order and the coordinator is the same.
//!
//! Which snapshots: by name, the latest snapshot of that name; `--all`,
//! the latest snapshot of each session of the newest generation (the last
//! tmux server snapshotted, or the last import) that was not seen closing.
//! A session whose name exists on the server is left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::Utc;
use serde::Serialize;

use super::file::{PaneCommand, PaneSpec, Role, SessionSpec, SessionsFile, WindowSpec};
use super::resume::{ResumeBook, Resumed};
use super::snapshot::{PendingRestore, SessionSnapshot, StoredSnapshot, Which};
use super::up::{UpError, UpOptions, UpReport, bring_up};
use crate::agent::outbox::{Outbox, OutboxError};
use crate::control::command::{Command, SessionTarget};
use crate::control::oneshot::{OneShot, OneShotError};
use crate::group::GroupName;
use crate::schema;
use crate::status::AgentKind;

/// What restore does with one pane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PanePlan {
    /// `window.pane`, by index.
    pub pane: String,
    pub cwd: String,
    /// What it will run; empty: the default shell.
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `resumed`, `fresh` or `plain` (no agent).
    pub start: &'static str,
    /// Why an agent starts fresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// What restore does with one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionPlan {
    pub session: String,
    pub snapshot_id: i64,
    /// The key the session had: its saved contexts are under it.
    pub session_key: String,
    pub taken_at: String,
    /// The session exists on the server: left alone.
    pub exists: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub windows: usize,
    pub panes: Vec<PanePlan>,
    #[serde(skip)]
    spec: SessionSpec,
    #[serde(skip)]
    joined: Option<String>,
}

/// Why a restore could not be done. Nothing was created unless it says so.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("no snapshot of a session named {0:?} (see `tmux-agent restore --list`)")]
    NoSnapshot(String),
    #[error(transparent)]
    Snapshots(#[from] super::snapshot::SnapshotError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Tmux(#[from] OneShotError),
    #[error("snapshot {id} of {session:?} cannot be restored: {reason}")]
    Unusable {
        id: i64,
        session: String,
        reason: String,
    },
    #[error(transparent)]
    Up(#[from] UpError),
}

/// The snapshots stored in `outbox` (none when there is no outbox).
pub fn stored(outbox: &Path, which: Which<'_>) -> Result<Vec<StoredSnapshot>, RestoreError> {
    match Outbox::open_read_only(outbox)? {
        Some(outbox) => Ok(outbox.snapshots(which)?),
        None => Ok(Vec::new()),
    }
}

/// A snapshot's generation: its server (`host:start-time`) or its import.
fn generation(key: &str) -> &str {
    key.rsplit_once(':').map_or(key, |(g, _)| g)
}

/// The snapshots to restore: the latest of each name asked for, or with
/// `all` those of the newest generation not seen closing. `latest` is
/// [`Which::Latest`]'s answer (newest first).
pub fn choose(
    latest: Vec<StoredSnapshot>,
    names: &[String],
    all: bool,
) -> Result<Vec<StoredSnapshot>, RestoreError> {
    if !all {
        let mut chosen = Vec::new();
        for name in names {
            let found = latest
                .iter()
                .find(|s| &s.snapshot.name == name)
                .ok_or_else(|| RestoreError::NoSnapshot(name.clone()))?;
            chosen.push(found.clone());
        }
        return Ok(chosen);
    }
    let newest = latest
        .iter()
        .max_by_key(|s| (s.taken_at, s.id))
        .map(|s| generation(&s.session_key).to_owned());
    let Some(newest) = newest else {
        return Ok(Vec::new());
    };
    let mut chosen: Vec<StoredSnapshot> = latest
        .into_iter()
        .filter(|s| generation(&s.session_key) == newest && s.closed_at.is_none())
        .collect();
    chosen.sort_by_key(|s| s.id);
    Ok(chosen)
}

/// The `$id` a session had on its server (`host:start:$7` → 7); imported
/// ones have none and come last, in snapshot order.
fn original_id(key: &str) -> u64 {
    key.rsplit_once(":$")
        .and_then(|(_, id)| id.parse().ok())
        .unwrap_or(u64::MAX)
}

/// The join stamp's sequence (`7:build` → 7).
fn stamp(joined: Option<&String>) -> u64 {
    joined
        .and_then(|j| j.split_once(':'))
        .and_then(|(seq, _)| seq.parse().ok())
        .unwrap_or(u64::MAX)
}

/// The plan for `snapshots`, each made a spec with its panes' commands;
/// `existing` are the names the server has.
pub fn plan(
    snapshots: &[StoredSnapshot],
    book: &ResumeBook,
    existing: &BTreeSet<String>,
) -> Result<Vec<SessionPlan>, RestoreError> {
    let mut plans = Vec::new();
    for stored in snapshots {
        let (spec, panes) =
            to_spec(&stored.snapshot, book).map_err(|reason| RestoreError::Unusable {
                id: stored.id,
                session: stored.snapshot.name.clone(),
                reason,
            })?;
        plans.push(SessionPlan {
            session: stored.snapshot.name.clone(),
            snapshot_id: stored.id,
            session_key: stored.session_key.clone(),
            taken_at: stored
                .taken_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            exists: existing.contains(&stored.snapshot.name),
            goal_id: stored.snapshot.goal_id().map(str::to_owned),
            group: spec.group.as_ref().map(ToString::to_string),
            windows: spec.windows.len(),
            panes,
            joined: stored
                .snapshot
                .options
                .get(schema::session::JOINED)
                .cloned(),
            spec,
        });
    }
    // Each group's members in join order, the first its coordinator.
    plans.sort_by_key(|p| (p.group.clone(), stamp(p.joined.as_ref())));
    let mut seen = BTreeSet::new();
    for p in &mut plans {
        if let Some(group) = &p.group {
            p.spec.role = Some(if seen.insert(group.clone()) {
                Role::Coordinator
            } else {
                Role::Member
            });
        }
    }
    // Then in the order the sessions were created on their server (their
    // `$id`), which `up` keeps but for moving a group's coordinator before
    // its other members: a fresh server then gives the panes the ids they
    // had, which `#{window_layout}` shows.
    plans.sort_by_key(|p| (original_id(&p.session_key), p.snapshot_id));
    Ok(plans)
}

/// A snapshot as a session spec, with what each pane will run.
pub fn to_spec(
    snapshot: &SessionSnapshot,
    book: &ResumeBook,
) -> Result<(SessionSpec, Vec<PanePlan>), String> {
    let option = |name: &str| {
        snapshot
            .options
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let group = match option(schema::session::GROUP) {
        Some(group) => Some(
            GroupName::new(&group)
                .map_err(|err| format!("its group {group:?} is not a group name: {err}"))?,
        ),
        None => None,
    };
    if snapshot.windows.is_empty() {
        return Err("it has no windows".into());
    }
    let mut panes = Vec::new();
    let mut windows = Vec::new();
    for window in &snapshot.windows {
        let mut specs = Vec::new();
        for pane in &window.panes {
            let resumed = book.command_for(
                &pane.command,
                pane.agent.as_deref(),
                pane.resume_id.as_deref(),
            );
            let words = resumed.words();
            let (start, why) = match &resumed {
                Resumed::Plain(_) => ("plain", None),
                Resumed::Resumed { .. } => ("resumed", None),
                Resumed::Fresh { why, .. } => ("fresh", Some(why.clone())),
            };
            panes.push(PanePlan {
                pane: format!("{}.{}", window.index, pane.index),
                cwd: pane.cwd.clone(),
                command: words.clone(),
                agent: pane.agent.clone(),
                start,
                why,
            });
            specs.push(PaneSpec {
                cwd: Some(pane.cwd.clone()).filter(|c| !c.is_empty()),
                command: PaneCommand::from_words(words),
                agent: pane.agent.clone().map(AgentKind::from),
                resume_id: pane.resume_id.clone(),
            });
        }
        windows.push(WindowSpec {
            name: Some(window.name.clone()).filter(|n| !n.is_empty()),
            index: Some(window.index),
            layout: Some(window.layout.clone()).filter(|l| !l.is_empty()),
            panes: specs,
        });
    }
    let spec = SessionSpec {
        name: snapshot.name.clone(),
        goal: option(schema::session::GOAL),
        agent_type: option(schema::session::TYPE),
        group,
        role: None,
        cwd: None,
        env: BTreeMap::new(),
        worktree: None,
        options: snapshot
            .options
            .iter()
            .filter(|(k, _)| k.starts_with(schema::session::CONTEXT_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        windows,
    };
    Ok((spec, panes))
}

/// The names of the sessions on the server, and whether it counts as empty
/// for `--if-empty`: no session but tmux-agent's own and at most one that
/// has one window of one pane (the one a `tmux` that just started the
/// server made, whose tmux.conf runs `restore --all --if-empty`).
pub async fn server_sessions(tmux: &OneShot) -> Result<(BTreeSet<String>, bool), RestoreError> {
    let names: BTreeSet<String> = super::up::existing_sessions(tmux)
        .await?
        .into_keys()
        .collect();
    let format = format!(
        "#{{session_windows}}\t#{{window_panes}}\t#{{==:#{{session_name}},{}}}",
        crate::control::connection::DEFAULT_SESSION_NAME
    );
    let listed = match tmux
        .run(&Command::list_sessions(&format).expect("a fixed format"))
        .await
    {
        Ok(out) => String::from_utf8_lossy(&out).into_owned(),
        Err(OneShotError::NoServer { .. }) => String::new(),
        Err(err) => return Err(err.into()),
    };
    let (mut busy, mut fresh) = (0, 0);
    for line in listed.lines() {
        match line.split('\t').collect::<Vec<_>>().as_slice() {
            [_, _, "1"] => {}
            ["1", "1", _] => fresh += 1,
            _ => busy += 1,
        }
    }
    Ok((names, busy == 0 && fresh <= 1))
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub up: UpReport,
    /// Options that could not be set again after creation, and why.
    pub warnings: Vec<String>,
}

/// Restores `plans` (those whose session does not exist): leaves the
/// notes in the outbox at `outbox`, brings the specs up, then sets the
/// goal ids and join stamps.
pub async fn restore(
    tmux: &OneShot,
    outbox: &Path,
    plans: &[SessionPlan],
) -> Result<Restored, RestoreError> {
    let todo: Vec<&SessionPlan> = plans.iter().filter(|p| !p.exists).collect();
    let file = SessionsFile {
        vars: BTreeMap::new(),
        sessions: todo.iter().map(|p| p.spec.clone()).collect(),
    };
    // Checked before any note is left: a spec tmux would refuse leaves
    // nothing behind.
    file.validate().map_err(UpError::Invalid)?;
    let notes: Vec<PendingRestore> = todo
        .iter()
        .map(|p| PendingRestore {
            session: p.session.clone(),
            snapshot_id: p.snapshot_id,
            goal_id: p.goal_id.clone(),
        })
        .collect();
    let outbox_path = outbox.to_owned();
    let now = Utc::now().timestamp_millis();
    tokio::task::spawn_blocking(move || {
        let mut outbox = Outbox::open(&outbox_path)?;
        outbox.expect_restores(&notes, now)
    })
    .await
    .expect("the note writer does not panic")?;
    let up = bring_up(tmux, &file, &UpOptions::default()).await?;
    let mut warnings = Vec::new();
    for made in &up.sessions {
        let Some(p) = todo.iter().find(|p| p.session == made.name) else {
            continue;
        };
        let target = SessionTarget::Id(made.session_id);
        let mut commands = Vec::new();
        for (name, value) in [
            (schema::session::GOAL_ID, p.goal_id.as_ref()),
            (schema::session::JOINED, p.joined.as_ref()),
        ] {
            if let Some(value) = value {
                match Command::set_option(target.clone(), name, value) {
                    Ok(command) => commands.push(command),
                    Err(err) => warnings.push(format!("{}: {name}: {err}", p.session)),
                }
            }
        }
        if !commands.is_empty()
            && let Err(err) = tmux.run_all(&commands).await
        {
            warnings.push(format!(
                "{}: the goal id and join stamp were not set again: {err}",
                p.session
            ));
        }
    }
    Ok(Restored { up, warnings })
}
