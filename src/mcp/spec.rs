//! What a configured MCP server is once discovery has resolved it: its
//! transport (with `${VAR}`s expanded), where it was found, and its settings
//! with every default filled in.
//!
//! Defaults (a server entry overrides `[mcp]`, which overrides these):
//!
//! | knob | default |
//! |---|---|
//! | `connect` | `lazy` |
//! | `connect_timeout` | 30 s (an `npx` cold start can take many seconds) |
//! | `call_timeout` | 30 s, restarted by progress notifications |
//! | `max_call_time` | 5 min, queue wait included |
//! | `concurrency` | 1 for stdio and unix (server-memory loses writes under concurrent calls), 4 for http, 8 for the built-in server |
//! | `queue` | 64 |
//! | `idle_timeout` | 5 min (spawned servers only) |
//! | `ping_interval` | 30 s |
//! | `protocol` | `2025-11-25` |
//! | `max_message_bytes` | 16 MiB |

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::config::{ConnectMode, Knobs, ProtocolChoice};

/// The value shown instead of a secret (env values, header values).
pub const MASK: &str = "********";

/// One server, ready to connect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerSpec {
    pub name: String,
    pub source: Source,
    pub transport: TransportSpec,
    pub settings: ServerSettings,
}

impl ServerSpec {
    /// A copy safe to print: env and header values replaced by [`MASK`].
    pub fn masked(&self) -> ServerSpec {
        let mut copy = self.clone();
        copy.transport = copy.transport.masked();
        copy
    }
}

/// How to reach a server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TransportSpec {
    /// Spawn a program and speak newline-delimited JSON-RPC on its
    /// stdin/stdout.
    Stdio(StdioSpec),
    /// Streamable HTTP.
    Http {
        url: String,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
    /// Newline-delimited JSON-RPC over a Unix socket; when `fallback` is
    /// set and the socket cannot be reached, that program is spawned as a
    /// stdio server instead.
    Unix {
        socket: PathBuf,
        #[serde(skip_serializing_if = "Option::is_none")]
        fallback: Option<StdioSpec>,
    },
}

impl TransportSpec {
    /// `stdio`, `http` or `unix`.
    pub fn kind(&self) -> &'static str {
        match self {
            TransportSpec::Stdio(_) => "stdio",
            TransportSpec::Http { .. } => "http",
            TransportSpec::Unix { .. } => "unix",
        }
    }

    /// True when connecting may spawn a process (so idling it out frees
    /// something).
    pub fn spawns(&self) -> bool {
        matches!(
            self,
            TransportSpec::Stdio(_)
                | TransportSpec::Unix {
                    fallback: Some(_),
                    ..
                }
        )
    }

    pub fn masked(&self) -> TransportSpec {
        match self {
            TransportSpec::Stdio(stdio) => TransportSpec::Stdio(stdio.masked()),
            TransportSpec::Http { url, headers } => TransportSpec::Http {
                url: url.clone(),
                headers: mask_values(headers),
            },
            TransportSpec::Unix { socket, fallback } => TransportSpec::Unix {
                socket: socket.clone(),
                fallback: fallback.as_ref().map(StdioSpec::masked),
            },
        }
    }
}

/// A program to spawn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StdioSpec {
    pub command: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Added to the inherited environment.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
}

impl StdioSpec {
    fn masked(&self) -> StdioSpec {
        StdioSpec {
            env: mask_values(&self.env),
            ..self.clone()
        }
    }

    /// The command line as a person would type it (for messages).
    pub fn command_line(&self) -> String {
        std::iter::once(self.command.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn mask_values(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.keys().map(|k| (k.clone(), MASK.to_string())).collect()
}

/// Where a server was defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub file: PathBuf,
    pub scope: Scope,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.file.display(), self.scope)
    }
}

/// Which kind of file, in precedence order: a name defined in an earlier
/// scope hides the same name in later ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case", tag = "scope")]
pub enum Scope {
    /// tmux-agent's own `config.toml`.
    Config,
    /// `~/.claude.json` → `projects[<dir>].mcpServers` (Claude Code's
    /// "local" scope) for the project: the git work tree holding the working
    /// directory, else the working directory itself.
    ClaudeLocal { project: PathBuf },
    /// `.mcp.json` in the working directory or any ancestor (the nearest
    /// wins).
    ClaudeProject,
    /// `~/.claude.json` → top-level `mcpServers` (Claude Code's "user" scope).
    ClaudeUser,
    /// Claude Desktop's `claude_desktop_config.json`.
    ClaudeDesktop,
    /// Codex CLI's project `.codex/config.toml`: any from the working
    /// directory up to the project root (the nearest wins).
    CodexProject,
    /// Codex CLI's `$CODEX_HOME/config.toml` (`~/.codex/config.toml`),
    /// `[mcp_servers.NAME]`.
    Codex,
    /// Gemini CLI's project `.gemini/settings.json` (nearest ancestor).
    GeminiProject,
    /// Gemini CLI's `~/.gemini/settings.json`.
    GeminiUser,
    /// Cursor's project `.cursor/mcp.json` (nearest ancestor).
    CursorProject,
    /// Cursor's `~/.cursor/mcp.json`.
    CursorUser,
    /// VS Code's workspace `.vscode/mcp.json` (nearest ancestor), `servers`.
    VsCodeWorkspace,
    /// VS Code's user-profile `mcp.json` (`~/.config/Code/User/mcp.json` on
    /// Linux), `servers`.
    VsCodeUser,
    /// tmux-agent's own server (`tmux-agent mcp serve`), present unless a
    /// config file defines a server named `builtin`.
    Builtin,
    /// Named on the command line (`mcp tools --url`, `mcp call --stdio`),
    /// not in any file.
    CommandLine,
}

impl Scope {
    /// A file that comes with the directory (a cloned repository): its
    /// servers are commands a stranger may have written, run only once
    /// approved.
    pub fn is_project_file(&self) -> bool {
        matches!(
            self,
            Scope::ClaudeProject
                | Scope::CodexProject
                | Scope::GeminiProject
                | Scope::CursorProject
                | Scope::VsCodeWorkspace
        )
    }

    /// One of Claude Code's own scopes (its approvals and disabled lists
    /// apply to these only).
    pub fn is_claude_code(&self) -> bool {
        matches!(
            self,
            Scope::ClaudeLocal { .. } | Scope::ClaudeProject | Scope::ClaudeUser
        )
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Config => f.write_str("tmux-agent config"),
            Scope::ClaudeLocal { project } => {
                write!(f, "Claude Code local scope, project {}", project.display())
            }
            Scope::ClaudeProject => f.write_str("Claude Code project scope"),
            Scope::ClaudeUser => f.write_str("Claude Code user scope"),
            Scope::ClaudeDesktop => f.write_str("Claude Desktop"),
            Scope::CodexProject => f.write_str("Codex CLI project config"),
            Scope::Codex => f.write_str("Codex CLI"),
            Scope::GeminiProject => f.write_str("Gemini CLI project settings"),
            Scope::GeminiUser => f.write_str("Gemini CLI user settings"),
            Scope::CursorProject => f.write_str("Cursor project"),
            Scope::CursorUser => f.write_str("Cursor global"),
            Scope::VsCodeWorkspace => f.write_str("VS Code workspace"),
            Scope::VsCodeUser => f.write_str("VS Code user"),
            Scope::Builtin => f.write_str("built in"),
            Scope::CommandLine => f.write_str("command line"),
        }
    }
}

/// A server's settings with every default applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerSettings {
    pub connect: ConnectMode,
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
    #[serde(with = "secs")]
    pub call_timeout: Duration,
    #[serde(with = "secs")]
    pub max_call_time: Duration,
    pub concurrency: usize,
    pub queue: usize,
    /// `None`: never idled out.
    #[serde(with = "opt_secs")]
    pub idle_timeout: Option<Duration>,
    /// `None`: no pings.
    #[serde(with = "opt_secs")]
    pub ping_interval: Option<Duration>,
    pub protocol: ProtocolChoice,
    pub max_message_bytes: usize,
    #[serde(serialize_with = "secs_map")]
    pub tool_timeouts: BTreeMap<String, Duration>,
}

/// The default largest message from a stdio or socket server.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

impl ServerSettings {
    /// Fills in `knobs` (server entry over `[mcp]`, already merged) with the
    /// defaults for `transport`.
    pub fn resolve(
        transport: &TransportSpec,
        knobs: Knobs,
        tool_timeouts: BTreeMap<String, Duration>,
    ) -> ServerSettings {
        let default_concurrency = match transport {
            TransportSpec::Http { .. } => 4,
            TransportSpec::Stdio(_) | TransportSpec::Unix { .. } => 1,
        };
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        ServerSettings {
            connect: knobs.connect.unwrap_or(ConnectMode::Lazy),
            connect_timeout: knobs
                .connect_timeout
                .map_or(Duration::from_secs(30), |d| d.0),
            call_timeout: knobs.call_timeout.map_or(Duration::from_secs(30), |d| d.0),
            max_call_time: knobs
                .max_call_time
                .map_or(Duration::from_secs(300), |d| d.0),
            concurrency: knobs.concurrency.unwrap_or(default_concurrency).max(1),
            queue: knobs.queue.unwrap_or(64),
            idle_timeout: knobs
                .idle_timeout
                .map_or(Some(Duration::from_secs(300)), |d| nonzero(d.0)),
            ping_interval: knobs
                .ping_interval
                .map_or(Some(Duration::from_secs(30)), |d| nonzero(d.0)),
            protocol: knobs.protocol.unwrap_or(ProtocolChoice::V2025_11_25),
            max_message_bytes: knobs
                .max_message_bytes
                .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
                .max(1024),
            tool_timeouts,
        }
    }

    /// The call timeout for `tool`: its own, else the server's.
    pub fn call_timeout_for(&self, tool: &str) -> Duration {
        self.tool_timeouts
            .get(tool)
            .copied()
            .unwrap_or(self.call_timeout)
    }
}

mod secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod opt_secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

fn secs_map<S: serde::Serializer>(
    map: &BTreeMap<String, Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut out = s.serialize_map(Some(map.len()))?;
    for (k, v) in map {
        out.serialize_entry(k, &v.as_secs_f64())?;
    }
    out.end()
}
