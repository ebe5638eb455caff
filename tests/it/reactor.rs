//! The reactor end to end: a real tmux server, the real daemon, and the
//! recording test MCP server proving exactly which calls arrived.

use crate::support::PATIENCE;
use crate::support::rig::{LIFECYCLE, Rig, keys_by_step};
use crate::support::{TmuxServer, wait_for};
use serde_json::Value;
use std::time::Duration;

#[test]
fn create_detach_kill_call_register_save_complete() {
    let rig = Rig::new(LIFECYCLE);
    let _daemon = rig.start_daemon();
    // `base` existed before the daemon: it is registered as it starts, and
    // shown as detached (no client is on it).
    rig.wait_calls(1);
    let state = wait_for(PATIENCE, || {
        let v = rig.option("base", "@agent-state");
        (!v.is_empty()).then_some(v)
    });
    assert_eq!(state.as_deref(), Some("detached"));

    // Created with its goal and type set in the same tmux command, as
    // `tmux-agent new --goal --type` does.
    let id = rig
        .server
        .tmux(&[
            "new-session",
            "-d",
            "-P",
            "-F",
            "#{session_id}",
            "-s",
            "work",
            ";",
            "set-option",
            "-t",
            "work",
            "@agent-goal",
            "fix the \"parser\"",
            ";",
            "set-option",
            "-t",
            "work",
            "@agent-type",
            "claude",
        ])
        .trim()
        .to_owned();
    let calls = rig.wait_calls(2);
    let register = &calls[1]["arguments"];
    assert_eq!(register["step"], "register");
    assert_eq!(register["name"], "work");
    assert_eq!(register["goal"], "fix the \"parser\"");
    assert_eq!(register["type"], "claude");
    let kept = wait_for(PATIENCE, || {
        let v = rig.option(&id, "@agent-goal-id");
        (!v.is_empty()).then_some(v)
    });
    assert_eq!(kept.as_deref(), Some(format!("goal-{id}").as_str()));

    let terminal = rig.server.attach_terminal(&id);
    // The daemon has seen the attach once its call arrives.
    let calls = rig.wait_calls(3);
    assert_eq!(calls[2]["arguments"]["step"], "attached");
    assert_eq!(calls[2]["arguments"]["goal_id"], format!("goal-{id}"));
    rig.server.tmux(&["detach-client", "-s", &id]);
    let calls = rig.wait_calls(4);
    let save = &calls[3]["arguments"];
    assert_eq!(save["step"], "save");
    assert_eq!(save["context"]["session"], "work");
    assert_eq!(save["context"]["session_id"], id.as_str());
    assert_eq!(save["context"]["goal"], "fix the \"parser\"");
    let windows = save["context"]["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 1);
    assert!(!windows[0]["panes"].as_array().unwrap().is_empty());
    drop(terminal);
    let saved = wait_for(PATIENCE, || {
        let v = rig.option(&id, "@agent-saved");
        (!v.is_empty()).then_some(v)
    });
    assert!(saved.is_some(), "@agent-saved was never set");
    assert_eq!(rig.option(&id, "@agent-state"), "detached");

    rig.server.tmux(&["kill-session", "-t", &id]);
    let calls = rig.wait_calls(5);
    let complete = &calls[4]["arguments"];
    assert_eq!(complete["step"], "complete");
    assert_eq!(
        complete["goal_id"],
        format!("goal-{id}"),
        "the goal id kept at registration"
    );
    assert_eq!(complete["name"], "work");
    wait_for(PATIENCE, || {
        (rig.global("@agent-pending") == "0").then_some(())
    })
    .expect("@agent-pending never went back to 0");

    // `mcp stats` shows the daemon's live figures for the calls it made.
    let out = rig
        .server
        .agent()
        .args(["mcp", "stats", "rec", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rec = &stats[0];
    assert_eq!(rec["server"], "rec");
    assert_eq!(rec["calls"], 5, "{stats:#}");
    assert_eq!(rec["successes"], 5, "{stats:#}");
    assert_eq!(rec["tools"]["echo"]["calls"], 5, "{stats:#}");
}

#[test]
fn hostile_names_and_goals_arrive_intact_as_json_strings() {
    let rig = Rig::new(LIFECYCLE);
    let canary = rig.server.home.path().join("pwned");
    let _daemon = rig.start_daemon();
    rig.wait_calls(1);

    let hostile = format!("a b'c\"d;e#{{x}}#(touch {})", canary.display());
    let goal = format!(
        "line1\nline2 $HOME `id` #(touch {}) {{goal_id}}",
        canary.display()
    );
    let id = rig
        .server
        .tmux(&[
            "new-session",
            "-d",
            "-P",
            "-F",
            "#{session_id}",
            "-s",
            &hostile.replace('#', "##"),
            ";",
            // No -t: a command after new-session acts on the new session.
            "set-option",
            "@agent-goal",
            &goal,
        ])
        .trim()
        .to_owned();
    let calls = rig.wait_calls(2);
    let register = &calls[1]["arguments"];
    assert_eq!(register["name"], hostile.as_str());
    assert_eq!(
        register["goal"],
        goal.as_str(),
        "a placeholder inside a value is never rendered"
    );
    rig.server.tmux(&["kill-session", "-t", &id]);
    let calls = rig.wait_calls(3);
    assert_eq!(calls[2]["arguments"]["name"], hostile.as_str());
    assert!(!canary.exists(), "something ran a #() from a name or goal");
}

/// A series of sessions, each created, attached, detached and killed,
/// driven through one terminal client that switches from one to the next.
fn churn(server: &TmuxServer, count: usize) -> Vec<String> {
    let first = server
        .tmux(&[
            "new-session",
            "-d",
            "-P",
            "-F",
            "#{session_id}",
            "-s",
            "churn-0",
        ])
        .trim()
        .to_owned();
    let terminal = server.attach_terminal(&first);
    let client = wait_for(PATIENCE, || {
        let out = server.tmux(&["list-clients", "-F", "#{client_name}"]);
        out.lines()
            .find(|c| c.starts_with("/dev/"))
            .map(str::to_owned)
    })
    .expect("the terminal client never attached");
    let mut ids = vec![first];
    for i in 1..count {
        let id = server
            .tmux(&[
                "new-session",
                "-d",
                "-P",
                "-F",
                "#{session_id}",
                "-s",
                &format!("churn-{i}"),
            ])
            .trim()
            .to_owned();
        let previous = ids.last().unwrap().clone();
        // Switching detaches the previous session and attaches the new one;
        // waiting for the client to get there keeps every step visible.
        server.tmux(&["switch-client", "-c", &client, "-t", &id]);
        // Kill the previous session only once the daemon has seen it
        // detached: a detach and a kill inside one listing are one close.
        wait_for(PATIENCE, || {
            (server.option(&previous, "@agent-state").as_deref() == Some("detached")).then_some(())
        })
        .expect("the daemon never saw the previous session detached");
        server.tmux(&["kill-session", "-t", &previous]);
        ids.push(id);
    }
    // The last one: detach it, then kill it.
    let last = ids.last().unwrap().clone();
    server.tmux(&["detach-client", "-s", &last]);
    wait_for(PATIENCE, || {
        (server.option(&last, "@agent-state").as_deref() == Some("detached")).then_some(())
    })
    .expect("the daemon never saw the last session detached");
    drop(terminal);
    server.tmux(&["kill-session", "-t", &last]);
    ids
}

#[test]
fn nothing_is_lost_when_the_server_is_down_and_the_daemon_is_killed() {
    const SESSIONS: usize = 200;
    let rig = Rig::new(LIFECYCLE);
    std::fs::write(&rig.down, "").unwrap();
    let mut daemon = rig.start_daemon();
    let ids = churn(&rig.server, SESSIONS);
    // Every event is committed once the daemon has seen the last close:
    // 1 (base) + 4 per session (created, attached, detached, closed), all
    // pending. 200 sessions' churn takes most of PATIENCE on a loaded
    // 2-core machine (18 s seen), so the two long waits get three times it.
    let committed = wait_for(PATIENCE * 3, || {
        let pending: usize = rig.global("@agent-pending").parse().unwrap_or(0);
        (pending == 1 + 4 * SESSIONS).then_some(pending)
    });
    assert!(
        committed.is_some(),
        "pending = {}",
        rig.global("@agent-pending")
    );
    assert!(
        rig.calls().is_empty(),
        "calls arrived while the server was down"
    );

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGKILL) };
    daemon.wait(PATIENCE).expect("the daemon survived SIGKILL");
    std::fs::remove_file(&rig.down).unwrap();
    let _daemon = rig.start_daemon();

    let calls = wait_for(PATIENCE * 3, || {
        let calls = rig.calls();
        (calls.len() > 4 * SESSIONS).then_some(calls)
    })
    .unwrap_or_else(|| {
        panic!(
            "expected {} calls, got {}",
            1 + 4 * SESSIONS,
            rig.calls().len()
        )
    });
    wait_for(PATIENCE, || {
        (rig.global("@agent-pending") == "0").then_some(())
    })
    .expect("@agent-pending never went back to 0");
    let calls_now = rig.calls();
    assert_eq!(
        calls_now.len(),
        calls.len(),
        "calls kept arriving after pending reached 0"
    );
    let keys = keys_by_step(&calls_now);
    assert_eq!(keys.len(), 1 + 4 * SESSIONS, "every action arrived");
    let repeated: Vec<_> = keys.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "repeated calls: {repeated:?}");
    // Per session the order held, and the goal id kept from the register
    // reached the later calls.
    for id in &ids {
        let goal = format!("goal-{id}");
        let steps: Vec<&str> = calls_now
            .iter()
            .map(|c| &c["arguments"])
            .filter(|a| {
                a["goal_id"] == goal.as_str()
                    || a["id"] == goal.as_str()
                    || a["context"]["session_id"] == id.as_str()
            })
            .map(|a| a["step"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            ["register", "attached", "save", "complete"],
            "session {id}"
        );
    }
}

#[test]
fn a_call_in_flight_when_the_daemon_dies_is_sent_again_and_nothing_is_lost() {
    // A slow register: the daemon is killed while it waits for the answer.
    let slow = r#"
[[on.session-created]]
server = "rec"
tool = "sleep"
args = { ms = 800, key = "{idempotency_key}" }
"#;
    let rig = Rig::new(slow);
    let mut daemon = rig.start_daemon();
    rig.wait_calls(1); // base, in flight for 800 ms
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGKILL) };
    daemon.wait(PATIENCE).expect("the daemon survived SIGKILL");
    rig.server.tmux(&["new-session", "-d", "-s", "later"]);

    let _daemon = rig.start_daemon();
    wait_for(PATIENCE, || {
        (rig.global("@agent-pending") == "0").then_some(())
    })
    .expect("@agent-pending never went back to 0");
    let keys = keys_by_step(&rig.calls());
    // base's register went out twice (its answer never reached the first
    // daemon); `later`, created while no daemon ran, is registered once.
    assert_eq!(keys.len(), 2, "{keys:?}");
    let mut counts: Vec<usize> = keys.values().copied().collect();
    counts.sort();
    assert_eq!(counts, [1, 2], "{keys:?}");
}

#[test]
fn a_permanent_failure_is_recorded_not_retried() {
    let failing = r#"
[[on.session-created]]
server = "rec"
tool = "fail"
args = { message = "no such goal store" }
"#;
    let rig = Rig::new(failing);
    let _daemon = rig.start_daemon();
    rig.wait_calls(1);
    let state = wait_for(PATIENCE, || {
        let v = rig.option("base", "@agent-state");
        v.starts_with("error:").then_some(v)
    })
    .expect("@agent-state never showed the error");
    assert!(state.contains("no such goal store"), "{state}");
    wait_for(PATIENCE, || {
        (rig.global("@agent-pending") == "0").then_some(())
    })
    .expect("the failed call stayed pending");
    // Nothing is sent again: a new event is the next call.
    rig.server.tmux(&["new-session", "-d", "-s", "next"]);
    let calls = rig.wait_calls(2);
    assert_eq!(calls.len(), 2);
}

#[test]
fn status_answers_at_once_while_an_mcp_server_hangs() {
    // The register call of `base` hangs in the MCP server for a minute.
    let hung = r#"
[[on.session-created]]
server = "rec"
tool = "sleep"
args = { ms = 60000 }
"#;
    let rig = Rig::new(hung);
    let _daemon = rig.start_daemon();
    rig.wait_calls(1);
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let status = rig.status();
        times.push(started.elapsed());
        assert_eq!(status["running"], true, "{status}");
    }
    times.sort();
    eprintln!(
        "status while an MCP call hangs: min {:?}, median {:?}, max {:?}",
        times[0], times[2], times[4]
    );
    // A generous bound: the point is that status does not wait for the call.
    assert!(times[2] < Duration::from_secs(2), "{times:?}");
}

#[test]
fn calls_for_a_server_no_config_names_wait_and_status_says_so() {
    let rig = Rig::new(LIFECYCLE);
    std::fs::write(&rig.down, "").unwrap();
    let _daemon = rig.start_daemon();
    wait_for(PATIENCE, || {
        (rig.global("@agent-pending") == "1").then_some(())
    })
    .expect("base's register never waited");
    // The server is taken out of the config while its call waits.
    let home = rig.server.home.path();
    let full = std::fs::read_to_string(crate::support::config_path(home)).unwrap();
    crate::support::write_config(
        home,
        "[mcp]\nimport_claude = false\n\n[reactor]\npreset = \"none\"\n",
    );
    let out = rig.server.agent().arg("reload").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = rig.status();
    assert_eq!(status["actions"]["unconfigured"]["rec"], 1, "{status}");
    let text = rig.server.agent().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("1 call(s) wait for `rec`, which no config names any more"),
        "{text}"
    );
    // Put it back: the call goes out.
    crate::support::write_config(home, &full);
    std::fs::remove_file(&rig.down).unwrap();
    let out = rig.server.agent().arg("reload").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rig.wait_calls(1);
}

/// The `register` calls received so far, by session name.
fn registers_by_name(rig: &Rig) -> std::collections::BTreeMap<String, usize> {
    let mut by_name = std::collections::BTreeMap::new();
    for call in rig.calls() {
        let args = &call["arguments"];
        if args["step"] == "register" {
            *by_name
                .entry(args["name"].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
    }
    by_name
}

/// A reactor that panics (made to once, on the first event it handles, by
/// the fault-injection variable) is restarted, logged and counted in
/// `status`, and acts on the events after it, each once: before
/// supervision a panic left the daemon up with events silently no longer
/// acted on.
///
/// `one` and `two` are created in one tmux command, so their two events
/// are queued together: the run panics on `one`'s, and `two`'s waits in
/// the queue for the next run. A restarted run that adopted a fresh
/// listing (which shows `two`) would register `two` twice. The session
/// adopted before the panic keeps its goal id (its `complete` carries it),
/// and `one`, whose event the panic took, is registered by the next
/// daemon, from its diff.
#[test]
fn a_reactor_that_panics_is_restarted_counted_and_acts_on_each_event_once() {
    let rig = Rig::new(LIFECYCLE);
    let mut cmd = rig.server.agent();
    cmd.arg("daemon")
        .env("TMUX_AGENT_FAULT_REACTOR_PANIC_ONCE", "1");
    let mut daemon = rig.start_daemon_with(cmd);
    // `base` is adopted at start, with no event: no panic yet.
    rig.wait_calls(1);
    rig.wait_settled();
    let base = rig.server.session_id("base");

    rig.server.tmux(&[
        "new-session",
        "-d",
        "-s",
        "one",
        ";",
        "new-session",
        "-d",
        "-s",
        "two",
    ]);
    assert!(
        daemon.wait_stderr("restarting it", PATIENCE),
        "no restart logged: {}",
        daemon.stderr()
    );
    assert!(
        daemon.stderr().contains("task=reactor"),
        "{}",
        daemon.stderr()
    );
    let two = wait_for(PATIENCE, || registers_by_name(&rig).get("two").copied());
    assert_eq!(two, Some(1), "{:#?}", rig.calls());
    rig.wait_settled();
    let status = rig.status();
    assert_eq!(status["tasks_restarted"], 1, "{status}");
    let text = crate::support::daemon::agent_ok(&rig.server, &["status"]);
    assert!(text.contains("tasks restarted: 1"), "{text}");

    // The restarted run knows `base` as the first run left it.
    rig.server.tmux(&["kill-session", "-t", "base"]);
    let complete = wait_for(PATIENCE, || {
        rig.calls()
            .into_iter()
            .map(|c| c["arguments"].clone())
            .find(|a| a["step"] == "complete")
    })
    .expect("no complete call for base");
    assert_eq!(complete["goal_id"], format!("goal-{base}"), "{complete}");
    rig.wait_settled();

    // The event the panic took is found by the next daemon's diff.
    daemon.stop(&rig.server);
    let _daemon = rig.start_daemon();
    let one = wait_for(PATIENCE, || registers_by_name(&rig).get("one").copied());
    assert_eq!(one, Some(1), "{:#?}", rig.calls());
    rig.wait_settled();
    let registers = registers_by_name(&rig);
    assert_eq!(
        registers.into_iter().collect::<Vec<_>>(),
        vec![("base".into(), 1), ("one".into(), 1), ("two".into(), 1)],
        "{:#?}",
        rig.calls()
    );
}
