//! `tmux-agent mcp ...`: talk to the configured MCP servers directly, from
//! this process (the daemon is not involved): list them, list a server's
//! tools, call a tool, show call figures.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::GlobalArgs;
use crate::config::ConfigDuration;
use crate::configuration::Configuration;
use crate::mcp::discovery::Discovered;
use crate::mcp::error::secs;
use crate::mcp::{CallError, CallOptions, McpPool, OutputSource, ServerStatus};

/// Where servers come from, for every `mcp` subcommand's help.
const SOURCES: &str = "\
Servers come from ~/.config/tmux-agent/config.toml ([servers.NAME]) and from the files
Claude uses: ~/.claude.json (mcpServers, and projects[<this dir>].mcpServers), .mcp.json
in this directory, and Claude Desktop's claude_desktop_config.json. When a name is defined
more than once, the first of these wins: config.toml, ~/.claude.json projects[<dir>],
.mcp.json, ~/.claude.json mcpServers, Claude Desktop. `tmux-agent config show` prints what
was found and where.";

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// List the configured MCP servers, with their state.
    #[command(
        long_about = "List every configured MCP server: name, transport, state, and the file it \
                      comes from. By default each server is connected once to check it (in \
                      parallel, each within its connect_timeout); --offline only lists.\n\n\
                      Exit status 1 when a server could not be connected.",
        after_help = format!("Examples:\n  tmux-agent mcp servers\n  tmux-agent mcp servers --offline --json | jq '.[].name'\n\n{SOURCES}")
    )]
    Servers(ServersArgs),
    /// List a server's tools.
    #[command(after_help = format!(
        "Examples:\n  tmux-agent mcp tools memory\n  tmux-agent mcp tools memory --json | jq '.[].name'\n\n{SOURCES}"
    ))]
    Tools(ToolsArgs),
    /// Call one tool and print its result.
    #[command(
        long_about = "Call one tool on one server and print the result: the structuredContent \
                      when the server sent one, else the text content (pretty-printed when it \
                      is JSON). Exit status 1 when the tool reports an error (isError) or the \
                      call fails; the error goes to stderr.",
        after_help = format!("Examples:\n  \
            tmux-agent mcp call memory read_graph\n  \
            tmux-agent mcp call memory search_nodes '{{\"query\":\"tmux\"}}'\n  \
            tmux-agent mcp call memory create_entities '{{\"entities\":[{{\"name\":\"tmux:work\",\"entityType\":\"tmux_session\",\"observations\":[\"created\"]}}]}}'\n  \
            echo '{{\"query\":\"x\"}}' | tmux-agent mcp call memory search_nodes -\n  \
            tmux-agent mcp call slow-server build --timeout 5m --json\n\n{SOURCES}")
    )]
    Call(CallArgs),
    /// Show call figures (counts, latency percentiles) per server and tool.
    #[command(
        long_about = "Show call counts by outcome and latency percentiles per server and tool. \
                      The figures are the daemon's, live, for the tmux server chosen with \
                      -L/-S (or $TMUX): every call it made since it started. With no daemon \
                      running there is nothing to show, and it says so.",
        after_help = "Examples:\n  tmux-agent mcp stats\n  tmux-agent mcp stats memory --json"
    )]
    Stats(StatsArgs),
    /// Run the built-in MCP server (goals and session contexts in SQLite) on stdio or HTTP.
    #[command(
        long_about = "Run tmux-agent's own MCP server: goals and session contexts in SQLite, and \
                      tools for agents in panes (whoami, set_goal, complete_my_goal, and \
                      group_peers, group_context, group_share for their group). The daemon \
                      starts it over stdio as the server named `builtin`; an agent can add the \
                      same command to its own MCP config.",
        after_help = "Examples:\n  tmux-agent mcp serve\n  tmux-agent mcp serve --http 127.0.0.1:8765\n  \
                      claude mcp add tmux-agent -- tmux-agent mcp serve"
    )]
    Serve(crate::mcp::serve::ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServersArgs {
    /// Print JSON (an array of servers).
    #[arg(long)]
    json: bool,
    /// Do not connect; only list what is configured.
    #[arg(long)]
    offline: bool,
}

#[derive(Debug, Args)]
pub struct ToolsArgs {
    /// Server name, as `mcp servers` lists it.
    server: String,
    /// Print the full tool definitions as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Server name, as `mcp servers` lists it.
    server: String,
    /// Tool name, as `mcp tools SERVER` lists it.
    tool: String,
    /// Arguments: a JSON object, or `-` to read it from stdin. Default `{}`.
    #[arg(value_name = "JSON|-")]
    arguments: Option<String>,
    /// Give up after this long (seconds, or 500ms / 30s / 5m); the request
    /// is cancelled. Capped by the server's max_call_time.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Print the whole result as JSON (value, source, raw result, latency).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this server.
    server: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs an `mcp` subcommand.
pub async fn run(cmd: McpCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    // The built-in server reads no MCP client configuration.
    if let McpCommand::Serve(args) = cmd {
        return crate::mcp::serve::run(args.with_tmux_server(global.server()))
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into);
    }
    let discovered = load(global).await?;
    match cmd {
        McpCommand::Serve(_) => unreachable!("handled above"),
        McpCommand::Servers(args) => servers(discovered, args).await,
        McpCommand::Tools(args) => tools(discovered, args).await,
        McpCommand::Call(args) => call(discovered, args).await,
        McpCommand::Stats(args) => stats(discovered, args, global).await,
    }
}

/// The daemon's live figures, if a daemon runs for the chosen server.
async fn daemon_stats(global: &GlobalArgs) -> Option<Vec<crate::mcp::metrics::ServerStats>> {
    use crate::ipc::{Endpoint, Request, Response};
    let endpoint = Endpoint::for_server(&global.server());
    match crate::ipc::request(&endpoint, &Request::McpStats).await {
        Ok(Response::McpStats { servers }) => serde_json::from_value(servers).ok(),
        _ => None,
    }
}

/// Discovers servers, reporting config problems on stderr.
async fn load(global: &GlobalArgs) -> anyhow::Result<Discovered> {
    let configuration = Configuration::load(global.config.clone()).await?;
    for problem in &configuration.problems {
        eprintln!("tmux-agent: config problem: {problem}");
    }
    for warning in &configuration.warnings {
        tracing::debug!(%warning, "config warning");
    }
    Ok(configuration.servers)
}

async fn servers(discovered: Discovered, args: ServersArgs) -> anyhow::Result<ExitCode> {
    let pool = McpPool::new(&discovered);
    let mut failed = false;
    if !args.offline {
        let names: Vec<String> = pool
            .servers()
            .into_iter()
            .filter(|s| s.state != "skipped")
            .map(|s| s.name)
            .collect();
        let probes = names.iter().map(|name| pool.connect(name));
        let results = futures::future::join_all(probes).await;
        failed = results.iter().any(Result::is_err);
    }
    let list = pool.servers();
    pool.shutdown().await;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        crate::outln!("No MCP servers configured.\n\n{SOURCES}");
    } else {
        print_servers(&list)?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_servers(list: &[ServerStatus]) -> Result<(), crate::cli::output::OutputError> {
    let width = |f: &dyn Fn(&ServerStatus) -> usize| list.iter().map(f).max().unwrap_or(0);
    let name_w = width(&|s| s.name.len()).max(4);
    let state_w = width(&|s| s.state.len()).max(5);
    crate::outln!(
        "{:name_w$}  {:9}  {:state_w$}  SOURCE",
        "NAME",
        "TRANSPORT",
        "STATE"
    );
    for s in list {
        crate::outln!(
            "{:name_w$}  {:9}  {:state_w$}  {}",
            s.name,
            s.transport,
            s.state,
            s.source
        );
        if let Some(c) = &s.connection {
            let server = match (&c.server_name, &c.server_version) {
                (Some(n), Some(v)) => format!("{n} {v}, "),
                (Some(n), None) => format!("{n}, "),
                _ => String::new(),
            };
            crate::outln!(
                "{:name_w$}  {server}protocol {}, connected in {}",
                "",
                c.protocol_version,
                secs(c.connect_time)
            );
        } else if let Some(detail) = &s.detail {
            crate::outln!("{:name_w$}  {detail}", "");
        }
    }
    Ok(())
}

/// A pool with only `server` in it (so other servers set to connect at
/// start are not spawned), or the error naming the servers there are.
fn pool_for(discovered: Discovered, server: &str) -> Result<McpPool, CallError> {
    let known = discovered.names();
    if !known.iter().any(|n| n == server) {
        return Err(CallError::UnknownServer {
            server: server.to_string(),
            known,
        });
    }
    Ok(McpPool::new(&discovered.only(&[server])))
}

async fn tools(discovered: Discovered, args: ToolsArgs) -> anyhow::Result<ExitCode> {
    let pool = match pool_for(discovered, &args.server) {
        Ok(pool) => pool,
        Err(err) => return fail(&err, args.json),
    };
    let listed = pool.list_tools(&args.server).await;
    pool.shutdown().await;
    let tools = match listed {
        Ok(tools) => tools,
        Err(err) => return fail(&err, args.json),
    };
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&tools)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = tools.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for tool in &tools {
        let description = tool
            .description
            .as_deref()
            .and_then(|d| d.lines().next())
            .unwrap_or("");
        crate::outln!("{:width$}  {description}", tool.name);
    }
    Ok(ExitCode::SUCCESS)
}

async fn call(discovered: Discovered, args: CallArgs) -> anyhow::Result<ExitCode> {
    let text = match args.arguments.as_deref() {
        None => "{}".to_string(),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the arguments from stdin")?;
            text
        }
        Some(text) => text.to_string(),
    };
    let arguments: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "the arguments are not valid JSON; pass an object such as '{{\"query\":\"x\"}}' \
             (got {:?})",
            text.chars().take(80).collect::<String>()
        )
    })?;
    let timeout = match &args.timeout {
        Some(t) => Some(
            ConfigDuration::parse(t)
                .map_err(|e| anyhow::anyhow!("--timeout: {e}"))?
                .0,
        ),
        None => None,
    };
    let pool = match pool_for(discovered, &args.server) {
        Ok(pool) => pool,
        Err(err) => return fail(&err, args.json),
    };
    let result = pool
        .call_tool(&args.server, &args.tool, arguments, CallOptions { timeout })
        .await;
    pool.shutdown().await;
    match result {
        Ok(output) => {
            if args.json {
                crate::outln!("{}", serde_json::to_string_pretty(&output)?);
            } else {
                match (&output.source, &output.value) {
                    (OutputSource::Text, Value::String(text)) => crate::outln!("{text}"),
                    (OutputSource::Empty, _) => {}
                    (_, value) => crate::outln!("{}", serde_json::to_string_pretty(value)?),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => fail(&err, args.json),
    }
}

/// Prints a call error on stderr (and as JSON on stdout with `--json`).
fn fail(err: &CallError, json: bool) -> anyhow::Result<ExitCode> {
    eprintln!("tmux-agent: {err}");
    if json {
        let mut body = json!({"kind": err.kind(), "message": err.to_string()});
        if let CallError::ToolError {
            structured: Some(s),
            ..
        } = err
        {
            body["structured"] = s.as_ref().clone();
        }
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&json!({ "error": body }))?
        );
    }
    Ok(ExitCode::FAILURE)
}

async fn stats(
    discovered: Discovered,
    args: StatsArgs,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    let stats = match daemon_stats(global).await {
        Some(mut stats) => {
            if let Some(server) = &args.server {
                stats.retain(|s| &s.server == server);
                if stats.is_empty() {
                    anyhow::bail!("the daemon has no MCP server named `{server}`");
                }
            }
            stats
        }
        None => {
            eprintln!(
                "tmux-agent: no daemon answered for `{}`: these are this command's own (empty) figures",
                global.server()
            );
            let pool = McpPool::new(&discovered);
            let stats = match &args.server {
                Some(server) => match pool.stats_for(server) {
                    Ok(s) => vec![s],
                    Err(err) => {
                        pool.shutdown().await;
                        return fail(&err, args.json);
                    }
                },
                None => pool.stats(),
            };
            pool.shutdown().await;
            stats
        }
    };
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(ExitCode::SUCCESS);
    }
    if stats.is_empty() {
        crate::outln!("No MCP servers configured.");
    }
    for s in &stats {
        let c = &s.counters;
        crate::outln!(
            "{}: {} calls, {} ok, {} tool errors, {} JSON-RPC errors, {} timeouts, {} transport errors, {} rejected; {} connects, {} reconnects",
            s.server,
            c.calls,
            c.successes,
            c.tool_errors,
            c.json_rpc_errors,
            c.timeouts,
            c.transport_errors,
            c.rejected,
            s.connects,
            s.reconnects
        );
        let l = &s.latency;
        if l.count > 0 {
            crate::outln!(
                "  latency ms: min {:.3}  p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}",
                l.min_ms,
                l.p50_ms,
                l.p95_ms,
                l.p99_ms,
                l.max_ms
            );
        }
        for (tool, t) in &s.tools {
            crate::outln!(
                "  {tool}: {} calls, p50 {:.3} ms, p95 {:.3} ms",
                t.counters.calls,
                t.latency.p50_ms,
                t.latency.p95_ms
            );
        }
    }
    if args.server.is_none() && !stats.is_empty() {
        crate::outln!("(figures of this process only; the daemon will serve live ones)");
    }
    Ok(ExitCode::SUCCESS)
}
