//! `tmux-agent hooks install|uninstall|status`: our entries in the agents'
//! settings files (see [`crate::status::install`] for how a file is
//! edited).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use super::GlobalArgs;
use super::hook::HookAgent;
use crate::status::install::{self, HookSet, Scope};

/// Put `tmux-agent hook` in an agent's settings, take it out, or see where
/// it is.
///
/// The hooks tell tmux-agent what the agent is doing (working, waiting for
/// you, idle), exactly, as it happens: see "Agent status" in the README.
#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Add our hook entries to the agent's settings (idempotent; the file's
    /// other keys are kept as they are, the previous file kept as .bak).
    #[command(after_help = "Examples:\n  tmux-agent hooks install claude\n  \
        tmux-agent hooks install codex --project\n  \
        tmux-agent hooks install gemini --binary ~/.cargo/bin/tmux-agent\n\n\
        Files: claude ~/.claude/settings.json (--project: .claude/settings.json),\n\
        codex ~/.codex/hooks.json ($CODEX_HOME; --project: .codex/hooks.json),\n\
        gemini ~/.gemini/settings.json (--project: .gemini/settings.json).")]
    Install(InstallArgs),
    /// Remove exactly the entries `install` added.
    #[command(after_help = "Examples:\n  tmux-agent hooks uninstall claude\n  \
        tmux-agent hooks uninstall codex --project")]
    Uninstall(InstallArgs),
    /// Say which agents have our hooks, in which file, for which events.
    #[command(after_help = "Examples:\n  tmux-agent hooks status\n  \
        tmux-agent hooks status --json | jq '.[] | select(.missing != [])'")]
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The agent.
    pub agent: HookAgent,
    /// The project's settings (in the current directory) instead of yours.
    #[arg(long)]
    pub project: bool,
    /// The tmux-agent the hooks run (install only): a path, when tmux-agent
    /// is not on the agent's PATH.
    #[arg(long, value_name = "PATH", default_value = "tmux-agent")]
    pub binary: String,
    /// Print one JSON object: {"file","events","backup"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print a JSON array: [{"agent","scope","path","exists","events","missing"}].
    #[arg(long)]
    pub json: bool,
}

pub async fn run(command: HooksCommand, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let home = crate::paths::home();
    let project = std::env::current_dir().context("reading the current directory")?;
    match command {
        HooksCommand::Install(args) => {
            let (set, path) = target(&args, &home, &project);
            let edit = install::install(&set, &path, &args.binary)?;
            report(&args, "added", &edit)
        }
        HooksCommand::Uninstall(args) => {
            let (set, path) = target(&args, &home, &project);
            let edit = install::uninstall(&set, &path)?;
            report(&args, "removed", &edit)
        }
        HooksCommand::Status(args) => status(&args, &home, &project),
    }
}

fn target(
    args: &InstallArgs,
    home: &std::path::Path,
    project: &std::path::Path,
) -> (HookSet, PathBuf) {
    // Infallible: every HookAgent has hooks.
    let set = HookSet::for_agent(&args.agent.kind()).expect("a hook agent has hooks");
    let scope = if args.project {
        Scope::Project
    } else {
        Scope::User
    };
    let path = set.file(scope, home, project);
    (set, path)
}

fn report(args: &InstallArgs, verb: &str, edit: &install::Edit) -> anyhow::Result<ExitCode> {
    if args.json {
        crate::outln!(
            "{}",
            json!({"file": edit.path, "events": edit.events, "backup": edit.backup})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let agent = args.agent.kind();
    if edit.events.is_empty() {
        crate::outln!(
            "{}: nothing to do ({agent} hooks {})",
            edit.path.display(),
            if verb == "added" {
                "already there"
            } else {
                "not there"
            }
        );
    } else {
        crate::outln!(
            "{}: {verb} {agent} hooks for {}",
            edit.path.display(),
            edit.events.join(", ")
        );
    }
    if let Some(backup) = &edit.backup {
        crate::outln!("the previous file is kept as {}", backup.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn status(
    args: &StatusArgs,
    home: &std::path::Path,
    project: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for agent in [HookAgent::Claude, HookAgent::Codex, HookAgent::Gemini] {
        let set = HookSet::for_agent(&agent.kind()).expect("a hook agent has hooks");
        for (scope, name) in [(Scope::User, "user"), (Scope::Project, "project")] {
            let path = set.file(scope, home, project);
            let row = match install::status(&set, &path) {
                Ok(found) => json!({
                    "agent": agent.kind(), "scope": name, "path": found.path,
                    "exists": found.exists, "events": found.events, "missing": found.missing,
                }),
                Err(err) => json!({
                    "agent": agent.kind(), "scope": name, "path": path, "error": err.to_string(),
                }),
            };
            rows.push(row);
        }
    }
    if args.json {
        crate::outln!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    for row in &rows {
        let what = if let Some(err) = row["error"].as_str() {
            format!("cannot tell: {err}")
        } else if !row["exists"].as_bool().unwrap_or(false) {
            "no file".to_owned()
        } else if row["events"].as_array().is_some_and(Vec::is_empty) {
            "not installed".to_owned()
        } else if row["missing"].as_array().is_some_and(Vec::is_empty) {
            "installed".to_owned()
        } else {
            format!("partly installed (missing: {})", join(&row["missing"]))
        };
        crate::outln!(
            "{:<7} {:<8} {}  {what}",
            row["agent"].as_str().unwrap_or(""),
            row["scope"].as_str().unwrap_or(""),
            row["path"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn join(values: &serde_json::Value) -> String {
    values
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
