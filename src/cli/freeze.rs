//! `tmux-agent freeze`: write the current sessions as a sessions file
//! ([`crate::sessions::freeze::freeze`]), that `up` brings back.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::GlobalArgs;
use crate::control::oneshot::OneShot;
use crate::sessions::freeze::{Which, freeze};

/// Write the current state of sessions as a sessions file: windows (index,
/// name, layout), panes (directory, start command), goal, type, group and
/// the other @agent-* options users set, and each pane's agent and its
/// conversation id when tmux-agent knows them.
///
/// `tmux-agent up` of the file on a fresh server makes the same windows and
/// panes. A pane started as the default shell comes back as a shell (what
/// was typed into it is not replayed).
#[derive(Debug, Args)]
#[command(
    group = clap::ArgGroup::new("which").required(true).args(["targets", "all"]),
    after_help = "Examples:\n  tmux-agent freeze --all -o ~/team.toml\n  tmux-agent freeze -t api -t web > two.toml\n  tmux-agent freeze --all -o team.toml && tmux kill-server && tmux-agent up team.toml"
)]
pub struct FreezeArgs {
    /// A session to freeze (name, =name or $id); repeat for more.
    #[arg(
        short = 't',
        value_name = "SESSION",
        add = clap_complete::engine::ArgValueCandidates::new(super::shell::session_candidates)
    )]
    pub targets: Vec<String>,
    /// Freeze every session (but the daemon's own).
    #[arg(long)]
    pub all: bool,
    /// Write the file here (default: standard output).
    #[arg(short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub async fn run(args: FreezeArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let server = global.server();
    let tmux = OneShot::new(server.clone());
    let which = if args.all {
        Which::All
    } else {
        Which::Sessions(args.targets.clone())
    };
    let file = freeze(&tmux, &which)
        .await
        .with_context(|| format!("freezing sessions of `{server}`"))?;
    // What `up` would refuse is said now, while the sessions still exist.
    if let Err(problems) = file.validate() {
        eprintln!(
            "tmux-agent: warning: `up` will refuse this file until these are fixed:\n{problems}"
        );
    }
    let body = file.to_toml().context("writing the sessions as TOML")?;
    let text = format!(
        "# Frozen by `tmux-agent freeze` from `{server}` at {}.\n# Bring it back with `tmux-agent up FILE`; the format: docs/sessions.md.\n\n{body}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    match &args.output {
        Some(path) => {
            let mut out = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            out.write_all(text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "froze {} session(s) to {}",
                file.sessions.len(),
                path.display()
            );
        }
        None => crate::cli::output::write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
