//! `tmux-agent daemon`: the sidecar itself. Attaches to the tmux server,
//! follows session lifecycle, and marks itself in the global option
//! `@agent-daemon` while it runs.

use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::daemon_services::{self, DaemonHooks, ReloadHook, SaveHook, StatusHook};
use super::{GlobalArgs, attach, describe_end};
use crate::agent::outbox::{HistoryEntry, Outbox, SharedOutbox};
use crate::agent::reactor::{self, ReactorCommand};
use crate::agent::settings::ReactorSettings;
use crate::configuration::Configuration;
use crate::control::SessionId;
use crate::control::command::Command;
use crate::control::connection::ControlHandle;
use crate::ipc::{
    ActionsStatus, DaemonLock, Endpoint, McpServerStatus, SaveReport, SavedCall, StatusReport,
};
use crate::mcp::McpPool;
use crate::schema;
use crate::state::TrackEnd;

/// Run the sidecar on a tmux server.
///
/// The daemon attaches as a control client in a session of its own
/// ("tmux-agent"), so it never counts as a client of your sessions. It sets
/// the global option @agent-daemon to "running" while attached. When your
/// last session closes it closes its own session too and exits, so the tmux
/// server exits as it would without it. Logs go to stderr; set
/// TMUX_AGENT_LOG=debug for more.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tmux-agent daemon\n  tmux-agent -L work daemon --detach\n  # in tmux.conf:\n  run-shell -b 'tmux-agent daemon --detach'"
)]
pub struct DaemonArgs {
    /// Run in the background: start a detached daemon, wait until it is
    /// attached, print its pid and log file, and return. Its log goes to
    /// $XDG_STATE_HOME/tmux-agent/daemon-<server>.log.
    #[arg(long)]
    pub detach: bool,
}

/// How long a stopping daemon keeps delivering the calls that are due.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How often `@agent-mcp` is brought up to date (only written on change).
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps the global `@agent-mcp` option showing the health of the MCP
/// servers the reactor calls, e.g. `builtin:ok memory:down`, and
/// `@agent-outbox` set to `memory` while the outbox is off the disk, so a
/// status line can show it.
async fn publish_health(
    pool: McpPool,
    settings: watch::Receiver<Arc<ReactorSettings>>,
    outbox: SharedOutbox,
    control: ControlHandle,
    stop: CancellationToken,
) {
    let mut shown = String::new();
    let mut shown_in_memory = false;
    let mut tick = tokio::time::interval(HEALTH_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let servers = settings.borrow().named_servers();
        let summary = pool
            .servers()
            .iter()
            .filter(|s| servers.contains(&s.name))
            .map(|s| {
                let health = match s.state {
                    "ready" | "idle" => "ok",
                    "connecting" => "connecting",
                    "backoff" => "down",
                    other => other,
                };
                format!("{}:{health}", s.name)
            })
            .collect::<Vec<_>>()
            .join(" ");
        if summary != shown
            && let Ok(command) = Command::set_global_option(schema::global::MCP, &summary)
            && control.run(command).await.is_ok()
        {
            shown = summary;
        }
        let in_memory = outbox.lock().degraded().is_some();
        if in_memory != shown_in_memory {
            let command = if in_memory {
                Command::set_global_option(schema::global::OUTBOX, "memory")
            } else {
                Command::unset_global_option(schema::global::OUTBOX)
            };
            if let Ok(command) = command
                && control.run(command).await.is_ok()
            {
                shown_in_memory = in_memory;
            }
        }
    }
}

/// Adds the MCP servers and the outbox to `status`. The reactor holds the
/// outbox's lock only for single SQLite statements, never across a call to
/// an MCP server, so a status request never waits for one.
fn status_hook(pool: McpPool, outbox: SharedOutbox) -> StatusHook {
    Box::new(move |report: &mut StatusReport| {
        report.mcp_servers = pool
            .servers()
            .into_iter()
            .map(|s| McpServerStatus {
                name: s.name,
                state: s.state.to_owned(),
                detail: s.detail,
            })
            .collect();
        let outbox = outbox.lock();
        if let Ok(counts) = outbox.counts(None) {
            report.actions = Some(ActionsStatus {
                pending: counts.pending + counts.inflight,
                failed: counts.failed,
                recent_failures: outbox.recent_failures(5).unwrap_or_default(),
                in_memory: outbox.degraded().map(str::to_owned),
                unconfigured: outbox
                    .open_by_server()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(server, _)| !report.mcp_servers.iter().any(|s| s.name == *server))
                    .collect(),
            });
        }
    })
}

/// Re-reads the configuration (see [`reload`]); one reload at a time.
fn reload_hook(
    global: GlobalArgs,
    pool: McpPool,
    settings: watch::Sender<Arc<ReactorSettings>>,
) -> ReloadHook {
    let state = Arc::new((global, pool, settings, AsyncMutex::new(())));
    Box::new(move || {
        let state = state.clone();
        Box::pin(async move {
            let (global, pool, settings, one_at_a_time) = &*state;
            let _turn = one_at_a_time.lock().await;
            reload(global, pool, settings).await
        })
    })
}

/// Discovers the configuration again and, if it is valid, puts it in force:
/// the MCP pool restarts what changed, and the reactor gets its new
/// settings. An invalid configuration changes nothing; the reason is the
/// answer.
async fn reload(
    global: &GlobalArgs,
    pool: &McpPool,
    settings: &watch::Sender<Arc<ReactorSettings>>,
) -> Result<String, String> {
    let kept = "the configuration in force is unchanged";
    let configuration = Configuration::load(global.config.clone())
        .await
        .map_err(|err| format!("{err}; {kept}"))?;
    if !configuration.problems.is_empty() {
        let problems: Vec<String> = configuration
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect();
        return Err(format!(
            "the configuration has problems ({}); {kept} (see `tmux-agent config check`)",
            problems.join("; ")
        ));
    }
    for warning in &configuration.warnings {
        tracing::warn!(%warning, "config");
    }
    let servers = pool.reconfigure(&configuration.servers);
    let new = configuration.reactor;
    let reactor = describe_reactor(&settings.borrow(), &new);
    settings.send_replace(Arc::new(new));
    let message = format!("servers: {}; reactor: {reactor}", servers.summary());
    tracing::info!(%message, "configuration reloaded");
    Ok(message)
}

/// The reactor's actions per event, and what changed: `2 actions for
/// session-created, 1 for checkpoint (changed: checkpoint)`.
fn describe_reactor(old: &ReactorSettings, new: &ReactorSettings) -> String {
    let counts: Vec<String> = new
        .actions
        .iter()
        .filter(|(_, specs)| !specs.is_empty())
        .enumerate()
        .map(|(i, (trigger, specs))| match (i, specs.len()) {
            (0, 1) => format!("1 action for {trigger}"),
            (0, n) => format!("{n} actions for {trigger}"),
            (_, n) => format!("{n} for {trigger}"),
        })
        .collect();
    let listed = if counts.is_empty() {
        "no actions".to_owned()
    } else {
        counts.join(", ")
    };
    let mut changed: Vec<String> = old
        .actions
        .keys()
        .chain(new.actions.keys())
        .filter(|t| old.actions.get(*t) != new.actions.get(*t))
        .map(|t| t.to_string())
        .collect();
    changed.sort();
    changed.dedup();
    if old.checkpoint_interval != new.checkpoint_interval {
        changed.push("checkpoint_interval".to_owned());
    }
    if changed.is_empty() {
        format!("{listed} (unchanged)")
    } else {
        format!("{listed} (changed: {})", changed.join(", "))
    }
}

/// How often a save request looks at the outbox for its calls' outcome.
const SAVE_POLL: Duration = Duration::from_millis(25);

/// Asks the reactor to save a session, then follows the calls it committed
/// in the outbox until they are done or the wait is over.
fn save_hook(commands: mpsc::Sender<ReactorCommand>, outbox: SharedOutbox) -> SaveHook {
    Box::new(move |session: SessionId, wait: Duration| {
        let commands = commands.clone();
        let outbox = outbox.clone();
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            let (reply, answer) = oneshot::channel();
            commands
                .send(ReactorCommand::Save { session, reply })
                .await
                .map_err(|_| "the reactor has stopped".to_owned())?;
            let keys = answer
                .await
                .map_err(|_| "the reactor has stopped".to_owned())??;
            loop {
                let entries = outbox.lock().by_keys(&keys).map_err(|e| e.to_string())?;
                let complete = entries
                    .iter()
                    .all(|e| e.state == "delivered" || e.state == "failed");
                if complete || tokio::time::Instant::now() >= deadline {
                    return Ok(SaveReport {
                        session,
                        complete,
                        calls: entries.into_iter().map(saved_call).collect(),
                    });
                }
                tokio::time::sleep(SAVE_POLL).await;
            }
        })
    })
}

fn saved_call(entry: HistoryEntry) -> SavedCall {
    SavedCall {
        server: entry.server,
        tool: entry.tool,
        state: entry.state,
        attempts: entry.attempts,
        latency_ms: entry.latency_ms,
        error: entry.error,
    }
}

/// How long `--detach` waits for the background daemon to attach.
const DETACH_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: DaemonArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if args.detach {
        return detach(global).await;
    }
    keep_ready_fd_from_children();
    let server = global.server();
    // One daemon per tmux server (src/ipc): taken before anything else, so a
    // second daemon says which pid runs and exits 1.
    let lock = DaemonLock::acquire(&Endpoint::for_server(&server))?;
    // The config first: a daemon that could not act on events should say so
    // before it attaches, not after.
    let configuration = Configuration::load(global.config.clone()).await?;
    // As `reload` does: a daemon never runs a config it could only half
    // read (a dropped server entry, a preset that fell back to the default).
    if !configuration.problems.is_empty() {
        let problems: Vec<String> = configuration
            .problems
            .iter()
            .map(|p| format!("\n  {p}"))
            .collect();
        anyhow::bail!(
            "the configuration has {} problem(s), so the daemon did not start:{}\n(`tmux-agent config check` lists them; fix them and start it again)",
            problems.len(),
            problems.concat()
        );
    }
    for warning in &configuration.warnings {
        tracing::warn!(%warning, "config");
    }
    let Configuration {
        servers: discovered,
        reactor: settings,
        ..
    } = configuration;
    let outbox_path = crate::paths::outbox(&server);
    // An outbox that cannot be written does not stop the daemon: it acts on
    // events from memory and says so (status, log), see agent::outbox.
    let outbox = SharedOutbox::new(Outbox::open_or_memory(&outbox_path));

    let connection_token = CancellationToken::new();
    let tracker = attach(global, connection_token.clone()).await?;
    let control = tracker.control();
    control
        .run(Command::set_global_option(
            schema::global::DAEMON,
            "running",
        )?)
        .await?;
    // A previous daemon's `memory` says nothing about this one's outbox.
    let _ = control
        .run(Command::unset_global_option(schema::global::OUTBOX)?)
        .await;
    tracing::info!(
        server = %server,
        sessions = tracker.model().sessions().count(),
        outbox = %outbox_path.display(),
        "tmux-agent daemon attached"
    );

    let pool = McpPool::new(&discovered);
    let reactor_stop = CancellationToken::new();
    let (reactor_tx, reactor_rx) = mpsc::channel(4096);
    let (settings_tx, settings_rx) = watch::channel(Arc::new(settings));
    let (commands_tx, commands_rx) = mpsc::channel(64);
    let reacting = tokio::spawn(reactor::run(
        reactor::Inputs {
            settings: settings_rx.clone(),
            events: reactor_rx,
            commands: commands_rx,
        },
        control.clone(),
        outbox.clone(),
        Arc::new(pool.clone()),
        tracker.model().clone(),
        reactor_stop.clone(),
    ));
    let health = tokio::spawn(publish_health(
        pool.clone(),
        settings_rx,
        outbox.clone(),
        control.clone(),
        reactor_stop.clone(),
    ));
    // Groups and the CLI socket (src/group, src/ipc); SIGHUP reloads.
    let shutdown = daemon_services::shutdown_on_int_term();
    let services = daemon_services::start(
        &lock,
        global.server(),
        &tracker,
        shutdown.clone(),
        DaemonHooks {
            status: Some(status_hook(pool.clone(), outbox.clone())),
            reload: Some(reload_hook(global.clone(), pool.clone(), settings_tx)),
            save: Some(save_hook(commands_tx, outbox.clone())),
            mcp_stats: Some(Box::new({
                let pool = pool.clone();
                move || serde_json::to_value(pool.stats()).unwrap_or_default()
            })),
        },
    )
    .await?;
    report_ready();

    let (events_tx, mut events) = mpsc::channel(1024);
    let tracking = tokio::spawn(tracker.run(events_tx, shutdown));
    while let Some(event) = events.recv().await {
        // The reactor's channel is deep and the reactor never waits on an
        // MCP server, so this send does not hold up the tracker.
        if reactor_tx.send(event).await.is_err() {
            tracing::error!("the reactor stopped; events are no longer acted on");
        }
    }
    let end = tracking.await??;
    services.stop().await;

    // Let the reactor deliver what is due, within a grace period; what is
    // left waits in the outbox for the next daemon.
    drop(reactor_tx);
    let stopper = reactor_stop.clone();
    let grace = tokio::spawn(async move {
        tokio::time::sleep(DRAIN_GRACE).await;
        stopper.cancel();
    });
    match reacting.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(%err, "the reactor failed"),
        Err(err) => tracing::error!(%err, "the reactor panicked"),
    }
    grace.abort();
    reactor_stop.cancel();
    let _ = health.await;
    pool.shutdown().await;

    if !matches!(end, TrackEnd::LastSessionClosed) {
        // Leave no stale "running" behind on a server that lives on. The
        // connection may already be gone, which is fine.
        for option in [schema::global::DAEMON, schema::global::OUTBOX] {
            if let Ok(unset) = Command::unset_global_option(option) {
                let _ = control.run(unset).await;
            }
        }
    }
    connection_token.cancel();
    let message = describe_end(&end, global);
    tracing::info!(%message, "tmux-agent daemon stopped");
    eprintln!("tmux-agent daemon: {message}");
    Ok(ExitCode::SUCCESS)
}

/// `daemon --detach`: starts a background daemon and says where it runs.
async fn detach(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (pid, log_path) = spawn_detached(global).await?;
    println!(
        "tmux-agent daemon running on `{}` (pid {pid}); log: {}",
        global.server(),
        log_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Starts this binary again as a foreground daemon in a new session (so it
/// outlives the terminal or `run-shell` that started it), with its output in
/// the log file, and waits until it has attached. Returns its pid and log.
pub(crate) async fn spawn_detached(
    global: &GlobalArgs,
) -> anyhow::Result<(u32, std::path::PathBuf)> {
    let server = global.server();
    let log_path = crate::paths::daemon_log(&server);
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening the log file {}", log_path.display()))?;
    // Where this daemon's output starts in a log earlier daemons wrote too.
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("finding the tmux-agent binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(server.tmux_args());
    if let Some(config) = &global.config {
        cmd.arg("--config").arg(config);
    }
    cmd.arg("daemon")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory; it only
    // moves the child out of our session and process group.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    // The child reports "attached" on a socket it inherits as fd 3; EOF
    // without that word means it failed (its reason is in the log).
    let (ready, child_end) =
        std::os::unix::net::UnixStream::pair().context("creating a socket pair")?;
    let child_fd = child_end.as_raw_fd();
    cmd.env(READY_FD_ENV, READY_FD.to_string());
    // SAFETY: between fork and exec only async-signal-safe calls: dup2 puts
    // the socket on a known fd (without close-on-exec), setsid moves the
    // child out of our session and process group.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(child_fd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the daemon")?;
    drop(child_end);
    let pid = child.id();

    ready.set_read_timeout(Some(DETACH_TIMEOUT))?;
    let mut word = String::new();
    // One line, not up to EOF: the daemon's tmux child inherits the fd, so
    // EOF would only come when the tmux client exits.
    let _ = std::io::BufReader::new((&ready).take(64)).read_line(&mut word);
    if word.trim() == "attached" {
        return Ok((pid, log_path));
    }
    // EOF came first: the child is on its way out; give it a moment to be reaped.
    let mut exited = None;
    for _ in 0..100 {
        exited = child.try_wait()?;
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match exited {
        Some(status) => {
            let log = std::fs::read(&log_path).unwrap_or_default();
            let ours = String::from_utf8_lossy(log.get(log_start as usize..).unwrap_or_default());
            let ours = ours.trim();
            let last = if ours.is_empty() { "(no output)" } else { ours };
            anyhow::bail!(
                "the daemon exited at once ({status}): {last}\n(log: {})",
                log_path.display()
            )
        }
        None => anyhow::bail!(
            "the daemon (pid {pid}) did not attach within {DETACH_TIMEOUT:?}; see {}",
            log_path.display()
        ),
    }
}

/// The fd on which a detached daemon reports that it has attached.
const READY_FD: i32 = 3;
/// Tells a daemon started by `--detach` which fd to report on.
const READY_FD_ENV: &str = "TMUX_AGENT_READY_FD";

/// Marks the readiness fd close-on-exec, so the tmux client and MCP servers
/// the daemon starts do not hold it open.
fn keep_ready_fd_from_children() {
    if std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        == Some(READY_FD)
    {
        // SAFETY: fcntl on an fd number only changes that fd's flags.
        unsafe {
            libc::fcntl(READY_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// Tells the `--detach` parent, if there is one, that we are attached.
fn report_ready() {
    let Some(fd) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    if fd != READY_FD {
        return;
    }
    // SAFETY: the parent put a socket on this fd for us alone, and nothing
    // else in the process uses it; the File takes ownership and closes it.
    let mut socket = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = socket.write_all(b"attached\n");
}
