//! The daemon's side of the socket: accept, check the peer, read one
//! request, let the [`Handler`] answer, write one response, close. An
//! `events` request is followed instead: the header, then the daemon's
//! events one per line until the daemon stops or the follower goes.
//!
//! The IPC layer owns no daemon state: the daemon implements [`Handler`],
//! and this module only moves requests and responses. Each connection is a
//! task of its own with deadlines, so a client that connects and says
//! nothing, or a slow answer, holds up nobody else.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::endpoint::{DaemonLock, EndpointError, effective_uid};
use super::message::{Request, Response, SaveReport, StatusReport};
use crate::control::SessionId;
use crate::events::Subscription;
use crate::group::{ContextKey, GroupsReport};
use crate::messages::{Message, MessageId, MessagesError, SendRequest};
use crate::status::Observation;

/// The longest request line accepted: a message body at the largest cap
/// `[messages] max_body` allows, escaped as JSON (a control character
/// takes six bytes), with room for the rest.
pub const MAX_REQUEST: usize = 6 * crate::messages::policy::MAX_MAX_BODY + 64 * 1024;

/// How long a client may take to send its request.
const READ_DEADLINE: Duration = Duration::from_secs(5);

/// How long the handler may take to answer.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

/// How long shutdown waits for connections in progress (a `stop` answer).
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// What the daemon does about each request. Every method answers for the
/// requester; a failure is a typed [`Handler::Error`], put into words only
/// here at the edge, as the `error` response.
pub trait Handler: Send + Sync + 'static {
    /// Why a request could not be carried out.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The daemon's health. Must answer from what is already known (no
    /// waiting on tmux or an MCP server): `status` is how a person finds out
    /// what is stuck.
    fn status(&self) -> impl Future<Output = StatusReport> + Send;
    /// Begins a clean shutdown; returns at once.
    fn stop(&self) -> impl Future<Output = ()> + Send;
    /// Re-reads the configuration and rebuilds groups; answers with what
    /// changed, in words.
    fn reload(&self) -> impl Future<Output = Result<String, Self::Error>> + Send;
    /// Rebuilds groups from tmux options now.
    fn reconcile(&self) -> impl Future<Output = Result<GroupsReport, Self::Error>> + Send;
    /// Sets or removes a key of the shared context of `session`'s group.
    fn share(
        &self,
        session: SessionId,
        key: ContextKey,
        value: Option<String>,
    ) -> impl Future<Output = Result<GroupsReport, Self::Error>> + Send;
    /// Saves `session`'s context now, waiting at most `wait` for the calls.
    fn save(
        &self,
        session: SessionId,
        wait: Duration,
    ) -> impl Future<Output = Result<SaveReport, Self::Error>> + Send;
    /// The live MCP figures, as a JSON array of server stats. Like
    /// `status`, answered from what is already known.
    fn mcp_stats(&self) -> impl Future<Output = serde_json::Value> + Send;
    /// A new follower of the daemon's events, with the kept ones published
    /// at or after `since`.
    fn events(&self, since: Option<chrono::DateTime<chrono::Utc>>) -> Subscription;
    /// Hands an agent's observation to the status keeper, without waiting
    /// on tmux; `false` if it was dropped. `in_turn`: the hook event shows
    /// the agent took what its `Stop` hook was handed.
    fn agent_status(
        &self,
        observation: Observation,
        in_turn: bool,
    ) -> impl Future<Output = bool> + Send;
    /// Posts a message (checked against `[messages]`).
    fn send(
        &self,
        request: SendRequest,
    ) -> impl Future<Output = Result<Vec<Message>, MessagesError>> + Send;
    /// The messages with these ids or send ids.
    fn messages(
        &self,
        ids: Vec<MessageId>,
    ) -> impl Future<Output = Result<Vec<Message>, MessagesError>> + Send;
    /// A session's messages, newest last.
    fn inbox(
        &self,
        session: SessionId,
        unread_only: bool,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Message>, MessagesError>> + Send;
    /// `by` has read `id`.
    fn ack(
        &self,
        id: MessageId,
        by: SessionId,
    ) -> impl Future<Output = Result<Message, MessagesError>> + Send;
    /// A Claude `Stop` hook: hands over the pane's next message (unless
    /// `stop_hook_active`) and takes the status; `(accepted, text)`.
    fn stop_hook(
        &self,
        observation: Observation,
        stop_hook_active: bool,
    ) -> impl Future<Output = (bool, Option<String>)> + Send;
}

/// How many messages an inbox request lists when it does not say.
pub const INBOX_LIMIT: usize = 100;

/// The daemon's listening socket. Dropping it removes the socket file.
#[derive(Debug)]
pub struct IpcServer {
    listener: UnixListener,
    path: PathBuf,
}

impl IpcServer {
    /// Binds the socket of the endpoint whose lock we hold, replacing a
    /// stale socket file (holding the lock proves no daemon listens there).
    pub fn bind(lock: &DaemonLock) -> Result<Self, EndpointError> {
        let path = lock.endpoint().socket.clone();
        let io = |what, source| EndpointError::Io {
            what,
            path: path.clone(),
            source,
        };
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(socket = %path.display(), "removed a stale socket file"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io("removing", err)),
        }
        let listener = UnixListener::bind(&path).map_err(|e| io("binding", e))?;
        // The directory is 0700 already; the socket is closed as well.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("restricting", e))?;
        Ok(Self { listener, path })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Accepts connections until `shutdown`, answering each with `handler`;
    /// then waits briefly for answers in progress.
    pub async fn serve<H: Handler>(self, handler: Arc<H>, shutdown: CancellationToken) {
        let connections = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let (handler, shutdown) = (handler.clone(), shutdown.clone());
                    connections.spawn(async move {
                        if let Err(err) = answer(stream, &*handler, &shutdown).await {
                            tracing::debug!(error = %err, "IPC connection");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accepting an IPC connection");
                    // EMFILE and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        connections.close();
        let _ = tokio::time::timeout(DRAIN_DEADLINE, connections.wait()).await;
    }
}

impl Drop for IpcServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves one connection; a stream of events ends at `shutdown`.
async fn answer<H: Handler>(
    stream: UnixStream,
    handler: &H,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let peer = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    let ours = effective_uid();
    if peer.uid() != ours {
        tracing::warn!(peer_uid = peer.uid(), pid = ?peer.pid(), "refused an IPC request from another user");
        let refusal = Response::Error {
            message: format!(
                "permission denied: this daemon serves uid {ours} only, and you are uid {}",
                peer.uid()
            ),
        };
        return send(&mut write, &refusal).await;
    }

    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64 + 1);
    let read = tokio::time::timeout(READ_DEADLINE, reader.read_until(b'\n', &mut line)).await;
    let response = match read {
        Err(_) => Response::Error {
            message: format!("no request within {READ_DEADLINE:?}"),
        },
        Ok(Err(err)) => return Err(err),
        Ok(Ok(_)) if line.len() > MAX_REQUEST => Response::Error {
            message: format!("request longer than {MAX_REQUEST} bytes"),
        },
        Ok(Ok(_)) => match Request::parse(&line) {
            Ok(Request::Events { since }) => {
                tracing::debug!("IPC events follower");
                return follow(&mut write, handler.events(since), shutdown).await;
            }
            Ok(request) => {
                tracing::debug!(request = request.name(), "IPC request");
                match tokio::time::timeout(ANSWER_DEADLINE, dispatch(handler, request)).await {
                    Ok(response) => response,
                    Err(_) => Response::Error {
                        message: format!("the daemon did not answer within {ANSWER_DEADLINE:?}"),
                    },
                }
            }
            Err(message) => Response::Error { message },
        },
    };
    send(&mut write, &response).await
}

async fn dispatch<H: Handler>(handler: &H, request: Request) -> Response {
    match request {
        Request::Status => Response::Status(Box::new(handler.status().await)),
        Request::Stop => {
            handler.stop().await;
            Response::Stopping {
                pid: std::process::id(),
            }
        }
        Request::Reload => answer_with(handler.reload().await, |message| Response::Reloaded {
            message,
        }),
        Request::Reconcile => answer_with(handler.reconcile().await, Response::Groups),
        Request::Share {
            session,
            key,
            value,
        } => {
            // The CLI checked the value too; the daemon does not rely on it.
            if let Some(Err(err)) = value.as_deref().map(crate::group::names::check_value) {
                return Response::Error {
                    message: err.to_string(),
                };
            }
            answer_with(handler.share(session, key, value).await, Response::Groups)
        }
        Request::Save {
            session,
            timeout_secs,
        } => {
            let wait = timeout_secs
                .unwrap_or(10)
                .min(super::message::MAX_SAVE_WAIT_SECS);
            answer_with(
                handler.save(session, Duration::from_secs(wait)).await,
                Response::Saved,
            )
        }
        Request::McpStats => Response::McpStats {
            servers: handler.mcp_stats().await,
        },
        // Answered by `follow`, never here.
        Request::Events { .. } => Response::Error {
            message: "an events request is a stream".to_owned(),
        },
        Request::AgentStatus {
            observation,
            in_turn,
        } => Response::Observed {
            accepted: handler.agent_status(observation, in_turn).await,
        },
        Request::Send(request) => messages_answer(handler.send(request).await),
        Request::Messages { ids } => messages_answer(handler.messages(ids).await),
        Request::Inbox {
            session,
            unread_only,
            limit,
        } => messages_answer(
            handler
                .inbox(session, unread_only, limit.unwrap_or(INBOX_LIMIT))
                .await,
        ),
        Request::Ack { id, by } => messages_answer(handler.ack(id, by).await.map(|m| vec![m])),
        Request::StopHook {
            observation,
            stop_hook_active,
        } => {
            let (accepted, text) = handler.stop_hook(observation, stop_hook_active).await;
            Response::HandedOver { accepted, text }
        }
    }
}

/// Writes an `events` stream: the header, the replay, then each event as
/// it is published, until the daemon stops (`shutdown`, or the stream's
/// end) or a write fails (the follower went). A follower that falls too
/// far behind is told how many it missed, and goes on.
async fn follow(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    subscription: Subscription,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    use tokio::sync::broadcast::error::RecvError;
    let Subscription { replay, mut live } = subscription;
    let header = Response::Events {
        pid: std::process::id(),
        replayed: replay.len(),
    };
    write_line(write, &header).await?;
    for event in &replay {
        write_line(write, event).await?;
    }
    loop {
        let next = tokio::select! {
            next = live.recv() => next,
            () = shutdown.cancelled() => break,
        };
        match next {
            Ok(event) => write_line(write, &event).await?,
            Err(RecvError::Lagged(missed)) => {
                write_line(write, &Response::Lagged { missed }).await?;
            }
            Err(RecvError::Closed) => break,
        }
    }
    write.shutdown().await
}

/// One JSON line.
async fn write_line<T: serde::Serialize>(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    value: &T,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await
}

/// The response for a handler's outcome: its answer, or its error in words.
/// The error's message is the whole story: errors in this crate say their
/// cause in their message (or are transparent over one that does).
fn answer_with<T, E: std::error::Error>(
    outcome: Result<T, E>,
    answer: impl FnOnce(T) -> Response,
) -> Response {
    match outcome {
        Ok(value) => answer(value),
        Err(err) => Response::Error {
            message: err.to_string(),
        },
    }
}

/// The response for a messages request: the messages, a refusal with its
/// rule, or the error in words.
fn messages_answer(outcome: Result<Vec<Message>, MessagesError>) -> Response {
    match outcome {
        Ok(messages) => Response::Messages { messages },
        Err(MessagesError::Refused(refusal)) => Response::Refused {
            rule: refusal.rule.to_owned(),
            message: refusal.message,
        },
        Err(err) => Response::Error {
            message: err.to_string(),
        },
    }
}

async fn send(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    write_line(write, response).await?;
    write.shutdown().await
}
