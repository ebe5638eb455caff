//! `tmux-agent status`: the daemon's health, or, when it is not running,
//! what tmux itself shows.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::coordination::{Groups, count, printable, who};
use crate::control::command::Command;
use crate::group::GroupsReport;
use crate::group::plan::plan;
use crate::ipc::{ClientError, Request, Response, StatusReport, lock_holder};
use crate::schema;

/// Show the daemon's health: uptime, tmux version, sessions tracked, groups,
/// MCP servers and undelivered actions.
///
/// Answers at once from what the daemon already knows, even while an MCP
/// server hangs. When no daemon runs, says so and shows what tmux holds.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  tmux-agent status\n  tmux-agent status --json | jq .running")]
pub struct StatusArgs {
    /// Print one JSON object; "running" says whether a daemon answered.
    #[arg(long)]
    pub json: bool,
}

/// What `status` says when no daemon holds the server's lock.
const NOT_RUNNING: &str = "not running";

pub async fn run(args: StatusArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let groups = Groups::new(global);
    let why_not = match crate::ipc::request(&groups.endpoint, &Request::Status).await {
        Ok(Response::Status(report)) => {
            if args.json {
                let mut value = serde_json::to_value(&report)?;
                value["running"] = json!(true);
                crate::outln!("{}", serde_json::to_string(&value)?);
            } else {
                print_running(&report)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Response::Error { message }) => bail!("the daemon answered with an error: {message}"),
        Ok(other) => bail!("unexpected answer from the daemon: {other:?}"),
        Err(ClientError::NotRunning { .. }) => match lock_holder(&groups.endpoint)? {
            Some(pid) => format!(
                "starting or stuck (it holds the lock{}, but its socket does not answer)",
                pid.map(|p| format!(" as pid {p}")).unwrap_or_default()
            ),
            None => NOT_RUNNING.to_owned(),
        },
        Err(err) => format!("not answering ({err})"),
    };
    print_from_tmux(&groups, &why_not, args.json).await?;
    Ok(ExitCode::SUCCESS)
}

fn print_running(report: &StatusReport) -> Result<(), crate::cli::output::OutputError> {
    crate::outln!(
        "daemon: running, pid {}, up {}, tmux-agent {}",
        report.pid,
        duration(report.uptime_secs),
        report.version
    );
    crate::outln!(
        "tmux:   {} on `{}`, {} tracked",
        report.tmux_version,
        report.server,
        count(report.sessions, "session")
    );
    crate::outln!("sessions missed: {}", report.sessions_missed);
    crate::outln!("tasks restarted: {}", report.tasks_restarted);
    print_groups(&report.groups)?;
    print_agents(&report.agents)?;
    for server in &report.mcp_servers {
        let detail = server
            .detail
            .as_deref()
            .map(|d| format!(" ({})", printable(d)))
            .unwrap_or_default();
        crate::outln!("mcp:    {} {}{detail}", server.name, server.state);
    }
    if let Some(actions) = &report.actions {
        crate::outln!(
            "actions: {} pending, {} failed",
            actions.pending,
            actions.failed
        );
        for failure in &actions.recent_failures {
            crate::outln!("  {}", printable(failure));
        }
        if actions.failed > 0 {
            crate::outln!(
                "  failed calls are kept: `tmux-agent outbox list --failed`, then `outbox retry` or `outbox drop`"
            );
        }
        for (server, count) in &actions.unconfigured {
            crate::outln!(
                "  {count} call(s) wait for `{}`, which no config names any more: configure it and `tmux-agent reload` to send them",
                printable(server)
            );
        }
        if let Some(reason) = &actions.in_memory {
            crate::outln!(
                "outbox: IN MEMORY ({}): calls still go out but are lost if the daemon dies; once the disk is fixed the outbox moves back by itself",
                printable(reason)
            );
        }
    }
    Ok(())
}

/// One line per agent in a pane: `agents: %3 claude waiting since 10:02:11 (hook)`.
fn print_agents(
    agents: &[crate::status::PaneAgent],
) -> Result<(), crate::cli::output::OutputError> {
    if agents.is_empty() {
        crate::outln!("agents: none seen (install hooks: tmux-agent hooks install claude)");
        return Ok(());
    }
    let waiting = agents
        .iter()
        .filter(|a| a.status == crate::status::AgentStatus::Waiting)
        .count();
    crate::outln!("agents: {}, {waiting} waiting", agents.len());
    for agent in agents {
        let session = agent.session.map(|s| s.to_string()).unwrap_or_default();
        let kind = agent.kind.as_ref().map(|k| k.as_str()).unwrap_or("?");
        crate::outln!(
            "  {} {session} {} {} since {} ({})",
            agent.pane,
            printable(kind),
            agent.status,
            agent.since.with_timezone(&chrono::Local).format("%H:%M:%S"),
            agent.source
        );
    }
    Ok(())
}

fn print_groups(groups: &GroupsReport) -> Result<(), crate::cli::output::OutputError> {
    if groups.groups.is_empty() {
        crate::outln!("groups: none");
        return Ok(());
    }
    let parts: Vec<String> = groups
        .groups
        .iter()
        .map(|g| {
            format!(
                "{} ({}, coordinator {})",
                g.name,
                count(g.members.len(), "member"),
                who(g.coordinator.id, &g.coordinator.name)
            )
        })
        .collect();
    crate::outln!("groups: {}", parts.join("; "));
    Ok(())
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The daemon is down: show what tmux holds instead.
async fn print_from_tmux(groups: &Groups, why_not: &str, json: bool) -> anyhow::Result<()> {
    let server = groups.direct.server().clone();
    if !groups.direct.is_running().await {
        if json {
            crate::outln!(
                "{}",
                json!({"running": false, "daemon": why_not, "server": server.to_string(), "tmux_running": false})
            );
        } else {
            crate::outln!("daemon: {why_not}");
            crate::outln!("tmux:   no server running on `{server}`");
        }
        return Ok(());
    }
    let version = groups
        .direct
        .oneshot()
        .run(&Command::display_server("#{version}")?)
        .await
        .map(|out| String::from_utf8_lossy(&out).trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let observation = groups.direct.observe().await?;
    let report = plan(&observation, &[]).report;
    let stale = groups
        .direct
        .global_option(schema::global::DAEMON)
        .await?
        .filter(|v| v == "running")
        .is_some();
    // Nobody holds the daemon's lock, so no daemon is attached or starting:
    // a `running` left by one that was SIGKILLed would only mislead status
    // lines. Clear it (a daemon that starts sets it again).
    let cleared = stale
        && why_not == NOT_RUNNING
        && groups
            .direct
            .oneshot()
            .run(&Command::unset_global_option(schema::global::DAEMON)?)
            .await
            .is_ok();
    if json {
        crate::outln!(
            "{}",
            json!({
                "running": false,
                "daemon": why_not,
                "server": server.to_string(),
                "tmux_running": true,
                "tmux_version": version,
                "sessions": observation.sessions.len(),
                "groups": report,
                "stale_daemon_option": stale,
                "stale_daemon_option_cleared": cleared,
            })
        );
        return Ok(());
    }
    crate::outln!("daemon: {why_not} (start it: tmux-agent ensure)");
    crate::outln!(
        "tmux:   {version} on `{server}`, {}",
        count(observation.sessions.len(), "session")
    );
    print_groups(&report)?;
    if cleared {
        crate::outln!(
            "note:   @agent-daemon said \"running\", left by a daemon that did not stop cleanly; cleared it"
        );
    } else if stale {
        crate::outln!(
            "note:   @agent-daemon still says \"running\": the last daemon did not stop cleanly"
        );
    }
    Ok(())
}
