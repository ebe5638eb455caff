//! The agent layer: what the daemon does about lifecycle events.
//!
//! - [`trigger`]: what makes actions fire (lifecycle events, checkpoint, save).
//! - [`actions`]: which calls to make on which trigger; the presets.
//! - [`settings`]: the reactor's settings, checked, from the config file.
//! - [`identity`]: the server's identity and the session key built from it.
//! - [`reactor`]: the task loop: events in, actions committed.
//! - `decide`: which calls an event causes, and the states they leave.
//! - `vars`: the values templates are rendered with.
//! - [`dispatch`]: one dispatcher per MCP server sending what is due.
//! - [`pending`]: `@agent-pending`, written by one writer, paced.
//! - [`template`]: argument templates rendered with JSON values.
//! - [`fit`]: whether the actions' templates fit the tools' input schemas.
//! - [`context`]: what is saved about a session, captured through tmux.
//! - [`outbox`]: the durable SQLite queue of MCP calls, and their history.
//! - [`journal`]: the daemon's model of each session, committed with the
//!   actions, and the diff at start that finds what happened meanwhile.

pub mod actions;
pub mod context;
mod decide;
pub mod dispatch;
#[cfg(test)]
mod fake;
pub mod fit;
pub mod identity;
pub mod journal;
pub mod outbox;
pub mod pending;
pub mod reactor;
pub mod settings;
pub mod template;
pub mod trigger;
mod vars;
