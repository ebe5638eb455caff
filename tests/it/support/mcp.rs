//! Helpers for the tests that drive the MCP pool and CLI directly (no tmux):
//! server specs for the recording test server, reading its recording,
//! checking processes, and finding the npm MCP servers that
//! `scripts/install-test-deps` puts in `.test-deps/npm`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tmux_agent::config::Knobs;
use tmux_agent::mcp::spec::{Scope, ServerSettings, ServerSpec, Source, StdioSpec, TransportSpec};

// The MCP tests take everything from here (`use crate::support::mcp::*`).
pub use super::{AGENT as TMUX_AGENT, PATIENCE, TEST_SERVER, eventually, eventually_async};

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

/// `.test-deps/npm/node_modules/.bin/NAME`, or `None` when it is missing
/// and the test is to be skipped (outside CI; under `CI=true` a missing
/// server fails the test: see [`super::require`]).
pub fn npm_bin(name: &str) -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".test-deps/npm/node_modules/.bin")
        .join(name);
    super::require(
        bin.exists(),
        &format!("the npm MCP server {}", bin.display()),
        "Run scripts/install-test-deps (it needs npm) to install the npm MCP servers \
         the compatibility tests use; scripts/test does so itself.",
    )
    .then_some(bin)
}
