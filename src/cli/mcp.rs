//! `tmux-agent mcp ...`: talk to the configured MCP servers directly, from
//! this process (the daemon is not involved): list them, list a server's
//! tools, call a tool, show call figures.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::GlobalArgs;
use crate::config::{ConfigDuration, Knobs};
use crate::configuration::Configuration;
use crate::mcp::discovery::Discovered;
use crate::mcp::error::secs;
use crate::mcp::spec::{Scope, ServerSettings, ServerSpec, Source, StdioSpec, TransportSpec};
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
                      comes from. By default every server is probed once, all at the same time, \
                      each given --probe-timeout (3 s) to answer; --offline only lists.\n\n\
                      Exit status 0 when the list was made, whatever the servers' states; with \
                      --check, 1 when a server is not ready.",
        after_help = format!("Examples:\n  tmux-agent mcp servers\n  tmux-agent mcp servers --probe-timeout 10s\n  tmux-agent mcp servers --check || echo 'a server is down'\n  tmux-agent mcp servers --offline --json | jq '.[].name'\n\n{SOURCES}")
    )]
    Servers(ServersArgs),
    /// List a server's tools.
    #[command(after_help = format!(
        "Examples:\n  tmux-agent mcp tools memory\n  tmux-agent mcp tools memory --json | jq '.[].name'\n  \
         tmux-agent mcp tools --url http://127.0.0.1:8765/mcp\n  \
         tmux-agent mcp tools --stdio 'npx -y @modelcontextprotocol/server-memory'\n\n{SOURCES}"
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
            tmux-agent mcp call slow-server build --timeout 5m --json\n  \
            tmux-agent mcp call --url http://127.0.0.1:8765/mcp whoami\n  \
            tmux-agent mcp call --stdio 'tmux-agent mcp serve' list_goals '{{}}'\n\n{SOURCES}")
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
                      group_peers, group_context, group_share for their group, list_agents, and \
                      look for a peer's pane text). The daemon \
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
    #[arg(long, conflicts_with_all = ["check", "probe_timeout"])]
    offline: bool,
    /// How long each server gets to answer `initialize` (all are probed at
    /// once). Seconds, or 500ms / 3s / 1m.
    #[arg(long, value_name = "DURATION", default_value = "3s")]
    probe_timeout: String,
    /// Exit 1 when a server is not ready (for scripts and health checks).
    #[arg(long)]
    check: bool,
}

/// The server a `tools` or `call` talks to: a configured name, or one given
/// right here.
#[derive(Debug, Args)]
#[group(id = "adhoc", multiple = false)]
pub struct AdHocArgs {
    /// Talk to the Streamable HTTP server at this URL instead of a
    /// configured one (there is then no SERVER argument).
    #[arg(long, value_name = "URL", group = "adhoc")]
    url: Option<String>,
    /// Start this command as a stdio server instead of a configured one
    /// (there is then no SERVER argument). One string, split like a shell
    /// does (quotes and backslashes), never run by a shell.
    #[arg(long, value_name = "'CMD ARGS'", group = "adhoc")]
    stdio: Option<String>,
}

impl AdHocArgs {
    /// The server these flags describe, if any.
    fn spec(&self) -> anyhow::Result<Option<ServerSpec>> {
        let (name, transport) = match (&self.url, &self.stdio) {
            (Some(url), _) => {
                let parsed: http::Uri = url
                    .parse()
                    .with_context(|| format!("--url {url:?} is not a URL"))?;
                anyhow::ensure!(
                    matches!(parsed.scheme_str(), Some("http" | "https")),
                    "--url {url:?}: only http:// and https:// URLs speak Streamable HTTP"
                );
                (
                    url.clone(),
                    TransportSpec::Http {
                        url: url.clone(),
                        headers: BTreeMap::new(),
                    },
                )
            }
            (None, Some(line)) => {
                let words = shlex::split(line).with_context(|| {
                    format!("--stdio {line:?}: unbalanced quotes or a trailing backslash")
                })?;
                let Some((command, args)) = words.split_first() else {
                    anyhow::bail!(
                        "--stdio is empty: give the command, e.g. --stdio 'npx -y @modelcontextprotocol/server-memory'"
                    );
                };
                (
                    line.clone(),
                    TransportSpec::Stdio(StdioSpec {
                        command: command.clone(),
                        args: args.to_vec(),
                        env: BTreeMap::new(),
                        cwd: None,
                    }),
                )
            }
            (None, None) => return Ok(None),
        };
        let settings = ServerSettings::resolve(&transport, Knobs::default(), BTreeMap::new());
        Ok(Some(ServerSpec {
            name,
            source: Source {
                file: PathBuf::new(),
                scope: Scope::CommandLine,
            },
            transport,
            settings,
        }))
    }
}

#[derive(Debug, Args)]
pub struct ToolsArgs {
    /// Server name, as `mcp servers` lists it (none with --url/--stdio).
    #[arg(required_unless_present_any = ["url", "stdio"], conflicts_with = "adhoc")]
    server: Option<String>,
    #[command(flatten)]
    adhoc: AdHocArgs,
    /// Print the full tool definitions as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Server name, as `mcp servers` lists it; with --url/--stdio there is
    /// none, and the words shift: `mcp call --url URL TOOL [JSON|-]`.
    #[arg(value_name = "SERVER")]
    server: String,
    /// Tool name, as `mcp tools SERVER` lists it.
    #[arg(value_name = "TOOL")]
    tool: Option<String>,
    /// Arguments: a JSON object, or `-` to read it from stdin. Default `{}`.
    #[arg(value_name = "JSON|-")]
    arguments: Option<String>,
    #[command(flatten)]
    adhoc: AdHocArgs,
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
        let args = args
            .with_tmux_server(global.server())
            .with_config_file(global.config.clone());
        return crate::mcp::serve::run(args)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into);
    }
    // A server named on the command line needs no configuration.
    let adhoc = match &cmd {
        McpCommand::Tools(args) => args.adhoc.spec()?,
        McpCommand::Call(args) => args.adhoc.spec()?,
        _ => None,
    };
    if let Some(spec) = adhoc {
        let pool = McpPool::from_specs(vec![spec.clone()], Vec::new());
        return match cmd {
            McpCommand::Tools(args) => tools(pool, &spec.name, args).await,
            McpCommand::Call(mut args) => {
                // No SERVER word: what clap read as SERVER is the tool, and
                // so on down the line.
                if args.arguments.is_some() {
                    pool.shutdown().await;
                    anyhow::bail!(
                        "with --url/--stdio give only TOOL [JSON|-], without a server name"
                    );
                }
                args.arguments = args.tool.take();
                args.tool = Some(std::mem::take(&mut args.server));
                call(pool, &spec.name, args).await
            }
            _ => unreachable!("only tools and call take --url/--stdio"),
        };
    }
    let discovered = load(global).await?;
    match cmd {
        McpCommand::Serve(_) => unreachable!("handled above"),
        McpCommand::Servers(args) => servers(discovered, args).await,
        McpCommand::Tools(args) => {
            let server = args.server.clone().unwrap_or_default();
            match pool_for(discovered, &server) {
                Ok(pool) => tools(pool, &server, args).await,
                Err(err) => fail(&err, args.json),
            }
        }
        McpCommand::Call(args) => {
            let Some(_) = &args.tool else {
                anyhow::bail!(
                    "which tool? `tmux-agent mcp call {} TOOL [JSON|-]` (`tmux-agent mcp tools {}` lists them)",
                    args.server,
                    args.server
                );
            };
            match pool_for(discovered, &args.server) {
                Ok(pool) => {
                    let server = args.server.clone();
                    call(pool, &server, args).await
                }
                Err(err) => fail(&err, args.json),
            }
        }
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
    let probe_timeout = ConfigDuration::parse(&args.probe_timeout)
        .map_err(|e| anyhow::anyhow!("--probe-timeout: {e}"))?
        .0;
    // A probe is one connect attempt within the probe timeout: the
    // server's own connect_timeout (30 s by default) is for the daemon,
    // which can wait; a look at the list should not.
    let mut specs = discovered.servers.clone();
    for spec in &mut specs {
        spec.settings.connect_timeout = spec.settings.connect_timeout.min(probe_timeout);
    }
    let pool = McpPool::from_specs(specs, discovered.skipped.clone());
    let mut unanswered = Vec::new();
    if !args.offline {
        let names: Vec<String> = pool
            .servers()
            .into_iter()
            .filter(|s| s.state != "skipped")
            .map(|s| s.name)
            .collect();
        // All at once, each bounded: a server that never answers costs the
        // probe timeout, not the sum of everyone's.
        let probes = names.iter().map(|name| async {
            match tokio::time::timeout(probe_timeout, pool.connect(name)).await {
                Ok(_) => None,
                Err(_) => Some(name.clone()),
            }
        });
        unanswered = futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect();
    }
    let mut list = pool.servers();
    pool.shutdown().await;
    for status in &mut list {
        if unanswered.contains(&status.name) && status.detail.is_none() {
            status.detail = Some(format!(
                "no answer within the probe timeout ({}); --probe-timeout gives it longer",
                secs(probe_timeout)
            ));
        }
    }
    let unhealthy = !args.offline
        && list
            .iter()
            .any(|s| s.state != "ready" && s.state != "skipped");
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        crate::outln!("No MCP servers configured.\n\n{SOURCES}");
    } else {
        print_servers(&list)?;
    }
    Ok(if args.check && unhealthy {
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

/// Lists the tools of `server`, the one server in `pool`.
async fn tools(pool: McpPool, server: &str, args: ToolsArgs) -> anyhow::Result<ExitCode> {
    let listed = pool.list_tools(server).await;
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

/// The arguments and timeout of a `call`, read and checked.
fn call_request(args: &CallArgs) -> anyhow::Result<(Value, Option<std::time::Duration>)> {
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
    Ok((arguments, timeout))
}

/// Calls a tool of `server`, the one server in `pool`.
async fn call(pool: McpPool, server: &str, args: CallArgs) -> anyhow::Result<ExitCode> {
    let tool = args.tool.clone().unwrap_or_default();
    // Nothing is started before the request: a lazy pool spawns no
    // process, so a bad argument needs no cleanup beyond this.
    let (arguments, timeout) = match call_request(&args) {
        Ok(request) => request,
        Err(err) => {
            pool.shutdown().await;
            return Err(err);
        }
    };
    let result = pool
        .call_tool(server, &tool, arguments, CallOptions { timeout })
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
