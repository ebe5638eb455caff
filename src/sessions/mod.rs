//! Sessions as files (issue #14, DESIGN.md D17): one TOML format for a set
//! of sessions, what `up` creates from it, `down` closes and `freeze`
//! writes; the daemon's snapshots and `restore` use the same types.
//!
//! - [`file`]: the types ([`SessionsFile`] and what it holds), reading with
//!   file/line/key problems, writing.
//! - [`vars`]: `[vars]` placeholders, with the reactor's template rules.
//! - [`check`]: what is refused before anything is created, and why.
//! - [`layout`]: tmux layout strings, checked as tmux checks them.
//! - [`up`]: creating a file's sessions ([`up::bring_up`]), all or nothing.
//! - [`worktree`]: a session's `git worktree`, made and undone.
//! - [`down`]: closing a file's sessions through the normal lifecycle.
//! - [`freeze`]: a server's sessions written as a file.
//! - [`snapshot`]: the daemon's snapshots of each session, in the outbox
//!   database, and how one is read from tmux.
//! - [`keeper`]: the daemon task that takes them.
//! - [`resume`]: the command that resumes an agent's conversation.
//! - [`restore`]: `tmux-agent restore`: snapshots brought back through
//!   [`up::bring_up`].
//! - [`resurrect`]: tmux-resurrect's save files, read for import.

pub mod check;
pub mod down;
pub mod file;
pub mod freeze;
pub mod keeper;
pub mod layout;
pub mod restore;
pub mod resume;
pub mod resurrect;
pub mod snapshot;
pub mod up;
pub mod vars;
pub mod worktree;

pub use file::{
    FileError, PaneCommand, PaneSpec, Problem, Role, SessionSpec, SessionsFile, WindowSpec,
    WorktreeSpec, load, parse,
};
