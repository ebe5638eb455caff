//! The control connection: owns the `tmux -C` child, writes commands and
//! resolves each with its reply block, and publishes notifications.
//!
//! # Protocol rules it keeps (DESIGN.md D1, D3)
//!
//! - The client lives in its own session, created or joined with
//!   `new-session -A -s <name> -f no-output,ignore-size`, so it never counts
//!   as a client of a user's session and never receives pane output.
//! - Nothing is written until `%session-changed` arrives: tmux 3.3a runs
//!   commands written earlier *before* the attach command completes.
//! - One command per line, never an empty line (an empty line detaches).
//! - Replies are matched first-in first-out over flags=1 blocks; flags=0
//!   blocks (the command-line command, `after-*` hooks) are unsolicited.
//!
//! # Ownership
//!
//! One task owns the child, its stdin, the decoder and the queue of pending
//! replies; [`ControlHandle`]s talk to it through a channel. That task is the
//! only place where a command is written and its reply slot queued, so the
//! two orders cannot diverge.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::codec::{CodecError, ControlCodec};
use super::command::{Command, CommandError};
use super::message::{ControlEvent, Notification, Reply, SessionId};
use super::server::ServerSocket;

/// The default name of the sidecar's own session.
pub const DEFAULT_SESSION_NAME: &str = "tmux-agent";

/// How many notifications may wait for the consumer before the connection
/// stops reading from tmux (tmux then buffers on its side).
const NOTIFICATION_BACKLOG: usize = 4096;

/// How many commands may wait to be written.
const COMMAND_BACKLOG: usize = 1024;

/// How long to wait for tmux to attach the control client.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// What the pane of the sidecar's session runs: a message for a person who
/// attaches to it by mistake, then a loop that ends the pane, and with it
/// the session, once no client is attached to it (checked every second).
///
/// So the sidecar's session does not outlive its control client: after a
/// SIGKILLed daemon (its `tmux -C` child sees stdin close and exits) it
/// would otherwise keep the server alive once the user's last session
/// closed. tmux's own `destroy-unattached` would do the same at once, but
/// on tmux 3.3a destroying a session whose control client is still
/// detaching crashed the server (about 1 run in 10 by hand; more under the
/// tests): the pane waits until the client is long gone. A daemon that
/// reconnects within the second joins the same session (`new-session -A`).
const SIDECAR_PANE_COMMAND: &str = "printf 'This session carries tmux-agent'\\''s control connection. Detach with prefix d.\\n'; while sleep 1; do [ \"$(tmux display-message -p -t \"$TMUX_PANE\" '#{session_attached}' 2>/dev/null)\" = 0 ] && exit; done";

/// Errors of the control connection.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No tmux server is listening on the socket.
    #[error("no tmux server is running for `{server}`")]
    NoServer { server: ServerSocket },
    /// The `tmux` binary could not be started.
    #[error("could not run tmux ({binary}): {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    /// tmux refused the attach command.
    #[error("tmux refused the control connection: {message}")]
    AttachRefused { message: String },
    /// tmux did not attach within [`ATTACH_TIMEOUT`].
    #[error("tmux did not attach the control client within {0:?}")]
    AttachTimeout(Duration),
    /// tmux answered a command with `%error`.
    #[error("tmux: {message} (command: {command})")]
    Command { command: String, message: String },
    /// The connection ended before the reply arrived.
    #[error("the tmux control connection is closed")]
    Closed,
    /// The stream from tmux could not be decoded.
    #[error("control stream: {0}")]
    Codec(#[from] CodecError),
    /// Writing to tmux failed.
    #[error("writing to tmux: {0}")]
    Io(#[from] std::io::Error),
    /// The attach command could not be built (a NUL in the session name).
    #[error(transparent)]
    Build(#[from] CommandError),
}

/// Whether a write error only means tmux has gone away.
fn is_peer_gone(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::NotConnected
    )
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// tmux printed `%exit`, with its reason if it gave one. A bare `%exit`
    /// means the sidecar's session or the whole server went away, or we detached.
    Exit(Option<String>),
    /// The stream ended without `%exit`.
    Eof,
    /// The stream could not be decoded.
    Protocol(String),
    /// We were asked to stop.
    Cancelled,
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exit(None) => write!(f, "tmux ended the control connection"),
            Self::Exit(Some(reason)) => write!(f, "tmux ended the control connection: {reason}"),
            Self::Eof => write!(f, "the tmux control connection closed"),
            Self::Protocol(err) => write!(f, "the tmux control stream broke: {err}"),
            Self::Cancelled => write!(f, "stopped"),
        }
    }
}

/// How to open a control connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub server: ServerSocket,
    /// The sidecar's own session (created if missing, joined if present).
    pub session_name: String,
    /// The longest line the decoder keeps; longer lines are dropped and reported.
    pub max_line_length: Option<usize>,
}

impl ConnectOptions {
    pub fn new(server: ServerSocket) -> Self {
        Self {
            server,
            session_name: DEFAULT_SESSION_NAME.to_owned(),
            max_line_length: None,
        }
    }
}

/// A cheap, cloneable way to send commands over the connection.
///
/// Every clone shares one slot for the connection's queue, so that
/// [`ControlHandle::follow`] moves all of them to a new connection at once:
/// the daemon reconnects after tmux dropped its client, and the tasks
/// holding a handle (reactor, reconciler, health) go on unchanged.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    requests: Arc<RwLock<mpsc::Sender<Request>>>,
}

struct Request {
    command: Command,
    reply: oneshot::Sender<Result<Reply, ControlError>>,
}

impl ControlHandle {
    fn new(requests: mpsc::Sender<Request>) -> Self {
        Self {
            requests: Arc::new(RwLock::new(requests)),
        }
    }

    /// The queue of the connection this handle points at now.
    fn sender(&self) -> mpsc::Sender<Request> {
        self.requests
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Points this handle, and every clone of it, at `other`'s connection.
    /// Commands already queued on the old one get its answer (or
    /// [`ControlError::Closed`]).
    pub fn follow(&self, other: &ControlHandle) {
        let to = other.sender();
        *self
            .requests
            .write()
            .unwrap_or_else(PoisonError::into_inner) = to;
    }

    /// Sends one command and waits for its reply. A `%error` reply becomes
    /// [`ControlError::Command`] carrying tmux's message.
    pub async fn run(&self, command: Command) -> Result<Reply, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.sender()
            .send(Request { command, reply })
            .await
            .map_err(|_| ControlError::Closed)?;
        answer.await.map_err(|_| ControlError::Closed)?
    }

    /// Queues one command and returns at once with the slot its reply will
    /// arrive in. Commands run in the order they are queued, so a command
    /// queued after this one sees its effect; only the caller's wait for
    /// tmux's answer is saved.
    pub async fn queue(
        &self,
        command: Command,
    ) -> Result<oneshot::Receiver<Result<Reply, ControlError>>, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.sender()
            .send(Request { command, reply })
            .await
            .map_err(|_| ControlError::Closed)?;
        Ok(answer)
    }

    /// Whether the connection task has ended.
    pub fn is_closed(&self) -> bool {
        self.sender().is_closed()
    }
}

#[cfg(test)]
impl ControlHandle {
    /// A handle with no tmux behind it, for unit tests of what sits on top
    /// of a connection: every command's text goes to the returned channel,
    /// and every command succeeds with an empty reply.
    pub(crate) fn recording() -> (ControlHandle, mpsc::UnboundedReceiver<String>) {
        let (requests, mut incoming) = mpsc::channel::<Request>(64);
        let (seen, commands) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Request { command, reply }) = incoming.recv().await {
                let _ = seen.send(command.to_string());
                let _ = reply.send(Ok(Reply {
                    guard: super::message::Guard {
                        time: 0,
                        number: 0,
                        flags: 1,
                    },
                    success: true,
                    lines: Vec::new(),
                    dropped_lines: 0,
                }));
            }
        });
        (ControlHandle::new(requests), commands)
    }
}

/// An open control connection.
pub struct Connection {
    /// Sends commands.
    pub handle: ControlHandle,
    /// Every notification, in wire order (`%exit` included, as the last one).
    pub notifications: mpsc::Receiver<Notification>,
    /// The sidecar's own session, from `%session-changed`.
    pub session: SessionId,
    /// The sidecar session's name as tmux reported it.
    pub session_name: String,
    /// Resolves when the connection has ended, with the reason.
    pub closed: tokio::task::JoinHandle<ExitReason>,
}

impl Connection {
    /// Starts `tmux -C`, waits until it is attached to the sidecar session,
    /// and starts the task that owns it. `shutdown` ends the connection
    /// (closing tmux's stdin detaches the client cleanly).
    pub async fn open(
        options: ConnectOptions,
        shutdown: CancellationToken,
    ) -> Result<Self, ControlError> {
        ensure_server_running(&options.server).await?;

        let attach = Command::control_session(&options.session_name, SIDECAR_PANE_COMMAND)?;
        let mut cmd = options.server.command();
        // `-u`: UTF-8 output, never sanitised; `-C`: control mode.
        cmd.args(["-u", "-C"])
            .args(attach.argv())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| ControlError::Spawn {
            binary: super::server::tmux_binary().to_string_lossy().into_owned(),
            source,
        })?;
        let stdin = child.stdin.take().expect("stdin was piped");
        let stdout = child.stdout.take().expect("stdout was piped");
        let codec = match options.max_line_length {
            Some(limit) => ControlCodec::with_max_line_length(limit),
            None => ControlCodec::new(),
        };
        let mut events = FramedRead::new(stdout, codec);

        let (notify_tx, notifications) = mpsc::channel(NOTIFICATION_BACKLOG);
        let attach = tokio::time::timeout(ATTACH_TIMEOUT, wait_for_attach(&mut events, &notify_tx));
        let (session, session_name) = match attach.await {
            Ok(Ok(attached)) => attached,
            Ok(Err(err)) => {
                let _ = child.kill().await;
                return Err(err);
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(ControlError::AttachTimeout(ATTACH_TIMEOUT));
            }
        };

        let (requests, request_rx) = mpsc::channel(COMMAND_BACKLOG);
        let task = ConnectionTask {
            child,
            stdin: Some(stdin),
            events,
            requests: request_rx,
            pending: VecDeque::new(),
            notifications: notify_tx,
        };
        let closed = tokio::spawn(task.run(shutdown));
        Ok(Self {
            handle: ControlHandle::new(requests),
            notifications,
            session,
            session_name,
            closed,
        })
    }
}

/// Fails fast, with a message a person understands, when no server listens:
/// `new-session -A` would otherwise start a fresh server holding only the
/// sidecar's session.
async fn ensure_server_running(server: &ServerSocket) -> Result<(), ControlError> {
    let running = server
        .is_running()
        .await
        .map_err(|source| ControlError::Spawn {
            binary: super::server::tmux_binary().to_string_lossy().into_owned(),
            source,
        })?;
    if running {
        Ok(())
    } else {
        Err(ControlError::NoServer {
            server: server.clone(),
        })
    }
}

type Events = FramedRead<tokio::process::ChildStdout, ControlCodec>;

/// Reads up to `%session-changed`, the sign that tmux has attached us and
/// will read our commands in order. The flags=0 block of the command-line
/// command comes first; if it is an `%error` block the attach failed.
async fn wait_for_attach(
    events: &mut Events,
    notifications: &mpsc::Sender<Notification>,
) -> Result<(SessionId, String), ControlError> {
    while let Some(event) = events.next().await {
        match event? {
            ControlEvent::Notification(Notification::SessionChanged { session, name }) => {
                return Ok((session, name));
            }
            ControlEvent::Notification(Notification::Exit { reason }) => {
                return Err(ControlError::AttachRefused {
                    message: reason.unwrap_or_else(|| "tmux exited during attach".to_owned()),
                });
            }
            ControlEvent::Notification(other) => {
                // Early notifications (`%window-add`, `%sessions-changed`, a
                // 3.4+ `%config-error`) still matter to the consumer.
                let _ = notifications.send(other).await;
            }
            ControlEvent::Reply(reply) if !reply.success => {
                return Err(ControlError::AttachRefused {
                    message: reply.text(),
                });
            }
            ControlEvent::Reply(_) => {}
            ControlEvent::Stray(line) => {
                tracing::debug!(line = %String::from_utf8_lossy(&line), "stray line before attach");
            }
            ControlEvent::LineTooLong { length } => {
                tracing::warn!(length, "dropped an over-long line from tmux");
            }
        }
    }
    Err(ControlError::AttachRefused {
        message: "tmux closed the connection before attaching".to_owned(),
    })
}

/// The task that owns the child process and the protocol state.
struct ConnectionTask {
    child: Child,
    /// `None` once closed, to detach.
    stdin: Option<ChildStdin>,
    events: Events,
    requests: mpsc::Receiver<Request>,
    /// Reply slots in the order their commands were written.
    pending: VecDeque<(String, oneshot::Sender<Result<Reply, ControlError>>)>,
    notifications: mpsc::Sender<Notification>,
}

impl ConnectionTask {
    async fn run(mut self, shutdown: CancellationToken) -> ExitReason {
        let reason = loop {
            tokio::select! {
                event = self.events.next() => match event {
                    Some(Ok(event)) => {
                        if let Some(reason) = self.on_event(event).await {
                            break reason;
                        }
                    }
                    Some(Err(err)) => break ExitReason::Protocol(err.to_string()),
                    None => break ExitReason::Eof,
                },
                request = self.requests.recv(), if self.stdin.is_some() => match request {
                    Some(request) => self.write(request).await,
                    // Every handle is gone: nobody can ask anything any more.
                    None => break ExitReason::Cancelled,
                },
                () = shutdown.cancelled() => break ExitReason::Cancelled,
            }
        };
        self.finish(&reason).await;
        reason
    }

    /// Writes one command and queues its reply slot.
    async fn write(&mut self, request: Request) {
        let Some(stdin) = self.stdin.as_mut() else {
            let _ = request.reply.send(Err(ControlError::Closed));
            return;
        };
        let line = request.command.to_string();
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        match stdin.write_all(&bytes).await {
            Ok(()) => self.pending.push_back((line, request.reply)),
            // tmux closed its end (the server was killed, or `%exit` is on
            // its way): the reader will see why, so callers get `Closed` and
            // wait for that reason rather than fail on a broken pipe.
            Err(err) if is_peer_gone(&err) => {
                tracing::debug!(error = %err, "tmux closed its input");
                self.stdin = None;
                let _ = request.reply.send(Err(ControlError::Closed));
            }
            Err(err) => {
                let _ = request.reply.send(Err(ControlError::Io(err)));
            }
        }
    }

    /// Handles one decoded event; returns the exit reason on `%exit`.
    async fn on_event(&mut self, event: ControlEvent) -> Option<ExitReason> {
        match event {
            ControlEvent::Reply(reply) if reply.guard.is_ours() => self.resolve(reply),
            ControlEvent::Reply(reply) => {
                // A hook's or the command line's block: nobody waits for it.
                tracing::debug!(
                    lines = reply.lines.len(),
                    success = reply.success,
                    "unsolicited reply block"
                );
            }
            ControlEvent::Notification(Notification::Exit { reason }) => {
                let _ = self
                    .notifications
                    .send(Notification::Exit {
                        reason: reason.clone(),
                    })
                    .await;
                return Some(ExitReason::Exit(reason));
            }
            ControlEvent::Notification(notification) => {
                // The receiver may be gone (a consumer that only sends
                // commands); notifications are then dropped, not an error.
                let _ = self.notifications.send(notification).await;
            }
            ControlEvent::Stray(line) => {
                tracing::debug!(line = %String::from_utf8_lossy(&line), "stray line from tmux");
            }
            ControlEvent::LineTooLong { length } => {
                tracing::warn!(length, "dropped an over-long line from tmux");
            }
        }
        None
    }

    fn resolve(&mut self, reply: Reply) {
        let Some((command, slot)) = self.pending.pop_front() else {
            tracing::warn!(guard = ?reply.guard, "a reply block arrived with no command waiting for it");
            return;
        };
        let result = if reply.success {
            Ok(reply)
        } else {
            Err(ControlError::Command {
                command,
                message: reply.text(),
            })
        };
        // The caller may have given up waiting; that is its business.
        let _ = slot.send(result);
    }

    /// Detaches (closing stdin is tmux's EOF, a clean detach), fails every
    /// waiting command, and reaps the child.
    async fn finish(&mut self, reason: &ExitReason) {
        self.stdin = None;
        for (_, slot) in self.pending.drain(..) {
            let _ = slot.send(Err(ControlError::Closed));
        }
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            let _ = request.reply.send(Err(ControlError::Closed));
        }
        // tmux prints `%exit` and leaves within milliseconds of EOF; a child
        // that does not is killed rather than waited on forever.
        if tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(%reason, "tmux control client did not exit; killing it");
            let _ = self.child.kill().await;
        }
    }
}
