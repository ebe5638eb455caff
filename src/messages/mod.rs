//! Messages between agents (DESIGN.md D16, issue #13): durable in SQLite,
//! delivered when the recipient is at its prompt, through its hook where it
//! has one, verified, once.
//!
//! - [`envelope`]: ids, senders, recipients, targets, the envelope line.
//! - [`mailbox`]: the SQLite mailbox and the message states.
//! - [`policy`]: `[messages]`: scope, body cap, rate, expiry.
//! - [`service`]: the daemon's side of `send`, `inbox`, `ack` and the
//!   `Stop` hook's hand-over ([`Messages`]).
//! - [`scheduler`]: the daemon task that delivers, retries and expires.
//! - [`pane`]: typing a message into an agent's pane, gated on the agent
//!   being at its prompt and nobody typing, and verified.
//! - [`look`]: a pane's last lines, redacted (`tmux-agent look`, the
//!   built-in server's `look` tool).

pub mod envelope;
pub mod look;
pub mod mailbox;
pub mod pane;
pub mod policy;
pub mod scheduler;
pub mod service;

pub use envelope::{MessageId, Recipient, Sender, Target};
pub use mailbox::{Mailbox, Message, MessageState};
pub use policy::Policy;
pub use service::{MessageEvent, Messages, MessagesError, SendRequest};
