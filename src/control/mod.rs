//! The tmux control-mode protocol (`tmux -C`).
//!
//! Bytes flow one way through [`codec`] (LF framing and block assembly, with
//! the line forms parsed in [`parse`]) into the values of [`message`];
//! commands flow the other way as [`command::Command`]s, each one quoted line
//! (or one argv, for a one-shot `tmux`).
//! [`connection`] owns the tmux child process and matches replies to commands.
//! [`server`] says which tmux server to talk to; [`oneshot`] runs commands
//! as short-lived `tmux` processes where there is no connection; [`options`]
//! reads user options back from `show-options`.

pub mod codec;
pub mod command;
pub mod connection;
pub mod message;
pub mod oneshot;
pub mod options;
pub mod parse;
pub mod server;

pub use message::{ControlEvent, Guard, Notification, PaneId, Reply, SessionId, WindowId};
