//! Streamable HTTP for the built-in server: rmcp's `StreamableHttpService`
//! served by hyper on a loopback address, at `/mcp`.
//!
//! Loopback only: the server has no authentication, and what it stores
//! (terminal contents) is private. rmcp checks the `Host` header against
//! loopback names, which stops DNS-rebinding pages in a browser.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use super::ServeError;
use super::tools::BuiltinServer;

/// The path of the MCP endpoint.
pub const ENDPOINT: &str = "/mcp";

/// How long open connections get to finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

type McpService = StreamableHttpService<BuiltinServer, LocalSessionManager>;
type McpResponse = <McpService as Service<Request<Incoming>>>::Response;

/// Binds `addr` (which must be a loopback address) and serves MCP there
/// until `shutdown` is cancelled. `on_bound` is told the address actually
/// bound (port 0 picks a free port).
pub async fn serve(
    addr: SocketAddr,
    new_server: impl Fn() -> BuiltinServer + Send + Sync + 'static,
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
    let service: McpService = StreamableHttpService::new(
        move || Ok(new_server()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
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
        let service = service.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let handler =
                hyper::service::service_fn(move |request| route(service.clone(), request));
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

/// Sends `/mcp` to the MCP service and anything else to 404.
async fn route(
    mut service: McpService,
    request: Request<Incoming>,
) -> Result<McpResponse, Infallible> {
    if request.uri().path() != ENDPOINT {
        let body = Full::new(Bytes::from_static(b"not found: the MCP endpoint is /mcp\n")).boxed();
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    }
    service.call(request).await
}
