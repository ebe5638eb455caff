//! The CLI ↔ daemon socket against a real tmux server: one daemon per
//! server, stale sockets, permissions, other users, `status`, `stop`,
//! `ensure`, `reload` and SIGHUP, and malformed requests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::daemon::{Daemon, agent, agent_err, agent_ok, json};
use crate::support::{LineReader, TmuxServer, wait_for};
use crate::support::{PATIENCE, text};

/// The daemon's socket for this test's server.
fn socket_path(server: &TmuxServer) -> PathBuf {
    let dir = server.home.path().join("run/tmux-agent");
    let found = wait_for(PATIENCE, || {
        std::fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "sock"))
    });
    found.unwrap_or_else(|| panic!("no socket in {}", dir.display()))
}

/// One raw exchange over the socket.
fn exchange(socket: &PathBuf, line: &[u8]) -> serde_json::Value {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    // A daemon that refuses an over-long request closes before reading all
    // of it: the write may then fail, and the answer is still there to read.
    let _ = stream.write_all(line);
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    json(&answer)
}

#[test]
fn a_second_daemon_names_the_first_and_exits_1() {
    let server = TmuxServer::start();
    let first = Daemon::start(&server);
    let out = agent(&server, &["daemon"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("already running") && err.contains(&format!("pid {}", first.pid())),
        "{err}"
    );
    // The first one is unharmed.
    let status = json(&agent_ok(&server, &["status", "--json"]));
    assert_eq!(status["pid"], first.pid());
}

#[test]
fn a_stale_socket_from_a_killed_daemon_is_detected_and_replaced() {
    let server = TmuxServer::start();
    let daemon = Daemon::start(&server);
    let socket = socket_path(&server);
    drop(daemon); // SIGKILL: no chance to remove the socket
    assert!(
        socket.exists(),
        "the killed daemon's socket file should remain"
    );

    let out = agent_ok(&server, &["status"]);
    assert!(out.contains("daemon: not running"), "{out}");
    assert!(
        out.contains("@agent-daemon said \"running\"") && out.contains("cleared it"),
        "the stale global option is pointed out, and cleared: {out}"
    );
    assert_eq!(
        server.global_option("@agent-daemon").unwrap_or_default(),
        ""
    );

    let second = Daemon::start(&server);
    let status = json(&agent_ok(&server, &["status", "--json"]));
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"], second.pid());
}

#[test]
fn the_socket_and_its_directory_are_private() {
    let server = TmuxServer::start();
    let _daemon = Daemon::start(&server);
    let socket = socket_path(&server);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);
}

#[test]
fn requests_from_another_uid_are_refused() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !crate::support::require(
        root,
        "root (to run a client as uid 65534)",
        "Run this test as root, e.g. in a container (CI does), or \
         sudo -E cargo test --locked ipc::requests_from_another_uid_are_refused.",
    ) {
        return;
    }
    let server = TmuxServer::start();
    let _daemon = Daemon::start(&server);
    let socket = socket_path(&server);
    // Open the way on purpose (as a careless chmod would), so that only the
    // peer-credential checks stand between another user and the daemon.
    let dir = socket.parent().unwrap().to_path_buf();
    for p in [dir.parent().unwrap(), &dir] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(server.home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // The daemon's check: a raw client running as nobody (this test binary,
    // re-run as the helper below) gets an error response.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ipc::raw_status_request_helper",
            "--ignored",
            "--nocapture",
        ])
        .env("IPC_TEST_SOCKET", &socket)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    let answer = stdout
        .lines()
        .find(|l| l.starts_with("ANSWER "))
        .unwrap_or_else(|| panic!("helper printed no answer: {stdout}{}", text(&out.stderr)));
    assert!(
        answer.contains(r#""response":"error""#)
            && answer.contains("permission denied")
            && answer.contains("uid 65534"),
        "{answer}"
    );

    // The CLI's check: tmux-agent run as nobody refuses a daemon of uid 0.
    let tmux_socket = server
        .tmux(&["display-message", "-p", "#{socket_path}"])
        .trim()
        .to_owned();
    let out = std::process::Command::new(crate::support::AGENT)
        .args(["-S", &tmux_socket, "status"])
        .env("XDG_RUNTIME_DIR", dir.parent().unwrap())
        .env("HOME", server.home.path())
        .env_remove("TMUX")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    // `status` reports it as the daemon's state and goes on with tmux.
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        said.contains("served by uid 0, not by you (uid 65534); refusing to talk to it"),
        "{said}"
    );
}

use std::os::unix::process::CommandExt;

/// Not a test: run by `requests_from_another_uid_are_refused` as another
/// user, to send a status request without the CLI's own checks.
#[test]
#[ignore]
fn raw_status_request_helper() {
    let Some(socket) = std::env::var_os("IPC_TEST_SOCKET") else {
        return;
    };
    let answer = exchange(&PathBuf::from(socket), b"{\"request\":\"status\"}\n");
    println!("ANSWER {answer}");
}

#[test]
fn status_answers_quickly_and_says_what_it_knows() {
    let server = TmuxServer::start();
    let id = crate::support::daemon::new_session(&server, "work");
    let daemon = Daemon::start(&server);
    agent_ok(&server, &["join", "g", "-t", &id]);

    // Wall time of the whole command, process start to exit. The bound is
    // generous (a loaded 2-core CI machine); the figure is printed.
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let out = agent_ok(&server, &["status"]);
        times.push(started.elapsed());
        assert!(
            out.contains(&format!("daemon: running, pid {}", daemon.pid())),
            "{out}"
        );
        assert!(out.contains("tmux:   3."), "{out}");
        assert!(out.contains("2 sessions tracked"), "{out}");
        assert!(
            out.contains("groups: g (1 member, coordinator work ($"),
            "{out}"
        );
    }
    times.sort();
    eprintln!(
        "tmux-agent status wall time over 5 runs: min {:?}, median {:?}, max {:?}",
        times[0], times[2], times[4]
    );
    assert!(
        times[2] < Duration::from_secs(2),
        "status took {:?}",
        times[2]
    );

    let status = json(&agent_ok(&server, &["status", "--json"]));
    assert_eq!(status["running"], true);
    assert_eq!(status["sessions"], 2);
    assert_eq!(
        status["tmux_version"].as_str().unwrap().chars().next(),
        Some('3')
    );
    assert_eq!(status["groups"]["groups"][0]["name"], "g");
    assert!(status["uptime_secs"].is_u64());
}

#[test]
fn status_without_a_daemon_reads_tmux_and_says_so() {
    let server = TmuxServer::start();
    let id = crate::support::daemon::new_session(&server, "work");
    server.tmux(&["set-option", "-t", &id, "@agent-group", "g"]);
    let out = agent_ok(&server, &["status"]);
    assert!(out.contains("daemon: not running"), "{out}");
    assert!(out.contains("2 sessions"), "{out}");
    assert!(
        out.contains("groups: g (1 member, coordinator work"),
        "{out}"
    );
    let status = json(&agent_ok(&server, &["status", "--json"]));
    assert_eq!(status["running"], false);
    assert_eq!(status["tmux_running"], true);
    assert_eq!(status["sessions"], 2);

    server.tmux(&["kill-server"]);
    let err = agent_err(&server, &["peers", "-t", "work"]);
    assert!(err.contains("no tmux server is running"), "{err}");
    let out = agent_ok(&server, &["status"]);
    assert!(
        out.contains("daemon: not running") && out.contains("tmux:   no server running"),
        "{out}"
    );
}

#[test]
fn ensure_starts_one_daemon_and_stop_stops_it() {
    let server = TmuxServer::start();
    let out = agent(&server, &["ensure"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        out.stdout.is_empty(),
        "ensure prints nothing on stdout (run-shell shows it)"
    );
    assert!(
        text(&out.stderr).contains("started the tmux-agent daemon"),
        "{}",
        text(&out.stderr)
    );
    let pid = json(&agent_ok(&server, &["status", "--json"]))["pid"].clone();
    assert_eq!(
        server.global_option("@agent-daemon").as_deref(),
        Some("running")
    );

    // Again, and several at once as hooks would: still that one daemon.
    for stderr in ensure_at_once(&server, 4) {
        assert!(stderr.contains("already running"), "{stderr}");
    }
    assert_eq!(json(&agent_ok(&server, &["status", "--json"]))["pid"], pid);

    let out = agent_ok(&server, &["stop"]);
    assert!(
        out.contains(&format!("stopped the tmux-agent daemon (pid {pid})")),
        "{out}"
    );
    assert_eq!(server.global_option("@agent-daemon"), None);

    // Several at once with no daemon running: they race to start one, and
    // every one of them succeeds with the same single daemon.
    ensure_at_once(&server, 4);
    let pid = json(&agent_ok(&server, &["status", "--json"]))["pid"].clone();
    let daemons = std::process::Command::new("pgrep")
        .args([
            "-f",
            &format!("{} -L {} daemon", crate::support::AGENT, server.name),
        ])
        .output()
        .unwrap();
    assert_eq!(
        text(&daemons.stdout).lines().count(),
        1,
        "one daemon, not {}",
        text(&daemons.stdout)
    );
    let out = agent_ok(&server, &["stop"]);
    assert!(out.contains(&format!("(pid {pid})")), "{out}");
    assert!(agent_ok(&server, &["status"]).contains("daemon: not running"));
    let out = agent_ok(&server, &["stop"]);
    assert!(out.contains("no tmux-agent daemon is running"), "{out}");
    let err = agent_err(&server, &["reload"]);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn reload_and_sighup_reach_the_daemon() {
    let server = TmuxServer::start();
    let id = crate::support::daemon::new_session(&server, "work");
    let mut daemon = Daemon::start(&server);
    let out = agent_ok(&server, &["reload"]);
    assert!(
        out.contains("reloaded:") && out.contains("groups rebuilt"),
        "{out}"
    );

    // SIGHUP reloads and does not stop the daemon.
    server.tmux(&["set-option", "-t", &id, "@agent-role", "clobbered"]);
    // SAFETY: kill only sends a signal to our child.
    assert_eq!(unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) }, 0);
    assert!(
        daemon.process.wait_stderr("reloaded on SIGHUP", PATIENCE),
        "{}",
        daemon.process.stderr()
    );
    assert!(
        daemon.process.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the daemon"
    );
    assert_eq!(
        server.option(&id, "@agent-role"),
        None,
        "the reload's pass removed a derived option from a session in no group"
    );
    assert_eq!(
        json(&agent_ok(&server, &["status", "--json"]))["running"],
        true
    );
}

#[test]
fn malformed_requests_get_errors_and_the_daemon_carries_on() {
    let server = TmuxServer::start();
    let _daemon = Daemon::start(&server);
    let socket = socket_path(&server);
    let cases: [(&[u8], &str); 6] = [
        (b"not json\n", "bad request"),
        (b"{\"request\":\"format-disk\"}\n", "bad request"),
        (
            b"{\"request\":\"share\",\"session\":\"$0\",\"key\":\"a b\"}\n",
            "bad request",
        ),
        (
            b"{\"request\":\"share\",\"session\":\"$0\",\"key\":\"k\",\"value\":\"a\\nb\"}\n",
            "a newline",
        ),
        (
            b"{\"request\":\"share\",\"session\":\"$77\",\"key\":\"k\",\"value\":\"v\"}\n",
            "does not exist",
        ),
        (b"\xff\xfe\n", "bad request"),
    ];
    for (line, expect) in cases {
        let answer = exchange(&socket, line);
        assert_eq!(answer["response"], "error", "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(expect),
            "{answer}"
        );
    }
    // Past the cap (which fits the largest message body, JSON-escaped).
    let huge = vec![b'x'; tmux_agent::ipc::MAX_REQUEST + 16];
    let answer = exchange(&socket, &huge);
    assert!(
        answer["message"].as_str().unwrap().contains("longer than"),
        "{answer}"
    );

    // A client that connects and says nothing holds up nobody.
    let _silent = UnixStream::connect(&socket).unwrap();
    let started = Instant::now();
    assert_eq!(
        json(&agent_ok(&server, &["status", "--json"]))["running"],
        true
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Runs `n` `tmux-agent ensure` at once, as hooks would; each must
/// succeed. Returns their stderr.
fn ensure_at_once(server: &TmuxServer, n: usize) -> Vec<String> {
    let racers: Vec<_> = (0..n)
        .map(|_| {
            let mut cmd = server.agent();
            cmd.arg("ensure");
            LineReader::spawn(cmd)
        })
        .collect();
    racers
        .into_iter()
        .map(|mut racer| {
            let (status, stderr) = racer.wait(PATIENCE).expect("ensure hung");
            assert!(status.success(), "{stderr}");
            stderr
        })
        .collect()
}
