//! The agent layer: what the daemon does about lifecycle events.
//!
//! - [`template`]: argument templates rendered with JSON values.
//! - [`outbox`]: the durable SQLite queue of MCP calls, and their history.

pub mod outbox;
pub mod template;
