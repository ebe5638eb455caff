//! Compatibility with the reference npm servers, installed by
//! `scripts/install-test-deps` into `.test-deps/npm`: server-memory through
//! the CLI (configured in a temporary `~/.claude.json`), server-everything
//! over stdio and over Streamable HTTP on a free loopback port.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::mcp::*;
use serde_json::{Value, json};
use tmux_agent::config::{Knobs, ProtocolChoice};
use tmux_agent::mcp::spec::{StdioSpec, TransportSpec};
use tmux_agent::mcp::{CallError, CallOptions, McpPool};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process killed (with its group) when the test ends, even on
/// panic.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        // SAFETY: signalling the process group we created for this child.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn start_http_everything(bin: &Path, port: u16) -> Killed {
    use std::os::unix::process::CommandExt as _;
    let child = Command::new(bin)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let child = Killed(child);
    eventually(PATIENCE, "server-everything listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    child
}

#[test]
fn memory_server_through_the_cli_creates_an_entity_and_lists_nine_tools() {
    let Some(bin) = npm_bin("mcp-server-memory") else {
        return;
    };
    let dir = tempdir();
    let home = dir.path().join("home");
    let cwd = dir.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    let memory_file = dir.path().join("memory.jsonl");
    crate::support::write_claude_json(
        &home,
        &json!({"mcpServers": {"memory": {
            "command": bin,
            "env": {"MEMORY_FILE_PATH": "${MEM_DIR}/memory.jsonl"}
        }}}),
    );
    let run = |args: &[&str]| {
        let out = Command::new(TMUX_AGENT)
            .args(args)
            .env("HOME", &home)
            .env("MEM_DIR", dir.path())
            .env_remove("TMUX_AGENT_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CLAUDE_CONFIG_DIR")
            .current_dir(&cwd)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let entities = json!({"entities": [{
        "name": "tmux:work \"quoted\" ; #(reboot)",
        "entityType": "tmux_session",
        "observations": ["session created", "line\nbreak"]
    }]});
    let (code, stdout, stderr) = run(&[
        "mcp",
        "call",
        "memory",
        "create_entities",
        &entities.to_string(),
    ]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        printed["entities"][0]["name"],
        "tmux:work \"quoted\" ; #(reboot)"
    );
    let stored: Vec<Value> = std::fs::read_to_string(&memory_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["type"], "entity");
    assert_eq!(stored[0]["name"], "tmux:work \"quoted\" ; #(reboot)");
    assert_eq!(
        stored[0]["observations"],
        json!(["session created", "line\nbreak"])
    );

    let (code, stdout, stderr) = run(&["mcp", "tools", "memory"]);
    assert_eq!(code, 0, "{stderr}");
    let mut names: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "add_observations",
            "create_entities",
            "create_relations",
            "delete_entities",
            "delete_observations",
            "delete_relations",
            "open_nodes",
            "read_graph",
            "search_nodes"
        ]
    );

    // An isError result: exit 1, the server's text on stderr.
    let missing = json!({"observations": [{"entityName": "nope", "contents": ["x"]}]});
    let (code, _, stderr) = run(&[
        "mcp",
        "call",
        "memory",
        "add_observations",
        &missing.to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr
            .contains("memory/add_observations returned an error: Entity with name nope not found"),
        "{stderr}"
    );

    let (code, stdout, stderr) = run(&["mcp", "servers", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let servers: Value = serde_json::from_str(&stdout).unwrap();
    let memory = servers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "memory")
        .unwrap();
    assert_eq!(memory["state"], "ready");
    assert_eq!(memory["connection"]["server_name"], "memory-server");
    assert_eq!(memory["connection"]["protocol_version"], "2025-11-25");
    assert_eq!(memory["source"]["file"], json!(home.join(".claude.json")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_server_over_stdio_with_auto_protocol_and_a_cancelled_long_operation() {
    let Some(bin) = npm_bin("mcp-server-everything") else {
        return;
    };
    let transport = TransportSpec::Stdio(StdioSpec {
        command: bin.display().to_string(),
        args: vec!["stdio".into()],
        env: Default::default(),
        cwd: None,
    });
    let knobs = Knobs {
        protocol: Some(ProtocolChoice::Auto),
        ..Knobs::default()
    };
    let pool = McpPool::from_specs(vec![spec("everything", transport, knobs)], vec![]);
    let info = pool.connect("everything").await.unwrap();
    // server/discover gets -32601 from the TS SDK, so Auto falls back.
    assert_eq!(info.protocol_version, "2025-11-25");
    let tools = pool.list_tools("everything").await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    for expected in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let out = pool
        .call_tool(
            "everything",
            "get-sum",
            json!({"a": 2, "b": 3}),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.value, json!("The sum of 2 and 3 is 5."));
    let err = pool
        .call_tool(
            "everything",
            "trigger-long-running-operation",
            json!({"duration": 30, "steps": 3}),
            CallOptions {
                timeout: Some(Duration::from_millis(300)),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");
    let out = pool
        .call_tool(
            "everything",
            "echo",
            json!({"message": "still here"}),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.value, json!("Echo: still here"));
    let pid = info.pid.unwrap();
    pool.shutdown().await;
    assert!(!alive(u64::from(pid)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_server_over_streamable_http_and_a_restart_behind_our_back() {
    let Some(bin) = npm_bin("mcp-server-everything") else {
        return;
    };
    let port = free_port();
    let server = start_http_everything(&bin, port);
    let transport = TransportSpec::Http {
        url: format!("http://127.0.0.1:{port}/mcp"),
        headers: [("X-Test".to_string(), "yes".to_string())].into(),
    };
    let knobs = Knobs {
        call_timeout: dur(1500),
        ..Knobs::default()
    };
    let pool = McpPool::from_specs(vec![spec("web", transport, knobs)], vec![]);
    let info = pool.connect("web").await.unwrap();
    assert_eq!(info.via, "http");
    let out = pool
        .call_tool(
            "web",
            "echo",
            json!({"message": "over http"}),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.value, json!("Echo: over http"));
    let tools = pool.list_tools("web").await.unwrap();
    assert!(tools.iter().any(|t| t.name == "get-sum"));

    // Restart the server: the old session id is now unknown to it (it
    // answers 400, not 404, and rmcp's call hangs). Calls time out, and
    // after two in a row the client is rebuilt and calls work again.
    drop(server);
    let _server = start_http_everything(&bin, port);
    let out = eventually_async(PATIENCE * 3, "calls work after the restart", || {
        let pool = pool.clone();
        async move {
            pool.call_tool(
                "web",
                "echo",
                json!({"message": "again"}),
                CallOptions::default(),
            )
            .await
            .ok()
        }
    })
    .await;
    assert_eq!(out.value, json!("Echo: again"));
    // Recovered by rebuilding the client after two timeouts in a row (rmcp
    // alone would keep hanging on the stale session), not by a crash path.
    let stats = pool.stats_for("web").unwrap();
    assert!(stats.counters.timeouts >= 2, "{stats:?}");
    assert_eq!(stats.connects, 2, "{stats:?}");
    assert_eq!(stats.reconnects, 0, "{stats:?}");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_server_keeps_every_write_from_a_burst_of_concurrent_callers() {
    let Some(bin) = npm_bin("mcp-server-memory") else {
        return;
    };
    let dir = tempdir();
    let memory_file = dir.path().join("memory.jsonl");
    let transport = TransportSpec::Stdio(StdioSpec {
        command: bin.display().to_string(),
        args: vec![],
        env: [(
            "MEMORY_FILE_PATH".to_string(),
            memory_file.display().to_string(),
        )]
        .into(),
        cwd: None,
    });
    // Default concurrency for stdio is 1: the server rewrites its whole file
    // on every call and loses writes when calls overlap.
    let pool = McpPool::from_specs(vec![spec("memory", transport, Knobs::default())], vec![]);
    assert_eq!(pool.spec("memory").unwrap().settings.concurrency, 1);
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let entity = json!({"entities": [{"name": format!("s{i}"), "entityType": "tmux_session", "observations": []}]});
                pool.call_tool("memory", "create_entities", entity, CallOptions::default()).await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let lines = std::fs::read_to_string(&memory_file).unwrap();
    assert_eq!(lines.lines().count(), 20, "{lines}");
    pool.shutdown().await;
}
