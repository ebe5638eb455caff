//! Finding the MCP servers a user already has: tmux-agent's `config.toml`,
//! the files Claude Code and Claude Desktop keep, then those of Codex CLI,
//! Gemini CLI, Cursor and VS Code ([`agents`]).
//!
//! Files read, in precedence order (a server name defined in an earlier one
//! hides the same name in later ones; entries are never merged field by
//! field):
//!
//! 1. `config.toml` (`[servers.NAME]` entries that name a transport),
//! 2. `~/.claude.json` → `projects[<dir>].mcpServers`, where `<dir>` is the
//!    root of the git work tree holding the working directory, else the
//!    working directory itself (Claude Code's *local* scope),
//! 3. every `.mcp.json` from the working directory up to `/`, the nearest
//!    first (Claude Code's *project* scope),
//! 4. `~/.claude.json` → top-level `mcpServers` (Claude Code's *user* scope),
//! 5. Claude Desktop's `claude_desktop_config.json`
//!    (`$XDG_CONFIG_HOME/Claude/` or `~/.config/Claude/` on Linux,
//!    `~/Library/Application Support/Claude/` on macOS).
//!
//! This is Claude Code's own order (local > project > user) with our file in
//! front and Desktop behind, then the other agents' files ([`agents`]).
//! Where Claude Code 2.1.332 reads what was found by running it (`claude mcp
//! add` in every scope, then `claude mcp list` from several directories),
//! not from its documentation. `$CLAUDE_CONFIG_DIR/.claude.json` replaces
//! `~/.claude.json` when that variable is set, as in Claude Code.
//! `[mcp] import_claude = false` skips Claude's files, `import_agents =
//! false` the other agents'.
//!
//! A `[servers.NAME]` entry without `command`/`url`/`socket` does not define
//! a server: its knobs (timeouts, concurrency, `enabled = false`, ...) apply
//! to the server of that name found in Claude's files. Names listed in
//! `projects[<dir>].disabledMcpServers` (any Claude scope) or
//! `disabledMcpjsonServers` (`.mcp.json`) are skipped, as Claude Code skips
//! them.
//!
//! A `.mcp.json` comes with the repository it sits in, so its servers are
//! commands a stranger wrote: like Claude Code, tmux-agent runs one only
//! once it is approved the way Claude Code takes approvals (see
//! [`read_claude`]), when our config has a
//! `[servers.NAME]` entry with `enabled = true` for it, or when `[mcp]
//! trust_project_servers = true`. Others are listed as skipped, saying how
//! to approve them. The other agents' project files follow the same rule;
//! Codex's project trust and Gemini CLI's folder trust approve their own
//! (see [`agents`]).
//!
//! `${VAR}` / `${VAR:-default}` are expanded in `command`, `args`, `env`,
//! `url`, `headers` (and `cwd`, `socket`) of every entry; a server using an
//! unset variable with no default is skipped with a warning naming the
//! server, the file and the variable. `~/.claude.json` is rewritten
//! constantly by Claude Code, so a parse failure is retried a few times
//! before it is reported.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::{self, Config, Problem, ServerEntry};
use crate::mcp::expand::{ExpandError, expand};
use crate::mcp::spec::{Scope, ServerSettings, ServerSpec, Source, StdioSpec, TransportSpec};

mod agents;
use agents::Dialect;

/// How many times a JSON file that fails to parse is read again.
const PARSE_ATTEMPTS: u32 = 5;
/// Pause between those reads: long enough for an editor's rewrite to land.
const PARSE_RETRY_DELAY: Duration = Duration::from_millis(40);

/// Everything discovery needs from the outside world, so tests can give a
/// temporary home, working directory and environment.
#[derive(Debug, Clone)]
pub struct DiscoveryInput {
    pub home: PathBuf,
    pub cwd: PathBuf,
    /// `--config` / `$TMUX_AGENT_CONFIG`.
    pub config_file: Option<PathBuf>,
    /// Variables for `${VAR}` expansion and for `XDG_CONFIG_HOME`,
    /// `CLAUDE_CONFIG_DIR`.
    pub vars: HashMap<String, String>,
}

impl DiscoveryInput {
    /// This process's home, working directory and environment.
    pub fn from_process(config_file: Option<PathBuf>) -> std::io::Result<DiscoveryInput> {
        let vars: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let home = vars.get("HOME").map(PathBuf::from).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "$HOME is not set; set it or pass --config",
            )
        })?;
        Ok(DiscoveryInput {
            home,
            cwd: std::env::current_dir()?,
            config_file,
            vars,
        })
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Where the config file is looked for.
    pub fn config_path(&self) -> PathBuf {
        config::config_path(
            self.config_file.as_deref(),
            self.var("XDG_CONFIG_HOME").map(Path::new),
            &self.home,
        )
    }

    fn claude_json(&self) -> PathBuf {
        match self.var("CLAUDE_CONFIG_DIR") {
            Some(dir) if !dir.is_empty() => Path::new(dir).join(".claude.json"),
            _ => self.home.join(".claude.json"),
        }
    }

    /// Claude Code's settings directory: `$CLAUDE_CONFIG_DIR`, else `~/.claude`.
    fn claude_dir(&self) -> PathBuf {
        match self.var("CLAUDE_CONFIG_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => self.home.join(".claude"),
        }
    }

    fn claude_desktop_json(&self) -> PathBuf {
        if cfg!(target_os = "macos") {
            return self
                .home
                .join("Library/Application Support/Claude/claude_desktop_config.json");
        }
        let base = match self.var("XDG_CONFIG_HOME") {
            Some(dir) if Path::new(dir).is_absolute() => PathBuf::from(dir),
            _ => self.home.join(".config"),
        };
        base.join("Claude").join("claude_desktop_config.json")
    }
}

/// A server that was found but will not be run, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedServer {
    pub name: String,
    pub source: Source,
    pub reason: String,
}

/// The result of discovery.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// The parsed `config.toml` (empty when there is none).
    pub config: Config,
    /// Where `config.toml` was looked for.
    pub config_path: PathBuf,
    /// Every file that existed and was read.
    pub files_read: Vec<PathBuf>,
    /// Servers to run, by name.
    pub servers: Vec<ServerSpec>,
    /// Servers found but not run.
    pub skipped: Vec<SkippedServer>,
    /// Errors in files: `config check` exits 1 when there are any.
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not errors in our own file (a server
    /// skipped for an unset variable, an ignored Claude field).
    pub warnings: Vec<Problem>,
}

impl Discovered {
    /// Keeps only the named servers (and skipped entries of those names).
    pub fn only(mut self, names: &[&str]) -> Discovered {
        self.servers.retain(|s| names.contains(&s.name.as_str()));
        self.skipped.retain(|s| names.contains(&s.name.as_str()));
        self
    }

    /// Every name known, run or skipped, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .servers
            .iter()
            .map(|s| s.name.clone())
            .chain(self.skipped.iter().map(|s| s.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// What `~/.claude.json` says the user approved of the project's
/// `.mcp.json` servers.
#[derive(Default)]
struct ProjectApproval {
    all: bool,
    names: Vec<String>,
}

/// A name Claude Code was told not to run for this project.
struct Disabled {
    name: String,
    why: String,
    /// `disabledMcpjsonServers` applies to `.mcp.json` servers only.
    project_only: bool,
}

/// One server entry before expansion, with where it came from.
struct Candidate {
    name: String,
    source: Source,
    entry: ServerEntry,
    /// Entries from our own file report mistakes as problems; entries from
    /// Claude's files (not ours to police) as warnings.
    ours: bool,
}

/// Finds every configured server. Blocking: it reads files and may pause a
/// few tens of milliseconds to re-read a `~/.claude.json` caught mid-write;
/// call it from `spawn_blocking` in async code.
pub fn discover(input: &DiscoveryInput) -> Discovered {
    let mut out = Discovered {
        config_path: input.config_path(),
        ..Discovered::default()
    };
    let loaded = config::load(&out.config_path, input.config_file.is_some());
    out.problems.extend(loaded.problems);
    if let Some(file) = loaded.file {
        out.files_read.push(file);
    }
    out.config = loaded.config;

    let mut candidates = Vec::new();
    let mut overlays: BTreeMap<String, ServerEntry> = BTreeMap::new();
    for (name, entry) in &out.config.servers {
        if entry.defines_server() {
            candidates.push(Candidate {
                name: name.clone(),
                source: Source {
                    file: out.config_path.clone(),
                    scope: Scope::Config,
                },
                entry: entry.clone(),
                ours: true,
            });
        } else {
            overlays.insert(name.clone(), entry.clone());
        }
    }

    let mut disabled: Vec<Disabled> = Vec::new();
    let mut approval = ProjectApproval::default();
    if out.config.mcp.import_claude {
        read_claude(
            input,
            &mut out,
            &mut candidates,
            &mut disabled,
            &mut approval,
        );
    }
    // What Codex and Gemini CLI recorded about trusting this project.
    let owners_trust = if out.config.mcp.import_agents {
        agents::read_agents(input, &mut out, &mut candidates)
    } else {
        Vec::new()
    };
    let trust_all = out.config.mcp.trust_project_servers;

    // First definition of a name wins; candidates are in precedence order.
    let mut seen = BTreeMap::new();
    for candidate in candidates {
        if seen.contains_key(&candidate.name) {
            continue;
        }
        seen.insert(candidate.name.clone(), ());
        let overlay = overlays.remove(&candidate.name);
        if let Some(off) = disabled.iter().find(|d| {
            d.name == candidate.name
                && match candidate.source.scope {
                    Scope::ClaudeProject => true,
                    ref scope => scope.is_claude_code() && !d.project_only,
                }
        }) {
            out.skipped.push(SkippedServer {
                name: candidate.name,
                source: candidate.source,
                reason: off.why.to_string(),
            });
            continue;
        }
        let claude = candidate.source.scope == Scope::ClaudeProject;
        // Codex and Gemini CLI read a project's file only in a project they
        // trust: their trust is their approval, as Claude's dialog is Claude's.
        let owner = owners_trust
            .iter()
            .find(|trust| trust.scope == candidate.source.scope);
        let approved = trust_all
            || (claude && (approval.all || approval.names.contains(&candidate.name)))
            || owner.is_some_and(|trust| trust.trusted)
            || overlay.as_ref().and_then(|o| o.enabled) == Some(true);
        if candidate.source.scope.is_project_file() && !approved {
            out.skipped.push(SkippedServer {
                reason: format!(
                    "a project server not approved for this directory: {how}add \
                     `[servers.{name}]` with `enabled = true` to {config} (or set `[mcp] \
                     trust_project_servers = true`)",
                    how = match owner {
                        _ if claude => "approve it in Claude Code, or ".to_owned(),
                        Some(trust) => format!("{}, or ", trust.how),
                        None => String::new(),
                    },
                    name = candidate.name,
                    config = out.config_path.display()
                ),
                name: candidate.name,
                source: candidate.source,
            });
            continue;
        }
        resolve(input, candidate, overlay, &mut out);
    }
    if !out.servers.iter().any(|s| s.name == BUILTIN)
        && !out.skipped.iter().any(|s| s.name == BUILTIN)
    {
        let overlay = overlays.remove(BUILTIN);
        add_builtin(&mut out, overlay);
    }
    for (name, _) in overlays {
        out.problems.push(Problem::new(
            &out.config_path,
            format!("servers.{name}"),
            "no `command`, `url` or `socket`, and no server of this name in the agents' \
             config files tmux-agent reads (Claude, Codex, Gemini, Cursor, VS Code): give it a \
             transport, or fix the name",
        ));
    }
    out.servers.sort_by(|a, b| a.name.cmp(&b.name));
    out.skipped.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Claude Code's project directory for `cwd`: the root of the git work
/// tree holding it (the nearest ancestor with a `.git`), else `cwd` itself.
/// `claude mcp add -s local` keys its entry on this directory, and `claude
/// mcp list` reads local servers and approvals from it: observed with
/// Claude Code 2.1.332 (tests/it/claude_code.rs checks it against the CLI).
pub fn claude_project_dir(cwd: &Path) -> PathBuf {
    cwd.ancestors()
        .find(|dir| dir.join(".git").exists())
        .unwrap_or(cwd)
        .to_path_buf()
}

/// Reads `~/.claude.json`, every `.mcp.json` from the working directory up,
/// Claude Code's settings (for approvals) and Claude Desktop's file,
/// appending their entries in precedence order.
///
/// Approvals of `.mcp.json` servers, as Claude Code 2.1.332 honours them:
/// `enabledMcpjsonServers` / `enableAllProjectMcpServers` /
/// `disabledMcpjsonServers` in `~/.claude/settings.json` always; in
/// `projects[<dir>]` of `~/.claude.json` and in `<dir>/.claude/settings.local.json`
/// (for the project directory and the working directory) only once the
/// project is trusted (`hasTrustDialogAccepted`, set by Claude's trust
/// dialog). A committed `.claude/settings.json` cannot approve its own
/// repository's servers.
fn read_claude(
    input: &DiscoveryInput,
    out: &mut Discovered,
    candidates: &mut Vec<Candidate>,
    disabled: &mut Vec<Disabled>,
    approval: &mut ProjectApproval,
) {
    let claude_json = input.claude_json();
    let claude = read_json(&claude_json, out, true);
    let project_dir = claude_project_dir(&input.cwd);
    let project_entry = |dir: &Path| -> Option<&Value> {
        let projects = claude.as_ref()?.get("projects")?.as_object()?;
        projects
            .iter()
            .find(|(key, _)| Path::new(key) == dir)
            .map(|(_, value)| value)
    };

    // Local scope: the entry of the project directory, exactly.
    if let Some(project) = project_entry(&project_dir) {
        let scope = Scope::ClaudeLocal {
            project: project_dir.clone(),
        };
        let prefix = servers_key(&scope);
        entries_from_json(
            Origin::new(&claude_json, scope, prefix, Dialect::Claude),
            project.get("mcpServers"),
            input,
            out,
            candidates,
        );
        for name in string_list(project.get("disabledMcpServers")) {
            disabled.push(Disabled {
                name,
                why: format!(
                    "disabled for this project in {} (disabledMcpServers)",
                    claude_json.display()
                ),
                project_only: false,
            });
        }
    }

    // Approvals, from every place Claude Code takes them.
    let trusted = project_entry(&project_dir)
        .and_then(|p| p.get("hasTrustDialogAccepted"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut approvals: Vec<(PathBuf, Value)> = Vec::new();
    let user_settings = input.claude_dir().join("settings.json");
    if let Some(settings) = read_json(&user_settings, out, false) {
        approvals.push((user_settings, settings));
    }
    if trusted {
        let mut dirs = vec![project_dir.clone()];
        if input.cwd != project_dir {
            dirs.push(input.cwd.clone());
        }
        for dir in &dirs {
            if let Some(entry) = project_entry(dir) {
                approvals.push((claude_json.clone(), entry.clone()));
            }
            let local = dir.join(".claude").join("settings.local.json");
            if let Some(settings) = read_json(&local, out, false) {
                approvals.push((local, settings));
            }
        }
    }
    for (file, settings) in &approvals {
        approval.all |= settings
            .get("enableAllProjectMcpServers")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        approval
            .names
            .extend(string_list(settings.get("enabledMcpjsonServers")));
        for name in string_list(settings.get("disabledMcpjsonServers")) {
            disabled.push(Disabled {
                name,
                why: format!(
                    "disabled for this project in {} (disabledMcpjsonServers)",
                    file.display()
                ),
                project_only: true,
            });
        }
    }

    // Project scope: every .mcp.json from cwd up to /, the nearest first.
    for mcp_json in input.cwd.ancestors().map(|dir| dir.join(".mcp.json")) {
        if mcp_json.is_file()
            && let Some(value) = read_json(&mcp_json, out, true)
        {
            entries_from_json(
                Origin::new(
                    &mcp_json,
                    Scope::ClaudeProject,
                    "mcpServers",
                    Dialect::Claude,
                ),
                value.get("mcpServers"),
                input,
                out,
                candidates,
            );
        }
    }

    if let Some(servers) = claude.as_ref().and_then(|c| c.get("mcpServers")) {
        entries_from_json(
            Origin::new(
                &claude_json,
                Scope::ClaudeUser,
                "mcpServers",
                Dialect::Claude,
            ),
            Some(servers),
            input,
            out,
            candidates,
        );
    }

    let desktop = input.claude_desktop_json();
    if let Some(value) = read_json(&desktop, out, true) {
        entries_from_json(
            Origin::new(
                &desktop,
                Scope::ClaudeDesktop,
                "mcpServers",
                Dialect::Claude,
            ),
            value.get("mcpServers"),
            input,
            out,
            candidates,
        );
    }
}

/// The strings of a JSON array (others ignored).
fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

/// `projects."/a/b"` style key for messages.
fn quote_key(key: &str) -> String {
    serde_json::to_string(key).unwrap_or_else(|_| key.to_string())
}

/// How a JSON file is written: Claude's files are plain JSON; VS Code's,
/// Cursor's and Gemini CLI's may hold comments (and, in VS Code, trailing
/// commas), as their editors and loaders accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Json,
    Jsonc,
}

impl Syntax {
    fn parse(self, text: &[u8]) -> Result<Value, String> {
        match self {
            Syntax::Json => serde_json::from_slice(text).map_err(|e| e.to_string()),
            Syntax::Jsonc => {
                let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))?;
                let options = jsonc_parser::ParseOptions {
                    allow_comments: true,
                    allow_trailing_commas: true,
                    allow_loose_object_property_names: false,
                    allow_missing_commas: false,
                    allow_single_quoted_strings: false,
                    allow_hexadecimal_numbers: false,
                    allow_unary_plus_numbers: false,
                    allow_bare_decimal_point_numbers: false,
                    allow_non_finite_numbers: false,
                    allow_extended_string_escapes: false,
                };
                jsonc_parser::parse_to_serde_value::<Option<Value>>(text, &options)
                    .map_err(|e| e.to_string())
                    .map(|v| v.unwrap_or(Value::Null))
            }
        }
    }
}

/// Reads a JSON file, retrying a parse failure (the file may be mid-rewrite).
/// A missing file is `None` without a problem. A file that cannot be read is
/// a problem when `problem` (it stops `config check`), else a warning.
fn read_json(path: &Path, out: &mut Discovered, problem: bool) -> Option<Value> {
    read_json_as(path, Syntax::Json, out, problem)
}

fn read_json_as(path: &Path, syntax: Syntax, out: &mut Discovered, problem: bool) -> Option<Value> {
    let mut last_error = String::new();
    for attempt in 0..PARSE_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(PARSE_RETRY_DELAY);
        }
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => {
                let bad = Problem::new(path, "-", format!("cannot read the file: {err}"));
                if problem {
                    out.problems.push(bad);
                } else {
                    out.warnings.push(bad);
                }
                return None;
            }
        };
        match syntax.parse(&text) {
            Ok(value) => {
                out.files_read.push(path.to_path_buf());
                return Some(value);
            }
            Err(err) => last_error = err,
        }
    }
    let list = if problem {
        &mut out.problems
    } else {
        &mut out.warnings
    };
    list.push(Problem::new(
        path,
        "-",
        format!(
            "not valid JSON after {PARSE_ATTEMPTS} reads ({last_error}); if its program is \
             rewriting it, try again"
        ),
    ));
    None
}

/// Where a set of server entries comes from, and what its variables mean.
struct Origin<'a> {
    file: &'a Path,
    scope: Scope,
    /// The key path of the servers object in the file, for messages.
    prefix: String,
    dialect: Dialect,
    /// The folder `${workspaceFolder}` names: the project of an editor's
    /// project file; `None` for user-level files, which have no workspace.
    workspace: Option<PathBuf>,
}

impl<'a> Origin<'a> {
    fn new(file: &'a Path, scope: Scope, prefix: impl Into<String>, dialect: Dialect) -> Self {
        Origin {
            file,
            scope,
            prefix: prefix.into(),
            dialect,
            workspace: None,
        }
    }
}

/// Turns the servers object of a file into candidates.
fn entries_from_json(
    origin: Origin<'_>,
    servers: Option<&Value>,
    input: &DiscoveryInput,
    out: &mut Discovered,
    candidates: &mut Vec<Candidate>,
) {
    let Origin {
        file,
        scope,
        prefix,
        dialect,
        workspace,
    } = origin;
    let Some(servers) = servers else { return };
    let Some(servers) = servers.as_object() else {
        out.warnings.push(Problem::new(
            file,
            prefix,
            "expected an object of servers; ignored",
        ));
        return;
    };
    let context = agents::EntryContext {
        file,
        workspace: workspace.as_deref(),
        input,
    };
    for (name, value) in servers {
        let key = format!("{prefix}.{name}");
        let translated = match dialect.translate(value, &context) {
            Ok(value) => value,
            Err((field, message)) => {
                out.warnings.push(Problem::new(
                    file,
                    format!("{key}.{field}"),
                    format!("{message}; server skipped"),
                ));
                continue;
            }
        };
        match entry_from_json(&translated, dialect, &context) {
            Ok((entry, ignored)) => {
                for (field, message) in ignored {
                    out.warnings
                        .push(Problem::new(file, format!("{key}.{field}"), message));
                }
                candidates.push(Candidate {
                    name: name.clone(),
                    source: Source {
                        file: file.to_path_buf(),
                        scope: scope.clone(),
                    },
                    entry,
                    ours: false,
                });
            }
            Err((field, message)) => {
                let key = if field.is_empty() {
                    key
                } else {
                    format!("{key}.{field}")
                };
                out.warnings.push(Problem::new(
                    file,
                    key,
                    format!("{message}; server skipped"),
                ));
            }
        }
    }
}

/// A field tmux-agent read but does not act on, and what the user should
/// know about it.
type Ignored = (String, String);

/// Reads one server entry of a JSON (or Codex TOML) file. Returns the entry
/// and the fields that tmux-agent ignores (each with why), or the bad field
/// and what was expected.
fn entry_from_json(
    value: &Value,
    dialect: Dialect,
    context: &agents::EntryContext<'_>,
) -> Result<(ServerEntry, Vec<Ignored>), (String, String)> {
    let object = value
        .as_object()
        .ok_or_else(|| (String::new(), "expected an object".to_string()))?;
    let mut entry = ServerEntry::default();
    let mut ignored = Vec::new();
    let string = |field: &str, v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| (field.to_string(), "expected a string".to_string()))
    };
    let string_map =
        |field: &str, v: &Value| -> Result<BTreeMap<String, String>, (String, String)> {
            let map = v.as_object().ok_or_else(|| {
                (
                    field.to_string(),
                    "expected an object of strings".to_string(),
                )
            })?;
            map.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    // Numbers and booleans are written unquoted often enough.
                    Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
                    _ => Err((format!("{field}.{k}"), "expected a string".to_string())),
                })
                .collect()
        };
    for (field, v) in object {
        if dialect.read_field(field, v, &mut entry, &mut ignored)? {
            continue;
        }
        match field.as_str() {
            "type" | "transport" => entry.kind = Some(string(field, v)?),
            "command" => entry.command = Some(string(field, v)?),
            "args" => {
                let items = v
                    .as_array()
                    .ok_or_else(|| (field.clone(), "expected an array of strings".to_string()))?;
                entry.args = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| string(&format!("args[{i}]"), item))
                    .collect::<Result<_, _>>()?;
            }
            "env" => entry.env = string_map(field, v)?,
            "headers" => entry.headers = string_map(field, v)?,
            "cwd" => entry.cwd = Some(string(field, v)?),
            "url" | "serverUrl" => entry.url = Some(string(field, v)?),
            "socket" => entry.socket = Some(string(field, v)?),
            "disabled" => entry.enabled = Some(!v.as_bool().unwrap_or(false)),
            // Claude-only fields that do not change how to reach the server.
            "description" | "timeout" | "alwaysAllow" | "autoApprove" => {}
            _ => ignored.push((field.clone(), "not supported by tmux-agent; ignored".into())),
        }
    }
    // Read last: the entry's own `env` wins over its env file.
    if let Some(path) = object.get("envFile") {
        dialect.read_env_file(path, &mut entry, context)?;
    }
    Ok((entry, ignored))
}

/// Expands and checks one winning candidate, adding it to `servers` or
/// `skipped`.
fn resolve(
    input: &DiscoveryInput,
    candidate: Candidate,
    overlay: Option<ServerEntry>,
    out: &mut Discovered,
) {
    let Candidate {
        name,
        source,
        entry,
        ours,
    } = candidate;
    let key = |field: &str| format!("{}.{name}.{field}", servers_key(&source.scope));
    let skip = |out: &mut Discovered, reason: String| {
        out.skipped.push(SkippedServer {
            name: name.clone(),
            source: source.clone(),
            reason,
        });
    };

    let enabled = overlay
        .as_ref()
        .and_then(|o| o.enabled)
        .or(entry.enabled)
        .unwrap_or(true);
    if !enabled {
        let by_us = overlay.as_ref().and_then(|o| o.enabled) == Some(false);
        let file = if by_us {
            out.config_path.clone()
        } else {
            source.file.clone()
        };
        skip(out, format!("disabled (in {})", file.display()));
        return;
    }

    let lookup = |name: &str| input.var(name).map(str::to_string);
    let transport = match build_transport(&entry, &lookup, base_dir(&source.file), &input.home) {
        Ok(transport) => transport,
        Err(Unusable::Unset { field, error }) => {
            out.warnings.push(Problem::new(
                &source.file,
                key(&field),
                format!("server `{name}` skipped: {error}"),
            ));
            skip(out, format!("{field}: {error}"));
            return;
        }
        Err(Unusable::Invalid { field, message }) => {
            let problem = Problem::new(&source.file, key(&field), message.clone());
            if ours {
                out.problems.push(problem);
            } else {
                out.warnings.push(problem);
            }
            skip(out, format!("{field}: {message}"));
            return;
        }
    };

    let mut knobs = entry.knobs();
    let mut tool_timeouts = entry.tool_timeouts.clone();
    if let Some(overlay) = &overlay {
        knobs = overlay.knobs().or(knobs);
        tool_timeouts.extend(overlay.tool_timeouts.clone());
    }
    let knobs = knobs.or(out.config.mcp.knobs());
    let tool_timeouts = tool_timeouts.into_iter().map(|(k, v)| (k, v.0)).collect();
    out.servers.push(ServerSpec {
        settings: ServerSettings::resolve(&transport, knobs, tool_timeouts),
        name,
        source,
        transport,
    });
}

/// The key path of the servers object in a file of `scope`, for messages.
fn servers_key(scope: &Scope) -> String {
    match scope {
        Scope::Config => "servers".to_owned(),
        Scope::ClaudeLocal { project } => format!(
            "projects.{}.mcpServers",
            quote_key(&project.to_string_lossy())
        ),
        Scope::Codex | Scope::CodexProject => "mcp_servers".to_owned(),
        Scope::VsCodeWorkspace | Scope::VsCodeUser => "servers".to_owned(),
        _ => "mcpServers".to_owned(),
    }
}

/// The name of tmux-agent's own MCP server.
pub const BUILTIN: &str = "builtin";

/// The built-in server's default `concurrency`: the daemon's dispatcher
/// keeps this many calls of different sessions in flight to it.
pub const BUILTIN_CONCURRENCY: usize = 8;

/// Adds the built-in server: this binary, run as `tmux-agent mcp serve`
/// over stdio. `[servers.builtin]` without a transport tunes it.
fn add_builtin(out: &mut Discovered, overlay: Option<ServerEntry>) {
    let command = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "tmux-agent".to_owned());
    let transport = TransportSpec::Stdio(StdioSpec {
        command: command.clone(),
        args: vec!["mcp".into(), "serve".into()],
        env: BTreeMap::new(),
        cwd: None,
    });
    let (knobs, tool_timeouts) = match &overlay {
        Some(entry) => (
            entry.knobs(),
            entry
                .tool_timeouts
                .iter()
                .map(|(k, v)| (k.clone(), v.0))
                .collect(),
        ),
        None => (Default::default(), BTreeMap::new()),
    };
    let mut knobs = knobs.or(out.config.mcp.knobs());
    // Unlike a generic stdio server, the built-in one takes concurrent
    // calls safely: its writes are serialized on one SQLite connection,
    // each in an IMMEDIATE transaction with its idempotency check (a
    // repeat in flight alongside the first answers from the ledger).
    knobs.concurrency.get_or_insert(BUILTIN_CONCURRENCY);
    out.servers.push(ServerSpec {
        settings: ServerSettings::resolve(&transport, knobs, tool_timeouts),
        name: BUILTIN.to_owned(),
        source: Source {
            file: PathBuf::from(command),
            scope: Scope::Builtin,
        },
        transport,
    });
}

fn base_dir(file: &Path) -> &Path {
    file.parent().unwrap_or(Path::new("/"))
}

/// Why an entry cannot be run.
enum Unusable {
    /// A `${VAR}` without a value: skipped with a warning.
    Unset { field: String, error: ExpandError },
    /// The entry itself is wrong or unsupported.
    Invalid { field: String, message: String },
}

fn build_transport(
    entry: &ServerEntry,
    lookup: &dyn Fn(&str) -> Option<String>,
    base: &Path,
    home: &Path,
) -> Result<TransportSpec, Unusable> {
    let expand_field = |field: &str, text: &str| {
        expand(text, lookup).map_err(|error| match error {
            ExpandError::Unset(_) => Unusable::Unset {
                field: field.to_string(),
                error,
            },
            other => Unusable::Invalid {
                field: field.to_string(),
                message: other.to_string(),
            },
        })
    };
    let invalid = |field: &str, message: &str| Unusable::Invalid {
        field: field.to_string(),
        message: message.to_string(),
    };
    let path = |field: &str, text: &str| -> Result<PathBuf, Unusable> {
        let text = expand_field(field, text)?;
        let path = match text.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => PathBuf::from(text),
        };
        Ok(if path.is_absolute() {
            path
        } else {
            base.join(path)
        })
    };

    let stdio = |entry: &ServerEntry| -> Result<StdioSpec, Unusable> {
        let command = entry
            .command
            .as_deref()
            .ok_or_else(|| invalid("command", "a stdio server needs `command`"))?;
        if command.trim().is_empty() {
            return Err(invalid("command", "is empty"));
        }
        Ok(StdioSpec {
            command: expand_field("command", command)?,
            args: entry
                .args
                .iter()
                .enumerate()
                .map(|(i, a)| expand_field(&format!("args[{i}]"), a))
                .collect::<Result<_, _>>()?,
            env: entry
                .env
                .iter()
                .map(|(k, v)| Ok((k.clone(), expand_field(&format!("env.{k}"), v)?)))
                .collect::<Result<_, _>>()?,
            cwd: entry.cwd.as_deref().map(|c| path("cwd", c)).transpose()?,
        })
    };

    let kind = match entry.kind.as_deref() {
        Some(kind) => kind.to_ascii_lowercase(),
        None if entry.socket.is_some() => "unix".into(),
        None if entry.command.is_some() && entry.url.is_some() => {
            return Err(invalid(
                "type",
                "both `command` and `url` are set: add type = \"stdio\" or type = \"http\"",
            ));
        }
        None if entry.url.is_some() => "http".into(),
        None => "stdio".into(),
    };
    match kind.as_str() {
        "stdio" => Ok(TransportSpec::Stdio(stdio(entry)?)),
        "http" | "streamable-http" | "streamable_http" | "streamablehttp" => {
            let url = entry
                .url
                .as_deref()
                .ok_or_else(|| invalid("url", "an http server needs `url`"))?;
            let url = expand_field("url", url)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("url", "expected an http:// or https:// URL"));
            }
            let headers = entry
                .headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), expand_field(&format!("headers.{k}"), v)?)))
                .collect::<Result<_, _>>()?;
            Ok(TransportSpec::Http { url, headers })
        }
        "unix" | "socket" => {
            let socket = entry
                .socket
                .as_deref()
                .ok_or_else(|| invalid("socket", "a unix server needs `socket` (a path)"))?;
            let fallback = if entry.command.is_some() {
                Some(stdio(entry)?)
            } else {
                None
            };
            Ok(TransportSpec::Unix {
                socket: path("socket", socket)?,
                fallback,
            })
        }
        "sse" => Err(invalid(
            "type",
            "the old HTTP+SSE transport is not supported (rmcp 3.9 has no SSE client); if the \
             server also speaks Streamable HTTP, set type = \"http\" and point url at its /mcp \
             endpoint",
        )),
        other => Err(invalid(
            "type",
            &format!("unknown transport `{other}`: expected stdio, http, unix or sse"),
        )),
    }
}
