//! `tmux-agent daemon`: the sidecar itself. Attaches to the tmux server,
//! follows session lifecycle, and marks itself in the global option
//! `@agent-daemon` while it runs.

use std::process::ExitCode;

use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{GlobalArgs, attach, describe_end, shutdown_on_signal};
use crate::control::command;
use crate::state::TrackEnd;

/// The global option that says a daemon is attached.
pub const DAEMON_OPTION: &str = "@agent-daemon";

/// Run the sidecar on a tmux server.
///
/// The daemon attaches as a control client in a session of its own
/// ("tmux-agent"), so it never counts as a client of your sessions. It sets
/// the global option @agent-daemon to "running" while attached. When your
/// last session closes it closes its own session too and exits, so the tmux
/// server exits as it would without it. Logs go to stderr; set
/// TMUX_AGENT_LOG=debug for more.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  tmux-agent daemon\n  tmux-agent -L work daemon\n  # in tmux.conf:\n  run-shell -b 'tmux-agent daemon'")]
pub struct DaemonArgs {}

pub async fn run(_args: DaemonArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let connection_token = CancellationToken::new();
    let tracker = attach(global, connection_token.clone()).await?;
    let control = tracker.control();
    control
        .run(command::set_global_option(DAEMON_OPTION, "running"))
        .await?;
    tracing::info!(
        server = %global.server(),
        sessions = tracker.model().sessions().count(),
        "tmux-agent daemon attached"
    );

    let shutdown = shutdown_on_signal();
    let (events_tx, mut events) = mpsc::channel(1024);
    let tracking = tokio::spawn(tracker.run(events_tx, shutdown));
    // The reactor and group reconciler will consume these; for now the
    // daemon's job ends at logging them (the tracker already did).
    while events.recv().await.is_some() {}
    let end = tracking.await??;

    if !matches!(end, TrackEnd::LastSessionClosed) {
        // Leave no stale "running" behind on a server that lives on. The
        // connection may already be gone, which is fine.
        let _ = control.run(command::unset_global_option(DAEMON_OPTION)).await;
    }
    connection_token.cancel();
    let message = describe_end(&end, global).await;
    tracing::info!(%message, "tmux-agent daemon stopped");
    eprintln!("tmux-agent daemon: {message}");
    Ok(ExitCode::SUCCESS)
}
