//! tmux-agent: a sidecar for tmux that turns control-mode notifications into
//! session lifecycle events, calls MCP tools on them, and keeps coordination
//! groups in tmux user options.
//!
//! # Layout
//!
//! - [`control`]: the tmux control-mode protocol: message types, nom parsers,
//!   the tokio-util codec, command quoting and builders, and the connection
//!   that owns the `tmux -C` child.
//! - [`state`]: the model of sessions and clients, and the lifecycle events
//!   derived from it.
//! - [`config`]: the config file (`config.toml`): schema, parser, problems.
//! - [`configuration`]: the one loader: MCP servers, reactor settings,
//!   problems and warnings together.
//! - [`mcp`]: MCP client configuration, one supervisor per server, metrics,
//!   and the built-in MCP server.
//! - [`agent`]: what the daemon does about events: templates, the outbox.
//! - [`group`]: coordination groups kept in tmux options, and their reconciler.
//! - [`daemon`]: the sidecar as a library function: everything above wired
//!   together on one tmux server, stopped by a token handed in.
//! - [`ipc`]: the CLI ↔ daemon socket.
//! - [`events`]: the daemon's event stream, followed over the socket.
//! - [`notify`]: `[notify]`: messages, the bell, notify-send and a webhook when an agent waits.
//! - [`status`]: the agent in each pane and its status (hooks first).
//! - [`messages`]: messages between agents: typing them into panes, verified.
//! - [`cli`]: one file per subcommand of the `tmux-agent` binary.
//! - [`backoff`]: the one retry delay (doubling, capped, jittered).
//! - [`supervise`]: long-lived tasks restarted, logged and counted when they panic.
//! - [`fault`]: the faults tests inject through environment variables.
//! - [`heap`]: the daemon's allocator: one arena, memory given back after a burst.
//! - [`paths`]: where files live (XDG directories).
//! - [`schema`]: the name of every `@agent-*` tmux option, and `@agent-state`'s values.
//! - [`sessions`]: sessions as files: the TOML format, `up`, `down`, `freeze`,
//!   the daemon's snapshots and `restore`.

pub mod agent;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod configuration;
pub mod control;
pub mod daemon;
pub mod events;
pub mod fault;
pub mod group;
pub mod heap;
pub mod ipc;
pub mod mcp;
pub mod messages;
pub mod notify;
pub mod paths;
pub mod schema;
pub mod sessions;
pub mod state;
pub mod status;
pub mod supervise;
