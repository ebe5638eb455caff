//! The one private tmux server fixture: a tmux server per test, commands
//! aimed at it (tmux itself and the tmux-agent CLI), and terminal clients.
//!
//! Every server runs on its own `-L` socket with `-f /dev/null` (so neither
//! the developer's tmux nor their `~/.tmux.conf` is involved) and is killed
//! when its guard drops, even when the test panics. Every process started
//! through it gets a scratch HOME and XDG directories and never sees the
//! developer's `$TMUX`, so a test run inside tmux cannot touch the real
//! server, and tmux-agent's config, state and socket are the test's own.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::AGENT;

/// What the sessions-as-files round trips compare (issue #14): every
/// pane's session, window, layout, directory and start command, as
/// `list-panes -a -F` prints them.
pub const ROUND_TRIP_PANES: &str = "#{session_name} #{window_index} #{window_name} #{window_layout} #{pane_current_path} #{pane_start_command}";

/// A private tmux server, killed (and its socket removed) on drop.
pub struct TmuxServer {
    /// Its `-L` socket name.
    pub name: String,
    /// A scratch HOME for the processes of this test.
    pub home: tempfile::TempDir,
    /// Its socket file: tmux leaves it behind when killed, so drop removes
    /// it rather than fill tmux's socket directory with dead sockets.
    pub socket: PathBuf,
}

impl TmuxServer {
    /// Starts a server holding one detached session called `base`.
    pub fn start() -> Self {
        Self::start_with_session("base")
    }

    /// Starts a server holding one detached 80x24 session called `first`.
    pub fn start_with_session(first: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "ta-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut server = Self {
            name,
            // No dot in the path: tmux turns `.` in session names into `_`,
            // and tests put paths into names.
            home: tempfile::Builder::new()
                .prefix("ta-home-")
                .tempdir()
                .expect("temp HOME"),
            socket: PathBuf::new(),
        };
        server.tmux(&["new-session", "-d", "-s", first, "-x", "80", "-y", "24"]);
        server.socket = server.display(first, "#{socket_path}").into();
        server
    }

    /// Starts the fake Claude (`tests/fixtures/agents/fake-claude.sh`, which
    /// keeps its state in `dir`, made here) in a new detached window of
    /// session `=SESSION:`; its pane id.
    pub fn fake_claude_window(&self, session: &str, dir: &std::path::Path) -> String {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agents/fake-claude.sh");
        std::fs::create_dir_all(dir).unwrap();
        let command = format!("bash {} {}", script.display(), dir.display());
        self.new_window(session, Some(&command))
    }

    /// A new detached window in session `=SESSION:` running `command` (the
    /// default shell without one); its pane id.
    pub fn new_window(&self, session: &str, command: Option<&str>) -> String {
        let target = format!("={session}:");
        let mut args = vec!["new-window", "-d", "-P", "-F", "#{pane_id}", "-t", &target];
        args.extend(command);
        self.tmux(&args).trim().to_owned()
    }

    /// A new detached session `name` running `command`, with `options`
    /// of `new-session` (`-x`, `-y`, `-c`, ...) before it; its one pane's id.
    pub fn new_session(&self, name: &str, options: &[&str], command: &str) -> String {
        let mut args = vec!["new-session", "-d", "-P", "-F", "#{pane_id}", "-s", name];
        args.extend(options);
        args.push(command);
        self.tmux(&args).trim().to_owned()
    }

    /// Starts the fake coding agent (`tests/fixtures/agents/fake-coder.sh`,
    /// which records what it receives in `dir`) as the only pane of a new
    /// detached 200x50 session `name`, reporting its status with
    /// `tmux-agent hook KIND`; its pane id.
    pub fn fake_coder_session(&self, name: &str, kind: &str, dir: &std::path::Path) -> String {
        // The fake reads its hook payloads with jq; without it every
        // message test would fail for a reason far from its cause.
        let jq = Command::new("jq").arg("--version").output();
        assert!(
            super::require(
                jq.is_ok_and(|out| out.status.success()),
                "jq (the fake coding agent)",
                "install jq (scripts/test installs it with apt-get when it can)",
            ),
            "the fake coding agent needs jq"
        );
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agents/fake-coder.sh");
        std::fs::create_dir_all(dir).unwrap();
        let command = format!(
            "bash {} {} {kind} {}",
            script.display(),
            AGENT,
            dir.display()
        );
        self.new_session(name, &["-x", "200", "-y", "50"], &command)
    }

    /// Starts the fake prompt agent
    /// (`tests/fixtures/agents/fake-prompt-agent.py`: a prompt, a line read,
    /// "working", the prompt again; its state and what it received in
    /// `dir`, made here) in a new detached window of session `=SESSION:`;
    /// its pane id, once the agent has said it is idle (its first `Stop`
    /// hook set `@agent-status`). `None` when python3 is missing (see
    /// [`super::require`]).
    pub fn fake_prompt_agent_window(&self, session: &str, dir: &std::path::Path) -> Option<String> {
        let python = Command::new("python3").arg("--version").output();
        if !super::require(
            python.is_ok_and(|out| out.status.success()),
            "python3 (the fake prompt agent)",
            "install python3",
        ) {
            return None;
        }
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agents/fake-prompt-agent.py");
        std::fs::create_dir_all(dir).unwrap();
        let command = format!(
            "python3 '{}' '{}' '{}'",
            script.display(),
            dir.display(),
            AGENT
        );
        let pane = self.new_window(session, Some(&command));
        super::eventually(super::PATIENCE, "the fake prompt agent to be idle", || {
            (self.display(&pane, "#{@agent-status}") == "idle").then_some(())
        });
        Some(pane)
    }

    /// A file (or directory) name in the test HOME.
    pub fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// A control connection to this server, made by the library as the
    /// daemon makes its own, for tests that drive library parts directly;
    /// its handle. It ends when `shutdown` is cancelled. Its notifications
    /// are not read: the connection keeps reading tmux whether or not
    /// anyone takes them.
    pub async fn control(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> tmux_agent::control::connection::ControlHandle {
        use tmux_agent::control::connection::{ConnectOptions, Connection};
        use tmux_agent::control::server::ServerSocket;
        let connection = Connection::open(
            ConnectOptions::new(ServerSocket::Name(self.name.clone())),
            shutdown.clone(),
        )
        .await
        .expect("attach a control connection");
        std::mem::forget(connection.notifications);
        connection.handle
    }

    /// A directory in the test HOME, made (with its parents) if missing.
    pub fn dir(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// `display-message -p -t TARGET FORMAT`, without the final newline.
    pub fn display(&self, target: &str, format: &str) -> String {
        let out = self.tmux(&["display-message", "-p", "-t", target, format]);
        out.strip_suffix('\n').unwrap_or(&out).to_owned()
    }

    /// `$TMUX` as tmux sets it in a pane of this server.
    pub fn tmux_env(&self) -> String {
        let pid = self.tmux(&["display-message", "-p", "#{pid}"]);
        format!("{},{},0", self.socket.display(), pid.trim_end())
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

    /// Kills the server and starts a new one on the same socket, holding one
    /// detached session called `first`: a tmux restarted while its sessions'
    /// calls are remembered elsewhere. tmux's `start_time` has one-second
    /// steps, and a server is told apart from its predecessor by it, so the
    /// new one starts in a later second than the old one did.
    pub fn restart(&mut self, first: &str) {
        let started: i64 = self
            .tmux(&["display-message", "-p", "#{start_time}"])
            .trim()
            .parse()
            .expect("start_time is a number");
        let _ = self.try_tmux(&["kill-server"]);
        super::eventually(super::PATIENCE, "the old tmux server to go", || {
            (!self.is_running()).then_some(())
        });
        super::eventually(super::PATIENCE, "a later second", || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            (now > started).then_some(())
        });
        self.tmux(&["new-session", "-d", "-s", first, "-x", "80", "-y", "24"]);
    }

    /// Whether the server still answers.
    pub fn is_running(&self) -> bool {
        self.try_tmux(&["list-sessions"]).status.success()
    }

    /// A session option as `tmux show-options -v` prints it, without the
    /// final newline; `None` when tmux refuses (no such session or option).
    pub fn option(&self, target: &str, name: &str) -> Option<String> {
        self.shown(&["show-options", "-t", target, name])
    }

    /// A global option as `tmux show-options -gv` prints it, likewise.
    pub fn global_option(&self, name: &str) -> Option<String> {
        self.shown(&["show-options", "-g", name])
    }

    /// Runs `show-options ARGS` twice: without `-v` to learn whether the
    /// option is set (tmux 3.2a answers `-v` for an unset user option with
    /// an empty line and success, later versions fail; without `-v` every
    /// version prints nothing), then with `-v` for the value.
    fn shown(&self, args: &[&str]) -> Option<String> {
        let set = self.try_tmux(args);
        if !set.status.success() || set.stdout.is_empty() {
            return None;
        }
        let out = self.try_tmux(&[&["show-options", "-v"], &args[1..]].concat());
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .trim_end_matches('\n')
                .to_owned()
        })
    }

    /// The id (`$N`) of the session with exactly this name.
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
        // A server that did not answer `kill-server` (busy with a burst, or
        // its socket file already gone) would outlive the test with its
        // clients: every process still named after this socket goes.
        kill_processes_on(&self.name);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// SIGKILLs every process whose command line names the socket `-L NAME`:
/// the server (it keeps its first client's argv) and its clients. The name
/// is unique per test, so nothing else matches.
fn kill_processes_on(name: &str) {
    let needle = format!("-L\0{name}\0");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
        {
            // SAFETY: kill(2) on a pid; at worst it is already gone.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Points `cmd` at the test HOME and away from any outer tmux. The locale is
/// pinned to UTF-8 because tmux decides from it whether a client speaks
/// UTF-8, and tests that send non-ASCII bytes must not depend on the
/// developer's locale.
pub fn clean_env(cmd: &mut Command, home: &std::path::Path) {
    cmd.env_remove("TMUX")
        .env("LC_ALL", "C.UTF-8")
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

impl TerminalClient {
    /// Types `keys` at the terminal, as a person would.
    pub fn type_keys(&mut self, keys: &[u8]) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().expect("the terminal's stdin");
        stdin.write_all(keys).expect("type at the terminal");
        stdin.flush().expect("flush the terminal");
    }
}

impl Drop for TerminalClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
