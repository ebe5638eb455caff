//! `[messages]`: who may send to whom, how big a body may be, how fast one
//! sender may send, how long a message waits. Every refusal names the rule
//! that refused and how to change it. (How a pane is typed into, the
//! submit key included, is `[delivery]` and `[agents.NAME] submit_key`:
//! `super::pane`.)
//!
//! ```toml
//! [messages]
//! scope = "group"          # or "all": who may message whom; "all" also allows --all
//! max_body = 65536         # bytes of UTF-8; at most 1 MiB
//! rate = 60                # messages per sender per minute; 0 = no limit
//! expiry = "24h"           # a message not delivered by then is `expired`
//! keep = "3d"              # settled messages are deleted this long after they settled
//! ```
//!
//! The rate limit counts the sender's messages in the mailbox created in
//! the last minute ([`RATE_WINDOW`]), so a restarted daemon still refuses
//! a flood that began before it. (A `keep` under a minute lets it forget
//! messages that settled and were deleted within that minute.)
//!
//! A body with a NUL byte is refused: a terminal cannot carry one (tmux
//! and the pane's line discipline drop or misread it) and SQLite text
//! would cut it short, so it could not arrive byte-exact.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::envelope::Sender;
use crate::config::ConfigDuration;
use crate::control::SessionId;

/// The body cap when none is configured.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// The largest body cap that may be configured (the socket's request
/// limit is set from it).
pub const MAX_MAX_BODY: usize = 1024 * 1024;
/// Messages per sender per minute when no rate is configured.
pub const DEFAULT_RATE: u32 = 60;
/// How long a message waits for delivery when no expiry is configured.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// How long a settled message (`delivered`, `unverified`, `read`,
/// `failed`, `expired`) stays in the mailbox when no `keep` is configured:
/// long enough for `inbox` and `send --wait` to look back over a weekend.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(3 * 24 * 3600);
/// The window the rate limit counts in: `rate` is per this.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// `[messages]` as written in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<ConfigDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<ConfigDuration>,
}

/// Who may message whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// An agent may message the members of its own group; a person
    /// (`user`) anyone. `--all` is refused.
    Group,
    /// Anyone may message anyone, and `--all` is allowed.
    All,
}

/// `[messages]` checked, with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub scope: Scope,
    pub max_body: usize,
    /// Per sender per minute; 0 is no limit.
    pub rate: u32,
    pub expiry: Duration,
    /// How long a settled message is kept before it is deleted.
    pub keep: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            scope: Scope::Group,
            max_body: DEFAULT_MAX_BODY,
            rate: DEFAULT_RATE,
            expiry: DEFAULT_EXPIRY,
            keep: DEFAULT_KEEP,
        }
    }
}

/// Why a send was refused: the rule (a config key, or `body`) and a
/// sentence that says how to get past it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by {rule}: {message}")]
pub struct Refusal {
    pub rule: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(rule: &'static str, message: String) -> Self {
        Self { rule, message }
    }
}

impl Policy {
    /// Checks `[messages]`; each problem is one sentence.
    pub fn from_section(section: &MessagesSection) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut policy = Policy::default();
        match section.scope.as_deref() {
            None | Some("group") => {}
            Some("all") => policy.scope = Scope::All,
            Some(other) => problems.push(format!("scope {other:?} is not \"group\" or \"all\"")),
        }
        if let Some(max) = section.max_body {
            if max == 0 || max > MAX_MAX_BODY {
                problems.push(format!(
                    "max_body {max} is not between 1 and {MAX_MAX_BODY} bytes"
                ));
            } else {
                policy.max_body = max;
            }
        }
        if let Some(rate) = section.rate {
            policy.rate = rate;
        }
        if let Some(expiry) = section.expiry {
            if expiry.0.is_zero() {
                problems.push("expiry 0 would expire every message at once".to_owned());
            } else {
                policy.expiry = expiry.0;
            }
        }
        if let Some(keep) = section.keep {
            if keep.0.is_zero() {
                problems.push("keep 0 would delete every message as it settles".to_owned());
            } else {
                policy.keep = keep.0;
            }
        }
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(problems)
        }
    }

    /// The body rules: no NUL byte, at most `max_body` bytes, not empty.
    pub fn check_body(&self, body: &str) -> Result<(), Refusal> {
        if let Some(at) = body.find('\0') {
            return Err(Refusal::new(
                "body",
                format!(
                    "the body has a NUL byte at byte {at}; a terminal cannot carry one, so \
                     messages never hold NUL: remove it (e.g. `tr -d '\\0'`)"
                ),
            ));
        }
        if body.is_empty() {
            return Err(Refusal::new(
                "body",
                "the body is empty: say something".to_owned(),
            ));
        }
        if body.len() > self.max_body {
            return Err(Refusal::new(
                "messages.max_body",
                format!(
                    "the body is {} bytes, over the cap of {} (too-large); send less, or raise \
                     `max_body` under [messages] in config.toml (at most {MAX_MAX_BODY})",
                    body.len(),
                    self.max_body
                ),
            ));
        }
        Ok(())
    }

    /// `--all` is allowed only with `scope = "all"`.
    pub fn check_all(&self) -> Result<(), Refusal> {
        match self.scope {
            Scope::All => Ok(()),
            Scope::Group => Err(Refusal::new(
                "messages.scope",
                "sending to every session (--all) needs `scope = \"all\"` under [messages] in \
                 config.toml; or send to a group with --group G"
                    .to_owned(),
            )),
        }
    }

    /// Whether `from` (in group `from_group`) may message `to` (in
    /// `to_group`).
    pub fn check_pair(
        &self,
        from: Sender,
        from_group: Option<&str>,
        to: SessionId,
        to_group: Option<&str>,
    ) -> Result<(), Refusal> {
        if self.scope == Scope::All || from == Sender::User || from.session() == Some(to) {
            return Ok(());
        }
        match (from_group, to_group) {
            (Some(a), Some(b)) if a == b => Ok(()),
            _ => Err(Refusal::new(
                "messages.scope",
                format!(
                    "{} may message only the members of its own group ({}), and {to} is in {}; \
                     join them to one group (tmux-agent join), or set `scope = \"all\"` under \
                     [messages] in config.toml",
                    from,
                    from_group.map_or("it is in none".to_owned(), |g| format!("{g:?}")),
                    to_group.map_or("none".to_owned(), |g| format!("{g:?}")),
                ),
            )),
        }
    }
}

impl Policy {
    /// The rate limit: `from` has `sent` messages in the mailbox from the
    /// last [`RATE_WINDOW`] and asks for `count` more (one per recipient);
    /// all of them are refused if that is over `rate`.
    pub fn check_rate(&self, from: Sender, sent: u64, count: usize) -> Result<(), Refusal> {
        if self.rate == 0 || sent.saturating_add(count as u64) <= u64::from(self.rate) {
            return Ok(());
        }
        Err(Refusal::new(
            "messages.rate",
            format!(
                "{from} has sent {sent} messages in the last minute, and the limit is {}; \
                 wait, or raise `rate` under [messages] in config.toml (0 = no limit)",
                self.rate
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_group_64k_60_a_minute_24h() {
        let policy = Policy::from_section(&MessagesSection::default()).unwrap();
        assert_eq!(policy, Policy::default());
        assert_eq!(policy.max_body, 65536);
        assert_eq!(
            (policy.rate, policy.expiry),
            (60, Duration::from_secs(86_400))
        );
    }

    #[test]
    fn bad_sections_say_what_is_wrong() {
        let section = MessagesSection {
            scope: Some("world".into()),
            max_body: Some(0),
            expiry: Some(ConfigDuration(Duration::ZERO)),
            ..Default::default()
        };
        let problems = Policy::from_section(&section).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("\"world\""));
    }

    #[test]
    fn bodies_with_nul_or_over_the_cap_are_refused_with_the_rule() {
        let policy = Policy {
            max_body: 10,
            ..Policy::default()
        };
        assert_eq!(policy.check_body("a\0b").unwrap_err().rule, "body");
        assert_eq!(policy.check_body("").unwrap_err().rule, "body");
        let big = policy.check_body("01234567890").unwrap_err();
        assert_eq!(big.rule, "messages.max_body");
        assert!(big.message.contains("max_body"), "{big}");
        assert!(policy.check_body("0123456789").is_ok());
    }

    #[test]
    fn within_a_group_by_default_anyone_with_all() {
        let group = Policy::default();
        let s = |n| SessionId(n);
        let agent = Sender::Session(s(1));
        assert!(group.check_pair(agent, Some("g"), s(2), Some("g")).is_ok());
        assert!(
            group
                .check_pair(Sender::User, None, s(2), Some("g"))
                .is_ok()
        );
        assert!(
            group.check_pair(agent, None, s(1), None).is_ok(),
            "to itself"
        );
        let refused = group
            .check_pair(agent, Some("g"), s(2), Some("h"))
            .unwrap_err();
        assert_eq!(refused.rule, "messages.scope");
        assert!(refused.message.contains("scope = \"all\""), "{refused}");
        assert!(group.check_pair(agent, None, s(2), None).is_err());
        assert!(group.check_all().is_err());
        let all = Policy {
            scope: Scope::All,
            ..Policy::default()
        };
        assert!(all.check_pair(agent, Some("g"), s(2), Some("h")).is_ok());
        assert!(all.check_all().is_ok());
    }

    #[test]
    fn the_rate_limit_refuses_what_would_go_over_it_whole() {
        let policy = Policy {
            rate: 3,
            ..Policy::default()
        };
        let a = Sender::Session(SessionId(1));
        assert!(policy.check_rate(a, 0, 3).is_ok());
        assert!(policy.check_rate(a, 2, 1).is_ok());
        let refused = policy.check_rate(a, 2, 2).unwrap_err();
        assert_eq!(refused.rule, "messages.rate");
        assert!(refused.message.contains("sent 2 messages"), "{refused}");
        let unlimited = Policy {
            rate: 0,
            ..Policy::default()
        };
        assert!(unlimited.check_rate(a, u64::MAX, 1000).is_ok());
    }

    #[test]
    fn settled_messages_are_kept_three_days_by_default() {
        assert_eq!(Policy::default().keep, Duration::from_secs(3 * 86_400));
        let short = MessagesSection {
            keep: Some(ConfigDuration(Duration::ZERO)),
            ..Default::default()
        };
        assert!(Policy::from_section(&short).unwrap_err()[0].contains("keep"));
        let week = MessagesSection {
            keep: Some(ConfigDuration(Duration::from_secs(7 * 86_400))),
            ..Default::default()
        };
        assert_eq!(
            Policy::from_section(&week).unwrap().keep,
            Duration::from_secs(7 * 86_400)
        );
    }
}
