//! `tmux-agent mcp ...`: talk to the configured MCP servers.

use std::process::ExitCode;

use clap::Subcommand;

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// List the configured MCP servers.
    Servers,
    /// Run the built-in MCP server (goals and session contexts in SQLite) on stdio or HTTP.
    Serve(crate::mcp::serve::ServeArgs),
}

pub async fn run(cmd: McpCommand, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        McpCommand::Servers => anyhow::bail!("not built yet"),
        McpCommand::Serve(args) => crate::mcp::serve::run(args.with_tmux_server(_global.server()))
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    }
}
