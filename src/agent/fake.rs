//! A scripted, in-memory [`ToolCaller`] for unit tests: each `(server,
//! tool)` answers from its own script, in order, and every call is
//! recorded with its arguments and when it came.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::dispatch::ToolCaller;
use crate::mcp::CallError;

/// One call the fake received.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub server: String,
    pub tool: String,
    pub args: Value,
    pub at: Instant,
}

/// The answers still to give, per `(server, tool)`.
type Scripts = HashMap<(String, String), VecDeque<Result<Value, CallError>>>;

/// Answers calls from scripts; an unscripted call answers `{}`.
#[derive(Debug, Default)]
pub(crate) struct ScriptedCaller {
    scripts: Mutex<Scripts>,
    calls: Mutex<Vec<Call>>,
    /// What [`ToolCaller::concurrency`] says (0: the default, 1).
    concurrency: usize,
    /// How long each call takes, so that calls can overlap.
    delay: Duration,
    overlap: Mutex<Overlap>,
}

/// The calls in flight, by their `session` argument.
#[derive(Debug, Default)]
struct Overlap {
    sessions: HashSet<String>,
    now: usize,
    /// The most calls in flight at once.
    most: usize,
    /// Sessions that had a call sent while another of theirs was in flight.
    doubled: Vec<String>,
}

impl ScriptedCaller {
    /// Queues the next answer of `tool` on `server`.
    pub fn answer(&self, server: &str, tool: &str, answer: Result<Value, CallError>) -> &Self {
        self.scripts
            .lock()
            .unwrap()
            .entry((server.to_owned(), tool.to_owned()))
            .or_default()
            .push_back(answer);
        self
    }

    /// A caller whose server takes `concurrency` calls at once, each
    /// answered after `delay`.
    pub fn overlapping(concurrency: usize, delay: Duration) -> Self {
        Self {
            concurrency,
            delay,
            ..Self::default()
        }
    }

    /// The most calls that were in flight at once, and the sessions that
    /// ever had two in flight.
    pub fn overlap(&self) -> (usize, Vec<String>) {
        let overlap = self.overlap.lock().unwrap();
        (overlap.most, overlap.doubled.clone())
    }

    /// Every call so far, in the order they came.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl ToolCaller for ScriptedCaller {
    fn concurrency(&self, _server: &str) -> usize {
        self.concurrency.max(1)
    }

    async fn call(&self, server: &str, tool: &str, args: Value) -> Result<Value, CallError> {
        let session = args["session"].as_str().unwrap_or_default().to_owned();
        self.calls.lock().unwrap().push(Call {
            server: server.to_owned(),
            tool: tool.to_owned(),
            args,
            at: Instant::now(),
        });
        {
            let mut overlap = self.overlap.lock().unwrap();
            if !overlap.sessions.insert(session.clone()) {
                overlap.doubled.push(session.clone());
            }
            overlap.now += 1;
            overlap.most = overlap.most.max(overlap.now);
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        {
            let mut overlap = self.overlap.lock().unwrap();
            overlap.sessions.remove(&session);
            overlap.now -= 1;
        }
        self.scripts
            .lock()
            .unwrap()
            .get_mut(&(server.to_owned(), tool.to_owned()))
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| Ok(json!({})))
    }
}
