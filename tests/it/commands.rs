//! `reload`, `save` and `show` end to end: a real tmux server, the real
//! daemon, and recording test MCP servers that prove which process got
//! which call.

use crate::support::{Daemon, PATIENCE, TEST_SERVER, TmuxServer, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

struct Rig {
    server: TmuxServer,
}

impl Rig {
    fn new() -> Self {
        Self {
            server: TmuxServer::start(),
        }
    }

    fn record(&self, name: &str) -> PathBuf {
        self.server.home.path().join(format!("{name}.jsonl"))
    }

    /// A `[servers.NAME]` entry running the test server, recording to
    /// `NAME.jsonl`, with `extra` arguments.
    fn server_entry(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "--record".to_owned(),
            self.record(name).display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        format!(
            "[servers.{name}]\ncommand = {TEST_SERVER:?}\nargs = {args:?}\nconnect_timeout = \"5s\"\ncall_timeout = \"5s\"\n\n"
        )
    }

    /// Writes the config: no preset, the given servers and actions.
    fn write_config(&self, body: &str) {
        let config =
            format!("[mcp]\nimport_claude = false\n\n[reactor]\npreset = \"none\"\n\n{body}");
        crate::support::write_config(self.server.home.path(), &config);
    }

    fn start_daemon(&self) -> Daemon {
        Daemon::attach(&self.server)
    }

    fn agent(&self, args: &[&str]) -> Output {
        self.server
            .agent()
            .args(args)
            .output()
            .expect("run tmux-agent")
    }

    fn option(&self, target: &str, name: &str) -> String {
        self.server.option(target, name).unwrap_or_default()
    }

    /// Waits until `NAME.jsonl` holds `n` tool calls; returns them.
    fn wait_calls(&self, name: &str, n: usize) -> Vec<Value> {
        let record = self.record(name);
        wait_for(PATIENCE, || {
            let calls = calls(&record);
            (calls.len() >= n).then_some(calls)
        })
        .unwrap_or_else(|| panic!("{name}: expected {n} calls, got {:#?}", calls(&record)))
    }
}

fn calls(record: &Path) -> Vec<Value> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "request" && e["method"] == "tools/call")
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn on_created(server: &str) -> String {
    format!(
        "[[on.session-created]]\nserver = \"{server}\"\ntool = \"echo\"\nargs = {{ session = \"{{session}}\" }}\n\n"
    )
}

#[test]
fn reload_restarts_what_changed_keeps_the_rest_and_refuses_a_broken_config() {
    let rig = Rig::new();
    rig.write_config(&format!(
        "{}{}{}{}",
        rig.server_entry("keep", &[]),
        rig.server_entry("change", &[]),
        on_created("keep"),
        on_created("change"),
    ));
    let mut daemon = rig.start_daemon();
    // `base` existed before the daemon: both servers register it.
    let keep_pid = rig.wait_calls("keep", 1)[0]["pid"].clone();
    let change_pid = rig.wait_calls("change", 1)[0]["pid"].clone();

    // `change` gets another flag; `added` is new and named by a new action.
    rig.write_config(&format!(
        "{}{}{}{}{}{}",
        rig.server_entry("keep", &[]),
        rig.server_entry("change", &["--modern"]),
        rig.server_entry("added", &[]),
        on_created("keep"),
        on_created("change"),
        on_created("added"),
    ));
    let out = rig.agent(&["reload"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("change restarted"), "{said}");
    assert!(said.contains("added added"), "{said}");
    assert!(
        said.contains("3 actions for session-created (changed: session-created)"),
        "{said}"
    );

    rig.server.tmux(&["new-session", "-d", "-s", "next"]);
    let keep = rig.wait_calls("keep", 2);
    let change = rig.wait_calls("change", 2);
    let added = rig.wait_calls("added", 1);
    assert_eq!(keep[1]["arguments"]["session"], "next");
    assert_eq!(
        keep[1]["pid"], keep_pid,
        "the unchanged server was restarted"
    );
    assert_ne!(change[1]["pid"], change_pid, "the changed server was not");
    assert_eq!(added[0]["arguments"]["session"], "next");

    // A config with a mistake changes nothing.
    rig.write_config(&format!(
        "{}[[on.session-created]]\nserver = \"keep\"\ntool = \"echo\"\nargs = {{ x = \"{{nope}}\" }}\n",
        rig.server_entry("keep", &[]),
    ));
    let out = rig.agent(&["reload"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("{nope}"), "{err}");
    assert!(err.contains("unchanged"), "{err}");
    rig.server.tmux(&["new-session", "-d", "-s", "third"]);
    assert_eq!(
        rig.wait_calls("added", 2)[1]["arguments"]["session"],
        "third"
    );
    assert_eq!(rig.wait_calls("change", 3)[2]["pid"], change[1]["pid"]);

    // SIGHUP does the same as `reload`.
    rig.write_config(&format!(
        "{}{}",
        rig.server_entry("late", &[]),
        on_created("late")
    ));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) };
    assert!(
        daemon.wait_stderr("reloaded on SIGHUP", PATIENCE),
        "{}",
        daemon.stderr()
    );
    rig.server.tmux(&["new-session", "-d", "-s", "fourth"]);
    assert_eq!(
        rig.wait_calls("late", 1)[0]["arguments"]["session"],
        "fourth"
    );
}

#[test]
fn save_sends_the_checkpoint_calls_now_and_says_when_they_fail() {
    let rig = Rig::new();
    let out = rig.agent(&["save", "-t", "base"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("tmux-agent ensure"),
        "{}",
        text(&out.stderr)
    );

    let checkpoint = "[[on.checkpoint]]\nserver = \"rec\"\ntool = \"echo\"\nargs = { step = \"checkpoint\", context = \"{context}\" }\n";
    rig.write_config(&format!("{}{checkpoint}", rig.server_entry("rec", &[])));
    let _daemon = rig.start_daemon();
    rig.server
        .tmux(&["new-window", "-t", "base", "-n", "second"]);
    let out = rig.agent(&["save", "-t", "base"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.starts_with("saved base ($0)"), "{said}");
    assert!(said.contains("rec/echo: delivered in"), "{said}");
    let calls = rig.wait_calls("rec", 1);
    let args = &calls[0]["arguments"];
    assert_eq!(args["step"], "checkpoint");
    assert_eq!(args["context"]["session"], "base");
    assert_eq!(args["context"]["windows"].as_array().unwrap().len(), 2);
    assert!(!rig.option("base", "@agent-saved").is_empty());
    // A detached session stays `detached` after a save.
    assert_eq!(rig.option("base", "@agent-state"), "detached");

    // Without checkpoint actions, the detach actions that send the context
    // are the save; the others (a status update) are not sent.
    let detached = "[[on.session-detached]]\nserver = \"rec\"\ntool = \"echo\"\nargs = { step = \"status\" }\n\n\
        [[on.session-detached]]\nserver = \"rec\"\ntool = \"echo\"\nargs = { step = \"observe\", lines = \"{observations}\" }\n";
    rig.write_config(&format!("{}{detached}", rig.server_entry("rec", &[])));
    assert!(rig.agent(&["reload"]).status.success());
    let out = rig.agent(&["save", "-t", "base", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["session"]["name"], "base");
    assert_eq!(report["calls"].as_array().unwrap().len(), 1, "{report}");
    let calls = rig.wait_calls("rec", 2);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["arguments"]["step"], "observe");

    // A tool error: exit 1 with the server's reason.
    let failing = "[[on.checkpoint]]\nserver = \"rec\"\ntool = \"fail\"\nargs = { message = \"disk full; #(gone) 'q'\" }\n";
    rig.write_config(&format!("{}{failing}", rig.server_entry("rec", &[])));
    assert!(rig.agent(&["reload"]).status.success());
    let out = rig.agent(&["save", "-t", "base"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("saving base ($0) failed"), "{err}");
    assert!(err.contains("disk full; #(gone) 'q'"), "{err}");
}

#[test]
fn show_reads_tmux_and_the_outbox_with_or_without_the_daemon() {
    let rig = Rig::new();
    rig.write_config(&format!(
        "{}[[on.session-created]]\nserver = \"rec\"\ntool = \"echo\"\nargs = {{ id = \"goal-{{session_id}}\" }}\nkeep = {{ goal_id = \"$.id\" }}\n",
        rig.server_entry("rec", &[]),
    ));
    let goal = "fix \"it\"\nthen ship #{x}";
    rig.server.tmux(&[
        "new-session",
        "-d",
        "-s",
        "work",
        ";",
        "set-option",
        "@agent-goal",
        goal,
        ";",
        "set-option",
        "@agent-group",
        "build",
    ]);
    let id = rig.server.session_id("work");
    let mut daemon = rig.start_daemon();
    wait_for(PATIENCE, || {
        (!rig.option(&id, "@agent-goal-id").is_empty()).then_some(())
    })
    .expect("@agent-goal-id was never set");

    let out = rig.agent(&["show", "-t", "work", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["session"]["id"], id.as_str());
    assert_eq!(shown["daemon"], true);
    assert_eq!(shown["goal"], goal);
    assert_eq!(shown["goal_id"], format!("goal-{id}"));
    assert_eq!(shown["group"], "build");
    assert_eq!(shown["type"], Value::Null);
    let history = shown["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{shown}");
    assert_eq!(history[0]["event"], "session-created");
    assert_eq!(history[0]["tool"], "echo");
    assert_eq!(history[0]["state"], "delivered");
    assert_eq!(shown["calls"]["pending"], 0);

    let out = rig.agent(&["show", "-t", "work"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(said.starts_with(&format!("work ({id})\n")), "{said}");
    assert!(
        said.contains(r#"goal:    fix "it"\nthen ship #{x}"#),
        "the newline is shown escaped: {said}"
    );
    assert!(said.contains(&format!("goal id: goal-{id}")), "{said}");
    assert!(said.contains("session-created"), "{said}");
    assert!(said.contains("rec/echo"), "{said}");
    assert!(!said.contains("daemon:"), "{said}");

    assert!(rig.agent(&["stop"]).status.success());
    daemon.wait(PATIENCE).expect("the daemon did not stop");
    let out = rig.agent(&["show", "-t", "work"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        said.contains("daemon:  the daemon is not running"),
        "{said}"
    );
    assert!(
        said.contains("rec/echo"),
        "the history outlives the daemon: {said}"
    );
    let out = rig.agent(&["show", "-t", "work", "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["daemon"], false);
    assert_eq!(shown["history"].as_array().unwrap().len(), 1);

    // A session that never met a daemon, and one that does not exist.
    rig.server.tmux(&["new-session", "-d", "-s", "fresh"]);
    let out = rig.agent(&["show", "-t", "fresh"]);
    let said = text(&out.stdout);
    assert!(
        said.contains("calls:   0 pending, 0 failed, 0 delivered"),
        "{said}"
    );
    assert!(said.contains("saved:   never"), "{said}");
    let out = rig.agent(&["show", "-t", "nope"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
}
