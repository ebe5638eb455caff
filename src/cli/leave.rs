//! `tmux-agent leave`: take a session out of its group.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::coordination::{Groups, TargetArgs, count, print_json, printable, who};

/// Take a session out of its coordination group.
///
/// Unsets the session's @agent-group. The daemon then removes the session
/// from its peers' @agent-peers, clears its @agent-role, @agent-peers and
/// shared context, and promotes the next earliest member if it was the
/// coordinator. A group with no members left disappears.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  tmux-agent leave\n  tmux-agent leave -t review-1")]
pub struct LeaveArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: LeaveArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let groups = Groups::new(global);
    let session = groups.target(&args.target).await?;
    let before = groups.group_of(session.id).await?;
    if before.is_some() {
        groups.set_group(session.id, None).await?;
    }
    let fetched = groups.reconciled().await?;
    let remaining = before.as_deref().and_then(|g| fetched.report.group(g));
    if args.json {
        print_json(&json!({
            "session": session,
            "left": before,
            "group": remaining,
            "daemon": fetched.daemon,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let me = who(session.id, &session.name);
    let Some(old) = before else {
        crate::outln!("{me} is in no group; nothing to leave");
        return Ok(ExitCode::SUCCESS);
    };
    let old = printable(&old);
    crate::outln!("{me} left {old}");
    match remaining {
        Some(group) => crate::outln!(
            "{old} now has {}, coordinated by {}",
            count(group.members.len(), "member"),
            who(group.coordinator.id, &group.coordinator.name)
        ),
        None => crate::outln!("{old} has no members left and is gone"),
    }
    Ok(ExitCode::SUCCESS)
}
