//! Agent status from the agents' own hooks (issue #12): the payloads of
//! Claude Code, Codex CLI and Gemini CLI (tests/fixtures/hooks, one file
//! per event, shaped as their hook references give them) fed to
//! `tmux-agent hook <agent>` for a pane of a real tmux server, with and
//! without a daemon; what the pane, session and global options say after
//! each; bad input; and `hooks install|uninstall|status` on a real
//! settings file.
//!
//! The hook is run as the agent runs it: a child process with the payload
//! on stdin (Codex's `notify`: as the last argument), `$TMUX_PANE` naming
//! the pane and the server named by `-L` (an agent in the pane would have
//! `$TMUX`; the fixture strips it so a test run inside tmux cannot reach
//! the real server).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::support::daemon::{Daemon, agent_ok};
use crate::support::tmux::TmuxServer;
use crate::support::{PATIENCE, eventually, text, wait_for};

fn fixtures(agent: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hooks")
        .join(agent);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.as_bytes()[0].is_ascii_digit())
        })
        .collect();
    files.sort();
    files
}

/// Runs `tmux-agent hook AGENT` for `pane` with `stdin` as its payload.
fn hook(server: &TmuxServer, agent: &str, pane: Option<&str>, stdin: &[u8]) -> Output {
    let mut cmd = server.agent();
    cmd.args(["hook", agent])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(pane) = pane {
        cmd.env("TMUX_PANE", pane);
    }
    let mut child = cmd.spawn().expect("run tmux-agent hook");
    let mut input = child.stdin.take().unwrap();
    // A hook may stop reading early; a closed pipe is not the test's failure.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// Checks what every hook run must do: exit 0, print nothing.
fn assert_quiet(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: exit {:?}", out.status);
    assert!(
        out.stdout.is_empty(),
        "{what}: printed {:?}",
        text(&out.stdout)
    );
}

fn pane_option(server: &TmuxServer, pane: &str, name: &str) -> Option<String> {
    let out = server.try_tmux(&["show-options", "-pqv", "-t", pane, name]);
    let value = text(&out.stdout).trim_end_matches('\n').to_owned();
    (out.status.success() && !value.is_empty()).then_some(value)
}

/// Every pane option of `pane`, as one string (for "nothing changed").
fn pane_options(server: &TmuxServer, pane: &str) -> String {
    server.tmux(&["show-options", "-p", "-t", pane])
}

fn wait_pane_status(server: &TmuxServer, pane: &str, status: &str, after: &str) {
    eventually(
        PATIENCE,
        &format!("@agent-status {status} after {after}"),
        || (pane_option(server, pane, "@agent-status").as_deref() == Some(status)).then_some(()),
    );
}

/// The status each Claude fixture leaves, in file order.
const CLAUDE_STATUSES: [&str; 13] = [
    "idle",    // SessionStart
    "working", // UserPromptSubmit
    "working", // PreToolUse
    "waiting", // PermissionRequest
    "working", // PostToolUse: the permission was granted
    "waiting", // Notification permission_prompt
    "working", // SubagentStop: the main turn goes on
    "waiting", // Notification elicitation_dialog
    "idle",    // Stop
    "idle",    // Notification idle_prompt: not "needs input"
    "working", // UserPromptSubmit
    "idle",    // StopFailure: Stop does not fire on API errors
    "exited",  // SessionEnd
];

#[test]
fn claude_hooks_drive_the_pane_session_and_global_options_through_the_daemon() {
    let server = TmuxServer::start();
    let _daemon = Daemon::start(&server);
    let pane = server.display("base", "#{pane_id}");
    let session = server.session_id("base");
    let files = fixtures("claude");
    assert_eq!(files.len(), CLAUDE_STATUSES.len());
    for (file, status) in files.iter().zip(CLAUDE_STATUSES) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let out = hook(
            &server,
            "claude",
            Some(&pane),
            &std::fs::read(file).unwrap(),
        );
        assert_quiet(&out, &name);
        wait_pane_status(&server, &pane, status, &name);
        // The session's aggregate is its one agent's status; the global
        // count says whether it waits.
        eventually(
            PATIENCE,
            &format!("the session aggregate after {name}"),
            || (server.option(&session, "@agent-status").as_deref() == Some(status)).then_some(()),
        );
        let waiting = if status == "waiting" { "1" } else { "0" };
        eventually(PATIENCE, &format!("@agent-waiting after {name}"), || {
            (server.global_option("@agent-waiting").as_deref() == Some(waiting)).then_some(())
        });
        assert_eq!(
            pane_option(&server, &pane, "@agent-kind").as_deref(),
            Some("claude")
        );
        let since = pane_option(&server, &pane, "@agent-since").unwrap();
        assert!(
            since.parse::<i64>().is_ok_and(|s| s > 1_700_000_000),
            "{since}"
        );
    }
    assert_eq!(
        pane_option(&server, &pane, "@agent-session-id").as_deref(),
        Some("8f3c2a1e-5b7d-4e9a-a0c4-2d6b9e1f7a30")
    );
    assert!(
        pane_option(&server, &pane, "@agent-transcript")
            .unwrap()
            .ends_with("8f3c2a1e-5b7d-4e9a-a0c4-2d6b9e1f7a30.jsonl")
    );
    // `status --json` lists the agent.
    let status = crate::support::daemon::json(&agent_ok(&server, &["status", "--json"]));
    let agents = status["agents"].as_array().expect("agents in status");
    assert_eq!(agents.len(), 1, "{status}");
    assert_eq!(agents[0]["pane"], pane.as_str());
    assert_eq!(agents[0]["status"], "exited");
}

#[test]
fn the_session_aggregate_puts_waiting_before_working_before_idle() {
    let server = TmuxServer::start();
    let _daemon = Daemon::start(&server);
    let session = server.session_id("base");
    let first = server.display("base", "#{pane_id}");
    let second = server
        .tmux(&["split-window", "-d", "-P", "-F", "#{pane_id}", "-t", "base"])
        .trim()
        .to_owned();
    let event = |name: &str| format!(r#"{{"hook_event_name":"{name}","session_id":"s"}}"#);
    let aggregate = |want: &str| {
        eventually(PATIENCE, &format!("the aggregate {want}"), || {
            (server.option(&session, "@agent-status").as_deref() == Some(want)).then_some(())
        })
    };
    assert_quiet(
        &hook(&server, "claude", Some(&first), event("Stop").as_bytes()),
        "Stop",
    );
    aggregate("idle");
    assert_quiet(
        &hook(
            &server,
            "codex",
            Some(&second),
            event("UserPromptSubmit").as_bytes(),
        ),
        "prompt",
    );
    aggregate("working");
    assert_quiet(
        &hook(
            &server,
            "claude",
            Some(&first),
            event("PermissionRequest").as_bytes(),
        ),
        "permission",
    );
    aggregate("waiting");
    eventually(PATIENCE, "one waiting agent", || {
        (server.global_option("@agent-waiting").as_deref() == Some("1")).then_some(())
    });
    assert_eq!(
        pane_option(&server, &second, "@agent-kind").as_deref(),
        Some("codex")
    );
    // The waiting pane closes: the keeper sees it go, and the aggregate
    // and the count follow.
    server.tmux(&["kill-pane", "-t", &first]);
    aggregate("working");
    eventually(PATIENCE, "no waiting agent", || {
        (server.global_option("@agent-waiting").as_deref() == Some("0")).then_some(())
    });
}

#[test]
fn codex_hooks_and_notify_set_the_pane_options_without_a_daemon() {
    let server = TmuxServer::start();
    let pane = server.display("base", "#{pane_id}");
    let statuses = ["idle", "working", "working", "waiting", "working", "idle"];
    let files = fixtures("codex");
    assert_eq!(files.len(), statuses.len());
    // Each status is checked against the one before, so the fixtures are
    // fed one by one: without a daemon, the hook has set the option when
    // it exits.
    for (file, status) in files.iter().zip(statuses) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert_quiet(
            &hook(&server, "codex", Some(&pane), &std::fs::read(file).unwrap()),
            &name,
        );
        assert_eq!(
            pane_option(&server, &pane, "@agent-status").as_deref(),
            Some(status),
            "{name}"
        );
        assert_eq!(
            pane_option(&server, &pane, "@agent-kind").as_deref(),
            Some("codex")
        );
    }
    // notify: the JSON comes as the last argument.
    hook(
        &server,
        "codex",
        Some(&pane),
        br#"{"hook_event_name":"UserPromptSubmit"}"#,
    );
    assert_eq!(
        pane_option(&server, &pane, "@agent-status").as_deref(),
        Some("working")
    );
    let notify = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hooks/codex/notify-agent-turn-complete.json"),
    )
    .unwrap();
    let out = server
        .agent()
        .args(["hook", "codex", notify.trim()])
        .env("TMUX_PANE", &pane)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_quiet(&out, "notify");
    assert_eq!(
        pane_option(&server, &pane, "@agent-status").as_deref(),
        Some("idle")
    );
    assert_eq!(
        pane_option(&server, &pane, "@agent-session-id").as_deref(),
        Some("019d036d-c7fa-72d2-b6fd-78878bfe34e4")
    );
}

#[test]
fn gemini_hooks_drive_the_pane_options_through_the_daemon() {
    let server = TmuxServer::start();
    let _daemon = Daemon::start(&server);
    let pane = server.display("base", "#{pane_id}");
    let statuses = [
        "idle", "working", "working", "waiting", "working", "idle", "exited",
    ];
    let files = fixtures("gemini");
    assert_eq!(files.len(), statuses.len());
    for (file, status) in files.iter().zip(statuses) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert_quiet(
            &hook(
                &server,
                "gemini",
                Some(&pane),
                &std::fs::read(file).unwrap(),
            ),
            &name,
        );
        wait_pane_status(&server, &pane, status, &name);
    }
    assert_eq!(
        pane_option(&server, &pane, "@agent-kind").as_deref(),
        Some("gemini")
    );
}

#[test]
fn bad_hook_input_exits_0_changes_nothing_and_says_why_in_the_log() {
    let server = TmuxServer::start();
    let pane = server.display("base", "#{pane_id}");
    let log = server.path(".local/state/tmux-agent/hook.log");
    let huge = {
        let mut payload = br#"{"hook_event_name":"UserPromptSubmit","prompt":""#.to_vec();
        payload.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
        payload.extend(br#""}"#);
        payload
    };
    let before = pane_options(&server, &pane);
    let cases: [(&str, Option<&str>, Vec<u8>, &str); 7] = [
        (
            "garbage",
            Some(&pane),
            b"\x00\xff\x1b[31m not json ;#{pane_id}#(reboot)".to_vec(),
            "not the JSON object expected",
        ),
        ("empty stdin", Some(&pane), Vec::new(), "payload is empty"),
        ("a 10 MB payload", Some(&pane), huge, "longer than"),
        (
            "no event",
            Some(&pane),
            br#"{"session_id":"x"}"#.to_vec(),
            "names no event",
        ),
        (
            "an event without a status",
            Some(&pane),
            br#"{"hook_event_name":"PreCompact"}"#.to_vec(),
            "says nothing about the status",
        ),
        (
            "no pane",
            None,
            br#"{"hook_event_name":"Stop"}"#.to_vec(),
            "not run in a tmux pane",
        ),
        (
            "a pane that is gone",
            Some("%999"),
            br#"{"hook_event_name":"Stop"}"#.to_vec(),
            "pane: %999",
        ),
    ];
    for (what, target, payload, reason) in cases {
        let out = hook(&server, "claude", target, &payload);
        assert_quiet(&out, what);
        assert!(
            out.stderr.is_empty(),
            "{what}: said {:?}",
            text(&out.stderr)
        );
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let last = logged.lines().last().unwrap_or_default();
        assert!(
            last.contains(reason) && last.contains("nothing changed"),
            "{what}: {last:?}"
        );
        assert_eq!(
            pane_options(&server, &pane),
            before,
            "{what} changed an option"
        );
    }
    // An agent that never closes the hook's stdin does not hold it: it
    // gives up on its own and says so.
    let mut cmd = server.agent();
    cmd.args(["hook", "claude"])
        .env("TMUX_PANE", &pane)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let _open = child.stdin.take();
    let exited = wait_for(PATIENCE, || child.try_wait().unwrap());
    let status = exited.expect("the hook waited for stdin forever");
    assert!(status.success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.lines().last().unwrap().contains("stdin did not end"),
        "{logged}"
    );
    // An unknown agent name is a clap error, which must not be exit 2.
    let out = hook(&server, "aider", Some(&pane), b"{}");
    assert_quiet(&out, "an unknown agent");
    assert_eq!(pane_options(&server, &pane), before);
}

#[test]
fn a_hook_for_a_closed_pane_reaches_the_daemon_and_changes_nothing() {
    let server = TmuxServer::start();
    let mut daemon = Daemon::start(&server);
    let before = crate::support::daemon::snapshot(&server);
    let out = hook(
        &server,
        "claude",
        Some("%999"),
        br#"{"hook_event_name":"PermissionRequest"}"#,
    );
    assert_quiet(&out, "a closed pane");
    assert!(
        daemon.wait_stderr("a pane that does not exist", PATIENCE),
        "the daemon did not say why: {}",
        daemon.stderr()
    );
    assert_eq!(crate::support::daemon::snapshot(&server), before);
    assert_ne!(server.global_option("@agent-waiting").as_deref(), Some("1"));
}

/// A user's settings as Claude Code writes them (two-space JSON), with
/// hooks, permissions and env of their own.
const SETTINGS: &str = r#"{
  "$schema": "https://json.schemastore.org/claude-code-settings.json",
  "permissions": {
    "allow": [
      "Bash(npm run lint)",
      "Bash(npm run test:*)"
    ],
    "deny": [
      "Read(./.env)"
    ],
    "defaultMode": "acceptEdits"
  },
  "env": {
    "ANTHROPIC_MODEL": "claude-opus-4-1",
    "DISABLE_TELEMETRY": "1"
  },
  "hooks": {
    "PostToolUse": [
      {
        "matcher": "Edit|Write",
        "hooks": [
          {
            "type": "command",
            "command": "npx prettier --write \"$CLAUDE_PROJECT_DIR\"/src",
            "timeout": 30
          }
        ]
      }
    ],
    "Notification": [
      {
        "matcher": "",
        "hooks": [
          {
            "type": "command",
            "command": "notify-send 'Claude Code' 'Awaiting your input ✋'"
          }
        ]
      }
    ]
  },
  "statusLine": {
    "type": "command",
    "command": "~/.claude/statusline.sh",
    "padding": 0
  },
  "cleanupPeriodDays": 30
}
"#;

#[test]
fn hooks_install_and_uninstall_leave_a_real_settings_file_byte_identical() {
    let server = TmuxServer::start();
    let settings = server.path(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, SETTINGS).unwrap();
    let said = agent_ok(&server, &["hooks", "install", "claude"]);
    assert!(
        said.contains("added claude hooks for SessionStart"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(server.path(".claude/settings.json.bak")).unwrap(),
        SETTINGS
    );
    let installed = std::fs::read_to_string(&settings).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&installed).unwrap();
    // Theirs kept, ours after theirs.
    assert_eq!(parsed["hooks"]["PostToolUse"].as_array().unwrap().len(), 2);
    assert_eq!(
        parsed["hooks"]["PostToolUse"][1]["hooks"][0]["command"],
        "tmux-agent hook claude"
    );
    assert_eq!(parsed["env"]["DISABLE_TELEMETRY"], "1");
    // Twice is once.
    assert!(agent_ok(&server, &["hooks", "install", "claude"]).contains("nothing to do"));
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), installed);
    let status = crate::support::daemon::json(&agent_ok(&server, &["hooks", "status", "--json"]));
    let claude_user = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent"] == "claude" && r["scope"] == "user")
        .unwrap()
        .clone();
    assert_eq!(claude_user["missing"], serde_json::json!([]), "{status}");
    let human = agent_ok(&server, &["hooks", "status"]);
    assert!(human.contains("installed"), "{human}");
    let said = agent_ok(&server, &["hooks", "uninstall", "claude"]);
    assert!(said.contains("removed claude hooks"), "{said}");
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), SETTINGS);
    // A file it cannot parse is refused, untouched.
    std::fs::write(&settings, "{ \"model\": ").unwrap();
    let out = server
        .agent()
        .args(["hooks", "install", "claude"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not valid JSON"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), "{ \"model\": ");
}

#[test]
fn hooks_install_writes_codex_and_gemini_files_in_the_project() {
    let server = TmuxServer::start();
    let project = server.path("project");
    std::fs::create_dir_all(&project).unwrap();
    for agent in ["codex", "gemini"] {
        let out = server
            .agent()
            .args(["hooks", "install", agent, "--project", "--json"])
            .current_dir(&project)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let said = crate::support::daemon::json(&text(&out.stdout));
        assert_eq!(said["backup"], serde_json::Value::Null);
    }
    let codex: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join(".codex/hooks.json")).unwrap())
            .unwrap();
    assert_eq!(
        codex["hooks"]["PermissionRequest"][0]["hooks"][0]["command"],
        "tmux-agent hook codex"
    );
    let gemini: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.join(".gemini/settings.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        gemini["hooks"]["AfterAgent"][0]["hooks"][0]["timeout"],
        5000
    );
    for agent in ["codex", "gemini"] {
        let out = server
            .agent()
            .args(["hooks", "uninstall", agent, "--project"])
            .current_dir(&project)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(
        std::fs::read_to_string(project.join(".codex/hooks.json")).unwrap(),
        "{}\n"
    );
}

#[test]
fn status_changes_are_events_the_reactor_acts_on() {
    let actions = r#"
[[on.agent-waiting]]
server = "rec"
tool = "echo"
args = { step = "waiting", pane = "{pane}", agent = "{agent}", old = "{old_status}", status = "{agent_status}", session = "{session}", key = "{idempotency_key}" }

[[on.agent-idle]]
server = "rec"
tool = "echo"
args = { step = "idle", pane = "{pane}", old = "{old_status}", key = "{idempotency_key}" }
"#;
    let rig = crate::support::rig::Rig::new(actions);
    let _daemon = rig.start_daemon();
    let server = &rig.server;
    eventually(PATIENCE, "the daemon to listen", || {
        (rig.status()["running"] == true).then_some(())
    });
    let pane = server.display("base", "#{pane_id}");
    // A follower of the daemon's events sees the agent events too.
    let mut cmd = server.agent();
    cmd.args(["watch", "--json"]);
    let mut watcher = crate::support::LineReader::spawn(cmd);
    assert!(
        watcher.wait_stderr("tmux-agent watch: following the daemon", PATIENCE),
        "{}",
        watcher.stderr()
    );
    let event = |name: &str| format!(r#"{{"hook_event_name":"{name}","session_id":"s"}}"#);
    for name in [
        "UserPromptSubmit",
        "PermissionRequest",
        "PostToolUse",
        "Stop",
    ] {
        assert_quiet(
            &hook(server, "claude", Some(&pane), event(name).as_bytes()),
            name,
        );
        let status = match name {
            "PermissionRequest" => "waiting",
            "Stop" => "idle",
            _ => "working",
        };
        wait_pane_status(server, &pane, status, name);
    }
    let calls = rig.wait_calls(2);
    let args: Vec<&serde_json::Value> = calls.iter().map(|c| &c["arguments"]).collect();
    assert_eq!(args.len(), 2, "{args:#?}");
    assert_eq!(args[0]["step"], "waiting");
    assert_eq!(args[0]["pane"], pane.as_str());
    assert_eq!(args[0]["agent"], "claude");
    assert_eq!(args[0]["old"], "working");
    assert_eq!(args[0]["status"], "waiting");
    assert_eq!(args[0]["session"], "base");
    assert_eq!(args[1]["step"], "idle");
    assert_eq!(args[1]["old"], "working");

    let mut seen = Vec::new();
    while seen
        .last()
        .map(|e: &serde_json::Value| e["event"] != "agent-idle")
        != Some(false)
    {
        let line = watcher
            .next_line(PATIENCE)
            .unwrap_or_else(|| panic!("watch never showed agent-idle; it showed {seen:#?}"));
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"]
            .as_str()
            .is_some_and(|e| e.starts_with("agent-"))
        {
            seen.push(event);
        }
    }
    let statuses: Vec<(&str, &str)> = seen
        .iter()
        .map(|e| {
            (
                e["old_status"].as_str().unwrap_or("-"),
                e["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("-", "working"),
            ("working", "waiting"),
            ("waiting", "working"),
            ("working", "idle")
        ],
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .all(|e| e["pane"] == pane.as_str() && e["agent"] == "claude"),
        "{seen:#?}"
    );
}

#[test]
fn the_example_status_line_marks_waiting_windows_and_next_waiting_jumps_there() {
    let server = TmuxServer::start();
    let other = crate::support::daemon::new_session(&server, "other");
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/tmux.conf.example");
    // Only the status-line and key-binding lines: the rest starts a daemon
    // from PATH, which groups::the_example_tmux_conf_works_end_to_end covers.
    let lines: String = std::fs::read_to_string(conf)
        .unwrap()
        .lines()
        .filter(|l| {
            l.starts_with("set-option -g window-status")
                || l.starts_with("set-option -g status-right ")
                || l.starts_with("bind-key W ")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(lines.lines().count(), 4, "{lines}");
    let part = server.path("agents.conf");
    std::fs::write(&part, lines).unwrap();
    server.tmux(&["source-file", part.to_str().unwrap()]);
    let _daemon = Daemon::start(&server);
    // Two waiting agents: the one in `other` (second pane of its window)
    // waited first.
    let waiting_first = server
        .tmux(&["split-window", "-d", "-P", "-F", "#{pane_id}", "-t", &other])
        .trim()
        .to_owned();
    let base_pane = server.display("base", "#{pane_id}");
    let ask = br#"{"hook_event_name":"PermissionRequest","session_id":"s"}"#;
    assert_quiet(&hook(&server, "claude", Some(&waiting_first), ask), "first");
    wait_pane_status(&server, &waiting_first, "waiting", "first");
    // @agent-since has one-second steps: the second waits from a later second.
    let since: i64 = pane_option(&server, &waiting_first, "@agent-since")
        .unwrap()
        .parse()
        .unwrap();
    eventually(PATIENCE, "a later second", || {
        (chrono::Utc::now().timestamp() > since).then_some(())
    });
    assert_quiet(
        &hook(
            &server,
            "gemini",
            Some(&base_pane),
            br#"{"hook_event_name":"Notification","notification_type":"ToolPermission"}"#,
        ),
        "second",
    );
    eventually(PATIENCE, "two waiting", || {
        (server.global_option("@agent-waiting").as_deref() == Some("2")).then_some(())
    });
    let right = server.display("base", "#{E:status-right}");
    assert!(right.contains(" 2 waiting "), "{right:?}");
    let marker = server.display(&format!("{other}:"), "#{E:window-status-format}");
    assert!(marker.ends_with('!'), "{marker:?}");
    let printed =
        crate::support::daemon::json(&agent_ok(&server, &["next-waiting", "--print", "--json"]));
    assert_eq!(printed["pane"], waiting_first.as_str());
    // The key binding's command, for a terminal client on `base`.
    let _terminal = server.attach_terminal("base");
    let client = eventually(PATIENCE, "a terminal client", || {
        let clients = server.tmux(&[
            "list-clients",
            "-F",
            "#{client_name} #{client_control_mode}",
        ]);
        clients
            .lines()
            .find_map(|l| l.strip_suffix(" 0").map(str::to_owned))
    });
    agent_ok(&server, &["next-waiting", "--client", &client]);
    eventually(PATIENCE, "the client on the waiting pane", || {
        let on = server.tmux(&["display-message", "-p", "-c", &client, "#{pane_id}"]);
        (on.trim() == waiting_first).then_some(())
    });
    // Once nobody waits, the count is gone from the status line and the
    // window loses its mark.
    for pane in [&waiting_first, &base_pane] {
        assert_quiet(
            &hook(
                &server,
                "claude",
                Some(pane),
                br#"{"hook_event_name":"Stop"}"#,
            ),
            "stop",
        );
    }
    eventually(PATIENCE, "none waiting", || {
        (server.global_option("@agent-waiting").as_deref() == Some("0")).then_some(())
    });
    assert!(
        !server
            .display("base", "#{E:status-right}")
            .contains("waiting")
    );
    assert!(
        !server
            .display(&format!("{other}:"), "#{E:window-status-format}")
            .ends_with('!')
    );
}

#[tokio::test]
async fn whoami_says_what_the_agent_in_its_pane_is_doing() {
    use crate::support::serve::{connect, ok, serve_command};
    let server = TmuxServer::start();
    let pane = server.display("base", "#{pane_id}");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = serve_command(&dir.path().join("b.db"), &[]);
    cmd.env("TMUX", server.tmux_env()).env("TMUX_PANE", &pane);
    let client = connect(cmd).await;
    let me = ok(&client, "whoami", serde_json::json!({})).await;
    assert!(me["agent"].is_null(), "{me}");
    // No daemon: the hook sets the pane's options itself.
    let ask = br#"{"hook_event_name":"PermissionRequest","session_id":"s"}"#;
    assert_quiet(&hook(&server, "claude", Some(&pane), ask), "permission");
    let me = ok(&client, "whoami", serde_json::json!({})).await;
    assert_eq!(me["agent"]["pane"], pane.as_str(), "{me}");
    assert_eq!(me["agent"]["status"], "waiting");
    assert_eq!(me["agent"]["kind"], "claude");
    assert!(me["agent"]["since"].as_i64().is_some());
    client.cancel().await.unwrap();
}

/// An agent without hooks (a fake aider: a Python script, as pip installs
/// aider) started at a pane's shell prompt is put on the board by its
/// process, with no hook and no poll: tmux renames the window after the
/// new foreground command, and the keeper looks at the panes then. The
/// fallback then reads its quiet prompt as idle; when it exits and the
/// shell is back, the pane's agent is `exited`.
#[test]
fn an_agent_without_hooks_is_seen_by_its_process_and_leaves_when_it_exits() {
    let server = TmuxServer::start_with_session("work");
    let _daemon = Daemon::start(&server);
    let pane = server.display("=work:", "#{pane_id}");
    let bin = server.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let aider = bin.join("aider");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents/fake-aider.py"),
        &aider,
    )
    .unwrap();
    assert_eq!(pane_option(&server, &pane, "@agent-kind"), None);

    server.tmux(&["send-keys", "-t", &pane, "-l", &aider.display().to_string()]);
    server.tmux(&["send-keys", "-t", &pane, "Enter"]);
    eventually(PATIENCE, "the pane's agent to be known as aider", || {
        (pane_option(&server, &pane, "@agent-kind").as_deref() == Some("aider")).then_some(())
    });
    wait_pane_status(&server, &pane, "idle", "its prompt settled");
    assert_eq!(
        server.display(&pane, "#{pane_current_command}"),
        "python3",
        "the fake runs under an interpreter, as aider does"
    );

    server.tmux(&["send-keys", "-t", &pane, "-l", "/exit"]);
    server.tmux(&["send-keys", "-t", &pane, "Enter"]);
    wait_pane_status(
        &server,
        &pane,
        "exited",
        "the agent left and the shell came back",
    );
}
