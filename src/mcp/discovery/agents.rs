//! The MCP servers other agents' users already have: Codex CLI, Gemini CLI,
//! Cursor and VS Code. Read after Claude's files, in this order (the first
//! definition of a name wins, as everywhere in discovery):
//!
//! 1. Codex CLI: every project `.codex/config.toml` from the working
//!    directory up to the project root (the nearest first), then
//!    `$CODEX_HOME/config.toml` (default `~/.codex/config.toml`);
//! 2. Gemini CLI: the working directory's `.gemini/settings.json`, then
//!    `~/.gemini/settings.json`, `mcpServers`;
//! 3. Cursor: the project's `.cursor/mcp.json`, then `~/.cursor/mcp.json`,
//!    `mcpServers`;
//! 4. VS Code: the workspace's `.vscode/mcp.json`, then the user profile's
//!    `mcp.json` (`$XDG_CONFIG_HOME/Code/User/` or `~/.config/Code/User/` on
//!    Linux, `~/Library/Application Support/Code/User/` on macOS),
//!    `servers` (with `type`) and `inputs`.
//!
//! Formats, as each project documents (and, where noted, implements) them
//! in 2026:
//!
//! - **Codex** (developers.openai.com/codex/config-reference and
//!   config-advanced; `RawMcpServerConfig` in codex-rs): `[mcp_servers.NAME]`
//!   with `command`, `args`, `env`, `cwd` (relative to the file's `.codex/`
//!   folder) or `url`, `bearer_token_env_var`, `http_headers`,
//!   `env_http_headers`; `enabled = false` turns one off;
//!   `startup_timeout_sec`/`_ms` is our `connect_timeout` and
//!   `tool_timeout_sec` our `call_timeout`. `env_vars` names variables to
//!   pass through from Codex's environment: tmux-agent passes its whole
//!   environment to a server, so they reach it already. `required = true`
//!   is warned about (tmux-agent does not refuse to start). `enabled_tools` /
//!   `disabled_tools` are read and warned about (tmux-agent does not filter
//!   tools: it calls only those its templates name). Other keys (`oauth`,
//!   `scopes`, an inline `bearer_token`, ...) are warned about by key path.
//!   Project files: Codex walks from the project root (the nearest ancestor
//!   holding one of `project_root_markers`, default `.git`) down to the
//!   working directory and loads each `.codex/config.toml`, the closest
//!   winning, **only when the project is trusted**: `[projects."<dir>"]
//!   trust_level = "trusted"` in the user file, `<dir>` being the working
//!   directory or else the repository root (the main checkout's, for a
//!   linked worktree). Codex's trust is the approval tmux-agent honours for
//!   those servers, beside its own (`[servers.NAME] enabled = true`,
//!   `trust_project_servers`). Codex merges its layers key by key; here, as
//!   for every file, a server is taken whole from the nearest file that
//!   defines it.
//! - **Gemini CLI** (docs/tools/mcp-server.md; `envVarResolver.ts`):
//!   `command`/`args`/`env`/`cwd`, `httpUrl` (Streamable HTTP) or `url` (SSE
//!   in Gemini, which tmux-agent does not speak), `headers`; `timeout`
//!   (milliseconds) is our `call_timeout`; `trust` only skips Gemini's own
//!   confirmation prompt (tmux-agent has none), `includeTools` /
//!   `excludeTools` are warned about as Codex's lists are. Gemini resolves
//!   `$VAR` and `${VAR}` in every string of its settings; both are expanded
//!   here, with our rule for an unset variable (the server is skipped with a
//!   warning; Gemini would pass the placeholder on as text). Gemini has no
//!   per-server env file: it loads a `.env` into its own environment, which
//!   tmux-agent does not. Its workspace file is the working directory's
//!   only (Gemini does not look in parent directories), and with
//!   `security.folderTrust.enabled` Gemini reads it only in a folder
//!   trusted in `~/.gemini/trustedFolders.json`: that trust approves its
//!   servers here, as Codex's does (see [`gemini_trust`]). A relative
//!   `cwd` is taken from the settings file's directory (Gemini hands it to
//!   the process it spawns, so it is relative to wherever Gemini was
//!   started; the daemon has no such place).
//! - **Cursor** (cursor.com/docs MCP): `mcpServers` as in Claude's files,
//!   `envFile` (stdio), and `${env:NAME}`, `${userHome}`,
//!   `${workspaceFolder}`, `${workspaceFolderBasename}`, `${pathSeparator}`
//!   / `${/}` in `command`, `args`, `env`, `url` and `headers`.
//! - **VS Code** (code.visualstudio.com MCP configuration reference):
//!   `servers` with `type` `stdio`/`http`/`sse`, `envFile`, the same
//!   variables, and `inputs`, whose `${input:ID}` values VS Code asks the
//!   user for: tmux-agent cannot ask, so a server using one is skipped,
//!   naming it. Since VS Code 1.102 servers live in `mcp.json`, not in the
//!   `mcp` section of the user `settings.json` (VS Code moves that section
//!   into `mcp.json`); a `settings.json` still holding one gets a warning.
//!
//! VS Code, Cursor and Gemini files may hold comments (JSONC); they are
//! read as such. "The project's" file is the nearest one from the working
//! directory up, not counting the home directory (where the same path is the
//! user's own file). Project files come with a repository, so their servers
//! run only once approved (see [`super::discover`]). `${workspaceFolder}` in
//! a user-level file, which has no workspace, skips the server, saying so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{
    Candidate, Discovered, DiscoveryInput, Ignored, Origin, Syntax, entries_from_json, read_json_as,
};
use crate::config::{ConfigDuration, Problem, ServerEntry};
use crate::mcp::expand::expand;
use crate::mcp::spec::Scope;

/// Whose file an entry comes from: the fields and variables differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Claude,
    Codex,
    Gemini,
    Cursor,
    VsCode,
}

type FieldError = (String, String);

/// What reading one entry may need beyond the entry itself.
pub(super) struct EntryContext<'a> {
    /// The file holding the entry.
    pub file: &'a Path,
    /// The folder `${workspaceFolder}` names, when the file has one.
    pub workspace: Option<&'a Path>,
    pub input: &'a DiscoveryInput,
}

/// The warning for a tool filter tmux-agent reads but does not apply.
const NO_TOOL_FILTER: &str = "not applied: tmux-agent does not filter a server's tools (it calls \
     only the tools your [[on.*]] templates name); ignored";

impl Dialect {
    /// Rewrites the variables of a dialect in every string of an entry into
    /// ours (`${env:X}` and Gemini's `$X` → `${X}`, expanded later like any
    /// variable) or their value.
    pub(super) fn translate(
        self,
        value: &Value,
        context: &EntryContext<'_>,
    ) -> Result<Value, FieldError> {
        match self {
            Dialect::Cursor | Dialect::VsCode => {
                map_strings(value, "", &|text| editor_variables(text, context.workspace))
            }
            Dialect::Gemini => map_strings(value, "", &|text| Ok(gemini_variables(text))),
            Dialect::Claude | Dialect::Codex => Ok(value.clone()),
        }
    }

    /// Reads a field this dialect spells its own way; `Ok(false)` leaves it
    /// to the common reader. A field read but not acted on goes to `ignored`
    /// with why.
    pub(super) fn read_field(
        self,
        field: &str,
        v: &Value,
        entry: &mut ServerEntry,
        ignored: &mut Vec<Ignored>,
    ) -> Result<bool, FieldError> {
        let string = || {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| (field.to_owned(), "expected a string".to_owned()))
        };
        let seconds = |scale: f64| -> Result<ConfigDuration, FieldError> {
            v.as_f64()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| ConfigDuration(Duration::from_secs_f64(n * scale)))
                .ok_or_else(|| (field.to_owned(), "expected a number ≥ 0".to_owned()))
        };
        let mut ignore = |why: &str| ignored.push((field.to_owned(), why.to_owned()));
        match (self, field) {
            (Dialect::Gemini, "httpUrl") => {
                entry.url = Some(string()?);
                entry.kind.get_or_insert_with(|| "http".into());
            }
            (Dialect::Gemini, "url") => {
                entry.url = Some(string()?);
                // Gemini reads a bare `url` as the old SSE transport.
                entry.kind.get_or_insert_with(|| "sse".into());
            }
            // Milliseconds for one request: our call timeout.
            (Dialect::Gemini, "timeout") => entry.call_timeout = Some(seconds(0.001)?),
            (Dialect::Gemini, "includeTools" | "excludeTools") => ignore(NO_TOOL_FILTER),
            // `trust` only skips Gemini's own confirmation prompts.
            (Dialect::Gemini, "trust" | "extensionName" | "description") => {}
            (Dialect::Codex, "enabled") => {
                entry.enabled = Some(
                    v.as_bool()
                        .ok_or_else(|| (field.to_owned(), "expected true or false".to_owned()))?,
                );
            }
            (Dialect::Codex, "bearer_token_env_var") => {
                entry
                    .headers
                    .insert("Authorization".into(), format!("Bearer ${{{}}}", string()?));
            }
            (Dialect::Codex, "bearer_token") => ignore(
                "an inline token, which Codex itself refuses; name a variable holding it with \
                 `bearer_token_env_var` instead; ignored",
            ),
            (Dialect::Codex, "http_headers") => {
                for (name, value) in object_of_strings(field, v)? {
                    entry.headers.insert(name, value);
                }
            }
            (Dialect::Codex, "env_http_headers") => {
                for (name, var) in object_of_strings(field, v)? {
                    entry.headers.insert(name, format!("${{{var}}}"));
                }
            }
            (Dialect::Codex, "startup_timeout_sec") => entry.connect_timeout = Some(seconds(1.0)?),
            (Dialect::Codex, "startup_timeout_ms") => {
                entry.connect_timeout = Some(seconds(0.001)?);
            }
            (Dialect::Codex, "tool_timeout_sec") => entry.call_timeout = Some(seconds(1.0)?),
            (Dialect::Codex, "enabled_tools" | "disabled_tools") => ignore(NO_TOOL_FILTER),
            // Passed through from Codex's environment; ours passes its
            // whole environment.
            (Dialect::Codex, "env_vars") => {}
            (Dialect::Codex, "required") => {
                if v.as_bool() == Some(true) {
                    ignore(
                        "Codex will not start without this server; tmux-agent starts \
                         anyway and shows the server's state in `mcp servers`; ignored",
                    );
                }
            }
            // Read by `read_env_file` once every other field is in.
            (Dialect::Cursor | Dialect::VsCode, "envFile") => {}
            // VS Code's settings for debugging a server it runs.
            (Dialect::VsCode, "dev") => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Adds the variables of an `envFile` (a dotenv file, as Cursor and VS
    /// Code read it) to the entry's `env`; the entry's own `env` wins.
    pub(super) fn read_env_file(
        self,
        value: &Value,
        entry: &mut ServerEntry,
        context: &EntryContext<'_>,
    ) -> Result<(), FieldError> {
        if !matches!(self, Dialect::Cursor | Dialect::VsCode) {
            return Ok(());
        }
        let field = || "envFile".to_owned();
        let text = value
            .as_str()
            .ok_or_else(|| (field(), "expected a string".to_owned()))?;
        let lookup = |name: &str| context.input.var(name).map(str::to_owned);
        let text = expand(text, &lookup).map_err(|e| (field(), e.to_string()))?;
        let path = Path::new(&text);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            // Relative to the workspace, as the editors start servers there.
            context
                .workspace
                .or_else(|| context.file.parent())
                .unwrap_or(Path::new("/"))
                .join(path)
        };
        let vars = dotenvy::from_path_iter(&path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| (field(), format!("cannot read {}: {e}", path.display())))?;
        for (name, value) in vars {
            entry.env.entry(name).or_insert(value);
        }
        Ok(())
    }
}

fn object_of_strings(field: &str, v: &Value) -> Result<Vec<(String, String)>, FieldError> {
    let map = v
        .as_object()
        .ok_or_else(|| (field.to_owned(), "expected a table of strings".to_owned()))?;
    map.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), s.to_owned()))
                .ok_or_else(|| (format!("{field}.{k}"), "expected a string".to_owned()))
        })
        .collect()
}

/// Applies `rewrite` to every string in `value`, naming the key path of the
/// one that fails.
fn map_strings(
    value: &Value,
    path: &str,
    rewrite: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Value, FieldError> {
    let child = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    Ok(match value {
        Value::String(text) => Value::String(rewrite(text).map_err(|m| (path.to_owned(), m))?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| map_strings(item, &format!("{path}[{i}]"), rewrite))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), map_strings(v, &child(k), rewrite)?)))
                .collect::<Result<_, FieldError>>()?,
        ),
        other => other.clone(),
    })
}

/// Gemini's `$VAR` → `${VAR}`; `${...}` and a `$` not followed by a name
/// stay as written (Gemini's resolver: `\$(?:(\w+)|{([^}]+)})`, where a name
/// that no variable has is left alone, as `$5` is here).
fn gemini_variables(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let name_len = after
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map_or(after.len(), |(i, _)| i);
        let starts_name = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if starts_name {
            out.push_str("${");
            out.push_str(&after[..name_len]);
            out.push('}');
            rest = &after[name_len..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Cursor's and VS Code's variables: `${env:X}` → `${X}` (expanded later
/// like any variable), `${userHome}` → `${HOME}`, `${workspaceFolder}` →
/// the workspace; `${input:ID}` cannot be answered without VS Code's
/// prompt.
fn editor_variables(text: &str, workspace: Option<&Path>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let workspace = |name: &str| {
        workspace.ok_or_else(|| {
            format!(
                "`${{{name}}}` in a user-level file, which has no workspace folder: write the \
                 path out, or define the server in the project's own file"
            )
        })
    };
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        match name.split_once(':') {
            Some(("env", var)) => out.push_str(&format!("${{{var}}}")),
            Some(("input", id)) => {
                return Err(format!(
                    "uses `${{input:{id}}}`, a value VS Code asks for when it starts the server; \
                     tmux-agent cannot ask: define the server in tmux-agent's config.toml with \
                     the value (or `${{VAR}}`)"
                ));
            }
            Some((kind, _)) => {
                return Err(format!(
                    "`${{{name}}}`: the editor variable `{kind}:` is not supported"
                ));
            }
            None => match name {
                "userHome" => out.push_str("${HOME}"),
                "workspaceFolder" | "workspaceRoot" => {
                    out.push_str(&workspace(name)?.to_string_lossy());
                }
                "workspaceFolderBasename" => out.push_str(
                    &workspace(name)?
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                "pathSeparator" | "/" => out.push('/'),
                // Any other name is a plain variable, as in our own files.
                _ => out.push_str(&format!("${{{name}}}")),
            },
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The nearest `rel` from the working directory up, skipping the home
/// directory (where the same path is the user's file, read as such).
fn project_file(cwd: &Path, home: &Path, rel: &str) -> Option<PathBuf> {
    cwd.ancestors()
        .filter(|dir| *dir != home)
        .map(|dir| dir.join(rel))
        .find(|path| path.is_file())
}

/// The directory an editor's project file belongs to: `<dir>/.vscode/mcp.json`
/// → `<dir>`.
fn workspace_of(file: &Path) -> Option<PathBuf> {
    file.parent().and_then(Path::parent).map(Path::to_path_buf)
}

/// Whether an agent trusts the project of the working directory: for its
/// project files (`scope`), that trust is its approval.
#[derive(Debug, Clone)]
pub(super) struct ProjectTrust {
    pub scope: Scope,
    pub trusted: bool,
    /// How to give that trust, for the message of a server waiting for it.
    pub how: String,
}

/// Appends the servers of Codex, Gemini, Cursor and VS Code files, in
/// precedence order, and says whether Codex and Gemini trust the project.
pub(super) fn read_agents(
    input: &DiscoveryInput,
    out: &mut Discovered,
    candidates: &mut Vec<Candidate>,
) -> Vec<ProjectTrust> {
    let codex_home = match input.var("CODEX_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => input.home.join(".codex"),
    };
    let user_file = codex_home.join("config.toml");
    let user = read_toml(&user_file, out);
    let trust = codex_trust(input, user.as_ref(), &user_file);
    for file in codex_project_files(input, user.as_ref(), &user_file) {
        if let Some(table) = read_toml(&file, out) {
            codex_entries(&file, Scope::CodexProject, &table, input, out, candidates);
        }
    }
    if let Some(table) = &user {
        codex_entries(&user_file, Scope::Codex, table, input, out, candidates);
    }

    let gemini_user = input.home.join(".gemini/settings.json");
    let gemini_trust = gemini_trust(input, &gemini_user);
    let project = |rel: &str| project_file(&input.cwd, &input.home, rel);
    let json_files = [
        (
            gemini_workspace_file(input),
            Scope::GeminiProject,
            "mcpServers",
            Dialect::Gemini,
        ),
        (
            Some(gemini_user),
            Scope::GeminiUser,
            "mcpServers",
            Dialect::Gemini,
        ),
        (
            project(".cursor/mcp.json"),
            Scope::CursorProject,
            "mcpServers",
            Dialect::Cursor,
        ),
        (
            Some(input.home.join(".cursor/mcp.json")),
            Scope::CursorUser,
            "mcpServers",
            Dialect::Cursor,
        ),
        (
            project(".vscode/mcp.json"),
            Scope::VsCodeWorkspace,
            "servers",
            Dialect::VsCode,
        ),
        (
            Some(vscode_user_dir(input).join("mcp.json")),
            Scope::VsCodeUser,
            "servers",
            Dialect::VsCode,
        ),
    ];
    for (file, scope, key, dialect) in json_files {
        let Some(file) = file else { continue };
        let Some(value) = read_json_as(&file, Syntax::Jsonc, out, false) else {
            continue;
        };
        let mut origin = Origin::new(&file, scope.clone(), key, dialect);
        if scope.is_project_file() {
            origin.workspace = workspace_of(&file);
        }
        entries_from_json(origin, value.get(key), input, out, candidates);
    }
    warn_of_vscode_settings(input, out);
    vec![trust, gemini_trust]
}

/// Gemini CLI's workspace settings: `.gemini/settings.json` in the working
/// directory itself (Gemini's `loadSettings(process.cwd())` does not look
/// in parent directories), unless that is the user's own file.
fn gemini_workspace_file(input: &DiscoveryInput) -> Option<PathBuf> {
    let file = input.cwd.join(".gemini/settings.json");
    (input.cwd != input.home && file.is_file()).then_some(file)
}

/// Gemini CLI's folder trust: with `security.folderTrust.enabled` in the
/// user settings, Gemini reads a workspace's settings only in a trusted
/// folder, recorded in `~/.gemini/trustedFolders.json`
/// (`$GEMINI_CLI_TRUSTED_FOLDERS_PATH`) as `{"<dir>": "TRUST_FOLDER" |
/// "TRUST_PARENT" | "DO_NOT_TRUST"}`. As Gemini's `isPathTrusted`: a
/// `DO_NOT_TRUST` folder and everything in it is untrusted first, then a
/// `TRUST_FOLDER` folder (or a `TRUST_PARENT` folder's parent) and
/// everything in it is trusted. Without folder trust switched on Gemini
/// records no decision, so its project servers wait for ours.
fn gemini_trust(input: &DiscoveryInput, user_settings: &Path) -> ProjectTrust {
    let file = match input.var("GEMINI_CLI_TRUSTED_FOLDERS_PATH") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => input.home.join(".gemini/trustedFolders.json"),
    };
    let how = format!(
        "trust this folder in Gemini CLI (with `security.folderTrust.enabled` in {}, \
         `\"{}\": \"TRUST_FOLDER\"` in {})",
        user_settings.display(),
        input.cwd.display(),
        file.display()
    );
    let mut scratch = Discovered::default();
    let enabled = read_json_as(user_settings, Syntax::Jsonc, &mut scratch, false)
        .and_then(|s| s.pointer("/security/folderTrust/enabled")?.as_bool())
        .unwrap_or(false);
    let rules = if enabled {
        read_json_as(&file, Syntax::Jsonc, &mut scratch, false)
    } else {
        None
    };
    let rules: Vec<(PathBuf, &str)> = rules
        .as_ref()
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(path, level)| Some((PathBuf::from(path), level.as_str()?)))
        .collect();
    let within = |dir: &Path| input.cwd.starts_with(dir);
    let distrusted = rules
        .iter()
        .any(|(path, level)| *level == "DO_NOT_TRUST" && within(path));
    let trusted = !distrusted
        && rules.iter().any(|(path, level)| match *level {
            "TRUST_FOLDER" => within(path),
            "TRUST_PARENT" => path.parent().is_some_and(within),
            _ => false,
        });
    ProjectTrust {
        scope: Scope::GeminiProject,
        trusted,
        how,
    }
}

/// VS Code's user profile directory.
fn vscode_user_dir(input: &DiscoveryInput) -> PathBuf {
    if cfg!(target_os = "macos") {
        return input.home.join("Library/Application Support/Code/User");
    }
    let base = match input.var("XDG_CONFIG_HOME") {
        Some(dir) if Path::new(dir).is_absolute() => PathBuf::from(dir),
        _ => input.home.join(".config"),
    };
    base.join("Code/User")
}

/// An `mcp` section left in the user `settings.json`: VS Code 1.102 and
/// later read `mcp.json` instead (and move the section there), so this is
/// not read; say so rather than leave the servers silently missing.
fn warn_of_vscode_settings(input: &DiscoveryInput, out: &mut Discovered) {
    let settings = vscode_user_dir(input).join("settings.json");
    // A quick look first: settings.json is read only when it mentions MCP.
    let mentions = std::fs::read_to_string(&settings).is_ok_and(|t| t.contains("\"mcp\""));
    if !mentions {
        return;
    }
    let mut scratch = Discovered::default();
    if let Some(value) = read_json_as(&settings, Syntax::Jsonc, &mut scratch, false)
        && value.get("mcp").is_some_and(Value::is_object)
    {
        out.warnings.push(Problem::new(
            &settings,
            "mcp",
            format!(
                "not read: VS Code 1.102 and later keep MCP servers in {} (and move this \
                 section there when they start); move it there, or open VS Code once",
                settings.with_file_name("mcp.json").display()
            ),
        ));
    }
}

/// A Codex TOML file, or `None` (with a warning naming the file and the
/// line) when it is missing or malformed.
fn read_toml(file: &Path, out: &mut Discovered) -> Option<toml::Table> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            out.warnings.push(Problem::new(
                file,
                "-",
                format!("cannot read the file: {err}"),
            ));
            return None;
        }
    };
    match toml::from_str(&text) {
        Ok(table) => {
            out.files_read.push(file.to_path_buf());
            Some(table)
        }
        Err(err) => {
            let at = err
                .span()
                .map(|span| {
                    let line = text[..span.start].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            out.warnings.push(Problem::new(
                file,
                "-",
                format!(
                    "not valid TOML{at}: {}; its servers are not read",
                    err.message()
                ),
            ));
            None
        }
    }
}

/// Codex's `[mcp_servers]`, converted to JSON values so one reader handles
/// every file.
fn codex_entries(
    file: &Path,
    scope: Scope,
    table: &toml::Table,
    input: &DiscoveryInput,
    out: &mut Discovered,
    candidates: &mut Vec<Candidate>,
) {
    let servers = table
        .get("mcp_servers")
        .and_then(|v| serde_json::to_value(v).ok());
    entries_from_json(
        Origin::new(file, scope, "mcp_servers", Dialect::Codex),
        servers.as_ref(),
        input,
        out,
        candidates,
    );
}

/// Codex's project root for the working directory: the nearest ancestor
/// holding one of `project_root_markers` (default `.git`; an empty list
/// means the working directory itself), else the working directory.
fn codex_project_root(input: &DiscoveryInput, user: Option<&toml::Table>) -> PathBuf {
    let markers: Vec<String> = match user.and_then(|t| t.get("project_root_markers")) {
        Some(toml::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => vec![".git".to_owned()],
    };
    input
        .cwd
        .ancestors()
        .find(|dir| markers.iter().any(|m| dir.join(m).exists()))
        .unwrap_or(&input.cwd)
        .to_path_buf()
}

/// Every `.codex/config.toml` from the working directory up to the project
/// root, the nearest first; the user's own file is never one of them.
fn codex_project_files(
    input: &DiscoveryInput,
    user: Option<&toml::Table>,
    user_file: &Path,
) -> Vec<PathBuf> {
    let root = codex_project_root(input, user);
    let mut files = Vec::new();
    for dir in input.cwd.ancestors() {
        let file = dir.join(".codex/config.toml");
        if file != user_file && file.is_file() {
            files.push(file);
        }
        if dir == root {
            break;
        }
    }
    files
}

/// Codex's trust for the working directory: its own `[projects."<cwd>"]`
/// entry, else the repository root's (for a linked worktree, the main
/// checkout's, as Codex's `resolve_root_git_project_for_trust` does).
fn codex_trust(
    input: &DiscoveryInput,
    user: Option<&toml::Table>,
    user_file: &Path,
) -> ProjectTrust {
    let projects = user
        .and_then(|t| t.get("projects"))
        .and_then(|p| p.as_table());
    let level = |dir: &Path| -> Option<String> {
        projects?
            .iter()
            .find(|(key, _)| Path::new(key) == dir)
            .and_then(|(_, entry)| entry.get("trust_level")?.as_str().map(str::to_owned))
    };
    let repo = repository_for_trust(&input.cwd);
    let (project, level) = match level(&input.cwd) {
        Some(level) => (input.cwd.clone(), Some(level)),
        None => match &repo {
            Some(repo) => (repo.clone(), level(repo)),
            None => (input.cwd.clone(), None),
        },
    };
    ProjectTrust {
        scope: Scope::CodexProject,
        trusted: level.as_deref() == Some("trusted"),
        how: format!(
            "trust the project in Codex (`[projects.{}] trust_level = \"trusted\"` in {})",
            super::quote_key(&project.to_string_lossy()),
            user_file.display()
        ),
    }
}

/// The git work tree holding `cwd`; for a linked worktree (`.git` is a file
/// saying `gitdir: <main>/.git/worktrees/<name>`), the main checkout.
fn repository_for_trust(cwd: &Path) -> Option<PathBuf> {
    let root = cwd.ancestors().find(|dir| dir.join(".git").exists())?;
    let dot_git = root.join(".git");
    if dot_git.is_dir() {
        return Some(root.to_path_buf());
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let git_dir = root.join(text.trim().strip_prefix("gitdir:")?.trim());
    let worktrees = git_dir.parent()?;
    if worktrees.file_name()? != "worktrees" {
        return None;
    }
    Some(worktrees.parent()?.parent()?.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_dollar_names_become_braced_and_the_rest_stays() {
        assert_eq!(gemini_variables("$A/${B}/x$"), "${A}/${B}/x$");
        assert_eq!(
            gemini_variables("costs $5 or $_x1-y"),
            "costs $5 or ${_x1}-y"
        );
        assert_eq!(gemini_variables("${A:-d} $"), "${A:-d} $");
        assert_eq!(gemini_variables("ünïcode $Ä"), "ünïcode $Ä");
    }

    #[test]
    fn editor_variables_need_a_workspace_for_the_workspace_folder() {
        let ws = Path::new("/w/app");
        assert_eq!(
            editor_variables("${workspaceFolder}/a ${env:K} ${userHome}", Some(ws)).unwrap(),
            "/w/app/a ${K} ${HOME}"
        );
        assert_eq!(
            editor_variables("${workspaceFolderBasename}", Some(ws)).unwrap(),
            "app"
        );
        let err = editor_variables("${workspaceFolder}/a", None).unwrap_err();
        assert!(err.contains("no workspace folder"), "{err}");
        assert!(
            editor_variables("${input:key}", Some(ws))
                .unwrap_err()
                .contains("${input:key}")
        );
    }
}
