//! `tmux-agent reload`: make the daemon re-read its configuration.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::GlobalArgs;
use crate::ipc::{ClientError, Endpoint, Request, Response};

/// Make the daemon re-read its configuration and rebuild groups from tmux
/// options (the same as sending it SIGHUP).
///
/// The configuration is discovered again and checked first: if it has
/// problems, the daemon keeps the one in force and the reason is printed
/// (exit 1). Otherwise MCP servers whose definition changed are restarted,
/// removed ones stopped, new ones added, and unchanged ones keep their
/// connection; the reactor acts on the new [[on.*]] actions from the next
/// event. The answer says what changed.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tmux-agent reload\n  #   reloaded: servers: memory restarted, goals added, 1 kept; reactor: ...\n  kill -HUP \"$(tmux-agent status --json | jq .pid)\"\n  tmux-agent config check && tmux-agent reload"
)]
pub struct ReloadArgs {}

pub async fn run(_args: ReloadArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let endpoint = Endpoint::for_server(&global.server());
    match crate::ipc::request(&endpoint, &Request::Reload).await {
        Ok(Response::Reloaded { message }) => {
            crate::outln!("reloaded: {message}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Response::Error { message }) => bail!("reload failed: {message}"),
        Ok(other) => bail!("unexpected answer from the daemon: {other:?}"),
        Err(err @ ClientError::NotRunning { .. }) => {
            bail!("{err}: nothing to reload (start it: tmux-agent ensure)")
        }
        Err(err) => Err(err.into()),
    }
}
