//! `tmux-agent up FILE`: create the sessions of a sessions file, with their
//! agent options set from the start (see `docs/sessions.md`). The work is
//! [`crate::sessions::up::bring_up`]; this parses flags and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::coordination::print_json;
use crate::control::oneshot::OneShot;
use crate::group::access::printable;
use crate::sessions::up::{UpError, UpOptions, bring_up};

/// Create the sessions of a sessions file (TOML), each with its goal, type,
/// group and other agent options set from the start, its windows, panes,
/// layouts and commands.
///
/// Every check runs before anything is created; a problem names the file,
/// line and key. Sessions that exist already are left alone (or, with
/// --reconcile, get the file's agent options). If one session cannot be
/// made, the ones made before it are closed again, and the error says so.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tmux-agent up team.toml\n  tmux-agent up team.toml --var branch=fix-parser --var repo=~/src/app\n  tmux-agent freeze --all -o team.toml && tmux-agent up team.toml\n\nThe format: docs/sessions.md (a commented example: docs/example-sessions.toml)."
)]
pub struct UpArgs {
    /// The sessions file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Set one of the file's [vars]: NAME=VALUE (repeat for more).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Set the agent options (goal, type, group, options) of sessions that
    /// exist to the file's. Their windows and panes are left as they are.
    #[arg(long)]
    pub reconcile: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `NAME=VALUE` of `--var`.
pub fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

pub async fn run(args: UpArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let file = crate::sessions::load(&args.file, &args.vars)
        .map_err(|err| anyhow::anyhow!("{err}\nnothing was created"))?;
    let tmux = OneShot::new(global.server());
    let options = UpOptions {
        reconcile: args.reconcile,
    };
    let report = match bring_up(&tmux, &file, &options).await {
        Ok(report) => report,
        Err(err @ UpError::Invalid(_)) => {
            return Err(anyhow::anyhow!("{err}\nnothing was created"));
        }
        Err(err) => {
            return Err(err).with_context(|| format!("bringing up {}", args.file.display()));
        }
    };
    if args.json {
        print_json(&json!({
            "file": args.file,
            "sessions": report.sessions,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if report.sessions.is_empty() {
        crate::outln!("{} has no sessions", args.file.display());
    }
    for session in &report.sessions {
        crate::outln!(
            "{} ({}): {}",
            printable(&session.name),
            session.session_id,
            session.outcome
        );
        if let Some(path) = &session.worktree {
            crate::outln!("  worktree: {}", printable(path));
        }
    }
    Ok(ExitCode::SUCCESS)
}
