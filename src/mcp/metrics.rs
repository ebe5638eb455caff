//! Figures per server and per tool: call counts by outcome, latency
//! histograms (hdrhistogram, microseconds), connects, reconnects, connect
//! time and uptime. [`ServerMetrics`] is the mutable record a server's
//! callers and supervisor update; [`ServerStats`] is its serializable
//! snapshot for `mcp stats --json`.
//!
//! Latency is recorded for calls that got an answer (a result, an `isError`
//! result or a JSON-RPC error), from the moment the request was sent: a
//! timeout's "latency" is only its limit, and queue wait or a lazy connect
//! is not the server's speed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency the histograms track: one hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The tool answered with `isError: true`.
    ToolError,
    JsonRpcError,
    Timeout,
    /// The connection died during the call.
    TransportError,
    /// Refused before reaching the server (queue full, not connected,
    /// connect failed).
    Rejected,
}

impl Outcome {
    fn answered(self) -> bool {
        matches!(
            self,
            Outcome::Success | Outcome::ToolError | Outcome::JsonRpcError
        )
    }
}

/// Counts of calls by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub calls: u64,
    pub successes: u64,
    pub tool_errors: u64,
    pub json_rpc_errors: u64,
    pub timeouts: u64,
    pub transport_errors: u64,
    pub rejected: u64,
}

impl Counters {
    fn add(&mut self, outcome: Outcome) {
        self.calls += 1;
        let slot = match outcome {
            Outcome::Success => &mut self.successes,
            Outcome::ToolError => &mut self.tool_errors,
            Outcome::JsonRpcError => &mut self.json_rpc_errors,
            Outcome::Timeout => &mut self.timeouts,
            Outcome::TransportError => &mut self.transport_errors,
            Outcome::Rejected => &mut self.rejected,
        };
        *slot += 1;
    }
}

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        // 3 significant figures (about 0.1% error) from 1 µs, growing only
        // as far as the largest sample (at most 1 h, by `record`'s clamp):
        // allocated for 1 µs .. 1 h up front, each histogram took 188 KB,
        // most of it for latencies no call ever has. Now 16 KiB when
        // made, 96 KiB once a 2 s sample came (the unit test below).
        match Histogram::new(3) {
            Ok(h) => Latency(h),
            // The bounds are constants that hdrhistogram accepts.
            Err(_) => unreachable!("constant histogram bounds are valid"),
        }
    }
}

impl Latency {
    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        // Within bounds by the clamp, so this cannot fail.
        let _ = self.0.record(micros);
    }

    /// min / p50 / p95 / p99 / max, in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        let ms = |micros: u64| micros as f64 / 1000.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_ms: ms(h.min()),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Figures for one tool.
#[derive(Debug, Clone, Default)]
pub struct ToolMetrics {
    pub counters: Counters,
    pub latency: Latency,
}

/// Figures for one server.
#[derive(Debug, Clone, Default)]
pub struct ServerMetrics {
    pub counters: Counters,
    pub latency: Latency,
    pub tools: BTreeMap<String, ToolMetrics>,
    /// Successful connects (handshakes).
    pub connects: u64,
    /// Connects that failed.
    pub connect_failures: u64,
    /// Connections lost (crash, closed transport, failed ping) after which
    /// the supervisor reconnected or will.
    pub reconnects: u64,
    pub connect_time: Latency,
    /// Since when the current connection has been up.
    pub up_since: Option<Instant>,
}

impl ServerMetrics {
    /// Records one call.
    pub fn record_call(&mut self, tool: &str, outcome: Outcome, latency: Duration) {
        self.counters.add(outcome);
        // Do not let a flood of made-up tool names grow the map without
        // bound: calls to tools never answered are counted on the server only.
        let known = self.tools.contains_key(tool) || outcome.answered() || self.tools.len() < 256;
        if known {
            let entry = self.tools.entry(tool.to_string()).or_default();
            entry.counters.add(outcome);
            if outcome.answered() {
                entry.latency.record(latency);
            }
        }
        if outcome.answered() {
            self.latency.record(latency);
        }
    }

    /// Records a finished handshake.
    pub fn record_connect(&mut self, took: Duration) {
        self.connects += 1;
        self.connect_time.record(took);
        self.up_since = Some(Instant::now());
    }

    /// Records the loss of a live connection.
    pub fn record_lost(&mut self) {
        self.reconnects += 1;
        self.up_since = None;
    }

    /// Records a planned close (idle, shutdown, rebuild).
    pub fn record_closed(&mut self) {
        self.up_since = None;
    }

    /// A serializable snapshot.
    pub fn snapshot(&self, server: &str) -> ServerStats {
        ServerStats {
            server: server.to_string(),
            counters: self.counters,
            latency: self.latency.summary(),
            connects: self.connects,
            connect_failures: self.connect_failures,
            reconnects: self.reconnects,
            connect_time: self.connect_time.summary(),
            uptime_s: self.up_since.map(|t| t.elapsed().as_secs_f64()),
            tools: self
                .tools
                .iter()
                .map(|(name, t)| {
                    (
                        name.clone(),
                        ToolStats {
                            counters: t.counters,
                            latency: t.latency.summary(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Snapshot of one server's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerStats {
    pub server: String,
    #[serde(flatten)]
    pub counters: Counters,
    pub latency: LatencySummary,
    pub connects: u64,
    pub connect_failures: u64,
    pub reconnects: u64,
    pub connect_time: LatencySummary,
    /// Seconds the current connection has been up; null when down.
    pub uptime_s: Option<f64>,
    pub tools: BTreeMap<String, ToolStats>,
}

/// Snapshot of one tool's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolStats {
    #[serde(flatten)]
    pub counters: Counters,
    pub latency: LatencySummary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_outcome_and_summarises_latency() {
        let mut m = ServerMetrics::default();
        for ms in 1..=100 {
            m.record_call("echo", Outcome::Success, Duration::from_millis(ms));
        }
        m.record_call("echo", Outcome::ToolError, Duration::from_millis(1));
        m.record_call("sleep", Outcome::Timeout, Duration::from_secs(30));
        let s = m.snapshot("t");
        assert_eq!(s.counters.calls, 102);
        assert_eq!(s.counters.successes, 100);
        assert_eq!(s.counters.tool_errors, 1);
        assert_eq!(s.counters.timeouts, 1);
        assert_eq!(s.tools["echo"].counters.calls, 101);
        // The timeout is not a latency sample.
        assert_eq!(s.latency.count, 101);
        assert_eq!(s.tools["sleep"].latency.count, 0);
        assert!((s.latency.p50_ms - 50.0).abs() < 0.5, "{:?}", s.latency);
        assert!((s.latency.p99_ms - 99.0).abs() < 0.5, "{:?}", s.latency);
        assert!((s.latency.max_ms - 100.0).abs() < 0.5, "{:?}", s.latency);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["calls"], 102);
        assert_eq!(json["tools"]["echo"]["tool_errors"], 1);
    }

    #[test]
    fn a_histogram_grows_only_as_far_as_its_samples() {
        let bytes = |l: &Latency| l.0.distinct_values() * std::mem::size_of::<u64>();
        let mut latency = Latency::default();
        let fresh = bytes(&latency);
        latency.record(Duration::from_millis(2_000));
        let two_seconds = bytes(&latency);
        latency.record(Duration::from_secs(7_200));
        let clamped = bytes(&latency);
        eprintln!("histogram bytes: fresh {fresh}, to 2 s {two_seconds}, to 1 h {clamped}");
        assert!(fresh < 64 * 1024, "{fresh}");
        assert!(two_seconds < 128 * 1024, "{two_seconds}");
        // The clamp at 1 h bounds the growth; the 1 h sample still counts.
        assert!(clamped <= 200 * 1024, "{clamped}");
        assert_eq!(latency.summary().count, 2);
        assert!(latency.summary().max_ms >= 3_599_000.0);
    }

    #[test]
    fn unknown_tool_names_cannot_grow_the_map_forever() {
        let mut m = ServerMetrics::default();
        for i in 0..1000 {
            m.record_call(&format!("t{i}"), Outcome::Rejected, Duration::ZERO);
        }
        assert_eq!(m.tools.len(), 256);
        assert_eq!(m.counters.rejected, 1000);
    }
}
