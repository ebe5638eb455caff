//! The zero-config default: with an empty HOME, the daemon calls its own
//! built-in MCP server, and what it saved can be read back with
//! `tmux-agent mcp call builtin ...`.

use crate::support::{Daemon, PATIENCE, TmuxServer, wait_for};
use serde_json::Value;

#[test]
fn with_no_config_the_builtin_server_keeps_goals_and_contexts() {
    let server = TmuxServer::start();
    let _daemon = Daemon::attach(&server);
    let option = |target: Option<&str>, name: &str| {
        match target {
            Some(t) => server.option(t, name),
            None => server.global_option(name),
        }
        .unwrap_or_default()
    };

    let name = "agent \"one\"";
    let id = server
        .tmux(&["new-session", "-d", "-P", "-F", "#{session_id}", "-s", name])
        .trim()
        .to_owned();
    let goal_id = wait_for(PATIENCE, || {
        let v = option(Some(&id), "@agent-goal-id");
        (!v.is_empty()).then_some(v)
    })
    .expect("no goal id: register_goal never answered");

    let terminal = server.attach_terminal(&id);
    wait_for(PATIENCE, || {
        let out = server.tmux(&["list-clients", "-t", &id]);
        (!out.trim().is_empty()).then_some(())
    })
    .expect("the terminal never attached");
    // The attach's update_goal(active) is delivered once nothing is pending.
    wait_for(PATIENCE, || {
        (option(None, "@agent-pending") == "0").then_some(())
    })
    .expect("calls stayed pending");
    server.tmux(&["detach-client", "-s", &id]);
    drop(terminal);
    wait_for(PATIENCE, || {
        (!option(Some(&id), "@agent-saved").is_empty()).then_some(())
    })
    .expect("the detach save never succeeded");
    server.tmux(&["kill-session", "-t", &id]);
    wait_for(PATIENCE, || {
        (option(None, "@agent-pending") == "0").then_some(())
    })
    .expect("the close calls stayed pending");

    let call = |tool: &str, args: &str| -> Value {
        let out = server
            .agent()
            .args(["mcp", "call", "builtin", tool, args])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let context = call(
        "get_context",
        &serde_json::json!({"session": name}).to_string(),
    );
    assert_eq!(context["session_name"], name);
    let saved = &context["saves"][0]["context"];
    assert_eq!(saved["session_id"], id.as_str());
    assert!(
        !saved["windows"].as_array().unwrap().is_empty(),
        "{context:#}"
    );

    let goals = call("list_goals", "{}");
    let goal = goals["goals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == goal_id.parse::<i64>().unwrap_or(-1))
        .unwrap_or_else(|| panic!("goal {goal_id} not in {goals:#}"));
    assert_eq!(goal["name"], name);
    assert_eq!(goal["status"], "completed");
    assert_eq!(goal["outcome"], "session closed");
}
