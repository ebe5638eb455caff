//! `tmux-agent watch`: print lifecycle events as they happen.
//!
//! When a daemon runs for the server, `watch` follows the daemon's event
//! stream (`{"request":"events"}`, see [`crate::events`]): it then shows
//! what the daemon acts on, the late events its start makes from the
//! journal included. Otherwise it follows the server through a control
//! connection of its own, as before there was a daemon, and looks every
//! second for one to start; when one does, it switches to it (and says
//! so), and when that daemon stops it goes back to its own.
//!
//! At a switch from its own connection to the daemon, the daemon's events
//! that `watch` could have seen itself (not late, and observed before its
//! own connection stopped) are left out, so nothing is printed twice. An
//! event observed within a few milliseconds of the switch can still be
//! printed twice, or by neither: the two trackers list tmux apart.

use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{GlobalArgs, attach, describe_end, output, shutdown_on_signal};
use crate::events::DaemonEvent;
use crate::ipc::Endpoint;
use crate::ipc::client::{self, EventFollower, StreamLine};
use crate::state::LifecycleEvent;

/// How often `watch` looks whether anyone still reads its output.
const READER_CHECK: Duration = Duration::from_millis(250);

/// How often `watch`, on its own connection, looks for a daemon.
const DAEMON_CHECK: Duration = Duration::from_secs(1);

/// Print session lifecycle events as they happen.
///
/// Each line is one event: session-created, session-renamed, session-attached,
/// session-detached, session-closed, client-attached, client-detached or
/// session-missed, with the session's id and name. Sessions that exist when
/// watching starts produce no events.
///
/// When a daemon runs for the server, the events are the daemon's, and the
/// first line on stderr says so: they include the late events a daemon
/// makes at start for what happened while none ran ("late": true). With no
/// daemon, watch follows the server itself, and switches to a daemon as
/// soon as one starts. Stops on Ctrl-C, or when the server's last session
/// closes.
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

/// How one stretch of watching ended.
enum Ended {
    /// Ctrl-C, the reader went away, or the server is done: exit 0.
    Done,
    /// On its own connection, a daemon started: follow it.
    DaemonStarted(Box<EventFollower>, Switch),
    /// The daemon's stream ended (the daemon stopped).
    DaemonGone,
}

/// When `watch` stopped its own connection for the daemon's stream: the
/// daemon's events observed before then, unless late, were its to see.
#[derive(Debug, Clone, Copy)]
struct Switch {
    at: DateTime<Utc>,
}

impl Switch {
    fn already_seen(self, event: &LifecycleEvent) -> bool {
        !event.late && event.time < self.at
    }
}

pub async fn run(args: WatchArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let server = global.server();
    let endpoint = Endpoint::for_server(&server);
    let signalled = shutdown_on_signal();
    // Kept events from this moment on are replayed: a daemon that has just
    // started may have made its late events before `watch` subscribed.
    let mut follower = client::subscribe(&endpoint, Some(Utc::now()))
        .await
        .ok()
        .map(|f| (f, None));
    loop {
        if let Some((stream, switch)) = follower.take() {
            eprintln!(
                "tmux-agent watch: following the daemon's events on `{server}` (daemon pid {})",
                stream.pid
            );
            match follow_daemon(stream, switch, args.json, &signalled).await? {
                Ended::DaemonGone => {}
                _ => return Ok(ExitCode::SUCCESS),
            }
            if !server.is_running().await.unwrap_or(false) {
                eprintln!(
                    "tmux-agent watch: the daemon stopped, and the tmux server of `{server}` is gone; stopped"
                );
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("tmux-agent watch: the daemon stopped");
        }
        match follow_own(global, &endpoint, args.json, &signalled).await? {
            Ended::DaemonStarted(stream, switch) => follower = Some((*stream, Some(switch))),
            _ => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Prints `line` on stdout; `Ok(false)` when the reader has gone.
fn print(line: &str) -> anyhow::Result<bool> {
    match output::write(format_args!("{line}\n")) {
        Ok(()) => Ok(true),
        Err(output::OutputError::Closed) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Prints the daemon's events until its stream ends, a signal, or the
/// reader goes.
async fn follow_daemon(
    mut stream: EventFollower,
    switch: Option<Switch>,
    json: bool,
    signalled: &CancellationToken,
) -> anyhow::Result<Ended> {
    let mut check_reader = tokio::time::interval(READER_CHECK);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = check_reader.tick() => {
                if output::stdout_reader_gone() {
                    return Ok(Ended::Done);
                }
                continue;
            }
            () = signalled.cancelled() => {
                eprintln!("tmux-agent watch: stopped");
                return Ok(Ended::Done);
            }
        };
        let line = match next {
            Ok(Some(StreamLine::Event { line, event })) => match event {
                Some(DaemonEvent::Lifecycle(event)) => {
                    if switch.is_some_and(|s| s.already_seen(&event)) {
                        continue;
                    }
                    if json { line } else { event.to_string() }
                }
                Some(DaemonEvent::Message(event)) => {
                    if json {
                        line
                    } else {
                        let mut text = format!(
                            "{} {} {} from {} to {}",
                            event.time, event.event, event.id, event.from, event.to
                        );
                        if let Some(reason) = &event.reason {
                            text.push_str(&format!(" ({reason})"));
                        }
                        text
                    }
                }
                // A kind this version does not know: shown as it came.
                None => line,
            },
            Ok(Some(StreamLine::Lagged { missed })) => {
                eprintln!(
                    "tmux-agent watch: fell behind; the daemon dropped {missed} event(s) for it"
                );
                continue;
            }
            Ok(None) => return Ok(Ended::DaemonGone),
            Err(err) => {
                eprintln!("tmux-agent watch: lost the daemon's stream: {err}");
                return Ok(Ended::DaemonGone);
            }
        };
        if !print(&line)? {
            return Ok(Ended::Done);
        }
    }
}

/// Follows the server through a control connection of its own until it
/// ends, a signal, the reader goes, or a daemon starts.
async fn follow_own(
    global: &GlobalArgs,
    endpoint: &Endpoint,
    json: bool,
    signalled: &CancellationToken,
) -> anyhow::Result<Ended> {
    let began = Utc::now();
    let connection_token = CancellationToken::new();
    let tracker = attach(global, connection_token.clone()).await?;
    eprintln!(
        "tmux-agent watch: following {} sessions on `{}` (no daemon runs: on its own connection, until one starts)",
        tracker.model().sessions().count(),
        global.server()
    );
    // A reader that goes away (`watch | head -1`) stops watching as a
    // signal does: the tracker ends cleanly and the command exits 0.
    let shutdown = signalled.child_token();
    let (events_tx, mut events) = mpsc::channel(1024);
    let tracking = tokio::spawn(tracker.run(events_tx, shutdown.clone()));

    // Events may be far apart: look for a closed stdout between them too,
    // so a `| head -1` ends now and not at the next event.
    let mut check_reader = tokio::time::interval(READER_CHECK);
    let mut check_daemon =
        tokio::time::interval_at(tokio::time::Instant::now() + DAEMON_CHECK, DAEMON_CHECK);
    let mut reader_gone = false;
    let mut daemon = None;
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
            _ = check_daemon.tick(), if daemon.is_none() && !shutdown.is_cancelled() => {
                // Subscribed before this connection stops: the daemon's
                // events from `began` on are kept for us meanwhile.
                if let Ok(stream) = client::subscribe(endpoint, Some(began)).await {
                    daemon = Some(stream);
                    shutdown.cancel();
                }
                continue;
            }
        };
        let Some(event) = event else { break };
        let line = if json {
            serde_json::to_string(&event)?
        } else {
            event.to_string()
        };
        if !reader_gone && !print(&line)? {
            reader_gone = true;
            shutdown.cancel();
        }
    }
    let end = tracking.await??;
    connection_token.cancel();
    if reader_gone {
        // Whoever closed the pipe asked for no more; the start line on
        // stderr said where we were watching, and that is all.
        return Ok(Ended::Done);
    }
    if let Some(stream) = daemon {
        return Ok(Ended::DaemonStarted(
            Box::new(stream),
            Switch { at: Utc::now() },
        ));
    }
    eprintln!("tmux-agent watch: {}", describe_end(&end, global));
    Ok(Ended::Done)
}
