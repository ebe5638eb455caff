//! Agents in panes (DESIGN.md D15): which agent runs where and what it is
//! doing, from the agents' own hooks first and guesses second.
//!
//! - [`model`]: kinds, statuses, observations, and the [`Board`] that
//!   merges them (hooks win).
//! - [`hook`]: what each agent's hook events mean (the mapping tables).
//! - [`keeper`]: the daemon task that owns the board, takes observations
//!   and writes `@agent-status` and friends to tmux.

pub mod hook;
pub mod keeper;
pub mod model;

pub use keeper::{KeeperHandle, ObservationSender};
pub use model::{AgentKind, AgentStatus, Board, Change, Observation, PaneAgent, Source};
