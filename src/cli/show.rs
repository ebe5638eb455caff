//! `tmux-agent show`: one session's agent metadata at a glance, read from
//! tmux and from the outbox directly, so it works with or without a daemon.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Local, Utc};
use clap::Args;
use serde_json::{Value, json};

use super::GlobalArgs;
use super::coordination::{TargetArgs, print_json, printable, who};
use crate::agent::identity::{IDENTITY_FORMAT, ServerIdentity};
use crate::agent::outbox::{Counts, HistoryEntry, Outbox};
use crate::control::command::Command;
use crate::group::direct::Direct;
use crate::ipc::{ClientError, Endpoint, Request, Response};
use crate::schema::{self, AgentState};

/// Show a session's agent metadata: goal, type, goal id, state, group and
/// role, the last save, and its MCP calls (pending, failed, and the most
/// recent with their time, event, server, tool, outcome and latency).
///
/// Reads the session's @agent-* options from tmux and the daemon's outbox
/// directly (read-only), so it works whether or not the daemon runs; it
/// says when the daemon is not running (then nothing is being sent, and
/// the state shown is as the daemon left it).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tmux-agent show\n  tmux-agent show -t work --calls 20\n  tmux-agent show -t '$3' --json | jq '.history[0]'"
)]
pub struct ShowArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// How many recent calls to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub calls: usize,
    /// Print one JSON object: session, daemon, session_key, goal, type,
    /// goal_id, state, group, role, saved, calls {pending, failed,
    /// delivered}, history (newest first; times in Unix milliseconds) and
    /// agents [{pane, session_id, session, status, kind, since}].
    #[arg(long)]
    pub json: bool,
}

/// The session options `show` reports, by their JSON names.
const FIELDS: [(&str, &str); 7] = [
    ("goal", schema::session::GOAL),
    ("type", schema::session::TYPE),
    ("goal_id", schema::session::GOAL_ID),
    ("state", schema::session::STATE),
    ("group", schema::session::GROUP),
    ("role", schema::session::ROLE),
    ("saved", schema::session::SAVED),
];

pub async fn run(args: ShowArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let server = global.server();
    let direct = Direct::new(server.clone());
    let session = direct
        .resolve_session(args.target.target.as_deref())
        .await?;
    let options = direct.session_options(session.id).await?;
    // The outbox names sessions by key, unique over time, as the daemon
    // makes them (agent::identity).
    let identity = direct
        .oneshot()
        .run(&Command::display_message(session.id, IDENTITY_FORMAT)?)
        .await?;
    let key = ServerIdentity::parse(&String::from_utf8_lossy(&identity))
        .context("tmux did not say its host and start time")?
        .session_key(session.id);

    let outbox_path = crate::paths::outbox(&server);
    let outbox = Outbox::open_read_only(&outbox_path)
        .with_context(|| format!("reading the outbox {}", outbox_path.display()))?;
    let (counts, history) = match &outbox {
        Some(outbox) => (
            Some(outbox.session_counts(key.as_str())?),
            outbox.history(key.as_str(), args.calls)?,
        ),
        None => (None, Vec::new()),
    };
    let daemon = daemon_state(&Endpoint::for_server(&server)).await;
    // The agents in the session's panes, as their options say.
    let listing = direct
        .oneshot()
        .run(&Command::list_panes(
            session.id,
            crate::status::panes::FORMAT,
        )?)
        .await?;
    let agents = crate::status::panes::parse(&String::from_utf8_lossy(&listing));

    if args.json {
        let mut out = json!({
            "session": session,
            "daemon": daemon.is_none(),
            "session_key": key.as_str(),
        });
        for (name, option) in FIELDS {
            out[name] = option_value(&options, option).map_or(Value::Null, |v| json!(v));
        }
        out["calls"] = match &counts {
            Some(c) => json!({
                "pending": c.pending + c.inflight,
                "failed": c.failed,
                "delivered": c.delivered,
            }),
            None => Value::Null,
        };
        out["history"] = json!(history);
        out["agents"] = json!(agents);
        print_json(&out)?;
        return Ok(ExitCode::SUCCESS);
    }

    crate::outln!("{}", who(session.id, &session.name));
    let shown = |option: &str| {
        option_value(&options, option)
            .map(|v| printable(v).into_owned())
            .unwrap_or_else(|| "-".to_owned())
    };
    crate::outln!("  goal:    {}", shown(schema::session::GOAL));
    crate::outln!("  type:    {}", shown(schema::session::TYPE));
    crate::outln!("  goal id: {}", shown(schema::session::GOAL_ID));
    crate::outln!(
        "  state:   {}",
        state_line(option_value(&options, schema::session::STATE))
    );
    let group = match option_value(&options, schema::session::GROUP) {
        Some(group) => format!(
            "{} ({})",
            printable(group),
            option_value(&options, schema::session::ROLE)
                .map(|r| printable(r).into_owned())
                .unwrap_or_else(|| "role not set yet".to_owned())
        ),
        None => "-".to_owned(),
    };
    crate::outln!("  group:   {group}");
    let saved = match option_value(&options, schema::session::SAVED) {
        Some(saved) => match saved.parse::<DateTime<Utc>>() {
            Ok(at) => format!("{} ({})", printable(saved), ago(at)),
            Err(_) => printable(saved).into_owned(),
        },
        None => "never".to_owned(),
    };
    crate::outln!("  saved:   {saved}");
    crate::outln!("  calls:   {}", calls_line(counts.as_ref()));
    if agents.is_empty() {
        crate::outln!("  agents:  none seen (hooks: tmux-agent hooks install claude)");
    }
    for agent in &agents {
        let since = agent
            .since
            .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
            .map(|at| format!(" since {}", ago(at)))
            .unwrap_or_default();
        crate::outln!(
            "  agent:   {} {} {}{since}",
            agent.pane,
            printable(agent.kind.as_deref().unwrap_or("?")),
            agent.status
        );
    }
    if !history.is_empty() {
        crate::outln!("  recent calls, newest first:");
        for entry in &history {
            crate::outln!("    {}", history_line(entry));
        }
    }
    if let Some(why) = daemon {
        crate::outln!(
            "  daemon:  {why}: nothing is sent and the state is as it left it (start it: tmux-agent ensure)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `None` when the daemon answers; else why not, in words.
async fn daemon_state(endpoint: &Endpoint) -> Option<String> {
    match crate::ipc::request(endpoint, &Request::Status).await {
        Ok(Response::Status(_)) => None,
        Ok(_) => Some("the daemon gave an unexpected answer".to_owned()),
        Err(ClientError::NotRunning { .. }) => Some("the daemon is not running".to_owned()),
        Err(err) => Some(format!("the daemon does not answer ({err})")),
    }
}

/// A set, non-empty option.
fn option_value<'a>(options: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    options
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// `@agent-state` for a person: what tmux-agent wrote, or someone else's
/// value marked as such (the daemon will overwrite it at its next event).
fn state_line(value: Option<&str>) -> String {
    match value {
        None => "-".to_owned(),
        Some(value) => match AgentState::parse(value) {
            Some(state) => printable(&state.to_string()).into_owned(),
            None => format!("{} (not a tmux-agent state)", printable(value)),
        },
    }
}

fn calls_line(counts: Option<&Counts>) -> String {
    match counts {
        None => "none recorded (no outbox yet)".to_owned(),
        Some(c) => format!(
            "{} pending, {} failed, {} delivered",
            c.pending + c.inflight,
            c.failed,
            c.delivered
        ),
    }
}

/// `06-01 16:02:11  session-created  builtin/register_goal  delivered 12 ms`.
fn history_line(entry: &HistoryEntry) -> String {
    let time = DateTime::<Utc>::from_timestamp_millis(entry.created_at)
        .map(|t| t.with_timezone(&Local).format("%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "?".to_owned());
    let call = format!("{}/{}", printable(&entry.server), printable(&entry.tool));
    let error = entry
        .error
        .as_deref()
        .map(|e| printable(e).into_owned())
        .unwrap_or_default();
    let outcome = match entry.state.as_str() {
        "delivered" => format!("delivered {} ms", entry.latency_ms.unwrap_or_default()),
        "failed" => format!("failed: {error}"),
        state if error.is_empty() => state.to_owned(),
        state => format!("{state} (attempt {}: {error})", entry.attempts),
    };
    // A late call's event happened while no daemon watched (agent::journal).
    let event = if entry.late {
        format!("{} (late)", entry.event)
    } else {
        entry.event.clone()
    };
    format!("{time}  {event:<16} {call:<28} {outcome}")
}

/// `3m ago`.
fn ago(at: DateTime<Utc>) -> String {
    let secs = (Utc::now() - at).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_shown_as_tmux_agent_wrote_them() {
        let table = [
            (None, "-"),
            (Some("active"), "active"),
            (
                Some("error: server\u{1b} down"),
                "error: server\\u{1b} down",
            ),
            (Some("busy"), "busy (not a tmux-agent state)"),
        ];
        for (value, shown) in table {
            assert_eq!(state_line(value), shown, "{value:?}");
        }
    }
}
