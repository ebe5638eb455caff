//! The daemon (DESIGN.md D13): [`run`] composes the tracker, the reactor and
//! its dispatchers, the MCP pool, the group reconciler, the IPC server and
//! the health publisher on one tmux server, until its shutdown token is
//! cancelled or the server no longer needs it.
//!
//! It is a library function so that it can be run, and stopped, in-process:
//! every path it uses comes in its [`DaemonSettings`], and its shutdown is a
//! [`CancellationToken`] handed in (mini-redis's `server::run(listener,
//! shutdown)`). Nothing here exits the process or installs signal handlers:
//! `cli::daemon` turns SIGINT/SIGTERM into the token and SIGHUP into a
//! [`ReloadTrigger`].
//!
//! - `handler`: the answers to CLI requests (the [`crate::ipc::Handler`]).
//! - `save`: a requested save, followed through the outbox.
//! - `reload`: putting a new configuration in force.
//! - `health`: `@agent-daemon`, `@agent-mcp`, `@agent-outbox`.
//! - the status keeper (`crate::status::keeper`) is started here too: it
//!   owns the agents in panes, fed by `tmux-agent hook` over the socket.
//! - `prune`: delivered calls' payloads dropped after `[outbox] keep`.
//! - `reacting`: the reactor, supervised: restarted after a panic.
//! - `ready`: the `--detach` handshake on fd 3.
//! - `error`: why the daemon failed, or a request did.
//!
//! # Shutdown order
//!
//! Written once, in `Running::shut_down`, whatever ended the daemon:
//! the tracker stops first (no new events), then the IPC server and the
//! group reconciler, then the reactor delivers what is due for up to
//! [`DaemonSettings::drain_grace`], or [`SERVER_GONE_DRAIN`] when the tmux
//! server is gone (what is left waits in the outbox for the next daemon),
//! then the MCP pool stops (children's process groups
//! terminated), then `@agent-daemon` is cleared over the still-open
//! connection, and last the connection closes.
//!
//! # Shutdown bound
//!
//! Once asked to stop, the daemon is gone within [`SHUTDOWN_BOUND`] (8 s
//! with the default 5 s drain grace), whatever it was doing: the tracker
//! and the event forwarder end at once on the token, and every step after
//! them has its own deadline ([`STEP_GRACE`], one second for the MCP pool),
//! past which its task is abandoned and the order goes on. What was not
//! delivered by then stays in the outbox.

mod error;
mod handler;
mod health;
mod link;
mod prune;
mod reacting;
mod ready;
mod reload;
mod save;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use error::{DaemonError, HandlerError, ReloadError};
pub use ready::{READY_FD, READY_FD_ENV, ReadyReport, ReadyWait};
pub use reload::{ReloadTrigger, Reloads, reload_channel};

use crate::agent::outbox::{Outbox, SharedOutbox};
use crate::agent::pending::PendingGauge;
use crate::agent::reactor;
use crate::agent::settings::ReactorSettings;
use crate::configuration::Configuration;
use crate::control::command::Command;
use crate::control::connection::{
    ConnectOptions, Connection, ControlError, ControlHandle, ExitReason,
};
use crate::control::server::ServerSocket;
use crate::group::Reconciler;
use crate::ipc::{DaemonLock, Endpoint, IpcServer};
use crate::mcp::McpPool;
use crate::mcp::discovery::{Discovered, DiscoveryInput};
use crate::state::tracker::TrackError;
use crate::state::{LifecycleEvent, TrackEnd, Tracker};

/// How long a stopping daemon keeps delivering the calls that are due.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How long a daemon whose tmux server is gone (its last session closed, or
/// the server exited) keeps delivering: nothing else will deliver what is
/// left until a next server starts a next daemon, so it may take longer
/// than [`DRAIN_GRACE`]; a stop asked meanwhile cuts it to the usual grace.
/// An empty outbox ends the drain at once.
pub const SERVER_GONE_DRAIN: Duration = Duration::from_secs(30);

/// How long each step of the shutdown besides the drain may take before it
/// is abandoned (the services, the reactor after its drain, clearing
/// `@agent-daemon`); the MCP pool gets two of these to end its children.
pub const STEP_GRACE: Duration = Duration::from_millis(500);

/// The longest a shutdown takes, from the token's cancellation to
/// [`run`]'s return, with the default drain grace: services, drain,
/// reactor stop, pool, `@agent-daemon` (0.5 + 5 + 0.5 + 1 + 0.5 s), rounded
/// up. The connection's `tmux -C` child is then killed if it has not left
/// ([`crate::control::connection::CHILD_EXIT_GRACE`]), without holding up
/// the return.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(DRAIN_GRACE.as_secs() + 3);

/// How many lifecycle events may wait between the tracker and the reactor.
/// The reactor never waits on an MCP server, so this is only a buffer for
/// a burst (a server's sessions all closing at once).
const EVENT_BACKLOG: usize = 4096;

/// How many lifecycle events may wait between the tracker and the task
/// that passes them on to the reactor.
const TRACKER_BACKLOG: usize = 1024;

/// Everything [`run`] needs from outside besides the tmux server: where the
/// configuration is, where its files go, and the ways in from the process
/// (reload requests, the `--detach` parent).
#[derive(Debug)]
pub struct DaemonSettings {
    /// Where the configuration is found: read at start, and again on each
    /// reload.
    pub config: DiscoveryInput,
    /// The outbox database file.
    pub outbox: PathBuf,
    /// The runtime directory of the IPC socket and the daemon's lock
    /// (0700; created if needed).
    pub runtime_dir: PathBuf,
    /// How long a stopping daemon keeps delivering the calls that are due.
    pub drain_grace: Duration,
    /// Reloads asked for outside the socket (SIGHUP).
    pub reloads: Reloads,
    /// The `--detach` parent, told once the daemon is attached and
    /// listening.
    pub ready: Option<ReadyReport>,
}

impl DaemonSettings {
    /// The usual files for `server` (XDG directories; see [`crate::paths`]
    /// and [`crate::ipc::endpoint`]), no reload trigger, no `--detach`
    /// parent.
    pub fn new(server: &ServerSocket, config: DiscoveryInput) -> Self {
        Self {
            config,
            outbox: crate::paths::outbox(server),
            runtime_dir: crate::ipc::endpoint::runtime_dir(),
            drain_grace: DRAIN_GRACE,
            reloads: Reloads::default(),
            ready: None,
        }
    }
}

/// Why the daemon ended (without failing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The user's last session closed: the daemon closed its own session
    /// so the tmux server could exit, as it would without the daemon.
    LastSessionClosed,
    /// The tmux server exited (killed, or crashed) with sessions in it;
    /// each got its `session-closed` calls.
    ServerExited { sessions: usize },
    /// The shutdown token was cancelled, or a `stop` request came.
    Stopped,
    /// The control connection ended otherwise, the server still running:
    /// the daemon's session was killed, its client detached, or the
    /// stream broke.
    Disconnected(ExitReason),
}

impl From<TrackEnd> for Exit {
    fn from(end: TrackEnd) -> Self {
        match end {
            TrackEnd::LastSessionClosed => Exit::LastSessionClosed,
            TrackEnd::ServerExited { sessions } => Exit::ServerExited { sessions },
            TrackEnd::Connection(ExitReason::Cancelled) => Exit::Stopped,
            TrackEnd::Connection(reason) => Exit::Disconnected(reason),
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::LastSessionClosed => write!(f, "the last tmux session closed"),
            Exit::ServerExited { sessions } => write!(
                f,
                "the tmux server exited; its {sessions} session(s) closed with it"
            ),
            Exit::Stopped => write!(f, "stopped"),
            Exit::Disconnected(reason) => reason.fmt(f),
        }
    }
}

/// Runs the daemon on `server` until `shutdown` is cancelled (or a `stop`
/// request comes), the last session closes, or the server exits.
///
/// Takes the server's daemon lock first, so a second daemon fails at once
/// ([`DaemonError::Endpoint`], naming the first one's pid); then reads the
/// configuration and refuses one with problems; then attaches. Once it is
/// attached, everything that fails is logged and the daemon goes on; it
/// returns an error only when tracking itself fails, and then only after
/// the whole shutdown order has run.
pub async fn run(
    settings: DaemonSettings,
    server: ServerSocket,
    shutdown: CancellationToken,
) -> Result<Exit, DaemonError> {
    let (prepared, ready) = Prepared::new(settings, &server).await?;

    // The connection closes when this guard drops: at the end of the
    // shutdown order, or on a failure before it; its task must not outlive
    // the daemon in a process that goes on.
    let closing = CancellationToken::new();
    let close_connection = closing.clone().drop_guard();
    let tracker = attach(&server, &closing).await?;
    health::announce(&tracker.control(), tracker.model().sidecar()).await?;
    tracing::info!(
        server = %server,
        sessions = tracker.model().sessions().count(),
        outbox = %prepared.outbox_path.display(),
        "tmux-agent daemon attached"
    );

    // A `stop` request cancels this one, not the caller's token.
    let stopping = shutdown.child_token();
    let (running, to_reactor) =
        Running::start(prepared, &tracker, &server, &stopping, close_connection).await;
    if let Some(ready) = ready {
        ready.report();
    }

    let (events_tx, events) = mpsc::channel(TRACKER_BACKLOG);
    let forwarding = tokio::spawn(forward_events(events, to_reactor, stopping.clone()));
    // The tracker, on one connection after another (see `link`): the link
    // holds the only events sender, so forwarding ends with it.
    let stop_asked = stopping.clone();
    let link = link::Link {
        server: server.clone(),
        control: running.control.clone(),
        snapshots: tracker.snapshot_sender(),
        closing: closing.clone(),
        stopping,
        events: events_tx,
    };
    let followed = link.follow(tracker).await;
    let _ = forwarding.await;
    match followed {
        Ok(end) => {
            running.shut_down(Some(&end), &server, &stop_asked).await;
            let exit = Exit::from(end);
            tracing::info!(%exit, "tmux-agent daemon stopped");
            Ok(exit)
        }
        Err(err) => {
            running.shut_down(None, &server, &stop_asked).await;
            Err(err)
        }
    }
}

/// What the daemon has made ready before it attaches: everything that can
/// fail, so that nothing can once tasks are running.
struct Prepared {
    /// The daemon is the only one for its server while this is held: to
    /// the end of the shutdown order.
    _lock: DaemonLock,
    config: DiscoveryInput,
    discovered: Discovered,
    reactor_settings: ReactorSettings,
    /// The activity fallback's screen patterns (`[agents.NAME]`).
    prompts: crate::status::prompt::PromptBook,
    /// `[notify]`.
    notify: crate::notify::NotifySettings,
    /// `[messages]`.
    messages: crate::messages::Policy,
    /// `[delivery]` and the agents' submit keys.
    delivery: crate::messages::pane::Delivery,
    /// Bound, and served once the daemon is attached (a client that
    /// connects meanwhile waits in the backlog).
    ipc: IpcServer,
    outbox: SharedOutbox,
    outbox_path: PathBuf,
    drain_grace: Duration,
    reloads: Reloads,
}

impl Prepared {
    /// Takes the server's lock, reads the configuration (refusing one with
    /// problems), binds the socket and opens the outbox. Hands back the
    /// `--detach` parent, told later.
    async fn new(
        settings: DaemonSettings,
        server: &ServerSocket,
    ) -> Result<(Self, Option<ReadyReport>), DaemonError> {
        let DaemonSettings {
            config,
            outbox: outbox_path,
            runtime_dir,
            drain_grace,
            reloads,
            ready,
        } = settings;
        // One daemon per tmux server (src/ipc): taken before anything else.
        let lock = DaemonLock::acquire(&Endpoint::in_dir(runtime_dir, server))?;
        take_over_legacy_outbox(server, &outbox_path);
        // The config before attaching: a daemon that could not act on
        // events says so before it shows itself as running.
        let configuration = reload::load_config(&config)
            .await
            .map_err(DaemonError::Discovery)?;
        if !configuration.problems.is_empty() {
            return Err(DaemonError::ConfigProblems(configuration.problems));
        }
        for warning in &configuration.warnings {
            tracing::warn!(%warning, "config");
        }
        let Configuration {
            servers: discovered,
            reactor: reactor_settings,
            prompts,
            notify,
            messages,
            delivery,
            ..
        } = configuration;
        let ipc = IpcServer::bind(&lock)?;
        // An outbox that cannot be written does not stop the daemon: it
        // acts on events from memory and says so (status, log), see
        // agent::outbox.
        let outbox = SharedOutbox::new(Outbox::open_or_memory(&outbox_path));
        let prepared = Self {
            _lock: lock,
            config,
            discovered,
            reactor_settings,
            prompts,
            notify,
            messages,
            delivery,
            ipc,
            outbox,
            outbox_path,
            drain_grace,
            reloads,
        };
        Ok((prepared, ready))
    }
}

/// Renames the outbox an older build kept under the socket's file name
/// alone to this server's full key (see [`crate::paths`]), under the
/// daemon lock. A failure is logged and the daemon starts on a new outbox:
/// the old one stays where it was, for the next start to try again.
fn take_over_legacy_outbox(server: &ServerSocket, outbox: &std::path::Path) {
    let Some(dir) = outbox.parent() else { return };
    let legacy = crate::paths::legacy_outbox(server, dir);
    match crate::agent::outbox::take_over_legacy(&legacy, outbox) {
        Ok(true) => tracing::warn!(
            from = %legacy.display(),
            to = %outbox.display(),
            "took over the outbox of an older tmux-agent"
        ),
        Ok(false) => {}
        Err(err) => tracing::error!(%err, "could not take over the older outbox"),
    }
}

/// Opens the control connection and reads the server once.
///
/// A connection that closes while attaching is tried again, a few times:
/// the sidecar session a SIGKILLed daemon left behind ends itself about a
/// second after its client (its pane watches for one), and a new daemon
/// that joined it just then loses it under its feet.
async fn attach(
    server: &ServerSocket,
    closing: &CancellationToken,
) -> Result<Tracker, DaemonError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match attach_once(server, closing.child_token()).await {
            Err(
                DaemonError::Attach {
                    source: ControlError::Closed,
                    ..
                }
                | DaemonError::Tracking {
                    source: TrackError::Control(ControlError::Closed),
                    ..
                },
            ) if tries < ATTACH_TRIES => {
                tracing::info!(
                    tries,
                    "the control connection closed while attaching; trying again"
                );
                tokio::time::sleep(ATTACH_RETRY * tries).await;
            }
            attached => return attached,
        }
    }
}

/// How many times a daemon tries to attach when the connection closes
/// under it at start.
const ATTACH_TRIES: u32 = 5;
/// The pause before the next try, times the tries so far.
const ATTACH_RETRY: Duration = Duration::from_millis(200);

async fn attach_once(
    server: &ServerSocket,
    closing: CancellationToken,
) -> Result<Tracker, DaemonError> {
    let connection = Connection::open(ConnectOptions::new(server.clone()), closing)
        .await
        .map_err(|source| match source {
            ControlError::NoServer { server } => DaemonError::NoServer { server },
            source => DaemonError::Attach {
                server: server.clone(),
                source,
            },
        })?;
    Tracker::start(connection, server.clone())
        .await
        .map_err(|source: TrackError| DaemonError::Tracking {
            server: server.clone(),
            source,
        })
}

/// The tmux server's `#{version}`, for status; `unknown` if it will not say.
async fn tmux_version(control: &ControlHandle, tracker: &Tracker) -> String {
    let Ok(command) = Command::display_message(tracker.model().sidecar(), "#{version}") else {
        return "unknown".to_owned();
    };
    match control.run(command).await {
        Ok(reply) => reply.text(),
        Err(_) => "unknown".to_owned(),
    }
}

/// Passes the tracker's events on to the reactor, in order, until the
/// tracker ends. The reactor's channel is deep and the reactor never waits
/// on an MCP server, so this does not hold up the tracker; a reactor that
/// has stopped is said once, and tracking goes on (groups, status). A stop
/// ends it at once: events not yet forwarded are dropped, and what the
/// reactor already committed stays in the outbox.
async fn forward_events(
    mut events: mpsc::Receiver<LifecycleEvent>,
    reactor: mpsc::Sender<LifecycleEvent>,
    stopping: CancellationToken,
) {
    let mut reactor = Some(reactor);
    let forwarding = async {
        while let Some(event) = events.recv().await {
            if let Some(to_reactor) = &reactor
                && to_reactor.send(event).await.is_err()
            {
                tracing::error!("the reactor stopped; events are no longer acted on");
                reactor = None;
            }
        }
    };
    tokio::select! {
        () = forwarding => {}
        () = stopping.cancelled() => {}
    }
}

/// Waits for `task` at most `grace`; a task still running then is aborted
/// and named in the log, so that no step can hold up the shutdown.
async fn join_within<T>(what: &str, task: &mut JoinHandle<T>, grace: Duration) -> Option<T> {
    match tokio::time::timeout(grace, &mut *task).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(err)) => {
            tracing::error!(%err, task = what, "a task panicked");
            None
        }
        Err(_) => {
            tracing::warn!(
                task = what,
                ?grace,
                "a task did not stop in time; abandoned"
            );
            task.abort();
            None
        }
    }
}

/// What runs once the daemon is attached, for the shutdown order.
struct Running {
    control: ControlHandle,
    /// Stops the group reconciler, the IPC server and the reload triggers.
    services: CancellationToken,
    service_tasks: Vec<JoinHandle<()>>,
    /// The reactor's supervisor: it ends when a run of the reactor does
    /// without failing (its events ended, or `reactor_stop`).
    reacting: JoinHandle<()>,
    /// Stops the reactor (after its grace) and the health publisher.
    reactor_stop: CancellationToken,
    health: JoinHandle<()>,
    /// `@agent-pending`'s writer: ends after the reactor (`reactor_stop`).
    pending_writer: JoinHandle<()>,
    pool: McpPool,
    drain_grace: Duration,
    /// Closes the control connection when dropped.
    close_connection: DropGuard,
    /// The daemon's lock, released when the shutdown is over.
    _lock: DaemonLock,
}

impl Running {
    /// Starts the MCP pool, the reactor, the health publisher, the group
    /// reconciler, the IPC server and the reload triggers on the tracker's
    /// connection. Returns them with the sender of the reactor's events.
    async fn start(
        prepared: Prepared,
        tracker: &Tracker,
        server: &ServerSocket,
        stopping: &CancellationToken,
        close_connection: DropGuard,
    ) -> (Self, mpsc::Sender<LifecycleEvent>) {
        let Prepared {
            _lock,
            config,
            discovered,
            reactor_settings,
            prompts,
            notify,
            messages: policy,
            delivery,
            ipc,
            outbox,
            outbox_path,
            drain_grace,
            reloads,
        } = prepared;
        let control = tracker.control();
        let pool = McpPool::new(&discovered);
        warn_of_misfits(reactor_settings.actions.clone(), pool.clone());
        let reactor_stop = CancellationToken::new();
        // One count for every supervised task: the reactor, its dispatchers
        // and the group reconciler (see `crate::supervise`).
        let restarts = crate::supervise::Restarts::default();
        let (to_reactor, events) = mpsc::channel(EVENT_BACKLOG);
        let (settings_tx, settings) = watch::channel(Arc::new(reactor_settings));
        // Save requests from the CLI: each waits for its answer, so few.
        let (reactor_commands, commands) = mpsc::channel(64);
        let events_published = crate::events::EventStream::default();
        // `@agent-pending`'s one writer, for the reactor's dispatchers and
        // the notifier's; it writes the last count once they have stopped.
        let (pending, pending_writer) =
            PendingGauge::spawn(control.clone(), outbox.clone(), reactor_stop.clone());
        let reacting = reacting::spawn(reacting::Start {
            inputs: reactor::Inputs {
                settings: settings.clone(),
                events,
                commands,
                restarts: restarts.clone(),
                published: events_published.clone(),
                pending: pending.clone(),
            },
            control: control.clone(),
            outbox: outbox.clone(),
            pool: Arc::new(pool.clone()),
            model: tracker.model().clone(),
            snapshots: tracker.snapshots(),
            stop: reactor_stop.clone(),
            restarts: restarts.clone(),
        });
        let prune_settings = settings.clone();
        let health = tokio::spawn(health::publish(
            pool.clone(),
            settings,
            outbox.clone(),
            control.clone(),
            reactor_stop.clone(),
        ));

        let services = CancellationToken::new();
        let (agents, keeping) = crate::status::keeper::spawn(
            control.clone(),
            crate::status::process::ProcessNames::new(prompts.agent_names()),
            tracker.snapshots(),
            services.clone(),
        );
        // Ends with the services, before the reactor's drain: its sender
        // must be gone for the reactor to see the end of its events.
        let agent_events = tokio::spawn(crate::status::keeper::forward_to_reactor(
            agents.changes(),
            tracker.snapshots(),
            to_reactor.clone(),
            services.clone(),
        ));
        // The fallback for agents without hooks, on the panes the keeper
        // knows; its observations go to the keeper like a hook's.
        let activity = crate::status::activity::Activity::new(
            control.clone(),
            crate::status::activity::ActivitySettings::for_server(server, Arc::new(prompts)),
            Arc::new(agents.sender()),
        );
        let watching = tokio::spawn(activity.run(
            crate::status::activity::watched_panes(agents.boards(), services.clone()),
            services.clone(),
        ));
        let notifying = crate::notify::spawn(
            notify,
            control.clone(),
            crate::notify::Queue {
                outbox: outbox.clone(),
                pending,
                restarts: restarts.clone(),
            },
            tracker.model().sidecar(),
            agents.changes(),
            services.clone(),
        )
        .await;
        // Each session's latest snapshot, for `tmux-agent restore`.
        let snapshotting = crate::sessions::keeper::spawn(
            control.clone(),
            tracker.snapshots(),
            &events_published,
            outbox.clone(),
            crate::sessions::keeper::SnapshotSettings::from_section(&discovered.config.snapshots),
            services.clone(),
        );
        let (groups, reconciling) = Reconciler::spawn(
            control.clone(),
            tracker.snapshots(),
            services.clone(),
            restarts.clone(),
        );
        // Messages (crate::messages): the mailbox beside the outbox, the
        // service the handler answers from, and the scheduler.
        let (policy_tx, policy) = watch::channel(Arc::new(policy));
        let (delivery_tx, delivery) = watch::channel(Arc::new(delivery));
        let mailbox_path = crate::paths::mailbox_beside(&outbox_path);
        let mailbox = tokio::task::spawn_blocking(move || {
            crate::messages::Mailbox::open_or_memory(&mailbox_path)
        })
        .await
        .unwrap_or_else(|_| crate::messages::Mailbox::in_memory().expect("an in-memory mailbox"));
        let messages = crate::messages::Messages::new(crate::messages::service::MessagesParts {
            mailbox,
            policy,
            delivery,
            events: events_published.clone(),
            agents: agents.clone(),
            groups: groups.clone(),
            snapshots: tracker.snapshots(),
            control: control.clone(),
        });
        let delivering = tokio::spawn(crate::messages::scheduler::run(
            messages.clone(),
            services.clone(),
        ));
        let pruning = tokio::spawn(prune::run(
            prune_settings,
            outbox.clone(),
            messages.clone(),
            services.clone(),
        ));
        let handler = Arc::new(handler::DaemonHandler {
            started: Utc::now(),
            started_at: Instant::now(),
            server: server.clone(),
            tmux_version: tmux_version(&control, tracker).await,
            snapshots: tracker.snapshots(),
            groups,
            pool: pool.clone(),
            outbox,
            reactor: reactor_commands,
            reload: reload::Reload::new(config, pool.clone(), settings_tx, policy_tx, delivery_tx),
            stopping: stopping.clone(),
            restarts,
            events: events_published,
            agents,
            messages,
        });
        tracing::info!(socket = %ipc.path().display(), "listening for tmux-agent commands");
        let serving = tokio::spawn(ipc.serve(handler.clone(), services.clone()));
        let reloading = tokio::spawn(reload::answer_triggers(handler, reloads, services.clone()));
        let running = Self {
            control,
            services,
            service_tasks: vec![
                reconciling,
                serving,
                reloading,
                pruning,
                snapshotting,
                keeping,
                agent_events,
                watching,
                notifying,
                delivering,
            ],
            reacting,
            reactor_stop,
            health,
            pending_writer,
            pool,
            drain_grace,
            close_connection,
            _lock,
        };
        (running, to_reactor)
    }

    /// The shutdown order (see the module doc), once tracking has ended:
    /// `end` is how, `None` when it failed. The connection closes when
    /// [`run`] returns.
    async fn shut_down(
        self,
        end: Option<&TrackEnd>,
        server: &ServerSocket,
        stop_asked: &CancellationToken,
    ) {
        let Self {
            control,
            services,
            service_tasks,
            mut reacting,
            reactor_stop,
            health,
            mut pending_writer,
            pool,
            drain_grace,
            close_connection,
            _lock,
        } = self;
        // The tracker has stopped. Next the IPC server (which removes its
        // socket file; a `stop` request being answered gets its answer
        // first) and the group reconciler.
        services.cancel();
        let services_deadline = tokio::time::Instant::now() + STEP_GRACE;
        for mut task in service_tasks {
            let left = services_deadline.saturating_duration_since(tokio::time::Instant::now());
            join_within("service", &mut task, left).await;
        }

        // The tracker has dropped its sender, so the reactor sees the end
        // of its events and delivers what is due; the grace bounds how
        // long, and what is left waits in the outbox for the next daemon.
        // (Its supervisor logged every run that failed or panicked.)
        // With the server gone, longer (see SERVER_GONE_DRAIN), unless a
        // stop is asked, which keeps the shutdown bound.
        let server_gone = matches!(
            end,
            Some(TrackEnd::LastSessionClosed | TrackEnd::ServerExited { .. })
        );
        let drained = if server_gone && !stop_asked.is_cancelled() {
            tokio::select! {
                drained = tokio::time::timeout(SERVER_GONE_DRAIN.max(drain_grace), &mut reacting) => drained,
                () = stop_asked.cancelled() => tokio::time::timeout(drain_grace, &mut reacting).await,
            }
        } else {
            tokio::time::timeout(drain_grace, &mut reacting).await
        };
        reactor_stop.cancel();
        match drained {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(%err, "the reactor's supervisor panicked"),
            Err(_) => {
                join_within("reactor", &mut reacting, STEP_GRACE).await;
            }
        }
        let mut health = health;
        join_within("health", &mut health, STEP_GRACE).await;
        join_within("@agent-pending", &mut pending_writer, STEP_GRACE).await;
        if tokio::time::timeout(2 * STEP_GRACE, pool.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("the MCP servers did not stop in time; abandoned");
        }

        // When the last session closed the connection is gone with our
        // session, and the server is exiting; but a session created since
        // the link looked would keep it alive, and `@agent-daemon` must
        // not say `running` there (a one-shot fails harmlessly if the
        // server is gone). Either way within a step's grace.
        let withdrawn = if matches!(end, Some(TrackEnd::LastSessionClosed)) {
            tokio::time::timeout(STEP_GRACE, health::withdraw_oneshot(server)).await
        } else {
            tokio::time::timeout(STEP_GRACE, health::withdraw(&control)).await
        };
        if withdrawn.is_err() {
            tracing::warn!("could not clear @agent-daemon in time");
        }
        // Last, the connection; then the lock goes, and a next daemon may
        // start.
        drop(close_connection);
    }
}

/// Logs, as warnings, the actions whose arguments do not fit the tools
/// they call (`config check --strict` makes them errors). Each server is
/// asked once it is connected for its own reasons: the check never starts
/// a connection, so it changes nothing the daemon shows (`@agent-mcp`)
/// and spawns no server a config keeps lazy. A server that never connects
/// is never checked; its calls say why they fail.
fn warn_of_misfits(actions: crate::agent::actions::ActionMap, pool: McpPool) {
    use crate::agent::fit;
    tokio::spawn(async move {
        let mut unchecked: std::collections::BTreeSet<String> = actions
            .values()
            .flatten()
            .map(|a| a.server.clone())
            .collect();
        // Long enough for any lazy server's first call; then it gives up.
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        while !unchecked.is_empty() && tokio::time::Instant::now() < until {
            tick.tick().await;
            let ready: Vec<String> = pool
                .servers()
                .into_iter()
                .filter(|s| s.state == "ready" && unchecked.contains(&s.name))
                .map(|s| s.name)
                .collect();
            if ready.is_empty() {
                continue;
            }
            let names: Vec<&str> = ready.iter().map(String::as_str).collect();
            let within = std::time::Duration::from_secs(30);
            for finding in fit::check_servers(&actions, &pool, within, &names).await {
                if let fit::Outcome::Misfit(misfit) = &finding.outcome {
                    tracing::warn!(
                        action = %finding.key,
                        "this action will fail at its server: {misfit}; `tmux-agent config check` lists every one"
                    );
                }
            }
            for name in &ready {
                unchecked.remove(name);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_connection_is_a_stop_and_other_ends_keep_their_reason() {
        let cases = [
            (TrackEnd::LastSessionClosed, Exit::LastSessionClosed),
            (
                TrackEnd::ServerExited { sessions: 2 },
                Exit::ServerExited { sessions: 2 },
            ),
            (TrackEnd::Connection(ExitReason::Cancelled), Exit::Stopped),
            (
                TrackEnd::Connection(ExitReason::Eof),
                Exit::Disconnected(ExitReason::Eof),
            ),
        ];
        for (end, exit) in cases {
            assert_eq!(Exit::from(end), exit);
        }
        assert_eq!(Exit::Stopped.to_string(), "stopped");
    }
}
