//! The CLI ↔ daemon socket (DESIGN.md D10).
//!
//! Newline-delimited JSON over a Unix socket, one request and one response
//! per connection: simple to reason about and to try by hand
//! (`echo '{"request":"status"}' | socat - UNIX:...`). The socket lives in a
//! 0700 runtime directory, is itself 0600, and both ends check the other's
//! uid (`SO_PEERCRED`): a root client is refused too.
//!
//! - [`message`]: the requests and responses.
//! - [`endpoint`]: the runtime directory, the socket and lock file names, and
//!   the `flock` that keeps one daemon per tmux server.
//! - [`server`]: the daemon's accept loop and the [`server::Handler`] trait
//!   the daemon implements (the IPC layer owns no daemon state).
//! - [`client`]: one request from the CLI.

pub mod client;
pub mod endpoint;
pub mod message;
pub mod server;

pub use client::{ClientError, request};
pub use endpoint::{DaemonLock, Endpoint, EndpointError, lock_holder};
pub use message::{
    ActionsStatus, CallState, MAX_SAVE_WAIT_SECS, McpServerStatus, Request, Response, SaveReport,
    SavedCall, StatusReport,
};
pub use server::{Handler, IpcServer, MAX_REQUEST};
