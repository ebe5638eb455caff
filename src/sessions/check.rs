//! The checks a sessions file passes before anything is created: names tmux
//! would misread, duplicates, layouts tmux would refuse, directories that
//! do not exist, options tmux-agent keeps for itself. Each problem names
//! its key and says why; all of them are reported, not just the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::file::{PaneCommand, Problem, SessionSpec, SessionsFile, WindowSpec};
use super::layout;
use crate::group::names::check_value;
use crate::schema;

/// Every problem of `file` (already rendered, paths absolute).
pub fn check(file: &SessionsFile) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, session) in file.sessions.iter().enumerate() {
        let key = format!("session[{i}]");
        if let Err(why) = check_session_name(&session.name) {
            problems.push(Problem::at(format!("{key}.name"), why));
        }
        if let Some(first) = names.insert(&session.name, i) {
            problems.push(Problem::at(
                format!("{key}.name"),
                format!(
                    "session {:?} is already defined by session[{first}]; names must be unique",
                    session.name
                ),
            ));
            names.insert(&session.name, first);
        }
        check_session(session, &key, &mut problems);
    }
    problems
}

/// Why tmux would misread a session name, if it would.
pub fn check_session_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a session name cannot be empty".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{c:?} in a session name: tmux stores control characters escaped (a newline as \\012), so the session would not have this name"
        ));
    }
    for (c, why) in [
        (
            '.',
            "tmux turns `.` into `_` in session names (it separates window and pane in a target)",
        ),
        (
            ':',
            "tmux turns `:` into `_` in session names (it separates session and window in a target)",
        ),
        (
            ';',
            "`;` ends a tmux command: `attach -t` with this name in tmux.conf, a key binding or the command prompt would run what follows it",
        ),
        (
            '$',
            "tmux stores `$` in a session name as `\\$`, so the session would not have this name",
        ),
        (
            '#',
            "`#` starts a tmux format: where a name is expanded, `#{…}` is replaced and `#(…)` runs a shell command",
        ),
    ] {
        if name.contains(c) {
            return Err(why.into());
        }
    }
    if let Some(first) = name.chars().next()
        && "=%@~-".contains(first)
    {
        return Err(format!(
            "a session name cannot start with `{first}`: tmux reads a target starting with it as something else (`=` exact match, `@` window id, `%` pane id, `~` home, `-` a flag)"
        ));
    }
    Ok(())
}

fn check_session(session: &SessionSpec, key: &str, problems: &mut Vec<Problem>) {
    let mut push = |k: String, m: String| problems.push(Problem::at(k, m));
    for (field, value) in [("goal", &session.goal), ("type", &session.agent_type)] {
        if let Some(value) = value
            && let Err(err) = check_value(value)
        {
            push(format!("{key}.{field}"), err.to_string());
        }
    }
    for (name, value) in &session.env {
        let k = format!("{key}.env.{name}");
        if name.is_empty() || name.contains(['=', '\0']) {
            push(
                k,
                "an environment variable's name must be non-empty and hold no `=` or NUL".into(),
            );
        } else if value.contains('\0') {
            push(k, "a value cannot hold a NUL character".into());
        }
    }
    for (name, value) in &session.options {
        let k = format!("{key}.options.{name}");
        if let Err(why) = check_option_name(name) {
            push(k, why);
        } else if let Err(err) = check_value(value) {
            push(k, err.to_string());
        }
    }
    // Directories a worktree will hold do not exist yet.
    let pending = session.worktree.as_ref().map(|w| Path::new(&w.path));
    if let Some(cwd) = &session.cwd
        && let Err(why) = check_directory(cwd, None)
    {
        push(format!("{key}.cwd"), why);
    }
    if let Some(worktree) = &session.worktree {
        if session.cwd.is_none() {
            push(
                format!("{key}.worktree"),
                "a worktree needs the session's `cwd`: the repository it is added to".into(),
            );
        }
        let branch = &worktree.branch;
        if branch.is_empty()
            || branch.starts_with('-')
            || branch.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            push(
                format!("{key}.worktree.branch"),
                "a branch name must be non-empty, not start with `-`, and hold no space or control character".into(),
            );
        }
        if worktree
            .base
            .as_deref()
            .is_some_and(|b| b.starts_with('-') || b.is_empty())
        {
            push(
                format!("{key}.worktree.base"),
                "a base must be a commit, tag or branch (not empty, not starting with `-`)".into(),
            );
        }
        if worktree.path.contains('\0') {
            push(
                format!("{key}.worktree.path"),
                "a path cannot hold a NUL character".into(),
            );
        }
    }
    let mut indexes = BTreeSet::new();
    for (w, window) in session.windows.iter().enumerate() {
        let window_key = format!("{key}.window[{w}]");
        if let Some(index) = window.index
            && !indexes.insert(index)
        {
            push(
                format!("{window_key}.index"),
                format!("two windows of the session have index {index}"),
            );
        }
        check_window(window, &window_key, pending, &mut push);
    }
}

fn check_window(
    window: &WindowSpec,
    key: &str,
    pending: Option<&Path>,
    push: &mut impl FnMut(String, String),
) {
    if let Some(name) = &window.name
        && let Some(c) = name.chars().find(|c| c.is_control())
    {
        push(
            format!("{key}.name"),
            format!(
                "{c:?} in a window name: tmux stores control characters escaped, so the window would not have this name"
            ),
        );
    }
    if let Some(text) = &window.layout {
        match layout::check(text) {
            Ok(found) => {
                let panes = window.panes.len().max(1);
                if found.panes != panes {
                    push(
                        format!("{key}.layout"),
                        format!(
                            "the layout has {} pane(s) but the window has {panes}",
                            found.panes
                        ),
                    );
                }
            }
            Err(err) => push(
                format!("{key}.layout"),
                format!("tmux would refuse this layout: {err}"),
            ),
        }
    }
    for (p, pane) in window.panes.iter().enumerate() {
        let pane_key = format!("{key}.pane[{p}]");
        if let Some(cwd) = &pane.cwd
            && let Err(why) = check_directory(cwd, pending)
        {
            push(format!("{pane_key}.cwd"), why);
        }
        match &pane.command {
            Some(PaneCommand::Shell(line)) if line.is_empty() => push(
                format!("{pane_key}.command"),
                "an empty command: leave `command` out for the default shell".into(),
            ),
            Some(PaneCommand::Argv(words)) if words.is_empty() => push(
                format!("{pane_key}.command"),
                "an empty list: leave `command` out for the default shell".into(),
            ),
            Some(command) if command.words().iter().any(|w| w.contains('\0')) => push(
                format!("{pane_key}.command"),
                "a command cannot hold a NUL character".into(),
            ),
            _ => {}
        }
        if let Some(id) = &pane.resume_id
            && let Err(err) = check_value(id)
        {
            push(format!("{pane_key}.resume_id"), err.to_string());
        }
    }
}

/// The options a file may set: `@agent-*`, but not the three with their own
/// keys nor the ones tmux-agent writes itself.
fn check_option_name(name: &str) -> Result<(), String> {
    use schema::session::{GOAL, GOAL_ID, GROUP, JOINED, PEERS, ROLE, SAVED, STATE, TYPE};
    if !name.starts_with(schema::PREFIX) || name.len() == schema::PREFIX.len() {
        return Err(format!("only {}* options can be set here", schema::PREFIX));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"@_-.".contains(&b))
    {
        return Err("an option name is made of A-Z a-z 0-9 _ - .".into());
    }
    if let Some(key) = [(GOAL, "goal"), (TYPE, "type"), (GROUP, "group")]
        .iter()
        .find_map(|(option, key)| (*option == name).then_some(key))
    {
        return Err(format!("set {name} with the session's `{key}` key"));
    }
    if [
        GOAL_ID,
        STATE,
        SAVED,
        ROLE,
        PEERS,
        JOINED,
        schema::session::AGENT_STATUS,
    ]
    .contains(&name)
    {
        return Err(format!(
            "{name} is written by tmux-agent itself, not set by a file"
        ));
    }
    Ok(())
}

/// Whether `path` is an existing directory (or will be: inside `pending`).
fn check_directory(path: &str, pending: Option<&Path>) -> Result<(), String> {
    let dir = Path::new(path);
    if path.contains('\0') {
        return Err("a path cannot hold a NUL character".into());
    }
    if !dir.is_absolute() {
        return Err(format!("{path:?} is not an absolute path"));
    }
    if pending.is_some_and(|p| dir.starts_with(p)) {
        return Ok(());
    }
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!("{path} is not a directory")),
        Err(err) => Err(format!("directory {path}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tmux_would_misread_are_refused_with_the_reason() {
        for ok in [
            "api",
            "my work",
            "café ☃",
            "a_b-c",
            "x=y",
            "it's \"q\"",
            &"n".repeat(1000),
        ] {
            assert_eq!(check_session_name(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("a\nb", "control"),
            ("a.b", "`.`"),
            ("a:b", "`:`"),
            ("x; kill-server", "`;`"),
            ("#(touch m)", "`#`"),
            ("=a", "`=`"),
            ("$3", "`$`"),
        ] {
            let err = check_session_name(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn only_user_options_may_be_set() {
        assert!(check_option_name("@agent-ctx-branch").is_ok());
        assert!(check_option_name("@agent-note").is_ok());
        for bad in [
            "@other",
            "@agent-",
            "@agent-goal",
            "@agent-state",
            "@agent-a b",
        ] {
            assert!(check_option_name(bad).is_err(), "{bad}");
        }
    }
}
