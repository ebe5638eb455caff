//! `tmux-agent daemon`: the sidecar itself, as a command. Parses its flags,
//! starts a background daemon for `--detach`, turns signals into the
//! daemon's shutdown token (SIGINT, SIGTERM) and reload trigger (SIGHUP),
//! finds the configuration, and says how it ended. The daemon is
//! [`crate::daemon::run`].

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::SignalKind;

use super::GlobalArgs;
use crate::control::connection::ExitReason;
use crate::control::server::ServerSocket;
use crate::daemon::{
    self, DaemonError, DaemonSettings, Exit, ReadyReport, ReadyWait, ReloadTrigger,
};
use crate::mcp::discovery::DiscoveryInput;

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

/// How long `--detach` waits for the background daemon to attach.
const DETACH_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: DaemonArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if args.detach {
        return detach(global).await;
    }
    // First, before any child process is started: they must not inherit it.
    let ready = ReadyReport::inherited();
    let server = global.server();
    let config = DiscoveryInput::from_process(global.config.clone())
        .context("cannot find the config files")?;
    // SIGHUP means reload, as for most daemons.
    let (reload, reloads) = daemon::reload_channel();
    reload_on_hangup(reload);
    let shutdown = super::shutdown_on(&[SignalKind::interrupt(), SignalKind::terminate()]);
    let settings = DaemonSettings {
        reloads,
        ready,
        ..DaemonSettings::new(&server, config)
    };
    let exit = daemon::run(settings, server.clone(), shutdown)
        .await
        .map_err(|err| explain(err, &server))?;
    eprintln!("tmux-agent daemon: {}", describe(&exit, &server));
    Ok(ExitCode::SUCCESS)
}

/// Answers each SIGHUP like a `reload` request, for as long as the process
/// runs.
fn reload_on_hangup(reload: ReloadTrigger) {
    let Ok(mut hangups) = tokio::signal::unix::signal(SignalKind::hangup()) else {
        tracing::warn!("could not install the SIGHUP handler");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match reload.reload().await {
                Ok(message) => tracing::info!(%message, "reloaded on SIGHUP"),
                Err(err) => tracing::warn!(message = %err, "reload on SIGHUP failed"),
            }
        }
    });
}

/// The daemon's error with what a person can do about it.
fn explain(err: DaemonError, server: &ServerSocket) -> anyhow::Error {
    match err {
        DaemonError::NoServer { .. } => anyhow::anyhow!(
            "no tmux server is running for `{server}`: start one with `{server} new -d`, or pick another server with -L/-S"
        ),
        DaemonError::ConfigProblems(_) => anyhow::anyhow!(
            "{err}\n(`tmux-agent config check` lists them; fix them and start it again)"
        ),
        // The message already says the cause: no chain to print after it.
        err => anyhow::anyhow!("{err}"),
    }
}

/// Says in words why the daemon stopped.
fn describe(exit: &Exit, server: &ServerSocket) -> String {
    match exit {
        Exit::LastSessionClosed => format!("the last session on `{server}` closed; stopped"),
        Exit::ServerExited { sessions } => format!(
            "the tmux server of `{server}` exited; its {sessions} session(s) were closed with it; stopped"
        ),
        Exit::Stopped => "stopped".to_owned(),
        Exit::Disconnected(reason @ (ExitReason::Exit(_) | ExitReason::Eof)) => {
            format!("{reason} (the tmux-agent session was closed or this client was detached)")
        }
        Exit::Disconnected(reason) => reason.to_string(),
    }
}

/// `daemon --detach`: starts a background daemon and says where it runs.
async fn detach(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (pid, log_path) = spawn_detached(global).await?;
    crate::outln!(
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
    // The log names sessions and servers: 0600 in a 0700 directory, like
    // the outbox beside it (an existing log is closed too).
    if let Some(dir) = log_path.parent() {
        crate::paths::private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::paths::restrict(&log_path, 0o600)
        .with_context(|| format!("making {} private", log_path.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
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
    // The child reports "attached" on a socket it inherits as fd 3; EOF
    // without that word means it failed (its reason is in the log).
    let ready = ReadyWait::prepare(&mut cmd).context("creating a socket pair")?;
    // SAFETY: setsid is async-signal-safe and touches no memory; it only
    // moves the child out of our session and process group, so it outlives
    // the terminal or `run-shell` that started it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the daemon")?;
    let pid = child.id();
    // Off the async threads: the wait blocks on the socket.
    let attached = tokio::task::spawn_blocking(move || ready.wait(DETACH_TIMEOUT))
        .await
        .context("waiting for the daemon")??;
    if attached {
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
