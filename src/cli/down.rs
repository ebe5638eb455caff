//! `tmux-agent down FILE`: close the sessions of a sessions file, through
//! the normal lifecycle ([`crate::sessions::down::bring_down`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::coordination::print_json;
use crate::control::oneshot::OneShot;
use crate::group::access::printable;
use crate::sessions::down::bring_down;

/// Close the sessions a sessions file names (and only those).
///
/// Each is closed with kill-session, so a running daemon sees a normal
/// close: it saves the session's context and completes its goal. Sessions
/// of the file that are not running are reported and skipped.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tmux-agent down team.toml\n  tmux-agent down team.toml --var branch=fix-parser"
)]
pub struct DownArgs {
    /// The sessions file (the same one `up` was given).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Set one of the file's [vars] (session names may use them).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = super::up::parse_var)]
    pub vars: Vec<(String, String)>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: DownArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let file = crate::sessions::load(&args.file, &args.vars)
        .map_err(|err| anyhow::anyhow!("{err}\nnothing was closed"))?;
    let tmux = OneShot::new(global.server());
    let report = bring_down(&tmux, &file).await?;
    let failed = report.iter().any(|s| s.error.is_some());
    if args.json {
        print_json(&json!({ "file": args.file, "sessions": report }))?;
    } else {
        for session in &report {
            let name = printable(&session.name);
            match (&session.session_id, &session.error) {
                (Some(id), None) => crate::outln!("{name} ({id}): closed"),
                (Some(id), Some(err)) => crate::outln!("{name} ({id}): NOT closed: {err}"),
                (None, _) => crate::outln!("{name}: not running"),
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
