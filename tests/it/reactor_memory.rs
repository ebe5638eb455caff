//! The `server-memory` preset against the real npm
//! `@modelcontextprotocol/server-memory`, configured the way a Claude Code
//! user already has it: in `~/.claude.json`.

use crate::support::mcp::npm_bin;
use crate::support::{Daemon, PATIENCE, TmuxServer, wait_for, write_claude_json, write_config};
use serde_json::{Value, json};

#[test]
fn a_detached_session_is_in_the_memory_graph() {
    let Some(memory) = npm_bin("mcp-server-memory") else {
        return;
    };
    let server = TmuxServer::start();
    let home = server.home.path();
    let memory_file = home.join("memory.jsonl");
    write_claude_json(
        home,
        &json!({"mcpServers": {"memory": {
            "command": memory,
            "env": {"MEMORY_FILE_PATH": memory_file}
        }}}),
    );
    write_config(home, "[reactor]\npreset = \"server-memory\"\n");

    let _daemon = Daemon::attach(&server);
    let global = |name: &str| server.global_option(name).unwrap_or_default();

    let id = server
        .tmux(&[
            "new-session",
            "-d",
            "-P",
            "-F",
            "#{session_id}",
            "-s",
            "work",
            ";",
            "set-option",
            "@agent-goal",
            "write the \"memory\" test",
        ])
        .trim()
        .to_owned();
    let created = server.tmux(&["display-message", "-p", "-t", &id, "#{session_created}"]);
    let host = server.tmux(&["display-message", "-p", "-t", &id, "#{host}"]);
    let terminal = server.attach_terminal(&id);
    wait_for(PATIENCE, || {
        let out = server.tmux(&["list-clients", "-t", &id]);
        (!out.trim().is_empty()).then_some(())
    })
    .expect("the terminal never attached");
    // Give the daemon the attach before the detach (one listing must see it).
    let attached = wait_for(PATIENCE, || {
        (server.option(&id, "@agent-state").as_deref() == Some("active")).then_some(())
    });
    assert!(attached.is_some());
    wait_for(PATIENCE, || (global("@agent-pending") == "0").then_some(()))
        .expect("the create call was never delivered");
    server.tmux(&["detach-client", "-s", &id]);
    drop(terminal);
    wait_for(PATIENCE, || {
        server
            .option(&id, "@agent-saved")
            .filter(|saved| !saved.is_empty())
    })
    .expect("the detach save never succeeded");

    // What a person would run to see it.
    let out = server
        .agent()
        .args(["mcp", "call", "memory", "read_graph", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let graph: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entity_name = format!("tmux:{}:work:{}", host.trim(), created.trim());
    let entities = graph["value"]["entities"]
        .as_array()
        .unwrap_or_else(|| panic!("{graph:#}"));
    let entity = entities
        .iter()
        .find(|e| e["name"] == entity_name.as_str())
        .unwrap_or_else(|| panic!("no entity {entity_name} in {graph:#}"));
    assert_eq!(entity["entityType"], "tmux_session");
    let observations: Vec<&str> = entity["observations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        observations
            .iter()
            .any(|o| o.starts_with("session-created at")),
        "{observations:?}"
    );
    assert!(
        observations
            .iter()
            .any(|o| o.starts_with("session-detached at")),
        "{observations:?}"
    );
    assert!(
        observations.contains(&"goal: write the \"memory\" test"),
        "{observations:?}"
    );
    assert!(
        observations.iter().any(|o| o.starts_with("window 0: ")),
        "{observations:?}"
    );
}
