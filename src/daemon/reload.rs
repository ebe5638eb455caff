//! Putting a new configuration in force while the daemon runs (`reload`
//! over the socket, or SIGHUP through a [`ReloadTrigger`]).
//!
//! The configuration is discovered again and checked first: one with
//! problems is refused with the reason and the old one stays. Otherwise the
//! MCP pool restarts what changed (keeping unchanged connections) and the
//! reactor gets its new settings on a `watch` channel. One reload runs at a
//! time, so two quick SIGHUPs cannot interleave their pool changes.

use std::sync::Arc;

use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::handler::DaemonHandler;
use super::{HandlerError, ReloadError};
use crate::agent::settings::ReactorSettings;
use crate::configuration::Configuration;
use crate::ipc::Handler;
use crate::mcp::McpPool;
use crate::mcp::discovery::DiscoveryInput;

/// Reads and checks the configuration, off the async threads: discovery
/// reads files and may pause to re-read one an editor is rewriting.
pub(super) async fn load_config(
    input: &DiscoveryInput,
) -> Result<Configuration, tokio::task::JoinError> {
    let input = input.clone();
    tokio::task::spawn_blocking(move || Configuration::discover(&input)).await
}

/// What a reload changes: the pool's servers and the reactor's settings.
pub(super) struct Reload {
    config: DiscoveryInput,
    pool: McpPool,
    settings: watch::Sender<Arc<ReactorSettings>>,
    /// `[messages]`, for the message service and scheduler.
    messages: watch::Sender<Arc<crate::messages::Policy>>,
    /// `[delivery]` and the submit keys, for the message scheduler.
    delivery: watch::Sender<Arc<crate::messages::pane::Delivery>>,
    one_at_a_time: AsyncMutex<()>,
}

impl Reload {
    pub(super) fn new(
        config: DiscoveryInput,
        pool: McpPool,
        settings: watch::Sender<Arc<ReactorSettings>>,
        messages: watch::Sender<Arc<crate::messages::Policy>>,
        delivery: watch::Sender<Arc<crate::messages::pane::Delivery>>,
    ) -> Self {
        Self {
            config,
            pool,
            settings,
            messages,
            delivery,
            one_at_a_time: AsyncMutex::new(()),
        }
    }

    /// Discovers the configuration again and, if it is valid, puts it in
    /// force. Answers with what changed, in words.
    pub(super) async fn apply(&self) -> Result<String, ReloadError> {
        let _turn = self.one_at_a_time.lock().await;
        let configuration = load_config(&self.config)
            .await
            .map_err(ReloadError::Discovery)?;
        if !configuration.problems.is_empty() {
            return Err(ReloadError::Problems(configuration.problems));
        }
        for warning in &configuration.warnings {
            tracing::warn!(%warning, "config");
        }
        let new = configuration.reactor;
        let servers = self.pool.reconfigure(&configuration.servers);
        let reactor = describe_reactor(&self.settings.borrow(), &new);
        self.settings.send_replace(Arc::new(new));
        self.messages.send_replace(Arc::new(configuration.messages));
        self.delivery.send_replace(Arc::new(configuration.delivery));
        let message = format!("servers: {}; reactor: {reactor}", servers.summary());
        tracing::info!(%message, "configuration reloaded");
        Ok(message)
    }
}

/// The reactor's actions per event, and what changed: `2 actions for
/// session-created, 1 for checkpoint (changed: checkpoint)`.
fn describe_reactor(old: &ReactorSettings, new: &ReactorSettings) -> String {
    let counts: Vec<String> = new
        .actions
        .iter()
        .filter(|(_, specs)| !specs.is_empty())
        .enumerate()
        .map(|(i, (trigger, specs))| match (i, specs.len()) {
            (0, 1) => format!("1 action for {trigger}"),
            (0, n) => format!("{n} actions for {trigger}"),
            (_, n) => format!("{n} for {trigger}"),
        })
        .collect();
    let listed = if counts.is_empty() {
        "no actions".to_owned()
    } else {
        counts.join(", ")
    };
    let mut changed: Vec<String> = old
        .actions
        .keys()
        .chain(new.actions.keys())
        .filter(|t| old.actions.get(*t) != new.actions.get(*t))
        .map(|t| t.to_string())
        .collect();
    changed.sort();
    changed.dedup();
    if old.checkpoint_interval != new.checkpoint_interval {
        changed.push("checkpoint_interval".to_owned());
    }
    if changed.is_empty() {
        format!("{listed} (unchanged)")
    } else {
        format!("{listed} (changed: {})", changed.join(", "))
    }
}

/// A reload asked from outside the socket, with where its answer goes.
type ReloadRequest = oneshot::Sender<Result<String, HandlerError>>;

/// Asks a running daemon to reload, as a `reload` request does: the CLI
/// turns SIGHUP into one. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReloadTrigger {
    requests: mpsc::Sender<ReloadRequest>,
}

/// The daemon's side of a [`ReloadTrigger`], handed to [`super::run`] in
/// its settings.
#[derive(Debug)]
pub struct Reloads {
    requests: mpsc::Receiver<ReloadRequest>,
}

/// A trigger and the daemon's side of it. Requests made before the daemon
/// is attached wait until it is.
pub fn reload_channel() -> (ReloadTrigger, Reloads) {
    // Reloads are rare and one at a time; a few may wait.
    let (requests, receiver) = mpsc::channel(4);
    (ReloadTrigger { requests }, Reloads { requests: receiver })
}

impl Default for Reloads {
    /// No trigger: the daemon reloads only on `reload` requests.
    fn default() -> Self {
        reload_channel().1
    }
}

impl ReloadTrigger {
    /// Reloads the daemon's configuration and rebuilds groups; answers as
    /// a `reload` request would.
    pub async fn reload(&self) -> Result<String, HandlerError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| HandlerError::Stopping)?;
        answer.await.map_err(|_| HandlerError::Stopping)?
    }
}

/// Answers each triggered reload, as the socket answers a `reload`, until
/// `stop` (or until no trigger is left).
pub(super) async fn answer_triggers(
    handler: Arc<DaemonHandler>,
    mut reloads: Reloads,
    stop: CancellationToken,
) {
    loop {
        let reply = tokio::select! {
            () = stop.cancelled() => return,
            request = reloads.requests.recv() => match request {
                Some(reply) => reply,
                None => return,
            },
        };
        let _ = reply.send(handler.reload().await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trigger_whose_daemon_is_gone_says_it_is_stopping() {
        let (trigger, reloads) = reload_channel();
        drop(reloads);
        assert!(matches!(
            trigger.reload().await,
            Err(HandlerError::Stopping)
        ));
    }

    #[tokio::test]
    async fn a_trigger_waits_for_the_daemon_to_answer() {
        let (trigger, mut reloads) = reload_channel();
        let asked = tokio::spawn(async move { trigger.reload().await });
        let reply = reloads.requests.recv().await.expect("a request");
        reply.send(Ok("servers: 1 kept".to_owned())).unwrap();
        assert_eq!(asked.await.unwrap().unwrap(), "servers: 1 kept");
    }
}
