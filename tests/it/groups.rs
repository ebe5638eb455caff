//! Coordination groups against a real tmux server: what `join`, `leave`,
//! `share`, `peers`, `groups` and `new` do, what the daemon derives, and
//! what a person reads back with plain `tmux show-options`.

use std::time::Duration;

use crate::support::daemon::{Daemon, agent, agent_err, agent_ok, json, new_session, snapshot};
use crate::support::{PATIENCE, text};
use crate::support::{TmuxServer, wait_for};

/// The issue's promise for a plain `tmux set @agent-group` and for a closed
/// coordinator: honoured within 2 s (the tracker's subscription runs at 1 Hz).
const PROMPT: Duration = Duration::from_secs(2);

fn until(server: &TmuxServer, id: &str, name: &str, want: Option<&str>, within: Duration) {
    let seen = wait_for(within, || {
        (server.option(id, name).as_deref() == want).then_some(())
    });
    assert!(
        seen.is_some(),
        "{id} {name}: wanted {want:?} within {within:?}, have {:?}",
        server.option(id, name)
    );
}

#[test]
fn two_sessions_join_share_and_a_later_joiner_gets_the_context() {
    let server = TmuxServer::start();
    let one = new_session(&server, "one");
    let two = new_session(&server, "two");
    let three = new_session(&server, "three");
    let _daemon = Daemon::start(&server);

    let out = agent_ok(&server, &["join", "g", "-t", &one]);
    assert!(
        out.contains("one ($") && out.contains("coordinator of g"),
        "{out}"
    );
    let out = agent_ok(&server, &["join", "g", "-t", &two]);
    assert!(out.contains("member of g, coordinated by one"), "{out}");

    // What the daemon wrote, read back with plain tmux. The CLI asked the
    // daemon for a pass, so it is there when the command returns.
    assert_eq!(
        server.option(&one, "@agent-role").as_deref(),
        Some("coordinator")
    );
    assert_eq!(
        server.option(&two, "@agent-role").as_deref(),
        Some("member")
    );
    assert_eq!(server.option(&one, "@agent-peers").as_deref(), Some("two"));
    assert_eq!(server.option(&two, "@agent-peers").as_deref(), Some("one"));
    assert_eq!(
        server.global_option("@agent-groups").as_deref(),
        Some("g:2")
    );

    let out = agent_ok(&server, &["share", "task=refactor", "-t", &one]);
    assert!(out.contains("shared task=refactor with g"), "{out}");
    for id in [&one, &two] {
        assert_eq!(
            server.option(id, "@agent-ctx-task").as_deref(),
            Some("refactor")
        );
    }
    assert_eq!(server.option(&three, "@agent-ctx-task"), None);

    agent_ok(&server, &["join", "g", "-t", &three]);
    assert_eq!(
        server.option(&three, "@agent-ctx-task").as_deref(),
        Some("refactor")
    );
    assert_eq!(
        server.option(&three, "@agent-role").as_deref(),
        Some("member")
    );
    assert_eq!(
        server.option(&one, "@agent-peers").as_deref(),
        Some("two,three")
    );
    assert_eq!(
        server.option(&three, "@agent-peers").as_deref(),
        Some("one,two")
    );
    assert_eq!(
        server.global_option("@agent-groups").as_deref(),
        Some("g:3")
    );

    let peers = agent_ok(&server, &["peers", "-t", &three]);
    assert!(peers.contains("member of g, coordinated by one"), "{peers}");
    assert!(peers.contains("peers:  one ($"), "{peers}");
    assert!(peers.contains("shared: task=refactor"), "{peers}");

    // Removing a key removes it everywhere.
    agent_ok(&server, &["share", "--unset", "task", "-t", &two]);
    for id in [&one, &two, &three] {
        assert_eq!(server.option(id, "@agent-ctx-task"), None);
    }
}

#[test]
fn groups_json_lists_members_coordinator_and_context() {
    let server = TmuxServer::start();
    let a = new_session(&server, "a");
    let b = new_session(&server, "b");
    let c = new_session(&server, "c");
    let _daemon = Daemon::start(&server);
    agent_ok(&server, &["join", "build", "-t", &b]);
    agent_ok(&server, &["join", "build", "-t", &a]);
    agent_ok(&server, &["join", "review", "-t", &c]);
    agent_ok(&server, &["share", "url=https://x/pr/7", "-t", &a]);

    let out = json(&agent_ok(&server, &["groups", "--json"]));
    assert_eq!(out["daemon"], true);
    let groups = out["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let build = &groups[0];
    assert_eq!(build["name"], "build");
    assert_eq!(build["coordinator"]["id"], b.as_str(), "b joined first");
    assert_eq!(build["coordinator"]["name"], "b");
    let members: Vec<(&str, &str)> = build["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(members, [("b", "coordinator"), ("a", "member")]);
    assert_eq!(build["context"]["url"], "https://x/pr/7");
    assert_eq!(groups[1]["name"], "review");
    assert_eq!(groups[1]["context"], serde_json::json!({}));

    let human = agent_ok(&server, &["groups"]);
    assert!(human.contains("build (2 members)"), "{human}");
    assert!(human.contains("review (1 member)"), "{human}");

    let peers = json(&agent_ok(&server, &["peers", "--json", "-t", &a]));
    assert_eq!(peers["group"], "build");
    assert_eq!(peers["role"], "member");
    assert_eq!(peers["coordinator"]["name"], "b");
    assert_eq!(peers["peers"][0]["name"], "b");
    assert_eq!(peers["context"]["url"], "https://x/pr/7");
}

#[test]
fn killing_the_coordinators_session_promotes_the_next() {
    let server = TmuxServer::start();
    let one = new_session(&server, "one");
    let two = new_session(&server, "two");
    let three = new_session(&server, "three");
    let _daemon = Daemon::start(&server);
    for id in [&one, &two, &three] {
        agent_ok(&server, &["join", "g", "-t", id]);
    }
    server.tmux(&["kill-session", "-t", &one]);
    until(&server, &two, "@agent-role", Some("coordinator"), PROMPT);
    until(&server, &three, "@agent-peers", Some("two"), PROMPT);
    assert_eq!(
        server.option(&two, "@agent-peers").as_deref(),
        Some("three")
    );
    assert_eq!(
        server.global_option("@agent-groups").as_deref(),
        Some("g:2")
    );

    // A rename reaches the peers' lists.
    server.tmux(&["rename-session", "-t", &three, "third"]);
    until(&server, &two, "@agent-peers", Some("third"), PROMPT);
}

#[test]
fn plain_tmux_set_and_unset_of_agent_group_are_honoured() {
    let server = TmuxServer::start();
    let one = new_session(&server, "one");
    let two = new_session(&server, "two");
    let _daemon = Daemon::start(&server);
    agent_ok(&server, &["join", "g", "-t", &one]);

    // As a key binding or a person at a tmux prompt would.
    server.tmux(&["set-option", "-t", &two, "@agent-group", "g"]);
    until(&server, &two, "@agent-role", Some("member"), PROMPT);
    assert_eq!(server.option(&two, "@agent-peers").as_deref(), Some("one"));
    until(&server, &one, "@agent-peers", Some("two"), PROMPT);

    server.tmux(&["set-option", "-u", "-t", &two, "@agent-group"]);
    until(&server, &two, "@agent-role", None, PROMPT);
    assert_eq!(server.option(&two, "@agent-peers"), None);
    assert_eq!(server.option(&two, "@agent-joined"), None);
    until(&server, &one, "@agent-peers", Some(""), PROMPT);
    assert_eq!(
        server.global_option("@agent-groups").as_deref(),
        Some("g:1")
    );

    // Leaving the last member makes the group disappear.
    agent_ok(&server, &["leave", "-t", &one]);
    assert_eq!(server.option(&one, "@agent-role"), None);
    assert_eq!(server.global_option("@agent-groups"), None);
    let out = json(&agent_ok(&server, &["groups", "--json"]));
    assert_eq!(out["groups"], serde_json::json!([]));
}

/// [`snapshot`] without the sidecar's session: it ends after each daemon's
/// client (its pane's loop), so a daemon may have a new one, and it has
/// no options.
fn user_snapshot(
    server: &TmuxServer,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
    let mut all = snapshot(server);
    all.remove(&server.session_id("tmux-agent"));
    all
}

#[test]
fn a_daemon_restart_changes_no_option() {
    let server = TmuxServer::start();
    let ids: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| new_session(&server, n))
        .collect();
    let daemon = Daemon::start(&server);
    agent_ok(&server, &["join", "g", "-t", &ids[1]]);
    agent_ok(&server, &["join", "g", "-t", &ids[0]]);
    agent_ok(&server, &["join", "h", "-t", &ids[2]]);
    agent_ok(&server, &["share", "task=x;y", "-t", &ids[0]]);
    agent_ok(
        &server,
        &["share", "note=#(touch nope) 'q' \"d\"", "-t", &ids[2]],
    );
    let before = user_snapshot(&server);
    assert_eq!(before[&ids[1]]["@agent-role"], "coordinator");

    daemon.stop(&server);
    let daemon = Daemon::start(&server);
    // A pass through the daemon, so its start-up rebuild has certainly run.
    agent_ok(&server, &["groups"]);
    assert_eq!(user_snapshot(&server), before);

    // Killed without a chance to clean up, then started again: the same.
    drop(daemon);
    let _daemon = Daemon::start(&server);
    agent_ok(&server, &["groups"]);
    assert_eq!(user_snapshot(&server), before);
}

#[test]
fn without_a_daemon_commands_write_the_options_and_the_daemon_finishes_later() {
    let server = TmuxServer::start();
    let one = new_session(&server, "one");
    let two = new_session(&server, "two");

    let out = agent(&server, &["join", "g", "-t", &one]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no daemon is running"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("coordinator of g"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(server.option(&one, "@agent-group").as_deref(), Some("g"));
    assert_eq!(
        server.option(&one, "@agent-role"),
        None,
        "derived options wait for the daemon"
    );

    agent_ok(&server, &["share", "task=offline", "-t", &one]);
    assert_eq!(
        server.option(&one, "@agent-ctx-task").as_deref(),
        Some("offline")
    );
    agent_ok(&server, &["join", "g", "-t", &two]);
    let groups = json(&agent_ok(&server, &["groups", "--json"]));
    assert_eq!(groups["daemon"], false);
    assert_eq!(groups["groups"][0]["members"].as_array().unwrap().len(), 2);

    let _daemon = Daemon::start(&server);
    agent_ok(&server, &["groups"]);
    assert_eq!(
        server.option(&one, "@agent-role").as_deref(),
        Some("coordinator")
    );
    assert_eq!(
        server.option(&two, "@agent-role").as_deref(),
        Some("member")
    );
    assert_eq!(
        server.option(&two, "@agent-ctx-task").as_deref(),
        Some("offline"),
        "context shared while no daemon ran reaches the later joiner"
    );
}

/// A terminal client whose keyboard the test types on and whose screen
/// output it reads: `script` runs `tmux attach` in a pseudo-terminal and
/// passes its stdin and stdout through.
struct Keyboard {
    child: std::process::Child,
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Keyboard {
    /// Attaches to `session`, named `name` (which the default status line
    /// shows as `[name]` once drawn).
    fn attach(server: &TmuxServer, session: &str, name: &str) -> Self {
        let attach = format!("tmux -L {} attach -t '{session}'", server.name);
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qfc", &attach, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .env_remove("TMUX")
            .env("TERM", "xterm-256color");
        let mut child = cmd.spawn().expect("spawn script");
        let mut stdout = child.stdout.take().unwrap();
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let keyboard = Self { child, screen };
        // Attached, in raw mode, and drawn: the status line is on the screen.
        keyboard.wait_screen(&format!("[{name}]"));
        keyboard
    }

    /// Waits until `needle` appears in what tmux drew since the last call.
    fn wait_screen(&self, needle: &str) {
        let seen = wait_for(PATIENCE, || {
            let mut screen = self.screen.lock().unwrap();
            let text = String::from_utf8_lossy(&screen).into_owned();
            text.contains(needle).then(|| screen.clear())
        });
        let drawn = String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned();
        assert!(
            seen.is_some(),
            "{needle:?} never appeared on the terminal: {drawn:?}"
        );
    }

    fn client(server: &TmuxServer) -> String {
        let clients = server.tmux(&[
            "list-clients",
            "-F",
            "#{client_name}\t#{client_control_mode}",
        ]);
        clients
            .lines()
            .find_map(|l| l.strip_suffix("\t0").map(str::to_owned))
            .expect("a terminal client")
    }

    fn type_keys(&mut self, keys: &[u8]) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(keys).unwrap();
        stdin.flush().unwrap();
    }

    /// prefix G, then (once the prompt shows) `name` and Enter.
    fn join_prompt(&mut self, name: &str) {
        self.type_keys(b"\x02G");
        self.wait_screen("join group:");
        self.type_keys(name.as_bytes());
        self.type_keys(b"\r");
    }
}

impl Drop for Keyboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tmux.conf.example as a user would load it: it starts the daemon, its
/// hook brings a stopped daemon back, its key bindings join and leave, and
/// its status line shows shared values as text, never running them.
#[test]
fn the_example_tmux_conf_works_end_to_end() {
    let server = TmuxServer::start();
    let one = new_session(&server, "one");
    // tmux runs `tmux-agent` from the PATH of its jobs.
    let bin = std::path::Path::new(crate::support::AGENT)
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    server.tmux(&["set-environment", "-g", "PATH", &path]);
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/tmux.conf.example");
    server.tmux(&["source-file", conf]);

    let running = || {
        let out = agent(&server, &["status", "--json"]);
        let status = json(&text(&out.stdout));
        (status["running"] == true).then(|| status["pid"].clone())
    };
    let first =
        wait_for(PATIENCE, running).expect("run-shell -b 'tmux-agent ensure' started no daemon");

    // prefix G, a group name, Enter: joined, and the popup shows the group.
    let mut keyboard = Keyboard::attach(&server, &one, "one");
    keyboard.join_prompt("build");
    until(&server, &one, "@agent-group", Some("build"), PATIENCE);
    until(&server, &one, "@agent-role", Some("coordinator"), PATIENCE);
    keyboard.wait_screen("coordinator of build");
    // Close the popup with C-c (Escape would wait out escape-time and
    // swallow the keys typed after it).
    keyboard.type_keys(b"\x03");

    // What is typed at the prompt is data, whatever it holds.
    let hostile = "x\" ; `touch typed`; $(touch typed2) #(touch typed3) ~";
    keyboard.join_prompt(hostile);
    until(&server, &one, "@agent-group", Some(hostile), PATIENCE);
    keyboard.wait_screen("is ignored");
    keyboard.type_keys(b"\x03");
    let out = json(&agent_ok(&server, &["peers", "--json", "-t", &one]));
    assert_eq!(out["ignored_group"], hostile);
    assert_eq!(server.global_option("@agent-groups"), None);
    for file in ["typed", "typed2", "typed3"] {
        assert!(!server.home.path().join(file).exists() && !std::path::Path::new(file).exists());
    }
    keyboard.join_prompt("build");
    until(&server, &one, "@agent-role", Some("coordinator"), PATIENCE);
    keyboard.wait_screen("coordinator of build");
    keyboard.type_keys(b"\x03");

    // The example status line shows the shared value `task`. The positive
    // control, a #{E:...} (which does expand) appended after it, proves that
    // the line is drawn and its jobs run; a canary job would start first.
    let dir = server.home.path();
    let canary = dir.join("canary");
    let control = dir.join("control");
    let value = format!("#(touch {})", canary.display());
    agent_ok(&server, &["share", &format!("task={value}"), "-t", &one]);
    assert_eq!(
        server.option(&one, "@agent-ctx-task").as_deref(),
        Some(value.as_str())
    );
    server.tmux(&[
        "set-option",
        "-t",
        &one,
        "@probe",
        &format!("#(touch {})", control.display()),
    ]);
    server.tmux(&["set-option", "-ga", "status-right", "#{E:@probe}"]);
    let client = Keyboard::client(&server);
    for _ in 0..2 {
        let _ = std::fs::remove_file(&control);
        server.tmux(&["refresh-client", "-S", "-t", &client]);
        assert!(
            wait_for(PATIENCE, || control.exists().then_some(())).is_some(),
            "the status line was never drawn: the test proves nothing"
        );
    }
    assert!(
        !canary.exists(),
        "a shared value ran as a command in the status line"
    );

    // prefix L leaves (its message opens in view mode; q closes it).
    keyboard.type_keys(b"\x02L");
    until(&server, &one, "@agent-group", None, PATIENCE);
    until(&server, &one, "@agent-role", None, PATIENCE);
    keyboard.wait_screen("left build");
    keyboard.type_keys(b"q");

    // The session-created hook brings a stopped daemon back.
    agent_ok(&server, &["stop"]);
    assert!(running().is_none());
    new_session(&server, "two");
    let second = wait_for(PATIENCE, running).expect("the session-created hook started no daemon");
    assert_ne!(first, second);
}

#[test]
fn hostile_values_arrive_byte_for_byte_with_and_without_a_daemon() {
    let server = TmuxServer::start();
    let one = new_session(&server, "one");
    let two = new_session(&server, "two");
    agent_ok(&server, &["join", "g", "-t", &one]);
    agent_ok(&server, &["join", "g", "-t", &two]);
    let values = [
        "ends with a semicolon;",
        ";",
        "ends with an escaped one\\;",
        "#{session_name} #(touch x) ##",
        "'single' \"double\" `back`",
        "$HOME ~ \\ {brace} %percent -dash",
        "tab\tinside",
        "-starts-with-a-dash",
        "",
        "é ü 中文",
    ];
    let check = |daemon: bool| {
        for (i, value) in values.iter().enumerate() {
            let key = format!("k{i}");
            agent_ok(&server, &["share", &format!("{key}={value}"), "-t", &one]);
            let all = snapshot(&server);
            for id in [&one, &two] {
                assert_eq!(
                    all[id]
                        .get(&format!("@agent-ctx-{key}"))
                        .map(String::as_str),
                    Some(*value),
                    "value {value:?} on {id} (daemon: {daemon})"
                );
            }
            agent_ok(&server, &["share", "--unset", &key, "-t", &two]);
        }
    };
    check(false);
    let _daemon = Daemon::start(&server);
    check(true);
}

#[test]
fn bad_input_is_refused_clearly_and_corrupts_nothing() {
    let server = TmuxServer::start();
    let one = new_session(&server, "one");
    let loner = new_session(&server, "loner");
    let _daemon = Daemon::start(&server);
    agent_ok(&server, &["join", "g", "-t", &one]);
    agent_ok(&server, &["share", "task=keep", "-t", &one]);
    let before = snapshot(&server);

    for group in [
        "a b",
        "",
        "x;y",
        "#{session_name}",
        "a,b",
        "é",
        &"x".repeat(65),
    ] {
        let err = agent_err(&server, &["join", group, "-t", &one]);
        assert!(
            err.contains("invalid group name") && err.contains("A-Z a-z 0-9 _ . -"),
            "{group:?}: {err}"
        );
    }
    for (assignment, expect) in [
        ("a b=1", "invalid key"),
        ("=1", "invalid key"),
        ("noequals", "expected KEY=VALUE"),
        ("k=line\nbreak", "a newline"),
        ("k=carriage\rreturn", "a carriage return"),
        ("k=\u{1b}[31mred", "U+001B"),
    ] {
        let err = agent_err(&server, &["share", assignment, "-t", &one]);
        assert!(err.contains(expect), "{assignment:?}: {err}");
    }
    let huge = format!("k={}", "x".repeat(4097));
    assert!(agent_err(&server, &["share", &huge, "-t", &one]).contains("4096"));
    let err = agent_err(&server, &["share", "--unset", "a;b", "-t", &one]);
    assert!(err.contains("invalid key"), "{err}");

    for target in ["$99", "nosuchsession", "=on"] {
        let err = agent_err(&server, &["join", "g", "-t", target]);
        assert!(
            err.contains("no session") && err.contains(target),
            "{target}: {err}"
        );
        let err = agent_err(&server, &["peers", "-t", target]);
        assert!(err.contains("no session"), "{target}: {err}");
    }
    let err = agent_err(&server, &["join", "g", "-t", "tmux-agent"]);
    assert!(err.contains("tmux-agent's own session"), "{err}");
    let err = agent_err(&server, &["share", "k=v", "-t", &loner]);
    assert!(err.contains("is in no group"), "{err}");
    // No -t and no $TMUX_PANE.
    let err = agent_err(&server, &["peers"]);
    assert!(err.contains("-t SESSION"), "{err}");

    assert_eq!(
        snapshot(&server),
        before,
        "a refused command changed options"
    );

    // A value tmux cannot hold as a group name, set by hand, is ignored
    // (and said so), not spread into @agent-groups.
    server.tmux(&["set-option", "-t", &loner, "@agent-group", "bad name,x:1"]);
    let out = json(&agent_ok(&server, &["groups", "--json"]));
    assert_eq!(out["ignored"][0]["group"], "bad name,x:1");
    assert_eq!(
        server.global_option("@agent-groups").as_deref(),
        Some("g:1")
    );
    assert_eq!(server.option(&loner, "@agent-role"), None);
}

#[test]
fn the_default_target_is_the_session_of_tmux_pane() {
    let server = TmuxServer::start();
    let one = new_session(&server, "one");
    let pane = server
        .tmux(&["display-message", "-p", "-t", &one, "#{pane_id}"])
        .trim()
        .to_owned();
    let socket = server
        .tmux(&["display-message", "-p", "#{socket_path}"])
        .trim()
        .to_owned();
    // As inside a pane of `one`: $TMUX names the server, $TMUX_PANE the pane.
    let out = server
        .agent()
        .args(["join", "g", "--json"])
        .env("TMUX", format!("{socket},1,0"))
        .env("TMUX_PANE", &pane)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = json(&text(&out.stdout));
    assert_eq!(out["session"]["id"], one.as_str());
    assert_eq!(server.option(&one, "@agent-group").as_deref(), Some("g"));

    // In a job tmux starts (run-shell, display-popup) there is no
    // $TMUX_PANE; the session id at the end of $TMUX is used.
    let idx = one.trim_start_matches('$');
    let out = server
        .agent()
        .args(["peers", "--json"])
        .env("TMUX", format!("{socket},1,{idx}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json(&text(&out.stdout))["group"], "g");

    // $TMUX_PANE of another server is not used.
    let out = server
        .agent()
        .args(["peers"])
        .env("TMUX", "/tmp/some-other-server,1,0")
        .env("TMUX_PANE", &pane)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("-t SESSION"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn new_sets_agent_options_in_the_creating_invocation() {
    let server = TmuxServer::start();
    let _daemon = Daemon::start(&server);
    // A hook runs once the creating command list is done; it records what a
    // session-created reaction sees.
    server.tmux(&[
        "set-hook",
        "-g",
        "session-created",
        "set-option -gF @seen '#{session_name}|#{@agent-goal}|#{@agent-type}|#{@agent-group}'",
    ]);
    let out = json(&agent_ok(
        &server,
        &[
            "new",
            "-s",
            "my.work#{session_id}",
            "--goal",
            "fix #{x} #(touch y);",
            "--type",
            "coder",
            "--group",
            "g",
            "--json",
            "--",
            "sh",
            "-c",
            "echo hi; exec sleep 100;",
        ],
    ));
    let id = out["session_id"].as_str().unwrap().to_owned();
    // tmux before 3.7 turns `.` into `_`; 3.7 and later keep it. `#` is
    // kept by both, and `new` reports the name tmux stored.
    let stored = server.display(&id, "#{session_name}");
    assert!(
        ["my_work#{session_id}", "my.work#{session_id}"].contains(&stored.as_str()),
        "{stored}"
    );
    assert_eq!(out["session"], stored.as_str());
    assert_eq!(out["role"], "coordinator");
    assert_eq!(
        server.global_option("@seen").as_deref(),
        Some(format!("{stored}|fix #{{x}} #(touch y);|coder|g").as_str())
    );
    assert_eq!(
        server.option(&id, "@agent-goal").as_deref(),
        Some("fix #{x} #(touch y);")
    );
    assert_eq!(
        server.option(&id, "@agent-role").as_deref(),
        Some("coordinator")
    );
    let start = server.tmux(&["display-message", "-p", "-t", &id, "#{pane_start_command}"]);
    assert!(start.contains("exec sleep 100;"), "{start}");

    // Without -s the session gets its number, as tmux would name it.
    let out = json(&agent_ok(&server, &["new", "--json"]));
    let id = out["session_id"].as_str().unwrap();
    assert_eq!(out["session"], id.trim_start_matches('$'));
    assert!(
        out["attach"]
            .as_str()
            .unwrap()
            .contains(&format!("attach -t '{id}'"))
    );

    // The start directory is a path, not a format, and may end in `;`.
    let dir = server.home.path().join("w#{session_id};");
    std::fs::create_dir(&dir).unwrap();
    let out = json(&agent_ok(
        &server,
        &["new", "-s", "cwd", "-c", dir.to_str().unwrap(), "--json"],
    ));
    let id = out["session_id"].as_str().unwrap().to_owned();
    let cwd = wait_for(PATIENCE, || {
        let path = server.tmux(&["display-message", "-p", "-t", &id, "#{pane_current_path}"]);
        (path.trim() == dir.to_str().unwrap()).then_some(())
    });
    assert!(cwd.is_some(), "the pane did not start in {}", dir.display());

    // A duplicate name fails and leaves no half-made session behind.
    let sessions = server.tmux(&["list-sessions", "-F", "#{session_name}"]);
    let err = agent_err(&server, &["new", "-s", "base", "--goal", "x"]);
    assert!(err.contains("duplicate session: base"), "{err}");
    assert_eq!(
        server.tmux(&["list-sessions", "-F", "#{session_name}"]),
        sessions
    );
    let err = agent_err(&server, &["new", "--goal", "two\nlines"]);
    assert!(err.contains("a newline"), "{err}");
    let err = agent_err(&server, &["new", "--group", "no good"]);
    assert!(err.contains("invalid group name"), "{err}");
}

/// A group reconciler that panics (made to once, by the fault-injection
/// variable) is restarted, logged and counted in `status`, and groups work
/// after it: before supervision a panic left the daemon up with groups
/// silently dead.
#[test]
fn a_reconciler_that_panics_is_restarted_and_counted_in_status() {
    let server = TmuxServer::start();
    let one = new_session(&server, "one");
    let mut cmd = server.agent();
    cmd.arg("daemon")
        .env("TMUX_AGENT_FAULT_RECONCILER_PANIC_ONCE", "1");
    let mut daemon = Daemon::spawn(&server, cmd);
    assert!(
        daemon.wait_stderr("restarting it", PATIENCE),
        "no restart logged: {}",
        daemon.stderr()
    );
    assert!(
        daemon.stderr().contains("group reconciler"),
        "{}",
        daemon.stderr()
    );

    // The request waits for the restarted run (about a second's backoff).
    let out = agent_ok(&server, &["join", "g", "-t", &one]);
    assert!(out.contains("coordinator of g"), "{out}");
    assert_eq!(
        server.global_option("@agent-groups").as_deref(),
        Some("g:1")
    );
    let status = json(&agent_ok(&server, &["status", "--json"]));
    assert_eq!(status["tasks_restarted"], 1, "{status}");
    let text = agent_ok(&server, &["status"]);
    assert!(text.contains("tasks restarted: 1"), "{text}");
}
