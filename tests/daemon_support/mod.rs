//! Helpers for tests that run the tmux-agent daemon and CLI against a
//! private tmux server (see `common` for the server itself).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use crate::common::{LineReader, TmuxServer};
use tmux_agent::control::options::parse_options;

/// How long to wait for something that should take milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A foreground `tmux-agent daemon`, killed (SIGKILL) on drop.
pub struct Daemon {
    pub process: LineReader,
}

impl Daemon {
    /// Starts a daemon and waits until its socket listens and it has
    /// registered the sessions it found (its default preset calls the
    /// built-in server for each, and sets `@agent-goal-id`): tests that
    /// compare option snapshots must not race those writes.
    pub fn start(server: &TmuxServer) -> Self {
        let mut cmd = server.agent();
        cmd.arg("daemon");
        let mut process = LineReader::spawn(cmd);
        assert!(
            process.wait_stderr("listening for tmux-agent commands", PATIENCE),
            "the daemon did not start: {}",
            process.stderr()
        );
        let settled = crate::common::wait_for(PATIENCE, || {
            (server.global_option("@agent-pending").as_deref() == Some("0")).then_some(())
        });
        assert!(
            settled.is_some(),
            "the daemon's start-up calls never settled"
        );
        Self { process }
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Stops it with `tmux-agent stop` and waits for it to exit.
    pub fn stop(mut self, server: &TmuxServer) {
        let out = agent(server, &["stop"]);
        assert!(out.status.success(), "stop: {}", text(&out.stderr));
        let (status, _) = self
            .process
            .wait(PATIENCE)
            .expect("the daemon did not exit after stop");
        assert!(status.success(), "daemon exit: {status:?}");
    }
}

/// Runs `tmux-agent -L <server> ARGS`.
pub fn agent(server: &TmuxServer, args: &[&str]) -> Output {
    server.agent().args(args).output().expect("run tmux-agent")
}

/// Runs tmux-agent and returns stdout; panics with stderr when it fails.
pub fn agent_ok(server: &TmuxServer, args: &[&str]) -> String {
    let out = agent(server, args);
    assert!(
        out.status.success(),
        "tmux-agent {args:?} failed ({:?}): {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs tmux-agent expecting failure; returns stderr.
pub fn agent_err(server: &TmuxServer, args: &[&str]) -> String {
    let out = agent(server, args);
    assert!(
        !out.status.success(),
        "tmux-agent {args:?} should have failed; it printed {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Creates a detached session and returns its id (`$N`).
pub fn new_session(server: &TmuxServer, name: &str) -> String {
    let out = server.tmux(&[
        "new-session",
        "-d",
        "-P",
        "-F",
        "#{session_id}",
        "-s",
        name,
        "-x",
        "80",
        "-y",
        "24",
    ]);
    out.trim().to_owned()
}

/// Every `@agent-*` option of every session (by id) and of the global
/// scope (under "global"), read the way the project reads them.
pub fn snapshot(server: &TmuxServer) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut all = BTreeMap::new();
    let ids = server.tmux(&["list-sessions", "-F", "#{session_id}"]);
    for id in ids.lines() {
        all.insert(id.to_owned(), options(server, &["show-options", "-t", id]));
    }
    all.insert(
        "global".to_owned(),
        options(server, &["show-options", "-g"]),
    );
    all
}

fn options(server: &TmuxServer, args: &[&str]) -> BTreeMap<String, String> {
    let out = server.command().args(args).output().expect("tmux");
    let lines = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    parse_options(lines, "@agent-").expect("show-options output")
}

/// The JSON object tmux-agent printed.
pub fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout:?}"))
}
