//! `tmux-agent share KEY=VALUE`: a value every member of a group holds.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::GlobalArgs;
use super::coordination::{Groups, TargetArgs, print_json, print_notes, printable, session_json};
use crate::group::access::check_share;

/// Set (or remove) a value shared by every member of a session's group.
///
/// The value is stored as @agent-ctx-KEY on every member, and copied to
/// sessions that join later; status lines can show it with
/// #{@agent-ctx-KEY}. It is data: tmux never runs or expands it. KEY is 1 to
/// 64 characters from A-Z a-z 0-9 _ . -; VALUE is one line of text (tabs
/// allowed, no other control characters) of at most 4096 bytes.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tmux-agent share task=refactor-parser\n  tmux-agent share -t review-1 'url=https://example.com/pr/7'\n  tmux-agent share --unset task"
)]
pub struct ShareArgs {
    /// KEY=VALUE (the first `=` splits).
    #[arg(
        value_name = "KEY=VALUE",
        required_unless_present = "unset",
        conflicts_with = "unset"
    )]
    pub assignment: Option<String>,
    /// Remove KEY from the group's shared context instead.
    #[arg(long, value_name = "KEY")]
    pub unset: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: ShareArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (key, value) = match (&args.assignment, &args.unset) {
        (Some(assignment), _) => {
            let Some((key, value)) = assignment.split_once('=') else {
                bail!(
                    "expected KEY=VALUE, got {:?} (to remove a key: --unset KEY)",
                    printable(assignment)
                );
            };
            check_share(key, Some(value))?
        }
        (None, Some(key)) => check_share(key, None)?,
        (None, None) => bail!("expected KEY=VALUE or --unset KEY"),
    };
    let groups = Groups::new(global);
    let session = groups.target(&args.target).await?;
    let (group, fetched) = groups
        .share_in_group(&session, &key, value.as_deref())
        .await?;
    print_notes(&fetched);
    let view = fetched.report.group(group.as_str());
    if args.json {
        print_json(&session_json(&session, view, fetched.daemon))?;
        return Ok(ExitCode::SUCCESS);
    }
    let members = view
        .map(|g| {
            g.members
                .iter()
                .map(|m| printable(&m.name).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    match &value {
        Some(value) => crate::outln!("shared {key}={} with {group} ({members})", printable(value)),
        None => crate::outln!("removed {key} from {group}'s shared context ({members})"),
    }
    Ok(ExitCode::SUCCESS)
}
