//! The CLI's side of the socket: connect, check that the daemon is ours,
//! send one request, read one response.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::endpoint::{Endpoint, effective_uid};
use super::message::{Request, Response};

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
        Request::Status | Request::McpStats | Request::AgentStatus { .. } => Duration::from_secs(2),
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

    let mut answer = Vec::new();
    BufReader::new(read)
        .take(MAX_RESPONSE)
        .read_until(b'\n', &mut answer)
        .await
        .map_err(io)?;
    if answer.is_empty() {
        // The daemon closed without a word: it is shutting down.
        return Err(ClientError::NotRunning {
            server: endpoint.server.clone(),
        });
    }
    serde_json::from_slice(&answer).map_err(|e| ClientError::BadResponse(e.to_string()))
}
