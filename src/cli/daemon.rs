//! `tmux-agent daemon`: the sidecar itself. Attaches to the tmux server,
//! follows session lifecycle, and marks itself in the global option
//! `@agent-daemon` while it runs.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{GlobalArgs, attach, describe_end, shutdown_on_signal};
use crate::agent::outbox::Outbox;
use crate::agent::reactor;
use crate::control::command::Command;
use crate::control::connection::ControlHandle;
use crate::mcp::McpPool;
use crate::state::TrackEnd;

/// The global option that says a daemon is attached.
pub const DAEMON_OPTION: &str = "@agent-daemon";

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
/// servers the reactor calls, e.g. `builtin:ok memory:down`.
async fn publish_health(
    pool: McpPool,
    servers: Vec<String>,
    control: ControlHandle,
    stop: CancellationToken,
) {
    let mut shown = String::new();
    let mut tick = tokio::time::interval(HEALTH_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
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
            && let Ok(command) = Command::set_global_option("@agent-mcp", &summary)
            && control.run(command).await.is_ok()
        {
            shown = summary;
        }
    }
}

/// How long `--detach` waits for the background daemon to attach.
const DETACH_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: DaemonArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if args.detach {
        return detach(global).await;
    }
    let server = global.server();
    // The config first: a daemon that could not act on events should say so
    // before it attaches, not after.
    let discovered = super::mcp::load_quietly(global).await?;
    for problem in discovered.problems.iter().chain(&discovered.warnings) {
        tracing::warn!(%problem, "config");
    }
    let settings = crate::agent::settings::from_config(&discovered.config)
        .context("the reactor config is invalid; run `tmux-agent config check`")?;
    let outbox_path =
        crate::paths::state_dir().join(format!("outbox-{}.db", crate::paths::server_key(&server)));
    let outbox = Outbox::open(&outbox_path).context("opening the outbox")?;

    let connection_token = CancellationToken::new();
    let tracker = attach(global, connection_token.clone()).await?;
    let control = tracker.control();
    control
        .run(Command::set_global_option(DAEMON_OPTION, "running")?)
        .await?;
    tracing::info!(
        server = %server,
        sessions = tracker.model().sessions().count(),
        outbox = %outbox_path.display(),
        "tmux-agent daemon attached"
    );

    let pool = McpPool::new(&discovered);
    let reactor_servers: Vec<String> = {
        let mut names: Vec<String> = settings
            .actions
            .values()
            .flatten()
            .map(|a| a.server.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let reactor_stop = CancellationToken::new();
    let (reactor_tx, reactor_rx) = mpsc::channel(4096);
    let reacting = tokio::spawn(reactor::run(
        settings,
        control.clone(),
        outbox,
        Arc::new(pool.clone()),
        tracker.model().clone(),
        reactor_rx,
        reactor_stop.clone(),
    ));
    let health = tokio::spawn(publish_health(
        pool.clone(),
        reactor_servers,
        control.clone(),
        reactor_stop.clone(),
    ));
    report_ready();

    let shutdown = shutdown_on_signal();
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
        if let Ok(unset) = Command::unset_global_option(DAEMON_OPTION) {
            let _ = control.run(unset).await;
        }
    }
    connection_token.cancel();
    let message = describe_end(&end, global).await;
    tracing::info!(%message, "tmux-agent daemon stopped");
    eprintln!("tmux-agent daemon: {message}");
    Ok(ExitCode::SUCCESS)
}

/// Starts this binary again as a foreground daemon in a new session (so it
/// outlives the terminal or `run-shell` that started it), with its output in
/// the log file, and waits until it has attached.
async fn detach(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
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
    let _ = (&ready).take(64).read_to_string(&mut word);
    if word.trim() == "attached" {
        println!(
            "tmux-agent daemon running on `{server}` (pid {pid}); log: {}",
            log_path.display()
        );
        return Ok(ExitCode::SUCCESS);
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
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = log.lines().last().unwrap_or("(no output)");
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
