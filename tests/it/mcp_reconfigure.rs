//! `McpPool::reconfigure` against real test-server processes: an unchanged
//! server keeps its process, a changed one is replaced, a removed one is
//! stopped, and a new one can be called.

use crate::support::mcp::*;
use serde_json::json;
use tmux_agent::config::Knobs;
use tmux_agent::mcp::{CallError, CallOptions, McpPool};

/// The pid of the process that answered a call on `server`.
async fn pid_of(pool: &McpPool, server: &str) -> u64 {
    pool.call_tool(server, "echo", json!({}), CallOptions::default())
        .await
        .unwrap_or_else(|e| panic!("calling {server}: {e}"));
    pool.connect(server)
        .await
        .unwrap()
        .pid
        .map(u64::from)
        .expect("a stdio server has a pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_servers_keep_their_process_and_changed_ones_restart() {
    let dir = tempdir();
    let rec = |n: &str| dir.path().join(format!("{n}.jsonl"));
    let keep = test_server("keep", &rec("keep"), &[], Knobs::default());
    let change = test_server("change", &rec("change"), &[], Knobs::default());
    let gone = test_server("gone", &rec("gone"), &[], Knobs::default());
    let pool = McpPool::from_specs(vec![keep.clone(), change.clone(), gone.clone()], vec![]);
    let keep_pid = pid_of(&pool, "keep").await;
    let change_pid = pid_of(&pool, "change").await;
    let gone_pid = pid_of(&pool, "gone").await;

    // `change` gets another flag; `keep` moves to another file only,
    // which does not change how it is started.
    let mut moved = keep.clone();
    moved.source.file = "elsewhere.toml".into();
    let changed = test_server("change", &rec("change"), &["--modern"], Knobs::default());
    let added = test_server("added", &rec("added"), &[], Knobs::default());
    let report = pool.reconfigure_specs(&[moved, changed, added], &[]);
    assert_eq!(report.unchanged, ["keep"]);
    assert_eq!(report.restarted, ["change"]);
    assert_eq!(report.removed, ["gone"]);
    assert_eq!(report.added, ["added"]);
    assert_eq!(
        report.summary(),
        "change restarted, added added, gone removed, 1 kept"
    );

    assert_eq!(pid_of(&pool, "keep").await, keep_pid, "keep was restarted");
    let new_pid = pid_of(&pool, "change").await;
    assert_ne!(new_pid, change_pid, "change still runs its old process");
    eventually(PATIENCE, "the old `change` process to exit", || {
        (!alive(change_pid)).then_some(())
    });
    eventually(PATIENCE, "the removed server's process to exit", || {
        (!alive(gone_pid)).then_some(())
    });
    pid_of(&pool, "added").await;
    let err = pool
        .call_tool("gone", "echo", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::UnknownServer { .. }), "{err:?}");
    let names: Vec<String> = pool.servers().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["added", "change", "keep"]);

    pool.shutdown().await;
    for pid in [keep_pid, new_pid] {
        eventually(PATIENCE, "every server to exit at shutdown", || {
            (!alive(pid)).then_some(())
        });
    }
}
