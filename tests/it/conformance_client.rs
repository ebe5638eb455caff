//! Our MCP client (`mcp tools --url`, `mcp call --url`) in the client mode
//! of the official conformance suite, `@modelcontextprotocol/conformance`
//! 0.1.16 on Node 22 (both from `scripts/install-test-deps`), through
//! `scripts/compat/conformance-client`: the scenarios a tools client takes
//! part in. `scripts/check-mcp-compat` runs the whole core suite and
//! counts the scenarios that do not apply (elicitation, OAuth).

use std::path::Path;
use std::process::Command;

use crate::support::{AGENT, require};

#[test]
fn our_client_passes_the_suites_tools_client_scenarios() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let node_bin = repo.join(".test-deps/node22/node_modules/.bin");
    let conformance = node_bin.join("conformance");
    if !require(
        conformance.exists() && node_bin.join("node").exists(),
        &format!(
            "the MCP conformance suite on Node 22 ({})",
            conformance.display()
        ),
        "Run scripts/install-test-deps (it needs npm); scripts/test does so itself.",
    ) {
        return;
    }
    let path = format!(
        "{}:{}",
        node_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for scenario in ["initialize", "tools_call", "sse-retry"] {
        let out_dir = tempfile::tempdir().unwrap();
        let out = Command::new(&conformance)
            .args(["client", "--command"])
            .arg(repo.join("scripts/compat/conformance-client"))
            .args(["--scenario", scenario, "-o"])
            .arg(out_dir.path())
            .env("PATH", &path)
            .env("TMUX_AGENT_BIN", AGENT)
            .env("TMUX_AGENT_LOG", "warn")
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .output()
            .expect("run the conformance suite");
        // The suite reports on stderr and writes each check to
        // <dir>/<scenario>-<time>/checks.json.
        let report = String::from_utf8_lossy(&out.stderr);
        let checks = checks_of(out_dir.path(), scenario)
            .unwrap_or_else(|| panic!("scenario {scenario} wrote no checks.json:\n{report}"));
        let mut passed = 0;
        for check in &checks {
            let (id, status) = (check["id"].as_str().unwrap_or("?"), &check["status"]);
            // How soon the client reconnects after `retry: 500` is a timing
            // check (too late under load is a failure): left to
            // scripts/check-mcp-compat, which runs the suite's verdict.
            if id == "client-sse-retry-timing" {
                continue;
            }
            assert!(
                status == "SUCCESS" || status == "INFO",
                "scenario {scenario}: check {id} is {status}:\n{report}"
            );
            passed += usize::from(status == "SUCCESS");
        }
        assert!(passed > 0, "scenario {scenario} passed no check:\n{report}");
    }
}

/// The checks the suite wrote for `scenario` under `dir`.
fn checks_of(dir: &Path, scenario: &str) -> Option<Vec<serde_json::Value>> {
    let run = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{scenario}-"))
        })?;
    let text = std::fs::read_to_string(run.path().join("checks.json")).ok()?;
    serde_json::from_str(&text).ok()
}
