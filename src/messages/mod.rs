//! Messages between agents (DESIGN.md D16).
//!
//! - [`look`]: a pane's last lines, redacted (`tmux-agent look`, the
//!   built-in server's `look` tool).
//! - [`pane`]: typing a message into an agent's pane, gated on the agent
//!   being at its prompt and nobody typing, and verified.

pub mod look;
pub mod pane;
