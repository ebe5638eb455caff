//! The CLI's side of the socket: connect, check that the daemon is ours,
//! send one request, read one response; or, for `events`, read the header
//! and then follow the stream ([`subscribe`]).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::endpoint::{Endpoint, effective_uid};
use super::message::{Request, Response};
use crate::events::DaemonEvent;

/// The longest response accepted (a status with many groups is a few KiB).
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens: no socket file, or a stale one.
    #[error("the tmux-agent daemon is not running for `{server}`")]
    NotRunning { server: String },
    /// The socket is there but belongs to someone else.
    #[error(
        "the daemon socket {socket} is served by uid {uid}, not by you (uid {ours}); refusing to talk to it"
    )]
    ForeignDaemon { socket: String, uid: u32, ours: u32 },
    #[error("the daemon did not answer within {0:?}")]
    Timeout(Duration),
    #[error("talking to the daemon at {socket}: {source}")]
    Io {
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon's answer is not understood ({0}); is it a different tmux-agent version?")]
    BadResponse(String),
}

/// How long each request may take, end to end.
pub fn deadline(request: &Request) -> Duration {
    match request {
        // For `events`, until the header: the stream itself has no end.
        Request::Status
        | Request::McpStats
        | Request::Events { .. }
        | Request::AgentStatus { .. }
        | Request::StopHook { .. } => Duration::from_secs(2),
        Request::Send(_)
        | Request::Messages { .. }
        | Request::Inbox { .. }
        | Request::Ack { .. } => Duration::from_secs(10),
        Request::Stop => Duration::from_secs(5),
        Request::Reconcile | Request::Share { .. } => Duration::from_secs(10),
        Request::Reload => Duration::from_secs(30),
        // The daemon's wait, and time to capture the context and answer.
        Request::Save { timeout_secs, .. } => {
            Duration::from_secs(timeout_secs.unwrap_or(10).min(super::MAX_SAVE_WAIT_SECS) + 5)
        }
    }
}

/// Sends `request` to the daemon of `endpoint` and returns its response,
/// within the request's [`deadline`].
pub async fn request(endpoint: &Endpoint, request: &Request) -> Result<Response, ClientError> {
    let limit = deadline(request);
    tokio::time::timeout(limit, exchange(endpoint, request))
        .await
        .map_err(|_| ClientError::Timeout(limit))?
}

async fn exchange(endpoint: &Endpoint, request: &Request) -> Result<Response, ClientError> {
    let (mut read, _write) = send_request(endpoint, request).await?;
    read_response(&mut read, endpoint).await
}

/// Connects to the daemon of `endpoint`, checks that it is ours, and sends
/// `request`. The write half is handed back open: closing it is not how a
/// follower says it has gone (dropping the connection is).
async fn send_request(
    endpoint: &Endpoint,
    request: &Request,
) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf), ClientError> {
    let socket = endpoint.socket.display().to_string();
    let io = |source| ClientError::Io {
        socket: socket.clone(),
        source,
    };
    let stream = match UnixStream::connect(&endpoint.socket).await {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NotRunning {
                server: endpoint.server.clone(),
            });
        }
        Err(err) => return Err(io(err)),
    };
    let ours = effective_uid();
    let peer = stream.peer_cred().map_err(io)?;
    if peer.uid() != ours {
        return Err(ClientError::ForeignDaemon {
            socket,
            uid: peer.uid(),
            ours,
        });
    }
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(|e| io(std::io::Error::other(e)))?;
    line.push(b'\n');
    write.write_all(&line).await.map_err(io)?;
    Ok((BufReader::new(read), write))
}

/// Reads one response line (at most [`MAX_RESPONSE`] bytes).
async fn read_response(
    read: &mut BufReader<OwnedReadHalf>,
    endpoint: &Endpoint,
) -> Result<Response, ClientError> {
    let answer = read_line(read, endpoint).await?;
    if answer.is_empty() {
        // The daemon closed without a word: it is shutting down.
        return Err(ClientError::NotRunning {
            server: endpoint.server.clone(),
        });
    }
    serde_json::from_slice(&answer).map_err(|e| ClientError::BadResponse(e.to_string()))
}

/// One line, without its newline; empty at the end of the stream.
async fn read_line(
    read: &mut BufReader<OwnedReadHalf>,
    endpoint: &Endpoint,
) -> Result<Vec<u8>, ClientError> {
    let mut line = Vec::new();
    (&mut *read)
        .take(MAX_RESPONSE)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|source| ClientError::Io {
            socket: endpoint.socket.display().to_string(),
            source,
        })?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(line)
}

/// A follower of the daemon's events (see [`subscribe`]).
#[derive(Debug)]
pub struct EventFollower {
    read: BufReader<OwnedReadHalf>,
    /// Kept open while following: the daemon sees the follower go when
    /// the connection drops.
    _write: OwnedWriteHalf,
    endpoint: Endpoint,
    /// The line read so far: kept across calls, so that [`Self::next`]
    /// can be cancelled (a `select!`) without losing part of a line.
    pending: Vec<u8>,
    /// The daemon's pid, from the header.
    pub pid: u32,
    /// How many of the lines to come are kept events replayed.
    pub replayed: usize,
}

/// One line of an events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamLine {
    /// An event: the line as the daemon wrote it, and what it says when
    /// this version of tmux-agent knows its kind (`None` for an event a
    /// newer daemon tells).
    Event {
        line: String,
        event: Option<DaemonEvent>,
    },
    /// The follower fell behind and `missed` events were dropped for it.
    Lagged { missed: u64 },
}

impl EventFollower {
    /// The next line; `None` once the daemon has ended the stream (it
    /// stopped). Cancel-safe: a line partly read is finished next time.
    pub async fn next(&mut self) -> Result<Option<StreamLine>, ClientError> {
        let read = (&mut self.read)
            .take(MAX_RESPONSE)
            .read_until(b'\n', &mut self.pending)
            .await
            .map_err(|source| ClientError::Io {
                socket: self.endpoint.socket.display().to_string(),
                source,
            })?;
        if read == 0 && self.pending.is_empty() {
            return Ok(None);
        }
        let mut line = std::mem::take(&mut self.pending);
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Ok(Response::Lagged { missed }) = serde_json::from_slice::<Response>(&line) {
            return Ok(Some(StreamLine::Lagged { missed }));
        }
        let event = serde_json::from_slice::<DaemonEvent>(&line).ok();
        let line = String::from_utf8(line).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        Ok(Some(StreamLine::Event { line, event }))
    }
}

/// Starts following the daemon's events on `endpoint`: the kept events
/// published at or after `since`, then the live ones. Fails like
/// [`request`] when no daemon (of ours) listens, within its deadline.
pub async fn subscribe(
    endpoint: &Endpoint,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<EventFollower, ClientError> {
    let request = Request::Events { since };
    let limit = deadline(&request);
    let started = async {
        let (mut read, write) = send_request(endpoint, &request).await?;
        match read_response(&mut read, endpoint).await? {
            Response::Events { pid, replayed } => Ok(EventFollower {
                read,
                _write: write,
                endpoint: endpoint.clone(),
                pending: Vec::new(),
                pid,
                replayed,
            }),
            Response::Error { message } => Err(ClientError::BadResponse(format!(
                "the daemon refused to stream its events: {message}"
            ))),
            other => Err(ClientError::BadResponse(format!(
                "expected the events header, got {other:?}"
            ))),
        }
    };
    tokio::time::timeout(limit, started)
        .await
        .map_err(|_| ClientError::Timeout(limit))?
}
