//! What an agent's screen says once its output has settled: waiting for the
//! user, still working (quiet, but busy), or idle at its prompt.
//!
//! This is the pane-activity fallback's one look at text (DESIGN.md D15):
//! [`super::activity`] asks only when a pane has gone quiet, with one
//! `capture-pane` of the screen, and hands the text here. Each agent has
//! three optional regular expressions, tried on the last lines of the
//! screen (trailing spaces cut; multi-line mode: `^` and `$` match at each
//! line) in this order:
//!
//! 1. `waiting`: the agent asks the user something (a permission prompt, a
//!    question): [`AgentStatus::Waiting`];
//! 2. `working`: the agent shows it is busy although nothing moved for a
//!    while (Claude's and Codex's "esc to interrupt"): [`AgentStatus::Working`];
//! 3. `prompt`: the agent's idle prompt. When it is set, only a match means
//!    [`AgentStatus::Idle`] and a screen that matches none of the three is
//!    [`AgentStatus::Unknown`]; when it is not set, a quiet screen that asks
//!    nothing is idle.
//!
//! The shipped patterns, and where each string came from (they change with
//! the agents' UIs; users override them in `[agents.NAME]`):
//!
//! - Claude Code: `No, and tell Claude what to do differently` (the
//!   permission dialog's last choice; claude-squad's `session/tmux/tmux.go`
//!   looks for it), `Do you want to proceed?` / `Do you want to make this
//!   edit` (the dialog's question, as peers' fixtures show), `Enter to
//!   confirm · Esc to cancel` (the selection dialogs); busy: `esc to
//!   interrupt` (the status line while a turn runs; uzi and several peers
//!   use it, and the turn's summary line does not contain it).
//! - Codex CLI: `Would you like to run the following command?`, `No, and
//!   tell Codex what to do differently` (its approval overlay); busy: `esc
//!   to interrupt` (`Working (12s • esc to interrupt)`).
//! - Gemini CLI: `Yes, allow once` (its tool confirmation; claude-squad
//!   looks for it), `Allow execution`; busy: `esc to cancel` (its loading
//!   indicator: `(esc to cancel, 12s)`).
//! - aider: `(Y)es/(N)o` (its confirmations, `... (Y)es/(N)o [Yes]:`;
//!   claude-squad looks for `(Y)es/(N)o/(D)on't ask again`); no busy marker
//!   (aider's spinner moves while it waits for the model).
//! - opencode: `Allow once` / `Reject` (its permission prompt); busy: `esc
//!   interrupt` (its footer while a turn runs). Least sure of the five: not
//!   checked against a running opencode.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::model::{AgentKind, AgentStatus};

/// How many of the screen's last non-blank lines the patterns see: the
/// agents draw their prompt, dialog and busy line at the bottom, and an old
/// dialog scrolled up must not count.
pub const DEFAULT_LINES: usize = 25;

/// `[agents.NAME]`: one agent's screen patterns, as written in the config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentPatternsConfig {
    /// The idle prompt (a regex). Unset: a quiet screen that asks nothing
    /// is idle.
    pub prompt: Option<String>,
    /// The agent asks the user something (a regex).
    pub waiting: Option<String>,
    /// The agent is busy though quiet (a regex).
    pub working: Option<String>,
    /// How many of the last non-blank lines are looked at.
    pub lines: Option<usize>,
    /// The key that submits a typed message (tmux's key name; default
    /// `Enter`). Not a screen pattern: read by `crate::messages::pane`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_key: Option<String>,
    /// The command that resumes the agent's conversation on `restore`, with
    /// `{resume_id}` (`claude --resume {resume_id}`); see
    /// `crate::sessions::resume`. Not a screen pattern, but the agent's
    /// table is the place for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

/// A pattern in the config that is not a regular expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[agents.{agent}] {key} is not a regular expression: {reason}")]
pub struct PatternError {
    pub agent: String,
    pub key: &'static str,
    pub reason: String,
}

/// One agent's compiled patterns.
#[derive(Debug, Clone)]
pub struct Patterns {
    prompt: Option<Regex>,
    waiting: Option<Regex>,
    working: Option<Regex>,
    lines: usize,
}

impl Patterns {
    fn builtin(waiting: &str, working: Option<&str>) -> Self {
        Self {
            prompt: None,
            waiting: Some(compile(waiting).expect("the shipped patterns compile")),
            working: working.map(|w| compile(w).expect("the shipped patterns compile")),
            lines: DEFAULT_LINES,
        }
    }

    /// No patterns: quiet means idle.
    fn none() -> Self {
        Self {
            prompt: None,
            waiting: None,
            working: None,
            lines: DEFAULT_LINES,
        }
    }

    /// The status the settled `screen` shows (see the module doc).
    pub fn classify(&self, screen: &str) -> AgentStatus {
        let tail = last_lines(screen, self.lines);
        let matches = |re: &Option<Regex>| re.as_ref().is_some_and(|re| re.is_match(&tail));
        if matches(&self.waiting) {
            AgentStatus::Waiting
        } else if matches(&self.working) {
            AgentStatus::Working
        } else if self.prompt.is_none() || matches(&self.prompt) {
            AgentStatus::Idle
        } else {
            AgentStatus::Unknown
        }
    }
}

/// A pattern in multi-line mode: `^` and `$` are a line's start and end.
fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .multi_line(true)
        // A pattern from the config must not make every look slow.
        .size_limit(1 << 20)
        .build()
}

/// The last `n` non-blank lines of `screen`, trailing spaces cut (tmux pads
/// lines of a TUI with them), joined by newlines.
fn last_lines(screen: &str, n: usize) -> String {
    let mut lines: Vec<&str> = screen
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .collect();
    let skip = lines.len().saturating_sub(n);
    lines.drain(..skip);
    lines.join("\n")
}

/// Every agent's patterns: the shipped ones, with the config's overrides.
#[derive(Debug, Clone)]
pub struct PromptBook {
    by_agent: BTreeMap<String, Patterns>,
    /// For a pane whose agent is not known (or named in the config without
    /// patterns).
    fallback: Patterns,
}

impl Default for PromptBook {
    fn default() -> Self {
        Self::shipped()
    }
}

impl PromptBook {
    /// The shipped patterns (see the module doc for their sources).
    pub fn shipped() -> Self {
        let mut by_agent = BTreeMap::new();
        let mut add = |kind: AgentKind, patterns| {
            by_agent.insert(kind.as_str().to_owned(), patterns);
        };
        add(
            AgentKind::Claude,
            Patterns::builtin(
                r"No, and tell Claude what to do differently|Do you want to (proceed|make this edit|create)|Enter to confirm · Esc to cancel",
                Some(r"(?i)esc to interrupt"),
            ),
        );
        add(
            AgentKind::Codex,
            Patterns::builtin(
                r"Would you like to run the following command\?|No, and tell Codex what to do differently|Allow command\?",
                Some(r"(?i)esc to interrupt"),
            ),
        );
        add(
            AgentKind::Gemini,
            Patterns::builtin(
                r"Yes, allow once|Allow execution",
                Some(r"(?i)esc to cancel"),
            ),
        );
        add(AgentKind::Aider, Patterns::builtin(r"\(Y\)es/\(N\)o", None));
        add(
            AgentKind::Opencode,
            Patterns::builtin(
                r"Allow once|Allow always|\bReject\b",
                Some(r"(?i)esc interrupt"),
            ),
        );
        Self {
            by_agent,
            fallback: Patterns::none(),
        }
    }

    /// The shipped patterns with `[agents.NAME]` applied: a key given
    /// replaces the shipped pattern of that key (an empty string removes
    /// it); an agent the shipped set does not know gets only its own.
    pub fn with_overrides(
        overrides: &BTreeMap<String, AgentPatternsConfig>,
    ) -> Result<Self, Vec<PatternError>> {
        let mut book = Self::shipped();
        let mut errors = Vec::new();
        for (agent, config) in overrides {
            let patterns = book
                .by_agent
                .entry(agent.clone())
                .or_insert_with(Patterns::none);
            let mut set =
                |key: &'static str, given: &Option<String>, slot: &mut Option<Regex>| match given
                    .as_deref()
                {
                    None => {}
                    Some("") => *slot = None,
                    Some(text) => match compile(text) {
                        Ok(re) => *slot = Some(re),
                        Err(err) => errors.push(PatternError {
                            agent: agent.clone(),
                            key,
                            reason: err.to_string(),
                        }),
                    },
                };
            set("prompt", &config.prompt, &mut patterns.prompt);
            set("waiting", &config.waiting, &mut patterns.waiting);
            set("working", &config.working, &mut patterns.working);
            if let Some(lines) = config.lines {
                patterns.lines = lines.max(1);
            }
        }
        if errors.is_empty() {
            Ok(book)
        } else {
            Err(errors)
        }
    }

    /// Every agent with patterns: the shipped ones and those the config
    /// names.
    pub fn agent_names(&self) -> impl Iterator<Item = &str> {
        self.by_agent.keys().map(String::as_str)
    }

    /// The patterns for a pane's agent.
    pub fn patterns(&self, kind: Option<&AgentKind>) -> &Patterns {
        kind.and_then(|kind| self.by_agent.get(kind.as_str()))
            .unwrap_or(&self.fallback)
    }

    /// The status `screen` shows for an agent of `kind`.
    pub fn classify(&self, kind: Option<&AgentKind>, screen: &str) -> AgentStatus {
        self.patterns(kind).classify(screen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAUDE_ASKS: &str = "\
╭──────────────────────────────────────────╮
│ Bash command                             │
│   git status                             │
│ Do you want to proceed?                  │
│ ❯ 1. Yes                                 │
│   2. No, and tell Claude what to do differently (esc) │
╰──────────────────────────────────────────╯
";
    const CLAUDE_BUSY: &str = "\
> fix the bug

✻ Pondering… (12s · ↑ 1.2k tokens · esc to interrupt)

╭──────────────────────────────────────────╮
│ >                                        │
╰──────────────────────────────────────────╯
";
    const CLAUDE_IDLE: &str = "\
⏺ Done: the bug is fixed.

╭──────────────────────────────────────────╮
│ >                                        │
╰──────────────────────────────────────────╯
  ? for shortcuts
";

    #[test]
    fn claude_screens_are_read_as_waiting_working_idle() {
        let book = PromptBook::shipped();
        let claude = Some(&AgentKind::Claude);
        assert_eq!(book.classify(claude, CLAUDE_ASKS), AgentStatus::Waiting);
        assert_eq!(book.classify(claude, CLAUDE_BUSY), AgentStatus::Working);
        assert_eq!(book.classify(claude, CLAUDE_IDLE), AgentStatus::Idle);
    }

    #[test]
    fn the_other_agents_dialogs_are_waiting() {
        let book = PromptBook::shipped();
        let cases = [
            (
                AgentKind::Codex,
                "Would you like to run the following command?\n  $ ls\n> 1. Yes, proceed",
            ),
            (
                AgentKind::Gemini,
                "? Shell ls\n ● 1. Yes, allow once\n   2. Yes, allow always",
            ),
            (
                AgentKind::Aider,
                "Add src/main.rs to the chat? (Y)es/(N)o/(D)on't ask again [Yes]:",
            ),
            (
                AgentKind::Opencode,
                "Permission required: bash ls\n  Allow once   Allow always   Reject",
            ),
        ];
        for (kind, screen) in cases {
            assert_eq!(
                book.classify(Some(&kind), screen),
                AgentStatus::Waiting,
                "{kind}"
            );
        }
        assert_eq!(
            book.classify(Some(&AgentKind::Gemini), "⠏ Thinking (esc to cancel, 3s)"),
            AgentStatus::Working
        );
    }

    #[test]
    fn an_old_dialog_scrolled_up_does_not_count() {
        let mut screen = String::from(CLAUDE_ASKS);
        for i in 0..40 {
            screen.push_str(&format!("output line {i}\n"));
        }
        assert_eq!(
            PromptBook::shipped().classify(Some(&AgentKind::Claude), &screen),
            AgentStatus::Idle
        );
    }

    #[test]
    fn an_unknown_agent_is_idle_when_quiet() {
        let book = PromptBook::shipped();
        assert_eq!(book.classify(None, "$ "), AgentStatus::Idle);
        let other = AgentKind::Other("mybot".into());
        assert_eq!(book.classify(Some(&other), "anything"), AgentStatus::Idle);
    }

    #[test]
    fn overrides_replace_add_and_remove_patterns() {
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "mybot".to_owned(),
            AgentPatternsConfig {
                prompt: Some(r"^mybot>$".into()),
                waiting: Some(r"\[y/n\]".into()),
                ..Default::default()
            },
        );
        overrides.insert(
            "claude".to_owned(),
            AgentPatternsConfig {
                working: Some(String::new()),
                ..Default::default()
            },
        );
        let book = PromptBook::with_overrides(&overrides).unwrap();
        let mybot = AgentKind::Other("mybot".into());
        assert_eq!(
            book.classify(Some(&mybot), "run it? [y/n]"),
            AgentStatus::Waiting
        );
        assert_eq!(
            book.classify(Some(&mybot), "done\nmybot> "),
            AgentStatus::Idle
        );
        // With a prompt pattern, a screen that matches nothing is not a guess.
        assert_eq!(
            book.classify(Some(&mybot), "compiling…"),
            AgentStatus::Unknown
        );
        // The busy marker removed: Claude's busy screen reads idle.
        assert_eq!(
            book.classify(Some(&AgentKind::Claude), CLAUDE_BUSY),
            AgentStatus::Idle
        );
        // The other shipped patterns stay.
        assert_eq!(
            book.classify(Some(&AgentKind::Claude), CLAUDE_ASKS),
            AgentStatus::Waiting
        );
    }

    #[test]
    fn a_bad_regex_is_named_with_its_agent_and_key() {
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "claude".to_owned(),
            AgentPatternsConfig {
                waiting: Some("(unclosed".into()),
                ..Default::default()
            },
        );
        let errors = PromptBook::with_overrides(&overrides).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("[agents.claude] waiting is not a regular expression")
        );
    }

    #[test]
    fn hostile_screens_are_read_without_panics() {
        let book = PromptBook::shipped();
        let huge = "x".repeat(1 << 20);
        let nasty = "\u{1b}[31m\0#{pane_id}#(rm -rf /);\n\u{fffd}";
        for screen in [huge.as_str(), nasty, ""] {
            for kind in AgentKind::KNOWN {
                let _ = book.classify(Some(&kind), screen);
            }
        }
    }
}
