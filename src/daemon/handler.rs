//! The daemon's answers to CLI requests: its implementation of
//! [`crate::ipc::Handler`].
//!
//! The handler holds what it answers from directly: the tracker's model
//! snapshots, the group reconciler's handle, the MCP pool, the outbox, the
//! reactor's command channel and what a reload changes. `status` and
//! `mcp-stats` answer from what is already known; the outbox lock is held
//! only for single statements (by the reactor too), so a status request
//! never waits for an MCP server.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::reload::Reload;
use super::{HandlerError, save};
use crate::agent::outbox::SharedOutbox;
use crate::agent::reactor::ReactorCommand;
use crate::control::SessionId;
use crate::control::server::ServerSocket;
use crate::group::{ContextKey, GroupHandle, GroupsReport};
use crate::ipc::{ActionsStatus, Handler, McpServerStatus, SaveReport, StatusReport};
use crate::mcp::McpPool;
use crate::messages::{Message, MessageId, MessagesError, SendRequest};
use crate::state::Model;
use crate::status::{KeeperHandle, Observation};

/// How many recent failures a status report lists.
const RECENT_FAILURES: usize = 5;

/// What the daemon answers requests from.
pub(super) struct DaemonHandler {
    pub(super) started: DateTime<Utc>,
    pub(super) started_at: Instant,
    pub(super) server: ServerSocket,
    /// `#{version}`, read once at start.
    pub(super) tmux_version: String,
    pub(super) snapshots: watch::Receiver<Model>,
    pub(super) groups: GroupHandle,
    pub(super) pool: McpPool,
    pub(super) outbox: SharedOutbox,
    pub(super) reactor: mpsc::Sender<ReactorCommand>,
    pub(super) reload: Reload,
    /// Cancelled by a `stop` request: the daemon's own shutdown token.
    pub(super) stopping: CancellationToken,
    /// The supervised tasks' restarts (see [`crate::supervise`]).
    pub(super) restarts: crate::supervise::Restarts,
    /// What the reactor publishes, for followers (`watch`).
    pub(super) events: crate::events::EventStream,
    /// The agents in panes (`crate::status`).
    pub(super) agents: KeeperHandle,
    /// Messages between agents (`crate::messages`).
    pub(super) messages: crate::messages::Messages,
}

impl DaemonHandler {
    /// The MCP servers, as the pool knows them.
    fn mcp_servers(&self) -> Vec<McpServerStatus> {
        self.pool
            .servers()
            .into_iter()
            .map(|s| McpServerStatus {
                name: s.name,
                state: s.state.to_owned(),
                detail: s.detail,
            })
            .collect()
    }

    /// The outbox's part of a status report; `None` when it cannot be read
    /// (the report then still says everything else).
    async fn actions(&self, servers: &[McpServerStatus]) -> Option<ActionsStatus> {
        // Indexed counts of open and failed actions only: the history of
        // delivered ones is never read under the dispatchers' lock.
        let names: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
        self.outbox
            .run(move |outbox| {
                Some(ActionsStatus {
                    pending: outbox.open_count().ok()?,
                    failed: outbox.failed_count().ok()?,
                    recent_failures: outbox.recent_failures(RECENT_FAILURES).unwrap_or_default(),
                    in_memory: outbox.degraded().map(str::to_owned),
                    unconfigured: outbox
                        .open_by_server()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(server, _)| !names.contains(server))
                        .collect(),
                })
            })
            .await
    }
}

impl Handler for DaemonHandler {
    type Error = HandlerError;

    async fn status(&self) -> StatusReport {
        let mcp_servers = self.mcp_servers();
        let actions = self.actions(&mcp_servers).await;
        StatusReport {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            server: self.server.to_string(),
            tmux_version: self.tmux_version.clone(),
            started: self.started,
            uptime_secs: self.started_at.elapsed().as_secs(),
            sessions: self.snapshots.borrow().sessions().count(),
            sessions_missed: self.snapshots.borrow().missed(),
            tasks_restarted: self.restarts.load(std::sync::atomic::Ordering::Relaxed),
            groups: self.groups.latest(),
            mcp_servers,
            actions,
            agents: self.agents.board().panes().cloned().collect(),
        }
    }

    async fn stop(&self) {
        tracing::info!("stop requested over the socket");
        self.stopping.cancel();
    }

    async fn reload(&self) -> Result<String, HandlerError> {
        let config = self.reload.apply().await?;
        let groups = self.groups.reconcile().await?;
        Ok(format!(
            "{config}; groups rebuilt from tmux ({} groups)",
            groups.groups.len()
        ))
    }

    async fn reconcile(&self) -> Result<GroupsReport, HandlerError> {
        Ok(self.groups.reconcile().await?)
    }

    async fn share(
        &self,
        session: SessionId,
        key: ContextKey,
        value: Option<String>,
    ) -> Result<GroupsReport, HandlerError> {
        Ok(self.groups.share(session, key, value).await?)
    }

    async fn save(&self, session: SessionId, wait: Duration) -> Result<SaveReport, HandlerError> {
        save::save(&self.reactor, &self.outbox, session, wait).await
    }

    async fn mcp_stats(&self) -> serde_json::Value {
        serde_json::to_value(self.pool.stats()).unwrap_or_default()
    }

    fn events(&self, since: Option<DateTime<Utc>>) -> crate::events::Subscription {
        self.events.subscribe(since)
    }

    async fn agent_status(&self, observation: Observation, in_turn: bool) -> bool {
        let pane = observation.pane;
        let accepted = self.agents.sender().observe(observation);
        if in_turn && let Err(err) = self.messages.taken(pane).await {
            tracing::error!(%err, %pane, "could not mark a hand-over taken");
        }
        accepted
    }

    async fn send(&self, request: SendRequest) -> Result<Vec<Message>, MessagesError> {
        self.messages.send(request).await
    }

    async fn messages(&self, ids: Vec<MessageId>) -> Result<Vec<Message>, MessagesError> {
        self.messages.lookup(ids).await
    }

    async fn inbox(
        &self,
        session: SessionId,
        unread_only: bool,
        limit: usize,
    ) -> Result<Vec<Message>, MessagesError> {
        self.messages.inbox(session, unread_only, limit).await
    }

    async fn ack(&self, id: MessageId, by: SessionId) -> Result<Message, MessagesError> {
        self.messages.ack(id, by).await
    }

    async fn stop_hook(
        &self,
        mut observation: Observation,
        stop_hook_active: bool,
    ) -> (bool, Option<String>) {
        // The hand-over first: the keeper must not hear `idle` (and the
        // scheduler type into the pane) before the hook has taken the
        // message. A message handed over continues the turn: `working`.
        let text = if stop_hook_active {
            // Continuing because a hook blocked it: what was handed over
            // reached the agent.
            if let Err(err) = self.messages.taken(observation.pane).await {
                tracing::error!(%err, pane = %observation.pane, "could not mark a hand-over taken");
            }
            None
        } else {
            let kind = observation
                .kind
                .clone()
                .unwrap_or(crate::status::AgentKind::Claude);
            match self.messages.hand_over(observation.pane, &kind).await {
                Ok(text) => text,
                Err(err) => {
                    tracing::error!(%err, pane = %observation.pane, "could not hand a message to a Stop hook");
                    None
                }
            }
        };
        if text.is_some() {
            observation.status = crate::status::AgentStatus::Working;
        }
        (self.agents.sender().observe(observation), text)
    }
}
