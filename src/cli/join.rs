//! `tmux-agent join GROUP`: put a session in a coordination group.

use std::process::ExitCode;

use clap::Args;

use super::GlobalArgs;
use super::coordination::{Groups, TargetArgs, print_json, session_json, session_lines, who};
use crate::group::GroupName;

/// Put a session in a coordination group.
///
/// Sets the session's @agent-group option. The daemon then makes the
/// earliest member the coordinator, lists every member's peers in
/// @agent-peers, and copies the group's shared context (@agent-ctx-*) to the
/// newcomer. A session in another group leaves that one first. Plain
/// `tmux set -t SESSION @agent-group GROUP` does the same.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tmux-agent join build\n  tmux-agent join -t review-1 review --json"
)]
pub struct JoinArgs {
    /// The group: 1 to 64 characters from A-Z a-z 0-9 _ . -
    #[arg(
        value_name = "GROUP",
        add = clap_complete::engine::ArgValueCandidates::new(super::shell::group_candidates)
    )]
    pub group: GroupName,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: JoinArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let group = args.group;
    let groups = Groups::new(global);
    let session = groups.target(&args.target).await?;
    let before = groups.group_of(session.id).await?;
    if before.as_deref() != Some(group.as_str()) {
        groups.set_group(session.id, Some(&group)).await?;
    }
    let fetched = groups.reconciled().await?;
    let view = fetched.report.group(group.as_str());
    if args.json {
        print_json(&session_json(&session, view, fetched.daemon))?;
        return Ok(ExitCode::SUCCESS);
    }
    let me = who(session.id, &session.name);
    match before.as_deref() {
        Some(old) if old == group.as_str() => crate::outln!("{me} is already in {group}"),
        Some(old) => crate::outln!(
            "{me} left {} and joined {group}",
            super::coordination::printable(old)
        ),
        None => crate::outln!("{me} joined {group}"),
    }
    for line in session_lines(&session, view) {
        crate::outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
