//! The fault suite: the real daemon on a real tmux server, with the
//! recording MCP server, while things go wrong on purpose. Each test states
//! what the user sees and proves that no call was lost (every action's
//! idempotency key arrives) and none was repeated beyond the one case the
//! design allows (a call in flight when its answer was lost is sent again,
//! under the same key).
//!
//! `cargo test --test faults` runs the quick variants (part of the normal
//! test run). `TMUX_AGENT_LONG_FAULTS=1` scales the bursts up tenfold.

use std::collections::HashMap;
use std::os::unix::process::CommandExt as _;
use std::time::{Duration, Instant};

use crate::support::PATIENCE;
use crate::support::rig::{LIFECYCLE, Rig, keys_by_step};
use crate::support::wait_for;
use serde_json::Value;

/// One register call per session, carrying the session id and the key.
const REGISTER: &str = r#"
[[on.session-created]]
server = "rec"
tool = "echo"
args = { step = "register", id = "goal-{session_id}", key = "{idempotency_key}" }
"#;

/// `normal`, or ten times it under `TMUX_AGENT_LONG_FAULTS=1`.
fn scale(normal: usize) -> usize {
    if std::env::var_os("TMUX_AGENT_LONG_FAULTS").is_some() {
        normal * 10
    } else {
        normal
    }
}

fn kill(pid: i64, signal: i32) {
    // SAFETY: kill(2) on a process this test started (directly or through
    // the daemon); a pid that already exited gives ESRCH, which is fine.
    unsafe { libc::kill(pid as i32, signal) };
}

/// The pid of the recording server process that started last.
fn latest_server_pid(rig: &Rig) -> i64 {
    wait_for(PATIENCE, || {
        rig.events("start").last().and_then(|e| e["pid"].as_i64())
    })
    .expect("the recording server never started")
}

/// Creates `n` detached sessions `prefix-0..n` as fast as tmux takes them.
fn burst(rig: &Rig, prefix: &str, n: usize) {
    for i in 0..n {
        rig.server
            .tmux(&["new-session", "-d", "-s", &format!("{prefix}-{i}")]);
    }
}

/// Register calls by session (`goal-$N`) → how many times each key came.
fn registers(calls: &[Value]) -> HashMap<String, HashMap<String, usize>> {
    let mut by_session: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for call in calls {
        let args = &call["arguments"];
        if args["step"] != "register" {
            continue;
        }
        let session = args["id"].as_str().unwrap_or_default().to_owned();
        let key = args["key"].as_str().unwrap_or_default().to_owned();
        *by_session
            .entry(session)
            .or_default()
            .entry(key)
            .or_default() += 1;
    }
    by_session
}

/// Waits until `sessions` sessions have a register call and nothing is
/// pending (pending alone can read 0 before the daemon has seen the newest
/// sessions), then returns every call.
fn settle(rig: &Rig, sessions: usize) -> Vec<Value> {
    wait_for(PATIENCE, || {
        (registers(&rig.calls()).len() >= sessions).then_some(())
    })
    .unwrap_or_else(|| panic!("only {} sessions registered", registers(&rig.calls()).len()));
    rig.wait_settled();
    rig.calls()
}

/// Every session in `sessions` was registered under exactly one key; at
/// most `repeats_allowed` keys arrived more than once.
fn assert_each_registered_once(calls: &[Value], sessions: usize, repeats_allowed: usize) {
    let by_session = registers(calls);
    assert_eq!(by_session.len(), sessions, "sessions registered");
    for (session, keys) in &by_session {
        assert_eq!(
            keys.len(),
            1,
            "{session} was registered by two actions: {keys:?}"
        );
    }
    let repeated: Vec<_> = by_session
        .values()
        .flatten()
        .filter(|(_, n)| **n > 1)
        .collect();
    assert!(
        repeated.len() <= repeats_allowed,
        "calls repeated: {repeated:?}"
    );
    assert!(
        repeated.iter().all(|(_, n)| **n == 2),
        "a call came more than twice: {repeated:?}"
    );
}

/// An MCP server SIGKILLed in the middle of a burst: the daemon reconnects
/// (a new server process) and every session is still registered. The one
/// call in flight at the kill may arrive twice, under one key.
#[test]
fn an_mcp_server_killed_mid_burst_loses_nothing() {
    let sessions = scale(30);
    // 20 ms per call, so the kill lands with calls queued and one in flight.
    let slow = REGISTER
        .replace("tool = \"echo\"", "tool = \"sleep\"")
        .replace("args = {", "args = { ms = 20,");
    let rig = Rig::new(&slow);
    let _daemon = rig.start_daemon();
    let first = latest_server_pid(&rig);
    burst(&rig, "s", sessions);
    wait_for(PATIENCE, || (rig.calls().len() >= 5).then_some(()))
        .expect("the burst's calls never started");
    kill(first, libc::SIGKILL);

    let calls = settle(&rig, 1 + sessions);
    assert_each_registered_once(&calls, 1 + sessions, 1);
    let starts = rig.events("start");
    assert!(starts.len() >= 2, "no new server process after the kill");
    let status = rig.status();
    assert_eq!(status["actions"]["failed"], 0, "{status}");
}

/// A server SIGSTOPped (alive but silent): calls time out and wait, status
/// still answers and shows them pending; once it runs again, or is replaced,
/// every call arrives.
#[test]
fn a_hung_mcp_server_delays_calls_and_loses_none() {
    let rig = Rig::with_server_args(
        &[],
        "connect_timeout = \"2s\"\ncall_timeout = \"1s\"",
        REGISTER,
    );
    let _daemon = rig.start_daemon();
    rig.wait_settled();
    let pid = latest_server_pid(&rig);
    kill(pid, libc::SIGSTOP);
    burst(&rig, "hung", 3);
    // The user sees the calls waiting, and status is not held up.
    let pending = wait_for(PATIENCE, || {
        let status = rig.status();
        let pending = status["actions"]["pending"].as_u64().unwrap_or(0);
        (pending >= 3).then_some(pending)
    });
    assert!(pending.is_some(), "status never showed the calls pending");
    wait_for(PATIENCE, || {
        (rig.global("@agent-pending") == "3").then_some(())
    })
    .expect("@agent-pending never showed the 3 waiting calls");
    kill(pid, libc::SIGCONT);

    // A timed-out call is sent again (the server may or may not have seen
    // it), under the same key: one per session, nothing lost.
    let by_session = registers(&settle(&rig, 4));
    assert_eq!(by_session.len(), 4, "{by_session:?}");
    for keys in by_session.values() {
        assert_eq!(keys.len(), 1, "{keys:?}");
    }
    assert_eq!(rig.status()["actions"]["failed"], 0);
}

/// A server that writes non-JSON to stdout but answers: the garbage is
/// logged and named, the calls are delivered.
#[test]
fn garbage_on_a_servers_stdout_is_tolerated() {
    let garbage = r#"
[[on.session-created]]
server = "rec"
tool = "garbage"
args = { lines = 3, key = "{idempotency_key}" }
"#;
    let rig = Rig::with_server_args(&["--garbage-stdout"], "", garbage);
    let mut daemon = rig.start_daemon();
    burst(&rig, "g", 2);
    wait_for(PATIENCE, || {
        (keys_by_step(&rig.calls()).len() >= 3).then_some(())
    })
    .expect("not every call arrived");
    rig.wait_settled();
    assert_eq!(keys_by_step(&rig.calls()).len(), 3);
    assert_eq!(rig.status()["actions"]["failed"], 0);
    assert!(
        daemon.wait_stderr("non-JSON", PATIENCE),
        "the garbage was never named in the log: {}",
        daemon.stderr()
    );
}

/// A 50 MB answer is over the default 16 MiB message cap: the call fails
/// for good (the same call would bring the same answer) with a message
/// naming `max_message_bytes`, the server is restarted, and the session's
/// next call goes through. The daemon's memory is not at a server's mercy.
#[test]
fn a_50_mb_answer_is_refused_and_the_next_call_works() {
    let actions = r#"
[[on.session-created]]
server = "rec"
tool = "big"
args = { bytes = 50000000, key = "{idempotency_key}" }

[[on.session-detached]]
server = "rec"
tool = "echo"
args = { step = "save", key = "{idempotency_key}" }
"#;
    // A call timeout far above the time a loaded machine takes to produce
    // and refuse 50 MB: with the usual 5 s, a timed-out first attempt was
    // retried and the test saw two `big` calls for a reason it is not about.
    let rig = Rig::with_server_args(
        &[],
        "connect_timeout = \"5s\"\ncall_timeout = \"60s\"",
        actions,
    );
    let _daemon = rig.start_daemon();
    // The session shows the failure (shortened for a status line); status
    // says what to change. Waiting as long as the call may take (its 60 s
    // timeout): under load, making and refusing 50 MB took over PATIENCE.
    let state = wait_for(PATIENCE * 3, || {
        let state = rig.option("base", "@agent-state");
        state.starts_with("error").then_some(state)
    })
    .expect("@agent-state never showed the failure");
    assert!(state.contains("longer than 16777216 bytes"), "{state}");
    let status = rig.status();
    assert_eq!(status["actions"]["failed"], 1, "{status}");
    assert!(
        status["actions"]["recent_failures"][0]
            .as_str()
            .unwrap()
            .contains("max_message_bytes"),
        "{status}"
    );
    // It is not sent again, and the session's next call goes through.
    let terminal = rig.server.attach_terminal("base");
    wait_for(PATIENCE, || {
        (rig.option("base", "@agent-state") == "active").then_some(())
    })
    .expect("never attached");
    drop(terminal);
    wait_for(PATIENCE, || {
        rig.calls()
            .iter()
            .any(|c| c["arguments"]["step"] == "save")
            .then_some(())
    })
    .expect("the call after the oversized answer never arrived");
    rig.wait_settled();
    let bigs = rig.calls().iter().filter(|c| c["tool"] == "big").count();
    assert_eq!(bigs, 1, "the oversized call was sent again");
}

/// A server that never answers `initialize`: status names the server and
/// why it is not ready, the calls wait (none lost), and fixing the config
/// and reloading delivers them.
#[test]
fn a_server_that_never_initializes_holds_calls_until_fixed() {
    let rig = Rig::with_server_args(
        &["--hang-initialize"],
        "connect_timeout = \"1s\"\ncall_timeout = \"1s\"",
        REGISTER,
    );
    let _daemon = rig.start_daemon();
    burst(&rig, "w", 2);
    let detail = wait_for(PATIENCE, || {
        let status = rig.status();
        let server = status["mcp_servers"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "rec")?
            .clone();
        (server["state"] != "ready" && server["detail"].is_string()).then_some(server)
    })
    .expect("status never said why `rec` is not ready");
    assert!(
        detail["detail"].as_str().unwrap().contains("initialize"),
        "{detail}"
    );
    wait_for(PATIENCE, || {
        (rig.global("@agent-pending") == "3").then_some(())
    })
    .expect("@agent-pending never showed the 3 waiting calls");
    assert!(rig.calls().is_empty());

    // Fix the config (drop --hang-initialize) and reload.
    let home = rig.server.home.path();
    let text = std::fs::read_to_string(crate::support::config_path(home)).unwrap();
    crate::support::write_config(home, &text.replace(", \"--hang-initialize\"", ""));
    let out = rig.server.agent().arg("reload").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_each_registered_once(&settle(&rig, 3), 3, 0);
}

/// The tmux server killed with sessions in it: the daemon says the server
/// exited, and the sessions' goals are completed anyway (their close calls
/// go out before it stops), so no goal is left open forever.
#[test]
fn a_killed_tmux_server_still_completes_its_sessions() {
    let rig = Rig::new(LIFECYCLE);
    let mut daemon = rig.start_daemon();
    rig.server.tmux(&["new-session", "-d", "-s", "work"]);
    wait_for(PATIENCE, || {
        rig.calls()
            .iter()
            .any(|c| c["arguments"]["step"] == "register" && c["arguments"]["name"] == "work")
            .then_some(())
    })
    .expect("`work` was never registered");
    rig.wait_settled();
    rig.server.tmux(&["kill-server"]);
    let (status, stderr) = daemon.wait(PATIENCE).expect("the daemon did not exit");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("exited"), "{stderr}");
    let calls = rig.calls();
    let completed: Vec<&str> = calls
        .iter()
        .filter(|c| c["arguments"]["step"] == "complete")
        .filter_map(|c| c["arguments"]["name"].as_str())
        .collect();
    let mut completed = completed;
    completed.sort();
    assert_eq!(completed, ["base", "work"], "{calls:#?}");
    // The goal id kept from each register reached its complete call.
    for call in calls
        .iter()
        .filter(|c| c["arguments"]["step"] == "complete")
    {
        assert!(
            call["arguments"]["goal_id"]
                .as_str()
                .unwrap()
                .starts_with("goal-$"),
            "{call}"
        );
    }
}

/// The daemon SIGKILLed in the middle of a burst, then started again:
/// sessions created before, during and after are each registered once;
/// only the call in flight at the kill may come twice.
#[test]
fn a_daemon_killed_mid_burst_and_restarted_loses_nothing() {
    let sessions = scale(60);
    let rig = Rig::new(REGISTER);
    let mut daemon = rig.start_daemon();
    burst(&rig, "a", sessions / 2);
    wait_for(PATIENCE, || (rig.calls().len() >= 5).then_some(()))
        .expect("the burst's calls never started");
    kill(i64::from(daemon.child.id()), libc::SIGKILL);
    daemon.wait(PATIENCE).expect("the daemon survived SIGKILL");
    // While no daemon runs.
    burst(&rig, "b", sessions / 2);
    let _daemon = rig.start_daemon();
    assert_each_registered_once(&settle(&rig, 1 + sessions), 1 + sessions, 1);
}

/// The outbox cannot grow (the daemon's files are capped at 256 KiB, as a
/// full disk would do): the daemon says so in its log and in `status`, moves
/// the outbox to memory, keeps tracking, and delivers every call.
#[test]
fn a_full_disk_keeps_the_daemon_tracking_and_says_what_it_cannot_persist() {
    const LIMIT: libc::rlim_t = 256 * 1024;
    let sessions = 40;
    let rig = Rig::new(REGISTER);
    let mut cmd = rig.server.agent();
    cmd.arg("daemon");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // The soft limit only, so the test can lift it later.
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A write past the limit is EFBIG, not a fatal signal.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut daemon = rig.start_daemon_with(cmd);
    for i in 0..sessions {
        rig.server
            .tmux(&["new-session", "-d", "-s", &format!("f-{i}")]);
    }
    let calls = settle(&rig, 1 + sessions);
    assert!(
        daemon.wait_stderr("moved to memory", PATIENCE),
        "the log never said the outbox moved to memory: {}",
        daemon.stderr()
    );
    let status = rig.status();
    let reason = status["actions"]["in_memory"].as_str().unwrap_or_default();
    assert!(reason.contains("outbox"), "{status}");
    assert_eq!(status["sessions"], 1 + sessions, "{status}");
    assert_each_registered_once(&calls, 1 + sessions, 0);
    let text = rig.server.agent().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("IN MEMORY"), "{text}");
    // And for status lines.
    wait_for(PATIENCE, || {
        (rig.global("@agent-outbox") == "memory").then_some(())
    })
    .expect("@agent-outbox never said memory");

    // The disk has room again: at the next event (at least 5 s after the
    // last try) the outbox moves back, with the history made meanwhile.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit(2) on our own child, with a valid rlimit.
    let set = unsafe {
        libc::prlimit(
            daemon.child.id() as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &unlimited,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    let mut more = 0;
    let back = wait_for(PATIENCE * 2, || {
        more += 1;
        rig.server
            .tmux(&["new-session", "-d", "-s", &format!("after-{more}")]);
        wait_for(std::time::Duration::from_secs(2), || {
            rig.global("@agent-outbox").is_empty().then_some(())
        })
    });
    assert!(back.is_some(), "the outbox never went back to disk");
    assert!(
        daemon.wait_stderr("back on disk", PATIENCE),
        "{}",
        daemon.stderr()
    );
    let status = rig.status();
    assert!(status["actions"]["in_memory"].is_null(), "{status}");
    let total = 1 + sessions + more;
    assert_each_registered_once(&settle(&rig, total), total, 0);
    // The file has the calls made while it was off the disk: `show` reads it.
    let shown = rig
        .server
        .agent()
        .args(["show", "--json", "-t", "f-0"])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("show --json");
    assert!(
        shown.to_string().contains("delivered"),
        "the history made in memory is not in the file: {shown}"
    );
}

/// An outbox that cannot be created at all (the state directory is a
/// file): the daemon starts anyway, says why, and delivers.
#[test]
fn an_unusable_state_directory_does_not_stop_the_daemon() {
    let rig = Rig::new(REGISTER);
    let state = rig.server.home.path().join("state-is-a-file");
    std::fs::write(&state, "").unwrap();
    let mut cmd = rig.server.agent();
    cmd.arg("daemon").env("XDG_STATE_HOME", &state);
    let _daemon = rig.start_daemon_with(cmd);
    rig.server.tmux(&["new-session", "-d", "-s", "x"]);
    assert_each_registered_once(&settle(&rig, 2), 2, 0);
    let status = rig.status();
    assert!(
        status["actions"]["in_memory"]
            .as_str()
            .is_some_and(|r| r.contains("state-is-a-file")),
        "{status}"
    );
    wait_for(PATIENCE, || {
        (rig.global("@agent-outbox") == "memory").then_some(())
    })
    .expect("@agent-outbox never said memory");
}

/// How long one session may take to be registered while a pane floods: the
/// daemon takes milliseconds when idle, so this is slack for a loaded
/// machine, well short of what a control connection drowning in `%output`
/// would take.
const FLOOD_LATENCY: Duration = Duration::from_secs(5);

/// A pane flooding output does not slow the sidecar's control connection.
///
/// tmux sends a control client `%output` only for panes in its own session,
/// and not at all when the client is `no-output`. So the flood runs in a
/// window of the sidecar's own session, where `no-output` is the one thing
/// between it and the daemon, and the test checks that tmux holds the
/// daemon's client to `no-output` (`client_flags`) and that, during the
/// flood, status answers and every new session is registered within
/// [`FLOOD_LATENCY`]. A second flood in a session of its own (a pane whose
/// output no control client is sent) must not change that either.
#[test]
fn an_output_flood_does_not_slow_the_control_connection() {
    let rig = Rig::new(REGISTER);
    let _daemon = rig.start_daemon();
    let clients = rig.server.tmux(&[
        "list-clients",
        "-F",
        "#{client_control_mode}\t#{session_name}\t#{client_flags}",
    ]);
    let (sidecar, flags) = clients
        .lines()
        .filter_map(|l| l.strip_prefix("1\t")?.split_once('\t'))
        .next()
        .unwrap_or_else(|| panic!("no control client: {clients:?}"));
    assert!(
        flags.split(',').any(|f| f == "no-output"),
        "the daemon's control client is not no-output: {clients:?}"
    );
    let flood = format!("={sidecar}:flood");
    rig.server.tmux(&[
        "new-window",
        "-d",
        "-t",
        &format!("={sidecar}:"),
        "-n",
        "flood",
        "yes tmux-agent-flood",
    ]);
    rig.server
        .tmux(&["new-session", "-d", "-s", "flood", "yes tmux-agent-flood"]);
    // Both panes are busy printing (their history fills up).
    for pane in [flood.as_str(), "flood"] {
        wait_for(PATIENCE, || {
            let size = rig
                .server
                .tmux(&["display-message", "-p", "-t", pane, "#{history_size}"]);
            (size.trim().parse::<u64>().unwrap_or(0) > 1000).then_some(())
        })
        .unwrap_or_else(|| panic!("the flood in {pane} never started"));
    }
    for i in 0..5 {
        let started = Instant::now();
        let id = rig
            .server
            .tmux(&[
                "new-session",
                "-d",
                "-P",
                "-F",
                "#{session_id}",
                "-s",
                &format!("during-{i}"),
            ])
            .trim()
            .to_owned();
        let status = rig.status();
        assert_eq!(status["running"], true);
        let goal = format!("goal-{id}");
        wait_for(PATIENCE, || registers(&rig.calls()).get(&goal).map(|_| ()))
            .unwrap_or_else(|| panic!("during-{i} was never registered"));
        let took = started.elapsed();
        assert!(
            took < FLOOD_LATENCY,
            "during-{i} took {took:?} to be registered during the flood"
        );
    }
    // The flood is still on: it was flooding the whole time.
    let size = rig
        .server
        .tmux(&["display-message", "-p", "-t", &flood, "#{pane_dead}"]);
    assert_eq!(size.trim(), "0", "the flooding pane died");
    assert_each_registered_once(&settle(&rig, 7), 7, 0);
}
