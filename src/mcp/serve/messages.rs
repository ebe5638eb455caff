//! The message tools of the built-in server (issue #13): `send_message`,
//! `broadcast`, `read_messages`, `ack_message`. They go to the daemon's
//! mailbox over its socket, like `tmux-agent send` and `inbox`.
//!
//! Who sends, and whose inbox is read, is the pane this server runs in
//! (`$TMUX_PANE`, and its session), never an argument: an agent cannot
//! speak for another. A server outside a pane, or with no daemon to talk
//! to, answers each call with a tool error that says so.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::agent::{self, TmuxEnv};
use crate::control::{PaneId, SessionId};
use crate::ipc::{ClientError, Endpoint, Request, Response};
use crate::messages::{Message, MessageId, MessageState, SendRequest, Sender, Target};

/// The longest `send_message` may wait for an outcome (an MCP client's
/// call timeout is often 30 s).
pub const MAX_WAIT_SECS: u64 = 25;

/// Arguments of `send_message`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageArgs {
    /// The recipient: a session's exact name, its `$id`, or a pane `%id`.
    pub to: String,
    /// The message, any UTF-8 text without NUL; it arrives byte for byte
    /// after a one-line envelope.
    pub text: String,
    /// The id of the message this answers; the reply joins its thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub reply_to: Option<String>,
    /// Wait up to this many seconds (at most 25) for the message to be
    /// delivered, read or failed, and return that state; 0 (the default)
    /// returns once it is queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u64")]
    pub wait_secs: Option<u64>,
}

/// Arguments of `broadcast`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastArgs {
    /// The message, to every other member of this session's group.
    pub text: String,
}

/// Arguments of `read_messages`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadMessagesArgs {
    /// Only messages not acknowledged yet (the default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub unread_only: Option<bool>,
    /// At most this many, the newest (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    pub limit: Option<u32>,
}

/// Arguments of `ack_message`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AckMessageArgs {
    /// The id of a message to this session (m- and 16 hex digits).
    pub id: String,
}

/// One message, as the tools show it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MessageView {
    pub id: String,
    /// `user`, a session `$id`, or `%pane@$session`.
    pub from: String,
    /// The sender's session name, when it has one.
    pub from_name: Option<String>,
    /// The recipient: a session `$id` or a pane `%id`.
    pub to: String,
    pub thread: String,
    pub reply_to: Option<String>,
    pub text: String,
    /// queued, delivered, unverified, read, failed or expired.
    pub state: String,
    /// Why it failed (recipient-gone, expired, …).
    pub reason: Option<String>,
    /// RFC 3339.
    pub created: String,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id.to_string(),
            from: m.from.to_string(),
            from_name: m.from_name.clone(),
            to: m.to.to_string(),
            thread: m.thread.to_string(),
            reply_to: m.reply_to.as_ref().map(ToString::to_string),
            text: m.body.clone(),
            state: m.state.to_string(),
            reason: m.reason.clone(),
            created: chrono::DateTime::from_timestamp_millis(m.created_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default(),
        }
    }
}

/// The result of `send_message` and `broadcast`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Sent {
    /// One per recipient.
    pub messages: Vec<MessageView>,
    /// Whether every message is delivered or read (false while queued, or
    /// when one failed: its `reason` says why).
    pub delivered: bool,
}

/// The result of `read_messages`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Inbox {
    pub session_id: String,
    /// Oldest first.
    pub messages: Vec<MessageView>,
}

/// The sender this server speaks for: its pane and the pane's session.
async fn me(env: &TmuxEnv) -> Result<(PaneId, SessionId), String> {
    let (session, pane) = agent::resolve_session(env, None)
        .await
        .map_err(|err| err.to_string())?;
    let pane = pane.and_then(|p| p.parse().ok()).ok_or_else(|| {
        "this MCP server is not running inside a tmux pane ($TMUX_PANE)".to_owned()
    })?;
    Ok((pane, session.id))
}

async fn ask(env: &TmuxEnv, request: &Request) -> Result<Vec<Message>, String> {
    match crate::ipc::request(&Endpoint::for_server(&env.server), request).await {
        Ok(Response::Messages { messages }) => Ok(messages),
        Ok(Response::Refused { rule, message }) => Err(format!("refused by {rule}: {message}")),
        Ok(Response::Error { message }) => Err(message),
        Ok(other) => Err(format!("unexpected answer from the daemon: {other:?}")),
        Err(err @ ClientError::NotRunning { .. }) => Err(format!(
            "{err}: messages go through its mailbox (start it: tmux-agent ensure)"
        )),
        Err(err) => Err(err.to_string()),
    }
}

fn sent(messages: &[Message]) -> Sent {
    Sent {
        delivered: messages.iter().all(|m| {
            matches!(
                m.state,
                MessageState::Delivered | MessageState::Unverified | MessageState::Read
            )
        }),
        messages: messages.iter().map(MessageView::from).collect(),
    }
}

/// `send_message`.
pub async fn send(env: &TmuxEnv, args: SendMessageArgs) -> Result<Sent, String> {
    let (pane, session) = me(env).await?;
    let to = match args.to.parse::<PaneId>() {
        Ok(pane) => Target::Pane(pane),
        Err(_) => {
            let (found, _) = agent::resolve_session(env, Some(&args.to))
                .await
                .map_err(|err| err.to_string())?;
            Target::Session(found.id)
        }
    };
    let reply_to = args
        .reply_to
        .as_deref()
        .map(str::parse::<MessageId>)
        .transpose()
        .map_err(|err| err.to_string())?;
    let request = SendRequest {
        id: MessageId::generate(),
        from: Sender::Pane(pane, session),
        to,
        body: args.text,
        reply_to,
    };
    let id = request.id.clone();
    let mut messages = ask(env, &Request::Send(request)).await?;
    let wait = Duration::from_secs(args.wait_secs.unwrap_or(0).min(MAX_WAIT_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    while !messages.iter().all(|m| m.state.is_settled()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        messages = ask(
            env,
            &Request::Messages {
                ids: vec![id.clone()],
            },
        )
        .await?;
    }
    Ok(sent(&messages))
}

/// `broadcast`.
pub async fn broadcast(env: &TmuxEnv, args: BroadcastArgs) -> Result<Sent, String> {
    let (pane, session) = me(env).await?;
    let request = SendRequest {
        id: MessageId::generate(),
        from: Sender::Pane(pane, session),
        to: Target::OwnGroup,
        body: args.text,
        reply_to: None,
    };
    ask(env, &Request::Send(request)).await.map(|m| sent(&m))
}

/// `read_messages`: does not mark anything read.
pub async fn read(env: &TmuxEnv, args: ReadMessagesArgs) -> Result<Inbox, String> {
    let (_, session) = me(env).await?;
    let request = Request::Inbox {
        session,
        unread_only: args.unread_only.unwrap_or(true),
        limit: Some(args.limit.unwrap_or(20) as usize),
    };
    let messages = ask(env, &request).await?;
    Ok(Inbox {
        session_id: session.to_string(),
        messages: messages.iter().map(MessageView::from).collect(),
    })
}

/// `ack_message`.
pub async fn ack(env: &TmuxEnv, args: AckMessageArgs) -> Result<MessageView, String> {
    let (_, session) = me(env).await?;
    let id: MessageId = args
        .id
        .parse()
        .map_err(|err: crate::messages::envelope::InvalidMessageId| err.to_string())?;
    let messages = ask(env, &Request::Ack { id, by: session }).await?;
    messages
        .first()
        .map(MessageView::from)
        .ok_or_else(|| "the daemon answered without the message".to_owned())
}
