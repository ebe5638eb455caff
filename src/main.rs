//! The `tmux-agent` binary: parse arguments, set up logging, dispatch.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tmux_agent::cli::{self, Cli};

fn main() -> ExitCode {
    // A TAB in a shell that sourced `tmux-agent completions`: answer, exit.
    cli::shell::complete_if_asked();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap exits 2 on bad arguments, which an agent reads as "block
        // this": a hook line that does not parse must still exit 0.
        Err(err) if std::env::args_os().any(|arg| arg == "hook") && err.use_stderr() => {
            return ExitCode::SUCCESS;
        }
        Err(err) => err.exit(),
    };
    // A hook runs inside an agent's turn: it must cost next to nothing, so
    // it runs without a runtime and without a log subscriber (it writes its
    // own log; see cli::hook).
    if let cli::Command::Hook(args) = &cli.command {
        return cli::hook::run(args, &cli.global);
    }
    if let cli::Command::Daemon(_) = &cli.command {
        // Before the runtime starts its threads.
        tmux_agent::heap::one_arena();
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(err) => {
            eprintln!("tmux-agent: could not start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    // The daemon's log is its record of what happened; other commands speak
    // through their output and only log problems.
    let default_level = match cli.command {
        cli::Command::Daemon(_) => "info,rmcp=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TMUX_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli::run(cli).await {
        Ok(code) => code,
        // The reader of our output has gone (`| head`): it saw what it
        // wanted, so this is a success, and nothing is said.
        Err(err) if cli::output::is_closed_stdout(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tmux-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}
