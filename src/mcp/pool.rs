//! [`McpPool`]: the one entry point the rest of tmux-agent uses to reach MCP
//! servers. Cheap to clone and safe to use from many tasks: a call only
//! ever waits for its own server's slot, connection and answer, each
//! bounded in time.
//!
//! ```no_run
//! # async fn demo(discovered: tmux_agent::mcp::discovery::Discovered) -> Result<(), tmux_agent::mcp::CallError> {
//! use tmux_agent::mcp::{CallOptions, McpPool};
//! let pool = McpPool::new(&discovered);
//! let out = pool
//!     .call_tool("memory", "read_graph", serde_json::json!({}), CallOptions::default())
//!     .await?;
//! println!("{}", out.value);
//! pool.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! A call goes through: admission (at most `concurrency + queue` calls per
//! server, else [`CallError::QueueFull`] at once), a slot (at most
//! `concurrency` in flight), a live connection (connecting a lazy server if
//! needed; failing fast during a backoff), then the request with
//! `call_timeout` (per tool if configured, restarted by progress) and the
//! `max_call_time` cap over everything. A call that times out, or whose
//! future is dropped, sends `notifications/cancelled`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rmcp::Peer;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientRequest, ContentBlock, ListToolsRequest, PaginatedRequestParams, RequestId, ServerResult,
    Tool,
};
use rmcp::service::{PeerRequestOptions, RoleClient};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::mcp::connect::ConnectionInfo;
use crate::mcp::discovery::{Discovered, SkippedServer};
use crate::mcp::error::CallError;
use crate::mcp::metrics::{Outcome, ServerStats};
use crate::mcp::process::{SharedReport, lock};
use crate::mcp::spec::{ServerSpec, Source, TransportSpec};
use crate::mcp::supervisor::{self, Command, HTTP_REBUILD_AFTER, Phase, ServerShared};

/// Per-call choices.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Overrides the configured call timeout (still capped by
    /// `max_call_time`).
    pub timeout: Option<Duration>,
}

/// Where [`ToolOutput::value`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputSource {
    /// The result's `structuredContent`.
    Structured,
    /// Text content that parsed as JSON.
    JsonText,
    /// Text content, as a JSON string.
    Text,
    /// No structured or text content.
    Empty,
}

/// A successful tool result.
#[derive(Debug, Clone, Serialize)]
pub struct ToolOutput {
    /// `structuredContent` when present, else the text content parsed as
    /// JSON if it is JSON, else the text as a string.
    pub value: Value,
    pub source: OutputSource,
    /// The result as the server sent it.
    pub result: CallToolResult,
    /// From sending the request to the answer.
    #[serde(serialize_with = "as_ms")]
    pub latency: Duration,
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// A server as `mcp servers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub name: String,
    /// `stdio`, `http` or `unix`.
    pub transport: &'static str,
    pub source: Source,
    /// How it is reached, as configured: command, args and cwd, or the
    /// URL; env and header values masked (they are often secrets). None
    /// for a skipped server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<TransportSpec>,
    /// `idle`, `connecting`, `ready`, `backoff`, `stopped`, or `skipped`.
    pub state: &'static str,
    /// Last error, or why the server is skipped.
    pub detail: Option<String>,
    /// Seconds until the next connect attempt (backoff only).
    pub retry_in_s: Option<f64>,
    /// The live connection (ready only).
    pub connection: Option<ConnectionInfo>,
    pub in_flight: usize,
}

/// Connections to every configured server. See the module doc.
#[derive(Clone)]
pub struct McpPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    /// The configured servers and the skipped ones; replaced as a whole by
    /// [`McpPool::reconfigure`]. Never held across an await.
    config: RwLock<PoolConfig>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Default)]
struct PoolConfig {
    servers: BTreeMap<String, Entry>,
    skipped: BTreeMap<String, SkippedServer>,
}

/// One configured server: its shared state, and what stops its supervisor.
struct Entry {
    shared: Arc<ServerShared>,
    /// A child of the pool's token: cancelling it stops this server alone.
    stop: CancellationToken,
    /// The supervisor task; a replacement waits for it to end first.
    supervisor: Option<tokio::task::JoinHandle<()>>,
}

/// What [`McpPool::reconfigure`] did, by server name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reconfigured {
    /// New names: started (lazily, as configured).
    pub added: Vec<String>,
    /// Names whose spec changed: the old server was stopped and a new one
    /// takes its place.
    pub restarted: Vec<String>,
    /// Names no longer configured: stopped.
    pub removed: Vec<String>,
    /// Same spec: the live connection (and process) is kept.
    pub unchanged: Vec<String>,
}

impl Reconfigured {
    /// `memory restarted, goals added` (or `unchanged`).
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (names, verb) in [
            (&self.restarted, "restarted"),
            (&self.added, "added"),
            (&self.removed, "removed"),
        ] {
            if !names.is_empty() {
                parts.push(format!("{} {verb}", names.join(", ")));
            }
        }
        if parts.is_empty() {
            return format!("unchanged ({})", self.unchanged.len());
        }
        if !self.unchanged.is_empty() {
            parts.push(format!("{} kept", self.unchanged.len()));
        }
        parts.join(", ")
    }
}

/// Whether two specs start the same server: where it was written down does
/// not matter, how it is reached and its settings do.
fn same_server(a: &ServerSpec, b: &ServerSpec) -> bool {
    a.transport == b.transport && a.settings == b.settings
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // The last handle is gone without shutdown(): stop the supervisors
        // (they close connections and stop processes on their way out).
        self.shutdown.cancel();
    }
}

impl McpPool {
    /// Starts one supervisor per discovered server. Must be called inside a
    /// tokio runtime. Servers with `connect = "start"` begin connecting now.
    pub fn new(discovered: &Discovered) -> McpPool {
        McpPool::from_specs(discovered.servers.clone(), discovered.skipped.clone())
    }

    /// Same as [`McpPool::new`], from resolved specs.
    pub fn from_specs(servers: Vec<ServerSpec>, skipped: Vec<SkippedServer>) -> McpPool {
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        // Closed at once: `shutdown` waits for the tasks there are; servers
        // added later by `reconfigure` are tracked all the same.
        tasks.close();
        let pool = McpPool {
            inner: Arc::new(PoolInner {
                config: RwLock::new(PoolConfig::default()),
                shutdown,
                tasks,
            }),
        };
        let mut config = PoolConfig {
            servers: BTreeMap::new(),
            skipped: skipped.into_iter().map(|s| (s.name.clone(), s)).collect(),
        };
        for spec in servers {
            let name = spec.name.clone();
            config.servers.insert(name, pool.start(spec, None));
        }
        *pool.write_config() = config;
        pool
    }

    /// Starts a supervisor for `spec`, once `after` (the supervisor it
    /// replaces) has ended, so an old process is gone before its successor
    /// starts. Calls made meanwhile wait for the new connection.
    fn start(&self, spec: ServerSpec, after: Option<tokio::task::JoinHandle<()>>) -> Entry {
        let (shared, commands) = ServerShared::new(spec);
        let stop = self.inner.shutdown.child_token();
        let run = supervisor::run(shared.clone(), commands, stop.clone());
        let supervisor = self.inner.tasks.spawn(async move {
            if let Some(old) = after {
                let _ = old.await;
            }
            run.await;
        });
        Entry {
            shared,
            stop,
            supervisor: Some(supervisor),
        }
    }

    fn read_config(&self) -> std::sync::RwLockReadGuard<'_, PoolConfig> {
        // A panic while holding the lock leaves the maps whole (every
        // update is a plain insert or remove), so poisoning is ignored.
        self.inner
            .config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_config(&self) -> std::sync::RwLockWriteGuard<'_, PoolConfig> {
        self.inner
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Brings the pool in line with a new discovery: servers whose spec
    /// changed are stopped and started again, removed ones are stopped, new
    /// ones added, and unchanged ones keep their live connection. Calls in
    /// flight on a server that is stopped fail as a lost transport (the
    /// reactor retries them on the new one).
    pub fn reconfigure(&self, discovered: &Discovered) -> Reconfigured {
        self.reconfigure_specs(&discovered.servers, &discovered.skipped)
    }

    /// Same as [`McpPool::reconfigure`], from resolved specs.
    pub fn reconfigure_specs(
        &self,
        servers: &[ServerSpec],
        skipped: &[SkippedServer],
    ) -> Reconfigured {
        let mut report = Reconfigured::default();
        let mut config = self.write_config();
        let mut old = std::mem::take(&mut config.servers);
        for spec in servers {
            let name = spec.name.clone();
            match old.remove(&name) {
                Some(entry) if same_server(&entry.shared.spec, spec) => {
                    report.unchanged.push(name.clone());
                    config.servers.insert(name, entry);
                }
                Some(mut entry) => {
                    entry.stop.cancel();
                    let replacement = self.start(spec.clone(), entry.supervisor.take());
                    report.restarted.push(name.clone());
                    config.servers.insert(name, replacement);
                }
                None => {
                    report.added.push(name.clone());
                    config.servers.insert(name, self.start(spec.clone(), None));
                }
            }
        }
        for (name, entry) in old {
            entry.stop.cancel();
            report.removed.push(name);
        }
        config.skipped = skipped
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        report
    }

    fn server(&self, name: &str) -> Result<Arc<ServerShared>, CallError> {
        let config = self.read_config();
        if let Some(entry) = config.servers.get(name) {
            return Ok(entry.shared.clone());
        }
        if let Some(skipped) = config.skipped.get(name) {
            return Err(CallError::Config {
                server: name.to_string(),
                reason: format!("{} (in {})", skipped.reason, skipped.source.file.display()),
            });
        }
        Err(CallError::UnknownServer {
            server: name.to_string(),
            known: config.servers.keys().cloned().collect(),
        })
    }

    /// Calls `tool` on `server` with `args` (a JSON object, or null for no
    /// arguments).
    pub async fn call_tool(
        &self,
        server: &str,
        tool: &str,
        args: Value,
        options: CallOptions,
    ) -> Result<ToolOutput, CallError> {
        let shared = &self.server(server)?;
        let arguments = match args {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => {
                return Err(CallError::BadArguments {
                    got: json_kind(&other),
                });
            }
        };
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = arguments;
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let settings = &shared.spec.settings;
        let (timeout, limit) = match options.timeout {
            Some(t) => (t, "the call's own timeout".to_string()),
            None => match settings.tool_timeouts.get(tool) {
                Some(t) => (*t, format!("tool_timeouts.{tool}")),
                None => (settings.call_timeout, "call_timeout".to_string()),
            },
        };
        let outcome = send(shared, tool, request, timeout, limit).await;
        let (outcome, latency) = match outcome {
            Ok((ServerResult::CallToolResult(result), latency)) => {
                (tool_output(shared, tool, result, latency), latency)
            }
            Ok((other, latency)) => (
                Err(CallError::Unexpected {
                    server: shared.spec.name.clone(),
                    detail: format!("a {} instead of a tool result", result_kind(&other)),
                }),
                latency,
            ),
            Err((error, latency)) => (Err(error), latency),
        };
        let kind = match &outcome {
            Ok(_) => Outcome::Success,
            Err(CallError::ToolError { .. }) => Outcome::ToolError,
            Err(CallError::JsonRpc { .. }) | Err(CallError::Unexpected { .. }) => {
                Outcome::JsonRpcError
            }
            Err(CallError::Timeout { .. }) => Outcome::Timeout,
            Err(CallError::TransportLost { .. }) => Outcome::TransportError,
            Err(_) => Outcome::Rejected,
        };
        lock(&shared.metrics).record_call(tool, kind, latency);
        outcome
    }

    /// Lists the server's tools (all pages).
    pub async fn list_tools(&self, server: &str) -> Result<Vec<Tool>, CallError> {
        let shared = &self.server(server)?;
        let mut tools = Vec::new();
        let mut cursor = None;
        // A server that keeps returning cursors would loop forever.
        for _ in 0..100 {
            let params = cursor.take().map(|c| {
                let mut p = PaginatedRequestParams::default();
                p.cursor = Some(c);
                p
            });
            let request = ClientRequest::ListToolsRequest(ListToolsRequest {
                method: Default::default(),
                params,
                extensions: Default::default(),
            });
            let timeout = shared.spec.settings.call_timeout;
            match send(
                shared,
                "tools/list",
                request,
                timeout,
                "call_timeout".into(),
            )
            .await
            {
                Ok((ServerResult::ListToolsResult(page), _)) => {
                    tools.extend(page.tools);
                    match page.next_cursor {
                        Some(next) => cursor = Some(next),
                        None => return Ok(tools),
                    }
                }
                Ok((other, _)) => {
                    return Err(CallError::Unexpected {
                        server: shared.spec.name.clone(),
                        detail: format!("a {} instead of a tool list", result_kind(&other)),
                    });
                }
                Err((error, _)) => return Err(error),
            }
        }
        Ok(tools)
    }

    /// Sends `ping` (connecting first if needed) and returns the round trip.
    pub async fn ping(&self, server: &str) -> Result<Duration, CallError> {
        let shared = &self.server(server)?;
        let request = ClientRequest::PingRequest(Default::default());
        let timeout = shared.spec.settings.call_timeout;
        send(shared, "ping", request, timeout, "call_timeout".into())
            .await
            .map(|(_, latency)| latency)
            .map_err(|(e, _)| e)
    }

    /// Connects `server` if it is not connected, and returns the
    /// connection's facts.
    pub async fn connect(&self, server: &str) -> Result<ConnectionInfo, CallError> {
        let shared = &self.server(server)?;
        let deadline =
            Instant::now() + shared.spec.settings.connect_timeout + Duration::from_secs(5);
        let (_, info, _) = ready_peer(shared, deadline).await?;
        let _busy = Busy::new(shared);
        Ok(info)
    }

    /// Every server, configured or skipped, by name.
    pub fn servers(&self) -> Vec<ServerStatus> {
        let config = self.read_config();
        let mut out: Vec<ServerStatus> = config
            .servers
            .values()
            .map(|entry| {
                let shared = &entry.shared;
                let link = shared.link.borrow().clone();
                ServerStatus {
                    name: shared.spec.name.clone(),
                    transport: shared.spec.transport.kind(),
                    source: shared.spec.source.clone(),
                    definition: Some(shared.spec.transport.masked()),
                    state: link.phase.name(),
                    detail: link.last_error.clone(),
                    retry_in_s: match link.phase {
                        Phase::Backoff { until } => Some(
                            until
                                .saturating_duration_since(Instant::now())
                                .as_secs_f64(),
                        ),
                        _ => None,
                    },
                    connection: if link.phase == Phase::Ready {
                        link.info.clone()
                    } else {
                        None
                    },
                    in_flight: shared.in_flight.load(Ordering::Relaxed),
                }
            })
            .collect();
        out.extend(config.skipped.values().map(|s| ServerStatus {
            name: s.name.clone(),
            transport: "-",
            source: s.source.clone(),
            definition: None,
            state: "skipped",
            detail: Some(s.reason.clone()),
            retry_in_s: None,
            connection: None,
            in_flight: 0,
        }));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Figures for every configured server.
    pub fn stats(&self) -> Vec<ServerStats> {
        self.read_config()
            .servers
            .values()
            .map(|e| lock(&e.shared.metrics).snapshot(&e.shared.spec.name))
            .collect()
    }

    /// Figures for one server.
    pub fn stats_for(&self, server: &str) -> Result<ServerStats, CallError> {
        let shared = &self.server(server)?;
        Ok(lock(&shared.metrics).snapshot(&shared.spec.name))
    }

    /// The spec of a configured server.
    pub fn spec(&self, server: &str) -> Option<ServerSpec> {
        self.read_config()
            .servers
            .get(server)
            .map(|e| e.shared.spec.clone())
    }

    /// Closes every connection and stops every spawned server (stdin
    /// closed, then SIGTERM, then SIGKILL to each process group), and waits
    /// for that to finish.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.wait().await;
    }
}

/// Sends one request through admission, slot, connection and timeouts.
/// Returns the result and the time from send to answer.
async fn send(
    shared: &ServerShared,
    label: &str,
    request: ClientRequest,
    timeout: Duration,
    limit: String,
) -> Result<(ServerResult, Duration), (CallError, Duration)> {
    let server = &shared.spec.name;
    let settings = &shared.spec.settings;
    let started = Instant::now();
    let deadline = started + settings.max_call_time;
    let zero = |e| (e, Duration::ZERO);

    // Admission: refuse at once rather than queue without bound.
    let capacity = settings.concurrency + settings.queue;
    if shared.admitted.fetch_add(1, Ordering::SeqCst) >= capacity {
        shared.admitted.fetch_sub(1, Ordering::SeqCst);
        return Err(zero(CallError::QueueFull {
            server: server.clone(),
            limit: capacity,
        }));
    }
    let _admitted = Release(&shared.admitted);

    let permit = match tokio::time::timeout_at(deadline.into(), shared.slots.acquire()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => {
            return Err(zero(CallError::ShuttingDown {
                server: server.clone(),
            }));
        }
        Err(_) => {
            return Err(zero(CallError::Timeout {
                server: server.clone(),
                tool: label.to_string(),
                after: started.elapsed(),
                limit: "max_call_time, waiting in the queue".into(),
                hint: format!(
                    "; {} calls were ahead of it (concurrency {})",
                    shared.admitted.load(Ordering::Relaxed).saturating_sub(1),
                    settings.concurrency
                ),
            }));
        }
    };
    shared.touch();
    // The stream report of the connection this call goes out on: by the
    // time an error is mapped, the supervisor may have replaced the link.
    let (peer, _, report) = ready_peer(shared, deadline).await.map_err(zero)?;
    let _busy = Busy::new(shared);

    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let options = PeerRequestOptions::with_timeout(timeout.min(remaining))
        .reset_timeout_on_progress()
        .with_max_total_timeout(remaining);
    // Either way a call fails, it is described in the same terms.
    let failure = |error| {
        map_service_error(
            shared,
            report.as_ref(),
            label,
            error,
            (timeout, remaining),
            &limit,
            started,
        )
    };
    let sent_at = Instant::now();
    let handle = match peer.send_request_with_option(request, options).await {
        Ok(handle) => handle,
        Err(error) => return Err(zero(failure(error))),
    };
    let mut cancel = CancelOnDrop {
        peer: Some(peer.clone()),
        id: handle.id.clone(),
    };
    let answer = handle.await_response().await;
    cancel.peer = None;
    let latency = sent_at.elapsed();
    drop(permit);
    match answer {
        Ok(result) => {
            shared.http_failures.store(0, Ordering::Relaxed);
            Ok((result, latency))
        }
        Err(error) => Err((failure(error), latency)),
    }
}

/// Decrements a counter when dropped.
struct Release<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Marks a call as holding the peer (the supervisor will not idle the
/// server out from under it).
struct Busy<'a>(&'a ServerShared);

impl<'a> Busy<'a> {
    fn new(shared: &'a ServerShared) -> Self {
        Busy(shared)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

/// Sends `notifications/cancelled` if the call's future is dropped while
/// the request is out (rmcp does this itself only on its own timeout).
struct CancelOnDrop {
    peer: Option<Peer<RoleClient>>,
    id: RequestId,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else { return };
        let id = self.id.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let params = CancelledNotificationParam::new(
                    Some(id),
                    Some("request abandoned by the caller".to_string()),
                );
                let _ = peer.notify_cancelled(params).await;
            });
        }
    }
}

/// Waits until the server is Ready (asking a lazy server to connect) and
/// returns its peer with `in_flight` already raised; the caller must build
/// a [`Busy`] guard right away. Fails fast during a backoff.
async fn ready_peer(
    shared: &ServerShared,
    deadline: Instant,
) -> Result<(Peer<RoleClient>, ConnectionInfo, Option<SharedReport>), CallError> {
    let server = &shared.spec.name;
    let mut link_rx = shared.link.subscribe();
    // The connect attempt count when this call asked for a connection: a
    // backoff after a later attempt is that attempt failing.
    let mut asked_at: Option<u64> = None;
    loop {
        // Raise in_flight before reading the link: the supervisor's idle
        // check unpublishes the peer and then re-reads in_flight.
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let link = link_rx.borrow_and_update().clone();
        let mut dead = false;
        if let (Phase::Ready, Some(peer), Some(info)) = (link.phase, link.peer, link.info) {
            if !peer.is_transport_closed() {
                return Ok((peer, info, link.report));
            }
            // The connection just died and the supervisor has not said so
            // yet: wait for it to (Backoff, or a new connection).
            dead = true;
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        match link.phase {
            Phase::Ready if dead => {}
            Phase::Ready | Phase::Idle => {
                if asked_at.is_none() {
                    asked_at = Some(link.attempts);
                    if shared.commands.send(Command::Connect).is_err() {
                        return Err(CallError::ShuttingDown {
                            server: server.clone(),
                        });
                    }
                }
            }
            Phase::Connecting => {
                // Joining an attempt already under way counts as asking.
                asked_at.get_or_insert(link.attempts.saturating_sub(1));
            }
            Phase::Backoff { until } => {
                if asked_at.is_some_and(|n| link.attempts > n)
                    && let Some(error) = link.connect_error
                {
                    return Err(CallError::ConnectFailed {
                        server: server.clone(),
                        error,
                    });
                }
                return Err(CallError::NotConnected {
                    server: server.clone(),
                    retry_in: until.saturating_duration_since(Instant::now()),
                    last_error: link.last_error,
                });
            }
            Phase::Stopped => {
                return Err(CallError::ShuttingDown {
                    server: server.clone(),
                });
            }
        }
        match tokio::time::timeout_at(deadline.into(), link_rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err(CallError::ShuttingDown {
                    server: server.clone(),
                });
            }
            Err(_) => {
                return Err(CallError::Timeout {
                    server: server.clone(),
                    tool: "connect".into(),
                    after: shared.spec.settings.max_call_time,
                    limit: "max_call_time, waiting for the connection".into(),
                    hint: String::new(),
                });
            }
        }
    }
}

fn map_service_error(
    shared: &ServerShared,
    report: Option<&SharedReport>,
    label: &str,
    error: rmcp::ServiceError,
    (timeout, remaining): (Duration, Duration),
    limit: &str,
    started: Instant,
) -> CallError {
    let server = shared.spec.name.clone();
    let http = shared.spec.transport.kind() == "http";
    let note_http_failure = || {
        if http && shared.http_failures.fetch_add(1, Ordering::SeqCst) + 1 >= HTTP_REBUILD_AFTER {
            shared.http_failures.store(0, Ordering::SeqCst);
            let _ = shared.commands.send(Command::Rebuild {
                reason: format!("{HTTP_REBUILD_AFTER} timeouts or transport errors in a row"),
            });
        }
    };
    match error {
        rmcp::ServiceError::McpError(data) => CallError::JsonRpc {
            server,
            code: data.code.0,
            message: data.message.to_string(),
            data: data.data,
        },
        rmcp::ServiceError::Timeout { timeout: fired } => {
            note_http_failure();
            // rmcp reports the duration that fired: the remaining time under
            // max_call_time (the cap, or the call timeout clamped to it), or
            // the call timeout itself.
            let limit = if fired == remaining && fired != timeout {
                "max_call_time".to_string()
            } else {
                limit.to_string()
            };
            let hint = report
                .and_then(|r| lock(r).describe())
                .map(|d| format!("; {d}"))
                .unwrap_or_default();
            CallError::Timeout {
                server,
                tool: label.to_string(),
                after: started.elapsed(),
                limit,
                hint,
            }
        }
        rmcp::ServiceError::TransportClosed => {
            let (oversized, detail) = report
                .map(|r| {
                    let report = lock(r);
                    (report.oversized, report.describe())
                })
                .unwrap_or_default();
            // With one call at a time the oversized message was this call's
            // answer, and asking again would bring it again. With more, it
            // may have been another call's: retry.
            match oversized {
                Some(limit) if shared.spec.settings.concurrency == 1 => CallError::AnswerTooLarge {
                    server,
                    tool: label.to_string(),
                    limit,
                },
                _ => CallError::TransportLost {
                    server,
                    detail: detail.unwrap_or_else(|| {
                        "the server exited or closed the connection".to_string()
                    }),
                },
            }
        }
        rmcp::ServiceError::TransportSend(e) => {
            note_http_failure();
            CallError::TransportLost {
                server,
                detail: e.to_string(),
            }
        }
        rmcp::ServiceError::Cancelled { reason } => CallError::TransportLost {
            server,
            detail: format!("the session was closed ({})", reason.unwrap_or_default()),
        },
        other => CallError::Unexpected {
            server,
            detail: other.to_string(),
        },
    }
}

/// Turns a tool result into output (or the tool's error).
fn tool_output(
    shared: &ServerShared,
    tool: &str,
    result: CallToolResult,
    latency: Duration,
) -> Result<ToolOutput, CallError> {
    let text = result
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    if result.is_error == Some(true) {
        let message = if text.is_empty() {
            result
                .structured_content
                .as_ref()
                .map_or_else(|| "(no message)".to_string(), Value::to_string)
        } else {
            text
        };
        return Err(CallError::ToolError {
            server: shared.spec.name.clone(),
            tool: tool.to_string(),
            message,
            structured: result.structured_content.map(Box::new),
        });
    }
    let (value, source) = match &result.structured_content {
        Some(value) => (value.clone(), OutputSource::Structured),
        None if text.is_empty() => (Value::Null, OutputSource::Empty),
        None => match serde_json::from_str::<Value>(&text) {
            Ok(value) => (value, OutputSource::JsonText),
            Err(_) => (Value::String(text), OutputSource::Text),
        },
    };
    Ok(ToolOutput {
        value,
        source,
        result,
        latency,
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn result_kind(result: &ServerResult) -> String {
    let json = serde_json::to_value(result).unwrap_or(Value::Null);
    match json.get("resultType").and_then(Value::as_str) {
        Some(kind) => format!("`{kind}` result"),
        None => "different result".to_string(),
    }
}
