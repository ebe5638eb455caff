//! The built-in server's `resume-session` prompt: a session's last saved
//! context and its goals, over a real stdio connection.

use rmcp::model::GetPromptRequestParams;
use serde_json::json;

use crate::support::serve::{ok, start};

#[tokio::test]
async fn resume_session_gives_the_last_context_and_the_goals() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;
    let prompts = client.list_all_prompts().await.unwrap();
    assert_eq!(
        prompts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["resume-session"]
    );
    ok(
        &client,
        "save_context",
        json!({"session": "host:1:$3", "session_name": "build \"#(x)\"",
               "context": {"goal": "ship it", "windows": [{"index": 0, "panes": [{"lines": ["cargo test: 3 failed"]}]}]}}),
    )
    .await;
    ok(
        &client,
        "register_goal",
        json!({"name": "fix the 3 tests", "session": "host:1:$3"}),
    )
    .await;

    let mut args = serde_json::Map::new();
    args.insert("session".into(), json!("build \"#(x)\""));
    let prompt = client
        .get_prompt(GetPromptRequestParams::new("resume-session").with_arguments(args))
        .await
        .unwrap();
    let text = prompt.messages[0]
        .content
        .as_text()
        .expect("a text message")
        .text
        .clone();
    for part in [
        "host:1:$3",
        "cargo test: 3 failed",
        "fix the 3 tests",
        "ship it",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }

    let unknown = client
        .get_prompt(
            GetPromptRequestParams::new("resume-session").with_arguments(
                serde_json::Map::from_iter([("session".into(), json!("never saved"))]),
            ),
        )
        .await;
    assert!(unknown.is_err(), "a session never saved is an error");
    let missing = client
        .get_prompt(GetPromptRequestParams::new("resume-session"))
        .await;
    assert!(missing.is_err(), "the argument is required");
    client.cancel().await.unwrap();
}
