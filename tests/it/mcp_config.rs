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

/// Other agents' files, copied from `tests/fixtures/mcp-configs/` (shaped
/// like the files Codex CLI, Gemini CLI, Cursor and VS Code write, from
/// their documentation) into a temporary HOME and a git project whose
/// subdirectory is the working directory. Commands do not exist and URLs
/// point at a loopback port nothing listens on: nothing here starts a
/// server or leaves the machine.
struct Agents {
    _dir: tempfile::TempDir,
    home: PathBuf,
    project: PathBuf,
    cwd: PathBuf,
}

/// The variables the fixtures name, as a user's shell would have them.
const AGENT_VARS: &[(&str, &str)] = &[
    ("DB_CONNECTION_STRING", "sqlite:///db"),
    ("EXTERNAL_API_KEY", "ext-key"),
    ("EXTERNAL_SERVICE_TOKEN", "svc-token"),
    ("GEMINI_HTTP_TOKEN", "gem-token"),
    ("CURSOR_API_KEY", "cur-key"),
    ("CURSOR_REMOTE_TOKEN", "rem-token"),
    ("FIGMA_OAUTH_TOKEN", "fig-token"),
    ("TRACKER_KEY", "trk-key"),
    ("PWD", "/work/here"),
    ("GEMINI_PROJECT_TOKEN", "gem-project"),
];

impl Agents {
    fn new() -> Agents {
        let dir = tempdir();
        let home = dir.path().join("home");
        let project = dir.path().join("code/app");
        let cwd = project.join("services/api");
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(project.join(".git")).unwrap();
        std::fs::create_dir_all(home.join(".config/tmux-agent")).unwrap();
        let agents = Agents {
            _dir: dir,
            home,
            project,
            cwd,
        };
        let project = agents.project.display().to_string();
        agents.fixture(
            "codex-user.toml",
            &agents.home.join(".codex/config.toml"),
            &project,
        );
        agents.fixture(
            "codex-project.toml",
            &agents.project.join(".codex/config.toml"),
            "",
        );
        agents.fixture(
            "codex-subdir.toml",
            &agents.cwd.join(".codex/config.toml"),
            "",
        );
        agents.fixture(
            "gemini-settings.json",
            &agents.home.join(".gemini/settings.json"),
            "",
        );
        agents.fixture(
            "gemini-project.json",
            &agents.cwd.join(".gemini/settings.json"),
            "",
        );
        agents.fixture(
            "cursor-project.json",
            &agents.project.join(".cursor/mcp.json"),
            "",
        );
        agents.fixture("cursor.env", &agents.project.join(".env"), "");
        let vscode = agents.home.join(".config/Code/User");
        agents.fixture("vscode-user-mcp.json", &vscode.join("mcp.json"), "");
        agents.fixture(
            "vscode-user-settings.json",
            &vscode.join("settings.json"),
            "",
        );
        agents.write(
            &agents.home.join(".mcp/memory.env"),
            "MEMORY_FILE_PATH=/overridden/by/env\nMEMORY_EXTRA=1\n",
        );
        // The Cursor project's first server approved in our config; its
        // second, `remote`, left waiting.
        crate::support::write_config(&agents.home, "[servers.server-name]\nenabled = true\n");
        agents
    }

    fn write(&self, path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Copies a fixture, with `@PROJECT@` standing for the project's path.
    fn fixture(&self, name: &str, to: &Path, project: &str) {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp-configs");
        let text = std::fs::read_to_string(from.join(name)).unwrap();
        self.write(to, &text.replace("@PROJECT@", project));
    }

    fn input(&self) -> DiscoveryInput {
        let mut vars: HashMap<String, String> = AGENT_VARS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.insert("HOME".into(), self.home.display().to_string());
        DiscoveryInput {
            home: self.home.clone(),
            cwd: self.cwd.clone(),
            config_file: None,
            vars,
        }
    }

    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(TMUX_AGENT)
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TMUX_AGENT_LOG", "error")
            .envs(AGENT_VARS.iter().copied())
            .current_dir(&self.cwd)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `mcp servers --offline --json`: name → (transport, state, file, scope).
    fn listed(&self) -> HashMap<String, (String, String, String, String)> {
        let (code, stdout, stderr) = self.cli(&["mcp", "servers", "--offline", "--json"]);
        assert_eq!(code, 0, "{stderr}");
        let listed: Value = serde_json::from_str(&stdout).unwrap();
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (
                    text(&s["name"]),
                    (
                        text(&s["transport"]),
                        text(&s["state"]),
                        text(&s["source"]["file"]),
                        text(&s["source"]["scope"]["scope"]),
                    ),
                )
            })
            .collect()
    }
}

fn stdio_of(spec: &tmux_agent::mcp::spec::ServerSpec) -> &tmux_agent::mcp::spec::StdioSpec {
    match &spec.transport {
        TransportSpec::Stdio(s) => s,
        other => panic!("{}: not stdio: {other:?}", spec.name),
    }
}

fn http_of(spec: &tmux_agent::mcp::spec::ServerSpec) -> (&str, Vec<(&str, &str)>) {
    match &spec.transport {
        TransportSpec::Http { url, headers } => (
            url.as_str(),
            headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        ),
        other => panic!("{}: not http: {other:?}", spec.name),
    }
}

fn env_of(stdio: &tmux_agent::mcp::spec::StdioSpec) -> Vec<(&str, &str)> {
    stdio
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn codex_gemini_cursor_and_vscode_files_as_their_users_have_them() {
    let f = Agents::new();
    let found = discover(&f.input());
    assert_eq!(
        found.problems,
        vec![],
        "others' files are never our problems"
    );
    let servers: HashMap<_, _> = found.servers.iter().map(|s| (s.name.as_str(), s)).collect();
    let skipped: HashMap<_, _> = found.skipped.iter().map(|s| (s.name.as_str(), s)).collect();
    let warning = |file: &Path, key: &str| -> String {
        found
            .warnings
            .iter()
            .find(|w| w.file == file && w.key == key)
            .unwrap_or_else(|| panic!("no warning {} {key}: {:#?}", file.display(), found.warnings))
            .message
            .clone()
    };

    // Codex: the trusted project's files, the nearest first, then the user's.
    let codex_user = f.home.join(".codex/config.toml");
    let codex_root = f.project.join(".codex/config.toml");
    let codex_sub = f.cwd.join(".codex/config.toml");
    let docs = servers["docs"];
    assert_eq!(
        (&docs.source.file, &docs.source.scope),
        (&codex_root, &Scope::CodexProject),
        "the project's docs hides the user's"
    );
    let docs_stdio = stdio_of(docs);
    assert_eq!(docs_stdio.command, "./tools/docs-mcp");
    assert_eq!(docs_stdio.args, ["--root", "../docs"]);
    assert_eq!(env_of(docs_stdio), [("DOCS_INDEX", "full")]);
    // Relative to the file's .codex folder, as Codex resolves it.
    assert_eq!(
        docs_stdio.cwd.as_deref(),
        Some(f.project.join(".codex/..").as_path())
    );
    assert_eq!(docs.settings.connect_timeout.as_millis(), 15_000);
    let tracker = servers["tracker"];
    assert_eq!(tracker.source.file, codex_sub, "the nearer file wins");
    assert_eq!(stdio_of(tracker).args, ["--offline"]);
    let context7 = servers["context7"];
    assert_eq!(context7.source.scope, Scope::Codex);
    assert_eq!(stdio_of(context7).args, ["-y", "@upstash/context7-mcp"]);
    assert_eq!(context7.settings.connect_timeout.as_secs(), 20);
    assert_eq!(context7.settings.call_timeout.as_secs(), 120);
    assert_eq!(
        http_of(servers["figma"]),
        (
            "http://127.0.0.1:9/mcp",
            vec![
                ("Authorization", "Bearer fig-token"),
                ("X-Figma-Region", "us-east-1")
            ]
        )
    );
    assert!(warning(&codex_user, "mcp_servers.figma.enabled_tools").contains("does not filter"));
    assert!(warning(&codex_user, "mcp_servers.must-have.required").contains("starts anyway"));
    assert_eq!(stdio_of(servers["must-have"]).command, "must-have-mcp");
    assert!(warning(&codex_root, "mcp_servers.tracker.scopes").contains("not supported"));
    assert!(
        skipped["legacy"].reason.contains("disabled"),
        "{:?}",
        skipped["legacy"]
    );

    // Gemini: $VAR and ${VAR}, httpUrl, timeout in ms, tool filters warned.
    let gemini = f.home.join(".gemini/settings.json");
    let python = servers["pythonTools"];
    assert_eq!(
        python.source,
        tmux_agent::mcp::spec::Source {
            file: gemini.clone(),
            scope: Scope::GeminiUser
        }
    );
    assert_eq!(
        env_of(stdio_of(python)),
        [("API_KEY", "ext-key"), ("DATABASE_URL", "sqlite:///db")]
    );
    assert_eq!(
        stdio_of(python).args,
        ["-m", "my_mcp_server", "--port", "8080"]
    );
    assert_eq!(python.settings.call_timeout.as_millis(), 15_000);
    assert_eq!(
        stdio_of(python).cwd.as_deref(),
        Some(f.home.join(".gemini/mcp-servers/python").as_path())
    );
    let docker = stdio_of(servers["dockerizedServer"]);
    assert!(
        docker.args.iter().any(|a| a == "/work/here:/workspace"),
        "{:?}",
        docker.args
    );
    assert_eq!(env_of(docker), [("API_KEY", "svc-token")]);
    let authed = servers["httpServerWithAuth"];
    assert_eq!(
        http_of(authed),
        (
            "http://127.0.0.1:9/mcp",
            vec![("Authorization", "Bearer gem-token")]
        )
    );
    assert_eq!(authed.settings.call_timeout.as_millis(), 5_000);
    for list in ["includeTools", "excludeTools"] {
        let key = format!("mcpServers.filteredServer.{list}");
        assert!(warning(&gemini, &key).contains("does not filter"));
    }
    assert!(
        skipped["sseServer"].reason.contains("SSE"),
        "{:?}",
        skipped["sseServer"]
    );

    // Cursor: ${workspaceFolder}, ${env:}, envFile under the entry's own env.
    let cursor = servers["server-name"];
    assert_eq!(cursor.source.scope, Scope::CursorProject);
    let data = format!("{}/data", f.project.display());
    assert_eq!(stdio_of(cursor).args, ["-y", "mcp-server", data.as_str()]);
    assert_eq!(
        env_of(stdio_of(cursor)),
        [
            ("API_KEY", "cur-key"),
            ("DATABASE_URL", "postgres://localhost/app"),
            ("LOG_LEVEL", "debug"),
            ("QUOTED", "two words"),
        ]
    );
    assert!(
        skipped["remote"].reason.contains("not approved"),
        "{:?}",
        skipped["remote"]
    );

    // VS Code's user mcp.json: comments and trailing commas, envFile,
    // ${userHome}; ${input:} and ${workspaceFolder} refused by name.
    let vscode = f.home.join(".config/Code/User/mcp.json");
    let memory = servers["memory"];
    assert_eq!(
        memory.source,
        tmux_agent::mcp::spec::Source {
            file: vscode.clone(),
            scope: Scope::VsCodeUser
        }
    );
    let memory_file = format!("{}/.mcp/memory.jsonl", f.home.display());
    assert_eq!(
        env_of(stdio_of(memory)),
        [
            ("MEMORY_EXTRA", "1"),
            ("MEMORY_FILE_PATH", memory_file.as_str())
        ]
    );
    assert_eq!(stdio_of(servers["fetch"]).command, "uvx");
    assert!(
        warning(&vscode, "servers.github.headers.Authorization").contains("${input:github_token}")
    );
    assert!(warning(&vscode, "servers.perProject.args[0]").contains("no workspace folder"));
    assert!(skipped["oldSse"].reason.contains("SSE"));
    for name in ["github", "perProject", "oldPlace"] {
        assert!(!found.names().iter().any(|n| n == name), "{name}");
    }
    let settings = f.home.join(".config/Code/User/settings.json");
    assert!(warning(&settings, "mcp").contains("mcp.json"));
    // No other warning: every field of these files is read or named above.
    let expected = 10;
    assert_eq!(found.warnings.len(), expected, "{:#?}", found.warnings);

    // The same through the CLI: transport, state and source of each.
    let listed = f.cli_listed_subset(&[
        ("docs", "stdio", "idle", &codex_root, "codex-project"),
        ("tracker", "stdio", "idle", &codex_sub, "codex-project"),
        ("context7", "stdio", "idle", &codex_user, "codex"),
        ("figma", "http", "idle", &codex_user, "codex"),
        ("pythonTools", "stdio", "idle", &gemini, "gemini-user"),
        ("httpServerWithAuth", "http", "idle", &gemini, "gemini-user"),
        (
            "server-name",
            "stdio",
            "idle",
            &f.project.join(".cursor/mcp.json"),
            "cursor-project",
        ),
        (
            "remote",
            "-", // a skipped server is listed before its transport is built
            "skipped",
            &f.project.join(".cursor/mcp.json"),
            "cursor-project",
        ),
        ("memory", "stdio", "idle", &vscode, "vs-code-user"),
    ]);
    assert!(listed, "listed as discovered");
    // `mcp servers --json` says how each is reached, secrets masked.
    let (code, stdout, stderr) = f.cli(&["mcp", "servers", "--offline", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let list: Value = serde_json::from_str(&stdout).unwrap();
    let definition = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["definition"].clone())
            .unwrap_or_else(|| panic!("{name} not in {stdout}"))
    };
    assert_eq!(
        definition("docs"),
        json!({"type": "stdio", "command": "./tools/docs-mcp", "args": ["--root", "../docs"],
               "env": {"DOCS_INDEX": "********"},
               "cwd": f.project.join(".codex/..").display().to_string()})
    );
    assert_eq!(
        definition("figma"),
        json!({"type": "http", "url": "http://127.0.0.1:9/mcp",
               "headers": {"Authorization": "********", "X-Figma-Region": "********"}})
    );
    assert_eq!(
        definition("remote"),
        Value::Null,
        "a skipped server has none"
    );
    assert!(
        !stdout.contains("fig-token") && !stdout.contains("cur-key"),
        "a secret leaked: {stdout}"
    );
    // And `config show --json`: command, args, the env's names (values are
    // masked there) and the timeouts taken from each tool's own keys.
    let (code, stdout, stderr) = f.cli(&["config", "show", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    let server = |name: &str| shown["servers"][name].clone();
    assert_eq!(server("docs")["command"], "./tools/docs-mcp");
    assert_eq!(server("docs")["args"], json!(["--root", "../docs"]));
    assert_eq!(server("docs")["scope"], "Codex CLI project config");
    assert_eq!(server("docs")["settings"]["connect_timeout"], 15.0);
    assert_eq!(server("context7")["settings"]["call_timeout"], 120.0);
    assert_eq!(server("pythonTools")["settings"]["call_timeout"], 15.0);
    assert_eq!(
        server("server-name")["env"],
        json!({"API_KEY": "********", "DATABASE_URL": "********", "LOG_LEVEL": "********", "QUOTED": "********"})
    );
    assert_eq!(server("memory")["scope"], "VS Code user");
    assert!(
        !stdout.contains("cur-key") && !stdout.contains("postgres://"),
        "a secret leaked"
    );
}

impl Agents {
    /// True when `mcp servers --offline --json` lists each `(name,
    /// transport, state, file, scope)`; panics naming the first that differs.
    fn cli_listed_subset(&self, expected: &[(&str, &str, &str, &Path, &str)]) -> bool {
        let listed = self.listed();
        for (name, transport, state, file, scope) in expected {
            let want = (
                transport.to_string(),
                state.to_string(),
                file.display().to_string(),
                scope.to_string(),
            );
            assert_eq!(listed.get(*name), Some(&want), "{name} in {listed:#?}");
        }
        true
    }
}

#[test]
fn an_untrusted_codex_project_waits_for_approval_and_says_how() {
    let f = Agents::new();
    // The same files with the project's trust taken back.
    let user = f.home.join(".codex/config.toml");
    let text = std::fs::read_to_string(&user).unwrap();
    std::fs::write(
        &user,
        text.replace("trust_level = \"trusted\"", "trust_level = \"untrusted\""),
    )
    .unwrap();
    let found = discover(&f.input());
    for name in ["docs", "tracker"] {
        let skipped = found
            .skipped
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name}: {:?}", found.skipped));
        assert_eq!(skipped.source.scope, Scope::CodexProject);
        assert!(
            skipped.reason.contains("not approved")
                && skipped.reason.contains("trust_level = \"trusted\"")
                && skipped.reason.contains(&f.project.display().to_string()),
            "{}",
            skipped.reason
        );
    }
    // Not hidden by the untrusted project: the user's own docs is not used
    // either, as the first definition of a name wins.
    assert!(!found.servers.iter().any(|s| s.name == "docs"));
    assert!(
        found.servers.iter().any(|s| s.name == "context7"),
        "the user's own servers still run"
    );
    // Approved in our config instead.
    crate::support::write_config(&f.home, "[servers.tracker]\nenabled = true\n");
    let found = discover(&f.input());
    assert!(found.servers.iter().any(|s| s.name == "tracker"));
    assert!(found.skipped.iter().any(|s| s.name == "docs"));
    // Trust recorded for the working directory itself also counts.
    let text = std::fs::read_to_string(&user).unwrap();
    std::fs::write(
        &user,
        format!(
            "{text}\n[projects.{:?}]\ntrust_level = \"trusted\"\n",
            f.cwd.display().to_string()
        ),
    )
    .unwrap();
    let found = discover(&f.input());
    assert!(
        found.servers.iter().any(|s| s.name == "docs"),
        "{:?}",
        found.skipped
    );
}

#[test]
fn a_malformed_agent_file_is_named_with_why_and_the_others_are_still_read() {
    let f = Agents::new();
    // No approval that would name a server this test breaks.
    crate::support::write_config(&f.home, "");
    f.write(
        &f.home.join(".config/Code/User/mcp.json"),
        "{ \"servers\": { \"memory\": ",
    );
    f.write(
        &f.project.join(".codex/config.toml"),
        "[mcp_servers.docs]\ncommand = \"x\"\nargs = [\"open\"\n",
    );
    f.write(
        &f.project.join(".cursor/mcp.json"),
        &json!({"mcpServers": {
            "server-name": {"command": "x", "envFile": "${workspaceFolder}/missing.env"},
            "remote": {"url": 5}
        }})
        .to_string(),
    );
    let (code, stdout, _) = f.cli(&["config", "check"]);
    assert_eq!(code, 0, "others' files are warnings, not errors: {stdout}");
    let line = |file: &Path, key: &str| -> String {
        let prefix = format!("warning: {}: {key}: ", file.display());
        stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{stdout}"))
            .to_owned()
    };
    let vscode = line(&f.home.join(".config/Code/User/mcp.json"), "-");
    assert!(vscode.contains("not valid JSON"), "{vscode}");
    let codex = line(&f.project.join(".codex/config.toml"), "-");
    assert!(
        codex.contains("not valid TOML (line 3") || codex.contains("not valid TOML (line 4"),
        "{codex}"
    );
    let cursor = f.project.join(".cursor/mcp.json");
    let env_file = line(&cursor, "mcpServers.server-name.envFile");
    assert!(
        env_file.contains("missing.env") && env_file.contains("server skipped"),
        "{env_file}"
    );
    assert!(line(&cursor, "mcpServers.remote.url").contains("expected a string"));
    // Everything else is still read.
    let listed = f.listed();
    for name in [
        "tracker",
        "context7",
        "figma",
        "pythonTools",
        "filteredServer",
    ] {
        assert!(listed.contains_key(name), "{name} still read: {listed:?}");
    }
    for name in ["memory", "fetch", "server-name", "remote"] {
        assert!(!listed.contains_key(name), "{name}: {listed:?}");
    }
    // docs now comes from the user's file, the project's being unreadable.
    assert_eq!(
        listed["docs"].2,
        f.home.join(".codex/config.toml").display().to_string()
    );
}

#[test]
fn gemini_folder_trust_approves_its_workspace_servers_and_distrust_wins() {
    let f = Agents::new();
    // Gemini reads the working directory's own .gemini/settings.json only.
    f.write(
        &f.project.join(".gemini/settings.json"),
        &json!({"mcpServers": {"gemRoot": {"command": "x"}}}).to_string(),
    );
    let state = |found: &tmux_agent::mcp::discovery::Discovered| {
        if found.servers.iter().any(|s| s.name == "gemProject") {
            "run".to_owned()
        } else {
            let skipped = found.skipped.iter().find(|s| s.name == "gemProject");
            skipped.map_or("absent".to_owned(), |s| s.reason.clone())
        }
    };
    let found = discover(&f.input());
    assert!(
        !found.names().iter().any(|n| n == "gemRoot"),
        "{:?}",
        found.names()
    );
    // Folder trust off (Gemini's default): nothing recorded, ours needed.
    let waiting = state(&found);
    assert!(
        waiting.contains("not approved")
            && waiting.contains("security.folderTrust.enabled")
            && waiting.contains("TRUST_FOLDER"),
        "{waiting}"
    );
    let trusted_folders = f.home.join(".gemini/trustedFolders.json");
    let project = f.project.display().to_string();
    f.write(
        &trusted_folders,
        &json!({ &project: "TRUST_FOLDER" }).to_string(),
    );
    assert!(
        state(&discover(&f.input())).contains("not approved"),
        "trust is read only with folder trust on"
    );

    // Folder trust on, as Gemini's settings dialog writes it.
    let user = f.home.join(".gemini/settings.json");
    let mut settings: Value = {
        let text = std::fs::read_to_string(&user).unwrap();
        let text: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        serde_json::from_str(&text).unwrap()
    };
    settings["security"] = json!({"folderTrust": {"enabled": true}});
    f.write(&user, &settings.to_string());
    let found = discover(&f.input());
    assert_eq!(
        state(&found),
        "run",
        "the project folder is trusted, and the cwd is in it"
    );
    let gem = found
        .servers
        .iter()
        .find(|s| s.name == "gemProject")
        .unwrap();
    assert_eq!(gem.source.file, f.cwd.join(".gemini/settings.json"));
    assert_eq!(stdio_of(gem).env["TOKEN"], "gem-project");
    // TRUST_PARENT trusts the folder's parent and all in it.
    let services = f.project.join("services").display().to_string();
    f.write(
        &trusted_folders,
        &json!({ &services: "TRUST_PARENT" }).to_string(),
    );
    assert_eq!(state(&discover(&f.input())), "run");
    // A distrusted folder (and all in it) wins over a trusted parent.
    f.write(
        &trusted_folders,
        &json!({ &project: "TRUST_FOLDER", &services: "DO_NOT_TRUST" }).to_string(),
    );
    assert!(state(&discover(&f.input())).contains("not approved"));
}
