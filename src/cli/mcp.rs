//! `tmux-agent mcp ...`: talk to the configured MCP servers.

use std::process::ExitCode;

use clap::Subcommand;

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// List the configured MCP servers.
    Servers,
}

pub async fn run(cmd: McpCommand, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        McpCommand::Servers => anyhow::bail!("not built yet"),
    }
}
