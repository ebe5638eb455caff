//! Helpers shared by the MCP integration tests: building server specs for
//! the test server, reading its recording, polling with a deadline, and
//! checking processes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tmux_agent::config::Knobs;
use tmux_agent::mcp::spec::{Scope, ServerSettings, ServerSpec, Source, StdioSpec, TransportSpec};

/// The test server binary built with this package.
pub const TEST_SERVER: &str = env!("CARGO_BIN_EXE_mcp-test-server");
/// The tmux-agent binary.
pub const TMUX_AGENT: &str = env!("CARGO_BIN_EXE_tmux-agent");

/// A stdio spec running the test server with `args`, recording to `record`.
pub fn test_server(name: &str, record: &Path, args: &[&str], knobs: Knobs) -> ServerSpec {
    let mut all = vec!["--record".to_string(), record.display().to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let transport = TransportSpec::Stdio(StdioSpec {
        command: TEST_SERVER.to_string(),
        args: all,
        env: BTreeMap::new(),
        cwd: None,
    });
    spec(name, transport, knobs)
}

/// A spec for `transport` with `knobs` over the defaults.
pub fn spec(name: &str, transport: TransportSpec, knobs: Knobs) -> ServerSpec {
    ServerSpec {
        name: name.to_string(),
        source: Source {
            file: PathBuf::from("test"),
            scope: Scope::Config,
        },
        settings: ServerSettings::resolve(&transport, knobs, BTreeMap::new()),
        transport,
    }
}

/// A duration knob.
pub fn dur(ms: u64) -> Option<tmux_agent::config::ConfigDuration> {
    Some(tmux_agent::config::ConfigDuration(Duration::from_millis(
        ms,
    )))
}

/// The recording's lines so far.
pub fn recording(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Recording lines with `event` (and, if given, `method`).
pub fn events(path: &Path, event: &str, method: Option<&str>) -> Vec<Value> {
    recording(path)
        .into_iter()
        .filter(|e| e["event"] == event)
        .filter(|e| method.is_none_or(|m| e["method"] == m))
        .collect()
}

/// Polls `check` every 20 ms until it returns Some, or panics after
/// `within` with `what`.
pub fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async version of [`eventually`].
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

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// The pids (server, grandchild) named in the recording's start events.
pub fn started_pids(record: &Path) -> Vec<u64> {
    events(record, "start", None)
        .iter()
        .flat_map(|e| [e["pid"].as_u64(), e["grandchild_pid"].as_u64()])
        .flatten()
        .collect()
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// `.test-deps/npm/node_modules/.bin`, or None (with a loud message) when
/// `scripts/install-test-deps` has not been run.
pub fn npm_bin(name: &str) -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".test-deps/npm/node_modules/.bin")
        .join(name);
    if bin.exists() {
        Some(bin)
    } else {
        eprintln!(
            "\n!!! SKIPPED: {} is missing. Run scripts/install-test-deps to install the npm MCP \
             servers these tests use (CI always does). !!!\n",
            bin.display()
        );
        None
    }
}
