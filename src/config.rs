//! The config file, `~/.config/tmux-agent/config.toml`: its schema and its
//! loader.
//!
//! Where the file is: `--config FILE` or `$TMUX_AGENT_CONFIG` when given,
//! else `$XDG_CONFIG_HOME/tmux-agent/config.toml`, else
//! `~/.config/tmux-agent/config.toml`. A missing default file is an empty
//! config; a missing explicit file is a problem.
//!
//! ```toml
//! [mcp]                       # defaults for every server
//! call_timeout = "30s"
//!
//! [servers.memory]            # a stdio server
//! command = "npx"
//! args = ["-y", "@modelcontextprotocol/server-memory"]
//! env = { MEMORY_FILE_PATH = "${HOME}/.local/share/tmux-agent/memory.jsonl" }
//! concurrency = 1
//!
//! [servers.goals]             # a Streamable HTTP server
//! url = "${GOALS_URL:-http://127.0.0.1:8080}/mcp"
//! headers = { Authorization = "Bearer ${GOALS_TOKEN}" }
//! [servers.goals.tool_timeouts]
//! create_goal = "5s"
//! ```
//!
//! Every table is strict: an unknown key is a [`Problem`] that names the file
//! and the key, so a typo (`comand`) is reported rather than ignored. The
//! loader collects every problem instead of stopping at the first, for
//! `tmux-agent config check`. Later sections (`daemon`, `on.<event>`,
//! `context`, `groups`) are added as fields of [`Config`] beside `servers`;
//! the loader needs no change for them.
//!
//! This module checks the file's shape only. What the sections mean (a
//! preset's name, an event's, a regular expression) is checked by the
//! layers that use them, and [`crate::configuration`] gathers it all.
//!
//! Durations are a number of seconds (`10`, `0.5`) or a string with a unit
//! (`"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"30d"`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole config file. Each top-level table is one field.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Defaults for every MCP server, and where servers are discovered.
    #[serde(default)]
    pub mcp: McpSection,
    /// MCP servers, by name. An entry with a transport (`command`, `url` or
    /// `socket`) defines a server; an entry with only knobs tunes the server
    /// of the same name found in Claude's config files.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerEntry>,
    /// `[reactor]`: which preset of MCP calls lifecycle events cause.
    #[serde(default)]
    pub reactor: ReactorSection,
    /// `[[on.<event>]]`: calls made on an event after the preset's.
    #[serde(default)]
    pub on: crate::agent::actions::ConfiguredActions,
    /// `[context]`: what a saved session context holds.
    #[serde(default)]
    pub context: ContextSection,
    /// `[outbox]`: how long the outbox keeps what it has delivered.
    #[serde(default)]
    pub outbox: OutboxSection,
    /// `[agents.NAME]`: an agent's screen patterns for the pane-activity
    /// fallback (`crate::status::prompt`).
    #[serde(default)]
    pub agents: BTreeMap<String, crate::status::prompt::AgentPatternsConfig>,
    /// `[notify]`: which status changes notify the user, and how.
    #[serde(default)]
    pub notify: crate::notify::NotifySection,
    /// `[messages]`: who may message whom, body cap, rate, expiry.
    #[serde(default)]
    pub messages: crate::messages::policy::MessagesSection,
    /// `[delivery]`: how messages are typed into panes
    /// (`crate::messages::pane`).
    #[serde(default)]
    pub delivery: DeliverySection,
    /// `[snapshots]`: how often the daemon snapshots sessions for
    /// `restore`, and how many it keeps.
    #[serde(default)]
    pub snapshots: SnapshotsSection,
}

/// `[delivery]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySection {
    /// A person's input into a session this recent holds messages for its
    /// panes back (default `"2s"`; tmux keeps it in whole seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typing_window: Option<ConfigDuration>,
    /// How long a typed message is watched for its first line or the agent
    /// going `working` before it counts as unverified (default `"3s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_timeout: Option<ConfigDuration>,
}

/// `[snapshots]` (see `crate::sessions::snapshot`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsSection {
    /// Snapshot every session this often, besides after each of its
    /// events (default `"60s"`; `"0s"` turns the daemon's snapshots off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<ConfigDuration>,
    /// The most snapshots kept per session name (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_session: Option<usize>,
    /// The most snapshots kept in all (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
}

/// `[outbox]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// How long a delivered call keeps its arguments and context (default
    /// `"30d"`); after that only its history row stays (event, tool, state,
    /// times). Failed calls are kept until `tmux-agent outbox` drops them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<ConfigDuration>,
}

/// `[reactor]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReactorSection {
    /// `builtin` (the default), `server-memory`, `agent-runtime` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The MCP server the preset calls (default: `builtin` for the builtin
    /// preset, `memory` for server-memory, `agent-runtime` for agent-runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Save a checkpoint of every attached session this often (off by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval: Option<ConfigDuration>,
    /// The goal of a session without `@agent-goal` (`{session}` is its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_goal: Option<String>,
    /// The type of a session without `@agent-type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_type: Option<String>,
    /// The most undelivered calls one MCP server may have queued before new
    /// checkpoints are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending: Option<u64>,
}

/// `[context]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSection {
    /// Lines of each pane's text to save (default 0: pane text can hold secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_lines: Option<u32>,
    /// The largest saved context, in bytes of JSON (default 262144).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
    /// Regular expressions whose matches in captured text become `[redacted]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
    /// Whether the built-in server's `look` tool shows panes outside the
    /// caller's group (default false: only its own session's and its
    /// group's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub look_outside_group: Option<bool>,
}

/// Declares a config table that carries the tuning knobs beside its own
/// keys. (serde's `flatten` would drop `deny_unknown_fields`, so the knob
/// keys are written into each table instead.) `knobs()` gathers them.
macro_rules! table_with_knobs {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// `lazy` (connect on the first call; the default) or `start`
            /// (connect when the pool starts and stay connected).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub connect: Option<ConnectMode>,
            /// How long spawning plus the `initialize` handshake may take.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub connect_timeout: Option<ConfigDuration>,
            /// How long a tool call may wait for its answer (progress
            /// notifications restart this clock).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub call_timeout: Option<ConfigDuration>,
            /// Hard cap on one call, queue wait included, whatever the progress.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_call_time: Option<ConfigDuration>,
            /// Calls in flight at once on one server.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub concurrency: Option<usize>,
            /// Calls that may wait for a free slot; one more is refused at once.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub queue: Option<usize>,
            /// A spawned server with no call for this long is shut down
            /// (restarted on the next call). `0` keeps it running.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub idle_timeout: Option<ConfigDuration>,
            /// Send `ping` after this long without a call. `0` disables pings.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub ping_interval: Option<ConfigDuration>,
            /// `2025-11-25` (the default: the `initialize` handshake) or `auto`
            /// (probe with `server/discover`, fall back to `initialize`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub protocol: Option<ProtocolChoice>,
            /// Largest single message accepted from a stdio or socket server,
            /// in bytes; a longer line drops the connection with a clear error.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_message_bytes: Option<usize>,
        }

        impl $name {
            /// The knobs this table sets.
            pub fn knobs(&self) -> Knobs {
                Knobs {
                    connect: self.connect,
                    connect_timeout: self.connect_timeout,
                    call_timeout: self.call_timeout,
                    max_call_time: self.max_call_time,
                    concurrency: self.concurrency,
                    queue: self.queue,
                    idle_timeout: self.idle_timeout,
                    ping_interval: self.ping_interval,
                    protocol: self.protocol,
                    max_message_bytes: self.max_message_bytes,
                }
            }
        }
    };
}

table_with_knobs! {
    /// `[mcp]`: defaults that apply to every server unless its own entry says
    /// otherwise, and discovery switches.
    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct McpSection {
        /// Also read servers from `~/.claude.json`, `.mcp.json` and Claude
        /// Desktop's config (default true).
        #[serde(default = "yes")]
        pub import_claude: bool,
        /// Also read servers from Codex CLI's, Gemini CLI's, Cursor's and
        /// VS Code's files (default true).
        #[serde(default = "yes")]
        pub import_agents: bool,
        /// Run every server of a project's `.mcp.json` without the approval
        /// Claude Code asks for (default false: only approved ones run).
        #[serde(default)]
        pub trust_project_servers: bool,
    }
}

impl Default for McpSection {
    fn default() -> Self {
        McpSection {
            import_claude: true,
            import_agents: true,
            trust_project_servers: false,
            connect: None,
            connect_timeout: None,
            call_timeout: None,
            max_call_time: None,
            concurrency: None,
            queue: None,
            idle_timeout: None,
            ping_interval: None,
            protocol: None,
            max_message_bytes: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// The tuning knobs a server entry or `[mcp]` may set, all optional: unset
/// means "inherit" (server entry, then `[mcp]`, then the built-in default;
/// see [`crate::mcp::settings`]). Field meanings are on [`ServerEntry`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Knobs {
    pub connect: Option<ConnectMode>,
    pub connect_timeout: Option<ConfigDuration>,
    pub call_timeout: Option<ConfigDuration>,
    pub max_call_time: Option<ConfigDuration>,
    pub concurrency: Option<usize>,
    pub queue: Option<usize>,
    pub idle_timeout: Option<ConfigDuration>,
    pub ping_interval: Option<ConfigDuration>,
    pub protocol: Option<ProtocolChoice>,
    pub max_message_bytes: Option<usize>,
}

impl Knobs {
    /// Each knob from `self` where set, else from `fallback`.
    pub fn or(self, fallback: Knobs) -> Knobs {
        Knobs {
            connect: self.connect.or(fallback.connect),
            connect_timeout: self.connect_timeout.or(fallback.connect_timeout),
            call_timeout: self.call_timeout.or(fallback.call_timeout),
            max_call_time: self.max_call_time.or(fallback.max_call_time),
            concurrency: self.concurrency.or(fallback.concurrency),
            queue: self.queue.or(fallback.queue),
            idle_timeout: self.idle_timeout.or(fallback.idle_timeout),
            ping_interval: self.ping_interval.or(fallback.ping_interval),
            protocol: self.protocol.or(fallback.protocol),
            max_message_bytes: self.max_message_bytes.or(fallback.max_message_bytes),
        }
    }
}

table_with_knobs! {
    /// `[servers.NAME]`: one server, or knobs for a server found elsewhere.
    #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct ServerEntry {
        /// `stdio`, `http` (alias `streamable-http`), `sse` or `unix`.
        /// Inferred from `command` / `url` / `socket` when absent.
        #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
        pub kind: Option<String>,
        /// Program to spawn (stdio), looked up on `PATH`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub command: Option<String>,
        /// Arguments of `command`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub args: Vec<String>,
        /// Added to the inherited environment of the spawned program.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub env: BTreeMap<String, String>,
        /// Working directory of the spawned program.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cwd: Option<String>,
        /// Streamable HTTP endpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub url: Option<String>,
        /// Extra HTTP headers (e.g. `Authorization`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub headers: BTreeMap<String, String>,
        /// Unix socket speaking newline-delimited JSON-RPC. With `command`
        /// as well, the socket is tried first and the command spawned (as a
        /// stdio server) if the socket cannot be reached.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub socket: Option<String>,
        /// `false` turns off a server (also one imported from Claude's files).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub enabled: Option<bool>,
        /// Per-tool call timeouts, overriding `call_timeout`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub tool_timeouts: BTreeMap<String, ConfigDuration>,
    }
}

impl ServerEntry {
    /// True when the entry names a transport, i.e. defines a server rather
    /// than tuning an imported one.
    pub fn defines_server(&self) -> bool {
        self.command.is_some() || self.url.is_some() || self.socket.is_some()
    }
}

/// When a server is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectMode {
    /// On the first call that needs it.
    Lazy,
    /// As soon as the pool starts, and kept up.
    Start,
}

/// Which lifecycle the handshake uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ProtocolChoice {
    /// `initialize` offering 2025-11-25.
    #[serde(rename = "2025-11-25")]
    V2025_11_25,
    /// `server/discover` first, then `initialize` for legacy servers.
    #[serde(rename = "auto")]
    Auto,
}

/// A duration written as seconds (`10`, `0.5`) or with a unit (`"500ms"`,
/// `"30s"`, `"5m"`, `"1h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses `"500ms"`, `"30s"`, `"5m"`, `"1h"`, or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number.parse().map_err(|_| {
            format!("`{text}` is not a duration such as \"500ms\", \"30s\", \"5m\"")
        })?;
        let scale = match unit.trim() {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}`: use ms, s, m, h or d"
                ));
            }
        };
        Self::from_secs_f64(value * scale)
    }

    fn from_secs_f64(secs: f64) -> Result<Self, String> {
        Duration::try_from_secs_f64(secs)
            .map(ConfigDuration)
            .map_err(|_| format!("{secs} is not a usable number of seconds"))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else if ms.is_multiple_of(86_400_000) && ms > 0 {
            write!(f, "{}d", ms / 86_400_000)
        } else if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 10, \"500ms\", \"30s\" or \"5m\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ConfigDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(|v| ConfigDuration(Duration::from_secs(v)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                ConfigDuration::from_secs_f64(v).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ConfigDuration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// One thing wrong with a config file: `file: key: what is expected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: PathBuf,
    /// Dotted key path (`servers.memory.connect_timeout`), or `-` for the
    /// file as a whole.
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
    }
}

/// Where the config file is, given `--config`/`$TMUX_AGENT_CONFIG`,
/// `$XDG_CONFIG_HOME` and `$HOME`.
pub fn config_path(
    explicit: Option<&Path>,
    xdg_config_home: Option<&Path>,
    home: &Path,
) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    match xdg_config_home {
        // The XDG spec says a relative value is invalid and must be ignored.
        Some(dir) if dir.is_absolute() => dir.join("tmux-agent").join("config.toml"),
        _ => home.join(".config").join("tmux-agent").join("config.toml"),
    }
}

/// A loaded config file plus everything wrong with it. Parts with problems
/// are left out of `config` (a bad server entry is dropped, the rest kept).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub config: Config,
    /// The file that was read, if one existed.
    pub file: Option<PathBuf>,
    pub problems: Vec<Problem>,
}

/// Reads and checks the config file at `path`. `required` makes a missing
/// file a problem (an explicit `--config`); otherwise it is an empty config.
pub fn load(path: &Path, required: bool) -> Loaded {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let (config, problems) = parse(path, &text);
            Loaded {
                config,
                file: Some(path.to_path_buf()),
                problems,
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => Loaded::default(),
        Err(err) => Loaded {
            config: Config::default(),
            file: None,
            problems: vec![Problem::new(
                path,
                "-",
                format!("cannot read the file: {err}"),
            )],
        },
    }
}

/// Parses config text, collecting every problem. `file` only labels them.
pub fn parse(file: &Path, text: &str) -> (Config, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut table = match text.parse::<toml::Table>() {
        Ok(table) => table,
        Err(err) => {
            problems.push(Problem::new(file, "-", toml_syntax_message(&err, text)));
            return (Config::default(), problems);
        }
    };

    // Check each top-level key on its own so one mistake does not hide the
    // next; drop what fails so the rest still loads.
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let Some(value) = table.remove(&key) else {
            continue;
        };
        if key == "servers"
            && let toml::Value::Table(servers) = value
        {
            let mut kept = toml::Table::new();
            for (name, entry) in servers {
                let mut one = toml::Table::new();
                one.insert(name.clone(), entry.clone());
                let mut probe = toml::Table::new();
                probe.insert("servers".into(), toml::Value::Table(one));
                match check::<Config>(probe) {
                    Ok(()) => {
                        kept.insert(name, entry);
                    }
                    Err((path, message)) => problems.push(Problem::new(file, path, message)),
                }
            }
            table.insert(key, toml::Value::Table(kept));
            continue;
        }
        let mut probe = toml::Table::new();
        probe.insert(key.clone(), value.clone());
        match check::<Config>(probe) {
            Ok(()) => {
                table.insert(key, value);
            }
            Err((path, message)) => problems.push(Problem::new(file, path, message)),
        }
    }

    match toml::Value::Table(table).try_into::<Config>() {
        Ok(config) => (config, problems),
        Err(err) => {
            // Each part deserialized alone; together they should too. Report
            // rather than panic if they somehow do not.
            problems.push(Problem::new(file, "-", err.message().to_string()));
            (Config::default(), problems)
        }
    }
}

/// Deserializes `table` as `T`, returning the key path and a message on
/// failure.
fn check<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<(), (String, String)> {
    match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(table)) {
        Ok(_) => Ok(()),
        Err(err) => {
            let path = err.path().to_string();
            let message = err.inner().message().to_string();
            Err(describe(path, &message))
        }
    }
}

/// Turns serde's wording into `key: what is expected`. An unknown field is
/// reported at its own key, not at the table that holds it.
pub(crate) fn describe(path: String, message: &str) -> (String, String) {
    let path = if path == "." { String::new() } else { path };
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        // serde_path_to_error already puts the unknown key at the end of
        // the path; older versions stop at the table.
        let key = if path.is_empty() {
            field.to_string()
        } else if path == field || path.ends_with(&format!(".{field}")) {
            path
        } else {
            format!("{path}.{field}")
        };
        let expected = expected.trim_start_matches(',').trim();
        let expected = expected
            .strip_prefix("expected ")
            .unwrap_or(expected)
            .replace("one of ", "");
        return (key, format!("unknown key; expected one of {expected}"));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((variant, expected)) = rest.split_once('`')
    {
        let expected = expected.trim_start_matches(',').trim();
        return (
            or_dash(path),
            format!("`{variant}` is not allowed; {expected}"),
        );
    }
    (or_dash(path), message.to_string())
}

fn or_dash(path: String) -> String {
    if path.is_empty() { "-".into() } else { path }
}

/// A TOML syntax error as `line N, column M: message`.
fn toml_syntax_message(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        parse(Path::new("c.toml"), text)
            .1
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn durations_take_numbers_and_units() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("30d", Duration::from_secs(30 * 86_400)),
            ("2.5", Duration::from_millis(2500)),
        ];
        for (text, want) in cases {
            assert_eq!(
                ConfigDuration::parse(text),
                Ok(ConfigDuration(want)),
                "{text}"
            );
        }
        assert!(ConfigDuration::parse("5 parsecs").is_err());
        assert!(ConfigDuration::parse("").is_err());
        assert!(ConfigDuration::parse("-1s").is_err());
        assert_eq!(
            ConfigDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        assert_eq!(ConfigDuration(Duration::from_secs(300)).to_string(), "5m");
        assert_eq!(
            ConfigDuration(Duration::from_secs(2 * 86_400)).to_string(),
            "2d"
        );
        let bad = problems("[outbox]\nkeep = \"30 days\"\n");
        assert!(
            bad.iter()
                .any(|p| p.starts_with("c.toml: outbox.keep: unknown unit `days`")),
            "{bad:?}"
        );
    }

    #[test]
    fn a_full_file_loads() {
        let (config, problems) = parse(
            Path::new("c.toml"),
            r#"
            [mcp]
            call_timeout = 20
            concurrency = 2
            [servers.memory]
            command = "npx"
            args = ["-y", "@modelcontextprotocol/server-memory"]
            env = { MEMORY_FILE_PATH = "/tmp/m.jsonl" }
            connect = "start"
            connect_timeout = "45s"
            [servers.memory.tool_timeouts]
            read_graph = "2s"
            [servers.goals]
            type = "http"
            url = "http://127.0.0.1:1/mcp"
            headers = { Authorization = "Bearer x" }
            protocol = "auto"
            "#,
        );
        assert_eq!(problems, vec![]);
        assert_eq!(
            config.mcp.call_timeout,
            Some(ConfigDuration(Duration::from_secs(20)))
        );
        let memory = &config.servers["memory"];
        assert_eq!(memory.command.as_deref(), Some("npx"));
        assert_eq!(memory.connect, Some(ConnectMode::Start));
        assert_eq!(
            memory.tool_timeouts["read_graph"],
            ConfigDuration(Duration::from_secs(2))
        );
        assert_eq!(config.servers["goals"].protocol, Some(ProtocolChoice::Auto));
    }

    #[test]
    fn every_problem_names_file_and_key() {
        let found = problems(
            r#"
            colour = "blue"
            [mcp]
            call_timeout = "soon"
            [servers.a]
            comand = "x"
            [servers.b]
            command = "ok"
            [servers.c]
            command = "y"
            connect = "eager"
            "#,
        );
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("c.toml: colour: unknown key; expected one of `mcp`")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("c.toml: mcp.call_timeout: `soon` is not a duration")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("c.toml: servers.a.comand: unknown key; expected one of")),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|p| p.starts_with(
                "c.toml: servers.c.connect: `eager` is not allowed; expected `lazy` or `start`"
            )),
            "{found:#?}"
        );
    }

    #[test]
    fn bad_entries_are_dropped_and_good_ones_kept() {
        let (config, problems) = parse(
            Path::new("c.toml"),
            "[servers.bad]\nconcurrency = \"many\"\n[servers.good]\ncommand = \"x\"\n",
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "servers.bad.concurrency");
        assert!(config.servers.contains_key("good"));
        assert!(!config.servers.contains_key("bad"));
    }

    #[test]
    fn syntax_errors_give_a_line() {
        let found = problems("[servers.a]\ncommand = \n");
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("c.toml: -: TOML syntax error at line 2"),
            "{found:?}"
        );
    }

    #[test]
    fn config_path_honours_xdg_and_explicit() {
        let home = Path::new("/home/u");
        assert_eq!(
            config_path(None, None, home),
            Path::new("/home/u/.config/tmux-agent/config.toml")
        );
        assert_eq!(
            config_path(None, Some(Path::new("/x")), home),
            Path::new("/x/tmux-agent/config.toml")
        );
        assert_eq!(
            config_path(None, Some(Path::new("relative")), home),
            Path::new("/home/u/.config/tmux-agent/config.toml")
        );
        assert_eq!(
            config_path(Some(Path::new("/e.toml")), Some(Path::new("/x")), home),
            Path::new("/e.toml")
        );
    }
}
