//! Bursts: tmux saying a great deal at once must never wedge the daemon.
//!
//! The daemon used to wedge when one `source-file` created 3,000 sessions:
//! the control connection waited to push each notification into a bounded
//! queue, and while it waited it read nothing from tmux, including the reply
//! the tracker (the queue's one reader) was waiting for. These tests show
//! the connection reading on while its consumer reads nothing, and the
//! whole daemon following bursts of thousands of sessions. Timings are not
//! asserted here (deadlines only); `scripts/bench` measures them.

use std::io::Write as _;
use std::time::Duration;

use tmux_agent::control::command::Command;
use tmux_agent::control::connection::{ConnectOptions, Connection, Empty, Incoming};
use tmux_agent::control::server::ServerSocket;
use tokio_util::sync::CancellationToken;

use serde_json::Value;

use crate::support::rig::Rig;
use crate::support::{LineReader, PATIENCE, TmuxServer, eventually};

/// Writes `lines` as a tmux command file in the server's HOME; returns its path.
fn command_file(server: &TmuxServer, name: &str, lines: impl Iterator<Item = String>) -> String {
    let path = server.path(name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    for line in lines {
        writeln!(file, "{line}").expect("write");
    }
    file.flush().expect("flush");
    path.display().to_string()
}

/// A consumer that reads no notification at all still gets its replies:
/// 20,000 notifications (five times the old queue) arrive while nobody
/// takes them, and a command sent after them is answered. What waited
/// comes out as one "something changed", not 20,000 entries.
#[test]
fn the_connection_reads_on_while_its_consumer_reads_nothing() {
    let server = TmuxServer::start();
    // Each rename is one `%unlinked-window-renamed` to the control client
    // (the window is not in its session).
    let file = command_file(
        &server,
        "renames.tmux",
        (0..20_000).map(|n| format!("rename-window -t base:0 w{n}")),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let mut connection = Connection::open(
            ConnectOptions::new(ServerSocket::Name(server.name.clone())),
            shutdown.clone(),
        )
        .await
        .expect("attach");
        // Whatever the attach said, taken now, so that what follows is the flood's.
        while connection.notifications.try_recv().is_ok() {}

        server.tmux(&["source-file", &file]);
        // The flood has been sent to the control client when source-file
        // returns (tmux notifies while it runs the file); the reply to this
        // command comes after all of it on the wire.
        let command = Command::display_server("#{window_name}").unwrap();
        let reply = tokio::time::timeout(PATIENCE, connection.handle.run(command))
            .await
            .expect("a reply behind 20,000 unread notifications arrives")
            .expect("display-message succeeds");
        assert!(reply.success);

        assert_eq!(
            connection.notifications.try_recv(),
            Ok(Incoming::Changed),
            "the renames are one wake-up"
        );
        assert_eq!(
            connection.notifications.try_recv(),
            Err(Empty::Waiting),
            "and nothing else was queued for them"
        );
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), connection.closed).await;
    });
}

/// A session created and killed between two listings leaves only a
/// skipped id: the daemon reports it as `session-missed` (in `watch
/// --json`) and counts it in `status`. The sidecar's own id and the ids
/// before the daemon started are no misses.
#[test]
fn a_session_that_lived_between_two_listings_is_reported_missed() {
    let rig = Rig::new("");
    let server = &rig.server;
    // Ids $1, $2 go before the daemon: neither is a miss.
    server.tmux(&["new-session", "-d", "-s", "early"]);
    server.tmux(&["kill-session", "-t", "early"]);
    let _daemon = rig.start_daemon();
    let mut cmd = server.agent();
    cmd.args(["watch", "--json"]);
    let mut watcher = LineReader::spawn(cmd);
    assert!(
        watcher.wait_stderr("following", PATIENCE),
        "watch did not start: {}",
        watcher.stderr()
    );
    // One source-file runs as one item of tmux's queue: no listing can
    // come between the ghost's creation and its end.
    let file = command_file(
        server,
        "ghost.tmux",
        [
            "new-session -d -s ghost",
            "kill-session -t ghost",
            "new-session -d -s real",
        ]
        .into_iter()
        .map(str::to_owned),
    );
    server.tmux(&["source-file", &file]);
    let real = server.session_id("real");
    let ghost = format!("${}", real[1..].parse::<u32>().unwrap() - 1);
    let mut seen = Vec::new();
    loop {
        let line = watcher
            .next_line(PATIENCE)
            .unwrap_or_else(|| panic!("no session-created for {real}; saw {seen:#?}"));
        let event: Value = serde_json::from_str(&line).unwrap();
        let done = event["event"] == "session-created" && event["session_id"] == real;
        seen.push(event);
        if done {
            break;
        }
    }
    let missed: Vec<_> = seen
        .iter()
        .filter(|e| e["event"] == "session-missed")
        .collect();
    assert_eq!(missed.len(), 1, "{seen:#?}");
    assert_eq!(missed[0]["session_id"], ghost.as_str());
    // Its name, from the daemon's session-created hook; and the names kept
    // for it and the others are cleared once listed past.
    assert_eq!(missed[0]["session"], "ghost", "{seen:#?}");
    eventually(PATIENCE, "the kept names cleared", || {
        let globals = server.tmux(&["show-options", "-g"]);
        (!globals.contains("@agent-name-")).then_some(())
    });
    let status = eventually(PATIENCE, "status counts the miss", || {
        let status = rig.status();
        (status["sessions_missed"] == 1).then_some(status)
    });
    assert_eq!(status["sessions"], 2, "{status}");
    let text = crate::support::text(&server.agent().arg("status").output().unwrap().stdout);
    assert!(text.contains("sessions missed: 1"), "{text}");
}

/// How long a burst may take to be followed, end to end: a deadline to end
/// a hung test on a loaded 2-core machine, not a speed claim (the speeds
/// are `scripts/bench`'s figure 8).
const BURST_PATIENCE: Duration = Duration::from_secs(300);

/// The daemon's peak RSS (VmHWM) must stay under this through a burst.
/// Measured: see the report in docs/ARCHITECTURE.md, "Bursts".
const PEAK_RSS_MIB: u64 = 256;

/// Register on create and complete on close, each naming the session.
const REGISTER_AND_COMPLETE: &str = r#"
[[on.session-created]]
server = "rec"
tool = "echo"
args = { step = "register", name = "{session}" }

[[on.session-closed]]
server = "rec"
tool = "echo"
args = { step = "complete", name = "{session}" }
"#;

/// The sessions named `prefix*` that got a call for `step`, once each at least.
fn named(rig: &Rig, step: &str, prefix: &str) -> std::collections::BTreeSet<String> {
    rig.calls()
        .iter()
        .filter(|c| c["arguments"]["step"] == step)
        .filter_map(|c| c["arguments"]["name"].as_str())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Polls `probe` every half second (a record of thousands of calls is not
/// read every 10 ms) until it holds or `within` passes.
fn slowly(within: Duration, what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !probe() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// VmHWM of `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024
}

/// One `source-file` creates `sessions` sessions with `line(n)`; the daemon
/// must register each, count them all, stay within [`PEAK_RSS_MIB`], and,
/// once one `kill-server` ends them all, complete each goal.
fn burst(sessions: usize, prefix: &str, line: impl Fn(usize) -> String) {
    let rig = Rig::new(REGISTER_AND_COMPLETE);
    let server = &rig.server;
    let mut daemon = rig.start_daemon();
    let file = command_file(server, "burst.tmux", (0..sessions).map(line));
    server.tmux(&["source-file", &file]);

    slowly(BURST_PATIENCE, "every session registered", || {
        named(&rig, "register", prefix).len() == sessions
    });
    slowly(BURST_PATIENCE, "status counts every session", || {
        rig.status()["sessions"] == sessions + 1
    });
    // A session created after the burst is still seen: nothing wedged.
    server.tmux(&["new-session", "-d", "-s", "after"]);
    slowly(PATIENCE, "the session after the burst registered", || {
        named(&rig, "register", "after").len() == 1
    });
    let peak = peak_rss_mib(daemon.pid());
    eprintln!("burst of {sessions}: daemon peak RSS {peak} MiB");
    assert!(
        peak < PEAK_RSS_MIB,
        "the daemon's peak RSS was {peak} MiB (bound {PEAK_RSS_MIB} MiB)"
    );

    server.tmux(&["kill-server"]);
    slowly(BURST_PATIENCE, "every goal completed", || {
        named(&rig, "complete", prefix).len() == sessions
    });
    let (status, stderr) = daemon
        .process
        .wait(BURST_PATIENCE)
        .expect("the daemon exits after the server");
    assert!(status.success(), "daemon exit {status:?}: {stderr}");
    let counts = named(&rig, "complete", "");
    assert!(
        counts.contains("base") && counts.contains("after"),
        "{counts:?}"
    );
}

/// Whether `TMUX_AGENT_BURST=full` asks for the full sizes: 3,500 sessions
/// with panes (this machine allows 4,096 ptys in all, shared with every
/// other test running) and 2,000 grouped sessions. The issue asks for
/// 10,000 grouped ones, but tmux 3.3a alone, with no daemon, takes about
/// 45 ms per grouped session on this 2-core machine and more as the group
/// grows (each new member is synced with the others), so 10,000 do not fit
/// a test's time: see docs/PERFORMANCE.md, figure 9. CI runs 1,000 of each.
fn full() -> bool {
    std::env::var("TMUX_AGENT_BURST").as_deref() == Ok("full")
}

#[test]
fn a_burst_of_sessions_with_panes_is_followed_to_the_end() {
    let sessions = if full() { 3_500 } else { 1_000 };
    burst(sessions, "p", |n| format!("new-session -d -s p{n} cat"));
}

#[test]
fn a_burst_of_grouped_sessions_is_followed_to_the_end() {
    // Grouped sessions share `base`'s windows: no pty each.
    let sessions = if full() { 2_000 } else { 1_000 };
    burst(sessions, "g", |n| format!("new-session -d -t base -s g{n}"));
}

/// A stop ends the daemon within its stated bound (8 s:
/// `daemon::SHUTDOWN_BOUND`) whatever it was doing: here every call hangs
/// in an MCP server that ignores SIGTERM and stdin's end, with a burst of
/// events still coming.
#[test]
fn sigterm_ends_the_daemon_within_its_bound_while_every_call_hangs() {
    let rig = Rig::with_server_args(
        &["--ignore-sigterm", "--ignore-stdin-eof"],
        "connect_timeout = \"5s\"\ncall_timeout = \"600s\"",
        r#"
[[on.session-created]]
server = "rec"
tool = "sleep"
args = { ms = 600000 }
"#,
    );
    let server = &rig.server;
    let mut daemon = rig.start_daemon();
    let file = command_file(
        server,
        "some.tmux",
        (0..300).map(|n| format!("new-session -d -t base -s s{n}")),
    );
    server.tmux(&["source-file", &file]);
    // The first call has reached the server, which will never answer it.
    eventually(PATIENCE, "a call hangs", || {
        (!rig.calls().is_empty()).then_some(())
    });
    let bound = tmux_agent::daemon::SHUTDOWN_BOUND;
    let asked = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Two seconds of slack for a loaded machine's scheduling.
    let (status, stderr) = daemon
        .process
        .wait(bound + Duration::from_secs(2))
        .unwrap_or_else(|| panic!("the daemon outlived its shutdown bound of {bound:?}"));
    eprintln!("stopped in {:?}", asked.elapsed());
    assert!(status.success(), "{status:?}: {stderr}");
}

/// The hook that names missed sessions sits at an index of its own: a
/// user's `session-created` hook still runs beside it, and stopping the
/// daemon removes the daemon's hook only.
#[test]
fn the_naming_hook_leaves_the_users_hooks_alone_and_goes_with_the_daemon() {
    let rig = Rig::new("");
    let server = &rig.server;
    server.tmux(&[
        "set-hook",
        "-g",
        "session-created",
        "set-option -g @user-hook ran",
    ]);
    let daemon = rig.start_daemon();
    let hooks = server.tmux(&["show-hooks", "-g"]);
    assert!(hooks.contains("session-created[7391]"), "{hooks}");
    server.tmux(&["new-session", "-d", "-s", "one"]);
    eventually(PATIENCE, "the user's hook ran", || {
        (server.global_option("@user-hook").as_deref() == Some("ran")).then_some(())
    });
    daemon.stop(server);
    let hooks = server.tmux(&["show-hooks", "-g"]);
    assert!(!hooks.contains("session-created[7391]"), "{hooks}");
    assert!(hooks.contains("session-created[0]"), "{hooks}");
}
