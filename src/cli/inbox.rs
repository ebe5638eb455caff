//! `tmux-agent inbox`: the messages to a session, from the daemon's
//! mailbox.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::coordination::{Groups, TargetArgs, print_json, printable, who};
use crate::ipc::{ClientError, Request, Response};

/// List the messages to a session, oldest first: each with its id, sender,
/// state (queued, delivered, unverified, read, failed, expired) and body.
///
/// Reading the inbox does not mark anything read: an agent acknowledges a
/// message with the built-in MCP server's ack_message. Needs the daemon.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    tmux-agent inbox\n  \
    tmux-agent inbox -t reviewer --unread\n  \
    tmux-agent inbox -t '$3' --json | jq -r '.messages[] | select(.state == \"failed\") | .reason'")]
pub struct InboxArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Only the messages not read yet (queued, delivered, unverified).
    #[arg(long)]
    pub unread: bool,
    /// At most this many, the newest.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    /// Print one JSON object: session and the messages with every field.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: InboxArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let groups = Groups::new(global);
    let session = groups.target(&args.target).await?;
    let request = Request::Inbox {
        session: session.id,
        unread_only: args.unread,
        limit: Some(args.limit),
    };
    let messages = match crate::ipc::request(&groups.endpoint, &request).await {
        Ok(Response::Messages { messages }) => messages,
        Ok(Response::Error { message }) => bail!("{message}"),
        Ok(other) => bail!("unexpected answer from the daemon: {other:?}"),
        Err(err @ ClientError::NotRunning { .. }) => {
            bail!("{err}: the mailbox is the daemon's (start it: tmux-agent ensure)")
        }
        Err(err) => return Err(err.into()),
    };
    if args.json {
        print_json(&json!({
            "session_id": session.id.to_string(),
            "session": session.name,
            "messages": messages,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let me = who(session.id, &session.name);
    if messages.is_empty() {
        crate::outln!("no messages to {me}");
        return Ok(ExitCode::SUCCESS);
    }
    for message in &messages {
        let when = chrono::DateTime::from_timestamp_millis(message.created_ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let mut head = format!(
            "{} {when} from {} [{}]",
            message.id, message.from, message.state
        );
        if let Some(reason) = &message.reason {
            head.push_str(&format!(" ({reason})"));
        }
        crate::outln!("{head}");
        // Shown, not run: control characters made visible.
        for line in message.body.lines() {
            crate::outln!("    {}", printable(line));
        }
    }
    Ok(ExitCode::SUCCESS)
}
