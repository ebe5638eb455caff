//! Messages between agents (DESIGN.md D16).
//!
//! - [`pane`]: typing a message into an agent's pane, gated on the agent
//!   being at its prompt and nobody typing, and verified.

pub mod pane;
