//! `tmux-agent config ...`: validate and print the effective configuration.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::GlobalArgs;
use crate::configuration::Configuration;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check every config file and print each problem.
    #[command(
        long_about = "Read config.toml and the Claude files MCP servers are imported from, and \
                      print each problem as `file: key: what is expected`. Warnings (a server \
                      skipped because a ${VAR} is unset, a field tmux-agent ignores) are \
                      printed with a `warning:` prefix. Exit status 1 when there is a problem.",
        after_help = "Examples:\n  tmux-agent config check\n  tmux-agent --config ./test.toml config check"
    )]
    Check,
    /// Print the effective configuration, with each server's source file.
    #[command(
        long_about = "Print the configuration in effect: the [mcp] defaults as written, then \
                      every MCP server with the file it came from, its transport (${VAR}s \
                      expanded) and its settings with defaults filled in. Env and header \
                      values are masked.",
        after_help = "Examples:\n  tmux-agent config show\n  tmux-agent config show --json | jq '.servers | keys'"
    )]
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Print JSON instead of TOML.
    #[arg(long)]
    json: bool,
}

/// Runs a `config` subcommand.
pub async fn run(cmd: ConfigCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let configuration = Configuration::load(global.config.clone()).await?;
    match cmd {
        ConfigCommand::Check => check(&configuration),
        ConfigCommand::Show(args) => show(&configuration, args),
    }
}

fn check(configuration: &Configuration) -> anyhow::Result<ExitCode> {
    for problem in &configuration.problems {
        crate::outln!("{problem}");
    }
    for warning in &configuration.warnings {
        crate::outln!("warning: {warning}");
    }
    let discovered = &configuration.servers;
    if configuration.problems.is_empty() {
        let files: Vec<String> = discovered
            .files_read
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        crate::outln!(
            "config OK: {} MCP server(s), {} skipped; files read: {}",
            discovered.servers.len(),
            discovered.skipped.len(),
            if files.is_empty() {
                "none".to_string()
            } else {
                files.join(", ")
            }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

fn show(configuration: &Configuration, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let discovered = &configuration.servers;
    let mut servers = Map::new();
    for spec in &discovered.servers {
        let masked = spec.masked();
        let mut entry = serde_json::to_value(&masked.transport)?;
        entry["source"] = json!(masked.source.file);
        entry["scope"] = json!(masked.source.scope.to_string());
        entry["settings"] = serde_json::to_value(&masked.settings)?;
        servers.insert(spec.name.clone(), entry);
    }
    let mut skipped = Map::new();
    for s in &discovered.skipped {
        skipped.insert(
            s.name.clone(),
            json!({"source": s.source.file, "scope": s.source.scope.to_string(), "reason": s.reason}),
        );
    }
    let effective = json!({
        "config_file": discovered.config_path,
        "files_read": discovered.files_read,
        "mcp": discovered.config.mcp,
        "servers": servers,
        "skipped": skipped,
    });
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&effective)?);
    } else {
        crate::outln!("{}", toml::to_string_pretty(&without_nulls(effective))?);
    }
    Ok(if configuration.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// TOML has no null: drop null members (they mean "unset").
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}
