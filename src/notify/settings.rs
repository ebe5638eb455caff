//! `[notify]`: which agent statuses notify the user, and how.
//!
//! ```toml
//! [notify]
//! on = ["waiting"]          # the statuses that notify (default: waiting)
//! display = true            # display-message on clients attached to OTHER sessions
//! display_time = "5s"       # how long the message stays (0: until a key)
//! bell = true               # the terminal bell on those clients
//! desktop = true            # notify-send, where it is installed
//! webhook = "https://example.net/hook"   # POST of the event as JSON (unset: none)
//! webhook_timeout = "5s"
//! rate_limit = "30s"        # at most one notification per session (or group) in this
//! rate_limit_per = "session"   # or "group": a group's sessions share one limit
//! coordinator_only = false  # in a group, only its coordinator's agents notify
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigDuration;
use crate::status::AgentStatus;

/// `[notify]` as written in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    pub on: Option<Vec<String>>,
    pub display: Option<bool>,
    pub display_time: Option<ConfigDuration>,
    pub bell: Option<bool>,
    pub desktop: Option<bool>,
    pub webhook: Option<String>,
    pub webhook_timeout: Option<ConfigDuration>,
    pub rate_limit: Option<ConfigDuration>,
    pub rate_limit_per: Option<String>,
    pub coordinator_only: Option<bool>,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitPer {
    Session,
    /// A session in a group counts as its group; one in none as itself.
    Group,
}

/// `[notify]` checked, with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    pub on: Vec<AgentStatus>,
    pub display: bool,
    pub display_time: Duration,
    pub bell: bool,
    pub desktop: bool,
    pub webhook: Option<String>,
    pub webhook_timeout: Duration,
    pub rate_limit: Duration,
    pub rate_limit_per: RateLimitPer,
    pub coordinator_only: bool,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            on: vec![AgentStatus::Waiting],
            display: true,
            display_time: Duration::from_secs(5),
            bell: true,
            desktop: true,
            webhook: None,
            webhook_timeout: Duration::from_secs(5),
            rate_limit: Duration::from_secs(30),
            rate_limit_per: RateLimitPer::Session,
            coordinator_only: false,
        }
    }
}

impl NotifySettings {
    /// Checks `section`; every problem is reported, each naming its key.
    pub fn from_section(section: &NotifySection) -> Result<Self, Vec<String>> {
        let defaults = Self::default();
        let mut problems = Vec::new();
        let on = match &section.on {
            None => defaults.on,
            Some(names) => names
                .iter()
                .filter_map(|name| match name.parse::<AgentStatus>() {
                    Ok(status) => Some(status),
                    Err(err) => {
                        problems.push(format!("[notify] on: {err}"));
                        None
                    }
                })
                .collect(),
        };
        let rate_limit_per = match section.rate_limit_per.as_deref() {
            None | Some("session") => RateLimitPer::Session,
            Some("group") => RateLimitPer::Group,
            Some(other) => {
                problems.push(format!(
                    "[notify] rate_limit_per: {other:?} is neither \"session\" nor \"group\""
                ));
                RateLimitPer::Session
            }
        };
        let webhook = section.webhook.clone().filter(|url| !url.is_empty());
        if let Some(url) = &webhook
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push(format!(
                "[notify] webhook: {url:?} is not an http:// or https:// URL"
            ));
        }
        let settings = Self {
            on,
            display: section.display.unwrap_or(defaults.display),
            display_time: section.display_time.map_or(defaults.display_time, |d| d.0),
            bell: section.bell.unwrap_or(defaults.bell),
            desktop: section.desktop.unwrap_or(defaults.desktop),
            webhook,
            webhook_timeout: section
                .webhook_timeout
                .map_or(defaults.webhook_timeout, |d| d.0),
            rate_limit: section.rate_limit.map_or(defaults.rate_limit, |d| d.0),
            rate_limit_per,
            coordinator_only: section
                .coordinator_only
                .unwrap_or(defaults.coordinator_only),
        };
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_section_is_the_defaults() {
        assert_eq!(
            NotifySettings::from_section(&NotifySection::default()),
            Ok(NotifySettings::default())
        );
    }

    #[test]
    fn every_bad_key_is_reported() {
        let section: NotifySection = toml::from_str(
            r#"
            on = ["waiting", "sleeping"]
            rate_limit_per = "window"
            webhook = "ftp://x"
            "#,
        )
        .unwrap();
        let problems = NotifySettings::from_section(&section).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("sleeping"));
    }

    #[test]
    fn everything_can_be_turned_off() {
        let section: NotifySection = toml::from_str(
            r#"
            on = []
            display = false
            bell = false
            desktop = false
            rate_limit = 0
            "#,
        )
        .unwrap();
        let settings = NotifySettings::from_section(&section).unwrap();
        assert!(settings.on.is_empty() && !settings.display && !settings.bell && !settings.desktop);
        assert_eq!(settings.webhook, None);
        assert_eq!(settings.rate_limit, Duration::ZERO);
    }
}
