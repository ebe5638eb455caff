//! What every integration test shares, in one place so that a fix to a
//! fixture is made once:
//!
//! * [`PATIENCE`], the one deadline for "something that should take
//!   milliseconds" ([`wait_for`], [`eventually`]); tests never sleep for a
//!   condition, they poll it until this deadline.
//! * [`require`], how a test that needs something the machine may lack (npm
//!   servers, root) skips outside CI and fails in CI.
//! * [`write_config`] and [`write_claude_json`], the one way tests write a
//!   `config.toml` or a `~/.claude.json` into a test HOME.
//! * The fixtures, one module each: [`tmux`] (a private tmux server),
//!   [`daemon`] (the daemon and CLI run against it), [`rig`] (a daemon wired
//!   to the recording MCP server), [`mcp`] (MCP pool specs for the test and
//!   npm servers) and [`serve`] (a client of `tmux-agent mcp serve`).

pub mod daemon;
pub mod mcp;
pub mod rig;
pub mod serve;
pub mod tmux;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use daemon::{Daemon, LineReader};
pub use tmux::TmuxServer;

/// How long to wait for something that should take milliseconds. Generous
/// because the suite runs on loaded 2-core machines: a deadline is there to
/// end a test that hangs, not to measure speed (tests that make a speed claim
/// say so with their own, explicit bound).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The tmux-agent binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_tmux-agent");

/// The recording MCP server (`src/bin/mcp-test-server.rs`), built for the
/// tests by the `test-server` feature (see Cargo.toml).
pub const TEST_SERVER: &str = env!("CARGO_BIN_EXE_mcp-test-server");

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

/// [`wait_for`] that panics with `what` at the deadline.
pub fn eventually<T>(within: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait_for(within, check).unwrap_or_else(|| panic!("timed out waiting for: {what}"))
}

/// Async version of [`eventually`], polling every 20 ms.
pub async fn eventually_async<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a test may run, given that it needs `what` and `present` says
/// whether the machine has it. Outside CI a missing dependency skips the
/// test with a loud notice (a developer without npm can still run the rest);
/// under `CI=true` it fails the test, so that CI can never pass by silently
/// skipping what it was meant to check. `how` says how to get it.
#[must_use]
pub fn require(present: bool, what: &str, how: &str) -> bool {
    if present {
        return true;
    }
    if in_ci() {
        panic!("this test needs {what}, which is missing (CI=true: not skipping). {how}");
    }
    // Straight to the process's stderr: libtest captures `eprintln!` and
    // shows it only for failing tests, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!! SKIPPED: this test needs {what}, which is missing. {how} !!!\n"
    );
    false
}

/// `CI=true` (or `1`), as CI services set it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Where tmux-agent reads its config in a test HOME (`$XDG_CONFIG_HOME` is
/// `HOME/.config` for every process the fixtures start).
pub fn config_path(home: &Path) -> PathBuf {
    home.join(".config/tmux-agent/config.toml")
}

/// Writes `toml` as tmux-agent's `config.toml` in the test HOME `home`
/// (creating the directories); returns its path.
pub fn write_config(home: &Path, toml: &str) -> PathBuf {
    let path = config_path(home);
    std::fs::create_dir_all(path.parent().unwrap()).expect("create the config directory");
    std::fs::write(&path, toml).expect("write config.toml");
    path
}

/// Writes `json` as Claude's `~/.claude.json` in the test HOME `home`;
/// returns its path.
pub fn write_claude_json(home: &Path, json: &serde_json::Value) -> PathBuf {
    let path = home.join(".claude.json");
    std::fs::write(&path, serde_json::to_string_pretty(json).unwrap()).expect("write .claude.json");
    path
}

/// Lossy UTF-8, for output in assertions.
/// The daemon's outbox database (`outbox-<key>.db`) in `home`'s state
/// directory: not the mailbox (`mailbox-<key>.db`) beside it.
pub fn outbox_file(home: &Path) -> PathBuf {
    std::fs::read_dir(home.join(".local/state/tmux-agent"))
        .expect("the state directory")
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "db")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("outbox-"))
        })
        .expect("an outbox file")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
