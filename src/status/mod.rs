//! Agents in panes (DESIGN.md D15): which agent runs where and what it is
//! doing, from the agents' own hooks first and guesses second.
//!
//! - [`model`]: kinds, statuses, observations, and the [`Board`] that
//!   merges them (hooks win).
//! - [`hook`]: what each agent's hook events mean (the mapping tables).
//! - [`install`]: our entries in the agents' settings files.
//! - [`keeper`]: the daemon task that owns the board, takes observations
//!   and writes `@agent-status` and friends to tmux.
//! - [`panes`]: the agents as the pane options show them (for `show`,
//!   `whoami`, `next-waiting`, with or without a daemon).
//! - [`process`]: which panes run an agent, from their foreground process.
//! - [`activity`]: the fallback for agents without hooks: pane output
//!   (piped by tmux) marks activity; a settled screen is read once.
//! - [`prompt`]: what a settled screen says, per agent (the shipped
//!   patterns and `[agents.NAME]`).

pub mod activity;
pub mod hook;
pub mod install;
pub mod keeper;
pub mod model;
pub mod panes;
pub mod process;
pub mod prompt;

pub use keeper::{KeeperHandle, ObservationSender};
pub use model::{AgentKind, AgentStatus, Board, Change, Observation, PaneAgent, Source};
