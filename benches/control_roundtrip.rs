//! Command round trip over one control connection, next to the baseline
//! measured in the same run: spawning `tmux display -p` once per command.
//!
//! Both ask a private tmux server (`tmux -L <unique> -f /dev/null`, killed at
//! the end, even on panic) the same question: the `#{session_id}` of one
//! session. The control connection is the library's own
//! (`control::connection::Connection`), opened as the daemon opens it.
//!
//! ```text
//! cargo bench --bench control_roundtrip            # 1,000 of each
//! cargo bench --bench control_roundtrip -- 5000    # more
//! ```
//!
//! The last line is `RESULT {json}` with the percentiles in microseconds,
//! for `scripts/bench`. Aim: the control round trip ≥ 20× faster (median).

use std::process::{Command as Process, Stdio};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::json;
use tmux_agent::control::SessionId;
use tmux_agent::control::command::Command;
use tmux_agent::control::connection::{ConnectOptions, Connection};
use tmux_agent::control::server::ServerSocket;
use tokio_util::sync::CancellationToken;

/// A private tmux server holding one session, killed on drop.
struct PrivateServer {
    name: String,
}

impl PrivateServer {
    fn start() -> Self {
        let server = Self {
            name: format!("ta-bench-rt-{}", std::process::id()),
        };
        let status = server
            .tmux()
            .args(["new-session", "-d", "-s", "base", "cat"])
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        server
    }

    /// `tmux -L <name> -f /dev/null`, never aimed at the developer's server.
    fn tmux(&self) -> Process {
        let mut cmd = Process::new("tmux");
        cmd.args(["-L", &self.name, "-f", "/dev/null"])
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .stdin(Stdio::null());
        cmd
    }

    fn session_id(&self) -> String {
        let out = self
            .tmux()
            .args(["display", "-p", "-t", "base", "#{session_id}"])
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self
            .tmux()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds")
}

/// The baseline: one `tmux display -p` process per command.
fn spawned(server: &PrivateServer, target: &str, n: usize) -> Histogram<u64> {
    let mut h = histogram();
    for _ in 0..n {
        let started = Instant::now();
        let out = server
            .tmux()
            .args(["display", "-p", "-t", target, "-F", "#{session_id}"])
            .output()
            .expect("run tmux");
        h.record(started.elapsed().as_micros().max(1) as u64)
            .expect("in range");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), target);
    }
    h
}

/// Ours: the same question as a command over one control connection.
async fn over_control(server: &PrivateServer, target: &str, n: usize) -> Histogram<u64> {
    let stop = CancellationToken::new();
    let mut connection = Connection::open(
        ConnectOptions::new(ServerSocket::Name(server.name.clone())),
        stop.clone(),
    )
    .await
    .expect("attach");
    // Nobody else reads notifications here; drain them so the connection
    // task never waits on a full channel.
    let drain =
        tokio::spawn(async move { while connection.notifications.recv().await.is_some() {} });
    let session: SessionId = target.parse().expect("a session id");
    let handle = connection.handle.clone();
    let ask = || Command::display_message(session, "#{session_id}").expect("command");
    for _ in 0..100 {
        handle.run(ask()).await.expect("warm-up reply");
    }
    let mut h = histogram();
    for _ in 0..n {
        let started = Instant::now();
        let reply = handle.run(ask()).await.expect("reply");
        h.record(started.elapsed().as_micros().max(1) as u64)
            .expect("in range");
        assert_eq!(reply.lines.first().map(|l| &l[..]), Some(target.as_bytes()));
    }
    stop.cancel();
    let _ = connection.closed.await;
    drain.abort();
    h
}

fn figures(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "n": h.len(),
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    })
}

fn line(label: &str, h: &Histogram<u64>) {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{label:<32} n={:<6} p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        h.len(),
        ms(0.5),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number sets the count.
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    // `cargo test --benches` runs this once as a smoke test: keep it short.
    let n = if std::env::args().any(|a| a == "--bench") {
        n
    } else {
        20
    };
    let server = PrivateServer::start();
    let target = server.session_id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ours = runtime.block_on(over_control(&server, &target, n));
    let _ = spawned(&server, &target, 20); // warm the page cache
    let baseline = spawned(&server, &target, n);
    line("control connection round trip", &ours);
    line("spawn `tmux display -p` (baseline)", &baseline);
    let ratio = |q: f64| baseline.value_at_quantile(q) as f64 / ours.value_at_quantile(q) as f64;
    println!(
        "  control is {:.1}x faster at p50, {:.1}x at p99",
        ratio(0.5),
        ratio(0.99)
    );
    println!(
        "RESULT {}",
        json!({"control": figures(&ours), "spawn": figures(&baseline)})
    );
}
