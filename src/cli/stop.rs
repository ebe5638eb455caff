//! `tmux-agent stop`: stop the daemon and wait until it has exited.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Args;

use super::GlobalArgs;
use crate::ipc::{ClientError, Endpoint, Request, Response, lock_holder};

/// How long to wait for the daemon to exit after it said it is stopping.
const EXIT_PATIENCE: Duration = Duration::from_secs(10);

/// Stop the daemon of this tmux server, and wait until it has exited.
///
/// Options it set stay as they are (they are the groups' state); the global
/// @agent-daemon is cleared. Stopping when no daemon runs is not an error.
#[derive(Debug, Args)]
pub struct StopArgs {}

pub async fn run(_args: StopArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let endpoint = Endpoint::for_server(&global.server());
    let pid = match crate::ipc::request(&endpoint, &Request::Stop).await {
        Ok(Response::Stopping { pid }) => pid,
        Ok(Response::Error { message }) => bail!("the daemon refused to stop: {message}"),
        Ok(other) => bail!("unexpected answer from the daemon: {other:?}"),
        Err(ClientError::NotRunning { server }) => {
            if let Some(pid) = lock_holder(&endpoint)? {
                let pid = pid.map_or("its pid is unknown".to_owned(), |p| format!("pid {p}"));
                bail!(
                    "a daemon holds the lock for `{server}` but does not answer ({pid}); kill it to stop it"
                );
            }
            crate::outln!("no tmux-agent daemon is running for `{server}`");
            return Ok(ExitCode::SUCCESS);
        }
        Err(err) => return Err(err.into()),
    };
    // The lock is released when the daemon's process ends (its files are
    // closed even before a parent reaps it).
    let deadline = tokio::time::Instant::now() + EXIT_PATIENCE;
    while lock_holder(&endpoint)?.is_some() {
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the daemon (pid {pid}) said it is stopping but is still running after {EXIT_PATIENCE:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    crate::outln!("stopped the tmux-agent daemon (pid {pid})");
    Ok(ExitCode::SUCCESS)
}
