//! Lifecycle events against a real tmux server: what `tmux-agent watch`
//! prints and what `tmux-agent daemon` does when sessions come and go.

use std::time::{Duration, SystemTime};

use crate::support::PATIENCE;
use crate::support::{Daemon, LineReader, TmuxServer, wait_for};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The latency the sidecar promises for an event, measured from the action
/// to the time stamp the sidecar put on the event (not to when the test read it).
const EVENT_LATENCY: Duration = Duration::from_secs(1);

fn watch(server: &TmuxServer) -> LineReader {
    let mut cmd = server.agent();
    cmd.args(["watch", "--json"]);
    let mut watcher = LineReader::spawn(cmd);
    assert!(
        watcher.wait_stderr("following", PATIENCE),
        "watch did not start: {}",
        watcher.stderr()
    );
    watcher
}

/// Reads events until one matches `kind` (and the session id, if given);
/// returns every event read, the match last.
fn events_until(watcher: &LineReader, kind: &str, session_id: Option<&str>) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let line = watcher
            .next_line(PATIENCE)
            .unwrap_or_else(|| panic!("no {kind} event; saw {seen:#?}"));
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
        let matched =
            event["event"] == kind && session_id.is_none_or(|id| event["session_id"] == id);
        seen.push(event);
        if matched {
            return seen;
        }
    }
}

fn summary(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["session_id"].as_str().unwrap().to_owned(),
                e["session"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn assert_prompt(events: &[Value], since: SystemTime) {
    let since: DateTime<Utc> = since.into();
    for event in events {
        let time: DateTime<Utc> = event["time"].as_str().unwrap().parse().unwrap();
        let latency = (time - since).to_std().unwrap_or_default();
        assert!(
            latency < EVENT_LATENCY,
            "{} came {latency:?} after the action",
            event["event"]
        );
    }
}

fn owned(triples: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    triples
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[test]
fn create_rename_attach_detach_kill_are_each_seen_once() {
    let server = TmuxServer::start();
    let watcher = watch(&server);

    let t = SystemTime::now();
    server.tmux(&["new-session", "-d", "-s", "work"]);
    let id = server.session_id("work");
    let created = events_until(&watcher, "session-created", Some(&id));
    assert_eq!(
        summary(&created),
        owned(&[("session-created", &id, "work")])
    );
    assert_prompt(&created, t);

    let t = SystemTime::now();
    server.tmux(&["rename-session", "-t", &id, "play"]);
    let renamed = events_until(&watcher, "session-renamed", Some(&id));
    assert_eq!(
        summary(&renamed),
        owned(&[("session-renamed", &id, "play")])
    );
    assert_eq!(renamed[0]["old_name"], "work");
    assert_prompt(&renamed, t);

    let t = SystemTime::now();
    let terminal = server.attach_terminal(&id);
    let attached = events_until(&watcher, "session-attached", Some(&id));
    assert_eq!(
        summary(&attached),
        owned(&[
            ("client-attached", &id, "play"),
            ("session-attached", &id, "play")
        ])
    );
    assert!(
        attached[0]["client"]
            .as_str()
            .unwrap()
            .starts_with("/dev/pts/")
    );
    assert_prompt(&attached, t);

    let t = SystemTime::now();
    server.tmux(&["detach-client", "-s", &id]);
    let detached = events_until(&watcher, "session-detached", Some(&id));
    assert_eq!(
        summary(&detached),
        owned(&[
            ("client-detached", &id, "play"),
            ("session-detached", &id, "play")
        ])
    );
    assert_prompt(&detached, t);
    drop(terminal);

    let t = SystemTime::now();
    server.tmux(&["kill-session", "-t", &id]);
    let closed = events_until(&watcher, "session-closed", Some(&id));
    assert_eq!(summary(&closed), owned(&[("session-closed", &id, "play")]));
    assert_prompt(&closed, t);

    // Nothing more: each event was seen exactly once.
    let extra = watcher.drain(Duration::from_millis(1500));
    assert!(extra.is_empty(), "unexpected events: {extra:#?}");
}

#[test]
fn hostile_session_names_arrive_intact_and_nothing_runs() {
    let server = TmuxServer::start();
    let canary = server.home.path().join("pwned");
    let watcher = watch(&server);

    // tmux expands formats in `new-session -s`, so a literal `#` is written
    // `##` on its command line; the stored name then holds `#{x}#(touch ...)`.
    let hostile = format!("a b'c\"d;e#{{x}}#(touch {})", canary.display());
    let typed = hostile.replace('#', "##");
    let long = "x".repeat(1000);
    let mut made = 0;
    for typed in [typed.as_str(), "line1\nline2", "tab\there", long.as_str()] {
        let out = server.try_tmux(&["new-session", "-d", "-s", typed]);
        if out.status.success() {
            made += 1;
            continue;
        }
        // tmux 3.7 and later refuse names with control characters
        // themselves; earlier versions store them.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            typed.chars().any(char::is_control) && err.contains("invalid session name"),
            "tmux refused {typed:?}: {err}"
        );
    }
    let names = server.tmux(&["list-sessions", "-F", "#{session_id}\t#{session_name}"]);
    let stored: Vec<(String, String)> = names
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, name)| *name != "base" && *name != "tmux-agent")
        .map(|(id, name)| (id.to_owned(), name.to_owned()))
        .collect();
    assert_eq!(stored.len(), made, "{names}");
    assert!(stored.iter().any(|(_, n)| *n == hostile), "{names}");

    let mut created = Vec::new();
    while created.len() < made {
        let events = events_until(&watcher, "session-created", None);
        created.push(events.last().unwrap().clone());
    }
    for (id, name) in &stored {
        let event = created
            .iter()
            .find(|e| e["session_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no event for {id}"));
        assert_eq!(
            event["session"],
            name.as_str(),
            "the event names the session as tmux stores it"
        );
    }

    // Renaming to a hostile name, and killing by id, behave the same.
    let (id, _) = stored
        .iter()
        .find(|(_, n)| n.starts_with("tab"))
        .or_else(|| stored.iter().find(|(_, n)| n.starts_with('x')))
        .unwrap();
    server.tmux(&["rename-session", "-t", id, &format!("{typed} 2")]);
    let renamed = events_until(&watcher, "session-renamed", Some(id));
    assert_eq!(renamed.last().unwrap()["session"], format!("{hostile} 2"));
    for (id, _) in &stored {
        server.tmux(&["kill-session", "-t", id]);
        events_until(&watcher, "session-closed", Some(id));
    }
    assert!(!canary.exists(), "a #() in a session name ran");
}

#[test]
fn the_daemon_is_not_a_client_of_user_sessions() {
    let server = TmuxServer::start();
    let _daemon = Daemon::attach(&server);
    assert_eq!(
        server
            .tmux(&["display-message", "-p", "-t", "base", "#{session_attached}"])
            .trim(),
        "0"
    );
    assert_eq!(server.tmux(&["list-clients", "-t", "base"]).trim(), "");
    // The daemon's own client sits in the daemon's own session.
    let clients = server.tmux(&[
        "list-clients",
        "-F",
        "#{client_control_mode} #{session_name}",
    ]);
    assert_eq!(clients.trim(), "1 tmux-agent");
}

#[test]
fn killing_the_last_session_ends_the_daemon_and_the_server() {
    let server = TmuxServer::start();
    let mut daemon = Daemon::attach(&server);
    server.tmux(&["kill-session", "-t", "base"]);
    let (status, stderr) = daemon.wait(PATIENCE).expect("the daemon did not exit");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("last session"), "{stderr}");
    assert!(
        wait_for(PATIENCE, || (!server.is_running()).then_some(())).is_some(),
        "the server outlived its last session"
    );
}

#[test]
fn killing_the_server_ends_the_daemon_with_a_clear_message() {
    let server = TmuxServer::start();
    let mut daemon = Daemon::attach(&server);
    server.tmux(&["kill-server"]);
    let (status, stderr) = daemon.wait(PATIENCE).expect("the daemon did not exit");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("exited"), "{stderr}");
}

#[test]
fn sessions_that_go_down_with_the_server_are_closed_in_watch() {
    let server = TmuxServer::start();
    let mut watcher = watch(&server);
    server.tmux(&["new-session", "-d", "-s", "work"]);
    let work = server.session_id("work");
    events_until(&watcher, "session-created", Some(&work));
    server.tmux(&["kill-server"]);
    let mut closed: Vec<String> = Vec::new();
    while closed.len() < 2 {
        let events = events_until(&watcher, "session-closed", None);
        closed.push(
            events.last().unwrap()["session"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    closed.sort();
    assert_eq!(closed, ["base", "work"]);
    let (status, stderr) = watcher.wait(PATIENCE).expect("watch did not exit");
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("2 session(s) were closed with it"),
        "{stderr}"
    );
}

#[test]
fn stopping_the_daemon_clears_its_option_and_leaves_the_server() {
    let server = TmuxServer::start();
    let mut daemon = Daemon::attach(&server);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) };
    let (status, stderr) = daemon.wait(PATIENCE).expect("the daemon did not exit");
    assert!(status.success(), "{status}: {stderr}");
    assert!(server.is_running());
    assert_eq!(
        server
            .global_option("@agent-daemon")
            .unwrap_or_default()
            .trim(),
        ""
    );
    // Its session ends after its client (the pane's loop): nothing of
    // the daemon is left to keep the server alive.
    let sessions = wait_for(PATIENCE, || {
        let list = server.tmux(&["list-sessions", "-F", "#{session_name}"]);
        (list.trim() == "base").then_some(())
    });
    assert!(sessions.is_some(), "{}", server.tmux(&["list-sessions"]));
}

#[test]
fn no_server_is_one_clear_line_and_a_failure() {
    let server = TmuxServer::start();
    server.tmux(&["kill-server"]);
    for command in ["watch", "daemon"] {
        let out = server.agent().arg(command).output().unwrap();
        assert!(
            !out.status.success(),
            "{command} succeeded without a server"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("no tmux server is running"), "{stderr}");
        assert!(!server.is_running(), "{command} started a server");
    }
}

#[test]
fn sessions_created_by_hooks_are_seen() {
    // tmux sends no notification for a session a session-created hook
    // creates; it is seen in the listing that the first session's
    // notification causes (or, failing that, by the 1 Hz subscription).
    let server = TmuxServer::start();
    let watcher = watch(&server);
    server.tmux(&[
        "set-hook",
        "-g",
        "session-created",
        "new-session -d -s hooked",
    ]);
    server.tmux(&["new-session", "-d", "-s", "trigger"]);
    let hooked = server.session_id("hooked");
    let events = events_until(&watcher, "session-created", Some(&hooked));
    assert_eq!(events.last().unwrap()["session"], "hooked");
}

#[test]
fn daemon_detach_returns_once_attached_and_logs_to_a_file() {
    let server = TmuxServer::start();
    let out = server
        .agent()
        .args(["daemon", "--detach"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("running"), "{stdout}");
    // It is already attached when --detach returns.
    assert_eq!(
        server.global_option("@agent-daemon").as_deref(),
        Some("running")
    );

    server.tmux(&["kill-session", "-t", "base"]);
    assert!(
        wait_for(PATIENCE, || (!server.is_running()).then_some(())).is_some(),
        "the detached daemon kept the server alive"
    );
    // The log is named by the server's full key (paths::server_key), as
    // --detach says.
    let log = std::path::PathBuf::from(
        stdout
            .trim()
            .rsplit_once("log: ")
            .unwrap_or_else(|| panic!("no log path in {stdout:?}"))
            .1,
    );
    assert!(
        log.starts_with(server.home.path().join(".local/state/tmux-agent")),
        "{}",
        log.display()
    );
    let log = wait_for(PATIENCE, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("stopped"))
    })
    .expect("the log never said the daemon stopped");
    assert!(log.contains("session-closed"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "the log file has terminal colour codes"
    );
}

#[test]
fn daemon_detach_without_a_server_fails_with_the_reason() {
    let server = TmuxServer::start();
    server.tmux(&["kill-server"]);
    let out = server
        .agent()
        .args(["daemon", "--detach"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no tmux server is running"), "{stderr}");
}
