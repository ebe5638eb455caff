//! Context capture: what a memory server should know about a session when it
//! is detached or closed, gathered through the control connection in a few
//! pipelined commands.
//!
//! Pane text is only captured when asked for (`capture_lines > 0`): it can
//! hold secrets. Every text tmux gives about the session's windows and
//! panes passes through the redaction patterns, not only pane lines: window
//! names, pane titles and paths carry what programs put there (a shell
//! sets its title to the command line, a token included). The session's
//! name and its `@agent-*` values are the user's own labels, sent as they
//! are by every call, and are not redacted. The whole context is capped in
//! size, oldest captured lines going first.

use chrono::{SecondsFormat, Utc};
use futures::future::try_join_all;
use serde::{Deserialize, Serialize};

use crate::control::command::Command;
use crate::control::connection::{ControlError, ControlHandle};
use crate::control::options::parse_options;
use crate::control::{PaneId, SessionId, WindowId};
use crate::schema;

/// What to capture, from the `[context]` config section.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Lines of each pane's history to include (0: none).
    pub capture_lines: u32,
    /// The largest context, in bytes of JSON.
    pub max_bytes: usize,
    /// Patterns whose matches in captured text are replaced by `[redacted]`.
    pub redact: Vec<regex::Regex>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        Self {
            capture_lines: 0,
            max_bytes: 256 * 1024,
            redact: Vec::new(),
        }
    }
}

/// A session's context, as sent to MCP servers (`{context}`).
/// Deserialize too: the journal keeps the last one (`agent::journal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionContext {
    pub session: String,
    pub session_id: SessionId,
    /// Unix seconds.
    pub created: i64,
    pub goal: Option<String>,
    #[serde(rename = "type")]
    pub agent_type: Option<String>,
    pub group: Option<String>,
    pub role: Option<String>,
    pub windows: Vec<WindowContext>,
    /// When the context was captured (RFC 3339, UTC).
    pub captured_at: String,
    /// Captured lines were dropped to respect the size cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowContext {
    pub index: u32,
    pub id: String,
    pub name: String,
    pub layout: String,
    pub active: bool,
    pub panes: Vec<PaneContext>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaneContext {
    pub index: u32,
    pub id: String,
    pub command: String,
    pub path: String,
    pub title: String,
    pub pid: u32,
    pub active: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

/// Errors while capturing.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Command(#[from] crate::control::command::CommandError),
    #[error("unexpected {what} line from tmux: {line:?}")]
    Listing { what: &'static str, line: String },
    #[error(transparent)]
    Options(#[from] crate::control::options::OptionLineError),
}

/// `list-windows` format. tmux keeps a window name as given (unlike a
/// session name, which it escapes), newlines and tabs included, so control
/// characters in it are replaced, as in the pane fields below: one window,
/// one line.
const WINDOW_FORMAT: &str = "#{window_id}\t#{window_index}\t#{window_active}\t#{window_layout}\t\
#{s/[\x01-\x1f]/?/:window_name}";

/// `list-panes -s` format. Titles, commands and paths can hold any byte, so
/// control characters in them are replaced: a tab or newline in a title must
/// not shift fields or split the line.
const PANE_FORMAT: &str = "#{pane_id}\t#{window_id}\t#{pane_index}\t#{pane_active}\t#{pane_pid}\t\
#{s/[\x01-\x1f]/?/:pane_current_command}\t#{s/[\x01-\x1f]/?/:pane_title}\t#{s/[\x01-\x1f]/?/:pane_current_path}";

/// Captures the context of session `id`, named `name`, created at `created`.
pub async fn capture(
    control: &ControlHandle,
    id: SessionId,
    name: &str,
    created: i64,
    options: &CaptureOptions,
) -> Result<SessionContext, ContextError> {
    let (windows, panes, session_options) = tokio::try_join!(
        control.run(Command::list_windows(id, WINDOW_FORMAT)?),
        control.run(Command::list_panes(id, PANE_FORMAT)?),
        control.run(Command::show_options(id)),
    )?;
    let agent = parse_options(
        session_options.lines.iter().map(|l| l.as_ref()),
        schema::PREFIX,
    )?;

    let mut windows: Vec<(WindowId, WindowContext)> = windows
        .lines
        .iter()
        .map(|line| parse_window(&String::from_utf8_lossy(line)))
        .collect::<Result<_, _>>()?;
    let panes: Vec<(WindowId, PaneContext)> = panes
        .lines
        .iter()
        .map(|line| parse_pane(&String::from_utf8_lossy(line)))
        .collect::<Result<_, _>>()?;

    let mut panes = panes;
    if options.capture_lines > 0 {
        let start = -i64::from(options.capture_lines);
        let captures = try_join_all(panes.iter().map(|(_, pane)| async move {
            let id: PaneId = pane.id.parse().map_err(|_| ContextError::Listing {
                what: "list-panes",
                line: pane.id.clone(),
            })?;
            Ok::<_, ContextError>(control.run(Command::capture_pane(id, start)).await?)
        }))
        .await?;
        for ((_, pane), reply) in panes.iter_mut().zip(captures) {
            let mut lines: Vec<String> = reply
                .lines
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            // capture-pane pads the screen with blank lines below the cursor.
            while lines.last().is_some_and(|l| l.trim().is_empty()) {
                lines.pop();
            }
            pane.lines = lines;
        }
    }
    for (window_id, pane) in panes {
        if let Some((_, window)) = windows.iter_mut().find(|(id, _)| *id == window_id) {
            window.panes.push(pane);
        }
    }

    let mut context = SessionContext {
        session: name.to_owned(),
        session_id: id,
        created,
        goal: agent.get(schema::session::GOAL).cloned(),
        agent_type: agent.get(schema::session::TYPE).cloned(),
        group: agent.get(schema::session::GROUP).cloned(),
        role: agent.get(schema::session::ROLE).cloned(),
        windows: windows.into_iter().map(|(_, w)| w).collect(),
        captured_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        truncated: false,
    };
    redact_captured(&mut context, &options.redact);
    cap_size(&mut context, options.max_bytes);
    Ok(context)
}

/// Applies the redaction patterns to every captured text field (see the
/// module doc for which, and why).
fn redact_captured(context: &mut SessionContext, patterns: &[regex::Regex]) {
    if patterns.is_empty() {
        return;
    }
    let apply = |text: &mut String| {
        let redacted = redact(text, patterns);
        *text = redacted;
    };
    for window in &mut context.windows {
        apply(&mut window.name);
        for pane in &mut window.panes {
            apply(&mut pane.command);
            apply(&mut pane.title);
            apply(&mut pane.path);
            pane.lines.iter_mut().for_each(apply);
        }
    }
}

/// `text` with every match of `patterns` replaced by `[redacted]`.
pub fn redact(text: &str, patterns: &[regex::Regex]) -> String {
    patterns.iter().fold(text.to_owned(), |text, pattern| {
        pattern.replace_all(&text, "[redacted]").into_owned()
    })
}

/// Drops captured lines, oldest first across panes, until the JSON fits.
fn cap_size(context: &mut SessionContext, max_bytes: usize) {
    let size = |c: &SessionContext| serde_json::to_vec(c).map(|v| v.len()).unwrap_or(usize::MAX);
    let mut current = size(context);
    while current > max_bytes {
        let Some(pane) = context
            .windows
            .iter_mut()
            .flat_map(|w| w.panes.iter_mut())
            .filter(|p| !p.lines.is_empty())
            .max_by_key(|p| p.lines.len())
        else {
            break;
        };
        // Remove a chunk at a time: re-serialising per line is quadratic.
        let drop = pane.lines.len().div_ceil(4).max(1);
        pane.lines.drain(..drop);
        context.truncated = true;
        current = size(context);
    }
}

fn listing_error(what: &'static str, line: &str) -> ContextError {
    ContextError::Listing {
        what,
        line: line.to_owned(),
    }
}

fn parse_window(line: &str) -> Result<(WindowId, WindowContext), ContextError> {
    let bad = || listing_error("list-windows", line);
    let mut f = line.splitn(5, '\t');
    let id: WindowId = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let index = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let active = f.next().ok_or_else(bad)? == "1";
    let layout = f.next().ok_or_else(bad)?.to_owned();
    let name = f.next().ok_or_else(bad)?.to_owned();
    Ok((
        id,
        WindowContext {
            index,
            id: id.to_string(),
            name,
            layout,
            active,
            panes: Vec::new(),
        },
    ))
}

fn parse_pane(line: &str) -> Result<(WindowId, PaneContext), ContextError> {
    let bad = || listing_error("list-panes", line);
    let mut f = line.splitn(8, '\t');
    let id: PaneId = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let window: WindowId = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let index = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let active = f.next().ok_or_else(bad)? == "1";
    let pid = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let command = f.next().ok_or_else(bad)?.to_owned();
    let title = f.next().ok_or_else(bad)?.to_owned();
    let path = f.next().ok_or_else(bad)?.to_owned();
    Ok((
        window,
        PaneContext {
            index,
            id: id.to_string(),
            command,
            path,
            title,
            pid,
            active,
            lines: Vec::new(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_with_lines(n: usize) -> SessionContext {
        SessionContext {
            session: "s".into(),
            session_id: SessionId(1),
            created: 0,
            goal: None,
            agent_type: None,
            group: None,
            role: None,
            windows: vec![WindowContext {
                index: 0,
                id: "@1".into(),
                name: "w".into(),
                layout: "l".into(),
                active: true,
                panes: vec![PaneContext {
                    index: 0,
                    id: "%1".into(),
                    command: "bash".into(),
                    path: "/".into(),
                    title: "t".into(),
                    pid: 1,
                    active: true,
                    lines: (0..n).map(|i| format!("line {i:05}")).collect(),
                }],
            }],
            captured_at: "now".into(),
            truncated: false,
        }
    }

    #[test]
    fn the_cap_drops_the_oldest_lines() {
        let mut context = context_with_lines(10_000);
        cap_size(&mut context, 20_000);
        let size = serde_json::to_vec(&context).unwrap().len();
        assert!(size <= 20_000, "{size}");
        assert!(context.truncated);
        let lines = &context.windows[0].panes[0].lines;
        assert_eq!(lines.last().unwrap(), "line 09999", "the newest lines stay");
        let mut small = context_with_lines(3);
        cap_size(&mut small, 20_000);
        assert!(!small.truncated);
    }

    #[test]
    fn redaction_replaces_every_match() {
        let patterns = vec![regex::Regex::new(r"sk-[A-Za-z0-9]+").unwrap()];
        assert_eq!(
            redact("key sk-abc123 and sk-x", &patterns),
            "key [redacted] and [redacted]"
        );
    }

    #[test]
    fn redaction_covers_every_captured_field() {
        let patterns = vec![regex::Regex::new(r"sk-[A-Za-z0-9]+").unwrap()];
        let mut context = context_with_lines(1);
        let window = &mut context.windows[0];
        window.name = "deploy sk-window1".into();
        let pane = &mut window.panes[0];
        pane.command = "curl-sk-cmd2".into();
        pane.title = "export KEY=sk-title3".into();
        pane.path = "/tmp/sk-path4".into();
        pane.lines = vec!["token sk-line5".into()];
        context.session = "sk-session".into();
        redact_captured(&mut context, &patterns);
        let json = serde_json::to_string(&context.windows).unwrap();
        for secret in ["sk-window1", "sk-cmd2", "sk-title3", "sk-path4", "sk-line5"] {
            assert!(!json.contains(secret), "{secret} left in {json}");
        }
        assert_eq!(json.matches("[redacted]").count(), 5, "{json}");
        // The session's name is its label, not captured text.
        assert_eq!(context.session, "sk-session");
    }

    #[test]
    fn listing_lines_parse() {
        let (id, w) = parse_window("@2\t1\t1\tabcd,80x24,0,0,2\tmy win\tdow").unwrap();
        assert_eq!(
            (id, w.index, w.name.as_str()),
            (WindowId(2), 1, "my win\tdow")
        );
        let (window, p) = parse_pane("%3\t@2\t0\t1\t4242\tvim\ttitle\t/home/x\ty").unwrap();
        assert_eq!(
            (window, p.pid, p.path.as_str()),
            (WindowId(2), 4242, "/home/x\ty")
        );
        assert!(parse_pane("%3\t@2\t0").is_err());
    }
}
