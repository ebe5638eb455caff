//! `tmux-agent peers`: a session's group as it sees it.

use std::process::ExitCode;

use clap::Args;

use super::GlobalArgs;
use serde_json::json;

use super::coordination::{
    Groups, TargetArgs, print_json, printable, session_json, session_lines, who,
};

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
    // A value set by hand (or typed at the join prompt) that is no group name.
    let ignored = fetched.report.ignored.iter().find(|i| i.id == session.id);
    if args.json {
        let mut out = session_json(&session, view, fetched.daemon);
        if let Some(ignored) = ignored {
            out["ignored_group"] = json!(ignored.group);
            out["reason"] = json!(ignored.reason);
        }
        print_json(&out)?;
    } else if let Some(ignored) = ignored {
        crate::outln!(
            "{}: in no group: its @agent-group {:?} is ignored: {}",
            who(session.id, &session.name),
            printable(&ignored.group),
            ignored.reason
        );
    } else {
        for line in session_lines(&session, view) {
            crate::outln!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
