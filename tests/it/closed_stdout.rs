//! A closed stdout is a normal end for any command (`| head -1`): exit 0, no
//! panic, no backtrace. Each test gives the command a pipe whose reading end
//! is already closed, so every write it makes fails with EPIPE: what
//! `head -1` does to it a moment later, made certain.

use std::process::{Command, Stdio};

use crate::support::{Daemon, PATIENCE, TmuxServer, text, wait_for};

/// Runs `cmd` with stdout a pipe nobody reads; returns its exit status and
/// stderr.
fn with_closed_stdout(mut cmd: Command) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    cmd.stdout(writer)
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("spawn tmux-agent");
    let status = wait_for(PATIENCE, || child.try_wait().expect("try_wait"));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the command went on writing to a closed stdout");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn status_exits_0_quietly_on_a_closed_stdout_with_and_without_a_daemon() {
    let server = TmuxServer::start();
    for json in [false, true] {
        let mut cmd = server.agent();
        cmd.arg("status");
        if json {
            cmd.arg("--json");
        }
        let (status, stderr) = with_closed_stdout(cmd);
        assert!(
            status.success(),
            "no daemon, json={json}: {status:?} {stderr}"
        );
        assert_eq!(stderr, "", "no daemon, json={json}");
    }
    let daemon = Daemon::start(&server);
    let mut cmd = server.agent();
    cmd.arg("status");
    let (status, stderr) = with_closed_stdout(cmd);
    assert!(status.success(), "with a daemon: {status:?} {stderr}");
    assert_eq!(stderr, "");
    daemon.stop(&server);
}

#[test]
fn watch_exits_0_when_its_reader_goes_even_with_no_event_to_print() {
    let server = TmuxServer::start();
    let mut cmd = server.agent();
    cmd.args(["watch", "--json"]);
    let (status, stderr) = with_closed_stdout(cmd);
    assert!(status.success(), "{status:?} {stderr}");
    // Only the start line: no panic, no backtrace, no "stopped".
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("tmux-agent watch: following"),
        "{stderr}"
    );
}

/// The real thing, through a shell: `status | head -1` and
/// `watch --json | head -1`, with tmux-agent's own exit status.
#[test]
fn piped_into_head_the_command_itself_exits_0() {
    let server = TmuxServer::start();
    let _daemon = Daemon::start(&server);
    for (args, then) in [
        ("status", "true"),
        // watch prints when something happens: make it happen.
        (
            "watch --json",
            "sleep 1; tmux -L \"$L\" new-session -d -s made",
        ),
    ] {
        let script = format!(
            "( {then} ) & \"$AGENT\" -L \"$L\" {args} 2>\"$ERR\" | head -1; echo \"rc=${{PIPESTATUS[0]}}\""
        );
        let err = server.path("stderr");
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &script])
            .env("AGENT", crate::support::AGENT)
            .env("L", &server.name)
            .env("ERR", &err);
        crate::support::tmux::clean_env(&mut cmd, server.home.path());
        let out = cmd.output().expect("bash");
        let stdout = text(&out.stdout);
        assert!(
            stdout.lines().count() == 2,
            "{args}: {stdout} {}",
            text(&out.stderr)
        );
        assert!(stdout.ends_with("rc=0\n"), "{args}: {stdout}");
        let stderr = std::fs::read_to_string(&err).unwrap();
        assert!(
            !stderr.contains("panic") && !stderr.contains("Broken pipe"),
            "{args}: {stderr}"
        );
    }
}
