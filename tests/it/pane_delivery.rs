//! Typing messages into agents' panes (`messages::pane`), on a real tmux
//! server with the fake prompt agent (`tests/fixtures/agents/
//! fake-prompt-agent.py`): a TUI that reads its terminal byte by byte,
//! takes bracketed pastes, writes each submitted text to a file and says
//! its status through `tmux-agent hook claude`, as Claude Code's hooks do.
//! The board the gate reads is built from the pane options those hooks
//! write, as the daemon's status keeper adopts them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tmux_agent::control::PaneId;
use tmux_agent::control::connection::ControlHandle;
use tmux_agent::messages::pane::{
    self, DEFAULT_SUBMIT_KEY, Delivery, Gate, HoldReason, PaneError, Typed,
};
use tmux_agent::status::{Board, Observation, Source, panes};
use tokio_util::sync::CancellationToken;

use crate::support::{PATIENCE, TmuxServer, eventually};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A tmux server with the fake prompt agent in a window of `base`, and a
/// control connection to it.
struct Fixture {
    server: TmuxServer,
    handle: ControlHandle,
    shutdown: CancellationToken,
    /// The agent's state directory (what it received).
    dir: PathBuf,
    pane: PaneId,
    /// The pane as tmux targets it (`%3`).
    target: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `None` when the machine lacks python3 (skipped outside CI).
async fn fixture() -> Option<Fixture> {
    let server = TmuxServer::start();
    let dir = server.path("agent");
    let target = server.fake_prompt_agent_window("base", &dir)?;
    let shutdown = CancellationToken::new();
    let handle = server.control(&shutdown).await;
    Some(Fixture {
        pane: target.parse().expect("a pane id"),
        server,
        handle,
        shutdown,
        dir,
        target,
    })
}

impl Fixture {
    /// The board as the pane options show it now.
    fn board(&self) -> Board {
        board_of(&self.server)
    }

    async fn gate(&self) -> Result<Gate, PaneError> {
        pane::gate(&self.handle, &self.board(), &self.pane).await
    }

    /// Asks the gate until it opens, as the mailbox's scheduler does.
    async fn until_ready(&self) {
        self.until(Gate::Ready).await;
    }

    /// Asks the gate until it says `expected`.
    async fn until(&self, expected: Gate) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let gate = self.gate().await.expect("the pane is there");
            if gate == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gate stayed {gate:?}, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn type_in(&self, text: &str) -> Result<Typed, PaneError> {
        pane::type_into(
            &self.handle,
            &self.board(),
            &self.pane,
            text,
            DEFAULT_SUBMIT_KEY,
        )
        .await
    }

    /// What the agent received on its turn `n` (1-based).
    fn received(&self, n: usize) -> Vec<u8> {
        received(&self.dir, n)
    }
}

/// The board as the daemon's keeper adopts it from the pane options.
fn board_of(server: &TmuxServer) -> Board {
    let listing = server.tmux(&["list-panes", "-a", "-F", panes::FORMAT]);
    let mut board = Board::new();
    for found in panes::parse(&listing) {
        let at = chrono::DateTime::from_timestamp(found.since.unwrap_or(0), 0).unwrap();
        let kind = found
            .kind
            .as_deref()
            .map(tmux_agent::status::AgentKind::named);
        board
            .apply(Observation::new(
                found.pane,
                kind,
                found.status,
                Source::Hook,
                at,
            ))
            .expect("a fresh board takes every observation");
        board.place(found.pane, found.session_id);
    }
    board
}

fn received(dir: &Path, n: usize) -> Vec<u8> {
    let path = dir.join(format!("received.{n}"));
    eventually(
        PATIENCE,
        &format!("{} to be written", path.display()),
        || std::fs::read(&path).ok(),
    )
}

#[test]
fn bodies_arrive_byte_exact_and_nothing_in_them_runs() {
    runtime().block_on(async {
        let Some(f) = fixture().await else { return };
        let marker = |n: u32| f.server.path(&format!("marker-{n}"));
        let long: Vec<String> = (1..=1000)
            .map(|i| format!("line {i}: it's ; #{{x}} $(y)"))
            .collect();
        let bodies = [
            format!(
                "it's \"quoted\" ; kill-server ; display-message hi ; run-shell 'touch {}'",
                marker(1).display()
            ),
            format!(
                "#{{session_name}} #(touch {}) $(touch {}) `touch {}` ${{HOME}} ~ %1",
                marker(2).display(),
                marker(3).display(),
                marker(4).display()
            ),
            "héllo wörld — 日本語 🦀 ☃".to_owned(),
            "\x1b[31mred\x1b[0m, a title\x1b]0;pwned\x07 and \x1b[1mbold\x1b[0m".to_owned(),
            "two\nlines\nand a\ttab\n".to_owned(),
            long.join("\n"),
            // Past a pipe's buffer (64 KiB) on the way to load-buffer.
            format!("big {}", "0123456789abcdef".repeat(6_400)),
        ];
        for (i, body) in bodies.iter().enumerate() {
            f.until_ready().await;
            let typed = f.type_in(body).await.expect("typed");
            assert_eq!(typed, Typed::Delivered, "body {i}");
            assert_eq!(
                String::from_utf8(f.received(i + 1)).unwrap(),
                *body,
                "body {i} arrived changed"
            );
        }
        for n in 1..=4 {
            assert!(!marker(n).exists(), "marker {n}: something in a body ran");
        }
        assert!(f.server.is_running(), "kill-server in a body ran");
        // `-d`: every buffer went with its paste.
        assert_eq!(f.server.tmux(&["list-buffers", "-F", "#{buffer_name}"]), "");
    });
}

#[test]
fn nuls_and_paste_markers_are_taken_out_so_a_body_cannot_leave_its_paste() {
    runtime().block_on(async {
        let Some(f) = fixture().await else { return };
        let marker = f.server.path("escaped");
        // Were the end-of-paste marker kept, the CR after it would submit
        // "a" and the rest would be typed as keys at the next prompt.
        let body = format!("a\x1b[201~\rtouch {}\r\x1b[200~b\0c", marker.display());
        f.until_ready().await;
        assert_eq!(f.type_in(&body).await.expect("typed"), Typed::Delivered);
        assert_eq!(
            f.received(1),
            format!("a\rtouch {}\rbc", marker.display()).into_bytes()
        );
        assert!(!f.dir.join("received.2").exists(), "one submit only");
        assert!(!marker.exists());
        // Nothing left to type: refused, and nothing submitted.
        let empty = f.type_in("\0\x1b[201~").await.unwrap_err();
        assert!(empty.to_string().contains("empty"), "{empty}");
        assert!(!f.dir.join("received.2").exists());
    });
}

#[test]
fn a_busy_agent_is_held_and_typed_into_only_once_idle() {
    runtime().block_on(async {
        let Some(f) = fixture().await else { return };
        std::fs::write(f.dir.join("slow"), "").unwrap();
        f.until_ready().await;
        assert_eq!(f.type_in("first").await.expect("typed"), Typed::Delivered);
        eventually(PATIENCE, "the agent to work", || {
            (f.server.display(&f.target, "#{@agent-status}") == "working").then_some(())
        });
        // As long as the turn runs the gate stays shut, whoever asks.
        for _ in 0..5 {
            assert_eq!(f.gate().await.unwrap(), Gate::Hold(HoldReason::Busy));
        }
        std::fs::remove_file(f.dir.join("slow")).unwrap();
        std::fs::write(f.dir.join("go"), "").unwrap();
        f.until_ready().await;
        assert_eq!(f.type_in("second").await.expect("typed"), Typed::Delivered);
        assert_eq!(f.received(1), b"first");
        assert_eq!(f.received(2), b"second");
        assert!(
            !f.dir.join("mid-turn").exists(),
            "something was typed during the agent's turn"
        );
        // A dialog (`waiting`, as a PermissionRequest hook sets it) is no
        // prompt: its Enter would answer the dialog.
        f.server.tmux(&[
            "set-option",
            "-p",
            "-t",
            &f.target,
            "@agent-status",
            "waiting",
        ]);
        assert_eq!(f.gate().await.unwrap(), Gate::Hold(HoldReason::Busy));
    });
}

#[test]
fn a_person_typing_in_the_session_holds_delivery() {
    runtime().block_on(async {
        let Some(f) = fixture().await else { return };
        f.server.tmux(&["select-window", "-t", &f.target]);
        let mut terminal = f.server.attach_terminal("=base:");
        eventually(PATIENCE, "the terminal client to attach", || {
            let clients = f
                .server
                .tmux(&["list-clients", "-F", "#{client_control_mode}"]);
            clients.lines().any(|c| c == "0").then_some(())
        });
        // Attached and quiet: open (once its attach is out of the window).
        f.until_ready().await;
        terminal.type_keys(b"hel");
        f.until(Gate::Hold(HoldReason::UserTyping)).await;
        // The person stops: the gate opens again after the window.
        f.until_ready().await;
        drop(terminal);

        // Typing in another session is no one typing here...
        f.server.tmux(&["new-session", "-d", "-s", "elsewhere"]);
        let mut other = f.server.attach_terminal("=elsewhere:");
        wait_attached(&f.server, "elsewhere");
        for _ in 0..20 {
            other.type_keys(b"x");
            assert_eq!(f.gate().await.unwrap(), Gate::Ready);
        }
        drop(other);
        // ...but typing in a session grouped with the pane's (the same
        // windows) is.
        f.server
            .tmux(&["new-session", "-d", "-t", "=base", "-s", "twin"]);
        let mut twin = f.server.attach_terminal("=twin:");
        wait_attached(&f.server, "twin");
        f.until_ready().await;
        twin.type_keys(b"lo");
        f.until(Gate::Hold(HoldReason::UserTyping)).await;
    });
}

/// Until a terminal client is attached to the session `name`.
fn wait_attached(server: &TmuxServer, name: &str) {
    eventually(PATIENCE, "the terminal client to attach", || {
        let clients = server.tmux(&[
            "list-clients",
            "-F",
            "#{client_control_mode} #{client_session}",
        ]);
        clients
            .lines()
            .any(|c| c == format!("0 {name}"))
            .then_some(())
    });
}

#[test]
fn copy_mode_holds_delivery() {
    runtime().block_on(async {
        let Some(f) = fixture().await else { return };
        f.until_ready().await;
        f.server.tmux(&["copy-mode", "-t", &f.target]);
        assert_eq!(f.gate().await.unwrap(), Gate::Hold(HoldReason::InMode));
        f.server
            .tmux(&["send-keys", "-t", &f.target, "-X", "cancel"]);
        f.until_ready().await;
    });
}

#[test]
fn a_pane_without_an_agent_is_held_and_a_closed_pane_is_gone() {
    runtime().block_on(async {
        let Some(f) = fixture().await else { return };
        let shell: PaneId = f.server.new_window("base", None).parse().unwrap();
        let board = f.board();
        assert_eq!(
            pane::gate(&f.handle, &board, &shell).await.unwrap(),
            Gate::Hold(HoldReason::NoAgent)
        );
        f.until_ready().await;
        f.server.tmux(&["kill-pane", "-t", &f.target]);
        // The board is a snapshot that still says idle: tmux is asked.
        assert!(matches!(
            pane::gate(&f.handle, &board, &f.pane).await,
            Err(PaneError::Gone)
        ));
        assert!(matches!(f.type_in("hello").await, Err(PaneError::Gone)));
        assert_eq!(f.server.tmux(&["list-buffers", "-F", "#{buffer_name}"]), "");
    });
}

#[test]
fn text_nobody_sees_land_is_unverified() {
    runtime().block_on(async {
        let Some(f) = fixture().await else { return };
        // A pane that swallows its input without a word: no echo, no status.
        let mute: PaneId = f
            .server
            .new_window("base", Some("stty -echo; echo quiet; exec cat >/dev/null"))
            .parse()
            .unwrap();
        // Until `stty -echo` has run, the terminal itself would echo.
        eventually(PATIENCE, "the mute pane to be quiet", || {
            let shown = f
                .server
                .tmux(&["capture-pane", "-p", "-t", &mute.to_string()]);
            shown.contains("quiet").then_some(())
        });
        let delivery = Delivery {
            verify_timeout: Duration::from_millis(500),
            ..Delivery::default()
        };
        let typed = delivery
            .type_into(&f.handle, &f.board(), &mute, "into the void", "Enter")
            .await
            .expect("typed");
        assert_eq!(typed, Typed::Unverified);
        // A status that was `working` before the paste says nothing of it.
        let mute_target = mute.to_string();
        f.server.tmux(&[
            "set-option",
            "-p",
            "-t",
            &mute_target,
            "@agent-status",
            "working",
        ]);
        let typed = delivery
            .type_into(&f.handle, &f.board(), &mute, "still the void", "Enter")
            .await
            .expect("typed");
        assert_eq!(typed, Typed::Unverified);
    });
}

/// A session `name` whose one pane shows `text` and then waits; its pane.
fn pane_showing(server: &TmuxServer, name: &str, text: &str) -> String {
    let pane = server.new_session(name, &[], &format!("printf '{text}\\n'; exec cat"));
    eventually(PATIENCE, "the pane to show its text", || {
        let shown = server.tmux(&["capture-pane", "-p", "-t", &pane]);
        shown
            .contains(text.split(' ').next().unwrap())
            .then_some(())
    });
    pane
}

const REDACT: &str = "[context]\nredact = ['sk-[a-z0-9]+']\n";

#[test]
fn look_shows_a_panes_last_lines_redacted() {
    use crate::support::daemon::{agent_err, agent_ok, json};
    let server = TmuxServer::start();
    crate::support::write_config(server.home.path(), REDACT);
    let pane = pane_showing(&server, "secret", "token sk-abc123 here");
    let out = agent_ok(&server, &["look", "-t", &pane]);
    assert_eq!(out, "token [redacted] here\n");
    let out = agent_ok(&server, &["look", "-t", "=secret:", "-n", "1", "--json"]);
    let seen = json(&out);
    assert_eq!(seen["pane"], pane.as_str());
    assert_eq!(seen["session"], "secret");
    assert_eq!(seen["lines"], serde_json::json!(["token [redacted] here"]));

    // A session named like a pane id is found by its name.
    let odd = pane_showing(&server, "%0", "odd one");
    let out = agent_ok(&server, &["look", "-t", "%0", "--json"]);
    assert_eq!(json(&out)["pane"], odd.as_str());
    let err = agent_err(&server, &["look", "-t", "%999"]);
    assert!(err.contains("no pane \"%999\""), "{err}");
    let err = agent_err(&server, &["look", "-t", &pane, "-n", "0"]);
    assert!(err.contains("--lines"), "{err}");
    // A config that cannot be read whole is not trusted to redact.
    crate::support::write_config(server.home.path(), "[context]\nredact = ['(']\n");
    let err = agent_err(&server, &["look", "-t", &pane]);
    assert!(err.contains("config check"), "{err}");
    assert!(!err.contains("sk-abc123"), "{err}");
}

#[tokio::test]
async fn the_look_tool_stays_in_the_callers_group_and_list_agents_says_who_is_there() {
    use crate::support::serve::{connect, ok, serve_command, tool_error};
    use serde_json::json;
    let server = TmuxServer::start();
    let config = crate::support::write_config(server.home.path(), REDACT);
    let Some(agent) = server.fake_prompt_agent_window("base", &server.path("agent")) else {
        return;
    };
    let me = pane_showing(&server, "me", "hello from me");
    let peer = pane_showing(&server, "peer", "peer key sk-zz9 shown");
    let stranger = pane_showing(&server, "stranger", "stranger key sk-yy8");
    for (session, group) in [
        ("=me:", "crew"),
        ("=peer:", "crew"),
        ("=stranger:", "other"),
    ] {
        server.tmux(&["set-option", "-t", session, "@agent-group", group]);
    }
    let mut cmd = serve_command(&server.path("b.db"), &["--config"]);
    cmd.arg(&config)
        .env("HOME", server.home.path())
        .env("TMUX", server.tmux_env())
        .env("TMUX_PANE", &me);
    let client = connect(cmd).await;

    let seen = ok(&client, "look", json!({"target": peer})).await;
    assert_eq!(seen["session_name"], "peer");
    assert_eq!(seen["lines"], json!(["peer key [redacted] shown"]));
    let mine = ok(&client, "look", json!({"target": "=me:", "lines": 1})).await;
    assert_eq!(mine["lines"], json!(["hello from me"]));

    let refused = tool_error(&client, "look", json!({"target": stranger})).await;
    assert!(refused.contains("look refused"), "{refused}");
    assert!(refused.contains("look_outside_group"), "{refused}");
    assert!(!refused.contains("sk-yy8"), "{refused}");
    // The fake agent's session `base` is in no group: refused as well.
    let refused = tool_error(&client, "look", json!({"target": agent})).await;
    assert!(refused.contains("no group"), "{refused}");
    let missing = tool_error(&client, "look", json!({"target": "%999"})).await;
    assert!(missing.contains("no pane"), "{missing}");

    let list = ok(&client, "list_agents", json!({})).await;
    assert_eq!(list["me"], me.as_str());
    let agents = list["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{list}");
    assert_eq!(agents[0]["pane"], agent.as_str());
    assert_eq!(agents[0]["status"], "idle");
    assert_eq!(agents[0]["kind"], "claude");
    assert_eq!(agents[0]["session_name"], "base");
    assert_eq!(agents[0]["group"], serde_json::Value::Null);
    assert_eq!(agents[0]["me"], false);
    server.tmux(&["set-option", "-t", "=base:", "@agent-group", "crew"]);
    let list = ok(&client, "list_agents", json!({"group": "crew"})).await;
    assert_eq!(list["agents"][0]["group"], "crew");
    let none = ok(&client, "list_agents", json!({"group": "other"})).await;
    assert_eq!(none["agents"], json!([]));
    // Now in the caller's group, the agent's pane may be looked at.
    ok(&client, "look", json!({"target": agent})).await;
    client.cancel().await.unwrap();

    // With the config's leave, any pane.
    std::fs::write(&config, format!("{REDACT}look_outside_group = true\n")).unwrap();
    let mut cmd = serve_command(&server.path("b.db"), &["--config"]);
    cmd.arg(&config)
        .env("HOME", server.home.path())
        .env("TMUX", server.tmux_env())
        .env("TMUX_PANE", &me);
    let client = connect(cmd).await;
    let seen = ok(&client, "look", json!({"target": stranger})).await;
    assert_eq!(seen["lines"], json!(["stranger key [redacted]"]));
    client.cancel().await.unwrap();
}
