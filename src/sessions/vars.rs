//! `[vars]` in a sessions file: `{name}` placeholders, with the reactor's
//! template rules ([`crate::agent::template`]): a placeholder is replaced by
//! its value as data, `{{` and `}}` are literal braces, an unknown name is
//! an error, and a value is never rendered again (a value holding
//! `{other}` stays that text).
//!
//! Values are never spliced into a command line. tmux gets every string as
//! its own argument ([`crate::control::command`]), so a value cannot become
//! a second tmux command. The one place a shell reads a string is a pane's
//! `command` given as one string (`sh -c`): there each value goes in
//! shell-quoted, so it arrives as one word, intact, and runs nothing.
//! A command given as a list of words runs without a shell and gets values
//! as they are.
//!
//! Besides `[vars]`, `{session}` is the session's own (rendered) name in
//! every string of that session.
//!
//! What is rendered: every string of a session but its `layout` (tmux
//! layouts use `{` and `}` themselves), its `group` (checked as it is read:
//! a group name has no braces) and the keys of `env` and `options`.

use serde_json::{Map, Value};

use super::file::{PaneCommand, Problem, SessionSpec, SessionsFile};
use crate::agent::template;

/// The placeholder every session has.
pub const SESSION: &str = "session";

/// How a string is read once rendered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// As data (tmux argument, option value, path).
    Data,
    /// By a shell: values go in quoted.
    Shell,
}

/// Renders every placeholder of `file` with its `[vars]`, overridden by
/// `overrides` (`--var k=v`; each must name a var of the file).
pub fn render(
    mut file: SessionsFile,
    overrides: &[(String, String)],
) -> Result<SessionsFile, Vec<Problem>> {
    let mut problems = Vec::new();
    for name in file.vars.keys() {
        if !is_var_name(name) {
            problems.push(Problem::at(
                format!("vars.{name}"),
                "a var name is 1 or more of A-Z a-z 0-9 _ -",
            ));
        } else if name == SESSION {
            problems.push(Problem::at(
                format!("vars.{name}"),
                "`session` is the session's own name; pick another var name",
            ));
        }
    }
    for (name, value) in overrides {
        match file.vars.get_mut(name) {
            Some(slot) => slot.clone_from(value),
            None => {
                let known: Vec<&str> = file.vars.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "the file has no [vars]".to_owned()
                } else {
                    format!("the file's vars are: {}", known.join(", "))
                };
                problems.push(Problem::at(
                    "vars",
                    format!("--var {name}=… names no var of the file ({known}); add it to [vars] with a default"),
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut data: Map<String, Value> = file
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut shell = Map::new();
    for (i, session) in file.sessions.iter_mut().enumerate() {
        let key = format!("session[{i}]");
        data.remove(SESSION);
        match render_one(&session.name, Reader::Data, &data, &shell) {
            Ok(name) => session.name = name,
            Err(message) => {
                problems.push(Problem::at(format!("{key}.name"), message));
                continue;
            }
        }
        data.insert(SESSION.into(), Value::String(session.name.clone()));
        shell = quoted(&data);
        visit(
            session,
            &key,
            &mut |key, text, reader| match render_one(text, reader, &data, &shell) {
                Ok(rendered) => *text = rendered,
                Err(message) => problems.push(Problem::at(key, message)),
            },
        );
    }
    if problems.is_empty() {
        Ok(file)
    } else {
        Err(problems)
    }
}

/// `file` with every rendered string's braces doubled, so that [`render`]
/// gives back the same strings (how a value is written to a file).
pub fn escape(mut file: SessionsFile) -> SessionsFile {
    let double = |text: &mut String| *text = text.replace('{', "{{").replace('}', "}}");
    for session in &mut file.sessions {
        double(&mut session.name);
        visit(session, "", &mut |_, text, _| double(text));
    }
    file
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The vars shell-quoted, for strings a shell reads.
fn quoted(data: &Map<String, Value>) -> Map<String, Value> {
    data.iter()
        .map(|(k, v)| {
            let text = v.as_str().unwrap_or_default();
            // A NUL cannot be quoted; it is refused later (no tmux argument
            // can carry one), so pass it through here.
            let quoted =
                shlex::try_quote(text).map_or_else(|_| text.to_owned(), |q| q.into_owned());
            (k.clone(), Value::String(quoted))
        })
        .collect()
}

fn render_one(
    text: &str,
    reader: Reader,
    data: &Map<String, Value>,
    shell: &Map<String, Value>,
) -> Result<String, String> {
    let vars = match reader {
        Reader::Data => data,
        Reader::Shell => shell,
    };
    match template::render(&Value::String(text.to_owned()), vars) {
        Ok(Value::String(rendered)) => Ok(rendered),
        // Every var is a string, so a whole-placeholder string stays one.
        Ok(other) => Ok(other.to_string()),
        Err(template::TemplateError::Missing { name }) => {
            let mut known: Vec<&str> = data.keys().map(String::as_str).collect();
            known.sort_unstable();
            Err(format!(
                "unknown placeholder {{{name}}} (known: {}; write {{{{ and }}}} for literal braces)",
                known.join(", ")
            ))
        }
        Err(err) => Err(err.to_string()),
    }
}

/// Calls `f` on every rendered string of `session` but its name, with its
/// key path under `key` and who reads it.
fn visit(session: &mut SessionSpec, key: &str, f: &mut impl FnMut(String, &mut String, Reader)) {
    let data = Reader::Data;
    for (field, value) in [
        ("goal", &mut session.goal),
        ("type", &mut session.agent_type),
        ("cwd", &mut session.cwd),
    ] {
        if let Some(text) = value {
            f(format!("{key}.{field}"), text, data);
        }
    }
    for (name, value) in &mut session.env {
        f(format!("{key}.env.{name}"), value, data);
    }
    for (name, value) in &mut session.options {
        f(format!("{key}.options.{name}"), value, data);
    }
    if let Some(worktree) = &mut session.worktree {
        f(format!("{key}.worktree.branch"), &mut worktree.branch, data);
        f(format!("{key}.worktree.path"), &mut worktree.path, data);
        if let Some(base) = &mut worktree.base {
            f(format!("{key}.worktree.base"), base, data);
        }
    }
    for (w, window) in session.windows.iter_mut().enumerate() {
        let window_key = format!("{key}.window[{w}]");
        if let Some(name) = &mut window.name {
            f(format!("{window_key}.name"), name, data);
        }
        for (p, pane) in window.panes.iter_mut().enumerate() {
            let pane_key = format!("{window_key}.pane[{p}]");
            if let Some(cwd) = &mut pane.cwd {
                f(format!("{pane_key}.cwd"), cwd, data);
            }
            match &mut pane.command {
                Some(PaneCommand::Shell(line)) => {
                    f(format!("{pane_key}.command"), line, Reader::Shell);
                }
                Some(PaneCommand::Argv(words)) => {
                    for (n, word) in words.iter_mut().enumerate() {
                        f(format!("{pane_key}.command[{n}]"), word, data);
                    }
                }
                None => {}
            }
            if let Some(id) = &mut pane.resume_id {
                f(format!("{pane_key}.resume_id"), id, data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::file::{PaneSpec, WindowSpec};

    fn file(name: &str, goal: &str, command: PaneCommand) -> SessionsFile {
        SessionsFile {
            vars: [("who".to_owned(), "x'; touch /tmp/m #(id)".to_owned())].into(),
            sessions: vec![SessionSpec {
                name: name.into(),
                goal: Some(goal.into()),
                windows: vec![WindowSpec {
                    layout: Some("abcd,1x1,0,0{}".into()),
                    panes: vec![PaneSpec {
                        command: Some(command),
                        ..PaneSpec::default()
                    }],
                    ..WindowSpec::default()
                }],
                ..SessionSpec::default()
            }],
        }
    }

    #[test]
    fn values_are_data_and_shell_quoted_where_a_shell_reads() {
        let out = render(
            file(
                "s-{who}",
                "{session}: {{literal}}",
                PaneCommand::Shell("echo {who}".into()),
            ),
            &[("who".into(), "a b;c".into())],
        )
        .unwrap();
        let session = &out.sessions[0];
        assert_eq!(session.name, "s-a b;c");
        assert_eq!(session.goal.as_deref(), Some("s-a b;c: {literal}"));
        assert_eq!(
            session.windows[0].panes[0].command,
            Some(PaneCommand::Shell("echo 'a b;c'".into()))
        );
        // The layout is never rendered.
        assert_eq!(session.windows[0].layout.as_deref(), Some("abcd,1x1,0,0{}"));
        let argv = render(
            file(
                "s",
                "g",
                PaneCommand::Argv(vec!["echo".into(), "{who}".into()]),
            ),
            &[],
        )
        .unwrap();
        assert_eq!(
            argv.sessions[0].windows[0].panes[0].command,
            Some(PaneCommand::Argv(vec![
                "echo".into(),
                "x'; touch /tmp/m #(id)".into()
            ]))
        );
    }

    #[test]
    fn unknown_names_are_problems_with_their_key() {
        let err = render(file("s", "{nope}", PaneCommand::Shell("x".into())), &[]).unwrap_err();
        assert_eq!(err[0].key, "session[0].goal");
        assert!(err[0].message.contains("{nope}"), "{}", err[0].message);
        let err = render(
            file("s", "g", PaneCommand::Shell("x".into())),
            &[("typo".into(), "v".into())],
        )
        .unwrap_err();
        assert!(err[0].message.contains("who"), "{}", err[0].message);
    }

    #[test]
    fn escaped_text_renders_back_to_itself() {
        let original = file("a{b}", "{x}}{", PaneCommand::Shell("awk '{print}'".into()));
        let back = render(escape(original.clone()), &[]).unwrap();
        assert_eq!(back.sessions, original.sessions);
    }
}
