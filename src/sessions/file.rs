//! The sessions file (DESIGN.md D17): a set of sessions in TOML, the types
//! it reads into, and how it is read and written.
//!
//! One format serves `up`/`down`, `freeze`, the daemon's snapshots and
//! `restore`, so the types here are the interface between them: a
//! [`SessionsFile`] is a plain value (literal strings, absolute paths), and
//! [`crate::sessions::up::bring_up`] takes one whether it was read from a
//! file, frozen from a server or kept by the daemon.
//!
//! Reading a file ([`load`], [`parse`]) is three steps, all before anything
//! is created: serde (unknown keys and wrong types), `[vars]` placeholders
//! ([`super::vars`]) and relative paths resolved against the file's
//! directory, then the checks of [`super::check`]. Every problem names the
//! file, the line and the key; the line comes from toml's own spans of the
//! document ([`toml::de::DeTable`]), looked up by the key path.
//!
//! Writing ([`SessionsFile::to_toml`]) is the inverse: a value written and
//! read back is the same value, so braces in strings are doubled (`{{`),
//! since reading treats `{name}` as a placeholder.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::group::GroupName;
use crate::status::AgentKind;

/// A set of sessions: what `up` creates, `down` closes and `freeze` writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsFile {
    /// `[vars]`: placeholder defaults, overridable with `--var k=v`. Kept
    /// after reading for reference only: the strings below are already
    /// rendered.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// `[[session]]`, created in this order.
    #[serde(default, rename = "session", skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionSpec>,
}

/// One session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// The session's name; also what makes `up` idempotent (a session of
    /// this name that exists is left alone).
    pub name: String,
    /// `@agent-goal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    /// `@agent-type`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    /// `@agent-group`. Checked as it is read, so it takes no placeholders
    /// (a group name has no braces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupName>,
    /// The role the session had in its group when it was frozen. The
    /// daemon gives roles by join order, so `up` creates a group's
    /// `coordinator` before its other members (otherwise file order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The session's start directory (and the repository of `worktree`).
    /// In a file: absolute, `~/…`, or relative to the file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Environment variables of the session (`new-session -e`): every pane
    /// of it gets them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A `git worktree` made for this session before it is created; its
    /// path becomes the session's start directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<WorktreeSpec>,
    /// Other `@agent-*` session options a user set (`@agent-ctx-*`, or a
    /// user's own `@agent-note`); not the ones tmux-agent writes itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// `[[session.window]]`, in order. None: one window with one pane.
    #[serde(default, rename = "window", skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowSpec>,
}

/// A session's role in its group, as `@agent-role` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Coordinator,
    Member,
}

/// `git worktree add` for a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorktreeSpec {
    /// The branch checked out there; created (from `base`, else `HEAD`) if
    /// the repository has no such branch.
    pub branch: String,
    /// Where the worktree goes: absolute, `~/…`, or relative to the
    /// session's `cwd` (the repository). `{session}` is the session's name.
    pub path: String,
    /// What a new branch starts from (a commit, tag or branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// One window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// The window's name; none: tmux names it after its command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The window's index; none: the next free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// A tmux layout string (`#{window_layout}`, checksum and all), applied
    /// with `select-layout` once the panes exist; it also sizes the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// `[[session.window.pane]]`, in order. None: one pane, the shell.
    #[serde(default, rename = "pane", skip_serializing_if = "Vec::is_empty")]
    pub panes: Vec<PaneSpec>,
}

/// One pane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaneSpec {
    /// The pane's start directory; none: the session's. In a file:
    /// absolute, `~/…`, or relative to the session's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// What the pane runs; none: the default shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<PaneCommand>,
    /// The agent that runs there (`@agent-kind`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentKind>,
    /// The agent's own conversation id (`@agent-session-id`), when known:
    /// what `restore` resumes it with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_id: Option<String>,
}

/// A pane's command, as tmux runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PaneCommand {
    /// One string: run by the shell (`sh -c`), pipes and all.
    Shell(String),
    /// Several words: run directly, no shell. (One word alone is run by
    /// the shell, as tmux does.)
    Argv(Vec<String>),
}

impl PaneCommand {
    /// The words tmux is given after `--`.
    pub fn words(&self) -> Vec<String> {
        match self {
            PaneCommand::Shell(line) => vec![line.clone()],
            PaneCommand::Argv(words) => words.clone(),
        }
    }

    /// The command for the words tmux reports (`#{pane_start_command}`).
    pub fn from_words(mut words: Vec<String>) -> Option<PaneCommand> {
        match words.len() {
            0 => None,
            1 => words.pop().map(PaneCommand::Shell),
            _ => Some(PaneCommand::Argv(words)),
        }
    }
}

impl SessionSpec {
    /// The session's windows as created: the file's, or one default window.
    pub fn windows_or_default(&self) -> Vec<WindowSpec> {
        if self.windows.is_empty() {
            vec![WindowSpec::default()]
        } else {
            self.windows.clone()
        }
    }

    /// Where the session's panes start by default: the worktree's path if
    /// it has one, else its `cwd`.
    pub fn start_directory(&self) -> Option<&str> {
        match &self.worktree {
            Some(worktree) => Some(&worktree.path),
            None => self.cwd.as_deref(),
        }
    }
}

impl WindowSpec {
    /// The window's panes as created: the file's, or one default pane.
    pub fn panes_or_default(&self) -> Vec<PaneSpec> {
        if self.panes.is_empty() {
            vec![PaneSpec::default()]
        } else {
            self.panes.clone()
        }
    }
}

/// One thing wrong with a sessions file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, when the value came from one.
    pub file: Option<PathBuf>,
    /// The 1-based line of the key, when known.
    pub line: Option<usize>,
    /// The key's path: `session[1].window[0].layout`, `-` for the file.
    pub key: String,
    pub message: String,
}

impl Problem {
    /// A problem with a key, not yet placed in a file.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            file: None,
            line: None,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}:", file.display())?;
            if let Some(line) = self.line {
                write!(f, "{line}:")?;
            }
            f.write_str(" ")?;
        } else if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a sessions file was refused: every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            problem.fmt(f)?;
        }
        Ok(())
    }
}

/// Reads, renders and checks the sessions file at `path`, with `--var`
/// overrides.
pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<SessionsFile, FileError> {
    let text = std::fs::read_to_string(path).map_err(|err| FileError {
        problems: vec![Problem {
            file: Some(path.to_path_buf()),
            line: None,
            key: "-".into(),
            message: format!("cannot read the file: {err}"),
        }],
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let base = std::path::absolute(&base).unwrap_or(base);
    parse(&text, Some(path), &base, overrides)
}

/// Reads, renders and checks sessions-file `text`. `file` only labels the
/// problems; relative paths are resolved against `base`.
pub fn parse(
    text: &str,
    file: Option<&Path>,
    base: &Path,
    overrides: &[(String, String)],
) -> Result<SessionsFile, FileError> {
    let place = |problems: Vec<Problem>| FileError {
        problems: problems
            .into_iter()
            .map(|mut problem| {
                problem.file = file.map(Path::to_path_buf);
                if problem.line.is_none() {
                    problem.line = line_of(text, &problem.key);
                }
                problem
            })
            .collect(),
    };
    let raw = from_toml(text).map_err(|problem| place(vec![problem]))?;
    let mut resolved = super::vars::render(raw, overrides).map_err(place)?;
    resolve_paths(&mut resolved, base);
    let problems = super::check::check(&resolved);
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(place(problems))
    }
}

/// Deserializes the document, placeholders unrendered: the first serde
/// problem (an unknown key, a wrong type), with its key path and line.
fn from_toml(text: &str) -> Result<SessionsFile, Problem> {
    let deserializer = toml::Deserializer::parse(text).map_err(|err| Problem {
        file: None,
        line: err.span().map(|span| line_at(text, span.start)),
        key: "-".into(),
        message: format!("TOML syntax error: {}", err.message().trim()),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let span = err.inner().span();
        let (key, message) =
            crate::config::describe(err.path().to_string(), err.inner().message().trim());
        let line = line_of(text, &key).or_else(|| span.map(|s| line_at(text, s.start)));
        Problem {
            file: None,
            line,
            key,
            message,
        }
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// One step of a key path.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `session[1].window[0].layout` as steps; `None` for `-`.
fn steps(key: &str) -> Option<Vec<Step<'_>>> {
    if key == "-" || key.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Step::Key(name));
        }
        while let Some((index, after)) = rest.split_once(']') {
            out.push(Step::Index(index.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(out)
}

/// The line of `key` in the document, from toml's spans: of the key itself
/// where it is written, else of the deepest part of the path that is.
fn line_of(text: &str, key: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let steps = steps(key)?;
    let root = DeTable::parse(text).ok()?;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    let mut span = None;
    for step in steps {
        match step {
            Step::Key(name) => {
                let here = match (table, value) {
                    (Some(t), _) => t,
                    (None, Some(v)) => match v.as_table() {
                        Some(t) => t,
                        None => break,
                    },
                    (None, None) => break,
                };
                let Some((k, v)) = here.iter().find(|(k, _)| k.get_ref() == name) else {
                    break;
                };
                span = Some(k.span());
                table = None;
                value = Some(v.get_ref());
            }
            Step::Index(i) => {
                let Some(item) = value.and_then(DeValue::as_array).and_then(|a| a.get(i)) else {
                    break;
                };
                span = Some(item.span());
                table = None;
                value = Some(item.get_ref());
            }
        }
    }
    span.map(|s| line_at(text, s.start))
}

/// `~/…` against `$HOME`, relative against `base`. Already absolute: as is.
pub fn absolute_path(path: &str, base: &Path) -> String {
    let expanded = match path
        .strip_prefix("~/")
        .or(if path == "~" { Some("") } else { None })
    {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(rest),
            None => PathBuf::from(path),
        },
        None => PathBuf::from(path),
    };
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    };
    normalize(&joined).to_string_lossy().into_owned()
}

/// Removes `.` and `..` steps without touching the file system (the
/// directory may not exist yet: a worktree's).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Makes every path of the file absolute: a session's `cwd` against the
/// file's directory, its worktree's path against its `cwd`, a pane's `cwd`
/// against the session's start directory.
fn resolve_paths(file: &mut SessionsFile, base: &Path) {
    for session in &mut file.sessions {
        if let Some(cwd) = &mut session.cwd {
            *cwd = absolute_path(cwd, base);
        }
        let repo = session
            .cwd
            .as_deref()
            .map_or_else(|| base.to_path_buf(), PathBuf::from);
        if let Some(worktree) = &mut session.worktree {
            worktree.path = absolute_path(&worktree.path, &repo);
        }
        let start = session
            .start_directory()
            .map_or_else(|| base.to_path_buf(), PathBuf::from);
        for window in &mut session.windows {
            for pane in &mut window.panes {
                if let Some(cwd) = &mut pane.cwd {
                    *cwd = absolute_path(cwd, &start);
                }
            }
        }
    }
}

impl SessionsFile {
    /// The file as TOML that [`parse`] reads back into this same value:
    /// braces doubled where `{name}` would be read as a placeholder.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let escaped = super::vars::escape(self.clone());
        toml::to_string(&escaped)
    }

    /// The checks of [`parse`], for a value that was not read from a file
    /// (a snapshot, a frozen server): problems name keys, not lines.
    pub fn validate(&self) -> Result<(), FileError> {
        let problems = super::check::check(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FileError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, Some(Path::new("s.toml")), Path::new("/"), &[]) {
            Ok(_) => Vec::new(),
            Err(err) => err.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn serde_problems_name_line_and_key() {
        let found = problems("[[session]]\nname = \"a\"\n\n[[session]]\nname = \"b\"\nbogus = 1\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("s.toml:6: session[1].bogus: unknown key"),
            "{found:?}"
        );
        let found = problems("[[session]]\nname = \"a\"\n[[session.window]]\nindex = \"one\"\n");
        assert!(
            found[0].starts_with("s.toml:4: session[0].window[0].index:"),
            "{found:?}"
        );
        let found = problems("[[session]]\nname = 'a'\nname = 'b'\n");
        assert!(
            found[0].starts_with("s.toml:3: -: TOML syntax error"),
            "{found:?}"
        );
    }

    #[test]
    fn a_value_written_reads_back_the_same() {
        let file = SessionsFile {
            vars: BTreeMap::new(),
            sessions: vec![SessionSpec {
                name: "api".into(),
                goal: Some("fix {braces} and 'quotes' \"too\"".into()),
                agent_type: Some("coder".into()),
                group: Some(GroupName::new("build").unwrap()),
                role: Some(Role::Coordinator),
                cwd: Some("/".into()),
                env: [("K".to_owned(), "v {x}".to_owned())].into(),
                worktree: None,
                options: [("@agent-note".to_owned(), "}{".to_owned())].into(),
                windows: vec![WindowSpec {
                    name: Some("edit".into()),
                    index: Some(1),
                    layout: Some("b261,80x24,0,0,4".into()),
                    panes: vec![PaneSpec {
                        cwd: Some("/tmp".into()),
                        command: Some(PaneCommand::Shell("awk '{print $1}'".into())),
                        agent: Some(AgentKind::Claude),
                        resume_id: Some("abc-123".into()),
                    }],
                }],
            }],
        };
        let text = file.to_toml().unwrap();
        let back = parse(&text, None, Path::new("/"), &[]).unwrap();
        assert_eq!(back, file, "{text}");
    }

    #[test]
    fn the_documented_example_reads() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        let path = docs.join("example-sessions.toml");
        let file = load(&path, &[("feature".into(), "fix-1".into())]).unwrap();
        let names: Vec<&str> = file.sessions.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fix-1-lead", "fix-1-dev"]);
        let lead = &file.sessions[0];
        assert_eq!(lead.group.as_ref().map(GroupName::as_str), Some("team"));
        assert_eq!(lead.cwd.as_deref(), docs.to_str());
        assert_eq!(lead.env["TEAM"], "fix-1");
        let dev = &file.sessions[1];
        let worktree = dev.worktree.as_ref().unwrap();
        assert_eq!(
            Some(worktree.path.as_str()),
            docs.parent().unwrap().join("worktrees/fix-1-dev").to_str()
        );
    }

    #[test]
    fn relative_paths_are_resolved() {
        assert_eq!(absolute_path("a/../b/./c", Path::new("/x")), "/x/b/c");
        assert_eq!(absolute_path("/abs", Path::new("/x")), "/abs");
    }
}
