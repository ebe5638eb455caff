//! The reactor's settings, made from the config file's `[reactor]`,
//! `[[on.<event>]]` and `[context]` sections, with every check a person
//! needs to see in `tmux-agent config check`.
//!
//! They are their own type, apart from the file's schema, because the
//! reactor needs them checked and resolved (presets expanded, patterns
//! compiled, defaults filled in), and because a reload swaps them whole:
//! the reactor reads one `Arc<ReactorSettings>` per event.

use std::time::Duration;

use super::actions::{self, ActionMap, ActionsError};
use super::context::CaptureOptions;
use crate::config::Config;

/// What the reactor needs to know besides the actions.
#[derive(Debug, Clone)]
pub struct ReactorSettings {
    pub actions: ActionMap,
    pub capture: CaptureOptions,
    /// Save a checkpoint of every attached session this often.
    pub checkpoint_interval: Option<Duration>,
    /// The most actions one MCP server may have waiting; past it new
    /// checkpoint calls to that server are dropped (never lifecycle calls,
    /// never another server's).
    pub max_pending: u64,
    /// The defaults for a session without `@agent-goal` / `@agent-type`.
    pub default_goal: String,
    pub default_type: String,
    /// How long delivered actions keep their payloads (`[outbox] keep`).
    pub outbox_keep: Duration,
}

/// `[outbox] keep` when the config says nothing.
pub const DEFAULT_OUTBOX_KEEP: Duration = Duration::from_secs(30 * 86_400);

impl Default for ReactorSettings {
    /// No actions at all: what a config with problems leaves (see
    /// [`crate::configuration`]); a config without a `[reactor]` section
    /// gets the builtin preset from [`ReactorSettings::from_config`].
    fn default() -> Self {
        Self {
            actions: ActionMap::new(),
            capture: CaptureOptions::default(),
            checkpoint_interval: None,
            max_pending: 10_000,
            default_goal: "tmux session {session}".to_owned(),
            default_type: "session".to_owned(),
            outbox_keep: DEFAULT_OUTBOX_KEEP,
        }
    }
}

impl ReactorSettings {
    /// The MCP servers the actions name, sorted: one dispatcher each.
    pub fn named_servers(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .actions
            .values()
            .flatten()
            .map(|s| s.server.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Builds the settings from the config file's sections, checked; the
    /// error names the key at fault.
    pub fn from_config(config: &Config) -> Result<ReactorSettings, SettingsError> {
        let section = &config.reactor;
        let preset_name = section.preset.as_deref().unwrap_or(DEFAULT_PRESET);
        let server = section
            .server
            .clone()
            .unwrap_or_else(|| preset_server(preset_name).to_owned());
        let invalid = |key: &str, err: ActionsError| SettingsError::Invalid {
            key: key.to_owned(),
            message: err.to_string(),
        };
        let preset =
            actions::preset(preset_name, &server).map_err(|e| invalid("reactor.preset", e))?;
        let actions = actions::combine(preset, &config.on).map_err(|e| invalid("on", e))?;

        let redact = redact_patterns(&config.context)?;
        let defaults = ReactorSettings::default();
        let capture_defaults = CaptureOptions::default();
        Ok(ReactorSettings {
            actions,
            capture: CaptureOptions {
                capture_lines: config
                    .context
                    .capture_lines
                    .unwrap_or(capture_defaults.capture_lines),
                max_bytes: config
                    .context
                    .max_bytes
                    .unwrap_or(capture_defaults.max_bytes),
                redact,
            },
            checkpoint_interval: section
                .checkpoint_interval
                .map(|d| d.0)
                .filter(|d| !d.is_zero())
                .map(|d| d.max(Duration::from_secs(1))),
            max_pending: section.max_pending.unwrap_or(defaults.max_pending),
            default_goal: section
                .default_goal
                .clone()
                .unwrap_or(defaults.default_goal),
            default_type: section
                .default_type
                .clone()
                .unwrap_or(defaults.default_type),
            outbox_keep: config
                .outbox
                .keep
                .map(|d| d.0)
                .unwrap_or(defaults.outbox_keep),
        })
    }
}

/// The preset used when the config names none.
pub const DEFAULT_PRESET: &str = "builtin";

/// Errors that make the settings unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

/// The default MCP server of a preset.
fn preset_server(preset: &str) -> &'static str {
    match preset {
        "server-memory" => "memory",
        "agent-runtime" => "agent-runtime",
        _ => "builtin",
    }
}

/// `[context] redact`, compiled: what captured pane text loses (saved
/// contexts, `look`).
pub fn redact_patterns(
    context: &crate::config::ContextSection,
) -> Result<Vec<regex::Regex>, SettingsError> {
    context
        .redact
        .iter()
        .enumerate()
        .map(|(i, pattern)| {
            regex::Regex::new(pattern).map_err(|err| SettingsError::Invalid {
                key: format!("context.redact[{i}]"),
                message: format!("not a valid regular expression: {err}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::agent::trigger::Trigger;

    /// The config and every problem with it: the file's and the settings'.
    fn parse(text: &str) -> (Config, Vec<String>) {
        let (config, problems) = crate::config::parse(Path::new("c.toml"), text);
        let mut problems: Vec<String> = problems.into_iter().map(|p| p.to_string()).collect();
        if let Err(err) = ReactorSettings::from_config(&config) {
            problems.push(format!("c.toml: {err}"));
        }
        (config, problems)
    }

    #[test]
    fn defaults_to_the_builtin_preset() {
        let (config, problems) = parse("");
        assert!(problems.is_empty(), "{problems:?}");
        let settings = ReactorSettings::from_config(&config).unwrap();
        assert_eq!(
            settings.actions[&Trigger::SessionCreated][0].tool,
            "register_goal"
        );
        assert_eq!(
            settings.actions[&Trigger::SessionCreated][0].server,
            "builtin"
        );
        assert_eq!(settings.capture.capture_lines, 0);
    }

    #[test]
    fn mistakes_name_their_key() {
        let (_, problems) = parse("[reactor]\npreset = \"nope\"\n");
        assert!(
            problems[0].contains("c.toml: reactor.preset: unknown preset"),
            "{problems:?}"
        );
        let (_, problems) = parse("[context]\nredact = [\"(\"]\n");
        assert!(problems[0].contains("context.redact[0]"), "{problems:?}");
        let (_, problems) = parse(
            "[[on.session-created]]\nserver = \"x\"\ntool = \"t\"\nargs = { a = \"{nope}\" }\n",
        );
        assert!(problems[0].contains("{nope}"), "{problems:?}");
        let (_, problems) = parse("[[on.session-created]]\nserver = \"x\"\n");
        assert!(problems[0].contains("on"), "{problems:?}");
        let (_, problems) = parse("[[on.save]]\nserver = \"x\"\ntool = \"t\"\n");
        assert!(
            problems[0].contains("c.toml: on: on.save: unknown event"),
            "{problems:?}"
        );
    }

    #[test]
    fn named_servers_are_sorted_and_unique() {
        let (config, problems) = parse(
            "[[on.checkpoint]]\nserver = \"zeta\"\ntool = \"t\"\n\
             [[on.session-closed]]\nserver = \"alpha\"\ntool = \"t\"\n\
             [[on.session-detached]]\nserver = \"zeta\"\ntool = \"t\"\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let settings = ReactorSettings::from_config(&config).unwrap();
        assert_eq!(settings.named_servers(), ["alpha", "builtin", "zeta"]);
        assert!(ReactorSettings::default().named_servers().is_empty());
    }

    #[test]
    fn presets_can_point_at_another_server() {
        let (config, problems) = parse("[reactor]\npreset = \"server-memory\"\nserver = \"mem\"\n");
        assert!(problems.is_empty(), "{problems:?}");
        let settings = ReactorSettings::from_config(&config).unwrap();
        assert_eq!(settings.actions[&Trigger::SessionDetached][0].server, "mem");
        assert_eq!(
            settings.actions[&Trigger::SessionDetached][0].tool,
            "add_observations"
        );
    }
}
