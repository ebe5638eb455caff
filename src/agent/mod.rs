//! The agent layer: what the daemon does about lifecycle events.
//!
//! - [`actions`]: which calls to make on which event; the presets.
//! - [`reactor`]: events in, actions committed, calls dispatched.
//! - [`settings`]: the reactor's settings from the config file.
//! - [`template`]: argument templates rendered with JSON values.
//! - [`context`]: what is saved about a session, captured through tmux.
//! - [`outbox`]: the durable SQLite queue of MCP calls, and their history.

pub mod actions;
pub mod context;
pub mod outbox;
pub mod reactor;
pub mod settings;
pub mod template;
