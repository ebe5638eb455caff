//! tmux ends the daemon's control client while the server lives on: the
//! daemon reconnects (src/daemon/link.rs), the changes made meanwhile make
//! their calls, and `@agent-daemon` says `running` only while a daemon is
//! attached. And the sidecar's session ends after its client, so a SIGKILLed
//! daemon leaves nothing that keeps the server alive.

use std::time::Duration;

use crate::support::rig::{LIFECYCLE, Rig};
use crate::support::{PATIENCE, TmuxServer, eventually, wait_for};

/// How soon the daemon must be back after tmux dropped its client.
const BACK_WITHIN: Duration = Duration::from_secs(10);

/// `@agent-daemon`, the number of control clients and whether the sidecar's
/// session exists, read by one `tmux` invocation.
fn daemon_view(server: &TmuxServer) -> (String, usize, bool) {
    let out = server.try_tmux(&[
        "display-message",
        "-p",
        "#{@agent-daemon}",
        ";",
        "list-clients",
        "-F",
        "c#{client_control_mode}",
        ";",
        "list-sessions",
        "-F",
        "s#{session_name}",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let option = lines.next().unwrap_or_default().to_owned();
    let rest: Vec<&str> = lines.collect();
    let controls = rest.iter().filter(|l| **l == "c1").count();
    let sidecar = rest.contains(&"stmux-agent");
    (option, controls, sidecar)
}

/// Waits until the daemon is attached again: `@agent-daemon` running, its
/// control client and session there.
fn wait_attached(server: &TmuxServer, what: &str) {
    eventually(
        BACK_WITHIN,
        &format!("the daemon back after {what}"),
        || {
            let (option, controls, sidecar) = daemon_view(server);
            (option == "running" && controls == 1 && sidecar).then_some(())
        },
    );
}

/// Calls with `step` naming session `name`.
fn calls_for(rig: &Rig, step: &str, name: &str) -> usize {
    rig.calls()
        .iter()
        .filter(|c| c["arguments"]["step"] == step && c["arguments"]["name"] == name)
        .count()
}

fn wait_call(rig: &Rig, step: &str, name: &str) {
    eventually(PATIENCE, &format!("{step} call for {name}"), || {
        (calls_for(rig, step, name) >= 1).then_some(())
    });
}

#[test]
fn the_daemon_comes_back_after_tmux_drops_its_client_and_acts_on_what_changed_meanwhile() {
    let rig = Rig::new(LIFECYCLE);
    let mut daemon = rig.start_daemon();
    let server = &rig.server;
    wait_call(&rig, "register", "base");

    // A real terminal client, for `detach-client -a` run from it (what a
    // plugin or a person typing it does: every client but this one goes).
    server.tmux(&["new-session", "-d", "-s", "desk"]);
    let _terminal = server.attach_terminal("desk");
    eventually(PATIENCE, "the terminal client", || {
        server
            .tmux(&["list-clients", "-F", "#{client_control_mode}"])
            .lines()
            .any(|l| l == "0")
            .then_some(())
    });
    let terminal = server
        .tmux(&[
            "list-clients",
            "-F",
            "#{client_control_mode} #{client_name}",
        ])
        .lines()
        .find_map(|l| l.strip_prefix("0 ").map(str::to_owned))
        .expect("terminal client name");

    let ways: [(&str, Vec<&str>); 3] = [
        (
            "detach-client -s",
            vec!["detach-client", "-s", "tmux-agent"],
        ),
        (
            "detach-client -a",
            vec!["detach-client", "-a", "-t", &terminal],
        ),
        ("kill-session", vec!["kill-session", "-t", "tmux-agent"]),
    ];
    for (round, (what, command)) in ways.iter().enumerate() {
        let before = format!("before{round}");
        let during = format!("during{round}");
        server.tmux(&["new-session", "-d", "-s", &before]);
        wait_call(&rig, "register", &before);

        // Drop the client, and change sessions at once, before the daemon
        // can be back.
        server.tmux(command);
        server.tmux(&["new-session", "-d", "-s", &during]);
        server.tmux(&["kill-session", "-t", &before]);

        wait_attached(server, what);
        wait_call(&rig, "register", &during);
        wait_call(&rig, "complete", &before);
        // Each once: the reconnect's diff and the tracker's own events do
        // not both fire.
        assert_eq!(calls_for(&rig, "register", &during), 1, "{what}");
        assert_eq!(calls_for(&rig, "complete", &before), 1, "{what}");
        // The terminal client survived all of it.
        assert!(
            server
                .tmux(&["list-clients", "-F", "#{client_control_mode}"])
                .lines()
                .any(|l| l == "0"),
            "{what}"
        );
    }
    assert!(
        daemon.process.child.try_wait().unwrap().is_none(),
        "the daemon exited: {}",
        daemon.stderr()
    );
    assert!(daemon.stderr().contains("attached again"));
    daemon.stop(server);
    eventually(PATIENCE, "nothing of the daemon left", || {
        (daemon_view(server) == (String::new(), 0, false)).then_some(())
    });
}

/// SIGKILL: no shutdown runs, but the `tmux -C` child sees its stdin close
/// and exits, and the sidecar's pane ends its session once it is
/// unattached (src/control/connection.rs, `SIDECAR_PANE_COMMAND`).
#[test]
fn a_sigkilled_daemon_takes_its_session_with_it_and_keeps_no_server_alive() {
    let rig = Rig::new(LIFECYCLE);
    let daemon = rig.start_daemon();
    let server = &rig.server;
    wait_call(&rig, "register", "base");

    let pid = daemon.pid();
    // SAFETY: a plain kill(2) of the child we spawned.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    eventually(PATIENCE, "the sidecar session gone", || {
        let (_, controls, sidecar) = daemon_view(server);
        (controls == 0 && !sidecar).then_some(())
    });
    // The option is left behind (nobody could clear it) but `status` says
    // it is stale and clears it.
    let status = rig.status();
    assert_eq!(status["running"], false);
    assert_eq!(daemon_view(server).0, "", "status cleared the stale option");

    // The user's last session closes: nothing keeps the server alive.
    server.tmux(&["kill-session", "-t", "base"]);
    let exited = wait_for(PATIENCE, || (!server.is_running()).then_some(()));
    assert!(
        exited.is_some(),
        "the tmux server outlived its last session: {}",
        what_keeps_it(server)
    );
    drop(daemon);
}

/// What may keep a tmux server alive, for a failure message: its sessions,
/// and every process that names its socket (tmux waits for every client
/// to go before it exits, also those on no session, which `list-clients`
/// does not show; this test failed once under load, never since).
fn what_keeps_it(server: &TmuxServer) -> String {
    let sessions = server.try_tmux(&["list-sessions", "-F", "#{session_id} #{session_name}"]);
    let processes = std::process::Command::new("pgrep")
        .args(["-af", &server.name])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_else(|err| format!("(pgrep: {err})"));
    format!(
        "sessions: {:?}; processes naming the socket:\n{processes}",
        String::from_utf8_lossy(&sessions.stdout)
    )
}

/// The self-kill window (issue #11, item 7): the user's last session
/// closes and the daemon closes its own session, so the server can exit;
/// a session created in that moment (held open by the test-only delay)
/// keeps the server alive. The daemon must not end then, leaving
/// `@agent-daemon=running` with nothing behind it: it attaches again, and
/// the new session gets its calls. When that session closes too, the
/// daemon ends, and nothing of it is left.
#[test]
fn a_session_created_while_the_daemon_closes_its_own_keeps_it_attached() {
    let rig = Rig::new(LIFECYCLE);
    let mut cmd = rig.server.agent();
    cmd.arg("daemon")
        .env("TMUX_AGENT_FAULT_SELF_KILL_DELAY_MS", "1000");
    let mut daemon = rig.start_daemon_with(cmd);
    let server = &rig.server;
    wait_call(&rig, "register", "base");

    server.tmux(&["kill-session", "-t", "base"]);
    assert!(
        daemon.wait_stderr("a test holds this moment open", PATIENCE),
        "{}",
        daemon.stderr()
    );
    // Inside the window: the daemon has decided to close its session.
    server.tmux(&["new-session", "-d", "-s", "inside"]);
    assert!(
        daemon.wait_stderr("reconnecting", PATIENCE),
        "{}",
        daemon.stderr()
    );
    // It was that window, not some other loss.
    assert!(
        daemon
            .stderr()
            .contains("a session was created while the daemon closed its own"),
        "{}",
        daemon.stderr()
    );
    wait_attached(server, "closing its own session");
    wait_call(&rig, "register", "inside");
    wait_call(&rig, "complete", "base");
    assert_eq!(calls_for(&rig, "register", "inside"), 1);
    assert!(
        daemon.process.child.try_wait().unwrap().is_none(),
        "the daemon exited: {}",
        daemon.stderr()
    );

    // The last session again, with nobody inside the window: the daemon
    // ends, and the server with it.
    server.tmux(&["kill-session", "-t", "inside"]);
    let (status, stderr) = daemon
        .process
        .wait(PATIENCE)
        .expect("the daemon did not end after the last session");
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(
        wait_for(PATIENCE, || (!server.is_running()).then_some(())).is_some(),
        "the tmux server outlived its last session: {:?}",
        daemon_view(server)
    );
    wait_call(&rig, "complete", "inside");
}

/// The session the daemon's control client is on, by one `tmux`
/// invocation (`None` when it has no control client).
fn control_client_session(server: &TmuxServer) -> Option<String> {
    server
        .tmux(&[
            "list-clients",
            "-F",
            "#{client_control_mode} #{session_name}",
        ])
        .lines()
        .find_map(|l| l.strip_prefix("1 ").map(str::to_owned))
}

/// Another client moves the daemon's control client to a user session
/// (`switch-client -c CLIENT -t SESSION`, as a person or a plugin might):
/// the daemon goes back to a sidecar session of its own, `@agent-daemon`
/// says `running` whenever the test looks (a daemon is attached all
/// along), and the sessions changed meanwhile get their calls, once.
#[test]
fn a_control_client_switched_to_a_user_session_goes_back_to_its_own() {
    let rig = Rig::new(LIFECYCLE);
    let mut daemon = rig.start_daemon();
    let server = &rig.server;
    wait_call(&rig, "register", "base");
    server.tmux(&["new-session", "-d", "-s", "desk"]);
    wait_call(&rig, "register", "desk");
    let client = server
        .tmux(&[
            "list-clients",
            "-F",
            "#{client_control_mode} #{client_name}",
        ])
        .lines()
        .find_map(|l| l.strip_prefix("1 ").map(str::to_owned))
        .expect("the daemon's control client");

    for round in 0..2 {
        let during = format!("during{round}");
        server.tmux(&["switch-client", "-c", &client, "-t", "desk"]);
        server.tmux(&["new-session", "-d", "-s", &during]);
        eventually(BACK_WITHIN, "the control client back home", || {
            (control_client_session(server).as_deref() == Some("tmux-agent")).then_some(())
        });
        wait_attached(server, "switch-client");
        wait_call(&rig, "register", &during);
        assert_eq!(calls_for(&rig, "register", &during), 1);
        // Nothing of the daemon's lands on the user's session.
        assert_eq!(calls_for(&rig, "register", "tmux-agent"), 0);
        assert_eq!(calls_for(&rig, "register", "desk"), 1);
    }
    assert!(
        daemon.process.child.try_wait().unwrap().is_none(),
        "the daemon exited: {}",
        daemon.stderr()
    );
    // `desk` is still the user's, and the daemon still follows it.
    server.tmux(&["kill-session", "-t", "desk"]);
    wait_call(&rig, "complete", "desk");
    daemon.stop(server);
}
