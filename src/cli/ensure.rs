//! `tmux-agent ensure`: start the daemon unless one is running. Meant for
//! tmux.conf and hooks, so it prints nothing on stdout (tmux shows a
//! `run-shell` command's stdout in a pane); what it did goes to stderr.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Args;

use super::GlobalArgs;
use crate::ipc::{ClientError, Endpoint, Request, Response, lock_holder};

/// How long to wait for a daemon that holds the lock to start answering.
const STARTING_PATIENCE: Duration = Duration::from_secs(10);

/// Start the daemon for this tmux server unless one is running.
///
/// Exits 0 when a daemon runs afterwards, whether it was already running or
/// has just been started in the background (as `daemon --detach` does).
/// Safe to run from several hooks at once: only one daemon ever runs per
/// tmux server. Prints nothing on stdout.
#[derive(Debug, Args)]
#[command(
    after_help = "In tmux.conf:\n  run-shell -b 'tmux-agent ensure'\n  set-hook -g session-created[100] 'run-shell -b \"tmux-agent ensure\"'"
)]
pub struct EnsureArgs {}

pub async fn run(_args: EnsureArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let server = global.server();
    let endpoint = Endpoint::for_server(&server);
    if let Some(pid) = running(&endpoint).await? {
        eprintln!("tmux-agent daemon already running on `{server}` (pid {pid})");
        return Ok(ExitCode::SUCCESS);
    }
    match super::daemon::spawn_detached(global).await {
        Ok((pid, log)) => {
            eprintln!(
                "started the tmux-agent daemon on `{server}` (pid {pid}); log: {}",
                log.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        // Another `ensure` (a hook firing twice) may have won the race.
        Err(err) => match running(&endpoint).await? {
            Some(pid) => {
                eprintln!("tmux-agent daemon already running on `{server}` (pid {pid})");
                Ok(ExitCode::SUCCESS)
            }
            None => Err(err),
        },
    }
}

/// The pid of the daemon that answers, waiting for one that holds the lock
/// but is still starting; `None` when there is none.
async fn running(endpoint: &Endpoint) -> anyhow::Result<Option<u32>> {
    let deadline = tokio::time::Instant::now() + STARTING_PATIENCE;
    loop {
        match crate::ipc::request(endpoint, &Request::Status).await {
            Ok(Response::Status(status)) => return Ok(Some(status.pid)),
            Ok(other) => bail!("unexpected answer from the daemon: {other:?}"),
            Err(ClientError::NotRunning { .. } | ClientError::Timeout(_)) => {}
            Err(err) => return Err(err.into()),
        }
        let Some(holder) = lock_holder(endpoint)? else {
            return Ok(None);
        };
        if tokio::time::Instant::now() >= deadline {
            let pid = holder.map_or("pid unknown".to_owned(), |p| format!("pid {p}"));
            bail!(
                "a tmux-agent daemon holds the lock for `{}` ({pid}) but does not answer within {STARTING_PATIENCE:?}",
                endpoint.server
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
