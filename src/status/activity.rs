//! The pane-activity fallback (DESIGN.md D15, issue #12 item 3): the status
//! of an agent that sends no hooks, from what tmux pushes about its pane.
//!
//! **What tmux pushes.** Each watched pane's output is piped by tmux itself
//! (`pipe-pane -O -o`) into `cat`, which writes it into a FIFO the daemon
//! reads. The bytes only mark activity; they are never read as text. So:
//!
//! - output arrives → [`AgentStatus::Working`] (once, not per byte);
//! - no output for [`ActivitySettings::settle`] → one `capture-pane` of the
//!   screen, read by [`PromptBook`] → waiting, working (a quiet busy
//!   screen), idle or unknown;
//! - a quiet pane costs nothing: `cat` and the daemon's reader both sleep in
//!   `read`, no timer runs, no tmux command is sent.
//!
//! **Why not a second control client.** The design's first choice was an
//! output-enabled `tmux -C` limited to agent panes with `refresh-client -A
//! '%ID:on'`. In tmux (3.3a `control.c`, unchanged through master), a
//! control client gets `%output` only for panes whose window is linked into
//! *its own attached session* (`control_write_output` returns early
//! otherwise), and `-A` resolves panes the same way (`control_window_pane`).
//! Agent panes live in the user's sessions, so that client would have to be
//! attached to each of them (it counts in `session_attached`, which breaks
//! pickers: tmux-sessionizer PR #195) or have their windows linked into its
//! session (a linked window survives `kill-session` of the user's session,
//! and `-t %N` may then resolve to our session). `refresh-client -B`
//! subscriptions are out because of tmux#4916 (see the tracker), and they
//! only see `window_activity` to the second, too coarse to settle in time.
//! `pipe-pane` has none of these effects; its costs: one `cat` per watched
//! pane (blocked in `read`), and the pane's one pipe slot. A pane that
//! already has a pipe (the user's logging) keeps it (`-o`), and gets no
//! fallback; a user `pipe-pane` later replaces ours the same way.
//!
//! **Restarts.** The FIFO's path is fixed per server and pane, and it is
//! opened read-write, so it never reports end-of-file and a `cat` left by
//! an earlier daemon (its pane quiet meanwhile) feeds this one. A `cat`
//! whose reader went away dies of `SIGPIPE` at its pane's next output, and
//! tmux closes the pipe; the next daemon opens a new one.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::model::{AgentKind, AgentStatus, Board, Observation, Source};
use super::prompt::PromptBook;
use crate::control::PaneId;
use crate::control::command::{Command, CommandError};
use crate::control::connection::{ControlError, ControlHandle};
use crate::control::server::ServerSocket;

/// How long a pane must be quiet before its screen is read. Spinners redraw
/// every 50–150 ms, so a working agent is never quiet this long; a finished
/// one is seen within this of its last byte.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(600);

/// What the fallback needs besides the connection.
#[derive(Debug, Clone)]
pub struct ActivitySettings {
    /// Quiet time before the screen is read.
    pub settle: Duration,
    /// Where the FIFOs live (one per watched pane), made 0700.
    pub fifo_dir: PathBuf,
    /// The screen patterns.
    pub book: Arc<PromptBook>,
}

impl ActivitySettings {
    /// The defaults for the daemon of `server`: the FIFOs in the runtime
    /// directory, under the server's key.
    pub fn for_server(server: &ServerSocket, book: Arc<PromptBook>) -> Self {
        Self {
            settle: DEFAULT_SETTLE,
            fifo_dir: fifo_dir(server),
            book,
        }
    }
}

/// `$XDG_RUNTIME_DIR/tmux-agent/activity-<server key>/`.
pub fn fifo_dir(server: &ServerSocket) -> PathBuf {
    crate::ipc::endpoint::runtime_dir()
        .join(format!("activity-{}", crate::paths::server_key(server)))
}

/// Why a pane could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("cannot make the FIFO {path}: {source}")]
    Fifo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Build(#[from] CommandError),
    #[error(transparent)]
    Tmux(#[from] ControlError),
}

/// Where the fallback's observations go: the status keeper's sender in the
/// daemon, a channel in tests. It must not wait (a pane's reader calls it).
pub trait Observer: Send + Sync + 'static {
    fn observe(&self, observation: Observation);
}

impl Observer for super::ObservationSender {
    fn observe(&self, observation: Observation) {
        // A full queue is logged by the keeper's sender.
        super::ObservationSender::observe(self, observation);
    }
}

impl Observer for mpsc::UnboundedSender<Observation> {
    fn observe(&self, observation: Observation) {
        // The receiver gone means the daemon is stopping.
        let _ = self.send(observation);
    }
}

/// The panes to watch, and the agent each runs (if known). Whoever knows
/// which panes run agents (the status keeper) publishes it.
pub type WatchedPanes = BTreeMap<PaneId, Option<AgentKind>>;

/// The panes the board knows to run an agent (and have not exited), kept
/// up to date from `boards` until `stop`: what [`Activity::run`] follows in
/// the daemon. A pane is on the board once the process tree or a hook has
/// named its agent.
pub fn watched_panes(
    mut boards: watch::Receiver<Arc<Board>>,
    stop: CancellationToken,
) -> watch::Receiver<WatchedPanes> {
    let on_board = |board: &Board| -> WatchedPanes {
        board
            .panes()
            .filter(|agent| agent.status != AgentStatus::Exited)
            .map(|agent| (agent.pane, agent.kind.clone()))
            .collect()
    };
    let (tx, rx) = watch::channel(on_board(&boards.borrow_and_update()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = boards.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
            let wanted = on_board(&boards.borrow_and_update());
            // Most board changes are statuses: the set stays, nobody wakes.
            tx.send_if_modified(|panes| {
                let differs = *panes != wanted;
                if differs {
                    *panes = wanted;
                }
                differs
            });
        }
    });
    rx
}

/// The fallback's task: keeps one reader per watched pane.
pub struct Activity {
    control: ControlHandle,
    settings: ActivitySettings,
    sink: Arc<dyn Observer>,
    readers: HashMap<PaneId, Reader>,
}

struct Reader {
    kind: Option<AgentKind>,
    task: JoinHandle<()>,
}

impl Activity {
    pub fn new(
        control: ControlHandle,
        settings: ActivitySettings,
        sink: Arc<dyn Observer>,
    ) -> Self {
        Self {
            control,
            settings,
            sink,
            readers: HashMap::new(),
        }
    }

    /// Follows `panes` until `shutdown`: a pane added is watched, a pane
    /// removed is let go (its pipe closed). At shutdown the pipes stay, for
    /// the next daemon (see the module doc).
    pub async fn run(
        mut self,
        mut panes: watch::Receiver<WatchedPanes>,
        shutdown: CancellationToken,
    ) {
        loop {
            let wanted = panes.borrow_and_update().clone();
            self.apply(&wanted).await;
            tokio::select! {
                changed = panes.changed() => if changed.is_err() { break },
                () = shutdown.cancelled() => break,
            }
        }
        for (_, reader) in self.readers.drain() {
            reader.task.abort();
        }
    }

    /// Brings the readers in line with `wanted`.
    pub async fn apply(&mut self, wanted: &WatchedPanes) {
        let gone: Vec<PaneId> = self
            .readers
            .iter()
            .filter(|(pane, reader)| wanted.get(pane) != Some(&reader.kind))
            .map(|(pane, _)| *pane)
            .collect();
        for pane in gone {
            let still_wanted = wanted.contains_key(&pane);
            self.forget(pane, !still_wanted).await;
        }
        for (pane, kind) in wanted {
            if self.readers.contains_key(pane) {
                continue;
            }
            if let Err(err) = self.watch(*pane, kind.clone()).await {
                tracing::warn!(%pane, %err, "cannot watch the pane's activity; it gets no fallback status");
            }
        }
    }

    /// Whether `pane` is watched.
    pub fn is_watching(&self, pane: PaneId) -> bool {
        self.readers.contains_key(&pane)
    }

    async fn watch(&mut self, pane: PaneId, kind: Option<AgentKind>) -> Result<(), ActivityError> {
        let path = fifo_path(&self.settings.fifo_dir, pane);
        let fifo = open_fifo(&self.settings.fifo_dir, &path)?;
        // The FIFO is open before tmux starts the writer, so `cat`'s open
        // does not block and no output is lost.
        self.control
            .run(Command::pipe_pane_out(
                pane,
                &format!("exec cat > {}", sh_quote(&path)),
            )?)
            .await?;
        let pane_watch = PaneWatch {
            pane,
            kind: kind.clone(),
            control: self.control.clone(),
            book: self.settings.book.clone(),
            sink: self.sink.clone(),
            settle: self.settings.settle,
        };
        let task = tokio::spawn(pane_watch.run(fifo));
        self.readers.insert(pane, Reader { kind, task });
        tracing::debug!(%pane, "watching the pane's activity");
        Ok(())
    }

    /// Stops watching `pane`; `close` also closes its pipe and removes the
    /// FIFO (not when only its kind changed).
    async fn forget(&mut self, pane: PaneId, close: bool) {
        if let Some(reader) = self.readers.remove(&pane) {
            reader.task.abort();
        }
        if close {
            // A pane that is gone answers with an error: nothing to close.
            let _ = self.control.run(Command::pipe_pane_close(pane)).await;
            let _ = std::fs::remove_file(fifo_path(&self.settings.fifo_dir, pane));
        }
    }
}

fn fifo_path(dir: &Path, pane: PaneId) -> PathBuf {
    // `%7` → `7`: the pane's number is its unique id on the server.
    dir.join(format!("pane-{}", pane.to_string().trim_start_matches('%')))
}

/// Makes the FIFO if it is not there (one from an earlier daemon is kept:
/// its `cat` may still write into it) and opens it read-write, so that it
/// never reads end-of-file when a writer goes.
fn open_fifo(dir: &Path, path: &Path) -> Result<pipe::Receiver, ActivityError> {
    let fail = |source| ActivityError::Fifo {
        path: path.to_owned(),
        source,
    };
    crate::paths::private_dir(dir).map_err(fail)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()) => {}
        Ok(_) => {
            std::fs::remove_file(path).map_err(fail)?;
            mkfifo(path).map_err(fail)?;
        }
        Err(_) => mkfifo(path).map_err(fail)?,
    }
    pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .map_err(fail)
}

fn mkfifo(path: &Path) -> std::io::Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a NUL in the FIFO's path"))?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `path` as one word for `/bin/sh`.
fn sh_quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// One pane's reader: activity in, observations out.
struct PaneWatch {
    pane: PaneId,
    kind: Option<AgentKind>,
    control: ControlHandle,
    book: Arc<PromptBook>,
    sink: Arc<dyn Observer>,
    settle: Duration,
}

impl PaneWatch {
    async fn run(self, mut fifo: pipe::Receiver) {
        // What the screen says now: one capture at the start, since a
        // quiet pane would otherwise stay unknown until it next moves. Its
        // evidence is as old as the window's last output, not the moment
        // of looking: a screen unchanged since a hook spoke (the hook that
        // put the pane on the board, typically) must not overrule it.
        let since = self.last_output().await.unwrap_or_default();
        let mut reported = self.look(since).await;
        let mut buf = vec![0u8; 16 * 1024];
        // When the last byte arrived, while the pane is active.
        let mut active: Option<(Instant, DateTime<Utc>)> = None;
        loop {
            let read = match active {
                // Quiet: no timer, only the read.
                None => Some(fifo.read(&mut buf).await),
                Some((last, _)) => tokio::time::timeout_at(last + self.settle, fifo.read(&mut buf))
                    .await
                    .ok(),
            };
            match read {
                Some(Ok(n)) if n > 0 => {
                    let now = Utc::now();
                    if active.is_none() && reported != Some(AgentStatus::Working) {
                        self.report(AgentStatus::Working, now);
                        reported = Some(AgentStatus::Working);
                    }
                    active = Some((Instant::now(), now));
                }
                Some(Ok(_)) => {
                    // Read-write FIFOs do not end; if one does, stop.
                    tracing::debug!(pane = %self.pane, "activity FIFO ended");
                    return;
                }
                Some(Err(err)) => {
                    tracing::warn!(pane = %self.pane, %err, "activity FIFO unreadable; no fallback for the pane");
                    return;
                }
                None => {
                    // Settled: the evidence is from the last byte.
                    let at = active.take().map(|(_, at)| at).unwrap_or_else(Utc::now);
                    if let Some(status) = self.look(at).await {
                        reported = Some(status);
                    }
                }
            }
        }
    }

    /// When the pane's window last had output, as tmux knows it
    /// (`#{window_activity}`, whole seconds, rounded down: older rather
    /// than younger than the truth).
    async fn last_output(&self) -> Option<DateTime<Utc>> {
        let command = Command::display_message(self.pane, "#{window_activity}").ok()?;
        let reply = self.control.run(command).await.ok()?;
        let secs: i64 = reply.text().trim().parse().ok()?;
        DateTime::from_timestamp(secs, 0)
    }

    /// Reads the screen once and reports what it shows; `None` if the pane
    /// could not be read (it is gone: the keeper learns that elsewhere).
    async fn look(&self, at: DateTime<Utc>) -> Option<AgentStatus> {
        let reply = match self.control.run(Command::capture_pane(self.pane, 0)).await {
            Ok(reply) => reply,
            Err(err) => {
                tracing::debug!(pane = %self.pane, %err, "cannot read the pane's screen");
                return None;
            }
        };
        let status = self.book.classify(self.kind.as_ref(), &reply.text());
        self.report(status, at);
        Some(status)
    }

    fn report(&self, status: AgentStatus, at: DateTime<Utc>) {
        tracing::debug!(pane = %self.pane, %status, "activity fallback");
        self.sink.observe(Observation::new(
            self.pane,
            self.kind.clone(),
            status,
            Source::Activity,
            at,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_paths_and_quoting_survive_odd_directories() {
        let dir = Path::new("/tmp/it's a #{dir}");
        let path = fifo_path(dir, "%12".parse().unwrap());
        assert_eq!(path, Path::new("/tmp/it's a #{dir}/pane-12"));
        assert_eq!(sh_quote(&path), r"'/tmp/it'\''s a #{dir}/pane-12'");
        // tmux's format expansion must not see `#{dir}`.
        let command = Command::pipe_pane_out(
            "%12".parse().unwrap(),
            &format!("exec cat > {}", sh_quote(&path)),
        )
        .unwrap();
        assert!(command.as_str().contains("##{dir}"), "{}", command.as_str());
    }
}
