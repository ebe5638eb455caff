//! `tmux-agent peers`: a session's group as it sees it.

use std::process::ExitCode;

use clap::Args;

use super::GlobalArgs;
use super::coordination::{Groups, TargetArgs, print_json, session_json, session_lines};

/// Show a session's group: its role, the coordinator, its peers and the
/// shared context.
///
/// Asks the daemon (which first brings the options up to date); when no
/// daemon runs, reads the options from tmux and says so.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  tmux-agent peers\n  tmux-agent peers -t review-1 --json")]
pub struct PeersArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print one JSON object: session, group, role, coordinator, peers,
    /// members, context, and whether the daemon answered.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: PeersArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let groups = Groups::new(global);
    let session = groups.target(&args.target).await?;
    let fetched = groups.reconciled().await?;
    let view = fetched.report.group_of(session.id);
    if args.json {
        print_json(&session_json(&session, view, fetched.daemon))?;
    } else {
        for line in session_lines(&session, view) {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
