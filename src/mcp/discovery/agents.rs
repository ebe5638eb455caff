//! The MCP servers other agents' users already have: Codex CLI, Gemini CLI,
//! Cursor and VS Code. Read after Claude's files, in this order (the first
//! definition of a name wins, as everywhere in discovery):
//!
//! 1. Codex CLI: `$CODEX_HOME/config.toml` (default `~/.codex/config.toml`),
//!    `[mcp_servers.NAME]` with `command`, `args`, `env`, `cwd` or `url`,
//!    `bearer_token_env_var`, `http_headers`, `env_http_headers`,
//!    `enabled`;
//! 2. Gemini CLI: the project's `.gemini/settings.json`, then
//!    `~/.gemini/settings.json`, `mcpServers` with `command`/`args`/`env`/
//!    `cwd`, `httpUrl` (Streamable HTTP) or `url` (SSE in Gemini, which
//!    tmux-agent does not speak), `headers`;
//! 3. Cursor: the project's `.cursor/mcp.json`, then `~/.cursor/mcp.json`,
//!    `mcpServers` as in Claude's files;
//! 4. VS Code: the workspace's `.vscode/mcp.json`, `servers` (with `type`),
//!    and `inputs`, whose `${input:ID}` values VS Code asks the user for:
//!    tmux-agent cannot ask, so a server using one is skipped, saying so.
//!
//! "The project's" file is the nearest one from the working directory up,
//! not counting the home directory (where the same path is the user's own
//! file). Project files come with a repository, so their servers run only
//! once approved in our config (`[servers.NAME] enabled = true` or `[mcp]
//! trust_project_servers = true`), as for `.mcp.json`. Cursor's and VS
//! Code's `${env:NAME}`, `${userHome}` and `${workspaceFolder}` are
//! translated; `$CODEX_HOME` is honoured. Formats as documented by each
//! project in 2026 (Codex config reference, Gemini CLI `mcp-server.md`,
//! Cursor's MCP docs, VS Code's MCP configuration reference).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Candidate, Discovered, entries_from_json, read_json};
use crate::config::{Problem, ServerEntry};
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

impl Dialect {
    /// Rewrites the editor variables of Cursor and VS Code in every string
    /// of an entry into ours (`${env:X}` → `${X}`) or their value.
    pub(super) fn translate(self, value: &Value, file: &Path) -> Result<Value, FieldError> {
        if !matches!(self, Dialect::Cursor | Dialect::VsCode) {
            return Ok(value.clone());
        }
        // `<workspace>/.vscode/mcp.json` → `<workspace>`.
        let workspace = file
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"));
        translate_value(value, "", workspace)
    }

    /// Reads a field this dialect spells its own way; `Ok(false)` leaves it
    /// to the common reader.
    pub(super) fn read_field(
        self,
        field: &str,
        v: &Value,
        entry: &mut ServerEntry,
    ) -> Result<bool, FieldError> {
        let string = || {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| (field.to_owned(), "expected a string".to_owned()))
        };
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
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Fields that change nothing about how to reach the server.
    pub(super) fn harmless(self, field: &str) -> bool {
        match self {
            Dialect::Claude => false,
            Dialect::Codex => matches!(
                field,
                "startup_timeout_sec"
                    | "startup_timeout_ms"
                    | "tool_timeout_sec"
                    | "enabled_tools"
                    | "disabled_tools"
                    | "env_vars"
                    | "required"
            ),
            Dialect::Gemini => matches!(
                field,
                "trust" | "includeTools" | "excludeTools" | "extensionName"
            ),
            Dialect::Cursor | Dialect::VsCode => false,
        }
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

fn translate_value(value: &Value, path: &str, workspace: &Path) -> Result<Value, FieldError> {
    let child = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    Ok(match value {
        Value::String(text) => {
            Value::String(translate_text(text, workspace).map_err(|m| (path.to_owned(), m))?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| translate_value(item, &format!("{path}[{i}]"), workspace))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), translate_value(v, &child(k), workspace)?)))
                .collect::<Result<_, FieldError>>()?,
        ),
        other => other.clone(),
    })
}

/// `${env:X}` → `${X}` (expanded later like any variable), `${userHome}` →
/// `${HOME}`, `${workspaceFolder}` → the workspace; `${input:ID}` cannot be
/// answered without VS Code's prompt.
fn translate_text(text: &str, workspace: &Path) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
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
                    out.push_str(&workspace.to_string_lossy());
                }
                "workspaceFolderBasename" => out.push_str(
                    &workspace
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

/// Appends the servers of Codex, Gemini, Cursor and VS Code files, in
/// precedence order.
pub(super) fn read_agents(
    input: &super::DiscoveryInput,
    out: &mut Discovered,
    candidates: &mut Vec<Candidate>,
) {
    let codex_home = match input.var("CODEX_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => input.home.join(".codex"),
    };
    read_codex(&codex_home.join("config.toml"), out, candidates);

    let json_files = [
        (
            project_file(&input.cwd, &input.home, ".gemini/settings.json"),
            Scope::GeminiProject,
            "mcpServers",
            Dialect::Gemini,
        ),
        (
            Some(input.home.join(".gemini/settings.json")),
            Scope::GeminiUser,
            "mcpServers",
            Dialect::Gemini,
        ),
        (
            project_file(&input.cwd, &input.home, ".cursor/mcp.json"),
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
            project_file(&input.cwd, &input.home, ".vscode/mcp.json"),
            Scope::VsCodeWorkspace,
            "servers",
            Dialect::VsCode,
        ),
    ];
    for (file, scope, key, dialect) in json_files {
        let Some(file) = file else { continue };
        let Some(value) = read_json(&file, out, false) else {
            continue;
        };
        entries_from_json(&file, scope, key, value.get(key), dialect, out, candidates);
    }
}

/// Codex's TOML: converted to JSON values so one reader handles every file.
fn read_codex(file: &Path, out: &mut Discovered, candidates: &mut Vec<Candidate>) {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
        Err(err) => {
            out.warnings.push(Problem::new(
                file,
                "-",
                format!("cannot read the file: {err}"),
            ));
            return;
        }
    };
    let table: toml::Table = match toml::from_str(&text) {
        Ok(table) => table,
        Err(err) => {
            let message = err.message().to_owned();
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
                format!("not valid TOML{at}: {message}; its servers are not read"),
            ));
            return;
        }
    };
    out.files_read.push(file.to_path_buf());
    let servers = table
        .get("mcp_servers")
        .and_then(|v| serde_json::to_value(v).ok());
    entries_from_json(
        file,
        Scope::Codex,
        "mcp_servers",
        servers.as_ref(),
        Dialect::Codex,
        out,
        candidates,
    );
}
