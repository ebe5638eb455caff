//! Opening one connection to a server: the transport (spawned program,
//! Unix socket, or Streamable HTTP), the handshake under a timeout, and the
//! check of the negotiated protocol version.
//!
//! rmcp has no handshake timeout and, left to its defaults, offers protocol
//! `2026-07-28` in `initialize`; we offer `2025-11-25` (or run rmcp's `Auto`
//! lifecycle when the server's `protocol = "auto"`), and refuse a version we
//! do not know, as the spec says a client should.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{
    ClientInitializeError, ClientLifecycleMode, ClientServiceExt, QuitReason, RoleClient,
    RunningService, RunningServiceCancellationToken,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{Peer, ServiceExt};
use serde::Serialize;

use crate::config::ProtocolChoice;
use crate::mcp::error::ConnectError;
use crate::mcp::process::{self, ServerProcess, SharedReport, StdoutGuard};
use crate::mcp::spec::{ServerSettings, ServerSpec, StdioSpec, TransportSpec};

/// How long a spawned server gets at each step of shutdown (after stdin
/// closes, after SIGTERM).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The protocol versions tmux-agent speaks (all that rmcp 3.9 implements).
pub fn supported_versions() -> &'static [ProtocolVersion] {
    ProtocolVersion::KNOWN_VERSIONS
}

/// Facts about an open connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    /// The negotiated protocol version.
    pub protocol_version: String,
    /// `serverInfo.name` / `.version`, when the server gave them.
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    /// The spawned process (stdio, or the socket fallback).
    pub pid: Option<u32>,
    /// How the server was reached (`stdio`, `unix`, `stdio (socket fallback)`, `http`).
    pub via: &'static str,
    /// Spawn plus handshake.
    #[serde(serialize_with = "ms")]
    pub connect_time: Duration,
    /// False for 2026-07-28 sessions, which have no `ping`.
    pub has_ping: bool,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

type Waiting = Pin<Box<dyn Future<Output = Result<QuitReason, tokio::task::JoinError>> + Send>>;

/// One open connection. The supervisor owns it; callers get [`Self::peer`]
/// clones.
pub struct Connection {
    pub peer: Peer<RoleClient>,
    pub info: ConnectionInfo,
    pub report: SharedReport,
    pub process: Option<ServerProcess>,
    pub opened_at: Instant,
    /// Resolves when rmcp's service loop ends (transport closed or
    /// cancelled).
    pub ended: Waiting,
    stop: Option<RunningServiceCancellationToken>,
}

impl Connection {
    /// Closes the session and stops the process group, if any. Returns the
    /// leader's exit status when there was a process.
    pub async fn close(mut self) -> Option<std::process::ExitStatus> {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
        // The loop closes the transport (stdin) when it ends.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut self.ended).await;
        match self.process.as_mut() {
            Some(process) => process.shutdown(SHUTDOWN_GRACE).await,
            None => None,
        }
    }

    /// After the service ended on its own: reaps the process and says why
    /// the connection died.
    pub async fn lost(mut self) -> String {
        let stream = process::lock(&self.report).describe();
        let mut parts = Vec::new();
        if let Some(stream) = stream {
            parts.push(stream);
        }
        if let Some(process) = self.process.as_mut() {
            let status = process.shutdown(Duration::from_millis(500)).await;
            match status {
                Some(status) => parts.push(format!("the server process exited ({status})")),
                None => parts.push("the server closed its stdout".to_string()),
            }
            let stderr = process.stderr_context();
            if !stderr.is_empty() {
                parts.push(stderr.trim_start_matches("; ").to_string());
            }
        } else {
            parts.push("the connection was closed".to_string());
        }
        parts.join("; ")
    }
}

fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("tmux-agent", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25)
}

/// Opens a connection to `spec` within its `connect_timeout`.
pub async fn open(spec: &ServerSpec) -> Result<Connection, ConnectError> {
    let name: Arc<str> = Arc::from(spec.name.as_str());
    let started = Instant::now();
    match &spec.transport {
        TransportSpec::Stdio(stdio) => {
            open_stdio(&name, stdio, &spec.settings, started, "stdio").await
        }
        TransportSpec::Unix { socket, fallback } => {
            match tokio::net::UnixStream::connect(socket).await {
                Ok(stream) => {
                    let (read, write) = stream.into_split();
                    let report = SharedReport::default();
                    let read = guard(&name, read, &spec.settings, &report);
                    let transport = AsyncRwTransport::new_client(read, write)
                        .with_max_line_length(spec.settings.max_message_bytes.saturating_add(2));
                    let service = handshake(transport, &spec.settings, &report, None).await?;
                    finish(service, report, None, started, "unix")
                }
                Err(err) => match fallback {
                    Some(stdio) => {
                        tracing::info!(server = %name, socket = %socket.display(), error = %err, "socket unreachable; spawning the command instead");
                        open_stdio(
                            &name,
                            stdio,
                            &spec.settings,
                            started,
                            "stdio (socket fallback)",
                        )
                        .await
                    }
                    None => Err(ConnectError::Socket {
                        path: socket.display().to_string(),
                        reason: err.to_string(),
                    }),
                },
            }
        }
        TransportSpec::Http { url, headers } => {
            let mut custom = HashMap::new();
            for (key, value) in headers {
                let name = http::HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
                    ConnectError::Config(format!("`{key}` is not a valid HTTP header name"))
                })?;
                let value = http::HeaderValue::from_str(value).map_err(|_| {
                    ConnectError::Config(format!(
                        "the value of header `{key}` is not a valid HTTP header value"
                    ))
                })?;
                custom.insert(name, value);
            }
            let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                .custom_headers(custom)
                .max_concurrent_requests(spec.settings.concurrency.max(1))
                .max_sse_event_size(spec.settings.max_message_bytes);
            let transport = StreamableHttpClientTransport::from_config(config);
            let report = SharedReport::default();
            let service = handshake(transport, &spec.settings, &report, None).await?;
            finish(service, report, None, started, "http")
        }
    }
}

fn guard<R>(
    name: &Arc<str>,
    read: R,
    settings: &ServerSettings,
    report: &SharedReport,
) -> StdoutGuard<R> {
    StdoutGuard::new(
        read,
        name.clone(),
        settings.max_message_bytes,
        report.clone(),
    )
}

async fn open_stdio(
    name: &Arc<str>,
    stdio: &StdioSpec,
    settings: &ServerSettings,
    started: Instant,
    via: &'static str,
) -> Result<Connection, ConnectError> {
    let spawned = process::spawn(name, stdio)?;
    let mut process = spawned.process;
    let report = SharedReport::default();
    let read = guard(name, spawned.stdout, settings, &report);
    let transport = AsyncRwTransport::new_client(read, spawned.stdin)
        .with_max_line_length(settings.max_message_bytes.saturating_add(2));
    match handshake(transport, settings, &report, Some(&mut process)).await {
        Ok(service) => finish(service, report, Some(process), started, via),
        Err(err) => {
            // Never leave a half-started server behind.
            process.shutdown(Duration::from_millis(200)).await;
            Err(err)
        }
    }
}

/// Runs the handshake under `connect_timeout`.
async fn handshake<T>(
    transport: T,
    settings: &ServerSettings,
    report: &SharedReport,
    mut process: Option<&mut ServerProcess>,
) -> Result<RunningService<RoleClient, ClientConfig>, ConnectError>
where
    T: rmcp::transport::Transport<RoleClient> + Send + 'static,
{
    let attempt = async {
        match settings.protocol {
            ProtocolChoice::V2025_11_25 => client_config().serve(transport).await,
            ProtocolChoice::Auto => {
                client_config()
                    .serve_with_lifecycle(
                        transport,
                        ClientLifecycleMode::Auto {
                            preferred_versions: vec![
                                ProtocolVersion::V_2026_07_28,
                                ProtocolVersion::V_2025_11_25,
                            ],
                            legacy_version: Some(ProtocolVersion::V_2025_11_25),
                        },
                    )
                    .await
            }
        }
    };
    let outcome = tokio::time::timeout(settings.connect_timeout, attempt).await;
    // Give stderr a moment to carry the server's last words into the tail.
    let context = |process: &mut Option<&mut ServerProcess>| {
        let mut context = String::new();
        if let Some(stream) = process::lock(report).describe() {
            context.push_str("; ");
            context.push_str(&stream);
        }
        if let Some(process) = process.as_mut() {
            if let Some(status) = process.try_exit_status() {
                context.push_str(&format!("; the server process exited ({status})"));
            }
            context.push_str(&process.stderr_context());
        }
        context
    };
    match outcome {
        Ok(Ok(service)) => Ok(service),
        Ok(Err(err)) => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(ConnectError::Handshake {
                message: describe_init_error(&err),
                context: context(&mut process),
            })
        }
        Err(_) => Err(ConnectError::Timeout {
            after: settings.connect_timeout,
            context: {
                let mut c = context(&mut process);
                c.push_str(" (raise connect_timeout if the server is just slow to start)");
                c
            },
        }),
    }
}

fn describe_init_error(err: &ClientInitializeError) -> String {
    match err {
        ClientInitializeError::ConnectionClosed(_) => {
            "the server closed the connection before answering `initialize`".to_string()
        }
        ClientInitializeError::JsonRpcError(data) => {
            format!(
                "the server refused `initialize`: {} ({})",
                data.message, data.code.0
            )
        }
        other => other.to_string(),
    }
}

/// Checks the negotiated version and packages the running service.
fn finish(
    service: RunningService<RoleClient, ClientConfig>,
    report: SharedReport,
    process: Option<ServerProcess>,
    started: Instant,
    via: &'static str,
) -> Result<Connection, ConnectError> {
    let peer = service.peer().clone();
    let info = peer.peer_info();
    let version = info
        .as_ref()
        .map(|i| i.protocol_version.clone())
        .unwrap_or(ProtocolVersion::V_2025_11_25);
    if !supported_versions().contains(&version) {
        // Dropping the service cancels it; the caller's process guard
        // kills the group.
        return Err(ConnectError::UnsupportedVersion {
            version: version.to_string(),
            supported: supported_versions()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let server_info = info.as_ref().and_then(|i| i.server_info.clone());
    let info = ConnectionInfo {
        has_ping: version.has_initialize(),
        protocol_version: version.to_string(),
        server_name: server_info.as_ref().map(|s| s.name.clone()),
        server_version: server_info.as_ref().map(|s| s.version.clone()),
        pid: process.as_ref().map(ServerProcess::pid),
        via,
        connect_time: started.elapsed(),
    };
    let stop = service.cancellation_token();
    Ok(Connection {
        peer,
        info,
        report,
        process,
        opened_at: Instant::now(),
        ended: Box::pin(service.waiting()),
        stop: Some(stop),
    })
}
