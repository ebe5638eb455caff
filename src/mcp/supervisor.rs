//! One supervisor task per server: it alone opens, watches and closes the
//! server's connection, and publishes the connection's state on a
//! `watch` channel that callers read.
//!
//! ```text
//!            connect = "start"            connect ok
//!   (start) ─────────────────▶ Connecting ───────────▶ Ready ──┐ lost (crash, EOF, ping fails)
//!      │ lazy                    ▲    │ fails/timeout     │     │
//!      ▼          first call     │    ▼                   │     ▼
//!     Idle ──────────────────────┘  Backoff ◀─────────────┼─────┘
//!      ▲   ▲                          │ delay over        │ idle_timeout (spawned servers),
//!      │   └──────── lazy ────────────┤                   │ planned rebuild (http)
//!      │                    eager ────┴─▶ Connecting      │
//!      └──────────────────────────────────────────────────┘
//! ```
//!
//! Backoff ([`crate::backoff`]) starts at 1 s and doubles up to 60 s, with
//! ±20% jitter; the count resets once a connection has stayed up for 60 s.
//! A lazy server does not reconnect by itself after a backoff: it returns
//! to Idle and the next call connects it. Calls made during a backoff fail at once with the time until
//! the next try (they never wait out a backoff).
//!
//! While Ready the supervisor pings the server after `ping_interval` without
//! calls (a ping that fails counts as a lost connection), and shuts a
//! spawned server down after `idle_timeout` without calls. Shutdown (the
//! pool's cancellation token) closes the connection and stops the process
//! group before the task ends.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rmcp::Peer;
use rmcp::model::{ClientRequest, PingRequest};
use rmcp::service::{PeerRequestOptions, RoleClient};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::config::ConnectMode;
use crate::mcp::connect::{self, Connection, ConnectionInfo};
use crate::mcp::error::ConnectError;
use crate::mcp::metrics::ServerMetrics;
use crate::mcp::process::{SharedReport, lock};
use crate::mcp::spec::ServerSpec;

/// A connection up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Longest wait for a `ping` answer.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive HTTP timeouts or transport errors after which the HTTP
/// client is rebuilt (a restarted server can leave rmcp's client hanging on
/// a stale session: reference/mcp.md §1).
pub const HTTP_REBUILD_AFTER: u32 = 2;

/// Where a server's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not connected; the next call connects.
    Idle,
    Connecting,
    Ready,
    /// Waiting before the next try.
    Backoff {
        until: Instant,
    },
    /// The pool shut down.
    Stopped,
}

impl Phase {
    /// `idle`, `connecting`, `ready`, `backoff`, `stopped`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Connecting => "connecting",
            Phase::Ready => "ready",
            Phase::Backoff { .. } => "backoff",
            Phase::Stopped => "stopped",
        }
    }
}

/// What callers see of a server's connection (the `watch` value).
#[derive(Debug, Clone)]
pub struct Link {
    pub phase: Phase,
    /// Set exactly when `phase` is Ready.
    pub peer: Option<Peer<RoleClient>>,
    pub info: Option<ConnectionInfo>,
    pub report: Option<SharedReport>,
    /// Why the last connect failed.
    pub connect_error: Option<ConnectError>,
    /// Why the last connection ended, or the last connect error; cleared
    /// when a connection becomes ready.
    pub last_error: Option<String>,
    /// Connect attempts started so far.
    pub attempts: u64,
}

/// Requests to a supervisor.
#[derive(Debug)]
pub enum Command {
    /// A call needs the connection (lazy connect).
    Connect,
    /// Close and reopen (HTTP client wedged).
    Rebuild { reason: String },
}

/// The state a server's callers and its supervisor share.
pub struct ServerShared {
    pub spec: ServerSpec,
    pub link: watch::Sender<Link>,
    pub commands: mpsc::UnboundedSender<Command>,
    /// One permit per call allowed in flight.
    pub slots: Semaphore,
    /// Calls running or waiting for a slot.
    pub admitted: AtomicUsize,
    /// Calls currently holding the peer.
    pub in_flight: AtomicUsize,
    /// Last call start or end, in ms since [`clock`]'s epoch.
    pub last_activity: AtomicU64,
    /// Consecutive HTTP timeouts / transport errors.
    pub http_failures: AtomicU32,
    pub metrics: Mutex<ServerMetrics>,
}

impl ServerShared {
    /// Creates the shared state and the receiving end of its commands.
    pub fn new(spec: ServerSpec) -> (Arc<ServerShared>, mpsc::UnboundedReceiver<Command>) {
        let (commands, rx) = mpsc::unbounded_channel();
        let (link, _) = watch::channel(Link {
            phase: Phase::Idle,
            peer: None,
            info: None,
            report: None,
            connect_error: None,
            last_error: None,
            attempts: 0,
        });
        let shared = ServerShared {
            slots: Semaphore::new(spec.settings.concurrency),
            spec,
            link,
            commands,
            admitted: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            last_activity: AtomicU64::new(clock()),
            http_failures: AtomicU32::new(0),
            metrics: Mutex::new(ServerMetrics::default()),
        };
        (Arc::new(shared), rx)
    }

    /// Marks activity now (a call started or ended).
    pub fn touch(&self) {
        self.last_activity.store(clock(), Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        Duration::from_millis(clock().saturating_sub(self.last_activity.load(Ordering::Relaxed)))
    }
}

/// Milliseconds since the first call, monotonic.
pub fn clock() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// How a Ready period ended.
enum Ended {
    /// The connection died; the reason.
    Lost(String),
    /// Closed for lack of calls.
    IdledOut,
    /// Closed on request, to be reopened.
    Rebuild,
    Shutdown,
}

/// Runs the supervisor until `shutdown` is cancelled.
pub async fn run(
    shared: Arc<ServerShared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
) {
    let name = shared.spec.name.clone();
    let eager = shared.spec.settings.connect == ConnectMode::Start;
    let mut failures: u32 = 0;
    let mut connect_now = eager;
    loop {
        if !connect_now {
            set_phase(&shared, Phase::Idle, None);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                command = commands.recv() => match command {
                    Some(Command::Connect) => {}
                    Some(Command::Rebuild { .. }) => continue,
                    None => break,
                },
            }
        }
        connect_now = false;

        shared.link.send_modify(|link| {
            link.phase = Phase::Connecting;
            link.attempts += 1;
        });
        tracing::debug!(server = %name, "connecting");
        let opened = tokio::select! {
            _ = shutdown.cancelled() => break,
            opened = connect::open(&shared.spec) => opened,
        };
        // Calls queued a Connect while we were connecting: already served.
        while let Ok(Command::Connect) = commands.try_recv() {}

        let ended = match opened {
            Ok(connection) => {
                let took = connection.info.connect_time;
                lock(&shared.metrics).record_connect(took);
                tracing::info!(
                    server = %name,
                    protocol = %connection.info.protocol_version,
                    connect_ms = took.as_millis() as u64,
                    pid = ?connection.info.pid,
                    "MCP server ready"
                );
                let opened_at = connection.opened_at;
                let ended = ready(&shared, connection, &mut commands, &shutdown).await;
                if opened_at.elapsed() >= STABLE_AFTER {
                    failures = 0;
                }
                ended
            }
            Err(error) => {
                tracing::warn!(server = %name, %error, "connecting to MCP server failed");
                lock(&shared.metrics).connect_failures += 1;
                failures += 1;
                let until = Instant::now() + backoff::delay(failures);
                shared.link.send_modify(|link| {
                    link.phase = Phase::Backoff { until };
                    link.last_error = Some(error.to_string());
                    link.connect_error = Some(error);
                });
                if wait_out_backoff(until, &mut commands, &shutdown).await {
                    break;
                }
                connect_now = eager;
                continue;
            }
        };

        match ended {
            Ended::Shutdown => break,
            Ended::IdledOut => {
                failures = 0;
                tracing::info!(server = %name, "MCP server idle; stopped it (restarts on the next call)");
            }
            Ended::Rebuild => connect_now = true,
            Ended::Lost(reason) => {
                tracing::warn!(server = %name, %reason, "lost the MCP server");
                lock(&shared.metrics).record_lost();
                failures += 1;
                let until = Instant::now() + backoff::delay(failures);
                shared.link.send_modify(|link| {
                    link.phase = Phase::Backoff { until };
                    link.peer = None;
                    link.last_error = Some(reason);
                    link.connect_error = None;
                });
                if wait_out_backoff(until, &mut commands, &shutdown).await {
                    break;
                }
                connect_now = eager;
            }
        }
    }
    set_phase(&shared, Phase::Stopped, None);
    tracing::debug!(server = %name, "supervisor stopped");
}

fn set_phase(shared: &ServerShared, phase: Phase, connection: Option<&Connection>) {
    shared.link.send_modify(|link| {
        link.phase = phase;
        link.peer = connection.map(|c| c.peer.clone());
        link.info = connection.map(|c| c.info.clone());
        link.report = connection.map(|c| c.report.clone());
    });
}

/// Sleeps until `until`, ignoring Connect requests. True on shutdown.
async fn wait_out_backoff(
    until: Instant,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    shutdown: &CancellationToken,
) -> bool {
    let sleep = tokio::time::sleep_until(until.into());
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return true,
            _ = &mut sleep => return false,
            command = commands.recv() => if command.is_none() { return true },
        }
    }
}

/// Watches a Ready connection until it ends.
async fn ready(
    shared: &ServerShared,
    mut connection: Connection,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    shutdown: &CancellationToken,
) -> Ended {
    let settings = &shared.spec.settings;
    shared.http_failures.store(0, Ordering::Relaxed);
    shared.touch();
    // The server has recovered: the failure before this connection is no
    // longer its state, and `status` must not show a ready (or, later,
    // idled-out) server as still failing. Cleared before Ready is
    // published, so no reader sees Ready with the old error.
    shared.link.send_modify(|link| {
        link.last_error = None;
        link.connect_error = None;
    });
    set_phase(shared, Phase::Ready, Some(&connection));

    let idle_timeout = settings
        .idle_timeout
        .filter(|_| shared.spec.transport.spawns());
    let ping_interval = settings.ping_interval.filter(|_| connection.info.has_ping);
    let check_every = [idle_timeout, ping_interval]
        .into_iter()
        .flatten()
        .min()
        .map_or(Duration::from_secs(3600), |d| {
            (d / 4).clamp(Duration::from_millis(25), Duration::from_secs(5))
        });
    let mut tick = tokio::time::interval(check_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ping = Instant::now();

    loop {
        tokio::select! {
            _ = &mut connection.ended => {
                let reason = connection.lost().await;
                return Ended::Lost(reason);
            }
            _ = shutdown.cancelled() => {
                close(shared, connection).await;
                return Ended::Shutdown;
            }
            command = commands.recv() => match command {
                Some(Command::Connect) => {}
                Some(Command::Rebuild { reason }) => {
                    tracing::info!(server = %shared.spec.name, %reason, "rebuilding the connection");
                    close(shared, connection).await;
                    return Ended::Rebuild;
                }
                None => {
                    close(shared, connection).await;
                    return Ended::Shutdown;
                }
            },
            _ = tick.tick() => {
                let quiet = shared.quiet_for();
                // Calls waiting for a slot count as use, not only calls out.
                let busy = shared.in_flight.load(Ordering::SeqCst) > 0
                    || shared.admitted.load(Ordering::SeqCst) > 0;
                if let Some(limit) = idle_timeout
                    && !busy
                    && quiet >= limit
                {
                    // Unpublish first, then re-check: a call that took the
                    // peer in between raised in_flight before reading it.
                    set_phase(shared, Phase::Idle, None);
                    if shared.in_flight.load(Ordering::SeqCst) == 0 {
                        close(shared, connection).await;
                        return Ended::IdledOut;
                    }
                    set_phase(shared, Phase::Ready, Some(&connection));
                    continue;
                }
                if let Some(interval) = ping_interval
                    && !busy
                    && quiet >= interval
                    && last_ping.elapsed() >= interval
                {
                    last_ping = Instant::now();
                    if let Err(reason) = ping(&connection.peer).await {
                        let detail = connection.lost_after(reason).await;
                        return Ended::Lost(detail);
                    }
                }
            }
        }
    }
}

async fn close(shared: &ServerShared, connection: Connection) {
    lock(&shared.metrics).record_closed();
    connection.close().await;
}

/// Sends one `ping` and waits for the answer.
pub async fn ping(peer: &Peer<RoleClient>) -> Result<Duration, String> {
    let started = Instant::now();
    let request = ClientRequest::PingRequest(PingRequest::default());
    let handle = peer
        .send_request_with_option(request, PeerRequestOptions::with_timeout(PING_TIMEOUT))
        .await
        .map_err(|e| format!("ping could not be sent: {e}"))?;
    match handle.await_response().await {
        Ok(_) => Ok(started.elapsed()),
        Err(rmcp::ServiceError::Timeout { .. }) => Err(format!(
            "no answer to ping within {}s",
            PING_TIMEOUT.as_secs()
        )),
        Err(e) => Err(format!("ping failed: {e}")),
    }
}

impl Connection {
    /// Closes a connection that stopped answering and says why.
    async fn lost_after(self, reason: String) -> String {
        let exit = self.close().await;
        match exit {
            Some(status) => format!("{reason}; the server process was stopped ({status})"),
            None => reason,
        }
    }
}
