//! The `tmux-agent` command line: the argument tree, and one module per
//! subcommand. Errors here carry context for a person (anyhow); the library
//! below returns typed errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::control::server::ServerSocket;

pub mod config;
pub mod mcp;

/// A sidecar for tmux: tracks session lifecycle, calls MCP tools on it, and
/// keeps coordination groups in tmux options.
#[derive(Debug, Parser)]
#[command(name = "tmux-agent", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand understands.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Use the tmux server with this socket name, like `tmux -L`.
    #[arg(
        short = 'L',
        global = true,
        value_name = "SOCKET_NAME",
        conflicts_with = "socket_path"
    )]
    pub socket_name: Option<String>,
    /// Use the tmux server at this socket path, like `tmux -S`.
    #[arg(short = 'S', global = true, value_name = "SOCKET_PATH")]
    pub socket_path: Option<PathBuf>,
    /// Read this config file instead of ~/.config/tmux-agent/config.toml.
    #[arg(long, global = true, value_name = "FILE", env = "TMUX_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
}

impl GlobalArgs {
    /// The tmux server these flags (or `$TMUX`) name.
    pub fn server(&self) -> ServerSocket {
        ServerSocket::choose(self.socket_name.clone(), self.socket_path.clone())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Talk to MCP servers: list them, list their tools, call one, show figures.
    #[command(subcommand)]
    Mcp(mcp::McpCommand),
    /// Check or print the effective configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Mcp(cmd) => mcp::run(cmd, &cli.global).await,
        Command::Config(cmd) => config::run(cmd, &cli.global).await,
    }
}
