//! A daemon wired to the recording test MCP server (`rec`) through a config
//! file, for tests that prove exactly which calls arrived: the reactor's
//! own tests, the fault suite and the hostile-input tests. The recording
//! (one JSON line per request the server saw) is the ground truth: a test
//! asserts on what reached the MCP server, not on what the daemon says.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::daemon::Daemon;
use super::tmux::TmuxServer;
use super::{PATIENCE, TEST_SERVER, wait_for, write_config};
use serde_json::Value;
use tmux_agent::agent::journal::Journal;
use tmux_agent::agent::outbox::Outbox;

/// Register, attach, save and complete, each an `echo` to `rec` carrying
/// its step and idempotency key (so tests can count every action once).
pub const LIFECYCLE: &str = r#"
[[on.session-created]]
server = "rec"
tool = "echo"
args = { step = "register", id = "goal-{session_id}", name = "{session}", goal = "{goal}", type = "{type}", key = "{idempotency_key}" }
keep = { goal_id = "$.id" }

[[on.session-attached]]
server = "rec"
tool = "echo"
args = { step = "attached", goal_id = "{goal_id}", key = "{idempotency_key}" }

[[on.session-detached]]
server = "rec"
tool = "echo"
args = { step = "save", name = "{session}", context = "{context}", key = "{idempotency_key}" }

[[on.session-closed]]
server = "rec"
tool = "echo"
args = { step = "complete", goal_id = "{goal_id}", name = "{session}", key = "{idempotency_key}" }
"#;

/// A private tmux server whose test HOME has a config naming the recording
/// server `rec` (and the actions given), with the daemon started on demand.
pub struct Rig {
    pub server: TmuxServer,
    /// The recording server's record file.
    pub record: PathBuf,
    /// While this file exists, the recording server exits at once (down).
    pub down: PathBuf,
}

impl Rig {
    /// `actions` is TOML for `[[on.*]]` entries calling server `rec`.
    pub fn new(actions: &str) -> Self {
        Self::with_server_args(&[], "", actions)
    }

    /// [`Rig::new`] with extra arguments for the recording server and the
    /// rest of its `[servers.rec]` table (empty: 5 s connect and call
    /// timeouts).
    pub fn with_server_args(args: &[&str], server_toml: &str, actions: &str) -> Self {
        let server = TmuxServer::start();
        let home = server.home.path();
        let record = home.join("record.jsonl");
        let down = home.join("server-is-down");
        let mut argv = vec![
            "--record",
            record.to_str().unwrap(),
            "--down-if-exists",
            down.to_str().unwrap(),
        ];
        argv.extend_from_slice(args);
        let config = format!(
            "[mcp]\nimport_claude = false\n\n[reactor]\npreset = \"none\"\n\n\
             [servers.rec]\ncommand = {command:?}\nargs = {argv:?}\n{server_toml}\n\n{actions}",
            command = TEST_SERVER,
            server_toml = if server_toml.is_empty() {
                "connect_timeout = \"5s\"\ncall_timeout = \"5s\""
            } else {
                server_toml
            },
        );
        write_config(home, &config);
        Self {
            server,
            record,
            down,
        }
    }

    /// Starts a foreground daemon and waits until it has attached.
    pub fn start_daemon(&self) -> Daemon {
        let mut cmd = self.server.agent();
        cmd.arg("daemon");
        self.start_daemon_with(cmd)
    }

    /// [`Rig::start_daemon`] for a daemon command the caller has prepared
    /// (environment, limits).
    pub fn start_daemon_with(&self, cmd: std::process::Command) -> Daemon {
        Daemon::spawn(&self.server, cmd)
    }

    /// A global option, empty when unset.
    pub fn global(&self, name: &str) -> String {
        self.server.global_option(name).unwrap_or_default()
    }

    /// A session option, empty when unset.
    pub fn option(&self, target: &str, name: &str) -> String {
        self.server.option(target, name).unwrap_or_default()
    }

    /// `tmux-agent status --json`, which must succeed.
    pub fn status(&self) -> Value {
        let out = self
            .server
            .agent()
            .args(["status", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    /// Every `tools/call` the recording server received, in order.
    pub fn calls(&self) -> Vec<Value> {
        read_calls(&self.record)
    }

    /// Every line of the record with this `event`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        read_record(&self.record)
            .into_iter()
            .filter(|e| e["event"] == event)
            .collect()
    }

    /// Waits until `n` calls have arrived.
    pub fn wait_calls(&self, n: usize) -> Vec<Value> {
        wait_for(PATIENCE, || {
            let calls = self.calls();
            (calls.len() >= n).then_some(calls)
        })
        .unwrap_or_else(|| panic!("expected {n} calls, got {:#?}", self.calls()))
    }

    /// The daemon's lifecycle journal as its outbox holds it now (empty
    /// before the first daemon wrote one). The outbox is found under the
    /// test HOME's state directory by its name, whatever the file is called
    /// per server.
    pub fn journal(&self) -> Journal {
        let Some(path) = find_outbox(&self.server.home.path().join(".local/state")) else {
            return Journal::default();
        };
        Outbox::open_read_only(&path)
            .ok()
            .flatten()
            .and_then(|outbox| outbox.journal().ok())
            .unwrap_or_default()
    }

    /// The daemon's outbox, opened read-only beside it (`None` before the
    /// first daemon made one).
    pub fn outbox(&self) -> Option<Outbox> {
        let path = find_outbox(&self.server.home.path().join(".local/state"))?;
        Outbox::open_read_only(&path).ok().flatten()
    }

    /// Waits until the daemon says no action is open.
    pub fn wait_settled(&self) {
        wait_for(PATIENCE, || {
            (self.global("@agent-pending") == "0").then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "@agent-pending never went back to 0 (it is {:?})",
                self.global("@agent-pending")
            )
        });
    }
}

/// The one outbox database (`outbox*.db`) under `dir`, searched in depth.
fn find_outbox(dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if let Some(found) = find_outbox(&path) {
                return Some(found);
            }
        } else if name.starts_with("outbox") && name.ends_with(".db") {
            return Some(path);
        }
    }
    None
}

fn read_record(record: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

pub fn read_calls(record: &Path) -> Vec<Value> {
    read_record(record)
        .into_iter()
        .filter(|e| e["event"] == "request" && e["method"] == "tools/call")
        .collect()
}

/// How many times each idempotency key (`arguments.key`) was called.
pub fn keys_by_step(calls: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for call in calls {
        if let Some(key) = call["arguments"]["key"].as_str() {
            *counts.entry(key.to_owned()).or_default() += 1;
        }
    }
    counts
}
