//! `tmux-agent outbox ...`: the calls the daemon could not deliver, listed,
//! retried or dropped.
//!
//! A call that fails for good (a tool error, bad arguments) is kept in the
//! outbox, never pruned, so that nothing is lost silently; this command is
//! how a person looks at those calls and decides. It works on the outbox
//! file directly, with or without a daemon: SQLite's WAL lets it write
//! beside a running daemon. A running daemon picks a retried call up at its
//! dispatcher's next look at the outbox, within a minute
//! (`agent::dispatch`'s idle wait), or at once when it next starts.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Local, Utc};
use clap::{Args, Subcommand};

use super::GlobalArgs;
use super::coordination::print_json;
use crate::agent::outbox::{Failed, Outbox, OutboxEntry, Undelivered};
use crate::group::access::printable;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List the calls not delivered: pending, in flight and failed.
    #[command(
        long_about = "List the calls the daemon has not delivered, oldest first: those still \
                      pending or in flight (the daemon sends them when their MCP server \
                      answers) and those that failed for good (kept until you retry or drop \
                      them). Each line: id, state, session, event, server/tool, attempts, \
                      when it was decided, and the last error. Delivered calls are in \
                      `tmux-agent show`.",
        after_help = "Examples:\n  tmux-agent outbox list\n  tmux-agent outbox list --failed\n  \
                      tmux-agent outbox list --pending --json | jq '.[].tool'"
    )]
    List(ListArgs),
    /// Send failed calls again.
    #[command(
        long_about = "Make failed calls pending again, so the daemon sends them once more, \
                      with the same idempotency key (a server that did the call already can \
                      tell). Fix the cause first (the tool's arguments, the server's config), \
                      or the call fails again. A running daemon sends it within a minute; \
                      otherwise the next daemon does, at start.",
        after_help = "Examples:\n  tmux-agent outbox retry 42\n  tmux-agent outbox retry --all-failed"
    )]
    Retry(PickArgs),
    /// Delete failed calls for good.
    #[command(
        long_about = "Delete failed calls from the outbox, history and all: they are never \
                      sent. Only failed calls can be dropped; pending ones are still on their \
                      way.",
        after_help = "Examples:\n  tmux-agent outbox drop 42\n  tmux-agent outbox drop --all-failed"
    )]
    Drop(PickArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the calls that failed for good.
    #[arg(long, conflicts_with = "pending")]
    failed: bool,
    /// Only the calls pending or in flight.
    #[arg(long)]
    pending: bool,
    /// At most this many calls.
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
    /// Print a JSON array: id, state, session_id, session_key, event,
    /// server, tool, attempts, created_at, next_attempt_at, error (times in
    /// Unix milliseconds).
    #[arg(long)]
    json: bool,
}

/// One failed call by id, or all of them: one of the two is required.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PickArgs {
    /// The call's id, as `tmux-agent outbox list` shows it.
    #[arg(value_name = "ID")]
    id: Option<i64>,
    /// Every failed call.
    #[arg(long)]
    all_failed: bool,
}

impl PickArgs {
    fn which(&self) -> Failed {
        match self.id {
            Some(id) if !self.all_failed => Failed::One(id),
            _ => Failed::All,
        }
    }
}

/// Runs an `outbox` subcommand.
pub async fn run(cmd: OutboxCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let path = crate::paths::outbox(&global.server());
    let server = global.server().to_string();
    // SQLite waits for the daemon's lock (up to its busy timeout): off the
    // async threads.
    tokio::task::spawn_blocking(move || run_blocking(cmd, &path, &server))
        .await
        .context("the outbox command panicked")?
}

fn run_blocking(cmd: OutboxCommand, path: &Path, server: &str) -> anyhow::Result<ExitCode> {
    if !path.exists() {
        if let OutboxCommand::List(args) = &cmd {
            if args.json {
                print_json(&serde_json::json!([]))?;
            } else {
                crate::outln!(
                    "no outbox yet for `{server}` ({}): no daemon has run on this server",
                    path.display()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        anyhow::bail!(
            "no outbox for `{server}` at {}: no daemon has run on this server, so there is nothing to retry or drop",
            path.display()
        );
    }
    let open =
        || Outbox::open(path).with_context(|| format!("opening the outbox {}", path.display()));
    match cmd {
        OutboxCommand::List(args) => {
            let which = if args.failed {
                Undelivered::Failed
            } else if args.pending {
                Undelivered::Open
            } else {
                Undelivered::All
            };
            let outbox = Outbox::open_read_only(path)
                .with_context(|| format!("reading the outbox {}", path.display()))?;
            let entries = match &outbox {
                Some(outbox) => outbox.undelivered(which, args.limit)?,
                None => Vec::new(),
            };
            if args.json {
                print_json(&serde_json::to_value(&entries)?)?;
            } else {
                print_entries(&entries, which)?;
            }
        }
        OutboxCommand::Retry(pick) => {
            let n = open()?.retry_failed(pick.which())?;
            crate::outln!(
                "{}; a running daemon sends {} within a minute, or the next one at start",
                match n {
                    0 => "no failed calls to retry".to_owned(),
                    1 => "1 call pending again".to_owned(),
                    n => format!("{n} calls pending again"),
                },
                if n == 1 { "it" } else { "them" }
            );
        }
        OutboxCommand::Drop(pick) => {
            let n = open()?.drop_failed(pick.which())?;
            crate::outln!(
                "{}",
                match n {
                    0 => "no failed calls to drop".to_owned(),
                    1 => "1 failed call dropped".to_owned(),
                    n => format!("{n} failed calls dropped"),
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_entries(
    entries: &[OutboxEntry],
    which: Undelivered,
) -> Result<(), super::output::OutputError> {
    if entries.is_empty() {
        crate::outln!(
            "{}",
            match which {
                Undelivered::Failed => "no failed calls",
                Undelivered::Open => "no calls pending",
                Undelivered::All => "nothing undelivered: every call was delivered",
            }
        );
        return Ok(());
    }
    for e in entries {
        let when = DateTime::<Utc>::from_timestamp_millis(e.entry.created_at)
            .map(|t| {
                t.with_timezone(&Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        let error = e
            .entry
            .error
            .as_deref()
            .map(|err| format!(": {}", printable(err)))
            .unwrap_or_default();
        crate::outln!(
            "{:>6} {:<9} {} {} {}/{} attempts {} at {when}{error}",
            e.entry.id,
            e.entry.state,
            printable(&e.session_id),
            printable(&e.entry.event),
            printable(&e.entry.server),
            printable(&e.entry.tool),
            e.entry.attempts,
        );
    }
    if entries.iter().any(|e| e.entry.state == "failed") {
        crate::outln!(
            "retry with `tmux-agent outbox retry ID` (or --all-failed), or drop with `tmux-agent outbox drop ID`"
        );
    }
    Ok(())
}
