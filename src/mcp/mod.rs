//! MCP: client configuration, supervised connections, metrics, and the
//! built-in server.
//!
//! - [`discovery`]: find the servers in `config.toml` and Claude's files.
//! - [`expand`]: `${VAR}` / `${VAR:-default}` expansion.
//! - [`spec`]: a resolved server: transport, source, settings.

pub mod discovery;
pub mod expand;
pub mod spec;
