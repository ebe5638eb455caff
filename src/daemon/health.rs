//! What the daemon shows of itself in global tmux options, so a status line
//! (or a script) can see it without asking the daemon:
//!
//! - `@agent-daemon`: `running` while the daemon is attached, unset when it
//!   stops or loses its control connection (`link`), set again when it
//!   reattaches;
//! - `@agent-mcp`: the health of the MCP servers the reactor calls, e.g.
//!   `builtin:ok memory:down`;
//! - `@agent-outbox`: `memory` while the outbox is off the disk;
//! - the `session-created` hook that names sessions the tracker may miss
//!   (`schema::global::NAME_HOOK`), set and removed with `@agent-daemon`.
//!
//! (`@agent-pending` is the reactor's: its dispatchers write it as they
//! deliver.) The publisher writes an option only when its value changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use crate::agent::outbox::SharedOutbox;
use crate::agent::settings::ReactorSettings;
use crate::control::command::Command;
use crate::control::connection::ControlHandle;
use crate::control::message::SessionId;
use crate::control::oneshot::OneShot;
use crate::control::server::ServerSocket;
use crate::mcp::McpPool;
use crate::schema;

/// How long a one-shot `tmux` may take to clear `@agent-daemon`.
const ONESHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often `@agent-mcp` and `@agent-outbox` are brought up to date.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Sets `@agent-daemon` to `running`, and clears `@agent-outbox`: a
/// previous daemon's `memory` says nothing about this one's outbox. Also
/// drops the name a killed daemon's hook (still set) kept for `sidecar`,
/// our own session, which no listing accounts for.
pub(super) async fn announce(
    control: &ControlHandle,
    sidecar: SessionId,
) -> Result<(), DaemonError> {
    let running = Command::set_global_option(schema::global::DAEMON, "running")?;
    control.run(running).await.map_err(DaemonError::Announce)?;
    // Names for the sessions the tracker may miss (see schema::global).
    let hook =
        Command::set_global_hook(schema::global::NAME_HOOK, schema::global::NAME_HOOK_COMMAND)?;
    if let Err(err) = control.run(hook).await {
        tracing::warn!(%err, "could not set the hook that names missed sessions");
    }
    let _ = control
        .run(Command::unset_global_option(schema::global::OUTBOX)?)
        .await;
    let own_name = format!("{}{sidecar}", schema::global::SESSION_NAME_PREFIX);
    let _ = control.run(Command::unset_global_option(&own_name)?).await;
    Ok(())
}

/// Leaves no stale `running` (or `memory`) behind on a server that lives on.
/// The connection may already be gone, which is fine: so is the server's
/// option then.
pub(super) async fn withdraw(control: &ControlHandle) {
    for option in [schema::global::DAEMON, schema::global::OUTBOX] {
        if let Ok(unset) = Command::unset_global_option(option) {
            let _ = control.run(unset).await;
        }
    }
    if let Ok(unhook) = Command::unset_global_hook(schema::global::NAME_HOOK) {
        let _ = control.run(unhook).await;
    }
}

/// [`withdraw`] through a one-shot `tmux`, for when the control connection
/// is gone but the server may live on (`@agent-outbox` stays: it is about
/// the outbox, still true). A failure means the server is gone too.
pub(super) async fn withdraw_oneshot(server: &ServerSocket) {
    if let Ok(unset) = Command::unset_global_option(schema::global::DAEMON) {
        let oneshot = OneShot::new(server.clone()).with_timeout(ONESHOT_TIMEOUT);
        if let Err(err) = oneshot.run(&unset).await {
            tracing::debug!(%err, "could not clear @agent-daemon");
        }
        if let Ok(unhook) = Command::unset_global_hook(schema::global::NAME_HOOK) {
            let _ = oneshot.run(&unhook).await;
        }
    }
}

/// Keeps `@agent-mcp` and `@agent-outbox` up to date until `stop`.
pub(super) async fn publish(
    pool: McpPool,
    settings: watch::Receiver<Arc<ReactorSettings>>,
    outbox: SharedOutbox,
    control: ControlHandle,
    stop: CancellationToken,
) {
    let mut shown = String::new();
    let mut shown_in_memory = false;
    let mut tick = tokio::time::interval(HEALTH_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let summary = mcp_summary(&pool, &settings.borrow());
        if summary != shown
            && let Ok(command) = Command::set_global_option(schema::global::MCP, &summary)
            && control.run(command).await.is_ok()
        {
            shown = summary;
        }
        let in_memory = outbox.run(|outbox| outbox.degraded().is_some()).await;
        if in_memory != shown_in_memory {
            let command = if in_memory {
                Command::set_global_option(schema::global::OUTBOX, "memory")
            } else {
                Command::unset_global_option(schema::global::OUTBOX)
            };
            if let Ok(command) = command
                && control.run(command).await.is_ok()
            {
                shown_in_memory = in_memory;
            }
        }
    }
}

/// `name:health` for each server the reactor's actions name, in the pool's
/// order: `ok`, `connecting`, `down`, or the pool's own word.
fn mcp_summary(pool: &McpPool, settings: &ReactorSettings) -> String {
    let named = settings.named_servers();
    pool.servers()
        .iter()
        .filter(|s| named.contains(&s.name))
        .map(|s| {
            let health = match s.state {
                "ready" | "idle" => "ok",
                "connecting" => "connecting",
                "backoff" => "down",
                other => other,
            };
            format!("{}:{health}", s.name)
        })
        .collect::<Vec<_>>()
        .join(" ")
}
