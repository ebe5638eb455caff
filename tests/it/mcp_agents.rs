//! Other agents' MCP configs (Codex CLI, Gemini CLI, Cursor, VS Code) read
//! from fixtures shaped like the files those tools write, in a temporary
//! HOME and project. URLs point at loopback ports nothing listens on, and
//! commands at paths that do not exist: nothing here reaches the network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tmux_agent::mcp::discovery::{DiscoveryInput, discover};
use tmux_agent::mcp::spec::{Scope, ServerSpec, TransportSpec};

struct Fixture {
    _dir: tempfile::TempDir,
    home: PathBuf,
    project: PathBuf,
    cwd: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let project = dir.path().join("work/app");
        let cwd = project.join("src");
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(home.join(".config/tmux-agent")).unwrap();
        Fixture {
            _dir: dir,
            home,
            project,
            cwd,
        }
    }

    fn write(&self, path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn input(&self) -> DiscoveryInput {
        let vars = HashMap::from([
            ("HOME".to_owned(), self.home.display().to_string()),
            ("GH_TOKEN".to_owned(), "gh-secret".to_owned()),
            ("CTX_KEY".to_owned(), "ctx-secret".to_owned()),
        ]);
        DiscoveryInput {
            home: self.home.clone(),
            cwd: self.cwd.clone(),
            config_file: None,
            vars,
        }
    }

    /// The files a user of each agent has, as those agents write them.
    fn write_all(&self) {
        self.write(
            &self.home.join(".codex/config.toml"),
            r#"model = "gpt-5-codex"
approval_policy = "on-request"

[mcp_servers.docs]
command = "/opt/mcp/docs-server"
args = ["--root", "/srv/docs"]
env = { DOCS_TOKEN = "abc", DEBUG = "1" }
startup_timeout_sec = 20
tool_timeout_sec = 60

[mcp_servers.github]
url = "http://127.0.0.1:9/mcp"
bearer_token_env_var = "GH_TOKEN"
http_headers = { "X-Client" = "codex" }

[mcp_servers.off]
command = "/opt/mcp/off"
enabled = false
"#,
        );
        self.write(
            &self.home.join(".gemini/settings.json"),
            &json!({
                "ui": {"theme": "GitHub"},
                "mcpServers": {
                    "pythonTools": {
                        "command": "python", "args": ["-m", "my_mcp_server"],
                        "cwd": "./mcp-servers/python", "env": {"DATABASE_URL": "sqlite:///x"},
                        "timeout": 15000, "trust": false, "includeTools": ["a"]
                    },
                    "httpServer": {"httpUrl": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer t"}},
                    "sseServer": {"url": "http://127.0.0.1:9/sse"},
                    "docs": {"command": "hidden-by-codex"}
                }
            })
            .to_string(),
        );
        self.write(
            // Gemini reads the working directory's own file only.
            &self.cwd.join(".gemini/settings.json"),
            &json!({"mcpServers": {"gemProject": {"command": "./tools/gem-mcp", "args": ["serve"]}}})
                .to_string(),
        );
        self.write(
            &self.home.join(".cursor/mcp.json"),
            &json!({"mcpServers": {
                "context": {
                    "url": "http://127.0.0.1:9/mcp",
                    "headers": {"CONTEXT_API_KEY": "${env:CTX_KEY}"}
                },
                "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "${userHome}/code"]}
            }})
            .to_string(),
        );
        self.write(
            &self.project.join(".cursor/mcp.json"),
            &json!({"mcpServers": {"cursorProject": {"command": "node", "args": ["${workspaceFolder}/mcp.js"]}}})
                .to_string(),
        );
        self.write(
            &self.project.join(".vscode/mcp.json"),
            &json!({
                "inputs": [{"type": "promptString", "id": "perplexity-key", "description": "Perplexity API Key", "password": true}],
                "servers": {
                    "memory": {"type": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"],
                               "env": {"MEMORY_FILE_PATH": "${workspaceFolder}/memory.jsonl"}},
                    "perplexity": {"type": "stdio", "command": "npx", "args": ["-y", "server-perplexity-ask"],
                                   "env": {"PERPLEXITY_API_KEY": "${input:perplexity-key}"}},
                    "remoteVs": {"type": "http", "url": "http://127.0.0.1:9/mcp"}
                }
            })
            .to_string(),
        );
    }
}

fn by_name(servers: &[ServerSpec]) -> HashMap<&str, &ServerSpec> {
    servers.iter().map(|s| (s.name.as_str(), s)).collect()
}

/// A stdio server's command, args, env and cwd.
type Stdio<'a> = (
    &'a str,
    Vec<&'a str>,
    Vec<(&'a str, &'a str)>,
    Option<&'a Path>,
);

fn stdio(spec: &ServerSpec) -> Stdio<'_> {
    match &spec.transport {
        TransportSpec::Stdio(s) => (
            s.command.as_str(),
            s.args.iter().map(String::as_str).collect(),
            s.env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            s.cwd.as_deref(),
        ),
        other => panic!("{}: not stdio: {other:?}", spec.name),
    }
}

fn http(spec: &ServerSpec) -> (&str, Vec<(&str, &str)>) {
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

#[test]
fn codex_gemini_cursor_and_vscode_files_are_read_with_their_sources() {
    let f = Fixture::new();
    f.write_all();
    // The project's own files run only once approved in our config.
    crate::support::write_config(
        &f.home,
        "[servers.gemProject]\nenabled = true\n[servers.cursorProject]\nenabled = true\n\
         [servers.memory]\nenabled = true\n",
    );
    let found = discover(&f.input());
    assert_eq!(
        found.problems,
        vec![],
        "others' files are never our problems"
    );
    let servers = by_name(&found.servers);

    // Codex.
    let codex = f.home.join(".codex/config.toml");
    assert_eq!(
        servers["docs"].source.file, codex,
        "Codex comes before Gemini"
    );
    assert_eq!(servers["docs"].source.scope, Scope::Codex);
    assert_eq!(
        stdio(servers["docs"]),
        (
            "/opt/mcp/docs-server",
            vec!["--root", "/srv/docs"],
            vec![("DEBUG", "1"), ("DOCS_TOKEN", "abc")],
            None
        )
    );
    assert_eq!(
        http(servers["github"]),
        (
            "http://127.0.0.1:9/mcp",
            vec![("Authorization", "Bearer gh-secret"), ("X-Client", "codex")]
        )
    );
    let off = found.skipped.iter().find(|s| s.name == "off").unwrap();
    assert!(
        off.reason.contains("disabled") && off.reason.contains(".codex/config.toml"),
        "{}",
        off.reason
    );

    // Gemini: user and project files.
    let gemini = f.home.join(".gemini/settings.json");
    let (command, args, env, cwd) = stdio(servers["pythonTools"]);
    assert_eq!(
        (command, args, env),
        (
            "python",
            vec!["-m", "my_mcp_server"],
            vec![("DATABASE_URL", "sqlite:///x")]
        )
    );
    assert_eq!(
        cwd,
        Some(f.home.join(".gemini/mcp-servers/python").as_path())
    );
    assert_eq!(servers["pythonTools"].source.file, gemini);
    assert_eq!(servers["pythonTools"].source.scope, Scope::GeminiUser);
    assert_eq!(http(servers["httpServer"]).0, "http://127.0.0.1:9/mcp");
    let sse = found
        .skipped
        .iter()
        .find(|s| s.name == "sseServer")
        .unwrap();
    assert!(sse.reason.contains("SSE"), "{}", sse.reason);
    assert_eq!(servers["gemProject"].source.scope, Scope::GeminiProject);
    assert_eq!(
        servers["gemProject"].source.file,
        f.cwd.join(".gemini/settings.json")
    );

    // Cursor: editor variables translated.
    assert_eq!(
        http(servers["context"]),
        (
            "http://127.0.0.1:9/mcp",
            vec![("CONTEXT_API_KEY", "ctx-secret")]
        )
    );
    let home_code = format!("{}/code", f.home.display());
    assert_eq!(
        stdio(servers["fs"]).1,
        vec![
            "-y",
            "@modelcontextprotocol/server-filesystem",
            home_code.as_str()
        ]
    );
    assert_eq!(servers["fs"].source.scope, Scope::CursorUser);
    let script = format!("{}/mcp.js", f.project.display());
    assert_eq!(stdio(servers["cursorProject"]).1, vec![script.as_str()]);
    assert_eq!(servers["cursorProject"].source.scope, Scope::CursorProject);

    // VS Code: `servers`, ${workspaceFolder}, and ${input:} refused by name.
    let memory_file = format!("{}/memory.jsonl", f.project.display());
    assert_eq!(
        stdio(servers["memory"]).2,
        vec![("MEMORY_FILE_PATH", memory_file.as_str())]
    );
    assert_eq!(servers["memory"].source.scope, Scope::VsCodeWorkspace);
    assert!(!servers.contains_key("perplexity"));
    let vscode = f.project.join(".vscode/mcp.json");
    let warning = found
        .warnings
        .iter()
        .find(|w| w.key == "servers.perplexity.env.PERPLEXITY_API_KEY")
        .unwrap_or_else(|| panic!("no warning for the input: {:?}", found.warnings));
    assert_eq!(warning.file, vscode);
    assert!(
        warning.message.contains("${input:perplexity-key}"),
        "{}",
        warning.message
    );
    // Not approved: a project server stays out, saying how to approve it.
    let remote = found.skipped.iter().find(|s| s.name == "remoteVs").unwrap();
    assert!(remote.reason.contains("not approved") && remote.reason.contains("enabled = true"));
}

#[test]
fn a_malformed_file_is_named_with_why_and_the_others_are_still_read() {
    let f = Fixture::new();
    f.write_all();
    f.write(
        &f.home.join(".codex/config.toml"),
        "[mcp_servers.docs]\ncommand = \"/opt/x\"\nargs = [\"unclosed\"\n",
    );
    f.write(
        &f.home.join(".cursor/mcp.json"),
        "{\"mcpServers\": {\"context\": ",
    );
    f.write(
        &f.home.join(".gemini/settings.json"),
        &json!({"mcpServers": {
            "good": {"command": "ok"},
            "badArgs": {"command": "x", "args": ["ok", 5]},
            "badEnv": {"command": "x", "env": {"A": ["list"]}}
        }})
        .to_string(),
    );
    let found = discover(&f.input());
    let warning = |file: &Path, key: &str| {
        found
            .warnings
            .iter()
            .find(|w| w.file == file && w.key == key)
            .unwrap_or_else(|| {
                panic!(
                    "no warning for {} {key}: {:?}",
                    file.display(),
                    found.warnings
                )
            })
            .message
            .clone()
    };
    let codex = warning(&f.home.join(".codex/config.toml"), "-");
    assert!(codex.contains("TOML") && codex.contains("line"), "{codex}");
    let cursor = warning(&f.home.join(".cursor/mcp.json"), "-");
    assert!(cursor.contains("not valid JSON"), "{cursor}");
    let gemini = f.home.join(".gemini/settings.json");
    assert!(warning(&gemini, "mcpServers.badArgs.args[1]").contains("expected a string"));
    assert!(warning(&gemini, "mcpServers.badEnv.env.A").contains("expected a string"));
    // Every other file is still read (project servers as skipped, unapproved).
    let names = found.names();
    for name in ["good", "gemProject", "cursorProject", "memory", "remoteVs"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} still read: {names:?}"
        );
    }
    for name in ["badArgs", "badEnv", "docs", "context"] {
        assert!(!names.iter().any(|n| n == name), "{name}: {names:?}");
    }
}

/// The same files through the CLI: `config show --json` names each server's
/// transport, command and source without starting anything.
#[test]
fn config_show_lists_them_with_transport_and_source() {
    let f = Fixture::new();
    f.write_all();
    let out = Command::new(crate::support::AGENT)
        .args(["config", "show", "--json"])
        .env_clear()
        .env("HOME", &f.home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GH_TOKEN", "x")
        .env("CTX_KEY", "y")
        .current_dir(&f.cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let server = |name: &str| &shown["servers"][name];
    assert_eq!(server("docs")["type"], "stdio");
    assert_eq!(server("docs")["command"], "/opt/mcp/docs-server");
    assert_eq!(server("docs")["scope"], "Codex CLI");
    assert_eq!(server("github")["type"], "http");
    assert_eq!(server("pythonTools")["scope"], "Gemini CLI user settings");
    assert_eq!(
        server("context")["source"],
        f.home.join(".cursor/mcp.json").display().to_string()
    );
    let skipped = shown["skipped"].to_string();
    assert!(
        skipped.contains("memory") && skipped.contains("not approved"),
        "{skipped}"
    );
}
