//! A 50 MB response line: the connection is dropped with a clear error and
//! memory stays bounded. Alone in its own test binary so that the process's
//! peak RSS measures this test and nothing running beside it.

use crate::support::mcp::*;
use serde_json::json;
use tmux_agent::config::Knobs;
use tmux_agent::mcp::{CallError, CallOptions, McpPool};

fn pool_with(name: &str, record: &std::path::Path, args: &[&str], knobs: Knobs) -> McpPool {
    McpPool::from_specs(vec![test_server(name, record, args, knobs)], vec![])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_response_line_drops_the_connection_with_bounded_memory() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let pool = pool_with(
        "b",
        &record,
        &[],
        Knobs {
            call_timeout: dur(60_000),
            ..Knobs::default()
        },
    );
    let before = peak_rss_kib();
    let err = pool
        .call_tool(
            "b",
            "big",
            json!({"bytes": 50_000_000}),
            CallOptions::default(),
        )
        .await
        .unwrap_err();
    let grown_mib = (peak_rss_kib() - before) / 1024;
    match &err {
        CallError::AnswerTooLarge { limit, tool, .. } => {
            assert_eq!((*limit, tool.as_str()), (16 * 1024 * 1024, "big"));
            let message = err.to_string();
            assert!(message.contains("raise max_message_bytes"), "{message}");
        }
        other => panic!("expected the answer to be refused as too large, got {other:?}"),
    }
    // The 50 MB line was never held whole: at most the 16 MiB limit (plus
    // buffers) was buffered.
    assert!(grown_mib < 40, "peak RSS grew by {grown_mib} MiB");
    pool.shutdown().await;

    // A limit set in the config applies, and a result under it passes.
    let pool = pool_with(
        "b",
        &record,
        &[],
        Knobs {
            max_message_bytes: Some(100_000),
            ..Knobs::default()
        },
    );
    let out = pool
        .call_tool("b", "big", json!({"bytes": 50_000}), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(out.value.as_str().map(str::len), Some(50_000));
    let err = pool
        .call_tool(
            "b",
            "big",
            json!({"bytes": 200_000}),
            CallOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("longer than 100000 bytes"),
        "{err}"
    );
    pool.shutdown().await;
}

fn peak_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
