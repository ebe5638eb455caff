//! The configuration as the program uses it: the MCP servers discovered,
//! the reactor's settings, and every problem and warning with either,
//! made by one loader.
//!
//! The layers below it each know one thing: [`config`](crate::config) the
//! file's schema, [`mcp::discovery`](crate::mcp::discovery) where servers
//! are defined (config.toml and Claude's files), and
//! [`agent::settings`](crate::agent::settings) what the reactor's sections
//! mean. None of them imports this module, so there is no cycle; the CLI
//! (`daemon`, `reload`, `config check`/`show`, `mcp ...`) asks here and
//! nowhere else, so `config check` judges exactly what the daemon would run.

use std::path::PathBuf;

use crate::agent::settings::{ReactorSettings, SettingsError};
use crate::config::Problem;
use crate::mcp::discovery::{Discovered, DiscoveryInput, discover};

/// Everything the configuration says, checked.
#[derive(Debug, Clone)]
pub struct Configuration {
    /// The MCP servers found and skipped, the files read, the parsed
    /// `config.toml`. Its `problems` and `warnings` are empty: they are
    /// moved to this struct's, beside the reactor's.
    pub servers: Discovered,
    /// The reactor's settings; with no actions when they could not be made
    /// (then a problem says why).
    pub reactor: ReactorSettings,
    /// The pane-activity fallback's screen patterns (`[agents.NAME]`): the
    /// shipped ones when the overrides could not be compiled (then a
    /// problem says why).
    pub prompts: crate::status::prompt::PromptBook,
    /// `[notify]`; the defaults when it is invalid (then a problem says why).
    pub notify: crate::notify::NotifySettings,
    /// `[messages]`; the defaults when it is invalid (then a problem says why).
    pub messages: crate::messages::Policy,
    /// `[delivery]` and the agents' `submit_key`; the defaults when they
    /// are invalid (then a problem says why).
    pub delivery: crate::messages::pane::Delivery,
    /// The agents' resume commands (`[agents.NAME] resume`); the shipped
    /// ones when one is invalid (then a problem says why).
    pub resume: crate::sessions::resume::ResumeBook,
    /// Errors: `config check` exits 1 and the daemon will not run them.
    pub problems: Vec<Problem>,
    /// Worth knowing, not errors in our own file.
    pub warnings: Vec<Problem>,
}

/// Why the configuration could not even be looked for.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot find the config files: {0}")]
    Environment(#[source] std::io::Error),
    #[error("config discovery stopped unexpectedly: {0}")]
    Stopped(#[source] tokio::task::JoinError),
}

impl Configuration {
    /// Reads and checks everything, blocking (it reads files and may pause
    /// to re-read one an editor is rewriting).
    pub fn discover(input: &DiscoveryInput) -> Configuration {
        let mut servers = discover(input);
        let mut problems = std::mem::take(&mut servers.problems);
        let warnings = std::mem::take(&mut servers.warnings);
        let reactor = match ReactorSettings::from_config(&servers.config) {
            Ok(settings) => settings,
            Err(SettingsError::Invalid { key, message }) => {
                // The sections come from config.toml, whatever else was read.
                problems.push(Problem::new(&servers.config_path, key, message));
                ReactorSettings::default()
            }
        };
        let prompts =
            match crate::status::prompt::PromptBook::with_overrides(&servers.config.agents) {
                Ok(book) => book,
                Err(errors) => {
                    for err in errors {
                        let key = format!("agents.{}.{}", err.agent, err.key);
                        problems.push(Problem::new(&servers.config_path, key, err.reason));
                    }
                    crate::status::prompt::PromptBook::shipped()
                }
            };
        let notify = match crate::notify::NotifySettings::from_section(&servers.config.notify) {
            Ok(settings) => settings,
            Err(messages) => {
                for message in messages {
                    problems.push(Problem::new(&servers.config_path, "notify", message));
                }
                crate::notify::NotifySettings::default()
            }
        };
        let messages = match crate::messages::Policy::from_section(&servers.config.messages) {
            Ok(policy) => policy,
            Err(found) => {
                for message in found {
                    problems.push(Problem::new(&servers.config_path, "messages", message));
                }
                crate::messages::Policy::default()
            }
        };
        let delivery = match crate::messages::pane::Delivery::from_config(&servers.config) {
            Ok(delivery) => delivery,
            Err(errors) => {
                for err in errors {
                    problems.push(Problem::new(&servers.config_path, err.key, err.message));
                }
                crate::messages::pane::Delivery::default()
            }
        };
        let resume =
            match crate::sessions::resume::ResumeBook::with_overrides(&servers.config.agents) {
                Ok(book) => book,
                Err(errors) => {
                    for err in errors {
                        let key = format!("agents.{}.resume", err.agent);
                        problems.push(Problem::new(&servers.config_path, key, err.reason));
                    }
                    crate::sessions::resume::ResumeBook::default()
                }
            };
        Configuration {
            servers,
            reactor,
            prompts,
            notify,
            messages,
            delivery,
            resume,
            problems,
            warnings,
        }
    }

    /// [`Configuration::discover`] for this process (its home, working
    /// directory and environment; `config_file` is `--config`), off the
    /// async threads.
    pub async fn load(config_file: Option<PathBuf>) -> Result<Configuration, LoadError> {
        let input = DiscoveryInput::from_process(config_file).map_err(LoadError::Environment)?;
        tokio::task::spawn_blocking(move || Configuration::discover(&input))
            .await
            .map_err(LoadError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::agent::trigger::Trigger;

    fn load(text: &str) -> Configuration {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, text).unwrap();
        Configuration::discover(&DiscoveryInput {
            home: dir.path().to_owned(),
            cwd: dir.path().to_owned(),
            config_file: Some(file),
            vars: HashMap::new(),
        })
    }

    #[test]
    fn one_load_gives_servers_settings_problems_and_warnings() {
        struct Case {
            text: &'static str,
            servers: &'static [&'static str],
            problems: &'static [&'static str],
            warnings: usize,
            created: &'static [&'static str],
        }
        let cases = [
            Case {
                text: "",
                servers: &["builtin"],
                problems: &[],
                warnings: 0,
                created: &["register_goal"],
            },
            Case {
                text: "[mcp]\nimport_claude = false\n[reactor]\npreset = \"none\"\n\
                       [servers.m]\ncommand = \"m\"\n\
                       [[on.session-created]]\nserver = \"m\"\ntool = \"note\"\n",
                servers: &["builtin", "m"],
                problems: &[],
                warnings: 0,
                created: &["note"],
            },
            // The reactor's problems join the file's; the settings fall
            // back to none rather than half of them.
            Case {
                text: "[reactor]\npreset = \"nope\"\n[servers.bad]\ncomand = \"x\"\n",
                servers: &["builtin"],
                problems: &["servers.bad.comand", "reactor.preset"],
                warnings: 0,
                created: &[],
            },
            Case {
                text: "[[on.session-exploded]]\nserver = \"builtin\"\ntool = \"t\"\n",
                servers: &["builtin"],
                problems: &["on"],
                warnings: 0,
                created: &[],
            },
            // A server whose variable is unset is skipped with a warning.
            Case {
                text: "[servers.w]\nurl = \"${NOT_SET_ANYWHERE}/mcp\"\n",
                servers: &["builtin"],
                problems: &[],
                warnings: 1,
                created: &["register_goal"],
            },
        ];
        for case in cases {
            let loaded = load(case.text);
            let names: Vec<&str> = loaded
                .servers
                .servers
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            assert_eq!(names, case.servers, "{}", case.text);
            let keys: Vec<&str> = loaded.problems.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, case.problems, "{}", case.text);
            assert!(
                loaded
                    .problems
                    .iter()
                    .all(|p| p.file.ends_with("config.toml")),
                "{:?}",
                loaded.problems
            );
            assert_eq!(
                loaded.warnings.len(),
                case.warnings,
                "{:?}",
                loaded.warnings
            );
            assert!(loaded.servers.problems.is_empty() && loaded.servers.warnings.is_empty());
            let created: Vec<&str> = loaded
                .reactor
                .actions
                .get(&Trigger::SessionCreated)
                .into_iter()
                .flatten()
                .map(|s| s.tool.as_str())
                .collect();
            assert_eq!(created, case.created, "{}", case.text);
        }
    }
}
