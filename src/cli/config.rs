//! `tmux-agent config ...`: validate and print the effective configuration.

use std::process::ExitCode;

use clap::Subcommand;

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check every config file and print each problem.
    Check,
}

pub async fn run(cmd: ConfigCommand, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Check => anyhow::bail!("not built yet"),
    }
}
