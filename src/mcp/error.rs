//! What can go wrong talking to an MCP server, as typed errors whose
//! messages say what happened and, where there is one, what to do.

use std::time::Duration;

use thiserror::Error;

/// Why a connection could not be opened.
#[derive(Debug, Clone, Error)]
pub enum ConnectError {
    /// The program could not be started.
    #[error("could not start `{command}`: {reason}{hint}")]
    Spawn {
        command: String,
        reason: String,
        hint: &'static str,
    },
    /// The Unix socket could not be reached (and there is no command to
    /// fall back to).
    #[error("could not connect to socket {path}: {reason}")]
    Socket { path: String, reason: String },
    /// The handshake did not finish in time.
    #[error("no answer to `initialize` within {}{context}", secs(*after))]
    Timeout { after: Duration, context: String },
    /// The handshake failed.
    #[error("handshake failed: {message}{context}")]
    Handshake { message: String, context: String },
    /// The server picked a protocol version we do not speak.
    #[error(
        "the server chose protocol version {version}, which tmux-agent does not support \
         (supported: {supported}); upgrade the server or tmux-agent"
    )]
    UnsupportedVersion { version: String, supported: String },
    /// The configuration cannot be turned into a connection (bad URL,
    /// header, ...).
    #[error("{0}")]
    Config(String),
}

/// Why a tool call (or list/ping) failed. Every variant names the server.
#[derive(Debug, Clone, Error)]
pub enum CallError {
    /// The tool ran and reported failure (`isError: true`).
    #[error("{server}/{tool} returned an error: {message}")]
    ToolError {
        server: String,
        tool: String,
        /// The result's text content, joined.
        message: String,
        /// The result's `structuredContent`, if any (boxed: a JSON value is
        /// large with key order kept, and errors are passed by value).
        structured: Option<Box<serde_json::Value>>,
    },
    /// The server answered with a JSON-RPC error.
    #[error("{server} answered with JSON-RPC error {code}: {message}")]
    JsonRpc {
        server: String,
        code: i32,
        message: String,
        data: Option<serde_json::Value>,
    },
    /// No answer in time; `notifications/cancelled` was sent.
    #[error(
        "{server}/{tool} gave no answer within {} ({limit}); the request was cancelled{hint}",
        secs(*after)
    )]
    Timeout {
        server: String,
        tool: String,
        after: Duration,
        /// Which limit fired: `call_timeout`, `tool_timeouts.<tool>`,
        /// `--timeout`, `max_call_time`, or `queue wait`.
        limit: String,
        hint: String,
    },
    /// The connection died while the call was in flight.
    #[error("{server}: connection lost during the call: {detail}")]
    TransportLost { server: String, detail: String },
    /// The answer was longer than `max_message_bytes`; the connection was
    /// dropped (the rest of the message cannot be skipped safely).
    #[error(
        "{server}/{tool} answered with a message longer than {limit} bytes; the connection was \
         dropped (raise max_message_bytes for {server} if answers this big are expected)"
    )]
    AnswerTooLarge {
        server: String,
        tool: String,
        limit: usize,
    },
    /// The server is not connected and will not be tried again yet.
    #[error(
        "{server} is not connected (retrying in {}){}",
        secs(*retry_in),
        last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default()
    )]
    NotConnected {
        server: String,
        retry_in: Duration,
        last_error: Option<String>,
    },
    /// Connecting (for this call) failed.
    #[error("{server}: {error}")]
    ConnectFailed { server: String, error: ConnectError },
    /// Too many calls waiting already.
    #[error(
        "{server}: call queue full ({limit} calls running or waiting); the server is slower than \
         the calls arriving, raise `concurrency` or `queue` for it, or retry later"
    )]
    QueueFull { server: String, limit: usize },
    /// No server of that name.
    #[error("no MCP server named `{server}`{}", known_list(known))]
    UnknownServer { server: String, known: Vec<String> },
    /// The server exists in a config file but cannot be run.
    #[error("{server} cannot be used: {reason}")]
    Config { server: String, reason: String },
    /// The arguments are not a JSON object.
    #[error("tool arguments must be a JSON object (or null), not {got}")]
    BadArguments { got: &'static str },
    /// The server answered something other than a tool result.
    #[error("{server} answered with something unexpected: {detail}")]
    Unexpected { server: String, detail: String },
    /// The pool is shutting down.
    #[error("{server}: the MCP pool is shutting down")]
    ShuttingDown { server: String },
}

impl CallError {
    /// A short, stable name for the kind of error (metrics, JSON output).
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::ToolError { .. } => "tool-error",
            CallError::JsonRpc { .. } => "json-rpc-error",
            CallError::Timeout { .. } => "timeout",
            CallError::TransportLost { .. } => "transport-lost",
            CallError::AnswerTooLarge { .. } => "answer-too-large",
            CallError::NotConnected { .. } => "not-connected",
            CallError::ConnectFailed { .. } => "connect-failed",
            CallError::QueueFull { .. } => "queue-full",
            CallError::UnknownServer { .. } => "unknown-server",
            CallError::Config { .. } => "config",
            CallError::BadArguments { .. } => "bad-arguments",
            CallError::Unexpected { .. } => "unexpected-response",
            CallError::ShuttingDown { .. } => "shutting-down",
        }
    }

    /// Whether the same call can never succeed, so retrying it is useless:
    /// what the server itself rejected, or the call as built. Everything
    /// else may pass: a server down, slow or busy, and also a server
    /// missing from the config (fixing the config and reloading delivers
    /// what waited).
    pub fn is_permanent(&self) -> bool {
        match self {
            CallError::ToolError { .. } | CallError::BadArguments { .. } => true,
            // The same call would bring the same answer again.
            CallError::AnswerTooLarge { .. } => true,
            // Invalid request, method not found, invalid params: the call
            // as built will never succeed.
            CallError::JsonRpc { code, .. } => (-32602..=-32600).contains(code),
            CallError::Timeout { .. }
            | CallError::TransportLost { .. }
            | CallError::NotConnected { .. }
            | CallError::ConnectFailed { .. }
            | CallError::QueueFull { .. }
            | CallError::UnknownServer { .. }
            | CallError::Config { .. }
            | CallError::Unexpected { .. }
            | CallError::ShuttingDown { .. } => false,
        }
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; no servers are configured (see `tmux-agent config show`)".to_string()
    } else {
        format!("; configured: {}", known.join(", "))
    }
}

/// `1.5s`, `250ms`.
pub(crate) fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        let s = d.as_secs_f64();
        if (s - s.round()).abs() < 0.05 {
            format!("{}s", s.round())
        } else {
            format!("{s:.1}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_retry_cannot_fix_is_permanent() {
        let server = || "s".to_owned();
        let rpc = |code| CallError::JsonRpc {
            server: server(),
            code,
            message: String::new(),
            data: None,
        };
        let cases = [
            (
                CallError::ToolError {
                    server: server(),
                    tool: "t".into(),
                    message: String::new(),
                    structured: None,
                },
                true,
            ),
            (CallError::BadArguments { got: "a string" }, true),
            (
                CallError::AnswerTooLarge {
                    server: server(),
                    tool: "t".into(),
                    limit: 1,
                },
                true,
            ),
            (rpc(-32600), true),
            (rpc(-32601), true),
            (rpc(-32602), true),
            (rpc(-32603), false),
            (rpc(-32000), false),
            (
                CallError::Timeout {
                    server: server(),
                    tool: "t".into(),
                    after: Duration::from_secs(1),
                    limit: "call_timeout".into(),
                    hint: String::new(),
                },
                false,
            ),
            (
                CallError::TransportLost {
                    server: server(),
                    detail: String::new(),
                },
                false,
            ),
            (
                CallError::NotConnected {
                    server: server(),
                    retry_in: Duration::from_secs(1),
                    last_error: None,
                },
                false,
            ),
            (
                CallError::QueueFull {
                    server: server(),
                    limit: 1,
                },
                false,
            ),
            (
                CallError::UnknownServer {
                    server: server(),
                    known: vec![],
                },
                false,
            ),
            (CallError::ShuttingDown { server: server() }, false),
        ];
        for (error, permanent) in cases {
            assert_eq!(error.is_permanent(), permanent, "{}", error.kind());
        }
    }
}
