//! `tmux-agent send`: post a message to an agent's session, a pane, a
//! group or everyone, through the daemon's mailbox (DESIGN.md D16).

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};
use serde_json::json;

use super::GlobalArgs;
use super::coordination::{Groups, print_json};
use crate::control::PaneId;
use crate::ipc::{ClientError, Request, Response};
use crate::messages::{Message, MessageId, MessageState, SendRequest, Sender, Target};

/// How often `--wait` asks the daemon where the message is.
const POLL: Duration = Duration::from_millis(50);

/// Send a message to an agent: queued in the daemon's mailbox, typed into
/// the agent's pane when it is at its prompt and nobody is typing there
/// (or handed to Claude Code by its Stop hook), exactly once.
///
/// The message is on disk when this returns. It goes to one session (its
/// agent's pane), one pane (-t %5), every other member of a group
/// (--group), or every other session (--all, which needs
/// `scope = "all"` under [messages] in config.toml). The body is the
/// MESSAGE argument, or stdin with `-`; it arrives byte for byte after a
/// one-line envelope that says who sent it and how to reply. NUL bytes are
/// refused (a terminal cannot carry them); so is a body over [messages]
/// max_body (64 KiB by default).
///
/// Without --wait, exits 0 once the message is queued. With --wait, waits
/// (60 s, or SECS) until it is delivered, read or failed, and exits:
///   0  delivered or read (`unverified`, typed but not seen in the pane,
///      counts as delivered and is said on stderr)
///   1  failed (recipient-gone, …) or expired, or refused by the policy
///   2  still queued when the wait ran out (it stays queued)
/// Needs the daemon.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("to").required(true).args(["target", "group", "all"])),
    after_help = "Examples:\n  \
        tmux-agent send -t reviewer 'the build is green, please review PR 12'\n  \
        git diff | tmux-agent send -t '$3' -\n  \
        tmux-agent send --group build --wait=30 'stop and rebase on main'\n  \
        tmux-agent send -t %5 --from user --json 'hello' | jq -r '.messages[0].id'\n  \
        tmux-agent send -t '$3' --reply-to m-3f9c2a71d04b6e88 'done'"
)]
pub struct SendArgs {
    /// The recipient: a session (its exact name, $id, or any tmux target)
    /// or a pane (%5).
    #[arg(short = 't', value_name = "TARGET", allow_hyphen_values = true,
          add = clap_complete::engine::ArgValueCandidates::new(super::shell::session_candidates))]
    pub target: Option<String>,
    /// Every other member of this group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Every other session (needs `scope = "all"` under [messages]).
    #[arg(long)]
    pub all: bool,
    /// Who it is from: `user`, or a session. Default: the session of the
    /// pane this runs in ($TMUX_PANE), else `user`.
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// The message this answers (its id): the reply joins its thread.
    #[arg(long, value_name = "ID")]
    pub reply_to: Option<MessageId>,
    /// Wait until it is delivered, read or failed, at most SECS (60).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "60",
          require_equals = true)]
    pub wait: Option<u64>,
    /// Print one JSON object: the messages (one per recipient) with id,
    /// from, to, state, reason; with --wait, their final state.
    #[arg(long)]
    pub json: bool,
    /// The body, or `-` to read it from stdin.
    #[arg(value_name = "MESSAGE", allow_hyphen_values = true)]
    pub message: String,
}

pub async fn run(args: SendArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let body = if args.message == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the message from stdin")?;
        String::from_utf8(bytes).map_err(|err| {
            anyhow::anyhow!(
                "the message on stdin is not UTF-8 (invalid byte at {}); messages are text",
                err.utf8_error().valid_up_to()
            )
        })?
    } else {
        args.message.clone()
    };
    let groups = Groups::new(global);
    let to = if let Some(target) = &args.target {
        match target.parse::<PaneId>() {
            Ok(pane) => Target::Pane(pane),
            Err(_) => Target::Session(groups.direct.resolve_session(Some(target)).await?.id),
        }
    } else if let Some(group) = &args.group {
        Target::Group(group.clone())
    } else {
        Target::All
    };
    let from = match args.from.as_deref() {
        Some("user") => Sender::User,
        Some(session) => Sender::Session(groups.direct.resolve_session(Some(session)).await?.id),
        None if std::env::var_os("TMUX_PANE").is_some() => {
            Sender::Session(groups.direct.resolve_session(None).await?.id)
        }
        None => Sender::User,
    };
    let request = SendRequest {
        id: MessageId::generate(),
        from,
        to,
        body,
        reply_to: args.reply_to.clone(),
    };
    let send_id = request.id.clone();
    let messages = match ask(&groups, &Request::Send(request)).await? {
        Asked::Messages(messages) => messages,
        Asked::Refused { rule, message } => {
            if args.json {
                print_json(&json!({"ok": false, "refused": rule, "error": message}))?;
            } else {
                eprintln!("tmux-agent send: refused by {rule}: {message}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let Some(secs) = args.wait else {
        report(&messages, args.json, None)?;
        return Ok(ExitCode::SUCCESS);
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut latest = messages;
    loop {
        if latest.iter().all(|m| m.state.is_settled()) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            report(&latest, args.json, Some(2))?;
            return Ok(ExitCode::from(2));
        }
        tokio::time::sleep(POLL).await;
        if let Asked::Messages(found) = ask(
            &groups,
            &Request::Messages {
                ids: vec![send_id.clone()],
            },
        )
        .await?
        {
            latest = found;
        }
    }
    let failed = latest
        .iter()
        .any(|m| matches!(m.state, MessageState::Failed | MessageState::Expired));
    let code = if failed { 1 } else { 0 };
    report(&latest, args.json, Some(code))?;
    Ok(ExitCode::from(code))
}

enum Asked {
    Messages(Vec<Message>),
    Refused { rule: String, message: String },
}

async fn ask(groups: &Groups, request: &Request) -> anyhow::Result<Asked> {
    match crate::ipc::request(&groups.endpoint, request).await {
        Ok(Response::Messages { messages }) => Ok(Asked::Messages(messages)),
        Ok(Response::Refused { rule, message }) => Ok(Asked::Refused { rule, message }),
        Ok(Response::Error { message }) => bail!("{message}"),
        Ok(other) => bail!("unexpected answer from the daemon: {other:?}"),
        Err(err @ ClientError::NotRunning { .. }) => {
            bail!("{err}: messages go through its mailbox (start it: tmux-agent ensure)")
        }
        Err(err) => Err(err.into()),
    }
}

/// One line per message, or the JSON object.
fn report(messages: &[Message], json: bool, code: Option<u8>) -> anyhow::Result<()> {
    if json {
        let mut value = json!({
            "ok": code.is_none_or(|c| c == 0),
            "messages": messages,
        });
        if code == Some(2) {
            value["timed_out"] = json!(true);
        }
        return print_json(&value);
    }
    for message in messages {
        let mut line = format!("{} to {}: {}", message.id, message.to, message.state);
        if let Some(reason) = &message.reason {
            line.push_str(&format!(" ({reason})"));
        }
        crate::outln!("{line}");
        if message.state == MessageState::Unverified {
            eprintln!(
                "tmux-agent send: {} was typed into {} but not seen there",
                message.id,
                message
                    .pane
                    .map_or("its pane".to_owned(), |p| p.to_string())
            );
        }
    }
    if code == Some(2) {
        eprintln!("tmux-agent send: still queued when the wait ran out; it stays queued");
    }
    Ok(())
}
