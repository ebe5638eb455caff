//! The webhook: an HTTP POST of a notification's event as JSON, delivered
//! through the outbox like an MCP call, so it is durable and retried.
//!
//! A notification becomes an outbox action for the pseudo-server
//! [`SERVER`]; a dispatcher of its own ([`crate::agent::dispatch`]'s, with
//! this module's [`Webhook`] as its [`ToolCaller`]) sends it. So a webhook
//! that is down holds up only its own queue, its retries follow
//! [`crate::backoff`], and what is pending survives a daemon restart.
//!
//! Outcomes: a 2xx answer is delivered; 408, 429 and 5xx, a timeout or no
//! connection are retried; any other status fails for good (the same POST
//! would get the same answer).

use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::dispatch::ToolCaller;
use crate::mcp::CallError;

/// The outbox's name for the webhook. MCP server names come from the
/// config's table keys; the colon keeps this one apart from them.
pub const SERVER: &str = "notify:webhook";
/// The outbox's name for the one thing the webhook does.
pub const TOOL: &str = "post";

/// POSTs JSON to one URL.
#[derive(Debug, Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
}

impl Webhook {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("tmux-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            url: url.to_owned(),
            timeout,
        })
    }

    /// POSTs `body`; the answer's status on success.
    pub async fn post(&self, body: &Value) -> Result<Value, CallError> {
        let bytes = serde_json::to_vec(body).map_err(|err| CallError::BadArguments {
            got: if err.is_data() {
                "unserializable"
            } else {
                "invalid"
            },
        })?;
        let answer = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes)
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(err) if err.is_timeout() => {
                return Err(CallError::Timeout {
                    server: SERVER.to_owned(),
                    tool: TOOL.to_owned(),
                    after: self.timeout,
                    limit: "webhook_timeout".to_owned(),
                    hint: String::new(),
                });
            }
            Err(err) => {
                return Err(CallError::Unexpected {
                    server: SERVER.to_owned(),
                    detail: format!("POST {}: {}", self.url, error_chain(&err)),
                });
            }
        };
        let status = answer.status();
        if status.is_success() {
            return Ok(json!({ "status": status.as_u16() }));
        }
        let retry = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        let detail = format!("POST {} answered {status}", self.url);
        Err(if retry {
            CallError::Unexpected {
                server: SERVER.to_owned(),
                detail,
            }
        } else {
            CallError::ToolError {
                server: SERVER.to_owned(),
                tool: TOOL.to_owned(),
                message: detail,
                structured: None,
            }
        })
    }
}

/// The error and its causes, joined: reqwest's own text hides the cause
/// ("error sending request") that says what to fix ("connection refused").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl ToolCaller for Webhook {
    async fn call(&self, _server: &str, _tool: &str, args: Value) -> Result<Value, CallError> {
        self.post(&args).await
    }
}
