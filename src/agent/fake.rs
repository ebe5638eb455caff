//! A scripted, in-memory [`ToolCaller`] for unit tests: each `(server,
//! tool)` answers from its own script, in order, and every call is
//! recorded with its arguments and when it came.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

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

    /// Every call so far, in the order they came.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl ToolCaller for ScriptedCaller {
    async fn call(&self, server: &str, tool: &str, args: Value) -> Result<Value, CallError> {
        self.calls.lock().unwrap().push(Call {
            server: server.to_owned(),
            tool: tool.to_owned(),
            args,
            at: Instant::now(),
        });
        self.scripts
            .lock()
            .unwrap()
            .get_mut(&(server.to_owned(), tool.to_owned()))
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| Ok(json!({})))
    }
}
