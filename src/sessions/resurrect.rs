//! tmux-resurrect's save files, read so that a user who switches keeps
//! their last save (`tmux-agent import-resurrect`).
//!
//! A save file is text, one record per line, fields separated by tabs.
//! Fields that may be empty are written with a leading `:` (so that bash's
//! `read` does not collapse two tabs), and the first space of a directory
//! is escaped as `\ `. The records tmux-resurrect writes (its
//! `scripts/save.sh`, 2023):
//!
//! ```text
//! pane  SESSION WINDOW_INDEX WINDOW_ACTIVE :FLAGS PANE_INDEX TITLE :DIR PANE_ACTIVE COMMAND :FULL_COMMAND
//! window SESSION WINDOW_INDEX :NAME WINDOW_ACTIVE :FLAGS LAYOUT AUTOMATIC_RENAME
//! grouped_session NAME ORIGINAL :ALTERNATE_WINDOW :ACTIVE_WINDOW
//! state CLIENT_SESSION CLIENT_LAST_SESSION
//! ```
//!
//! Older releases wrote `pane` records of 11 fields, with `:WINDOW_NAME`
//! where the title is now and no title; both are read. A grouped session
//! shares its original's windows, so it is recorded as a name only (it
//! has no panes of its own in the file).
//!
//! Nothing here runs or creates anything: [`parse`] reads text into a
//! [`ResurrectSave`], and every line that is not a record of these kinds,
//! or a record with the wrong number of fields, is an error naming its
//! line, before anything is made of the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One saved tmux server, as tmux-resurrect wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResurrectSave {
    /// In the order of their first record in the file.
    pub sessions: Vec<SavedSession>,
    /// `(grouped session, its original)`.
    pub grouped: Vec<(String, String)>,
    /// The session the client was in when saved, if any.
    pub client_session: Option<String>,
}

/// A saved session: its windows by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSession {
    pub name: String,
    pub windows: BTreeMap<u32, SavedWindow>,
}

/// A saved window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SavedWindow {
    pub name: String,
    /// tmux's layout string (`cf3a,200x50,0,0{…}`); empty when the file
    /// had a pane record for the window but no window record.
    pub layout: String,
    pub active: bool,
    /// Panes by index.
    pub panes: BTreeMap<u32, SavedPane>,
}

/// A saved pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPane {
    pub cwd: PathBuf,
    pub active: bool,
    /// What ran in the pane (`#{pane_current_command}`: `bash`, `vim`).
    pub current_command: String,
    /// The full command line of the pane's child process, when the save
    /// strategy found one (`vim foo.txt`); empty for a bare shell.
    pub full_command: String,
}

/// A save file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ResurrectError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: no pane records: this is not a tmux-resurrect save file")]
    Empty { path: PathBuf },
}

/// The file `dir/last` points to, or `file` itself when it is not that
/// directory's `last` link: what `import-resurrect` reads when given
/// tmux-resurrect's directory. A relative link is relative to `dir`.
pub fn resolve(path: &Path) -> PathBuf {
    let path = if path.is_dir() {
        path.join("last")
    } else {
        path.to_owned()
    };
    match std::fs::read_link(&path) {
        Ok(target) if target.is_relative() => path
            .parent()
            .map_or(target.clone(), |dir| dir.join(&target)),
        Ok(target) => target,
        Err(_) => path,
    }
}

/// tmux-resurrect's own default directory: `@resurrect-dir` aside,
/// `~/.tmux/resurrect` when it exists, else the XDG data directory's
/// `tmux/resurrect`.
pub fn default_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let legacy = home.join(".tmux/resurrect");
    if legacy.is_dir() {
        return Some(legacy);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".local/share"));
    Some(data.join("tmux/resurrect"))
}

/// Reads the save file at `path` (after [`resolve`]).
pub fn read(path: &Path) -> Result<ResurrectSave, ResurrectError> {
    let path = resolve(path);
    let bytes = std::fs::read(&path).map_err(|source| ResurrectError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&path, &bytes)
}

/// Parses a save file's bytes; `path` only names it in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<ResurrectSave, ResurrectError> {
    let error = |line: usize, reason: String| ResurrectError::Line {
        path: path.to_owned(),
        line,
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|err| {
        let line = bytes[..err.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        error(
            line,
            "not UTF-8 (tmux-resurrect writes text; is this the right file?)".into(),
        )
    })?;
    let mut save = ResurrectSave::default();
    let mut windows: Vec<(String, u32, SavedWindow, usize)> = Vec::new();
    let mut any_pane = false;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[0] {
            "pane" => {
                if fields.len() < 11 {
                    return Err(error(
                        number,
                        format!(
                            "a pane record has 11 tab-separated fields, this one {}",
                            fields.len()
                        ),
                    ));
                }
                // The current layout has the flags (`:*`) 5th; the old one
                // `:WINDOW_NAME` 4th and the flags 6th. A full command may
                // hold tabs: it is the rest of the line.
                let full = fields[10..].join("\t");
                let (session, window, window_active, pane_index, dir, pane_active, command) =
                    if fields[4].starts_with(':') {
                        (
                            fields[1], fields[2], fields[3], fields[5], fields[7], fields[8],
                            fields[9],
                        )
                    } else if fields[3].starts_with(':') && fields[5].starts_with(':') {
                        (
                            fields[1], fields[2], fields[4], fields[6], fields[7], fields[8],
                            fields[9],
                        )
                    } else {
                        return Err(error(
                            number,
                            "a pane record with neither of tmux-resurrect's layouts (no `:` flags field)".into(),
                        ));
                    };
                check_name(session).map_err(|r| error(number, r))?;
                let window =
                    index(window).map_err(|r| error(number, format!("window index: {r}")))?;
                let pane_index =
                    index(pane_index).map_err(|r| error(number, format!("pane index: {r}")))?;
                let dir = colon_field(dir).map_err(|r| error(number, format!("directory: {r}")))?;
                let full =
                    colon_field(&full).map_err(|r| error(number, format!("full command: {r}")))?;
                let session = session_mut(&mut save, session);
                let window = session.windows.entry(window).or_default();
                window.active |= flag(window_active);
                window.panes.insert(
                    pane_index,
                    SavedPane {
                        cwd: PathBuf::from(unescape_dir(dir)),
                        active: flag(pane_active),
                        current_command: command.to_owned(),
                        full_command: full.to_owned(),
                    },
                );
                any_pane = true;
            }
            "window" => {
                if !(7..=8).contains(&fields.len()) {
                    return Err(error(
                        number,
                        format!(
                            "a window record has 7 or 8 tab-separated fields, this one {}",
                            fields.len()
                        ),
                    ));
                }
                check_name(fields[1]).map_err(|r| error(number, r))?;
                let window_index =
                    index(fields[2]).map_err(|r| error(number, format!("window index: {r}")))?;
                let name = colon_field(fields[3])
                    .map_err(|r| error(number, format!("window name: {r}")))?;
                let layout = fields[6];
                if layout.is_empty() || !layout.contains(',') {
                    return Err(error(
                        number,
                        format!("window {window_index}: {layout:?} is not a tmux layout"),
                    ));
                }
                windows.push((
                    fields[1].to_owned(),
                    window_index,
                    SavedWindow {
                        name: name.to_owned(),
                        layout: layout.to_owned(),
                        active: flag(fields[4]),
                        panes: BTreeMap::new(),
                    },
                    number,
                ));
            }
            "grouped_session" => {
                if fields.len() != 5 {
                    return Err(error(
                        number,
                        format!(
                            "a grouped_session record has 5 tab-separated fields, this one {}",
                            fields.len()
                        ),
                    ));
                }
                check_name(fields[1]).map_err(|r| error(number, r))?;
                check_name(fields[2]).map_err(|r| error(number, r))?;
                save.grouped
                    .push((fields[1].to_owned(), fields[2].to_owned()));
            }
            "state" => {
                save.client_session = fields
                    .get(1)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_string());
            }
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(error(
                    number,
                    format!(
                        "unknown record {shown:?} (tmux-resurrect writes pane, window, grouped_session and state)"
                    ),
                ));
            }
        }
    }
    if !any_pane {
        return Err(ResurrectError::Empty {
            path: path.to_owned(),
        });
    }
    for (session, window_index, window, number) in windows {
        let Some(saved) = save.sessions.iter_mut().find(|s| s.name == session) else {
            return Err(error(
                number,
                format!("window {window_index} of session {session:?}, which has no pane records"),
            ));
        };
        let Some(target) = saved.windows.get_mut(&window_index) else {
            return Err(error(
                number,
                format!("window {window_index} of session {session:?} has no pane records"),
            ));
        };
        target.name = window.name;
        target.layout = window.layout;
        target.active |= window.active;
    }
    Ok(save)
}

fn session_mut<'a>(save: &'a mut ResurrectSave, name: &str) -> &'a mut SavedSession {
    if let Some(at) = save.sessions.iter().position(|s| s.name == name) {
        return &mut save.sessions[at];
    }
    save.sessions.push(SavedSession {
        name: name.to_owned(),
        windows: BTreeMap::new(),
    });
    save.sessions.last_mut().expect("just pushed")
}

/// A session name must not be empty; anything else tmux accepted when it
/// was saved is kept as it is (restore quotes it).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("an empty session name".into())
    } else {
        Ok(())
    }
}

fn index(field: &str) -> Result<u32, String> {
    field
        .parse()
        .map_err(|_| format!("{field:?} is not a number"))
}

/// A field written with tmux-resurrect's leading `:`.
fn colon_field(field: &str) -> Result<&str, String> {
    field
        .strip_prefix(':')
        .ok_or_else(|| format!("{field:?} does not start with ':' as tmux-resurrect writes it"))
}

fn flag(field: &str) -> bool {
    field == "1"
}

/// Undoes tmux-resurrect's `sed 's/ /\\ /'` (it escapes the first space
/// only; any `\ ` is read back as a space).
fn unescape_dir(dir: &str) -> String {
    dir.replace("\\ ", " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<ResurrectSave, ResurrectError> {
        parse(Path::new("save.txt"), text.as_bytes())
    }

    #[test]
    fn current_and_old_pane_records_are_read() {
        let save = parsed(concat!(
            "pane\twork\t0\t1\t:*\t0\ttitle\t:/tmp/a\\ b\t1\tvim\t:vim\tx.txt\n",
            "pane\told\t0\t:bash\t1\t:*\t0\t:/tmp\t1\tbash\t:\n",
            "window\twork\t0\t:editor\t1\t:*\taca3,200x50,0,0,6\toff\n",
            "state\twork\t\n",
        ))
        .unwrap();
        assert_eq!(save.sessions.len(), 2);
        let work = &save.sessions[0].windows[&0];
        assert_eq!(work.name, "editor");
        assert_eq!(work.layout, "aca3,200x50,0,0,6");
        assert_eq!(work.panes[&0].cwd, PathBuf::from("/tmp/a b"));
        assert_eq!(work.panes[&0].full_command, "vim\tx.txt");
        assert_eq!(
            save.sessions[1].windows[&0].panes[&0].current_command,
            "bash"
        );
        assert_eq!(save.client_session.as_deref(), Some("work"));
    }

    #[test]
    fn bad_lines_name_their_line() {
        let cases = [
            ("pane\twork\t0\n", 1, "11 tab-separated"),
            (
                "pane\twork\tX\t1\t:*\t0\tt\t:/tmp\t1\tbash\t:\n",
                1,
                "window index",
            ),
            (
                "pane\twork\t0\t1\t:*\t0\tt\t/tmp\t1\tbash\t:\n",
                1,
                "directory",
            ),
            (
                "pane\twork\t0\t1\t*\t0\tt\t:/tmp\t1\tbash\t:\n",
                1,
                "neither",
            ),
            (
                "pane\tw\t0\t1\t:*\t0\tt\t:/tmp\t1\tbash\t:\nwindow\tw\t0\t:n\t1\t:*\tnot-a-layout\toff\n",
                2,
                "not a tmux layout",
            ),
            ("rm -rf /\n", 1, "unknown record"),
            (
                "pane\tw\t0\t1\t:*\t0\tt\t:/tmp\t1\tbash\t:\nwindow\tz\t0\t:n\t1\t:*\ta,1x1,0,0,1\toff\n",
                2,
                "no pane records",
            ),
        ];
        for (text, line, says) in cases {
            let err = parsed(text).unwrap_err().to_string();
            assert!(err.starts_with(&format!("save.txt:{line}: ")), "{err}");
            assert!(err.contains(says), "{err}");
        }
        let err = parse(Path::new("s"), b"pane\t\xff\n").unwrap_err();
        assert!(err.to_string().contains("s:1: not UTF-8"), "{err}");
        assert!(matches!(
            parsed("state\t\t\n"),
            Err(ResurrectError::Empty { .. })
        ));
    }
}
