//! The MCP pool against real test-server processes: results, errors,
//! timeouts and cancellation on the wire, crashes and reconnects, limits,
//! and that nothing is left running afterwards.

use std::time::Duration;

use crate::support::mcp::*;
use serde_json::json;
use tmux_agent::config::{ConnectMode, Knobs, ProtocolChoice};
use tmux_agent::mcp::spec::{StdioSpec, TransportSpec};
use tmux_agent::mcp::{CallError, CallOptions, ConnectError, McpPool, OutputSource};

fn pool_with(name: &str, record: &std::path::Path, args: &[&str], knobs: Knobs) -> McpPool {
    McpPool::from_specs(vec![test_server(name, record, args, knobs)], vec![])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_come_back_structured_or_as_text_and_tool_errors_are_errors() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let pool = pool_with("t", &record, &[], Knobs::default());

    let args =
        json!({"name": "x'; kill-server; '#(reboot)", "nested": {"n": [1, 2]}, "nl": "a\nb"});
    let out = pool
        .call_tool("t", "echo", args.clone(), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(out.value, args);
    assert_eq!(out.source, OutputSource::Structured);
    // What arrived is exactly what we sent.
    let calls = events(&record, "request", Some("tools/call"));
    assert_eq!(calls[0]["arguments"], args);

    let out = pool
        .call_tool("t", "big", json!({"bytes": 5}), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(out.value, json!("xxxxx"));
    assert_eq!(out.source, OutputSource::Text);

    let err = pool
        .call_tool(
            "t",
            "fail",
            json!({"message": "disk full"}),
            CallOptions::default(),
        )
        .await
        .unwrap_err();
    match &err {
        CallError::ToolError { message, tool, .. } => {
            assert_eq!(message, "disk full");
            assert_eq!(tool, "fail");
        }
        other => panic!("expected a tool error, got {other:?}"),
    }
    assert_eq!(err.to_string(), "t/fail returned an error: disk full");

    let err = pool
        .call_tool("t", "echo", json!([1]), CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::BadArguments { got: "an array" }),
        "{err:?}"
    );
    let err = pool
        .call_tool("nope", "echo", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no MCP server named `nope`; configured: t");

    let tools = pool.list_tools("t").await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["echo", "sleep", "fail", "big", "crash", "garbage"]);

    let stats = pool.stats_for("t").unwrap();
    // Calls refused before reaching a server (bad arguments, unknown
    // server) are not the server's figures.
    assert_eq!(stats.counters.calls, 3);
    assert_eq!(stats.counters.successes, 2);
    assert_eq!(stats.counters.tool_errors, 1);
    assert_eq!(stats.tools["echo"].latency.count, 1);
    assert_eq!(stats.connects, 1);
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_initialize_fails_the_connect_and_is_stopped() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let knobs = Knobs {
        connect_timeout: dur(1500),
        ..Knobs::default()
    };
    let pool = pool_with("hang", &record, &["--hang-initialize"], knobs);
    let err = pool
        .call_tool("hang", "echo", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    match &err {
        CallError::ConnectFailed {
            error: ConnectError::Timeout { .. },
            ..
        } => {}
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.starts_with("hang: no answer to `initialize` within 1.5s"),
        "{message}"
    );
    assert!(
        message.contains("mcp-test-server: ready"),
        "stderr tail missing: {message}"
    );
    // The half-started server is gone.
    let pids = started_pids(&record);
    assert_eq!(pids.len(), 1);
    eventually(PATIENCE, "hung server stopped", || {
        (!alive(pids[0])).then_some(())
    });
    // The next call does not wait out the backoff: it fails at once.
    let err = pool
        .call_tool("hang", "echo", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    match err {
        CallError::NotConnected {
            retry_in,
            last_error,
            ..
        } => {
            assert!(retry_in <= Duration::from_millis(1200), "{retry_in:?}");
            assert!(last_error.unwrap().contains("no answer to `initialize`"));
        }
        other => panic!("expected not-connected, got {other:?}"),
    }
    assert_eq!(pool.servers()[0].state, "backoff");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_stdout_is_named_in_the_error_and_tolerated_when_answers_follow() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let knobs = Knobs {
        connect_timeout: dur(1500),
        ..Knobs::default()
    };
    let pool = pool_with(
        "g",
        &record,
        &["--garbage-stdout", "--hang-initialize"],
        knobs,
    );
    let err = pool
        .call_tool("g", "echo", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("non-JSON line(s) to stdout"), "{message}");
    assert!(message.contains("not json: {{{"), "{message}");
    pool.shutdown().await;

    // A banner before answering is tolerated; so is garbage mid-session.
    let pool = pool_with("g", &record, &["--garbage-stdout"], Knobs::default());
    let out = pool
        .call_tool("g", "echo", json!({"a": 1}), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(out.value, json!({"a": 1}));
    let out = pool
        .call_tool("g", "garbage", json!({"lines": 3}), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(out.value, json!("ok"));
    // Garbage instead of an answer: the timeout says what was seen.
    let err = pool
        .call_tool(
            "g",
            "garbage",
            json!({"respond": false}),
            CallOptions {
                timeout: Some(Duration::from_millis(300)),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string().contains("this is not JSON-RPC, line 0"),
        "{err}"
    );
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_call_times_out_and_the_server_sees_the_cancel() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let knobs = Knobs {
        call_timeout: dur(300),
        ..Knobs::default()
    };
    let pool = pool_with("t", &record, &[], knobs);
    let err = pool
        .call_tool("t", "sleep", json!({"ms": 60_000}), CallOptions::default())
        .await
        .unwrap_err();
    match &err {
        CallError::Timeout { limit, .. } => assert_eq!(limit, "call_timeout"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let id = events(&record, "request", Some("tools/call"))[0]["id"].clone();
    let cancel = eventually(PATIENCE, "notifications/cancelled recorded", || {
        events(&record, "notification", Some("notifications/cancelled"))
            .into_iter()
            .next()
    });
    assert_eq!(cancel["params"]["requestId"], id);
    assert_eq!(cancel["params"]["reason"], "request timeout");
    eventually(PATIENCE, "the tool saw the cancel", || {
        events(&record, "tool-cancelled", None)
            .into_iter()
            .find(|e| e["id"] == id)
    });

    // A caller that drops the call (its own timeout) also cancels it.
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        pool.call_tool(
            "t",
            "sleep",
            json!({"ms": 60_000}),
            CallOptions {
                timeout: Some(Duration::from_secs(60)),
            },
        ),
    )
    .await;
    assert!(dropped.is_err());
    let cancel = eventually(PATIENCE, "abandoned call cancelled", || {
        events(&record, "notification", Some("notifications/cancelled"))
            .into_iter()
            .nth(1)
    });
    assert_eq!(
        cancel["params"]["reason"],
        "request abandoned by the caller"
    );

    // The connection is still good afterwards.
    let out = pool
        .call_tool("t", "echo", json!({"after": true}), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(out.value, json!({"after": true}));
    assert_eq!(pool.stats_for("t").unwrap().counters.timeouts, 1);
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tool_timeouts_and_the_hard_cap_apply() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let mut spec = test_server(
        "t",
        &record,
        &[],
        Knobs {
            max_call_time: dur(400),
            ..Knobs::default()
        },
    );
    spec.settings
        .tool_timeouts
        .insert("sleep".into(), Duration::from_millis(200));
    let pool = McpPool::from_specs(vec![spec], vec![]);
    let err = pool
        .call_tool("t", "sleep", json!({"ms": 10_000}), CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Timeout { limit, .. } if limit == "tool_timeouts.sleep"),
        "{err:?}"
    );
    // Asking for more than max_call_time gets max_call_time.
    let err = pool
        .call_tool(
            "t",
            "sleep",
            json!({"ms": 10_000}),
            CallOptions {
                timeout: Some(Duration::from_secs(30)),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Timeout { limit, .. } if limit == "max_call_time"),
        "{err:?}"
    );
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_call_fails_the_call_then_comes_back() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let knobs = Knobs {
        call_timeout: dur(60_000),
        connect: Some(ConnectMode::Start),
        ..Knobs::default()
    };
    let pool = pool_with("k", &record, &[], knobs);
    let call = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.call_tool("k", "sleep", json!({"ms": 60_000}), CallOptions::default())
                .await
        })
    };
    eventually(PATIENCE, "sleep call arrived", || {
        events(&record, "request", Some("tools/call"))
            .into_iter()
            .next()
    });
    let pid = started_pids(&record)[0];
    // SAFETY: signalling a process we started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let err = call.await.unwrap().unwrap_err();
    match &err {
        CallError::TransportLost { server, .. } => assert_eq!(server, "k"),
        other => panic!("expected transport lost, got {other:?}"),
    }
    // During the backoff calls fail at once; afterwards the server is back
    // (connect = start reconnects by itself).
    let out = eventually_async(PATIENCE, "server back after backoff", || {
        let pool = pool.clone();
        async move {
            match pool
                .call_tool("k", "echo", json!({"back": 1}), CallOptions::default())
                .await
            {
                Ok(out) => Some(out),
                Err(CallError::NotConnected { .. }) => None,
                Err(other) => panic!("unexpected error while reconnecting: {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(out.value, json!({"back": 1}));
    let stats = pool.stats_for("k").unwrap();
    assert_eq!(stats.reconnects, 1);
    assert_eq!(stats.connects, 2);
    assert_eq!(stats.counters.transport_errors, 1);
    assert_eq!(started_pids(&record).len(), 2);
    assert!(!alive(pid));
    pool.shutdown().await;
}

/// `status` tells a recovered server from a failing one: the failed
/// handshake is the detail while the server is down, and is gone once a
/// connection is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_server_reports_no_stale_error() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let down = dir.path().join("down");
    std::fs::write(&down, "").unwrap();
    let pool = pool_with(
        "r",
        &record,
        &["--down-if-exists", down.to_str().unwrap()],
        Knobs::default(),
    );
    let err = pool
        .call_tool("r", "echo", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::ConnectFailed { .. }), "{err:?}");
    let status = &pool.servers()[0];
    assert_eq!(status.state, "backoff");
    assert!(status.detail.is_some(), "{status:?}");

    std::fs::remove_file(&down).unwrap();
    eventually_async(PATIENCE, "server back after the backoff", || {
        let pool = pool.clone();
        async move {
            match pool
                .call_tool("r", "echo", json!({}), CallOptions::default())
                .await
            {
                Ok(out) => Some(out),
                Err(CallError::NotConnected { .. } | CallError::ConnectFailed { .. }) => None,
                Err(other) => panic!("unexpected error while recovering: {other:?}"),
            }
        }
    })
    .await;
    let status = &pool.servers()[0];
    assert_eq!(status.state, "ready");
    assert_eq!(status.detail, None, "{status:?}");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crash_tool_is_a_transport_error_and_a_lazy_server_restarts_on_the_next_call() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let pool = pool_with("c", &record, &[], Knobs::default());
    let err = pool
        .call_tool("c", "crash", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::TransportLost { .. }), "{err:?}");
    let out = eventually_async(PATIENCE, "lazy server back", || {
        let pool = pool.clone();
        async move {
            pool.call_tool("c", "echo", json!({}), CallOptions::default())
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(out.value, json!({}));
    assert_eq!(started_pids(&record).len(), 2);
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_holds_and_a_full_queue_is_refused() {
    for limit in [1usize, 3] {
        let dir = tempdir();
        let record = dir.path().join("rec.jsonl");
        let pool = pool_with(
            "c",
            &record,
            &[],
            Knobs {
                concurrency: Some(limit),
                ..Knobs::default()
            },
        );
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    pool.call_tool(
                        "c",
                        "sleep",
                        json!({"ms": 100, "i": i}),
                        CallOptions::default(),
                    )
                    .await
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        let most = events(&record, "request", Some("tools/call"))
            .iter()
            .filter_map(|e| e["in_flight"].as_u64())
            .max()
            .unwrap();
        assert_eq!(most, limit as u64, "concurrency {limit}");
        pool.shutdown().await;
    }

    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let pool = pool_with(
        "q",
        &record,
        &[],
        Knobs {
            queue: Some(1),
            ..Knobs::default()
        },
    );
    let running: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.call_tool("q", "sleep", json!({"ms": 2000}), CallOptions::default())
                    .await
            })
        })
        .collect();
    eventually(PATIENCE, "first call running", || {
        events(&record, "request", Some("tools/call"))
            .into_iter()
            .next()
    });
    let err = pool
        .call_tool("q", "echo", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::QueueFull { limit: 2, .. }),
        "{err:?}"
    );
    for call in running {
        call.await.unwrap().unwrap();
    }
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_whole_process_group() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let pool = pool_with("s", &record, &["--spawn-grandchild"], Knobs::default());
    pool.call_tool("s", "echo", json!({}), CallOptions::default())
        .await
        .unwrap();
    let pids = started_pids(&record);
    assert_eq!(pids.len(), 2, "server and grandchild");
    assert!(pids.iter().all(|p| alive(*p)));
    pool.shutdown().await;
    for pid in &pids {
        eventually(PATIENCE, "process gone", || (!alive(*pid)).then_some(()));
    }

    // A server that ignores stdin closing and SIGTERM is killed all the same.
    let record = dir.path().join("stubborn.jsonl");
    let pool = pool_with(
        "s",
        &record,
        &[
            "--spawn-grandchild",
            "--ignore-stdin-eof",
            "--ignore-sigterm",
        ],
        Knobs::default(),
    );
    pool.call_tool("s", "echo", json!({}), CallOptions::default())
        .await
        .unwrap();
    let pids = started_pids(&record);
    pool.shutdown().await;
    for pid in &pids {
        eventually(PATIENCE, "stubborn process gone", || {
            (!alive(*pid)).then_some(())
        });
    }
}

#[test]
fn dropping_the_runtime_without_shutdown_leaks_no_process() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pool = pool_with("d", &record, &["--spawn-grandchild"], Knobs::default());
        pool.call_tool("d", "echo", json!({}), CallOptions::default())
            .await
            .unwrap();
        std::mem::forget(pool.clone());
    });
    let pids = started_pids(&record);
    assert_eq!(pids.len(), 2);
    drop(runtime);
    for pid in &pids {
        eventually(PATIENCE, "process gone after runtime drop", || {
            (!alive(*pid)).then_some(())
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_is_stopped_and_restarted_by_the_next_call() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let pool = pool_with(
        "i",
        &record,
        &[],
        Knobs {
            idle_timeout: dur(300),
            ..Knobs::default()
        },
    );
    assert_eq!(pool.servers()[0].state, "idle");
    assert!(
        started_pids(&record).is_empty(),
        "lazy: nothing started before a call"
    );
    pool.call_tool("i", "echo", json!({}), CallOptions::default())
        .await
        .unwrap();
    let first = started_pids(&record)[0];
    eventually(PATIENCE, "idled out", || {
        (pool.servers()[0].state == "idle" && !alive(first)).then_some(())
    });
    pool.call_tool("i", "echo", json!({}), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(started_pids(&record).len(), 2);
    assert_eq!(
        pool.stats_for("i").unwrap().reconnects,
        0,
        "idling out is not a failure"
    );
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eager_server_connects_at_start_and_is_pinged_when_quiet() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let knobs = Knobs {
        connect: Some(ConnectMode::Start),
        ping_interval: dur(100),
        ..Knobs::default()
    };
    let pool = pool_with("e", &record, &[], knobs);
    eventually(PATIENCE, "ready without a call", || {
        (pool.servers()[0].state == "ready").then_some(())
    });
    let status = &pool.servers()[0];
    let connection = status.connection.as_ref().unwrap();
    assert_eq!(connection.protocol_version, "2025-11-25");
    assert_eq!(connection.server_name.as_deref(), Some("mcp-test-server"));
    eventually(PATIENCE, "a ping", || {
        events(&record, "request", Some("ping")).into_iter().next()
    });
    // The handshake offered 2025-11-25 and named us.
    let init = &events(&record, "request", Some("initialize"))[0];
    assert_eq!(init["id"], 0);
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_protocol_version_is_refused() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let pool = pool_with(
        "v",
        &record,
        &["--protocol-version", "1999-01-01"],
        Knobs::default(),
    );
    let err = pool
        .call_tool("v", "echo", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::ConnectFailed { error: ConnectError::UnsupportedVersion { version, .. }, .. } if version == "1999-01-01"),
        "{err:?}"
    );
    let pid = started_pids(&record)[0];
    eventually(PATIENCE, "refused server stopped", || {
        (!alive(pid)).then_some(())
    });
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_auto_uses_discover_with_a_modern_server_and_initialize_otherwise() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let knobs = Knobs {
        protocol: Some(ProtocolChoice::Auto),
        ..Knobs::default()
    };
    let pool = pool_with("m", &record, &["--modern"], knobs);
    let info = pool.connect("m").await.unwrap();
    assert_eq!(info.protocol_version, "2026-07-28");
    let out = pool
        .call_tool("m", "echo", json!({"x": 1}), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(out.value, json!({"x": 1}));
    pool.shutdown().await;

    // A server that stops at 2025-11-25 ends up there (rmcp's discover
    // retries with 2025-11-25, which an rmcp server accepts; the npm
    // servers answer -32601 and get `initialize`: see mcp_npm.rs).
    let record = dir.path().join("legacy.jsonl");
    let pool = pool_with("l", &record, &[], knobs);
    let info = pool.connect("l").await.unwrap();
    assert_eq!(info.protocol_version, "2025-11-25");
    assert_eq!(
        events(&record, "request", None)[0]["method"],
        "server/discover"
    );
    let out = pool
        .call_tool("l", "echo", json!({"y": 2}), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(out.value, json!({"y": 2}));
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_servers_and_the_fallback_to_spawning() {
    let dir = tempdir();
    let record = dir.path().join("rec.jsonl");
    let socket = dir.path().join("mcp.sock");
    let mut listener = std::process::Command::new(TEST_SERVER)
        .args([
            "--socket",
            socket.to_str().unwrap(),
            "--record",
            record.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(PATIENCE, "socket listening", || {
        socket.exists().then_some(())
    });
    let fallback_record = dir.path().join("fallback.jsonl");
    let fallback = StdioSpec {
        command: TEST_SERVER.into(),
        args: vec!["--record".into(), fallback_record.display().to_string()],
        env: Default::default(),
        cwd: None,
    };
    let pool = McpPool::from_specs(
        vec![
            spec(
                "sock",
                TransportSpec::Unix {
                    socket: socket.clone(),
                    fallback: None,
                },
                Knobs::default(),
            ),
            spec(
                "fallback",
                TransportSpec::Unix {
                    socket: dir.path().join("absent.sock"),
                    fallback: Some(fallback),
                },
                Knobs::default(),
            ),
            spec(
                "absent",
                TransportSpec::Unix {
                    socket: dir.path().join("absent.sock"),
                    fallback: None,
                },
                Knobs::default(),
            ),
        ],
        vec![],
    );
    let out = pool
        .call_tool(
            "sock",
            "echo",
            json!({"via": "socket"}),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.value, json!({"via": "socket"}));
    assert_eq!(pool.connect("sock").await.unwrap().via, "unix");
    assert_eq!(
        events(&record, "request", Some("tools/call"))[0]["arguments"],
        json!({"via": "socket"})
    );

    let out = pool
        .call_tool(
            "fallback",
            "echo",
            json!({"via": "fallback"}),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.value, json!({"via": "fallback"}));
    assert_eq!(
        pool.connect("fallback").await.unwrap().via,
        "stdio (socket fallback)"
    );

    let err = pool
        .call_tool("absent", "echo", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CallError::ConnectFailed {
                error: ConnectError::Socket { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("absent.sock"), "{err}");
    pool.shutdown().await;
    let _ = listener.kill();
    let _ = listener.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_does_not_exist_says_so() {
    let transport = TransportSpec::Stdio(StdioSpec {
        command: "/nonexistent/mcp-server".into(),
        args: vec!["--flag".into()],
        env: Default::default(),
        cwd: None,
    });
    let pool = McpPool::from_specs(vec![spec("x", transport, Knobs::default())], vec![]);
    let err = pool
        .call_tool("x", "echo", json!({}), CallOptions::default())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(
            "x: could not start `/nonexistent/mcp-server --flag`: No such file or directory"
        ),
        "{message}"
    );
    assert!(
        message.ends_with("(is it installed and on PATH?)"),
        "{message}"
    );
    pool.shutdown().await;
}
