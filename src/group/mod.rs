//! Coordination groups, kept in tmux user options (DESIGN.md D9).
//!
//! tmux options are the database: a session is in group G while its
//! `@agent-group` is G, whoever set it (`tmux-agent join`, a key binding, a
//! hook, or a plain `tmux set -t '$3' @agent-group G`). The daemon is the only
//! writer of the derived options and rebuilds its whole picture from tmux on
//! every pass, so it never needs its own copy to be right:
//!
//! | session option | value | written by |
//! |---|---|---|
//! | `@agent-group` | group name | user, CLI, hooks |
//! | `@agent-role` | `coordinator` (earliest member) or `member` | daemon |
//! | `@agent-peers` | the other members' names, comma-separated | daemon |
//! | `@agent-joined` | join stamp and group, `SEQ:GROUP` (`7:build`) | daemon |
//! | `@agent-ctx-KEY` | shared context, the same on every member | daemon, `share` |
//!
//! and globally `@agent-groups` (`build:3 review:2`).
//!
//! # Parts
//!
//! - [`names`]: what a group name, a key and a shared value may be.
//! - [`plan`]: the pure rules, from the options found to the groups and the
//!   option writes that make tmux agree (unit-tested without tmux).
//! - [`reconciler`]: the daemon's task that reads tmux over the control
//!   connection, plans, and writes only what differs; woken by the tracker's
//!   snapshots (every listing, including the 1 Hz subscription's notice of a
//!   plain `tmux set @agent-group`), by requests from the CLI, and by a slow
//!   timer that catches hand edits of options the subscription does not watch.
//! - [`direct`]: the same reads and writes with one-shot `tmux` commands
//!   (run by [`crate::control::oneshot`]), for the CLI (and for when no
//!   daemon runs).
//! - [`access`]: what the front ends (the CLI, the built-in MCP server's
//!   group tools) share: the daemon when it answers, else [`direct`]; the
//!   checks and messages of sharing a value.
//!
//! # Shared values are data
//!
//! Values are stored with `set-option -- name value` (never `-F`), so tmux
//! does not expand them when they are set, and a status line that shows
//! `#{@agent-ctx-KEY}` prints a value such as `#(touch x)` as text: tmux does
//! not expand formats inside an option's value (only `#{E:...}` or `#{T:...}`
//! would, so the example configuration never uses them on these options).

pub mod access;
pub mod direct;
pub mod names;
pub mod plan;
pub mod reconciler;

pub use names::{ContextKey, GroupName, InputError};
pub use plan::{GroupView, GroupsReport, MemberView, Role, SessionRef};
pub use reconciler::{GroupError, GroupHandle, Reconciler};
