//! MCP: client configuration, supervised connections, metrics, and the
//! built-in server.
//!
//! - [`discovery`]: find the servers in `config.toml` and Claude's files.
//! - [`expand`]: `${VAR}` / `${VAR:-default}` expansion.
//! - [`spec`]: a resolved server: transport, source, settings.
//! - [`pool`]: [`McpPool`], the entry point: calls, tool lists, status, stats.
//! - [`supervisor`]: one task per server owning its connection.
//! - [`connect`]: opening one connection (transport, handshake, version check).
//! - [`process`]: the spawned server's process group, stderr, stdout guard.
//! - [`metrics`]: counters and latency histograms per server and tool.
//! - [`error`]: [`CallError`] and [`ConnectError`].
//! - [`serve`]: the built-in MCP server (`tmux-agent mcp serve`).

pub mod connect;
pub mod discovery;
pub mod error;
pub mod expand;
pub mod metrics;
pub mod pool;
pub mod process;
pub mod serve;
pub mod spec;
pub mod supervisor;

pub use error::{CallError, ConnectError};
pub use pool::{CallOptions, McpPool, OutputSource, ServerStatus, ToolOutput};
