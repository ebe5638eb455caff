//! The built-in server's prompt (`resume-session`: a session's last saved
//! context and its goals) and its resources, over a real stdio connection.

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

#[tokio::test]
async fn goals_and_contexts_are_resources() {
    use rmcp::model::{ReadResourceRequestParams, ResourceContents};
    let dir = tempfile::tempdir().unwrap();
    let client = start(&dir.path().join("b.db")).await;
    let listed = client.list_all_resources().await.unwrap();
    assert_eq!(listed[0].uri, "tmux-agent://goals");
    let templates = client.list_all_resource_templates().await.unwrap();
    let uris: Vec<_> = templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(
        uris,
        [
            "tmux-agent://goal/{id}",
            "tmux-agent://context/{session}",
            "tmux-agent://session/{name}"
        ]
    );

    let goal = ok(&client, "register_goal", json!({"name": "as a resource"})).await;
    ok(
        &client,
        "save_context",
        json!({"session": "host:1:$3", "session_name": "s", "context": {"goal": "g"}}),
    )
    .await;
    let read = async |uri: &str| {
        let result = client
            .read_resource(ReadResourceRequestParams::new(uri))
            .await?;
        Ok::<_, rmcp::ServiceError>(match &result.contents[0] {
            ResourceContents::TextResourceContents { text, .. } => {
                serde_json::from_str::<serde_json::Value>(text).unwrap()
            }
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(
        read("tmux-agent://goals").await.unwrap()["goals"][0]["name"],
        "as a resource"
    );
    let one = read(&format!("tmux-agent://goal/{}", goal["id"]))
        .await
        .unwrap();
    assert_eq!(one["name"], "as a resource");
    let context = read("tmux-agent://context/host:1:$3").await.unwrap();
    assert_eq!(context["saves"][0]["context"]["goal"], "g");
    assert!(read("tmux-agent://goal/999").await.is_err());
    assert!(read("tmux-agent://nothing").await.is_err());
    client.cancel().await.unwrap();
}
