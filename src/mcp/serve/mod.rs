//! The built-in MCP server, `tmux-agent mcp serve`: goals and saved session
//! contexts in SQLite, plus tools an agent in a tmux pane calls about its own
//! session. With no MCP servers configured the daemon spawns it over stdio
//! like any other server (one code path), and an agent can add the same
//! command to its own MCP config; both can run at once on one database.
//!
//! - [`store`]: the SQLite file, schema, transactions, idempotency ledger.
//! - [`goals`], [`contexts`]: the tools' data and the SQL behind them.
//! - [`agent`]: the pane's own session and its `@agent-*` tmux options.
//! - [`agents`]: the other agents: `list_agents` and `look` (a peer's
//!   pane text, redacted, within the caller's group).
//! - [`groups`]: the session's coordination group (peers, shared context),
//!   through the same group layer as the CLI.
//! - [`messages`]: `send_message`, `broadcast`, `read_messages`,
//!   `ack_message`, through the daemon's mailbox.
//! - [`snapshots`]: `list_snapshots`, `restore_hint`, `restore_goal`: the
//!   daemon's session snapshots and restored sessions' goals.
//! - [`tools`]: the MCP surface (tool list, schemas, checks on every call).
//! - [`prompts`]: `resume-session`, a session's last context and goals.
//! - [`resources`]: goals and saved contexts as `tmux-agent://` resources.
//! - [`live`]: live tmux sessions as resources, read from tmux.
//! - [`watch`]: sessions coming and going, for `list_changed` and
//!   `updated` notifications.
//! - [`wire`]: an answer to every message, even one rmcp cannot read.
//! - [`http`]: Streamable HTTP on a loopback address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use crate::control::server::ServerSocket;

pub mod agent;
pub mod agents;
pub mod contexts;
pub mod goals;
pub mod groups;
pub mod http;
pub mod live;
pub mod messages;
pub mod prompts;
pub mod resources;
pub mod snapshots;
pub mod store;
pub mod tools;
pub mod watch;
pub mod wire;

pub use tools::{BuiltinServer, Limits};

/// Arguments of `tmux-agent mcp serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Serve Streamable HTTP at this loopback address (e.g. 127.0.0.1:8765),
    /// endpoint /mcp, instead of stdio. Port 0 picks a free port; the address
    /// is printed on stderr.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// The SQLite database [default: $XDG_DATA_HOME/tmux-agent/builtin.db,
    /// or ~/.local/share/tmux-agent/builtin.db].
    #[arg(long, value_name = "PATH", env = "TMUX_AGENT_DB")]
    pub db: Option<PathBuf>,
    /// Largest size of one tool argument, in bytes of JSON; bigger values are
    /// refused with a tool error.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_value_bytes: usize,
    /// Saves of one session's context kept in its history.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_saves: u32,
    /// Largest JSON-RPC message read (a stdio line or an HTTP body), in
    /// bytes; a longer one is answered with error -32600 and dropped.
    #[arg(long, value_name = "BYTES", default_value_t = wire::DEFAULT_MAX_MESSAGE_BYTES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(64..))]
    pub max_message_bytes: usize,
    /// The tmux server the agent tools talk to; `None` means the one in
    /// `$TMUX` (else tmux's default). The CLI sets it from `-L`/`-S`.
    #[arg(skip)]
    pub tmux_server: Option<ServerSocket>,
    /// The config file `look` reads (`[context] redact`,
    /// `look_outside_group`); `None`: the default place. The CLI sets it
    /// from `--config`.
    #[arg(skip)]
    pub config_file: Option<PathBuf>,
}

impl ServeArgs {
    /// These arguments with the agent tools aimed at `server`.
    pub fn with_tmux_server(mut self, server: ServerSocket) -> Self {
        self.tmux_server = Some(server);
        self
    }

    /// These arguments with `look` reading `config_file`.
    pub fn with_config_file(mut self, config_file: Option<PathBuf>) -> Self {
        self.config_file = config_file;
        self
    }
}

/// Why the server could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "no place for the database: set $XDG_DATA_HOME or $HOME, or pass --db or $TMUX_AGENT_DB"
    )]
    NoDataDir,
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(
        "--http {0}: only loopback addresses (127.0.0.1, ::1) are served; this server has no authentication"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("MCP handshake on stdio failed: {0}")]
    Initialize(Box<rmcp::service::ServerInitializeError>),
    #[error("internal error: {0}")]
    Join(tokio::task::JoinError),
}

impl From<tokio::task::JoinError> for ServeError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::Join(error)
    }
}

/// Runs the server until its client disconnects (stdio) or until SIGINT or
/// SIGTERM (both transports).
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let path = match args.db {
        Some(path) => path,
        None => default_db_path().ok_or(ServeError::NoDataDir)?,
    };
    let store = tokio::task::spawn_blocking(move || store::Store::open(&path)).await??;
    tracing::debug!(db = %store.path().display(), "built-in MCP server database open");
    let store = Arc::new(Mutex::new(store));
    let limits = Limits {
        max_value_bytes: args.max_value_bytes,
        keep_saves: args.keep_saves,
    };
    let mut tmux = agent::TmuxEnv::from_env(args.tmux_server);
    tmux.config_file = args.config_file;

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let sessions = watch::SessionWatch::new(tmux.clone(), shutdown.clone());
    let new_server =
        move || BuiltinServer::new(Arc::clone(&store), limits, tmux.clone(), sessions.clone());
    match args.http {
        Some(addr) => {
            http::serve(
                addr,
                new_server,
                args.max_message_bytes,
                shutdown,
                |bound| {
                    // The one line a script or test reads to find the port.
                    eprintln!(
                        "tmux-agent mcp serve: listening on http://{bound}{}",
                        http::ENDPOINT
                    );
                },
            )
            .await
        }
        None => {
            let (stdin, stdout) = rmcp::transport::stdio_pipes();
            let transport = wire::StdioTransport::new(stdin, stdout, args.max_message_bytes);
            let running = new_server()
                .serve(transport)
                .await
                .map_err(|err| ServeError::Initialize(Box::new(err)))?;
            let stop = running.cancellation_token();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                stop.cancel();
            });
            let quit = running.waiting().await?;
            tracing::debug!(?quit, "stdio MCP session ended");
            Ok(())
        }
    }
}

/// `$XDG_DATA_HOME/tmux-agent/builtin.db`, else
/// `~/.local/share/tmux-agent/builtin.db`. A relative `$XDG_DATA_HOME` is
/// ignored, as the XDG spec says.
pub fn default_db_path() -> Option<PathBuf> {
    default_db_path_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn default_db_path_from(
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let data = xdg_data_home
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            home.map(PathBuf::from)
                .filter(|dir| dir.is_absolute())
                .map(|home| home.join(".local/share"))
        })?;
    Some(data.join("tmux-agent").join("builtin.db"))
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        tracing::warn!("cannot watch SIGTERM; it will stop the server abruptly");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_path_prefers_absolute_xdg_data_home() {
        assert_eq!(
            default_db_path_from(Some("/x/data".into()), Some("/home/u".into())),
            Some(PathBuf::from("/x/data/tmux-agent/builtin.db"))
        );
        assert_eq!(
            default_db_path_from(Some("rel".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.local/share/tmux-agent/builtin.db"))
        );
        assert_eq!(
            default_db_path_from(None, Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.local/share/tmux-agent/builtin.db"))
        );
        assert_eq!(default_db_path_from(None, None), None);
    }
}
