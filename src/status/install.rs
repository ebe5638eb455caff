//! `hooks install|uninstall|status`: our entries in an agent's settings
//! file, merged in and taken out again without touching anything else.
//!
//! The three agents share one shape (Claude Code's, which Codex and Gemini
//! CLI adopted): `{"hooks": {"<Event>": [{"matcher": "...", "hooks":
//! [{"type": "command", "command": "...", "timeout": N}]}]}}`. We add one
//! matcher group of our own per event, holding one command, so that
//! uninstall can take out exactly that group; a group is ours when its
//! only hook's command is `<…>tmux-agent hook <agent>`.
//!
//! The file is read with key order kept (serde_json's `preserve_order`)
//! and written back pretty-printed with two-space indents and a final
//! newline, which is how Claude Code and Gemini CLI write theirs: so a
//! file they wrote comes back byte for byte after install and uninstall.
//! An event list or the `hooks` object that our removal leaves empty is
//! removed too. A file that is not a JSON object is refused, never
//! rewritten. Every write keeps the previous file as `<file>.bak` and
//! goes through a temporary file and a rename.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::model::AgentKind;

/// Why a settings file was not changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "{path} is not valid JSON ({reason}); fix or move it, then run this again (nothing was written)"
    )]
    Unparsable { path: PathBuf, reason: String },
    #[error("{path} is JSON but not an object; refusing to change it (nothing was written)")]
    NotAnObject { path: PathBuf },
    #[error("{path}: \"hooks\" is not an object; refusing to change it (nothing was written)")]
    HooksNotAnObject { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where a settings file is: the user's, or the project's (the current
/// directory's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    Project,
}

/// One agent's hooks as tmux-agent installs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSet {
    pub agent: AgentKind,
    /// The events we listen to, in the order they are written.
    pub events: &'static [&'static str],
    /// The `timeout` value: Claude and Codex count seconds, Gemini
    /// milliseconds.
    pub timeout: u64,
    /// Gemini names each hook (`name`), for its logs and `/hooks`.
    pub named: bool,
}

/// The hook's own time limit, generous: it finishes in milliseconds, and
/// the agent kills it at this point anyway.
const TIMEOUT_SECS: u64 = 5;

impl HookSet {
    /// The hooks for `agent`; `None` for an agent without hooks.
    pub fn for_agent(agent: &AgentKind) -> Option<Self> {
        let (events, timeout, named): (&'static [&'static str], u64, bool) = match agent {
            AgentKind::Claude => (
                &[
                    "SessionStart",
                    "UserPromptSubmit",
                    "PreToolUse",
                    "PostToolUse",
                    "PermissionRequest",
                    "Notification",
                    "Stop",
                    "StopFailure",
                    "SubagentStop",
                    "SessionEnd",
                ],
                TIMEOUT_SECS,
                false,
            ),
            AgentKind::Codex => (
                &[
                    "SessionStart",
                    "UserPromptSubmit",
                    "PreToolUse",
                    "PermissionRequest",
                    "PostToolUse",
                    "Stop",
                ],
                TIMEOUT_SECS,
                false,
            ),
            AgentKind::Gemini => (
                &[
                    "SessionStart",
                    "BeforeAgent",
                    "BeforeTool",
                    "AfterTool",
                    "Notification",
                    "AfterAgent",
                    "SessionEnd",
                ],
                TIMEOUT_SECS * 1000,
                true,
            ),
            _ => return None,
        };
        Some(Self {
            agent: agent.clone(),
            events,
            timeout,
            named,
        })
    }

    /// The settings file for `scope`: `home` is the user's home directory,
    /// `project` the project's root.
    pub fn file(&self, scope: Scope, home: &Path, project: &Path) -> PathBuf {
        let (dir, name) = match self.agent {
            AgentKind::Codex => (".codex", "hooks.json"),
            AgentKind::Gemini => (".gemini", "settings.json"),
            _ => (".claude", "settings.json"),
        };
        match (scope, &self.agent) {
            // Codex keeps its home in $CODEX_HOME when set.
            (Scope::User, AgentKind::Codex) => std::env::var_os("CODEX_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(dir))
                .join(name),
            (Scope::User, _) => home.join(dir).join(name),
            (Scope::Project, _) => project.join(dir).join(name),
        }
    }

    /// Our matcher group for one event, running `binary`.
    fn group(&self, binary: &str) -> Value {
        let mut hook = Map::new();
        if self.named {
            hook.insert("name".into(), json!("tmux-agent"));
        }
        hook.insert("type".into(), json!("command"));
        hook.insert(
            "command".into(),
            json!(format!("{binary} hook {}", self.agent.as_str())),
        );
        hook.insert("timeout".into(), json!(self.timeout));
        json!({ "hooks": [Value::Object(hook)] })
    }

    /// Whether a matcher group is one we wrote (for any binary path).
    fn is_ours(&self, group: &Value) -> bool {
        let Some(hooks) = group.get("hooks").and_then(Value::as_array) else {
            return false;
        };
        let [hook] = hooks.as_slice() else {
            return false;
        };
        let Some(command) = hook.get("command").and_then(Value::as_str) else {
            return false;
        };
        let suffix = format!(" hook {}", self.agent.as_str());
        command
            .strip_suffix(&suffix)
            .is_some_and(|binary| binary.ends_with("tmux-agent"))
    }
}

/// What an install or uninstall did to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub path: PathBuf,
    /// The events whose entry was added (install) or removed (uninstall).
    pub events: Vec<String>,
    /// Where the previous file was kept, when there was one and it changed.
    pub backup: Option<PathBuf>,
}

/// What `hooks status` reports for a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Installed {
    pub path: PathBuf,
    pub exists: bool,
    /// Our events found there.
    pub events: Vec<String>,
    /// Our events missing (all of them when nothing is installed).
    pub missing: Vec<String>,
}

/// Adds our group to every event of `set` that lacks one.
pub fn install(set: &HookSet, path: &Path, binary: &str) -> Result<Edit, InstallError> {
    let original = read(path)?;
    let mut settings = match &original {
        Some(text) => parse(path, text)?,
        None => Map::new(),
    };
    let hooks = settings
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(hooks) = hooks else {
        return Err(InstallError::HooksNotAnObject { path: path.into() });
    };
    let mut added = Vec::new();
    for event in set.events {
        let groups = hooks
            .entry(*event)
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(groups) = groups else {
            // Someone else's odd value: left as it is.
            continue;
        };
        if groups.iter().any(|g| set.is_ours(g)) {
            continue;
        }
        groups.push(set.group(binary));
        added.push((*event).to_owned());
    }
    let backup = if added.is_empty() {
        None
    } else {
        write(path, original.as_deref(), &settings)?
    };
    Ok(Edit {
        path: path.into(),
        events: added,
        backup,
    })
}

/// Removes our groups, and the lists and `hooks` object left empty.
pub fn uninstall(set: &HookSet, path: &Path) -> Result<Edit, InstallError> {
    let Some(original) = read(path)? else {
        return Ok(Edit {
            path: path.into(),
            events: Vec::new(),
            backup: None,
        });
    };
    let mut settings = parse(path, &original)?;
    let mut removed = Vec::new();
    if let Some(Value::Object(hooks)) = settings.get_mut("hooks") {
        for event in set.events {
            let Some(Value::Array(groups)) = hooks.get_mut(*event) else {
                continue;
            };
            let before = groups.len();
            groups.retain(|g| !set.is_ours(g));
            if groups.len() != before {
                removed.push((*event).to_owned());
            }
            if groups.is_empty() && before != 0 {
                hooks.shift_remove(*event);
            }
        }
        if hooks.is_empty() && !removed.is_empty() {
            settings.shift_remove("hooks");
        }
    }
    let backup = if removed.is_empty() {
        None
    } else {
        write(path, Some(&original), &settings)?
    };
    Ok(Edit {
        path: path.into(),
        events: removed,
        backup,
    })
}

/// Which of our events `path` has.
pub fn status(set: &HookSet, path: &Path) -> Result<Installed, InstallError> {
    let text = read(path)?;
    let settings = match &text {
        Some(text) => parse(path, text)?,
        None => Map::new(),
    };
    let hooks = settings.get("hooks").and_then(Value::as_object);
    let (events, missing) = set.events.iter().partition::<Vec<&str>, _>(|event| {
        hooks
            .and_then(|h| h.get(**event))
            .and_then(Value::as_array)
            .is_some_and(|groups| groups.iter().any(|g| set.is_ours(g)))
    });
    Ok(Installed {
        path: path.into(),
        exists: text.is_some(),
        events: events.into_iter().map(str::to_owned).collect(),
        missing: missing.into_iter().map(str::to_owned).collect(),
    })
}

fn read(path: &Path) -> Result<Option<String>, InstallError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InstallError::Io {
            what: "reading",
            path: path.into(),
            source,
        }),
    }
}

fn parse(path: &Path, text: &str) -> Result<Map<String, Value>, InstallError> {
    // An empty file is an empty object (a fresh install may leave one).
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(InstallError::NotAnObject { path: path.into() }),
        Err(err) => Err(InstallError::Unparsable {
            path: path.into(),
            reason: err.to_string(),
        }),
    }
}

/// Writes `settings` over `path` (keeping `original` as `<path>.bak`);
/// returns the backup's path, if one was written.
fn write(
    path: &Path,
    original: Option<&str>,
    settings: &Map<String, Value>,
) -> Result<Option<PathBuf>, InstallError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Io { what, path, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let backup = match original {
        Some(original) => {
            let backup = backup_path(path);
            std::fs::write(&backup, original).map_err(io("writing", &backup))?;
            Some(backup)
        }
        None => None,
    };
    let mut text = serde_json::to_string_pretty(settings).map_err(|err| InstallError::Io {
        what: "encoding",
        path: path.into(),
        source: std::io::Error::other(err),
    })?;
    text.push('\n');
    let temporary = path.with_extension("json.tmux-agent-tmp");
    std::fs::write(&temporary, text).map_err(io("writing", &temporary))?;
    // The settings may hold secrets (env): keep the old file's mode.
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&temporary, meta.permissions());
    }
    std::fs::rename(&temporary, path).map_err(io("replacing", path))?;
    Ok(backup)
}

/// `<file>.bak`, next to the file.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claude() -> HookSet {
        HookSet::for_agent(&AgentKind::Claude).unwrap()
    }

    /// A settings file as Claude Code writes one (`JSON.stringify(…, null,
    /// 2)`), with hooks, permissions and env of the user's own.
    const REALISTIC: &str = r#"{
  "$schema": "https://json.schemastore.org/claude-code-settings.json",
  "permissions": {
    "allow": [
      "Bash(npm run lint)",
      "Bash(npm run test:*)",
      "Read(~/.zshrc)"
    ],
    "deny": [
      "Read(./.env)",
      "Read(./secrets/**)"
    ]
  },
  "env": {
    "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
    "OTEL_METRICS_EXPORTER": "otlp"
  },
  "hooks": {
    "PreToolUse": [
      {
        "matcher": "Bash",
        "hooks": [
          {
            "type": "command",
            "command": "jq -r '.tool_input.command' >> ~/.claude/bash-log.txt"
          }
        ]
      }
    ],
    "Stop": [
      {
        "hooks": [
          {
            "type": "command",
            "command": "notify-send 'Claude is done'",
            "timeout": 10
          }
        ]
      }
    ]
  },
  "model": "opus",
  "includeCoAuthoredBy": false
}
"#;

    #[test]
    fn install_then_uninstall_gives_the_file_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, REALISTIC).unwrap();
        let edit = install(&claude(), &path, "tmux-agent").unwrap();
        assert_eq!(edit.events.len(), claude().events.len());
        assert_eq!(
            std::fs::read_to_string(edit.backup.unwrap()).unwrap(),
            REALISTIC
        );
        let installed = std::fs::read_to_string(&path).unwrap();
        // Theirs first, in their order, ours after.
        assert!(
            installed.find("bash-log").unwrap() < installed.find("tmux-agent hook claude").unwrap()
        );
        assert!(installed.starts_with("{\n  \"$schema\""), "{installed}");
        // Twice is once.
        assert!(
            install(&claude(), &path, "tmux-agent")
                .unwrap()
                .events
                .is_empty()
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), installed);
        let state = status(&claude(), &path).unwrap();
        assert!(state.missing.is_empty());
        let removed = uninstall(&claude(), &path).unwrap();
        assert_eq!(removed.events.len(), claude().events.len());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), REALISTIC);
        assert!(uninstall(&claude(), &path).unwrap().events.is_empty());
    }

    #[test]
    fn a_missing_file_is_created_and_removed_down_to_an_empty_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".claude/settings.json");
        let edit = install(&claude(), &path, "/opt/bin/tmux-agent").unwrap();
        assert_eq!(edit.backup, None);
        let state = status(&claude(), &path).unwrap();
        assert!(state.exists && state.missing.is_empty());
        uninstall(&claude(), &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
    }

    #[test]
    fn files_that_are_not_a_json_object_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        for text in ["{ \"model\": ", "[1, 2]", "{\"hooks\": []}"] {
            std::fs::write(&path, text).unwrap();
            let err = install(&claude(), &path, "tmux-agent").unwrap_err();
            assert!(err.to_string().contains("nothing was written"), "{err}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
            assert!(!backup_path(&path).exists());
        }
    }

    #[test]
    fn only_our_own_groups_count_as_ours() {
        let set = claude();
        assert!(set.is_ours(&set.group("tmux-agent")));
        assert!(set.is_ours(&set.group("/home/me/.cargo/bin/tmux-agent")));
        assert!(
            !set.is_ours(
                &json!({"hooks": [{"type": "command", "command": "tmux-agent hook codex"}]})
            )
        );
        assert!(!set.is_ours(&json!({"hooks": [
            {"type": "command", "command": "tmux-agent hook claude"},
            {"type": "command", "command": "my-logger"}
        ]})));
        let gemini = HookSet::for_agent(&AgentKind::Gemini).unwrap();
        assert_eq!(gemini.group("tmux-agent")["hooks"][0]["timeout"], 5000);
        assert_eq!(gemini.group("tmux-agent")["hooks"][0]["name"], "tmux-agent");
        assert!(HookSet::for_agent(&AgentKind::Aider).is_none());
    }
}
