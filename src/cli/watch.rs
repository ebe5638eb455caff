//! `tmux-agent watch`: print lifecycle events as they happen, through a
//! control connection of its own.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{GlobalArgs, attach, describe_end, shutdown_on_signal};

/// Print session lifecycle events as they happen.
///
/// Each line is one event: session-created, session-renamed, session-attached,
/// session-detached, session-closed, client-attached or client-detached, with
/// the session's id and name. Sessions that exist when watching starts produce
/// no events. Stops on Ctrl-C, or when the server's last session closes.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tmux-agent watch\n  tmux-agent -L work watch --json | jq -r .event"
)]
pub struct WatchArgs {
    /// One JSON object per line, e.g.
    /// {"event":"session-created","session_id":"$3","session":"work","time":"2026-11-21T16:00:00.123Z"}
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: WatchArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let connection_token = CancellationToken::new();
    let tracker = attach(global, connection_token.clone()).await?;
    eprintln!(
        "tmux-agent watch: following {} sessions on `{}`",
        tracker.model().sessions().count(),
        global.server()
    );
    let shutdown = shutdown_on_signal();
    let (events_tx, mut events) = mpsc::channel(1024);
    let tracking = tokio::spawn(tracker.run(events_tx, shutdown));

    let mut stdout = std::io::stdout().lock();
    while let Some(event) = events.recv().await {
        let line = if args.json {
            serde_json::to_string(&event)?
        } else {
            event.to_string()
        };
        // A closed pipe (`watch | head`) is a normal way to stop watching.
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    drop(stdout);
    let end = tracking.await??;
    connection_token.cancel();
    eprintln!("tmux-agent watch: {}", describe_end(&end, global));
    Ok(ExitCode::SUCCESS)
}
