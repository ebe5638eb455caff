//! `tmux-agent next-waiting`: jump to the agent that has waited longest
//! for you (`switch-client` to its pane), for a key binding.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use crate::control::command::Command;
use crate::control::oneshot::OneShot;
use crate::status::panes::{self, FORMAT};

/// Switch to the agent that has waited longest for you (a permission
/// prompt or a question), on any session.
///
/// Reads the agents' pane options (`@agent-status waiting`, `@agent-since`),
/// so it works with or without a daemon. Bind it to a key with the client
/// named, so the right client switches (see tmux.conf.example).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  tmux-agent next-waiting\n  \
    bind-key W run-shell 'tmux-agent next-waiting --client \"#{client_name}\"'\n  \
    tmux-agent next-waiting --print --json")]
pub struct NextWaitingArgs {
    /// The client to switch (`#{client_name}` in a key binding); tmux's
    /// most recent client when not given. Messages go to its status line.
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
    /// Only say which pane it is; do not switch.
    #[arg(long)]
    pub print: bool,
    /// With --print: one JSON object {"pane","session_id","session","kind","since"},
    /// or null when no agent waits.
    #[arg(long, requires = "print")]
    pub json: bool,
}

pub async fn run(args: NextWaitingArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let server = global.server();
    let tmux = OneShot::new(server.clone());
    let listing = tmux
        .run(&Command::list_all_panes(FORMAT)?)
        .await
        .with_context(|| format!("listing the panes of `{server}`"))?;
    let panes = panes::parse(&String::from_utf8_lossy(&listing));
    let next = panes::longest_waiting(&panes);
    if args.print {
        if args.json {
            crate::outln!("{}", json!(next));
        } else if let Some(pane) = next {
            crate::outln!(
                "{} {} {}",
                pane.pane,
                pane.session_id,
                super::coordination::printable(&pane.session)
            );
        } else {
            crate::outln!("no agent is waiting");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(pane) = next else {
        let message = "tmux-agent: no agent is waiting";
        match &args.client {
            Some(client) => {
                tmux.run(&Command::tell_client(client, message)?).await?;
            }
            None => crate::outln!("{message}"),
        }
        return Ok(ExitCode::SUCCESS);
    };
    tmux.run(&Command::switch_client(args.client.as_deref(), pane.pane)?)
        .await
        .with_context(|| format!("switching to pane {}", pane.pane))?;
    Ok(ExitCode::SUCCESS)
}
