//! The command that brings an agent back with its own conversation on
//! `restore` (DESIGN.md D17): `claude --resume <id>` for Claude Code (the
//! id its `SessionStart` hook reported), `codex resume <id>` for Codex.
//!
//! Each agent's template is `[agents.NAME] resume` in the config, with the
//! shipped ones as defaults. A template is split into words as a shell
//! would (`shlex`), and `{resume_id}` is substituted inside the words as a
//! value: the words are the pane's argv, run by tmux without a shell, so an
//! id such as `x; touch /tmp/pwned` stays one argument and runs nothing.
//!
//! A pane whose agent has no template, or no resume id, is started with
//! the command it had (the agent's name when it had none: the agent was
//! typed at a shell): the agent starts fresh, and [`Resumed::Fresh`] says
//! so, for restore to tell.

use std::collections::BTreeMap;

use crate::status::prompt::AgentPatternsConfig;

/// The placeholder a template must use.
pub const PLACEHOLDER: &str = "{resume_id}";

/// The shipped templates: agents whose CLI resumes a conversation by id.
pub const SHIPPED: [(&str, &str); 2] = [
    ("claude", "claude --resume {resume_id}"),
    ("codex", "codex resume {resume_id}"),
];

/// The templates in force, by agent name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeBook {
    templates: BTreeMap<String, Vec<String>>,
}

/// A template that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[agents.{agent}] resume: {reason}")]
pub struct ResumeError {
    pub agent: String,
    pub reason: String,
}

/// The command a restored pane starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    /// Not an agent's pane: its own command (no words: the default shell).
    Plain(Vec<String>),
    /// The agent resumed with its conversation: an argv, run without a shell.
    Resumed { agent: String, argv: Vec<String> },
    /// The agent started fresh with the command it had, and why.
    Fresh {
        agent: String,
        command: Vec<String>,
        why: String,
    },
}

impl Resumed {
    /// What tmux is given after `--`: one word (a command line tmux's shell
    /// runs), several (an argv run directly), or none (the default shell).
    pub fn words(&self) -> Vec<String> {
        match self {
            Self::Plain(command) | Self::Fresh { command, .. } => command.clone(),
            Self::Resumed { argv, .. } => argv.clone(),
        }
    }
}

impl Default for ResumeBook {
    fn default() -> Self {
        Self::with_overrides(&BTreeMap::new()).expect("the shipped templates are valid")
    }
}

impl ResumeBook {
    /// The shipped templates with `[agents.NAME] resume` applied (an empty
    /// string removes an agent's template).
    pub fn with_overrides(
        agents: &BTreeMap<String, AgentPatternsConfig>,
    ) -> Result<Self, Vec<ResumeError>> {
        let mut given: BTreeMap<String, String> = SHIPPED
            .iter()
            .map(|(a, t)| (a.to_string(), t.to_string()))
            .collect();
        for (agent, config) in agents {
            if let Some(template) = &config.resume {
                given.insert(agent.clone(), template.clone());
            }
        }
        let mut templates = BTreeMap::new();
        let mut errors = Vec::new();
        for (agent, template) in given {
            if template.is_empty() {
                continue;
            }
            match parse(&template) {
                Ok(words) => {
                    templates.insert(agent, words);
                }
                Err(reason) => errors.push(ResumeError { agent, reason }),
            }
        }
        if errors.is_empty() {
            Ok(Self { templates })
        } else {
            Err(errors)
        }
    }

    /// What a pane that ran `command`, with `agent` in it and its
    /// `resume_id`, starts with on restore.
    pub fn command_for(
        &self,
        command: &[String],
        agent: Option<&str>,
        resume_id: Option<&str>,
    ) -> Resumed {
        let Some(agent) = agent else {
            return Resumed::Plain(command.to_vec());
        };
        let fresh_command = if command.is_empty() {
            vec![agent.to_owned()]
        } else {
            command.to_vec()
        };
        let fresh = |why: String| Resumed::Fresh {
            agent: agent.to_owned(),
            command: fresh_command.clone(),
            why,
        };
        let Some(words) = self.templates.get(agent) else {
            return fresh(format!(
                "no resume command for {agent} (set [agents.{agent}] resume)"
            ));
        };
        let Some(id) = resume_id.filter(|id| !id.is_empty()) else {
            return fresh("no resume id was reported (its SessionStart hook never ran)".into());
        };
        if id.chars().any(char::is_control) {
            return fresh("its resume id has control characters".into());
        }
        Resumed::Resumed {
            agent: agent.to_owned(),
            argv: words.iter().map(|w| w.replace(PLACEHOLDER, id)).collect(),
        }
    }
}

/// A template's words, checked: it splits as a shell command and uses
/// [`PLACEHOLDER`], and no other `{…}`.
fn parse(template: &str) -> Result<Vec<String>, String> {
    let words = shlex::split(template)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| format!("{template:?} is not a command line (unbalanced quotes?)"))?;
    if !words.iter().any(|w| w.contains(PLACEHOLDER)) {
        return Err(format!("{template:?} does not use {PLACEHOLDER}"));
    }
    for word in &words {
        let rest = word.replace(PLACEHOLDER, "");
        if let Some(at) = rest.find('{')
            && rest[at..].contains('}')
        {
            return Err(format!(
                "{template:?}: the only placeholder is {PLACEHOLDER}"
            ));
        }
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_agents_resume_by_id_and_the_id_stays_one_argument() {
        let book = ResumeBook::default();
        assert_eq!(
            book.command_for(&["claude".into()], Some("claude"), Some("8f3c2a1e")),
            Resumed::Resumed {
                agent: "claude".into(),
                argv: vec!["claude".into(), "--resume".into(), "8f3c2a1e".into()]
            }
        );
        assert_eq!(
            book.command_for(&[], Some("codex"), Some("t1")).words(),
            ["codex", "resume", "t1"]
        );
        let hostile = book.command_for(&[], Some("claude"), Some("x; touch /tmp/p $(id)"));
        assert_eq!(
            hostile.words(),
            ["claude", "--resume", "x; touch /tmp/p $(id)"]
        );
    }

    #[test]
    fn without_an_id_or_a_template_the_agent_starts_fresh_and_says_why() {
        let book = ResumeBook::default();
        let Resumed::Fresh { command, why, .. } = book.command_for(&[], Some("claude"), None)
        else {
            panic!("not fresh");
        };
        assert_eq!(command, ["claude"]);
        assert!(why.contains("no resume id"), "{why}");
        let Resumed::Fresh { command, why, .. } =
            book.command_for(&["aider --yes".into()], Some("aider"), Some("x"))
        else {
            panic!("not fresh");
        };
        assert_eq!(command, ["aider --yes"]);
        assert!(why.contains("[agents.aider] resume"), "{why}");
        assert_eq!(
            book.command_for(&["htop".into()], None, None).words(),
            ["htop"]
        );
        assert!(book.command_for(&[], None, None).words().is_empty());
    }

    #[test]
    fn templates_are_checked() {
        let with = |agent: &str, t: &str| {
            let mut agents = BTreeMap::new();
            agents.insert(
                agent.to_owned(),
                AgentPatternsConfig {
                    resume: Some(t.into()),
                    ..Default::default()
                },
            );
            ResumeBook::with_overrides(&agents)
        };
        let book = with("gemini", "gemini --resume={resume_id}").unwrap();
        assert_eq!(
            book.command_for(&[], Some("gemini"), Some("g")).words(),
            ["gemini", "--resume=g"]
        );
        let err = with("claude", "claude --continue").unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "[agents.claude] resume: \"claude --continue\" does not use {resume_id}"
        );
        assert!(with("x", "x '{resume_id}").is_err());
        assert!(with("x", "x {resume_id} {cwd}").is_err());
        let none = with("claude", "").unwrap();
        assert!(matches!(
            none.command_for(&[], Some("claude"), Some("a")),
            Resumed::Fresh { .. }
        ));
    }
}
