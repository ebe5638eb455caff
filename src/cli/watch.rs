//! `tmux-agent watch`: print lifecycle events as they happen, through a
//! control connection of its own.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{GlobalArgs, attach, describe_end, output, shutdown_on_signal};

/// How often `watch` looks whether anyone still reads its output.
const READER_CHECK: Duration = Duration::from_millis(250);

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
    let signalled = shutdown_on_signal();
    // A reader that goes away (`watch | head -1`) stops watching as a
    // signal does: the tracker ends cleanly and the command exits 0.
    let shutdown = signalled.child_token();
    let (events_tx, mut events) = mpsc::channel(1024);
    let tracking = tokio::spawn(tracker.run(events_tx, shutdown.clone()));

    // Events may be far apart: look for a closed stdout between them too,
    // so a `| head -1` ends now and not at the next event.
    let mut check_reader = tokio::time::interval(READER_CHECK);
    let mut reader_gone = false;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = check_reader.tick() => {
                if output::stdout_reader_gone() {
                    reader_gone = true;
                    shutdown.cancel();
                }
                continue;
            }
        };
        let Some(event) = event else { break };
        let line = if args.json {
            serde_json::to_string(&event)?
        } else {
            event.to_string()
        };
        match output::write(format_args!("{line}\n")) {
            Ok(()) => {}
            Err(output::OutputError::Closed) => {
                reader_gone = true;
                shutdown.cancel();
            }
            Err(err) => {
                shutdown.cancel();
                let _ = tracking.await;
                return Err(err.into());
            }
        }
    }
    let end = tracking.await??;
    connection_token.cancel();
    // Whoever closed the pipe asked for no more; the start line on stderr
    // said where we were watching, and that is all.
    if !reader_gone {
        eprintln!("tmux-agent watch: {}", describe_end(&end, global));
    }
    Ok(ExitCode::SUCCESS)
}
