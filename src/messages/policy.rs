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
//! ```
//!
//! A body with a NUL byte is refused: a terminal cannot carry one (tmux
//! and the pane's line discipline drop or misread it) and SQLite text
//! would cut it short, so it could not arrive byte-exact.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

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
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            scope: Scope::Group,
            max_body: DEFAULT_MAX_BODY,
            rate: DEFAULT_RATE,
            expiry: DEFAULT_EXPIRY,
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

/// The per-sender rate limit: a sliding minute per sender, in memory (a
/// restart forgives).
#[derive(Debug, Default)]
pub struct RateLimiter {
    sent: HashMap<Sender, VecDeque<Instant>>,
}

impl RateLimiter {
    /// Counts `count` messages from `from` now, or refuses all of them if
    /// they would take it over `rate` in the last minute.
    pub fn admit(
        &mut self,
        from: Sender,
        count: usize,
        rate: u32,
        now: Instant,
    ) -> Result<(), Refusal> {
        if rate == 0 {
            return Ok(());
        }
        let window = self.sent.entry(from).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            window.pop_front();
        }
        if window.len() + count > rate as usize {
            return Err(Refusal::new(
                "messages.rate",
                format!(
                    "{from} has sent {} messages in the last minute, and the limit is {rate}; \
                     wait, or raise `rate` under [messages] in config.toml (0 = no limit)",
                    window.len()
                ),
            ));
        }
        window.extend(std::iter::repeat_n(now, count));
        Ok(())
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
    fn the_rate_limit_counts_a_sliding_minute_per_sender() {
        let mut limiter = RateLimiter::default();
        let t0 = Instant::now();
        let a = Sender::Session(SessionId(1));
        let b = Sender::Session(SessionId(2));
        limiter.admit(a, 2, 3, t0).unwrap();
        assert_eq!(
            limiter.admit(a, 2, 3, t0).unwrap_err().rule,
            "messages.rate"
        );
        limiter.admit(a, 1, 3, t0).unwrap();
        limiter.admit(b, 3, 3, t0).unwrap();
        limiter
            .admit(a, 3, 3, t0 + Duration::from_secs(60))
            .unwrap();
        limiter.admit(a, 1000, 0, t0).unwrap();
    }
}
