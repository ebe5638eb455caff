//! What the daemon runs beside the tracker for groups and for the CLI: the
//! group reconciler, the IPC server, SIGHUP, and the daemon's answers to
//! requests ([`DaemonHandler`], the daemon's implementation of
//! [`crate::ipc::Handler`]).
//!
//! The daemon calls [`start`] once the tracker is attached and
//! [`Services::stop`] when tracking has ended. The reactor's part of a
//! status report (MCP servers, pending and failed actions), the
//! configuration reload and a requested save come in through
//! [`DaemonHooks`], so this file needs no knowledge of them.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::control::SessionId;
use crate::control::command::Command;
use crate::control::server::ServerSocket;
use crate::group::{ContextKey, GroupHandle, GroupsReport, Reconciler};
use crate::ipc::{DaemonLock, Handler, IpcServer, SaveReport, StatusReport};
use crate::state::{Model, Tracker};

/// Adds the reactor's state to a status report. Must not wait on anything.
pub type StatusHook = Box<dyn Fn(&mut StatusReport) + Send + Sync>;
/// Re-reads the configuration; answers with a message for the requester.
pub type ReloadHook = Box<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// Saves a session's context now, waiting at most the given time for the
/// calls' outcome.
/// The MCP pool's live figures, as JSON. Must not wait on anything.
pub type McpStatsHook = Box<dyn Fn() -> serde_json::Value + Send + Sync>;
pub type SaveHook = Box<
    dyn Fn(SessionId, std::time::Duration) -> BoxFuture<'static, Result<SaveReport, String>>
        + Send
        + Sync,
>;

/// What the rest of the daemon plugs into its answers.
#[derive(Default)]
pub struct DaemonHooks {
    pub status: Option<StatusHook>,
    pub reload: Option<ReloadHook>,
    pub save: Option<SaveHook>,
    pub mcp_stats: Option<McpStatsHook>,
}

/// The daemon's answers to CLI requests.
pub struct DaemonHandler {
    started: DateTime<Utc>,
    started_at: Instant,
    server: ServerSocket,
    tmux_version: String,
    snapshots: watch::Receiver<Model>,
    groups: GroupHandle,
    shutdown: CancellationToken,
    hooks: DaemonHooks,
}

impl Handler for DaemonHandler {
    async fn mcp_stats(&self) -> serde_json::Value {
        match &self.hooks.mcp_stats {
            Some(hook) => hook(),
            None => serde_json::Value::Array(Vec::new()),
        }
    }

    async fn status(&self) -> StatusReport {
        let mut report = StatusReport {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            server: self.server.to_string(),
            tmux_version: self.tmux_version.clone(),
            started: self.started,
            uptime_secs: self.started_at.elapsed().as_secs(),
            sessions: self.snapshots.borrow().sessions().count(),
            groups: self.groups.latest(),
            mcp_servers: Vec::new(),
            actions: None,
        };
        if let Some(hook) = &self.hooks.status {
            hook(&mut report);
        }
        report
    }

    async fn stop(&self) {
        tracing::info!("stop requested over the socket");
        self.shutdown.cancel();
    }

    async fn reload(&self) -> Result<String, String> {
        let config = match &self.hooks.reload {
            Some(reload) => reload().await?,
            None => "no configuration to re-read".to_owned(),
        };
        let groups = self.groups.reconcile().await.map_err(|e| e.to_string())?;
        Ok(format!(
            "{config}; groups rebuilt from tmux ({} groups)",
            groups.groups.len()
        ))
    }

    async fn save(
        &self,
        session: SessionId,
        wait: std::time::Duration,
    ) -> Result<SaveReport, String> {
        match &self.hooks.save {
            Some(save) => save(session, wait).await,
            None => Err("this daemon does not save sessions".to_owned()),
        }
    }

    async fn reconcile(&self) -> Result<GroupsReport, String> {
        self.groups.reconcile().await.map_err(|e| e.to_string())
    }

    async fn share(
        &self,
        session: SessionId,
        key: ContextKey,
        value: Option<String>,
    ) -> Result<GroupsReport, String> {
        self.groups
            .share(session, key, value)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The running services; [`Services::stop`] ends them.
pub struct Services {
    pub handler: Arc<DaemonHandler>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Services {
    /// Ends the reconciler and the IPC server (removing the socket file) and
    /// waits for them. `shutdown` is the daemon's own token: by the time
    /// tracking has ended, nothing else needs it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts the group reconciler on the tracker's connection, the IPC server
/// on the socket of the endpoint whose lock the daemon holds, and SIGHUP
/// handling. `shutdown` is the daemon's token: `stop` requests cancel it.
pub async fn start(
    lock: &DaemonLock,
    server: ServerSocket,
    tracker: &Tracker,
    shutdown: CancellationToken,
    hooks: DaemonHooks,
) -> anyhow::Result<Services> {
    let control = tracker.control();
    let tmux_version = control
        .run(Command::display_message(
            tracker.model().sidecar(),
            "#{version}",
        )?)
        .await
        .map(|reply| reply.text())
        .unwrap_or_else(|_| "unknown".to_owned());
    let (groups, reconciling) = Reconciler::spawn(control, tracker.snapshots(), shutdown.clone());
    let handler = Arc::new(DaemonHandler {
        started: Utc::now(),
        started_at: Instant::now(),
        server,
        tmux_version,
        snapshots: tracker.snapshots(),
        groups,
        shutdown: shutdown.clone(),
        hooks,
    });
    let ipc = IpcServer::bind(lock).context("opening the daemon's socket")?;
    tracing::info!(socket = %ipc.path().display(), "listening for tmux-agent commands");
    let serving = tokio::spawn(ipc.serve(handler.clone(), shutdown.clone()));
    let hangups = tokio::spawn(reload_on_hangup(handler.clone(), shutdown.clone()));
    Ok(Services {
        handler,
        shutdown,
        tasks: vec![reconciling, serving, hangups],
    })
}

/// A token cancelled on SIGINT or SIGTERM. (SIGHUP means reload for the
/// daemon, as for most daemons; see [`start`].)
pub fn shutdown_on_int_term() -> CancellationToken {
    use tokio::signal::unix::SignalKind;
    super::shutdown_on(&[SignalKind::interrupt(), SignalKind::terminate()])
}

/// Answers each SIGHUP like a `reload` request, until shutdown.
async fn reload_on_hangup(handler: Arc<DaemonHandler>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("could not install the SIGHUP handler");
        return;
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        match handler.reload().await {
            Ok(message) => tracing::info!(%message, "reloaded on SIGHUP"),
            Err(message) => tracing::warn!(%message, "reload on SIGHUP failed"),
        }
    }
}
