//! The one daemon fixture, and the CLI aimed at a private tmux server (see
//! [`super::tmux`] for the server itself).
//!
//! [`Daemon`] is a foreground `tmux-agent daemon` whose output the test can
//! read ([`LineReader`]), killed on drop so that a failing test leaves no
//! daemon behind. It has two ways to start, because tests need two moments:
//! [`Daemon::spawn`] returns once it has attached to tmux (for tests that
//! watch what it does from the start), [`Daemon::start`] once it is also
//! listening and its start-up calls have settled (for tests that compare
//! option snapshots, which must not race those writes).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::tmux::TmuxServer;
use super::{PATIENCE, text, wait_for};
use tmux_agent::control::options::parse_options;

/// A foreground `tmux-agent daemon`, killed (SIGKILL) on drop. It derefs to
/// its [`LineReader`], to read its stderr and wait for its exit.
pub struct Daemon {
    pub process: LineReader,
}

impl Daemon {
    /// Spawns `cmd`, a `tmux-agent daemon` command made from
    /// [`TmuxServer::agent`] (with whatever environment or limits the test
    /// needs), and returns once it has attached (`@agent-daemon` =
    /// `running`).
    pub fn spawn(server: &TmuxServer, cmd: Command) -> Self {
        let mut process = LineReader::spawn(cmd);
        let up = wait_for(PATIENCE, || {
            (server.global_option("@agent-daemon").as_deref() == Some("running")).then_some(())
        });
        assert!(
            up.is_some(),
            "the daemon never attached: {}",
            process.stderr()
        );
        Self { process }
    }

    /// `tmux-agent daemon` on `server`, returned once attached.
    pub fn attach(server: &TmuxServer) -> Self {
        let mut cmd = server.agent();
        cmd.arg("daemon");
        Self::spawn(server, cmd)
    }

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
        let settled = wait_for(PATIENCE, || {
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

    /// SIGKILLs it and waits until it is gone: a daemon that dies at any
    /// point, with no chance to finish what it was doing.
    pub fn kill(mut self) {
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(self.process.child.id() as i32, libc::SIGKILL) };
        self.process
            .wait(PATIENCE)
            .expect("the daemon survived SIGKILL");
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

impl Deref for Daemon {
    type Target = LineReader;
    fn deref(&self) -> &LineReader {
        &self.process
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut LineReader {
        &mut self.process
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

/// A running child whose stdout lines are collected as they arrive.
pub struct LineReader {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stderr_lines: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl LineReader {
    /// Spawns `cmd` with stdout and stderr piped.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (tx, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            stderr_lines,
            stderr_seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`; every stderr line read
    /// is kept for [`Self::stderr`].
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stderr_seen.push(line);
                    if found {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Every stderr line so far (reading what has arrived).
    pub fn stderr(&mut self) -> String {
        while let Ok(line) = self.stderr_lines.try_recv() {
            self.stderr_seen.push(line);
        }
        self.stderr_seen.join("\n")
    }

    /// The next line, or `None` at the deadline or at EOF.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Every line that arrives within `timeout` of each other.
    pub fn drain(&self, quiet: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.next_line(quiet) {
            lines.push(line);
        }
        lines
    }

    /// Waits for the child to exit; returns its status and all its stderr.
    pub fn wait(&mut self, timeout: Duration) -> Option<(std::process::ExitStatus, String)> {
        let status = wait_for(timeout, || self.child.try_wait().ok().flatten())?;
        // The reader thread sees EOF once the child is gone.
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(2)) {
            self.stderr_seen.push(line);
        }
        Some((status, self.stderr_seen.join("\n")))
    }
}

impl Drop for LineReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
