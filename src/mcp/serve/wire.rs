//! What the built-in server does with a message before rmcp sees it, so that
//! every line (stdio) or body (HTTP) it receives gets an answer.
//!
//! rmcp 3.9 drops input it cannot parse without a word (not JSON, invalid
//! UTF-8, nested past serde_json's limit of 128, a line over its length
//! cap), and reads a known method with malformed params as a custom request,
//! answered "method not found". A client waiting for its answer would wait
//! forever, so [`read`] sorts every message first:
//!
//! - not UTF-8, not JSON → `-32700` parse error;
//! - JSON that is not one JSON-RPC 2.0 message (an array batch, a missing
//!   `jsonrpc`, nesting deeper than 128) → `-32600` invalid request;
//! - a known MCP request whose `params` do not fit → `-32602` invalid params,
//!   with the request's `id`;
//! - everything else goes to rmcp unchanged.
//!
//! A notification that cannot be read and whose method is not MCP's is
//! ignored, as rmcp and the other SDKs do (JSON-RPC forbids answering a
//! notification, and editors send LSP-style ones).
//!
//! [`StdioTransport`] applies it to stdio; `http` to each POST body.

use rmcp::RoleServer;
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ErrorData, JsonRpcError, JsonRpcMessage, NumberOrString,
    RequestId,
};
use rmcp::service::TxJsonRpcMessage;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Largest message read by default (16 MiB, rmcp's own stdio cap): bigger
/// ones are refused with `-32600`. `mcp serve --max-message-bytes` sets it.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Responses queued for stdout before a sender waits.
const WRITE_QUEUE: usize = 64;

/// What one message is.
#[derive(Debug)]
pub enum Inbound {
    /// A message rmcp can handle.
    Message(Box<ClientJsonRpcMessage>),
    /// Nothing to answer: a blank line, or an unreadable notification of a
    /// method that is not MCP's.
    Ignore,
    /// An error answer to send back instead.
    Reject(Rejection),
}

/// The error answer to a message that cannot be handled.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The request's id when it could be read.
    pub id: Option<RequestId>,
    pub error: ErrorData,
}

impl Rejection {
    fn parse(message: String) -> Self {
        Rejection {
            id: None,
            error: ErrorData::parse_error(message, None),
        }
    }

    fn invalid(id: Option<RequestId>, message: String) -> Self {
        Rejection {
            id,
            error: ErrorData::invalid_request(message, None),
        }
    }

    /// An HTTP request with no body.
    pub fn empty() -> Self {
        Self::parse("the request body is empty; expected a JSON-RPC message".into())
    }

    /// A message longer than `max` bytes.
    pub fn too_long(max: usize) -> Self {
        Self::invalid(
            None,
            format!("message longer than {max} bytes (this server's --max-message-bytes)"),
        )
    }

    /// The JSON-RPC error object (no `id` when it could not be read, as MCP
    /// 2026-07-28 says).
    pub fn to_json(&self) -> Vec<u8> {
        let error = JsonRpcError::new(self.id.clone(), self.error.clone());
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(&error).unwrap_or_default()
    }

    /// As a message rmcp's writer can send.
    fn into_message(self) -> TxJsonRpcMessage<RoleServer> {
        JsonRpcMessage::Error(JsonRpcError::new(self.id, self.error))
    }
}

/// The fields read to answer a message that does not parse.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    jsonrpc: Option<Value>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<Value>,
}

/// Sorts one message (a stdio line without its newline, or an HTTP body).
pub fn read(bytes: &[u8]) -> Inbound {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Inbound::Ignore;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            return Inbound::Reject(Rejection::parse(format!(
                "not UTF-8: invalid byte at offset {}",
                err.valid_up_to()
            )));
        }
    };
    // serde_json skips values without recursing, so this checks the syntax
    // of any depth.
    if let Err(err) = serde_json::from_str::<IgnoredAny>(text) {
        return Inbound::Reject(Rejection::parse(format!("not JSON: {err}")));
    }
    if !text.trim_start().starts_with('{') {
        return Inbound::Reject(Rejection::invalid(
            None,
            "expected one JSON-RPC 2.0 message, an object (batches are not part of MCP)".into(),
        ));
    }
    // A struct read from an object skips unknown fields the same way, so the
    // id and method are found even when `params` is too deep to parse.
    let probe = serde_json::from_str::<Probe>(text).ok();
    let id = probe
        .as_ref()
        .and_then(|p| p.id.as_ref())
        .and_then(request_id);
    let method = probe
        .as_ref()
        .and_then(|p| p.method.as_ref())
        .and_then(Value::as_str)
        .map(str::to_owned);

    match serde_json::from_str::<ClientJsonRpcMessage>(text) {
        Ok(JsonRpcMessage::Request(request))
            if matches!(&request.request, ClientRequest::CustomRequest(custom)
                if is_mcp_request(&custom.method)) =>
        {
            let method = method.unwrap_or_default();
            Inbound::Reject(Rejection {
                id: Some(request.id),
                error: ErrorData::invalid_params(
                    format!(
                        "the params of `{method}` do not fit its schema: {}",
                        hint(&method)
                    ),
                    None,
                ),
            })
        }
        Ok(message) => Inbound::Message(Box::new(message)),
        Err(err) if err.to_string().starts_with("recursion limit exceeded") => {
            Inbound::Reject(Rejection::invalid(
                id,
                "nested deeper than 128 levels; this server reads no deeper".into(),
            ))
        }
        Err(err) => {
            let notification = probe.as_ref().is_some_and(|p| p.id.is_none());
            let version = probe.as_ref().and_then(|p| p.jsonrpc.as_ref());
            if version.and_then(Value::as_str) != Some("2.0") {
                return Inbound::Reject(Rejection::invalid(
                    id,
                    "not a JSON-RPC 2.0 message: `jsonrpc` must be \"2.0\"".into(),
                ));
            }
            match &method {
                Some(method) if notification && !is_mcp_notification(method) => Inbound::Ignore,
                Some(method) if id.is_some() && is_mcp_request(method) => {
                    Inbound::Reject(Rejection {
                        id,
                        error: ErrorData::invalid_params(
                            format!("the params of `{method}` do not fit its schema: {err}"),
                            None,
                        ),
                    })
                }
                _ => Inbound::Reject(Rejection::invalid(
                    id,
                    format!("not a JSON-RPC 2.0 message: {err}"),
                )),
            }
        }
    }
}

fn request_id(value: &Value) -> Option<RequestId> {
    match value {
        Value::Number(n) => n.as_i64().map(NumberOrString::Number),
        Value::String(s) => Some(NumberOrString::String(s.as_str().into())),
        _ => None,
    }
}

/// What the params of the request a client gets wrong most look like.
fn hint(method: &str) -> &'static str {
    match method {
        "tools/call" => "expected {\"name\": string, \"arguments\"?: object}",
        "initialize" => {
            "expected {\"protocolVersion\": string, \"capabilities\": object, \"clientInfo\": \
             {\"name\": string, \"version\": string}}"
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            "expected {\"uri\": string}"
        }
        "prompts/get" => "expected {\"name\": string, \"arguments\"?: {string: string}}",
        "logging/setLevel" => "expected {\"level\": \"debug\"|\"info\"|...|\"emergency\"}",
        _ => "see the method in the MCP specification",
    }
}

/// Requests a client sends a server in MCP: rmcp parses each into its own
/// type, so one that lands in `CustomRequest` had params that did not fit.
fn is_mcp_request(method: &str) -> bool {
    matches!(
        method,
        "initialize"
            | "ping"
            | "completion/complete"
            | "logging/setLevel"
            | "prompts/get"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "tools/call"
            | "tools/list"
    )
}

fn is_mcp_notification(method: &str) -> bool {
    matches!(
        method,
        "notifications/cancelled"
            | "notifications/initialized"
            | "notifications/progress"
            | "notifications/roots/list_changed"
    )
}

/// Why a line read ended.
enum Line {
    /// A whole line is in the buffer.
    Full,
    /// The line was longer than the cap; its bytes were dropped.
    TooLong,
    Eof,
}

/// rmcp's stdio transport with [`read`] in front: a line-delimited JSON-RPC
/// stream where every line gets an answer.
pub struct StdioTransport<R> {
    reader: BufReader<R>,
    max: usize,
    /// The line read so far; kept across cancelled `receive` calls (rmcp
    /// polls `receive` inside a `select!`).
    line: Vec<u8>,
    /// Dropping the tail of a line already refused as too long.
    discarding: bool,
    /// An answer waiting for room in the write queue.
    pending: Option<Rejection>,
    writer: Option<mpsc::Sender<TxJsonRpcMessage<RoleServer>>>,
}

impl<R: AsyncRead + Unpin + Send> StdioTransport<R> {
    /// Reads from `read`, writes to `write` (one task keeps the writes in
    /// order), refusing lines over `max` bytes.
    pub fn new<W: AsyncWrite + Unpin + Send + 'static>(read: R, write: W, max: usize) -> Self {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_lines(rx, write));
        StdioTransport {
            reader: BufReader::new(read),
            max,
            line: Vec::new(),
            discarding: false,
            pending: None,
            writer: Some(tx),
        }
    }

    /// Reads to the next newline without holding more than `max` bytes.
    /// Cancel-safe: what was read stays in `self.line`.
    async fn read_line(&mut self) -> std::io::Result<Line> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(Line::Eof);
            }
            let newline = memchr::memchr(b'\n', available);
            let take = newline.map_or(available.len(), |at| at + 1);
            let mut outcome = None;
            if self.discarding {
                if newline.is_some() {
                    self.discarding = false;
                }
            } else if self.line.len() + take > self.max + 1 {
                self.line.clear();
                self.discarding = newline.is_none();
                outcome = Some(Line::TooLong);
            } else {
                self.line.extend_from_slice(&available[..take]);
                if newline.is_some() {
                    outcome = Some(Line::Full);
                }
            }
            self.reader.consume(take);
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
    }
}

async fn write_lines<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<TxJsonRpcMessage<RoleServer>>,
    mut write: W,
) {
    while let Some(message) = rx.recv().await {
        let mut line = match serde_json::to_vec(&message) {
            Ok(line) => line,
            Err(err) => {
                tracing::error!(error = %err, "cannot serialise an MCP message; dropped");
                continue;
            }
        };
        line.push(b'\n');
        if let Err(err) = async {
            write.write_all(&line).await?;
            write.flush().await
        }
        .await
        {
            tracing::debug!(error = %err, "stdout closed; no more MCP output");
            return;
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> rmcp::transport::Transport<RoleServer>
    for StdioTransport<R>
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let writer = self.writer.clone();
        async move {
            let closed = || std::io::Error::new(std::io::ErrorKind::NotConnected, "stdout closed");
            writer
                .ok_or_else(closed)?
                .send(item)
                .await
                .map_err(|_| closed())
        }
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleServer>> {
        loop {
            if let Some(rejection) = self.pending.take() {
                let writer = self.writer.as_ref()?;
                // Waiting for room here is cancel-safe: the answer stays in
                // `pending` until a permit is in hand.
                self.pending = Some(rejection);
                let permit = writer.reserve().await.ok()?;
                if let Some(rejection) = self.pending.take() {
                    permit.send(rejection.into_message());
                }
            }
            let line = match self.read_line().await {
                Ok(Line::Full) => std::mem::take(&mut self.line),
                Ok(Line::TooLong) => {
                    tracing::debug!(max = self.max, "refusing an over-long line");
                    self.pending = Some(Rejection::too_long(self.max));
                    continue;
                }
                Ok(Line::Eof) => return None,
                Err(err) => {
                    tracing::debug!(error = %err, "stdin failed; ending the MCP session");
                    return None;
                }
            };
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            match read(body) {
                Inbound::Message(message) => return Some(*message),
                Inbound::Ignore => {}
                Inbound::Reject(rejection) => {
                    tracing::debug!(error = %rejection.error.message, "refusing a message");
                    self.pending = Some(rejection);
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // The writer task ends once the queued answers are written.
        self.writer = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(bytes: &[u8]) -> Rejection {
        match read(bytes) {
            Inbound::Reject(r) => r,
            other => panic!("expected a rejection of {bytes:?}, got {other:?}"),
        }
    }

    #[test]
    fn garbage_and_bad_utf8_are_parse_errors() {
        assert_eq!(rejection(b"hello").error.code.0, -32700);
        assert_eq!(rejection(b"{\"a\":").error.code.0, -32700);
        assert_eq!(rejection(b"{\"x\":\"\xff\"}").error.code.0, -32700);
    }

    #[test]
    fn json_that_is_not_a_message_is_an_invalid_request() {
        assert_eq!(rejection(b"[1,2]").error.code.0, -32600);
        assert_eq!(rejection(b"42").error.code.0, -32600);
        let r = rejection(br#"{"id":7,"method":"ping"}"#);
        assert_eq!(
            (r.error.code.0, r.id),
            (-32600, Some(NumberOrString::Number(7)))
        );
    }

    #[test]
    fn deep_nesting_keeps_the_id() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":"d","method":"tools/call","params":{{"name":"x","arguments":{{"a":{}1{}}}}}}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        let r = rejection(deep.as_bytes());
        assert_eq!(r.error.code.0, -32600);
        assert_eq!(r.id, Some(NumberOrString::String("d".into())));
    }

    #[test]
    fn malformed_tools_call_params_are_invalid_params() {
        let r = rejection(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":5}}"#);
        assert_eq!(
            (r.error.code.0, r.id),
            (-32602, Some(NumberOrString::Number(3)))
        );
        let r = rejection(br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":"x"}"#);
        assert_eq!(r.error.code.0, -32602);
    }

    #[test]
    fn good_messages_and_foreign_notifications_pass() {
        assert!(matches!(
            read(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Inbound::Message(_)
        ));
        assert!(matches!(
            read(br#"{"jsonrpc":"2.0","id":1,"method":"x/custom","params":{}}"#),
            Inbound::Message(_)
        ));
        assert!(matches!(read(b"  \r"), Inbound::Ignore));
        assert!(matches!(
            read(br#"{"jsonrpc":"2.0","method":"$/lsp","params":[1]}"#),
            Inbound::Ignore | Inbound::Message(_)
        ));
    }
}
