//! Two `tmux-agent mcp serve` processes on one database (the daemon's and
//! an agent's) writing at the same time: nothing is lost, nothing is
//! duplicated, ids stay unique, and each process sees the other's writes.

use std::collections::HashSet;

use crate::support::serve::{Client, ok, start};
use futures::future::join_all;
use serde_json::json;

const CALLS_PER_PROCESS: usize = 60;

async fn write_many(client: &Client, who: &str) -> Vec<i64> {
    let calls = (0..CALLS_PER_PROCESS).map(|n| async move {
        let goal = ok(
            client,
            "register_goal",
            json!({"name": format!("{who}-{n}"), "session": who}),
        )
        .await;
        ok(
            client,
            "save_context",
            json!({"session": format!("{who}:{}", n % 5), "session_name": who,
                   "context": {"goal": format!("{who} step {n}")}}),
        )
        .await;
        goal["id"].as_i64().unwrap()
    });
    join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_write_concurrently_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    // Both start on a database that does not exist yet: schema creation
    // races too.
    let (daemon, agent) = tokio::join!(start(&db), start(&db));

    let (daemon_ids, agent_ids) =
        tokio::join!(write_many(&daemon, "daemon"), write_many(&agent, "agent"));
    let ids: HashSet<i64> = daemon_ids.iter().chain(&agent_ids).copied().collect();
    assert_eq!(ids.len(), 2 * CALLS_PER_PROCESS, "goal ids are unique");

    for client in [&daemon, &agent] {
        let all = ok(client, "list_goals", json!({"limit": 1000})).await;
        let listed: HashSet<i64> = all["goals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["id"].as_i64().unwrap())
            .collect();
        assert_eq!(listed, ids, "each process sees every goal");
        for who in ["daemon", "agent"] {
            for k in 0..5 {
                let got = ok(
                    client,
                    "get_context",
                    json!({"session": format!("{who}:{k}"), "history": true, "limit": 1000}),
                )
                .await;
                assert_eq!(
                    got["saves_total"],
                    CALLS_PER_PROCESS / 5,
                    "{who}:{k} kept every save"
                );
            }
        }
    }

    // The same replayed call reaching both processes at once registers one
    // goal.
    let args = json!({"name": "raced", "idempotency_key": "race-1"});
    let replays = join_all((0..10).map(|n| {
        let client = if n % 2 == 0 { &daemon } else { &agent };
        ok(client, "register_goal", args.clone())
    }))
    .await;
    assert!(
        replays.windows(2).all(|w| w[0] == w[1]),
        "one result for every replay"
    );
    let raced = ok(&daemon, "list_goals", json!({"limit": 1000})).await;
    let count = raced["goals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["name"] == "raced")
        .count();
    assert_eq!(count, 1);

    daemon.cancel().await.unwrap();
    agent.cancel().await.unwrap();
}
