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

/// How long the interactive CLI may take to show a screen: its first start
/// in a fresh HOME took 15 s here on a quiet machine.
const CLAUDE_SCREEN: std::time::Duration = std::time::Duration::from_secs(120);

/// The interactive `claude` in a pane of a private tmux server, driven with
/// `send-keys` and read with `capture-pane`, as a person at a terminal.
struct Terminal<'a> {
    server: &'a crate::support::tmux::TmuxServer,
    pane: String,
}

impl Terminal<'_> {
    fn screen(&self) -> String {
        self.server.tmux(&["capture-pane", "-p", "-t", &self.pane])
    }

    /// Waits until a line of the screen holds every one of `parts`; panics
    /// with the screen as it is when that does not come.
    fn wait_for_line(&self, parts: &[&str]) {
        let found = crate::support::wait_for(CLAUDE_SCREEN, || {
            let screen = self.screen();
            screen
                .lines()
                .any(|line| parts.iter().all(|p| line.contains(p)))
                .then_some(())
        });
        if found.is_none() {
            panic!(
                "no line with {parts:?} on claude's screen within {CLAUDE_SCREEN:?}; it shows:\n{}",
                self.screen()
            );
        }
    }

    /// Presses `key` and waits a moment for the screen to change. A key
    /// pressed before a dialog takes input is lost; the callers look again
    /// and press again.
    fn press(&self, key: &str) {
        let before = self.screen();
        self.server.tmux(&["send-keys", "-t", &self.pane, key]);
        crate::support::wait_for(KEY_ECHO, || (self.screen() != before).then_some(()));
    }

    /// Drives the screen towards a goal: `step` looks at the screen and
    /// either says it is done or names the key to press; panics with the
    /// screen when the goal is not reached in time.
    fn drive(&self, what: &str, step: impl Fn(&str) -> Option<&'static str>) {
        let done = crate::support::wait_for(CLAUDE_SCREEN, || {
            let screen = self.screen();
            match step(&screen) {
                None => Some(()),
                Some(key) => {
                    self.press(key);
                    None
                }
            }
        });
        if done.is_none() {
            panic!(
                "{what}: not done within {CLAUDE_SCREEN:?}; claude shows:\n{}",
                self.screen()
            );
        }
    }
}

/// How long a key press may take to show on the screen (a loaded machine
/// is slow to redraw; a key pressed again too soon undoes a Space).
const KEY_ECHO: std::time::Duration = std::time::Duration::from_secs(10);

/// The line of a selection list the cursor (`❯`) is on.
fn cursor_line(screen: &str) -> &str {
    screen.lines().find(|l| l.contains('❯')).unwrap_or_default()
}

/// Claude Code's own approval of `.mcp.json` servers, not a model of it:
/// the real CLI runs interactively in a fresh HOME (no login: an API key
/// that is never used, and onboarding marked done), shows its trust dialog
/// and then "N new MCP servers found in this project"; the test answers
/// both with keys as a person would (trust; keep alpha and gamma, untick
/// beta). What Claude wrote is then read by tmux-agent exactly as `claude
/// mcp list` reads it: `hasTrustDialogAccepted` in `~/.claude.json`, and
/// the choice in `<project>/.claude/settings.local.json`.
#[test]
fn project_servers_approved_in_claudes_own_dialogs_are_the_ones_we_run() {
    let Some(bin) = npm_bin("claude") else {
        return;
    };
    let server = crate::support::tmux::TmuxServer::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let home = root.join("home");
    let repo = root.join("repo");
    let sub = repo.join("sub");
    for d in [&home, &sub] {
        std::fs::create_dir_all(d).unwrap();
    }
    let git = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&repo)
        .status();
    assert!(git.is_ok_and(|s| s.success()), "git init");
    std::fs::write(
        repo.join(".mcp.json"),
        json!({"mcpServers": {
            "alpha": {"command": "true"}, "beta": {"command": "true"}, "gamma": {"command": "true"}
        }})
        .to_string(),
    )
    .unwrap();
    // Skips the first-run screens that need the network (login, the
    // "Unable to connect to Anthropic services" check of onboarding) and
    // the question whether to use the key from the environment.
    std::fs::write(
        home.join(".claude.json"),
        json!({"hasCompletedOnboarding": true,
               "customApiKeyResponses": {"approved": ["dummy"], "rejected": []}})
        .to_string(),
    )
    .unwrap();
    let claude = Claude {
        bin: bin.clone(),
        home: home.clone(),
    };
    let pending = BTreeMap::from([
        ("alpha".to_owned(), true),
        ("beta".to_owned(), true),
        ("gamma".to_owned(), true),
    ]);
    assert_eq!(claude.list(&repo), pending, "before the dialogs");
    assert_eq!(claude.ours(&repo), pending);

    let command = [
        "env",
        "-i",
        &format!("HOME={}", home.display()),
        &format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
        "TERM=xterm-256color",
        "ANTHROPIC_API_KEY=dummy",
        "DISABLE_TELEMETRY=1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
        bin.to_str().unwrap(),
    ]
    .map(|word| shlex::try_quote(word).unwrap().into_owned())
    .join(" ");
    // Keeps the screen of a CLI that exits, so a failure can show it.
    server.tmux(&["set-option", "-wg", "remain-on-exit", "on"]);
    let pane = server.new_session(
        "claude",
        &["-x", "120", "-y", "40", "-c", repo.to_str().unwrap()],
        &command,
    );
    let terminal = Terminal {
        server: &server,
        pane,
    };

    // "Accessing workspace: … Is this a project you created or one you
    // trust?", the cursor on "No, exit".
    terminal.wait_for_line(&["Yes, I trust this folder"]);
    terminal.drive("trusting the folder", |screen| {
        if !screen.contains("Yes, I trust this folder") {
            None
        } else if cursor_line(screen).contains("Yes, I trust this folder") {
            Some("Enter")
        } else {
            Some("Down")
        }
    });

    // "3 new MCP servers found in this project … Space to select", each
    // ticked: untick beta, then "Enable selected".
    terminal.wait_for_line(&["3 new MCP servers found in this project"]);
    let wanted = [("alpha", true), ("beta", false), ("gamma", true)];
    terminal.drive("choosing the servers", |screen| {
        if !screen.contains("new MCP servers found") {
            return None;
        }
        let ticked = |line: &str, name: &str| {
            line.ends_with(&format!("[✔] {name}"))
                .then_some(true)
                .or_else(|| line.ends_with(&format!("[ ] {name}")).then_some(false))
        };
        let state_of = |name: &str| screen.lines().find_map(|l| ticked(l.trim_end(), name));
        let cursor = cursor_line(screen).trim_end();
        let all_right = wanted.iter().all(|(name, on)| state_of(name) == Some(*on));
        if cursor.ends_with("Enable selected") {
            return Some(if all_right { "Enter" } else { "Up" });
        }
        match wanted
            .iter()
            .find(|(name, _)| ticked(cursor, name).is_some())
        {
            Some((name, on)) if ticked(cursor, name) != Some(*on) => Some("Space"),
            _ => Some("Down"),
        }
    });

    let local = repo.join(".claude/settings.local.json");
    let written = crate::support::wait_for(CLAUDE_SCREEN, || {
        let value: Value = serde_json::from_slice(&std::fs::read(&local).ok()?).ok()?;
        value
            .get("disabledMcpjsonServers")
            .is_some()
            .then_some(value)
    })
    .unwrap_or_else(|| {
        panic!(
            "no approval written to {}:\n{}",
            local.display(),
            terminal.screen()
        )
    });
    server.tmux(&["kill-session", "-t", "=claude"]);

    // Where Claude put the answers: the same places tmux-agent reads.
    assert_eq!(written["enabledMcpjsonServers"], json!(["alpha", "gamma"]));
    assert_eq!(written["disabledMcpjsonServers"], json!(["beta"]));
    let state: Value =
        serde_json::from_slice(&std::fs::read(home.join(".claude.json")).unwrap()).unwrap();
    assert_eq!(
        state["projects"][repo.display().to_string()]["hasTrustDialogAccepted"],
        json!(true)
    );

    // And what each side makes of it, from the repo and below it: alpha and
    // gamma approved, beta (disabled) left out of Claude's list.
    let approved = BTreeMap::from([("alpha".to_owned(), false), ("gamma".to_owned(), false)]);
    for cwd in [&repo, &sub] {
        assert_eq!(
            claude.list(cwd),
            approved,
            "claude mcp list from {}",
            cwd.display()
        );
        assert_eq!(
            claude.ours(cwd),
            approved,
            "tmux-agent from {}",
            cwd.display()
        );
    }
}
