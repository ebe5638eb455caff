//! `tmux-agent save`: save a session's context now, through the daemon.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::coordination::{Groups, TargetArgs, print_json, printable, who};
use crate::ipc::{
    CallState, ClientError, MAX_SAVE_WAIT_SECS, Request, Response, SaveReport, SavedCall,
};

/// Save a session's context now, and wait until it is stored.
///
/// The daemon captures the session (windows, panes, and the last lines of
/// each pane if [context] capture_lines asks for them) and sends the
/// session's `checkpoint` calls at save priority, ahead of routine work;
/// with the built-in preset that is `save_context` on the built-in server.
/// When the config has no [[on.checkpoint]] actions, the session-detached
/// actions that send the context ({context} or {observations}) are used.
/// The calls are recorded under the event name `save`, and @agent-saved is
/// set when they are delivered.
///
/// Exits 1 when a call failed, or was not delivered within --timeout (it
/// stays queued and is sent when the MCP server answers). Needs the daemon.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tmux-agent save\n  tmux-agent save -t work --timeout 20\n  tmux-agent save -t '$3' --json | jq .ok\n  # in tmux.conf: prefix + S saves the current session\n  bind S run-shell 'tmux-agent save'"
)]
pub struct SaveArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// How long to wait for the calls, in seconds (at most 25).
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SAVE_WAIT_SECS))]
    pub timeout: u64,
    /// Print one JSON object: session, ok, complete, and each call's
    /// server, tool, state, attempts, latency_ms and error.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: SaveArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let groups = Groups::new(global);
    let session = groups.target(&args.target).await?;
    let request = Request::Save {
        session: session.id,
        timeout_secs: Some(args.timeout),
    };
    let report = match crate::ipc::request(&groups.endpoint, &request).await {
        Ok(Response::Saved(report)) => report,
        Ok(Response::Error { message }) => {
            bail!("cannot save {}: {message}", who(session.id, &session.name))
        }
        Ok(other) => bail!("unexpected answer from the daemon: {other:?}"),
        Err(err @ ClientError::NotRunning { .. }) => {
            bail!("{err}: saving needs it (start it: tmux-agent ensure)")
        }
        Err(err) => return Err(err.into()),
    };
    let ok = saved(&report);
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["session"] = json!(session);
        value["ok"] = json!(ok);
        print_json(&value)?;
    } else {
        let me = who(session.id, &session.name);
        if ok {
            crate::outln!("saved {me}");
        } else if report.complete {
            eprintln!("tmux-agent: saving {me} failed:");
        } else {
            eprintln!(
                "tmux-agent: {me} is not saved yet after {}s; what is left stays queued and is sent when the server answers:",
                args.timeout
            );
        }
        for call in &report.calls {
            let line = format!("  {}", call_line(call));
            if ok {
                crate::outln!("{line}");
            } else {
                eprintln!("{line}");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Whether every call of the save was delivered.
fn saved(report: &SaveReport) -> bool {
    report.complete && report.calls.iter().all(|c| c.state == CallState::Delivered)
}

/// `builtin/save_context: delivered in 12 ms`.
fn call_line(call: &SavedCall) -> String {
    let what = format!("{}/{}", printable(&call.server), printable(&call.tool));
    let error = call
        .error
        .as_deref()
        .map(|e| printable(e).into_owned())
        .unwrap_or_default();
    match call.state {
        CallState::Delivered => format!(
            "{what}: delivered in {} ms",
            call.latency_ms.unwrap_or_default()
        ),
        CallState::Failed => format!("{what}: failed: {error}"),
        state if error.is_empty() => format!("{what}: {state}"),
        state => format!(
            "{what}: {state} after {} attempt(s); last error: {error}",
            call.attempts
        ),
    }
}
