//! Config discovery against a temporary HOME and working directory:
//! precedence between config.toml and Claude's files, env expansion,
//! overlays, skipped servers, and the `config check` / `config show` CLI.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::mcp::*;
use serde_json::{Value, json};
use tmux_agent::mcp::discovery::{DiscoveryInput, discover};
use tmux_agent::mcp::spec::{Scope, TransportSpec};

struct Fixture {
    _dir: tempfile::TempDir,
    home: PathBuf,
    cwd: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempdir();
        let home = dir.path().join("home");
        let cwd = dir.path().join("src/project/sub");
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(home.join(".config/tmux-agent")).unwrap();
        std::fs::create_dir_all(home.join(".config/Claude")).unwrap();
        Fixture {
            _dir: dir,
            home,
            cwd,
        }
    }

    fn write(&self, path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn config_toml(&self, text: &str) {
        crate::support::write_config(&self.home, text);
    }

    fn input(&self, vars: &[(&str, &str)]) -> DiscoveryInput {
        let mut map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("HOME".into(), self.home.display().to_string());
        DiscoveryInput {
            home: self.home.clone(),
            cwd: self.cwd.clone(),
            config_file: None,
            vars: map,
        }
    }

    fn project_dir(&self) -> PathBuf {
        self.cwd.parent().unwrap().to_path_buf()
    }
}

fn stdio_command(transport: &TransportSpec) -> &str {
    match transport {
        TransportSpec::Stdio(s) => &s.command,
        other => panic!("not stdio: {other:?}"),
    }
}

#[test]
fn precedence_is_config_then_local_then_project_then_user_then_desktop() {
    let f = Fixture::new();
    f.config_toml("[servers.a]\ncommand = \"from-config\"\n");
    let project = f.project_dir();
    // A git work tree: Claude Code keys the project on its root, not cwd.
    std::fs::create_dir_all(project.join(".git")).unwrap();
    crate::support::write_claude_json(
        &f.home,
        &json!({
            "mcpServers": {
                "a": {"command": "from-user"}, "b": {"command": "from-user"},
                "c": {"command": "from-user"}, "d": {"command": "from-user"}
            },
            "projects": {
                project.display().to_string(): {
                    "mcpServers": {"a": {"command": "from-local"}, "b": {"command": "from-local"}},
                    "hasTrustDialogAccepted": true,
                    "enabledMcpjsonServers": ["b", "c"]
                },
                "/somewhere/else": {"mcpServers": {"e": {"command": "other-project"}}}
            }
        }),
    );
    // .mcp.json in an ancestor of cwd (the project root).
    f.write(
        &project.join(".mcp.json"),
        &json!({"mcpServers": {"b": {"command": "from-project"}, "c": {"command": "from-project"}}}).to_string(),
    );
    f.write(
        &f.home.join(".config/Claude/claude_desktop_config.json"),
        &json!({"mcpServers": {"d": {"command": "from-desktop"}, "f": {"command": "from-desktop"}}}).to_string(),
    );
    let found = discover(&f.input(&[]));
    assert_eq!(found.problems, vec![]);
    let by_name: HashMap<_, _> = found.servers.iter().map(|s| (s.name.as_str(), s)).collect();
    let winner = |name: &str| stdio_command(&by_name[name].transport).to_string();
    assert_eq!(winner("a"), "from-config");
    assert_eq!(winner("b"), "from-local");
    assert_eq!(winner("c"), "from-project");
    assert_eq!(winner("d"), "from-user");
    assert_eq!(winner("f"), "from-desktop");
    assert!(
        !by_name.contains_key("e"),
        "another project's servers stay out"
    );
    assert_eq!(
        by_name["b"].source.scope,
        Scope::ClaudeLocal {
            project: project.clone()
        }
    );
    assert_eq!(by_name["c"].source.file, project.join(".mcp.json"));
    assert_eq!(by_name["f"].source.scope, Scope::ClaudeDesktop);
    assert_eq!(found.files_read.len(), 4);
}

#[test]
fn project_servers_run_only_once_approved() {
    let f = Fixture::new();
    f.write(
        &f.cwd.join(".mcp.json"),
        &json!({"mcpServers": {
            "x": {"command": "x"}, "y": {"command": "y"}, "z": {"command": "z"}
        }})
        .to_string(),
    );
    let names = |found: &tmux_agent::mcp::discovery::Discovered| -> Vec<String> {
        found
            .servers
            .iter()
            .map(|s| s.name.clone())
            .filter(|n| n != "builtin")
            .collect()
    };
    // Nothing approved: every one is skipped, saying how to approve it.
    let found = discover(&f.input(&[]));
    assert!(names(&found).is_empty(), "{:?}", names(&found));
    let skipped = found.skipped.iter().find(|s| s.name == "x").unwrap();
    assert!(
        skipped.reason.contains("not approved") && skipped.reason.contains("enabled = true"),
        "{}",
        skipped.reason
    );
    // Approved in Claude Code (one by name), and one by our own config.
    // Claude Code honours approvals in ~/.claude.json only in a trusted
    // project (its trust dialog sets hasTrustDialogAccepted).
    let claude = |mut project: serde_json::Value| {
        project["hasTrustDialogAccepted"] = json!(true);
        crate::support::write_claude_json(
            &f.home,
            &json!({"projects": {f.cwd.display().to_string(): project}}),
        );
    };
    claude(json!({"enabledMcpjsonServers": ["x"]}));
    f.config_toml("[servers.y]\nenabled = true\n");
    assert_eq!(names(&discover(&f.input(&[]))), ["x", "y"]);
    // Everything approved; a disabled one still stays off.
    claude(json!({"enableAllProjectMcpServers": true, "disabledMcpjsonServers": ["z"]}));
    assert_eq!(names(&discover(&f.input(&[]))), ["x", "y"]);
    claude(json!({}));
    f.config_toml("[mcp]\ntrust_project_servers = true\n");
    assert_eq!(names(&discover(&f.input(&[]))), ["x", "y", "z"]);
}

#[test]
fn variables_are_expanded_and_a_missing_one_skips_the_server_with_a_warning() {
    let f = Fixture::new();
    f.config_toml("[mcp]\ntrust_project_servers = true\n");
    f.write(
        &f.cwd.join(".mcp.json"),
        &json!({"mcpServers": {
            "goals": {"type": "http", "url": "${GOALS_URL:-http://127.0.0.1:8080}/mcp",
                      "headers": {"Authorization": "Bearer ${TOKEN}"}},
            "memory": {"command": "npx", "args": ["-y", "${PKG}"], "env": {"MEMORY_FILE_PATH": "${HOME}/m.jsonl"}},
            "secret": {"type": "http", "url": "https://x/mcp", "headers": {"Authorization": "Bearer ${MISSING}"}},
            "legacy": {"type": "sse", "url": "https://example.com/sse"}
        }})
        .to_string(),
    );
    let found = discover(&f.input(&[
        ("TOKEN", "t0k"),
        ("PKG", "@modelcontextprotocol/server-memory"),
    ]));
    let by_name: HashMap<_, _> = found.servers.iter().map(|s| (s.name.as_str(), s)).collect();
    match &by_name["goals"].transport {
        TransportSpec::Http { url, headers } => {
            assert_eq!(url, "http://127.0.0.1:8080/mcp");
            assert_eq!(headers["Authorization"], "Bearer t0k");
        }
        other => panic!("{other:?}"),
    }
    match &by_name["memory"].transport {
        TransportSpec::Stdio(s) => {
            assert_eq!(s.args, ["-y", "@modelcontextprotocol/server-memory"]);
            assert_eq!(
                s.env["MEMORY_FILE_PATH"],
                format!("{}/m.jsonl", f.home.display())
            );
        }
        other => panic!("{other:?}"),
    }
    let skipped: HashMap<_, _> = found.skipped.iter().map(|s| (s.name.as_str(), s)).collect();
    assert!(
        skipped["secret"].reason.contains("${MISSING} is not set"),
        "{:?}",
        skipped["secret"]
    );
    assert!(
        skipped["legacy"]
            .reason
            .contains("HTTP+SSE transport is not supported"),
        "{:?}",
        skipped["legacy"]
    );
    let warning = found
        .warnings
        .iter()
        .find(|w| w.key == "mcpServers.secret.headers.Authorization")
        .expect("a warning naming the key");
    assert_eq!(warning.file, f.cwd.join(".mcp.json"));
    assert!(
        warning.message.contains("server `secret` skipped") && warning.message.contains("MISSING")
    );
    // Claude's files are not ours: their mistakes are warnings, not problems.
    assert_eq!(found.problems, vec![]);
}

#[test]
fn config_overlays_tune_imported_servers_and_can_disable_them() {
    let f = Fixture::new();
    crate::support::write_claude_json(
        &f.home,
        &json!({"mcpServers": {"memory": {"command": "npx"}, "noisy": {"command": "x"}}}),
    );
    f.config_toml(
        r#"
        [mcp]
        call_timeout = "12s"
        [servers.memory]
        concurrency = 1
        connect_timeout = "45s"
        [servers.memory.tool_timeouts]
        read_graph = "2s"
        [servers.noisy]
        enabled = false
        [servers.typo]
        call_timeout = 5
        "#,
    );
    let found = discover(&f.input(&[]));
    let memory = found.servers.iter().find(|s| s.name == "memory").unwrap();
    assert_eq!(memory.source.scope, Scope::ClaudeUser);
    assert_eq!(memory.settings.connect_timeout.as_secs(), 45);
    assert_eq!(memory.settings.call_timeout.as_secs(), 12);
    assert_eq!(memory.settings.call_timeout_for("read_graph").as_secs(), 2);
    assert!(
        found
            .skipped
            .iter()
            .any(|s| s.name == "noisy" && s.reason.starts_with("disabled"))
    );
    assert_eq!(found.problems.len(), 1, "{:?}", found.problems);
    assert_eq!(found.problems[0].key, "servers.typo");
}

#[test]
fn a_claude_json_caught_mid_write_is_reported_after_retries_and_xdg_is_honoured() {
    let f = Fixture::new();
    f.write(&f.home.join(".claude.json"), "{\"mcpServers\": {\"a\": ");
    let xdg = f.home.join("xdg");
    f.write(
        &xdg.join("tmux-agent/config.toml"),
        "[servers.x]\ncommand = \"x\"\n",
    );
    let found = discover(&f.input(&[("XDG_CONFIG_HOME", xdg.to_str().unwrap())]));
    assert_eq!(found.problems.len(), 1);
    let problem = found.problems[0].to_string();
    assert!(
        problem.starts_with(&format!(
            "{}: -: not valid JSON after 5 reads",
            f.home.join(".claude.json").display()
        )),
        "{problem}"
    );
    // The XDG config.toml was read (its server is there beside the built-in one).
    assert!(
        found.servers.iter().any(|s| s.name == "x"),
        "{:?}",
        found.servers
    );
    assert_eq!(found.config_path, xdg.join("tmux-agent/config.toml"));
}

fn cli(f: &Fixture, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(TMUX_AGENT)
        .args(args)
        .env_clear()
        .env("HOME", &f.home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SECRET", "hunter2")
        .current_dir(&f.cwd)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_names_file_and_key_for_each_problem() {
    let f = Fixture::new();
    f.config_toml("[servers.a]\ncomand = \"x\"\n[servers.b]\ncommand = \"y\"\nconnect_timeout = \"soon\"\n[deamon]\n");
    let (code, stdout, _) = cli(&f, &["config", "check"]);
    assert_eq!(code, 1, "{stdout}");
    let file = f
        .home
        .join(".config/tmux-agent/config.toml")
        .display()
        .to_string();
    let lines: Vec<_> = stdout.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{file}: deamon: unknown key; expected one of `mcp`, `servers`"
        ))),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{file}: servers.a.comand: unknown key; expected one of `type`, `command`"
        ))),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{file}: servers.b.connect_timeout: `soon` is not a duration"
        ))),
        "{stdout}"
    );

    f.config_toml("[servers.a]\ncommand = \"x\"\n");
    let (code, stdout, _) = cli(&f, &["config", "check"]);
    assert_eq!(code, 0, "{stdout}");
    // `a` and the built-in server.
    assert!(stdout.starts_with("config OK: 2 MCP server(s)"), "{stdout}");
}

#[test]
fn config_show_masks_secrets_and_names_sources() {
    let f = Fixture::new();
    f.config_toml(
        "[servers.web]\nurl = \"http://127.0.0.1:9/mcp\"\nheaders = { Authorization = \"Bearer ${SECRET}\" }\n\
         [servers.local]\ncommand = \"srv\"\nenv = { API_KEY = \"${SECRET}\" }\n",
    );
    let (code, stdout, stderr) = cli(&f, &["config", "show", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("hunter2"), "a secret leaked: {stdout}");
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        shown["servers"]["web"]["headers"]["Authorization"],
        "********"
    );
    assert_eq!(shown["servers"]["local"]["env"]["API_KEY"], "********");
    assert_eq!(
        shown["servers"]["local"]["source"],
        json!(f.home.join(".config/tmux-agent/config.toml"))
    );
    assert_eq!(shown["servers"]["web"]["settings"]["concurrency"], 4);
    assert_eq!(shown["servers"]["local"]["settings"]["concurrency"], 1);
    let (code, toml_out, _) = cli(&f, &["config", "show"]);
    assert_eq!(code, 0);
    assert!(!toml_out.contains("hunter2"));
    assert!(toml_out.contains("[servers.web]"), "{toml_out}");
}

/// The built-in server takes 8 calls at once unless told otherwise; a
/// generic stdio server keeps 1 (server-memory loses concurrent writes).
#[test]
fn the_builtin_server_defaults_to_concurrency_8_and_can_be_tuned() {
    let f = Fixture::new();
    f.config_toml("[servers.plain]\ncommand = \"x\"\n");
    let found = discover(&f.input(&[]));
    let concurrency = |name: &str| {
        found
            .servers
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .settings
            .concurrency
    };
    assert_eq!(concurrency("builtin"), 8);
    assert_eq!(concurrency("plain"), 1);
    f.config_toml("[servers.builtin]\nconcurrency = 2\n");
    let found = discover(&f.input(&[]));
    let builtin = found.servers.iter().find(|s| s.name == "builtin").unwrap();
    assert_eq!(builtin.settings.concurrency, 2);
}
