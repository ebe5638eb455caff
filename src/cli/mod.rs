//! The `tmux-agent` command line: the argument tree, and one module per
//! subcommand. Errors here carry context for a person (anyhow); the library
//! below returns typed errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::control::connection::{ConnectOptions, Connection, ControlError, ExitReason};
use crate::control::server::ServerSocket;
use crate::state::{TrackEnd, Tracker};

pub mod config;
pub mod daemon;
pub mod down;
pub mod ensure;
pub mod freeze;
pub mod groups;
pub mod hook;
pub mod hooks;
pub mod inbox;
pub mod join;
pub mod leave;
pub mod look;
pub mod mcp;
pub mod new;
pub mod next_waiting;
pub mod outbox;
pub mod output;
pub mod peers;
pub mod reload;
pub mod restore;
pub mod save;
pub mod send;
pub mod share;
pub mod shell;
pub mod show;
pub mod status;
pub mod stop;
pub mod up;
pub mod watch;

mod coordination;

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
    /// Run the sidecar: follow session lifecycle on the tmux server.
    Daemon(daemon::DaemonArgs),
    /// Print session lifecycle events as they happen.
    Watch(watch::WatchArgs),
    /// Talk to MCP servers: list them, list their tools, call one, show figures.
    #[command(subcommand)]
    Mcp(mcp::McpCommand),
    /// Check or print the effective configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Start the daemon if it is not running (for tmux.conf and hooks).
    Ensure(ensure::EnsureArgs),
    /// Show the daemon's health, or what tmux shows when it is not running.
    Status(status::StatusArgs),
    /// Stop the daemon.
    Stop(stop::StopArgs),
    /// Make the daemon re-read its configuration and rebuild groups.
    Reload(reload::ReloadArgs),
    /// Save a session's context now, through the daemon.
    Save(save::SaveArgs),
    /// Show a session's agent metadata: goal, state, group, saves, calls.
    Show(show::ShowArgs),
    /// List, retry or drop the calls the daemon has not delivered.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// Create a session with its agent options (goal, type, group) set.
    New(new::NewArgs),
    /// Create the sessions of a sessions file (TOML), agent options set.
    Up(up::UpArgs),
    /// Close the sessions of a sessions file.
    Down(down::DownArgs),
    /// Write current sessions as a sessions file that `up` brings back.
    Freeze(freeze::FreezeArgs),
    /// Bring sessions back from the daemon's snapshots, agents resumed.
    Restore(restore::RestoreArgs),
    /// List, show or drop the daemon's session snapshots.
    #[command(subcommand)]
    Snapshots(restore::SnapshotsCommand),
    /// Import a tmux-resurrect save file as snapshots (or a sessions file).
    ImportResurrect(restore::ImportResurrectArgs),
    /// Put a session in a coordination group.
    Join(join::JoinArgs),
    /// Take a session out of its group.
    Leave(leave::LeaveArgs),
    /// Set or remove a value shared by every member of a session's group.
    Share(share::ShareArgs),
    /// Show a session's group: its role, its peers and the shared context.
    Peers(peers::PeersArgs),
    /// List every group with its members and shared context.
    Groups(groups::GroupsArgs),
    /// Print a shell completion script (bash, zsh, fish).
    #[command(
        long_about = "Print a completion script for bash, zsh or fish. Source it from your \
                      shell's startup file. On every TAB the script asks this binary, so \
                      session names (-t) and group names come live from the tmux server \
                      named on the line being completed (-L/-S, else $TMUX).",
        after_help = "Examples:\n  \
            echo 'source <(tmux-agent completions bash)' >> ~/.bashrc\n  \
            echo 'source <(tmux-agent completions zsh)' >> ~/.zshrc\n  \
            tmux-agent completions fish > ~/.config/fish/completions/tmux-agent.fish"
    )]
    Completions(shell::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command.
    #[command(after_help = "Examples:\n  \
        tmux-agent man | man -l -\n  \
        tmux-agent man --dir ~/.local/share/man/man1")]
    Man(shell::ManArgs),
    /// Tell tmux-agent what the agent in this pane is doing (run by the
    /// agent's hooks; always exits 0, prints nothing).
    Hook(hook::HookArgs),
    /// Send a message to an agent (a session, a pane, a group, everyone).
    Send(send::SendArgs),
    /// List the messages to a session.
    Inbox(inbox::InboxArgs),
    /// Switch to the agent that has waited longest for you.
    NextWaiting(next_waiting::NextWaitingArgs),
    /// Install, remove or check the agents' hooks that report their status.
    #[command(subcommand)]
    Hooks(hooks::HooksCommand),
    /// Show the last lines of a pane's text, redacted.
    Look(look::LookArgs),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Daemon(args) => daemon::run(args, &cli.global).await,
        Command::Watch(args) => watch::run(args, &cli.global).await,
        Command::Mcp(cmd) => mcp::run(cmd, &cli.global).await,
        Command::Config(cmd) => config::run(cmd, &cli.global).await,
        Command::Ensure(args) => ensure::run(args, &cli.global).await,
        Command::Status(args) => status::run(args, &cli.global).await,
        Command::Stop(args) => stop::run(args, &cli.global).await,
        Command::Reload(args) => reload::run(args, &cli.global).await,
        Command::Save(args) => save::run(args, &cli.global).await,
        Command::Show(args) => show::run(args, &cli.global).await,
        Command::Outbox(cmd) => outbox::run(cmd, &cli.global).await,
        Command::New(args) => new::run(args, &cli.global).await,
        Command::Up(args) => up::run(args, &cli.global).await,
        Command::Down(args) => down::run(args, &cli.global).await,
        Command::Freeze(args) => freeze::run(args, &cli.global).await,
        Command::Restore(args) => restore::run(args, &cli.global).await,
        Command::Snapshots(cmd) => restore::run_snapshots(cmd, &cli.global).await,
        Command::ImportResurrect(args) => restore::run_import(args, &cli.global).await,
        Command::Join(args) => join::run(args, &cli.global).await,
        Command::Leave(args) => leave::run(args, &cli.global).await,
        Command::Share(args) => share::run(args, &cli.global).await,
        Command::Peers(args) => peers::run(args, &cli.global).await,
        Command::Groups(args) => groups::run(args, &cli.global).await,
        Command::Completions(args) => shell::completions(args),
        Command::Man(args) => shell::man(args),
        // `main` runs it before any runtime exists; here for completeness.
        Command::Hook(args) => Ok(hook::run(&args, &cli.global)),
        Command::Hooks(cmd) => hooks::run(cmd, &cli.global).await,
        Command::Look(args) => look::run(args, &cli.global).await,
        Command::NextWaiting(args) => next_waiting::run(args, &cli.global).await,
        Command::Send(args) => send::run(args, &cli.global).await,
        Command::Inbox(args) => inbox::run(args, &cli.global).await,
    }
}

/// Opens a control connection to the chosen server and starts tracking it,
/// with errors that tell a person what to do.
async fn attach(global: &GlobalArgs, connection: CancellationToken) -> anyhow::Result<Tracker> {
    let server = global.server();
    let connection = match Connection::open(ConnectOptions::new(server.clone()), connection).await {
        Ok(connection) => connection,
        Err(ControlError::NoServer { server }) => {
            anyhow::bail!(
                "no tmux server is running for `{server}`: start one with `{server} new -d`, or pick another server with -L/-S"
            )
        }
        Err(err) => return Err(err).with_context(|| format!("attaching to `{server}`")),
    };
    Tracker::start(connection, server.clone())
        .await
        .with_context(|| format!("reading sessions from `{server}`"))
}

/// A token cancelled when any of `signals` arrives.
fn shutdown_on(signals: &[tokio::signal::unix::SignalKind]) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    let mut streams = Vec::new();
    for kind in signals {
        match tokio::signal::unix::signal(*kind) {
            Ok(stream) => streams.push(stream),
            Err(err) => tracing::warn!(%err, "could not install a signal handler"),
        }
    }
    if streams.is_empty() {
        return token;
    }
    tokio::spawn(async move {
        futures::future::select_all(streams.iter_mut().map(|s| Box::pin(s.recv()))).await;
        cancel.cancel();
    });
    token
}

/// A token cancelled on SIGINT, SIGTERM or SIGHUP (for commands that are
/// not the daemon: for it, SIGHUP means reload).
fn shutdown_on_signal() -> CancellationToken {
    use tokio::signal::unix::SignalKind;
    shutdown_on(&[
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ])
}

/// Says in words why tracking ended.
fn describe_end(end: &TrackEnd, global: &GlobalArgs) -> String {
    let server = global.server();
    match end {
        TrackEnd::LastSessionClosed => format!("the last session on `{server}` closed; stopped"),
        TrackEnd::ServerExited { sessions } => format!(
            "the tmux server of `{server}` exited; its {sessions} session(s) were closed with it; stopped"
        ),
        TrackEnd::Connection(ExitReason::Cancelled) => "stopped".to_owned(),
        TrackEnd::Connection(reason @ (ExitReason::Exit(_) | ExitReason::Eof)) => {
            format!("{reason} (the tmux-agent session was closed or this client was detached)")
        }
        TrackEnd::Connection(reason) => reason.to_string(),
    }
}
