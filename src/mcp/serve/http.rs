//! Streamable HTTP for the built-in server: rmcp's `StreamableHttpService`
//! served by hyper on a loopback address, at `/mcp`.
//!
//! Loopback only: the server has no authentication, and what it stores
//! (terminal contents) is private. rmcp checks the `Host` header against
//! loopback names, which stops DNS-rebinding pages in a browser.
//!
//! In front of rmcp, every POST body goes through [`super::wire::read`]: one
//! it cannot handle gets HTTP 400 with a JSON-RPC error (rmcp answers 415
//! with plain text, which clients do not read as an answer). A session
//! `DELETE` answers 200 when the session was there and 404 when it was not
//! (rmcp answers 202 to both).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use super::ServeError;
use super::tools::BuiltinServer;
use super::wire::{self, Inbound, Rejection};

/// The path of the MCP endpoint.
pub const ENDPOINT: &str = "/mcp";

/// How long open connections get to finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

type McpService = StreamableHttpService<BuiltinServer, LocalSessionManager>;
type McpRequest = Request<Full<Bytes>>;
type McpResponse = <McpService as Service<McpRequest>>::Response;

/// What every connection needs to answer a request.
#[derive(Clone)]
struct Endpoint {
    service: McpService,
    sessions: Arc<LocalSessionManager>,
    max_body: usize,
}

/// Binds `addr` (which must be a loopback address) and serves MCP there
/// until `shutdown` is cancelled. `on_bound` is told the address actually
/// bound (port 0 picks a free port).
pub async fn serve(
    addr: SocketAddr,
    new_server: impl Fn() -> BuiltinServer + Send + Sync + 'static,
    max_body: usize,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback(addr));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| ServeError::Bind { addr, error })?;
    let bound = listener
        .local_addr()
        .map_err(|error| ServeError::Bind { addr, error })?;
    on_bound(bound);

    let config =
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
    let sessions = Arc::new(LocalSessionManager::default());
    let endpoint = Endpoint {
        service: StreamableHttpService::new(
            move || Ok(new_server()),
            Arc::clone(&sessions),
            config,
        ),
        sessions,
        max_body,
    };
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: keep serving the
                    // connections we have rather than exiting.
                    tracing::warn!(error = %err, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let endpoint = endpoint.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let handler =
                hyper::service::service_fn(move |request| route(endpoint.clone(), request));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
            }
        });
    }
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after {DRAIN_TIMEOUT:?}; exiting anyway");
    }
    Ok(())
}

/// Sends `/mcp` to the MCP service and anything else to 404, answering
/// bodies the service cannot read and session deletes itself.
async fn route(
    mut endpoint: Endpoint,
    request: Request<Incoming>,
) -> Result<McpResponse, Infallible> {
    if request.uri().path() != ENDPOINT {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "not found: the MCP endpoint is /mcp\n",
        ));
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, endpoint.max_body).collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) if err.is::<LengthLimitError>() => {
            return Ok(rejected(&Rejection::too_long(endpoint.max_body)));
        }
        Err(err) => {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {err}\n"),
            ));
        }
    };
    if parts.method == Method::POST {
        match wire::read(&body) {
            Inbound::Message(_) => {}
            // An HTTP request always gets an answer, even an empty body.
            Inbound::Ignore if body.iter().all(u8::is_ascii_whitespace) => {
                return Ok(rejected(&Rejection::empty()));
            }
            Inbound::Ignore => return Ok(text(StatusCode::ACCEPTED, "")),
            Inbound::Reject(rejection) => return Ok(rejected(&rejection)),
        }
    }
    let delete = parts.method == Method::DELETE;
    if delete
        && let Some(id) = parts
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        && !endpoint.sessions.sessions.read().await.contains_key(id)
    {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "not found: no such session (it ended, or the server restarted)\n",
        ));
    }
    let mut response = match endpoint
        .service
        .call(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    Ok(response)
}

/// The header that names a Streamable HTTP session.
const SESSION_HEADER: &str = "mcp-session-id";

fn text(status: StatusCode, body: &str) -> McpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())).boxed());
    *response.status_mut() = status;
    response
}

/// HTTP 400 with the JSON-RPC error as the body.
fn rejected(rejection: &Rejection) -> McpResponse {
    let mut response = Response::new(Full::new(Bytes::from(rejection.to_json())).boxed());
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
