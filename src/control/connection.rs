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
//!
//! # It never stops reading tmux
//!
//! The task's only waits are on tmux itself (its stdout, its stdin) and on
//! new requests; it never waits for a consumer. Notifications that only say
//! "something changed" (`%sessions-changed`, `%window-*`,
//! `%client-detached`, …) set one flag in the [`Notifications`] inbox and
//! are never queued one by one: the consumer re-reads the server, which is
//! the whole truth however many of them came. The few that carry data in
//! order (`%subscription-changed`, `%exit`, `%config-error`, …) are queued,
//! but that queue is bounded without holding the reader back: when it is
//! full the notification is dropped and the inbox says it overflowed, and
//! the consumer re-reads the server. Commands are written from a buffer in
//! the same `select!` as the reads, so a tmux that is slow to take our input
//! does not stop us taking its output either. Whatever tmux sends, this
//! task's memory stays bounded, and a reply the consumer is waiting for is
//! always read (the daemon wedged on exactly that: the reader waited to push
//! a notification into a full queue while the tracker, the queue's one
//! reader, waited for a reply the reader would never read).

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::codec::{CodecError, ControlCodec};
use super::command::{Command, CommandError};
use super::message::{ControlEvent, Notification, Reply, SessionId};
use super::oneshot::{OneShot, OneShotError};
use super::server::ServerSocket;

/// The default name of the sidecar's own session.
pub const DEFAULT_SESSION_NAME: &str = "tmux-agent";

/// How many data-carrying notifications may wait for the consumer; past
/// this they are dropped and the inbox is marked overflowed (see
/// [`Notifications`]). Only a few kinds are queued at all, so in practice
/// the queue holds a handful.
pub const NOTIFICATION_BACKLOG: usize = 1024;

/// How many commands may wait to be taken by the connection task.
const COMMAND_BACKLOG: usize = 1024;

/// How many commands may be written and not yet answered. Past this the
/// task stops taking new requests (their senders wait) but goes on reading
/// tmux, whose replies make room: it bounds the reply slots' memory.
const MAX_IN_FLIGHT: usize = 4096;

/// How many bytes of commands may wait to be written to tmux's stdin before
/// the task stops taking new requests (it goes on reading meanwhile).
const MAX_UNWRITTEN: usize = 1 << 20;

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
/// tests): the pane waits until the client is long gone.
///
/// The loop must never end the session under a control client that is
/// joining it: that too crashed tmux 3.3a (a segfault while the new client
/// attached), or closed the new connection at once. So a daemon never joins
/// a session the loop may be about to end: [`prepare_server`]
/// closes an abandoned one first, and `new-session -A` then creates a fresh
/// one, attached from its first moment.
const SIDECAR_PANE_COMMAND: &str = "printf 'This session carries tmux-agent'\\''s control connection. Detach with prefix d.\\n'; while sleep 1; do [ \"$(tmux display-message -p -t \"$TMUX_PANE\" '#{session_attached}' 2>/dev/null)\" = 0 ] && exit; done";

/// Whether a pane started with these arguments (`#{pane_start_command}`,
/// split) is the sidecar session's pane: how `freeze` leaves the daemon's
/// own session out, whatever it is named.
pub fn is_sidecar_pane(start_command: &[String]) -> bool {
    matches!(start_command, [only] if only == SIDECAR_PANE_COMMAND)
}

/// The command that puts a control client on the sidecar session `name`,
/// joined if it exists, else made with its pane: the command line of the
/// daemon's `tmux -C`, and what its client runs to go back there when
/// another client has moved it (`switch-client -c`).
pub fn sidecar_command(name: &str) -> Result<Command, crate::control::command::CommandError> {
    Command::control_session(name, SIDECAR_PANE_COMMAND)
}

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
    /// What tmux notified: change signals coalesced, data in order
    /// (`%exit` included, as the last one).
    pub notifications: Notifications,
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
        prepare_server(&options.server, &options.session_name).await?;

        let attach = sidecar_command(&options.session_name)?;
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

        let (inbox, notifications) = inbox(NOTIFICATION_BACKLOG);
        let attach = tokio::time::timeout(ATTACH_TIMEOUT, wait_for_attach(&mut events, &inbox));
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
            unwritten: Vec::new(),
            written: 0,
            unsent: VecDeque::new(),
            pending: VecDeque::new(),
            inbox,
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

/// Reads the server's sessions once before attaching, for two things:
/// - to fail fast, with a message a person understands, when no server
///   listens: `new-session -A` would otherwise start a fresh server holding
///   only the sidecar's session;
/// - to close the sidecar session `name` if no client is on it: a killed
///   daemon's session, whose pane loop (see [`SIDECAR_PANE_COMMAND`]) would
///   end it within a second, possibly while our new control client joins
///   it. A session with a client on it is left alone (`new-session -A`
///   joins it).
///
/// One `tmux` for both: each costs a process and a listing of every
/// session, and a daemon starting on many sessions waits for them.
async fn prepare_server(server: &ServerSocket, name: &str) -> Result<(), ControlError> {
    let tmux = OneShot::new(server.clone());
    let list = Command::list_sessions("#{session_attached} #{session_id} #{session_name}")
        .expect("a constant format has no NUL");
    let out = match tmux.run(&list).await {
        Ok(out) => out,
        // Busy, not gone (as `OneShot::is_running` counts it): attaching
        // will tell.
        Err(OneShotError::Timeout { .. }) => return Ok(()),
        Err(OneShotError::NoServer { .. } | OneShotError::Refused { .. }) => {
            return Err(ControlError::NoServer {
                server: server.clone(),
            });
        }
        Err(OneShotError::Spawn(source)) => {
            return Err(ControlError::Spawn {
                binary: super::server::tmux_binary().to_string_lossy().into_owned(),
                source,
            });
        }
    };
    let abandoned = String::from_utf8_lossy(&out).lines().find_map(|line| {
        let mut fields = line.splitn(3, ' ');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("0"), Some(id), Some(listed)) if listed == name => id.parse::<SessionId>().ok(),
            _ => None,
        }
    });
    if let Some(id) = abandoned {
        tracing::info!(session_id = %id, session = name, "closing the sidecar session a previous daemon left, before starting a fresh one");
        // A failure here only leaves the old behaviour.
        let _ = tmux.run(&Command::kill_session(id)).await;
    }
    Ok(())
}

type Events = FramedRead<tokio::process::ChildStdout, ControlCodec>;

/// Reads up to `%session-changed`, the sign that tmux has attached us and
/// will read our commands in order. The flags=0 block of the command-line
/// command comes first; if it is an `%error` block the attach failed.
async fn wait_for_attach(
    events: &mut Events,
    inbox: &Inbox,
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
                inbox.push(other);
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

/// What [`Notifications::recv`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// At least one notification that only says "something changed" came
    /// since the last `Changed` (`%sessions-changed`, `%window-*`,
    /// `%client-detached`, …; see [`is_change_signal`]): however many came,
    /// this is said once. Re-read the server to learn what.
    Changed,
    /// The queue of data-carrying notifications was full and `dropped` of
    /// them were lost. Re-read the server: its listing is the whole truth.
    Overflowed { dropped: u64 },
    /// A notification that carries data, in wire order among its kind.
    Notification(Notification),
}

/// Whether a notification only means "something changed", which a
/// listing of the server tells in full: these are coalesced into one flag,
/// never queued. The data they carry (a window id, a client name) is not
/// what a consumer of this connection acts on; a `%session-renamed`'s new
/// name and a `%client-session-changed`'s session are in the next listing.
pub fn is_change_signal(notification: &Notification) -> bool {
    matches!(
        notification,
        Notification::SessionsChanged
            | Notification::SessionRenamed { .. }
            | Notification::SessionWindowChanged { .. }
            | Notification::ClientSessionChanged { .. }
            | Notification::ClientDetached { .. }
            | Notification::WindowAdd { .. }
            | Notification::UnlinkedWindowAdd { .. }
            | Notification::WindowClose { .. }
            | Notification::UnlinkedWindowClose { .. }
            | Notification::WindowRenamed { .. }
            | Notification::UnlinkedWindowRenamed { .. }
            | Notification::WindowPaneChanged { .. }
            | Notification::PaneModeChanged { .. }
            | Notification::LayoutChange { .. }
            // No pane output reaches us (`no-output`); if some did, it is
            // not ours to keep, and queueing it is how memory would grow.
            | Notification::Output { .. }
            | Notification::ExtendedOutput { .. }
            | Notification::Pause { .. }
            | Notification::Continue { .. }
    )
}

/// The inbox both ends share: a flag, a bounded queue, and a wake-up.
/// Its lock is a `std` mutex held for a push or a take, never across an
/// `.await`, so the connection task never waits on the consumer.
#[derive(Debug)]
struct Shared {
    state: Mutex<InboxState>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct InboxState {
    changed: bool,
    dropped: u64,
    queue: VecDeque<Notification>,
    capacity: usize,
    /// The connection task has ended: nothing more will come.
    closed: bool,
}

/// The connection task's end of the inbox.
#[derive(Debug)]
struct Inbox(Arc<Shared>);

/// The consumer's end of a connection's notifications.
#[derive(Debug)]
pub struct Notifications(Arc<Shared>);

fn inbox(capacity: usize) -> (Inbox, Notifications) {
    let shared = Arc::new(Shared {
        state: Mutex::new(InboxState {
            capacity,
            ..InboxState::default()
        }),
        wake: Notify::new(),
    });
    (Inbox(shared.clone()), Notifications(shared))
}

/// A poisoned lock only means a panic elsewhere mid-push; the state is
/// still a flag, a counter and a queue, each valid on its own.
fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, InboxState> {
    shared
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inbox {
    /// Takes one notification without ever waiting.
    fn push(&self, notification: Notification) {
        {
            let mut state = lock(&self.0);
            if is_change_signal(&notification) {
                state.changed = true;
            } else if state.queue.len() < state.capacity
                || matches!(notification, Notification::Exit { .. })
            {
                // `%exit` is the last line tmux sends, so keeping it past
                // the bound costs one entry, once.
                state.queue.push_back(notification);
            } else {
                state.dropped += 1;
            }
        }
        // One consumer: a stored permit wakes it even if it is not yet
        // waiting.
        self.0.wake.notify_one();
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        lock(&self.0).closed = true;
        self.0.wake.notify_one();
    }
}

impl Notifications {
    /// Waits for the next thing to act on; `None` once the connection has
    /// ended and everything it sent was taken. Overflow comes first, then
    /// the change flag, then queued notifications: each of the first two
    /// asks for a re-read, which also covers what was dropped.
    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            match self.try_recv() {
                Ok(incoming) => return Some(incoming),
                Err(Empty::Closed) => return None,
                Err(Empty::Waiting) => self.0.wake.notified().await,
            }
        }
    }

    /// [`Notifications::recv`] without waiting.
    pub fn try_recv(&mut self) -> Result<Incoming, Empty> {
        let mut state = lock(&self.0);
        if state.dropped > 0 {
            let dropped = std::mem::take(&mut state.dropped);
            return Ok(Incoming::Overflowed { dropped });
        }
        if std::mem::take(&mut state.changed) {
            return Ok(Incoming::Changed);
        }
        if let Some(notification) = state.queue.pop_front() {
            return Ok(Incoming::Notification(notification));
        }
        Err(if state.closed {
            Empty::Closed
        } else {
            Empty::Waiting
        })
    }
}

/// Why [`Notifications::try_recv`] had nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    /// Nothing yet.
    Waiting,
    /// The connection has ended and everything was taken.
    Closed,
}

/// A command's reply slot.
type Slot = oneshot::Sender<Result<Reply, ControlError>>;

/// The task that owns the child process and the protocol state.
struct ConnectionTask {
    child: Child,
    /// `None` once closed, to detach.
    stdin: Option<ChildStdin>,
    events: Events,
    requests: mpsc::Receiver<Request>,
    /// Command bytes not yet taken by tmux's stdin.
    unwritten: Vec<u8>,
    /// How many bytes have been written since the start.
    written: u64,
    /// Commands in `unwritten`, each with the stream position just past its
    /// newline; they move to `pending` once written that far.
    unsent: VecDeque<(u64, String, Slot)>,
    /// Reply slots in the order their commands were written.
    pending: VecDeque<(String, Slot)>,
    inbox: Inbox,
}

impl ConnectionTask {
    async fn run(mut self, shutdown: CancellationToken) -> ExitReason {
        let reason = loop {
            let can_take = self.stdin.is_some()
                && self.unwritten.len() < MAX_UNWRITTEN
                && self.pending.len() + self.unsent.len() < MAX_IN_FLIGHT;
            let can_write = self.stdin.is_some() && !self.unwritten.is_empty();
            tokio::select! {
                // Reading comes first in every round: it is never behind
                // anything but tmux itself.
                biased;
                event = self.events.next() => match event {
                    Some(Ok(event)) => {
                        if let Some(reason) = self.on_event(event) {
                            break reason;
                        }
                    }
                    Some(Err(err)) => break ExitReason::Protocol(err.to_string()),
                    None => break ExitReason::Eof,
                },
                () = shutdown.cancelled() => break ExitReason::Cancelled,
                // `write` is cancel-safe: when another branch wins, no byte
                // of this one was written.
                wrote = write_some(self.stdin.as_mut(), &self.unwritten), if can_write => {
                    self.wrote(wrote);
                }
                request = self.requests.recv(), if can_take => match request {
                    Some(request) => self.take(request),
                    // Every handle is gone: nobody can ask anything any more.
                    None => break ExitReason::Cancelled,
                },
            }
        };
        self.finish(&reason).await;
        reason
    }

    /// Appends one command to the bytes to write, and queues its slot.
    fn take(&mut self, request: Request) {
        let line = request.command.to_string();
        self.unwritten.extend_from_slice(line.as_bytes());
        self.unwritten.push(b'\n');
        let end = self.written + self.unwritten.len() as u64;
        self.unsent.push_back((end, line, request.reply));
    }

    /// Accounts for one write: written commands await their replies.
    fn wrote(&mut self, wrote: std::io::Result<usize>) {
        match wrote {
            // A write of nothing from a non-empty buffer: tmux is gone.
            Ok(0) => self.wrote(Err(std::io::ErrorKind::BrokenPipe.into())),
            Ok(n) => {
                self.unwritten.drain(..n);
                self.written += n as u64;
                while self
                    .unsent
                    .front()
                    .is_some_and(|(end, ..)| *end <= self.written)
                {
                    let (_, line, slot) = self.unsent.pop_front().expect("checked");
                    self.pending.push_back((line, slot));
                }
            }
            // tmux closed its end (the server was killed, or `%exit` is on
            // its way): the reader will see why, so callers get `Closed` and
            // wait for that reason rather than fail on a broken pipe.
            Err(err) if is_peer_gone(&err) => {
                tracing::debug!(error = %err, "tmux closed its input");
                self.stdin = None;
                self.fail_unsent(|| ControlError::Closed);
            }
            Err(err) => {
                // Which bytes tmux took is unknown, so the stream is no
                // longer in step with the slots: stop writing; the reader
                // still sees how the connection ends.
                tracing::warn!(error = %err, "writing to tmux failed");
                self.stdin = None;
                let message = err.to_string();
                self.fail_unsent(|| ControlError::Io(std::io::Error::other(message.clone())));
            }
        }
    }

    fn fail_unsent(&mut self, error: impl Fn() -> ControlError) {
        self.unwritten.clear();
        for (_, _, slot) in self.unsent.drain(..) {
            let _ = slot.send(Err(error()));
        }
    }

    /// Handles one decoded event; returns the exit reason on `%exit`.
    /// Never waits: notifications go to the inbox, replies to their slots.
    fn on_event(&mut self, event: ControlEvent) -> Option<ExitReason> {
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
                self.inbox.push(Notification::Exit {
                    reason: reason.clone(),
                });
                return Some(ExitReason::Exit(reason));
            }
            // A consumer that never reads (one that only sends commands)
            // costs a flag and at most NOTIFICATION_BACKLOG entries.
            ControlEvent::Notification(notification) => self.inbox.push(notification),
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
        self.fail_unsent(|| ControlError::Closed);
        for (_, slot) in self.pending.drain(..) {
            let _ = slot.send(Err(ControlError::Closed));
        }
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            let _ = request.reply.send(Err(ControlError::Closed));
        }
        // tmux prints `%exit` and leaves within milliseconds of EOF; a child
        // that does not is killed rather than waited on forever.
        if tokio::time::timeout(CHILD_EXIT_GRACE, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(%reason, "tmux control client did not exit; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// How long a closing connection waits for its `tmux -C` child to leave
/// before killing it: part of the daemon's shutdown bound.
pub const CHILD_EXIT_GRACE: Duration = Duration::from_secs(2);

/// One write of as much of `bytes` as stdin takes now.
async fn write_some(stdin: Option<&mut ChildStdin>, bytes: &[u8]) -> std::io::Result<usize> {
    match stdin {
        Some(stdin) => stdin.write(bytes).await,
        // Not reached: the branch is disabled without stdin.
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::message::WindowId;

    fn subscription(n: u8) -> Notification {
        Notification::SubscriptionChanged {
            name: "s".into(),
            session: SessionId(1),
            window: None,
            window_index: None,
            pane: None,
            value: bytes::Bytes::from(vec![n]),
        }
    }

    #[test]
    fn change_signals_are_one_flag_and_the_queue_drops_past_its_bound() {
        let (inbox, mut notifications) = inbox(3);
        for n in 0..10_000 {
            inbox.push(Notification::SessionsChanged);
            inbox.push(Notification::UnlinkedWindowRenamed {
                window: WindowId(n),
                name: "x".into(),
            });
        }
        for n in 0..5 {
            inbox.push(subscription(n));
        }
        assert_eq!(lock(&inbox.0).queue.len(), 3, "memory stays bounded");
        inbox.push(Notification::Exit { reason: None });
        drop(inbox);
        let mut seen = Vec::new();
        while let Ok(incoming) = notifications.try_recv() {
            seen.push(incoming);
        }
        assert_eq!(
            seen,
            [
                Incoming::Overflowed { dropped: 2 },
                Incoming::Changed,
                Incoming::Notification(subscription(0)),
                Incoming::Notification(subscription(1)),
                Incoming::Notification(subscription(2)),
                Incoming::Notification(Notification::Exit { reason: None }),
            ]
        );
        assert_eq!(notifications.try_recv(), Err(Empty::Closed));
    }
}
