//! The daemon's group reconciler: one task that reads every session's
//! `@agent-*` options over the control connection, plans with
//! [`super::plan`], and writes only the options that differ.
//!
//! # When it runs a pass
//!
//! - At start: the first pass rebuilds every group from what tmux holds. On a
//!   consistent server it writes nothing, so a daemon restart changes no
//!   option a user can see.
//! - Whenever the tracker publishes a snapshot. The tracker lists the server
//!   after every lifecycle notification and after every change of its 1 Hz
//!   subscription, whose format includes each session's `@agent-group`: so a
//!   plain `tmux set @agent-group g` is seen within about a second, and a
//!   closed session within milliseconds.
//! - On a request through a [`GroupHandle`] (`reconcile`, `share`), which is
//!   answered with the report of that very pass: a CLI command that wrote
//!   `@agent-group` sees the result at once.
//! - Every [`RESYNC`], to repair hand edits of options the subscription does
//!   not watch (`@agent-ctx-*`, a clobbered `@agent-role`). Such a pass only
//!   reads unless something differs.
//!
//! Each pass lists the sessions itself rather than trusting the snapshot, so
//! a session created a moment ago (and joined by the CLI) is already there.
//! Only this task writes derived options, so two passes never race.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::names::{ContextKey, GroupName};
use super::plan::{ContextEdit, GroupsReport, Observation, ObservedSession, Write, plan};
use crate::control::SessionId;
use crate::control::command::{Command, CommandError};
use crate::control::connection::{ControlError, ControlHandle};
use crate::control::options::parse_options;
use crate::schema;
use crate::state::Model;
use crate::supervise::{Restarts, supervise};

/// How often a pass runs when nothing asks for one.
pub const RESYNC: Duration = Duration::from_secs(5);

/// The `list-sessions` format of a pass: the id first, the (vis-escaped, so
/// tab- and newline-free) name last.
const LIST_FORMAT: &str = "#{session_id}\t#{session_name}";

/// Why a request to the reconciler failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The session does not exist (any more).
    #[error("session {0} does not exist")]
    NoSuchSession(SessionId),
    /// The session is in no group, so it has nobody to share with.
    #[error("session {name} ({id}) is not in a group: join one first (tmux-agent join GROUP)")]
    NotInGroup { id: SessionId, name: String },
    /// The reconciler has stopped (the daemon is shutting down).
    #[error("the group reconciler has stopped")]
    Stopped,
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

enum Request {
    Reconcile(oneshot::Sender<Result<GroupsReport, GroupError>>),
    Share {
        session: SessionId,
        key: ContextKey,
        value: Option<String>,
        reply: oneshot::Sender<Result<GroupsReport, GroupError>>,
    },
}

/// A cloneable way to ask the reconciler for a pass and to read its last
/// report.
#[derive(Debug, Clone)]
pub struct GroupHandle {
    requests: mpsc::Sender<Request>,
    reports: watch::Receiver<GroupsReport>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Reconcile(_) => f.write_str("Reconcile"),
            Request::Share { session, key, .. } => write!(f, "Share({session}, {key})"),
        }
    }
}

impl GroupHandle {
    /// Runs a pass now and returns its report.
    pub async fn reconcile(&self) -> Result<GroupsReport, GroupError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Reconcile(reply))
            .await
            .map_err(|_| GroupError::Stopped)?;
        answer.await.map_err(|_| GroupError::Stopped)?
    }

    /// Sets (or with `None` removes) `@agent-ctx-KEY` on every member of
    /// `session`'s group, in a pass of its own, and returns its report.
    pub async fn share(
        &self,
        session: SessionId,
        key: ContextKey,
        value: Option<String>,
    ) -> Result<GroupsReport, GroupError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Share {
                session,
                key,
                value,
                reply,
            })
            .await
            .map_err(|_| GroupError::Stopped)?;
        answer.await.map_err(|_| GroupError::Stopped)?
    }

    /// The report of the last pass, without waiting (for `status`).
    pub fn latest(&self) -> GroupsReport {
        self.reports.borrow().clone()
    }

    /// Reports as passes complete.
    pub fn reports(&self) -> watch::Receiver<GroupsReport> {
        self.reports.clone()
    }
}

/// Makes the reconciler panic once at its start, for the test that it is
/// restarted (`tests/it/groups.rs`); never set outside tests.
pub const FAULT_PANIC_ONCE_ENV: &str = "TMUX_AGENT_FAULT_RECONCILER_PANIC_ONCE";

/// The reconciler task's state. Everything in it outlives one run of the
/// task (the task is restarted after a panic, see [`crate::supervise`]):
/// the requests' receiver is shared behind a lock so that a new run takes
/// over the requests waiting for the one that panicked.
#[derive(Clone)]
pub struct Reconciler {
    control: ControlHandle,
    snapshots: watch::Receiver<Model>,
    requests: Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>,
    reports: watch::Sender<GroupsReport>,
    sidecar: SessionId,
}

impl Reconciler {
    /// Starts the reconciler on the daemon's control connection. `snapshots`
    /// is [`crate::state::Tracker::snapshots`]; the task ends when
    /// `shutdown` fires, when the tracker is gone, or when the connection
    /// closes. A run that panics is logged, counted in `restarts` and started
    /// again after a backoff.
    pub fn spawn(
        control: ControlHandle,
        snapshots: watch::Receiver<Model>,
        shutdown: CancellationToken,
        restarts: Restarts,
    ) -> (GroupHandle, JoinHandle<()>) {
        let (requests_tx, requests) = mpsc::channel(64);
        let (reports, reports_rx) = watch::channel(GroupsReport::default());
        let sidecar = snapshots.borrow().sidecar();
        let reconciler = Reconciler {
            control,
            snapshots,
            requests: Arc::new(tokio::sync::Mutex::new(requests)),
            reports,
            sidecar,
        };
        let stop = shutdown.clone();
        let task = tokio::spawn(supervise(
            "group reconciler".into(),
            restarts,
            shutdown,
            move || {
                let run = reconciler.clone().run(stop.clone());
                async move {
                    run.await;
                    Ok::<(), std::convert::Infallible>(())
                }
            },
        ));
        (
            GroupHandle {
                requests: requests_tx,
                reports: reports_rx,
            },
            task,
        )
    }

    async fn run(mut self, shutdown: CancellationToken) {
        // Held for the run; a panic releases it (a tokio lock is not
        // poisoned) for the next run.
        let requests = self.requests.clone();
        let mut requests = requests.lock().await;
        crate::supervise::fault_panic_once(FAULT_PANIC_ONCE_ENV, "the group reconciler");
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The interval's first tick is immediate: that is the start-up pass.
        loop {
            let outcome = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(request) = requests.recv() => self.serve(request).await,
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        break; // the tracker has ended
                    }
                    self.snapshots.borrow_and_update();
                    self.pass(&[]).await.map(drop)
                }
                _ = resync.tick() => self.pass(&[]).await.map(drop),
            };
            match outcome {
                Ok(()) => {}
                Err(GroupError::Control(ControlError::Closed)) => break,
                Err(err) => tracing::warn!(error = %err, "group reconciliation failed"),
            }
        }
        tracing::debug!("group reconciler stopped");
    }

    /// Answers one request. Only a broken connection is returned as an
    /// error; everything else goes to the requester.
    async fn serve(&mut self, request: Request) -> Result<(), GroupError> {
        let (reply, result) = match request {
            Request::Reconcile(reply) => (reply, self.pass(&[]).await),
            Request::Share {
                session,
                key,
                value,
                reply,
            } => (reply, self.share(session, key, value).await),
        };
        let closed = matches!(result, Err(GroupError::Control(ControlError::Closed)));
        let _ = reply.send(result);
        if closed {
            Err(GroupError::Control(ControlError::Closed))
        } else {
            Ok(())
        }
    }

    async fn share(
        &mut self,
        session: SessionId,
        key: ContextKey,
        value: Option<String>,
    ) -> Result<GroupsReport, GroupError> {
        let observation = self.observe().await?;
        let target = observation
            .session(session)
            .ok_or(GroupError::NoSuchSession(session))?;
        let group = target
            .options
            .get(schema::session::GROUP)
            .and_then(|g| GroupName::new(g).ok())
            .ok_or_else(|| GroupError::NotInGroup {
                id: session,
                name: target.name.clone(),
            })?;
        let edit = ContextEdit { group, key, value };
        self.apply(&observation, &[edit]).await
    }

    /// One full pass: read, plan, write what differs, publish the report.
    async fn pass(&mut self, edits: &[ContextEdit]) -> Result<GroupsReport, GroupError> {
        let observation = self.observe().await?;
        self.apply(&observation, edits).await
    }

    async fn apply(
        &mut self,
        observation: &Observation,
        edits: &[ContextEdit],
    ) -> Result<GroupsReport, GroupError> {
        let planned = plan(observation, edits);
        if !planned.writes.is_empty() {
            tracing::debug!(writes = planned.writes.len(), "writing group options");
        }
        let commands = planned
            .writes
            .iter()
            .map(Write::to_command)
            .collect::<Result<Vec<_>, _>>()?;
        let results = join_all(commands.into_iter().map(|c| self.control.run(c))).await;
        for (write, result) in planned.writes.iter().zip(results) {
            match result {
                Ok(_) => tracing::trace!(?write, "wrote"),
                // The session closed between the read and the write: the
                // next listing removes it from its group.
                Err(ControlError::Command { message, .. }) => {
                    tracing::debug!(?write, %message, "group option write refused")
                }
                Err(err) => return Err(err.into()),
            }
        }
        self.log_changes(&planned.report);
        self.reports.send_replace(planned.report.clone());
        Ok(planned.report)
    }

    /// Says in the log how membership changed since the last pass.
    fn log_changes(&self, report: &GroupsReport) {
        let before = self.reports.borrow();
        for group in &report.groups {
            let old = before.group(group.name.as_str());
            let members =
                |g: &super::GroupView| g.members.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
            if old.map(members) != Some(members(group)) {
                tracing::info!(
                    group = %group.name,
                    coordinator = %group.coordinator.name,
                    members = ?members(group),
                    "group membership"
                );
            }
        }
        for old in &before.groups {
            if report.group(old.name.as_str()).is_none() {
                tracing::info!(group = %old.name, "group is empty; gone");
            }
        }
        for ignored in &report.ignored {
            if !before.ignored.contains(ignored) {
                tracing::warn!(session = %ignored.name, group = %ignored.group, reason = %ignored.reason, "a session's group option was ignored");
            }
        }
    }

    /// Reads every user session's `@agent-*` options and the global summary.
    async fn observe(&self) -> Result<Observation, GroupError> {
        let listing = self
            .control
            .run(Command::list_sessions(LIST_FORMAT)?)
            .await?;
        let sessions: Vec<(SessionId, String)> = listing
            .lines
            .iter()
            .filter_map(|line| {
                let line = String::from_utf8_lossy(line);
                let (id, name) = line.split_once('\t')?;
                Some((id.parse().ok()?, name.to_owned()))
            })
            .filter(|(id, _)| *id != self.sidecar)
            .collect();
        let (replies, summary) = tokio::join!(
            join_all(
                sessions
                    .iter()
                    .map(|(id, _)| self.control.run(Command::show_options(*id)))
            ),
            self.control
                .run(Command::show_global_option(schema::global::GROUPS)?),
        );
        let mut observation = Observation {
            sessions: Vec::with_capacity(sessions.len()),
            groups_summary: match summary {
                Ok(reply) => Some(reply.text()),
                // Unset: tmux answers "invalid option".
                Err(ControlError::Command { .. }) => None,
                Err(err) => return Err(err.into()),
            },
        };
        for ((id, name), reply) in sessions.into_iter().zip(replies) {
            let reply = match reply {
                Ok(reply) => reply,
                // Closed since the listing.
                Err(ControlError::Command { .. }) => continue,
                Err(err) => return Err(err.into()),
            };
            if reply.dropped_lines > 0 {
                // An option value longer than the codec's line limit: we
                // cannot see this session's options whole, so leave it be.
                tracing::warn!(session = %id, "show-options reply incomplete; session skipped");
                continue;
            }
            match parse_options(reply.lines.iter().map(|l| l.as_ref()), schema::PREFIX) {
                Ok(options) => observation
                    .sessions
                    .push(ObservedSession { id, name, options }),
                Err(err) => {
                    tracing::warn!(session = %id, error = %err, "cannot read options; session skipped")
                }
            }
        }
        Ok(observation)
    }
}
