//! Call latency and throughput over one stdio connection to the test
//! server's `echo`, next to a baseline measured in the same run: `ping`
//! over the same kind of connection (the server does no work, so it is the
//! floor for transport + rmcp + pool).
//!
//! ```text
//! cargo bench --bench mcp_call            # 2,000 sequential, 20,000 pipelined
//! cargo bench --bench mcp_call -- 5000    # more sequential calls
//! ```
//!
//! Targets: sequential p95 under 1 ms, pipelined over 5,000 calls/s.

use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::json;
use tmux_agent::config::Knobs;
use tmux_agent::mcp::spec::{Scope, ServerSettings, ServerSpec, Source, StdioSpec, TransportSpec};
use tmux_agent::mcp::{CallOptions, McpPool};

const SERVER: &str = env!("CARGO_BIN_EXE_mcp-test-server");

fn pool(concurrency: usize) -> McpPool {
    let transport = TransportSpec::Stdio(StdioSpec {
        command: SERVER.into(),
        args: vec![],
        env: Default::default(),
        cwd: None,
    });
    let knobs = Knobs {
        concurrency: Some(concurrency),
        queue: Some(100_000),
        ..Knobs::default()
    };
    let spec = ServerSpec {
        name: "bench".into(),
        source: Source {
            file: "bench".into(),
            scope: Scope::Config,
        },
        settings: ServerSettings::resolve(&transport, knobs, Default::default()),
        transport,
    };
    McpPool::from_specs(vec![spec], vec![])
}

#[derive(Clone, Copy)]
enum Op {
    Ping,
    Echo,
}

async fn one(pool: &McpPool, op: Op) {
    match op {
        Op::Ping => {
            pool.ping("bench").await.expect("ping");
        }
        Op::Echo => {
            let out = pool
                .call_tool(
                    "bench",
                    "echo",
                    json!({"session": "work", "n": 1}),
                    CallOptions::default(),
                )
                .await
                .expect("echo");
            assert_eq!(out.value["n"], 1);
        }
    }
}

async fn sequential(pool: &McpPool, op: Op, calls: usize) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    for _ in 0..calls {
        let started = Instant::now();
        one(pool, op).await;
        histogram
            .record(started.elapsed().as_micros().max(1) as u64)
            .expect("in range");
    }
    histogram
}

async fn pipelined(pool: &McpPool, op: Op, workers: usize, calls: usize) -> f64 {
    let started = Instant::now();
    let per_worker = calls / workers;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    one(&pool, op).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("worker");
    }
    (per_worker * workers) as f64 / started.elapsed().as_secs_f64()
}

fn line(label: &str, h: &Histogram<u64>) {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{label:<22} n={:<6} p50 {:.3} ms  p95 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        h.len(),
        ms(0.5),
        ms(0.95),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number sets the sequential count.
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let seq = pool(1);
        // Warm up: spawn, handshake, allocator, branch predictors.
        let _ = sequential(&seq, Op::Echo, 300).await;
        let _ = sequential(&seq, Op::Ping, 300).await;
        let ping = sequential(&seq, Op::Ping, calls).await;
        let echo = sequential(&seq, Op::Echo, calls).await;
        println!("sequential, one stdio connection, concurrency 1:");
        line("  ping (baseline)", &ping);
        line("  tools/call echo", &echo);
        println!(
            "  echo/ping p50 ratio {:.2}, p95 ratio {:.2}",
            echo.value_at_quantile(0.5) as f64 / ping.value_at_quantile(0.5) as f64,
            echo.value_at_quantile(0.95) as f64 / ping.value_at_quantile(0.95) as f64
        );
        seq.shutdown().await;

        let wide = pool(32);
        let _ = pipelined(&wide, Op::Echo, 32, 2_000).await;
        let total = calls * 10;
        let ping_rate = pipelined(&wide, Op::Ping, 32, total).await;
        let echo_rate = pipelined(&wide, Op::Echo, 32, total).await;
        println!("pipelined, one stdio connection, concurrency 32, {total} calls from 32 tasks:");
        println!("  ping (baseline)        {ping_rate:.0} calls/s");
        println!(
            "  tools/call echo        {echo_rate:.0} calls/s  (echo/ping {:.2})",
            echo_rate / ping_rate
        );
        let stats = wide.stats_for("bench").expect("stats");
        println!(
            "  pool figures: {} echo calls, p50 {:.3} ms, p99 {:.3} ms",
            stats.counters.calls, stats.latency.p50_ms, stats.latency.p99_ms
        );
        wide.shutdown().await;
    });
}
