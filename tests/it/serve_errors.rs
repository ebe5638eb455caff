//! Bad input to `tmux-agent mcp serve`: every mistake a caller can make is a
//! tool result with `isError` and a message naming the problem (MCP
//! 2025-11-25), the server keeps serving afterwards, and malformed
//! JSON-RPC does not bring it down.

use std::process::Stdio;

use crate::support::PATIENCE;
use crate::support::serve::{connect, ok, serve_command, start, tool_error};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test]
async fn unknown_tool_is_a_tool_error_naming_the_tools() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;
    let message = tool_error(&client, "drop_tables", json!({})).await;
    assert!(
        message.contains("unknown tool \"drop_tables\""),
        "{message}"
    );
    assert!(message.contains("register_goal"), "{message}");
    ok(&client, "list_goals", json!({})).await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn wrong_argument_types_and_names_are_tool_errors() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;
    let cases: &[(&str, Value, &str)] = &[
        ("register_goal", json!({"name": 5}), "invalid type"),
        ("register_goal", json!({}), "missing field `name`"),
        (
            "register_goal",
            json!({"name": "x", "sesion": "typo"}),
            "unknown field `sesion`",
        ),
        (
            "register_goal",
            json!({"name": "x", "metadata": [1]}),
            "invalid type",
        ),
        (
            "register_goal",
            json!({"name": "  "}),
            "name must not be empty",
        ),
        (
            "update_goal",
            json!({"id": 1, "status": "paused"}),
            "unknown variant `paused`",
        ),
        (
            "update_goal",
            json!({"id": "one", "status": "active"}),
            "not an integer",
        ),
        (
            "update_goal",
            json!({"id": 1.5, "status": "active"}),
            "did not match",
        ),
        (
            "update_goal",
            json!({"id": 999, "status": "active"}),
            "no goal with id 999",
        ),
        ("complete_goal", json!({"id": 999}), "no goal with id 999"),
        ("list_goals", json!({"limit": -1}), "invalid value"),
        (
            "save_context",
            json!({"session": "k", "session_name": "s", "context": "text"}),
            "invalid type",
        ),
        (
            "save_context",
            json!({"session": "", "session_name": "s", "context": {}}),
            "must not be empty",
        ),
        (
            "save_context",
            json!({"session": "k", "session_name": "s", "context": {"windows": [{"panes": [{"lines": "one string"}]}]}}),
            "invalid type",
        ),
        ("get_context", json!({"session": 3}), "invalid type"),
        ("search_context", json!({}), "missing field `query`"),
    ];
    for (tool, args, expected) in cases {
        let message = tool_error(&client, tool, args.clone()).await;
        assert!(
            message.contains(expected),
            "{tool} {args}: expected {expected:?} in {message:?}"
        );
    }
    // None of that stored anything, and the server still works.
    let listed = ok(&client, "list_goals", json!({})).await;
    assert_eq!(listed["goals"], json!([]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn values_over_the_cap_are_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let client = connect(serve_command(&db, &["--max-value-bytes", "4096"])).await;
    let big_lines = vec!["y".repeat(100); 50]; // about 5 KB of JSON
    let message = tool_error(
        &client,
        "save_context",
        json!({
            "session": "k", "session_name": "s",
            "context": {"windows": [{"panes": [{"lines": big_lines}]}]}
        }),
    )
    .await;
    assert!(message.contains("argument `context`"), "{message}");
    assert!(message.contains("limit of 4096 bytes"), "{message}");
    let message = tool_error(&client, "register_goal", json!({"name": "n".repeat(5000)})).await;
    assert!(message.contains("argument `name`"), "{message}");
    // Under the cap is fine.
    ok(&client, "register_goal", json!({"name": "n".repeat(4000)})).await;
    let missing = tool_error(&client, "get_context", json!({"session": "k"})).await;
    assert!(missing.contains("no saved context"), "{missing}");
    client.cancel().await.unwrap();

    // The default cap is 1 MiB: 2 MiB is refused, 512 KiB is kept.
    let client = start(&db).await;
    let line = "z".repeat(1024);
    let huge = vec![line.clone(); 2048];
    let message = tool_error(&client, "save_context", json!({
        "session": "k", "session_name": "s", "context": {"windows": [{"panes": [{"lines": huge}]}]}
    }))
    .await;
    assert!(message.contains("limit of 1048576 bytes"), "{message}");
    let half = vec![line; 512];
    ok(&client, "save_context", json!({
        "session": "k", "session_name": "s", "context": {"windows": [{"panes": [{"lines": half.clone()}]}]}
    }))
    .await;
    let got = ok(&client, "get_context", json!({"session": "k"})).await;
    assert_eq!(
        got["saves"][0]["context"]["windows"][0]["panes"][0]["lines"],
        json!(half)
    );
    client.cancel().await.unwrap();
}

/// Raw JSON-RPC lines, to send what no well-behaved client would.
#[tokio::test]
async fn malformed_json_rpc_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = serve_command(&dir.path().join("b.db"), &[]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = async |line: &str| {
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    };
    send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#).await;
    send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
    send("this is not json").await;
    send(r#"{"jsonrpc":"2.0","id":2,"method":"no/such/method"}"#).await;
    send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"register_goal","arguments":"not an object"}}"#).await;
    send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"register_goal","arguments":{"name":"after the noise"}}}"#).await;

    let mut answers = std::collections::HashMap::new();
    let read_all = async {
        while answers.len() < 4 {
            let line = stdout
                .next_line()
                .await
                .unwrap()
                .expect("server closed stdout");
            let message: Value = serde_json::from_str(&line).unwrap();
            if let Some(id) = message["id"].as_i64() {
                answers.insert(id, message);
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all)
        .await
        .expect("no answers");
    assert_eq!(answers[&1]["result"]["serverInfo"]["name"], "tmux-agent");
    assert_eq!(answers[&2]["error"]["code"], -32601, "{}", answers[&2]);
    assert!(answers[&3].get("error").is_some() || answers[&3]["result"]["isError"] == true);
    assert_eq!(
        answers[&4]["result"]["structuredContent"]["name"], "after the noise",
        "{}",
        answers[&4]
    );
    drop(stdin);
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "server exits cleanly when stdin closes: {status}"
    );
}
