//! `tmux-agent groups`: every group on the server.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::coordination::{Groups, context_lines, count, print_json, printable, who};

/// List every coordination group with its members (in join order, the
/// coordinator first) and its shared context.
///
/// Asks the daemon (which first brings the options up to date); when no
/// daemon runs, reads the options from tmux and says so.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tmux-agent groups\n  tmux-agent groups --json | jq '.groups[].name'"
)]
pub struct GroupsArgs {
    /// Print one JSON object: {"groups":[{"name","coordinator","members",
    /// "context"}], "ignored":[...], "daemon":true|false}.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: GroupsArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let groups = Groups::new(global);
    let fetched = groups.reconciled().await?;
    let report = &fetched.report;
    if args.json {
        print_json(&json!({
            "groups": report.groups,
            "ignored": report.ignored,
            "daemon": fetched.daemon,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if report.groups.is_empty() {
        crate::outln!("no groups (join one: tmux-agent join GROUP)");
    }
    for group in &report.groups {
        crate::outln!("{} ({})", group.name, count(group.members.len(), "member"));
        let width = group
            .members
            .iter()
            .map(|m| who(m.id, &m.name).chars().count())
            .max()
            .unwrap_or(0);
        for member in &group.members {
            crate::outln!(
                "  {:<width$}  {}",
                who(member.id, &member.name),
                member.role
            );
        }
        for line in context_lines(group) {
            crate::outln!("{line}");
        }
    }
    for ignored in &report.ignored {
        crate::outln!(
            "ignored: {} has @agent-group {:?}: {}",
            who(ignored.id, &ignored.name),
            printable(&ignored.group),
            ignored.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
