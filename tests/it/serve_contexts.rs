//! The context tools of `tmux-agent mcp serve`, through a real stdio
//! connection: saving, the current record and the history, lookup by key
//! and by (reused) name, full-text search, and the history limit.

use crate::support::serve::{connect, ok, serve_command, start, tool_error};
use serde_json::{Value, json};

fn context(goal: &str, lines: &[&str]) -> Value {
    json!({
        "session_id": "$3",
        "goal": goal,
        "group": "build",
        "windows": [{
            "index": 0, "id": "@1", "name": "editor", "active": true,
            "layout": "b25d,80x24,0,0,0",
            "panes": [
                {"index": 0, "id": "%1", "title": "nvim", "command": "nvim",
                 "path": "/src/proj", "active": true, "lines": lines},
                {"index": 1, "id": "%2", "command": "bash", "path": "/src/proj",
                 "lines": ["$ cargo test", "test result: ok. 12 passed"]}
            ]
        }],
        "cwd": "/src/proj"
    })
}

#[tokio::test]
async fn save_twice_then_latest_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;
    let key = "host:$3:1732200000";
    let first = context("write the codec", &["fn decode() {", "}"]);
    let second = context("write the codec tests", &["#[test]", "fn decodes() {}"]);

    let receipt = ok(
        &client,
        "save_context",
        json!({"session": key, "session_name": "work", "context": first}),
    )
    .await;
    assert_eq!(receipt["session"], key);
    assert_eq!(receipt["saves"], 1);
    let first_id = receipt["save_id"].as_i64().unwrap();
    let receipt = ok(
        &client,
        "save_context",
        json!({"session": key, "session_name": "work-renamed", "context": second}),
    )
    .await;
    assert_eq!(receipt["saves"], 2);
    let second_id = receipt["save_id"].as_i64().unwrap();
    assert!(second_id > first_id);

    let latest = ok(&client, "get_context", json!({"session": key})).await;
    assert_eq!(latest["session"], key);
    assert_eq!(latest["session_name"], "work-renamed");
    assert_eq!(latest["saves_total"], 2);
    let saves = latest["saves"].as_array().unwrap();
    assert_eq!(saves.len(), 1);
    assert_eq!(saves[0]["save_id"], second_id);
    assert_eq!(
        saves[0]["context"], second,
        "the context comes back as saved"
    );

    let history = ok(
        &client,
        "get_context",
        json!({"session": key, "history": true, "limit": 10}),
    )
    .await;
    let saves = history["saves"].as_array().unwrap();
    assert_eq!(saves.len(), 2);
    assert_eq!(saves[0]["context"], second, "newest first");
    assert_eq!(saves[1]["context"], first);
    assert_eq!(saves[1]["session_name"], "work");
    let limited = ok(
        &client,
        "get_context",
        json!({"session": key, "history": true, "limit": 1}),
    )
    .await;
    assert_eq!(limited["saves"].as_array().unwrap().len(), 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn lookup_by_name_finds_the_latest_session_of_that_name() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;
    // Two sessions named "work" at different times: different keys.
    let old = json!({"goal": "old work"});
    let new = json!({"goal": "new work"});
    ok(
        &client,
        "save_context",
        json!({"session": "h:$1:100", "session_name": "work", "context": old}),
    )
    .await;
    ok(
        &client,
        "save_context",
        json!({"session": "h:$7:200", "session_name": "work", "context": new}),
    )
    .await;

    let found = ok(&client, "get_context", json!({"session_name": "work"})).await;
    assert_eq!(found["session"], "h:$7:200");
    assert_eq!(found["saves"][0]["context"], new);
    let by_key = ok(&client, "get_context", json!({"session": "h:$1:100"})).await;
    assert_eq!(by_key["saves"][0]["context"], old);

    // The old session saves again: now it is the latest "work".
    ok(
        &client,
        "save_context",
        json!({"session": "h:$1:100", "session_name": "work", "context": old}),
    )
    .await;
    let found = ok(&client, "get_context", json!({"session_name": "work"})).await;
    assert_eq!(found["session"], "h:$1:100");
    // A name where a key is asked for works too: no key matches, the name does.
    let typed = ok(&client, "get_context", json!({"session": "work"})).await;
    assert_eq!(typed["session"], "h:$1:100");

    let message = tool_error(&client, "get_context", json!({"session_name": "nope"})).await;
    assert!(message.contains("no saved context"), "{message}");
    let message = tool_error(&client, "get_context", json!({"session": "h:$9:9"})).await;
    assert!(message.contains("no saved context"), "{message}");
    let message = tool_error(
        &client,
        "get_context",
        json!({"session": "h:$1:100", "session_name": "work"}),
    )
    .await;
    assert!(message.contains("exactly one"), "{message}");
    let message = tool_error(&client, "get_context", json!({})).await;
    assert!(message.contains("exactly one"), "{message}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn search_finds_text_in_latest_saves_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;
    ok(&client, "save_context", json!({
        "session": "k1", "session_name": "parser",
        "context": context("nom parsers", &["error[E0308]: mismatched types", "  --> src/parse.rs:42"])
    })).await;
    ok(
        &client,
        "save_context",
        json!({
            "session": "k2", "session_name": "docs",
            "context": context("write the README", &["## Installation", "Café au lait"])
        }),
    )
    .await;

    let found = ok(
        &client,
        "search_context",
        json!({"query": "mismatched E0308"}),
    )
    .await;
    let matches = found["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 1, "{found}");
    assert_eq!(matches[0]["session"], "k1");
    assert_eq!(matches[0]["session_name"], "parser");
    assert_eq!(matches[0]["latest"], true);
    assert!(
        matches[0]["snippet"]
            .as_str()
            .unwrap()
            .contains("«mismatched»"),
        "{found}"
    );

    // Accents and case are ignored; a path is searched by its words.
    let found = ok(&client, "search_context", json!({"query": "CAFE"})).await;
    assert_eq!(found["matches"][0]["session"], "k2");
    let found = ok(&client, "search_context", json!({"query": "src/parse.rs"})).await;
    assert_eq!(found["matches"][0]["session"], "k1");
    // Words shared by both (the second pane) find both.
    let found = ok(&client, "search_context", json!({"query": "cargo test"})).await;
    assert_eq!(found["matches"].as_array().unwrap().len(), 2);
    // FTS5 syntax in a query is just text, never an error.
    for query in [
        r#"nom" OR "x"#,
        "NEAR(a b)",
        "parser*",
        "col:umn",
        "AND",
        "a\"b(",
        "-x",
    ] {
        ok(&client, "search_context", json!({"query": query})).await;
    }
    let message = tool_error(&client, "search_context", json!({"query": " \"*()- "})).await;
    assert!(message.contains("no words"), "{message}");

    // After k1 saves something else, its old text is history only.
    ok(
        &client,
        "save_context",
        json!({
            "session": "k1", "session_name": "parser", "context": {"goal": "lunch"}
        }),
    )
    .await;
    let found = ok(&client, "search_context", json!({"query": "mismatched"})).await;
    assert_eq!(found["matches"], json!([]));
    let found = ok(
        &client,
        "search_context",
        json!({"query": "mismatched", "history": true}),
    )
    .await;
    assert_eq!(found["matches"][0]["latest"], false);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn history_is_bounded_by_keep_saves() {
    let dir = tempfile::tempdir().unwrap();
    let client = connect(serve_command(
        &dir.path().join("b.db"),
        &["--keep-saves", "3"],
    ))
    .await;
    for n in 0..5 {
        let receipt = ok(
            &client,
            "save_context",
            json!({
                "session": "k", "session_name": "s", "context": {"goal": format!("step{n}")}
            }),
        )
        .await;
        assert_eq!(receipt["saves"], (n + 1).min(3));
    }
    let history = ok(
        &client,
        "get_context",
        json!({"session": "k", "history": true}),
    )
    .await;
    let goals: Vec<&str> = history["saves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["context"]["goal"].as_str().unwrap())
        .collect();
    assert_eq!(goals, ["step4", "step3", "step2"]);
    assert_eq!(history["saves_total"], 3);
    // Dropped saves are gone from the search index too.
    let found = ok(
        &client,
        "search_context",
        json!({"query": "step0", "history": true}),
    )
    .await;
    assert_eq!(found["matches"], json!([]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn hostile_session_names_and_lines_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;
    let long = "x".repeat(10_000);
    let names = [
        r#"x'; kill-server; '#(reboot)"#,
        "two\nlines",
        "#{session_name} \"quoted\" ;",
        "séance ☕ 会话",
        long.as_str(),
    ];
    for (n, name) in names.iter().enumerate() {
        let key = format!("h:${n}:{name}");
        let ctx = json!({"goal": name, "windows": [{"name": name, "panes": [{"lines": [name, "\u{1b}[1mbold\u{1b}[0m"]}]}]});
        ok(
            &client,
            "save_context",
            json!({"session": key, "session_name": name, "context": ctx}),
        )
        .await;
        let by_name = ok(&client, "get_context", json!({"session_name": name})).await;
        assert_eq!(by_name["session"].as_str(), Some(key.as_str()));
        assert_eq!(by_name["session_name"].as_str(), Some(*name));
        assert_eq!(by_name["saves"][0]["context"], ctx);
    }
    client.cancel().await.unwrap();
}
