//! `tmux-agent config ...`: validate and print the effective configuration.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use std::time::Duration;

use super::GlobalArgs;
use crate::agent::fit::{self, Outcome};
use crate::config::ConfigDuration;
use crate::configuration::Configuration;
use crate::mcp::McpPool;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check every config file and print each problem.
    #[command(
        long_about = "Read config.toml and the Claude files MCP servers are imported from, and \
                      print each problem as `file: key: what is expected`. Warnings (a server \
                      skipped because a ${VAR} is unset, a field tmux-agent ignores) are \
                      printed with a `warning:` prefix. Exit status 1 when there is a problem.\n\n\
                      Then every [[on.*]] action (and the preset's) is checked against the tool it \
                      calls, when its server answers within --probe-timeout: a tool the server \
                      does not have, a required field the args do not give, {context} (an \
                      object) or {observations} (an array) where the tool wants a string. These \
                      are warnings; --strict makes them problems. --offline skips this.",
        after_help = "Examples:\n  tmux-agent config check\n  tmux-agent config check --strict\n  tmux-agent --config ./test.toml config check --offline"
    )]
    Check(CheckArgs),
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
pub struct CheckArgs {
    /// Actions that do not fit their tools are problems (exit 1), not
    /// warnings; so is a server that cannot be asked.
    #[arg(long, conflicts_with = "offline")]
    strict: bool,
    /// Do not connect to the servers: check the files only.
    #[arg(long)]
    offline: bool,
    /// How long each server gets to list its tools (all are asked at once).
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    probe_timeout: String,
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
        ConfigCommand::Check(args) => check(&configuration, args).await,
        ConfigCommand::Show(args) => show(&configuration, args),
    }
}

async fn check(configuration: &Configuration, args: CheckArgs) -> anyhow::Result<ExitCode> {
    for problem in &configuration.problems {
        crate::outln!("{problem}");
    }
    for warning in &configuration.warnings {
        crate::outln!("warning: {warning}");
    }
    let mut misfits = 0;
    if !args.offline && configuration.problems.is_empty() {
        let within = ConfigDuration::parse(&args.probe_timeout)
            .map_err(|e| anyhow::anyhow!("--probe-timeout: {e}"))?
            .0;
        let file = configuration.servers.config_path.display().to_string();
        for finding in tools_fit(configuration, within).await {
            let (label, text) = match &finding.outcome {
                Outcome::Misfit(misfit) => (
                    if args.strict { "" } else { "warning: " },
                    misfit.to_string(),
                ),
                Outcome::NotChecked(why) => (
                    if args.strict { "" } else { "warning: " },
                    format!(
                        "not checked against {}.{}: {why}",
                        finding.server, finding.tool
                    ),
                ),
            };
            crate::outln!("{label}{file}: {}: {text}", finding.key);
            misfits += 1;
        }
    }
    let discovered = &configuration.servers;
    if configuration.problems.is_empty() && !(args.strict && misfits > 0) {
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

/// Every action checked against its tool, on a pool of only the servers
/// the actions call, each connected within `within`.
async fn tools_fit(configuration: &Configuration, within: Duration) -> Vec<fit::Finding> {
    let actions = &configuration.reactor.actions;
    let mut specs = configuration.servers.servers.clone();
    specs.retain(|s| actions.values().flatten().any(|a| a.server == s.name));
    for spec in &mut specs {
        spec.settings.connect_timeout = spec.settings.connect_timeout.min(within);
    }
    let pool = McpPool::from_specs(specs, Vec::new());
    let findings = fit::check_all(actions, &pool, within).await;
    pool.shutdown().await;
    findings
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
