//! The pane-activity fallback (`status::activity`) on a real tmux, with a
//! fake agent in the pane (`tests/fixtures/agents/fake-claude.sh`: a prompt,
//! a spinner, a permission dialog, drawn as Claude Code draws them).
//!
//! - working → idle → working → idle → waiting is seen, each within 1.5 s of
//!   the change on the screen (the deadline of each step; no timing is
//!   asserted otherwise);
//! - an idle pane costs no tmux command: counted in tmux's own message log
//!   (`show-messages`, which logs every command of every client) over a
//!   window of `TMUX_AGENT_IDLE_WINDOW_SECS` seconds (5 by default, so CI
//!   stays short; set 60 for the minute).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tmux_agent::control::PaneId;
use tmux_agent::control::command::Command;
use tmux_agent::control::connection::ControlHandle;
use tmux_agent::status::activity::{Activity, ActivitySettings, WatchedPanes};
use tmux_agent::status::prompt::PromptBook;
use tmux_agent::status::{AgentKind, AgentStatus, Observation, Source};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::support::PATIENCE;
use crate::support::tmux::TmuxServer;

/// How soon a change on the screen must be seen (issue #12).
const WITHIN: Duration = Duration::from_millis(1500);

/// A server with the fake agent in a window of session `agents`; the
/// agent's pane and its scratch directory.
fn server_with_agent() -> (TmuxServer, PaneId, PathBuf) {
    let server = TmuxServer::start_with_session("agents");
    // Enough log for the idle window's count, whatever it is.
    server.tmux(&["set", "-g", "message-limit", "100000"]);
    let dir = server.path("agent");
    let pane = server
        .fake_claude_window("agents", &dir)
        .parse()
        .expect("a pane id");
    (server, pane, dir)
}

struct Fallback {
    handle: ControlHandle,
    observations: mpsc::UnboundedReceiver<Observation>,
    shutdown: CancellationToken,
    _panes: watch::Sender<WatchedPanes>,
}

async fn start_fallback(server: &TmuxServer, pane: PaneId) -> Fallback {
    let shutdown = CancellationToken::new();
    let handle = server.control(&shutdown).await;
    let settings = ActivitySettings {
        settle: tmux_agent::status::activity::DEFAULT_SETTLE,
        fifo_dir: server.path("fifos"),
        book: Arc::new(PromptBook::shipped()),
    };
    let (sink, observations) = mpsc::unbounded_channel();
    let activity = Activity::new(handle.clone(), settings, Arc::new(sink));
    let mut wanted = WatchedPanes::new();
    wanted.insert(pane, Some(AgentKind::Claude));
    let (panes, watched) = watch::channel(wanted);
    tokio::spawn(activity.run(watched, shutdown.clone()));
    Fallback {
        handle,
        observations,
        shutdown,
        _panes: panes,
    }
}

impl Fallback {
    /// The next observation within `within`, checked to be the fallback's.
    async fn next(&mut self, within: Duration, what: &str) -> Observation {
        let observation = tokio::time::timeout(within, self.observations.recv())
            .await
            .unwrap_or_else(|_| panic!("no observation within {within:?}: expected {what}"))
            .expect("the fallback is running");
        assert_eq!(observation.source, Source::Activity);
        assert_eq!(observation.kind, Some(AgentKind::Claude));
        observation
    }

    /// Waits for `status`, within `within` of now.
    async fn expect(&mut self, status: AgentStatus, within: Duration) -> Duration {
        let started = Instant::now();
        let observation = self.next(within, status.as_str()).await;
        assert_eq!(
            observation.status, status,
            "the fallback saw the wrong status"
        );
        started.elapsed()
    }

    /// Asserts that nothing is observed for `window`.
    async fn expect_silence(&mut self, window: Duration, why: &str) {
        if let Ok(observation) = tokio::time::timeout(window, self.observations.recv()).await {
            panic!("{why}, but the fallback reported {observation:?}");
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

#[test]
fn working_idle_working_and_waiting_are_seen_within_a_second_and_a_half() {
    let (server, pane, dir) = server_with_agent();
    runtime().block_on(async {
        let mut fallback = start_fallback(&server, pane).await;
        // The first look, at the start: the prompt.
        fallback.expect(AgentStatus::Idle, PATIENCE).await;
        let target = pane.to_string();
        let mut seen = Vec::new();
        for round in 0..2 {
            server.tmux(&["send-keys", "-t", &target, "work", "Enter"]);
            seen.push((
                round,
                "working",
                fallback.expect(AgentStatus::Working, WITHIN).await,
            ));
            // The spinner redraws every 100 ms: never quiet long enough to
            // settle, so nothing more is reported while it runs.
            fallback
                .expect_silence(Duration::from_millis(1200), "the spinner kept running")
                .await;
            std::fs::write(dir.join("stop"), b"").unwrap();
            seen.push((
                round,
                "idle",
                fallback.expect(AgentStatus::Idle, WITHIN).await,
            ));
        }
        server.tmux(&["send-keys", "-t", &target, "ask", "Enter"]);
        // The typed line's echo is activity (working), then the dialog settles.
        let echo = fallback.next(WITHIN, "working (the echo)").await;
        assert_eq!(echo.status, AgentStatus::Working);
        seen.push((
            2,
            "waiting",
            fallback.expect(AgentStatus::Waiting, WITHIN).await,
        ));
        eprintln!("seen after the change: {seen:?}");
        fallback.shutdown.cancel();
    });
}

/// The commands `client` has sent, in tmux's message log, except the
/// `show-messages` that read it.
async fn commands_of(handle: &ControlHandle, client: &str) -> Vec<String> {
    let log = handle
        .run(Command::show_messages())
        .await
        .expect("show-messages");
    let marker = format!("{client} command: ");
    log.text()
        .lines()
        .filter_map(|line| {
            line.split_once(&marker)
                .map(|(_, command)| command.to_owned())
        })
        .filter(|command| !command.starts_with("show-messages"))
        .collect()
}

#[test]
fn an_idle_agent_pane_costs_no_tmux_command() {
    let window = std::env::var("TMUX_AGENT_IDLE_WINDOW_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(Duration::from_secs(5), Duration::from_secs);
    let (server, pane, _dir) = server_with_agent();
    runtime().block_on(async {
        let mut fallback = start_fallback(&server, pane).await;
        fallback.expect(AgentStatus::Idle, PATIENCE).await;
        let client = fallback
            .handle
            .run(Command::display_server("#{client_name}").unwrap())
            .await
            .expect("display-message")
            .text();
        let client = client.trim();
        let before = commands_of(&fallback.handle, client).await;
        assert!(
            before
                .iter()
                .any(|command| command.starts_with("capture-pane")),
            "the log shows the fallback's commands (its first look): {before:?}"
        );
        fallback
            .expect_silence(window, "the agent sat at its prompt")
            .await;
        let after = commands_of(&fallback.handle, client).await;
        assert_eq!(
            after.len(),
            before.len(),
            "commands sent in {window:?} of idleness: {:?}",
            &after[..after.len() - before.len()]
        );
        eprintln!("tmux commands in {window:?} of an idle agent pane: 0");
        fallback.shutdown.cancel();
    });
}

/// Hooks win: with the real status keeper between them, a fallback guess
/// whose evidence is older than the pane's last hook is not applied, and
/// one that is younger corrects the hook (Claude runs no `Stop` hook on an
/// interrupt). The hook's observation is sent straight to the keeper, at a
/// chosen moment, as the IPC handler sends it for `tmux-agent hook`.
#[test]
fn hooks_win_over_an_older_fallback_guess_and_a_younger_one_corrects_them() {
    use tmux_agent::state::Model;
    use tmux_agent::status::keeper;

    let (server, pane, dir) = server_with_agent();
    runtime().block_on(async {
        let shutdown = CancellationToken::new();
        let handle = server.control(&shutdown).await;
        let sidecar = server.session_id(tmux_agent::control::connection::DEFAULT_SESSION_NAME);
        let (_snapshots, snapshots) = watch::channel(Model::new(sidecar.parse().unwrap()));
        let names = tmux_agent::status::process::ProcessNames::new([]);
        let (agents, _keeping) = keeper::spawn(handle.clone(), names, snapshots, shutdown.clone());
        let mut changes = agents.changes();
        let hook = |status| {
            agents.sender().observe(Observation::new(
                pane,
                Some(AgentKind::Claude),
                status,
                Source::Hook,
                chrono::Utc::now(),
            ))
        };
        async fn next_change(
            changes: &mut tokio::sync::broadcast::Receiver<tmux_agent::status::Change>,
        ) -> tmux_agent::status::Change {
            tokio::time::timeout(PATIENCE, changes.recv())
                .await
                .expect("a status change")
                .expect("the keeper runs")
        }
        // The hook names the agent; the fallback follows the board.
        assert!(hook(AgentStatus::Idle));
        assert_eq!(next_change(&mut changes).await.new, AgentStatus::Idle);
        let settings = ActivitySettings {
            settle: tmux_agent::status::activity::DEFAULT_SETTLE,
            fifo_dir: server.path("fifos"),
            book: Arc::new(PromptBook::shipped()),
        };
        let activity = Activity::new(handle.clone(), settings, Arc::new(agents.sender()));
        let watched =
            tmux_agent::status::activity::watched_panes(agents.boards(), shutdown.clone());
        tokio::spawn(activity.run(watched, shutdown.clone()));
        let client = handle
            .run(Command::display_server("#{client_name}").unwrap())
            .await
            .unwrap()
            .text();
        let client = client.trim().to_owned();
        let captures = async || {
            commands_of(&handle, &client)
                .await
                .iter()
                .filter(|command| command.starts_with("capture-pane"))
                .count()
        };
        crate::support::eventually_async(PATIENCE, "the fallback's first look", async || {
            (captures().await > 0).then_some(())
        })
        .await;

        // The dialog appears: activity (working, from the fallback); once it
        // is drawn, and while the screen settles, the hook says the agent
        // works on.
        let target = pane.to_string();
        server.tmux(&["send-keys", "-t", &target, "ask", "Enter"]);
        let change = next_change(&mut changes).await;
        assert_eq!(
            (change.new, change.source),
            (AgentStatus::Working, Source::Activity)
        );
        let looked = captures().await;
        // The hook runs once the whole dialog is drawn (its last byte is
        // older than the hook), and before the screen settles.
        crate::support::eventually(PATIENCE, "the dialog on the screen", || {
            server
                .tmux(&["capture-pane", "-p", "-t", &target])
                .contains("tell Claude what to do differently")
                .then_some(())
        });
        assert!(hook(AgentStatus::Working));
        // The fallback's look at the settled dialog (evidence: its last
        // byte, older than the hook) comes and is not applied.
        crate::support::eventually_async(
            PATIENCE,
            "the fallback's look at the dialog",
            async || (captures().await > looked).then_some(()),
        )
        .await;
        let board = agents.board();
        let agent = board.pane(pane).expect("the pane is on the board");
        // (Only the status: the keeper publishes its board when a status
        // changes, so the snapshot's `source` still names the fallback.)
        assert_eq!(agent.status, AgentStatus::Working, "{agent:?}");
        assert!(
            changes.try_recv().is_err(),
            "no change: the older guess (waiting) lost to the hook"
        );

        // A turn ends with no hook (an interrupt): the fallback's younger
        // evidence corrects the hook's `working`.
        server.tmux(&["send-keys", "-t", &target, "work", "Enter"]);
        std::fs::write(dir.join("stop"), b"").unwrap();
        let change = loop {
            let change = next_change(&mut changes).await;
            if change.new != AgentStatus::Working {
                break change;
            }
        };
        assert_eq!(
            (change.new, change.source),
            (AgentStatus::Idle, Source::Activity)
        );
        shutdown.cancel();
    });
}
