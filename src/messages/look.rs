//! `look`: a pane's last lines of text, redacted, for a person
//! (`tmux-agent look`) or a peer agent (the built-in server's `look` tool).
//!
//! One way for both, with one-shot `tmux` commands (no daemon needed):
//!
//! - the target is what a person types (`%3`, `work`, `=work:`,
//!   `work:1.2`): a session with exactly that name first (its active
//!   pane), else tmux resolves it, and `capture-pane` refuses one that
//!   matches nothing, so the capture and the `display-message` that names
//!   the pane run as one chain that stops there;
//! - the text is `capture-pane -J` (no escape sequences, wrapped lines
//!   joined), the screen's trailing blank lines cut, then the last `lines`;
//! - every match of `[context] redact` becomes `[redacted]`
//!   ([`crate::agent::context::redact`], as in saved contexts). A config
//!   with problems is refused rather than read without its patterns
//!   ([`redaction`]), so a typo never shows a secret.

use regex::Regex;
use serde::Serialize;

use crate::agent::context::redact;
use crate::control::command::{Command, CommandError, SessionTarget};
use crate::control::oneshot::{OneShot, OneShotError};
use crate::control::{PaneId, SessionId};

/// Lines shown when the caller does not say.
pub const DEFAULT_LINES: usize = 40;

/// The most lines one look returns.
pub const MAX_LINES: usize = 2_000;

/// What a look saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Look {
    /// The pane the target resolved to (`%3`).
    pub pane: PaneId,
    pub session_id: SessionId,
    pub session: String,
    /// Its last lines, oldest first, redacted.
    pub lines: Vec<String>,
}

/// Why a look gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum LookError {
    /// tmux knows no pane by that target.
    #[error("no pane {target:?} on this tmux server ({message})")]
    NoSuchPane { target: String, message: String },
    /// `lines` out of range.
    #[error("lines must be 1 to {MAX_LINES}, not {0}")]
    Lines(usize),
    /// The redaction patterns could not be read (see [`redaction`]).
    #[error(
        "the config has problems, so its [context] redact patterns cannot be trusted: {0}; \
         run `tmux-agent config check`"
    )]
    Config(String),
    #[error(transparent)]
    Tmux(OneShotError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// The redaction patterns of a configuration, or [`LookError::Config`] when
/// it has problems: a file tmux-agent could not fully read may have lost
/// exactly the pattern that hides a secret.
pub fn redaction(
    configuration: &crate::configuration::Configuration,
) -> Result<Vec<Regex>, LookError> {
    if let Some(problem) = configuration.problems.first() {
        return Err(LookError::Config(problem.to_string()));
    }
    crate::agent::settings::redact_patterns(&configuration.servers.config.context)
        .map_err(|err| LookError::Config(err.to_string()))
}

/// The last `lines` lines of the pane `target` names, redacted with
/// `patterns`.
pub async fn look(
    tmux: &OneShot,
    target: &str,
    lines: usize,
    patterns: &[Regex],
) -> Result<Look, LookError> {
    if lines == 0 || lines > MAX_LINES {
        return Err(LookError::Lines(lines));
    }
    let given = resolve(tmux, target).await?;
    let start = -i64::try_from(lines).unwrap_or(i64::MAX);
    let chain = [
        Command::capture_pane_of(&given, start)?,
        // Last, so its one line ends the output.
        Command::display_message_of(&given, "#{pane_id}\t#{session_id}\t#{session_name}")?,
    ];
    let out = tmux.run_all(&chain).await.map_err(|err| match err {
        OneShotError::Refused { message, .. } => LookError::NoSuchPane {
            target: target.to_owned(),
            message,
        },
        other => LookError::Tmux(other),
    })?;
    let text = String::from_utf8_lossy(&out);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let (screen, meta) = text.rsplit_once('\n').unwrap_or(("", text));
    let mut fields = meta.splitn(3, '\t');
    let (Some(pane), Some(session_id), Some(session)) = (
        fields.next().and_then(|p| p.parse().ok()),
        fields.next().and_then(|s| s.parse().ok()),
        fields.next(),
    ) else {
        return Err(LookError::NoSuchPane {
            target: target.to_owned(),
            message: "tmux named no pane for it".to_owned(),
        });
    };
    Ok(Look {
        pane,
        session_id,
        session: session.to_owned(),
        lines: last_lines(screen, lines, patterns),
    })
}

/// `target` as tmux should get it: the `$id` of the session named exactly
/// `target` if there is one (as every `-t` of the CLI does: tmux's own
/// syntax cannot name every session, `%0` or `=x` for instance), else the
/// text itself, for tmux to resolve (`%3`, `work:1.2`, a name prefix).
async fn resolve(tmux: &OneShot, target: &str) -> Result<SessionTarget, LookError> {
    let listing = tmux
        .run(&Command::list_sessions("#{session_id}\t#{session_name}")?)
        .await
        .map_err(LookError::Tmux)?;
    let listing = String::from_utf8_lossy(&listing);
    let named = listing.lines().find_map(|line| {
        let (id, name) = line.split_once('\t')?;
        (name == target).then(|| id.parse::<SessionId>().ok())?
    });
    Ok(match named {
        Some(id) => SessionTarget::Id(id),
        None => SessionTarget::Given(target.to_owned()),
    })
}

/// The last `n` lines of `screen` after its trailing blank ones (the
/// unused rows under a prompt), trailing spaces cut, redacted.
fn last_lines(screen: &str, n: usize, patterns: &[Regex]) -> Vec<String> {
    let mut lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    while lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
    let skip = lines.len().saturating_sub(n);
    lines[skip..]
        .iter()
        .map(|line| redact(line, patterns))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_lines_lose_the_blank_rows_and_the_secrets() {
        let patterns = [Regex::new(r"sk-[a-z0-9]+").unwrap()];
        let screen = "one\ntwo sk-abc123  \n\nthree\n\n\n   \n";
        assert_eq!(
            last_lines(screen, 3, &patterns),
            ["two [redacted]", "", "three"]
        );
        assert_eq!(last_lines(screen, 100, &[]).len(), 4);
        assert!(last_lines("\n\n", 5, &[]).is_empty());
    }
}
