//! `tmux-agent reload`: make the daemon re-read its configuration.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::GlobalArgs;
use crate::ipc::{ClientError, Endpoint, Request, Response};

/// Make the daemon re-read its configuration and rebuild groups from tmux
/// options (the same as sending it SIGHUP).
#[derive(Debug, Args)]
pub struct ReloadArgs {}

pub async fn run(_args: ReloadArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let endpoint = Endpoint::for_server(&global.server());
    match crate::ipc::request(&endpoint, &Request::Reload).await {
        Ok(Response::Reloaded { message }) => {
            println!("reloaded: {message}");
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
