//! Sessions as files and snapshots (issue #14, DESIGN.md D17).
//!
//! - [`snapshot`]: the daemon's snapshots of each session, in the outbox
//!   database, and how one is read from tmux.
//! - [`keeper`]: the daemon task that takes them.
//! - [`resume`]: the command that resumes an agent's conversation.
//! - [`restore`]: `tmux-agent restore`: snapshots brought back.
//! - [`resurrect`]: tmux-resurrect's save files, read for import.

pub mod keeper;
pub mod restore;
pub mod resume;
pub mod resurrect;
pub mod snapshot;
