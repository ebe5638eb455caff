//! The goal tools of `tmux-agent mcp serve`, through a real stdio
//! connection: the lifecycle the daemon drives, idempotent replay, filters,
//! and names that must round-trip byte for byte.

use crate::support::serve::{ok, start, tool_error};
use serde_json::{Value, json};

#[tokio::test]
async fn register_update_complete_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;

    let goal = ok(
        &client,
        "register_goal",
        json!({
            "name": "work",
            "description": "fix the parser",
            "type": "claude",
            "session": "host:$3:1732200000",
            "metadata": {"cwd": "/src/p", "n": [1, 2]}
        }),
    )
    .await;
    let id = goal["id"].as_i64().expect("integer id");
    assert_eq!(goal["status"], "active");
    assert_eq!(goal["name"], "work");
    assert_eq!(goal["type"], "claude");
    assert_eq!(goal["session"], "host:$3:1732200000");
    assert_eq!(goal["metadata"], json!({"cwd": "/src/p", "n": [1, 2]}));
    assert_eq!(goal["completed_at"], Value::Null);

    // Session detached, then attached again: what the daemon sends.
    let goal = ok(
        &client,
        "update_goal",
        json!({"id": id, "status": "detached", "note": "client left"}),
    )
    .await;
    assert_eq!(goal["status"], "detached");
    assert_eq!(goal["note"], "client left");
    // The id as a string, the way @agent-goal-id holds it.
    let goal = ok(
        &client,
        "update_goal",
        json!({"id": id.to_string(), "status": "active"}),
    )
    .await;
    assert_eq!(goal["status"], "active");
    assert_eq!(goal["note"], Value::Null);

    let done = ok(
        &client,
        "complete_goal",
        json!({"id": id, "outcome": "merged in #12"}),
    )
    .await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["outcome"], "merged in #12");
    assert!(done["completed_at"].is_string());

    // Completing again (the daemon's close after the agent's own) changes
    // nothing; reviving a finished goal is refused.
    let again = ok(
        &client,
        "complete_goal",
        json!({"id": id, "outcome": "other"}),
    )
    .await;
    assert_eq!(again, done);
    let message = tool_error(
        &client,
        "update_goal",
        json!({"id": id, "status": "active"}),
    )
    .await;
    assert!(message.contains("already completed"), "{message}");

    let listed = ok(&client, "list_goals", json!({})).await;
    assert_eq!(listed["goals"], json!([done]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn list_goals_filters_by_status_and_session() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;
    let mut ids = Vec::new();
    for (name, session) in [("a", "k1"), ("b", "k2"), ("c", "k1")] {
        let goal = ok(
            &client,
            "register_goal",
            json!({"name": name, "session": session}),
        )
        .await;
        ids.push(goal["id"].as_i64().unwrap());
    }
    ok(
        &client,
        "update_goal",
        json!({"id": ids[1], "status": "failed"}),
    )
    .await;

    let names = |list: &Value| -> Vec<String> {
        list["goals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = ok(&client, "list_goals", json!({})).await;
    assert_eq!(names(&all), ["c", "b", "a"], "newest first");
    let active = ok(&client, "list_goals", json!({"status": "active"})).await;
    assert_eq!(names(&active), ["c", "a"]);
    let failed = ok(&client, "list_goals", json!({"status": "failed"})).await;
    assert_eq!(names(&failed), ["b"]);
    let k1 = ok(&client, "list_goals", json!({"session": "k1", "limit": 1})).await;
    assert_eq!(names(&k1), ["c"]);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn idempotent_replay_returns_the_first_result() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let args = json!({
        "name": "work", "session": "host:$1:1", "idempotency_key": "host:$1:1:created:0"
    });
    let client = start(&db).await;
    let first = ok(&client, "register_goal", args.clone()).await;
    let replay = ok(&client, "register_goal", args.clone()).await;
    assert_eq!(replay, first);
    client.cancel().await.unwrap();

    // The daemon's outbox replays after a crash: a new server process.
    let client = start(&db).await;
    let replay = ok(&client, "register_goal", args.clone()).await;
    assert_eq!(replay, first);
    let listed = ok(&client, "list_goals", json!({})).await;
    assert_eq!(listed["goals"].as_array().unwrap().len(), 1, "no duplicate");

    // The same key for other arguments or another tool is a caller bug.
    let message = tool_error(
        &client,
        "register_goal",
        json!({"name": "other", "idempotency_key": "host:$1:1:created:0"}),
    )
    .await;
    assert!(message.contains("different arguments"), "{message}");
    let message = tool_error(
        &client,
        "complete_goal",
        json!({"id": first["id"], "idempotency_key": "host:$1:1:created:0"}),
    )
    .await;
    assert!(
        message.contains("already used for register_goal"),
        "{message}"
    );

    // Replayed updates too: the replay returns the first answer, even after
    // the goal moved on.
    let id = first["id"].clone();
    let detach = json!({"id": id, "status": "detached", "idempotency_key": "d1"});
    let detached = ok(&client, "update_goal", detach.clone()).await;
    ok(
        &client,
        "update_goal",
        json!({"id": id, "status": "active"}),
    )
    .await;
    assert_eq!(ok(&client, "update_goal", detach).await, detached);
    let now = ok(&client, "list_goals", json!({})).await;
    assert_eq!(
        now["goals"][0]["status"], "active",
        "the replay changed nothing"
    );

    // Without a key, a second register is a second goal.
    ok(&client, "register_goal", json!({"name": "work"})).await;
    ok(&client, "register_goal", json!({"name": "work"})).await;
    let listed = ok(&client, "list_goals", json!({})).await;
    assert_eq!(listed["goals"].as_array().unwrap().len(), 3);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn hostile_names_round_trip_intact() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;
    let long: String = "é#{x}".repeat(2_000); // 10,000 characters
    assert_eq!(long.chars().count(), 10_000);
    let names = [
        r#"x'; kill-server; '#(reboot)"#.to_owned(),
        "line one\nline two\r\n\ttab".to_owned(),
        r#"quote " backslash \ #{session_name} #(touch /tmp/pwned) ;"#.to_owned(),
        "日本語のセッション 🚀 Ünïcödé".to_owned(),
        "\u{0}nul\u{1b}[31mred".to_owned(),
        long,
    ];
    for name in &names {
        let goal = ok(
            &client,
            "register_goal",
            json!({"name": name, "description": name, "session": name,
                   "metadata": {name.clone(): name}}),
        )
        .await;
        assert_eq!(goal["name"].as_str(), Some(name.as_str()));
        assert_eq!(goal["description"].as_str(), Some(name.as_str()));
        assert_eq!(
            goal["metadata"][name.as_str()].as_str(),
            Some(name.as_str())
        );
        let listed = ok(&client, "list_goals", json!({"session": name})).await;
        assert_eq!(listed["goals"][0]["name"].as_str(), Some(name.as_str()));
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    client.cancel().await.unwrap();
}

/// What clients read before calling: every tool has an input schema of
/// type object, an output schema, and annotations; optional arguments have
/// one plain type (simple clients convert string arguments by that type).
#[tokio::test]
async fn tools_list_describes_every_tool() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;
    let tools = tokio::time::timeout(crate::support::PATIENCE, client.list_all_tools())
        .await
        .unwrap()
        .unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ack_message",
            "broadcast",
            "complete_goal",
            "complete_my_goal",
            "get_context",
            "group_context",
            "group_peers",
            "group_share",
            "list_agents",
            "list_goals",
            "list_snapshots",
            "look",
            "read_messages",
            "register_goal",
            "restore_goal",
            "restore_hint",
            "save_context",
            "search_context",
            "send_message",
            "set_goal",
            "update_goal",
            "whoami"
        ]
    );
    for tool in &tools {
        let input = serde_json::to_value(&*tool.input_schema).unwrap();
        assert_eq!(input["type"], "object", "{}", tool.name);
        assert_eq!(input["additionalProperties"], false, "{}", tool.name);
        for (arg, schema) in input["properties"].as_object().unwrap() {
            assert!(
                schema.get("default") != Some(&Value::Null) && !schema["type"].is_array()
                    || arg == "id",
                "{}.{arg}: {schema}",
                tool.name
            );
        }
        let output = tool
            .output_schema
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no outputSchema", tool.name));
        assert_eq!(output.get("type"), Some(&json!("object")), "{}", tool.name);
        let annotations = tool.annotations.as_ref().unwrap();
        assert_eq!(annotations.open_world_hint, Some(false));
        let read_only = [
            "get_context",
            "group_context",
            "group_peers",
            "list_agents",
            "list_goals",
            "list_snapshots",
            "look",
            "read_messages",
            "restore_hint",
            "search_context",
            "whoami",
        ]
        .contains(&tool.name.as_ref());
        assert_eq!(annotations.read_only_hint, Some(read_only), "{}", tool.name);
    }
    let save = tools.iter().find(|t| t.name == "save_context").unwrap();
    let context = &serde_json::to_value(&*save.input_schema).unwrap()["properties"]["context"];
    assert_eq!(context["type"], "object", "context is inline: {context}");
    client.cancel().await.unwrap();
}

/// The 2026-07-28 revision has no `initialize`: a client discovers the
/// server (`server/discover`) and sends its version with every request.
/// rmcp's `Auto` mode is how a dual-era client (like the daemon may be)
/// connects; this server must answer it in the new era.
#[tokio::test]
async fn a_client_on_the_2026_revision_works_too() {
    use rmcp::model::ProtocolVersion;
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
    let dir = tempfile::tempdir().unwrap();
    let transport = rmcp::transport::TokioChildProcess::new(crate::support::serve::serve_command(
        &dir.path().join("b.db"),
        &[],
    ))
    .unwrap();
    let lifecycle = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    };
    let client = tokio::time::timeout(
        crate::support::PATIENCE,
        ().serve_with_lifecycle(transport, lifecycle),
    )
    .await
    .unwrap()
    .unwrap();
    let version = client.peer_info().unwrap().protocol_version.clone();
    assert_eq!(version, ProtocolVersion::V_2026_07_28);
    let params = rmcp::model::CallToolRequestParams::new("register_goal")
        .with_arguments(json!({"name": "modern"}).as_object().unwrap().clone());
    let result = client.call_tool(params).await.unwrap();
    assert_ne!(result.is_error, Some(true));
    assert_eq!(result.structured_content.unwrap()["name"], "modern");
    let params = rmcp::model::CallToolRequestParams::new("nope");
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(result.is_error, Some(true));
    client.cancel().await.unwrap();
}

/// `--db` wins over `$TMUX_AGENT_DB`, which wins over
/// `$XDG_DATA_HOME/tmux-agent/builtin.db`; the file is private.
#[tokio::test]
async fn database_location_follows_flag_env_and_xdg() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let xdg = dir.path().join("xdg");
    let env_db = dir.path().join("env.db");
    let flag_db = dir.path().join("flag.db");
    let command = |db_flag: Option<&std::path::Path>, env_db: Option<&std::path::Path>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tmux-agent"));
        cmd.args(["mcp", "serve"])
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .env_remove("TMUX_AGENT_DB")
            .env("XDG_DATA_HOME", &xdg);
        if let Some(db) = db_flag {
            cmd.arg("--db").arg(db);
        }
        if let Some(db) = env_db {
            cmd.env("TMUX_AGENT_DB", db);
        }
        cmd
    };
    for (cmd, expected, name) in [
        (
            command(None, None),
            xdg.join("tmux-agent/builtin.db"),
            "xdg",
        ),
        (command(None, Some(&env_db)), env_db.clone(), "env"),
        (
            command(Some(&flag_db), Some(&env_db)),
            flag_db.clone(),
            "flag",
        ),
    ] {
        let client = crate::support::serve::connect(cmd).await;
        ok(&client, "register_goal", json!({"name": name})).await;
        client.cancel().await.unwrap();
        let mode = std::fs::metadata(&expected).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", expected.display());
    }
    let dir_mode = std::fs::metadata(xdg.join("tmux-agent"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    // Each database holds exactly the goal registered through it.
    for (db, name) in [
        (xdg.join("tmux-agent/builtin.db"), "xdg"),
        (env_db, "env"),
        (flag_db, "flag"),
    ] {
        let client = start(&db).await;
        let listed = ok(&client, "list_goals", json!({})).await;
        assert_eq!(listed["goals"].as_array().unwrap().len(), 1);
        assert_eq!(listed["goals"][0]["name"], name);
        client.cancel().await.unwrap();
    }
}
