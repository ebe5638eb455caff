//! Shared test fixtures: a private tmux server per test, the tmux-agent
//! binary aimed at it, terminal clients, and polling with a deadline.
//!
//! Every server runs on its own `-L` socket with `-f /dev/null` and is killed
//! when its guard drops, even when the test panics. Child processes never see
//! the developer's `$TMUX`, so a test run inside tmux cannot touch the real
//! server.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The tmux-agent binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_tmux-agent");

/// A private tmux server, killed on drop.
pub struct TmuxServer {
    pub name: String,
    /// A scratch HOME for the processes of this test.
    pub home: tempfile::TempDir,
}

impl TmuxServer {
    /// Starts a server holding one detached session called `base`.
    pub fn start() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "ta-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let server = Self {
            name,
            // No dot in the path: tmux turns `.` in session names into `_`,
            // and tests put paths into names.
            home: tempfile::Builder::new()
                .prefix("ta-home-")
                .tempdir()
                .expect("temp HOME"),
        };
        server.tmux(&["new-session", "-d", "-s", "base", "-x", "80", "-y", "24"]);
        server
    }

    /// A `tmux -L <name>` command with a clean environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.name, "-f", "/dev/null"]);
        clean_env(&mut cmd, self.home.path());
        cmd
    }

    /// Runs tmux and returns its stdout; panics with stderr when it fails.
    pub fn tmux(&self, args: &[&str]) -> String {
        let out = self.try_tmux(args);
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn try_tmux(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run tmux")
    }

    /// Whether the server still answers.
    pub fn is_running(&self) -> bool {
        self.try_tmux(&["list-sessions"]).status.success()
    }

    /// The id (`$N`) of the session with exactly this name.
    /// Spawns a foreground daemon from `cmd` (made from [`TmuxServer::agent`])
    /// and returns once it has attached (`@agent-daemon` = `running`).
    pub fn attached_daemon(&self, cmd: Command) -> LineReader {
        let mut daemon = LineReader::spawn(cmd);
        let up = wait_for(Duration::from_secs(20), || {
            (self.global_option("@agent-daemon").as_deref() == Some("running")).then_some(())
        });
        assert!(
            up.is_some(),
            "the daemon never attached: {}",
            daemon.stderr()
        );
        daemon
    }

    /// A session option as `tmux show-options -v` prints it, without the
    /// final newline; `None` when tmux refuses (no such session or option).
    pub fn option(&self, target: &str, name: &str) -> Option<String> {
        self.shown(&["show-options", "-v", "-t", target, name])
    }

    /// A global option as `tmux show-options -gv` prints it, likewise.
    pub fn global_option(&self, name: &str) -> Option<String> {
        self.shown(&["show-options", "-gv", name])
    }

    fn shown(&self, args: &[&str]) -> Option<String> {
        let out = self.try_tmux(args);
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .trim_end_matches('\n')
                .to_owned()
        })
    }

    pub fn session_id(&self, name: &str) -> String {
        let list = self.tmux(&["list-sessions", "-F", "#{session_id}\t#{session_name}"]);
        list.lines()
            .find_map(|line| {
                let (id, n) = line.split_once('\t')?;
                (n == name).then(|| id.to_owned())
            })
            .unwrap_or_else(|| panic!("no session named {name:?} in {list:?}"))
    }

    /// A `tmux-agent -L <name>` command with a clean environment.
    pub fn agent(&self) -> Command {
        let mut cmd = Command::new(AGENT);
        cmd.args(["-L", &self.name]);
        clean_env(&mut cmd, self.home.path());
        cmd
    }

    /// Starts a terminal client attached to `target` inside a pseudo-terminal
    /// (`script`), as a person at a terminal would be.
    pub fn attach_terminal(&self, target: &str) -> TerminalClient {
        let tmux = format!("tmux -L {} attach -t '{}'", self.name, target);
        let mut cmd = Command::new("script");
        cmd.args(["-qfc", &tmux, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        clean_env(&mut cmd, self.home.path());
        cmd.env("TERM", "xterm-256color");
        TerminalClient {
            child: cmd.spawn().expect("spawn script"),
        }
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = self.try_tmux(&["kill-server"]);
    }
}

fn clean_env(cmd: &mut Command, home: &std::path::Path) {
    cmd.env_remove("TMUX")
        .env_remove("TMUX_PANE")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_RUNTIME_DIR", home.join("run"));
}

/// A terminal client; killed on drop.
pub struct TerminalClient {
    child: Child,
}

impl Drop for TerminalClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// Polls `probe` every 10 ms until it returns `Some`, or the deadline passes.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
