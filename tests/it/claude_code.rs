//! Claude Code fidelity: configs written by the real `claude` CLI (pinned in
//! scripts/install-test-deps) in a fresh HOME, in every scope, inside and
//! outside a git repository, nested, with `.mcp.json` at several levels, and
//! approvals where Claude Code honours them. From each directory, the
//! servers tmux-agent finds (and whether each waits for approval) must be
//! exactly what `claude mcp list` prints.
//!
//! `claude mcp add` / `claude mcp list` need no network: they read and write
//! local files and health-check each server by starting it (`true` here,
//! which exits at once). Telemetry and non-essential traffic are switched
//! off all the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::mcp::npm_bin;

struct Claude {
    bin: PathBuf,
    home: PathBuf,
}

impl Claude {
    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DISABLE_TELEMETRY", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("TMUX_AGENT_LOG", "warn")
            .current_dir(cwd);
        cmd
    }

    fn run(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.command(&self.bin, cwd).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "claude {args:?} in {}: {}{}",
            cwd.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `claude mcp list`: name → waiting for approval.
    fn list(&self, cwd: &Path) -> BTreeMap<String, bool> {
        self.run(cwd, &["mcp", "list"])
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.split_once(": ")?;
                let status = rest.rsplit(" - ").next()?;
                (!name.contains(' '))
                    .then(|| (name.to_owned(), status.contains("Pending approval")))
            })
            .collect()
    }

    /// tmux-agent's view of the same directory: name → waiting for approval.
    fn ours(&self, cwd: &Path) -> BTreeMap<String, bool> {
        let out = self
            .command(Path::new(crate::support::AGENT), cwd)
            .args(["config", "show", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut found = BTreeMap::new();
        for name in shown["servers"].as_object().unwrap().keys() {
            if name != "builtin" {
                found.insert(name.clone(), false);
            }
        }
        for (name, skipped) in shown["skipped"].as_object().unwrap() {
            let reason = skipped["reason"].as_str().unwrap_or_default();
            // Claude leaves a disabled server out of its list altogether.
            if reason.contains("not approved") {
                found.insert(name.clone(), true);
            }
        }
        found
    }

    fn edit_claude_json(&self, edit: impl FnOnce(&mut Value)) {
        let path = self.home.join(".claude.json");
        let mut value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut value);
        std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    }
}

#[test]
fn servers_and_approvals_match_claude_mcp_list_from_every_directory() {
    let Some(bin) = npm_bin("claude") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Claude Code resolves symlinks in paths it records; so must the test.
    let root = dir.path().canonicalize().unwrap();
    let home = root.join("home");
    let repo = root.join("repo");
    let sub = repo.join("sub");
    let deeper = sub.join("deeper");
    let plain = root.join("plain/a");
    let plain_b = plain.join("b");
    for d in [&home, &deeper, &plain_b] {
        std::fs::create_dir_all(d).unwrap();
    }
    let git = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&repo)
        .status();
    assert!(git.is_ok_and(|s| s.success()), "git init");
    let claude = Claude { bin, home };

    // Every scope, written by the CLI itself.
    claude.run(&repo, &["mcp", "add", "-s", "user", "u1", "--", "true"]);
    claude.run(&repo, &["mcp", "add", "-s", "project", "p1", "--", "true"]);
    claude.run(&repo, &["mcp", "add", "-s", "project", "p3", "--", "true"]);
    claude.run(
        &repo,
        &[
            "mcp", "add", "-s", "local", "l1", "-e", "K=V", "--", "true", "a b",
        ],
    );
    // From a subdirectory of the repository: local goes to the repo's entry.
    claude.run(&sub, &["mcp", "add", "-s", "local", "l2", "--", "true"]);
    claude.run(&sub, &["mcp", "add", "-s", "project", "p2", "--", "true"]);
    // Outside any repository, nested.
    claude.run(&plain, &["mcp", "add", "-s", "local", "n1", "--", "true"]);
    claude.run(
        &plain_b,
        &["mcp", "add", "-s", "project", "n2", "--", "true"],
    );
    claude.run(&plain_b, &["mcp", "add", "-s", "local", "n3", "--", "true"]);
    // A nearer .mcp.json redefines p1 (the nearest wins for both).
    let sub_mcp = sub.join(".mcp.json");
    let mut nearer: Value = serde_json::from_slice(&std::fs::read(&sub_mcp).unwrap()).unwrap();
    nearer["mcpServers"]["p1"] = json!({"type": "stdio", "command": "true", "args": ["nearer"]});
    std::fs::write(&sub_mcp, nearer.to_string()).unwrap();

    let all_dirs = [&repo, &sub, &deeper, &plain, &plain_b, &root];
    let compare = |when: &str| {
        for cwd in all_dirs {
            let theirs = claude.list(cwd);
            assert!(theirs.contains_key("u1"), "{when}: {theirs:?}");
            assert_eq!(claude.ours(cwd), theirs, "{when}, from {}", cwd.display());
        }
    };
    compare("nothing approved");

    // Approvals, as Claude records them: the trust dialog, then the servers
    // approved in ~/.claude.json for the repo; a settings.local.json that
    // approves all in the plain directory.
    let repo_key = repo.display().to_string();
    let plain_key = plain_b.display().to_string();
    // Approved in ~/.claude.json but never trusted: still pending.
    claude.edit_claude_json(|v| {
        v["projects"][&repo_key]["enabledMcpjsonServers"] = json!(["p1"]);
    });
    compare("approved, not trusted");
    assert_eq!(claude.list(&sub).get("p1"), Some(&true));
    // .mcp.json of an ancestor counts from a subdirectory.
    assert_eq!(claude.list(&deeper).get("p3"), Some(&true));
    claude.edit_claude_json(|v| {
        v["projects"][&repo_key]["hasTrustDialogAccepted"] = json!(true);
        v["projects"][&repo_key]["enabledMcpjsonServers"] = json!(["p1"]);
        v["projects"][&plain_key]["hasTrustDialogAccepted"] = json!(true);
    });
    let local = plain_b.join(".claude/settings.local.json");
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    std::fs::write(&local, r#"{"enableAllProjectMcpServers": true}"#).unwrap();
    compare("approved");
    assert_eq!(
        claude.list(&sub).get("p1"),
        Some(&false),
        "the approval took"
    );
    assert_eq!(claude.list(&plain_b).get("n2"), Some(&false));

    // A committed .claude/settings.json cannot approve its own repo's servers.
    std::fs::create_dir_all(repo.join(".claude")).unwrap();
    std::fs::write(
        repo.join(".claude/settings.json"),
        r#"{"enabledMcpjsonServers": ["p2"]}"#,
    )
    .unwrap();
    compare("approved by the repo itself");
    assert_eq!(claude.list(&sub).get("p2"), Some(&true));

    // Approved in the user's own settings: no trust needed.
    std::fs::create_dir_all(claude.home.join(".claude")).unwrap();
    std::fs::write(
        claude.home.join(".claude/settings.json"),
        r#"{"enabledMcpjsonServers": ["p2"]}"#,
    )
    .unwrap();
    compare("approved in ~/.claude/settings.json");
    assert_eq!(claude.list(&sub).get("p2"), Some(&false));
}
