//! `tmux-agent look`: a pane's last lines of text, redacted with
//! `[context] redact` (see [`crate::messages::look`]).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::GlobalArgs;
use crate::configuration::Configuration;
use crate::control::oneshot::OneShot;
use crate::messages::look::{self, DEFAULT_LINES, MAX_LINES};

/// Show the last lines of a pane's text, with `[context] redact` applied.
///
/// TARGET is a pane or session as tmux takes it: `%3`, `work` (its active
/// pane), `=work:` (exactly that name), `work:1.2`. Escape sequences are
/// left out (colours are not shown); wrapped lines are joined. Refused when
/// config.toml has problems, since its redaction patterns might be lost.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  tmux-agent look -t %3\n  \
    tmux-agent look -t =work: -n 100\n  \
    tmux-agent look -t work --json | jq -r '.lines[]'")]
pub struct LookArgs {
    /// The pane (or session: its active pane) to look at.
    #[arg(short = 't', long = "target", value_name = "TARGET")]
    pub target: String,
    /// How many lines, from the bottom (the screen's unused rows skipped).
    #[arg(short = 'n', long = "lines", value_name = "LINES", default_value_t = DEFAULT_LINES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_LINES as u64))]
    pub lines: usize,
    /// One JSON object: {"pane","session_id","session","lines":[...]}.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: LookArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let configuration = Configuration::load(global.config.clone())
        .await
        .context("loading the configuration")?;
    let patterns = look::redaction(&configuration)?;
    let server = global.server();
    let seen = look::look(&OneShot::new(server), &args.target, args.lines, &patterns).await?;
    if args.json {
        crate::outln!("{}", serde_json::to_string(&seen)?);
    } else {
        for line in &seen.lines {
            crate::outln!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
