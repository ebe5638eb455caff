//! What to call on which event: the `[[on.<event>]]` entries of the config,
//! and the presets that ship for known MCP servers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::outbox::Priority;
use super::template::{self, TemplateError};

/// The events an action can be attached to: the lifecycle events, plus
/// `checkpoint`, which fires every `checkpoint_interval` while a session is
/// attached.
pub const TRIGGERS: [&str; 8] = [
    "session-created",
    "session-renamed",
    "session-attached",
    "session-detached",
    "session-closed",
    "client-attached",
    "client-detached",
    "checkpoint",
];

/// The placeholders every template may use. Names declared by a `keep`
/// become placeholders too.
pub const PLACEHOLDERS: [&str; 18] = [
    "session",
    "created_name",
    "session_id",
    "session_created",
    "session_key",
    "goal",
    "type",
    "group",
    "role",
    "goal_id",
    "context",
    "observations",
    "time",
    "host",
    "event",
    "client",
    "old_name",
    "idempotency_key",
];

/// One MCP call to make on an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// The MCP server's name, as configured (`builtin` is the built-in one).
    pub server: String,
    pub tool: String,
    /// The arguments: JSON with `{placeholders}` (see the README).
    #[serde(default = "empty_object")]
    pub args: Value,
    /// Values to keep from the result for later calls of the same session:
    /// placeholder name → path in the result (`goal_id = "$.id"`).
    /// `goal_id` is also shown in the session's `@agent-goal-id` option.
    #[serde(default)]
    pub keep: BTreeMap<String, String>,
}

fn empty_object() -> Value {
    json!({})
}

/// Action lists by trigger name.
pub type ActionMap = BTreeMap<String, Vec<ActionSpec>>;

/// How urgent an event's calls are when a backlog builds.
pub fn priority(trigger: &str) -> Priority {
    match trigger {
        "session-closed" => Priority::Complete,
        "session-detached" => Priority::Save,
        "checkpoint" => Priority::Checkpoint,
        _ => Priority::Register,
    }
}

/// Errors in the action configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionsError {
    #[error("unknown preset {0:?} (known: builtin, server-memory, agent-runtime, none)")]
    UnknownPreset(String),
    #[error("on.{0}: unknown event (known: {known})", known = TRIGGERS.join(", "))]
    UnknownTrigger(String),
    #[error("on.{trigger}[{index}].args: {source}")]
    Template {
        trigger: String,
        index: usize,
        source: TemplateError,
    },
}

/// The built-in server's tools, as the daemon uses them.
pub fn preset(name: &str, server: &str) -> Result<ActionMap, ActionsError> {
    let spec = |tool: &str, args: Value, keep: &[(&str, &str)]| ActionSpec {
        server: server.to_owned(),
        tool: tool.to_owned(),
        args,
        keep: keep
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let mut map = ActionMap::new();
    match name {
        "none" => {}
        "builtin" => {
            let save = spec(
                "save_context",
                json!({
                    "session": "{session_key}",
                    "session_name": "{session}",
                    "context": "{context}",
                    "idempotency_key": "{idempotency_key}",
                }),
                &[],
            );
            let update = |status: &str| {
                spec(
                    "update_goal",
                    json!({"id": "{goal_id}", "status": status, "idempotency_key": "{idempotency_key}"}),
                    &[],
                )
            };
            map.insert(
                "session-created".into(),
                vec![spec(
                    "register_goal",
                    json!({
                        "name": "{session}",
                        "description": "{goal}",
                        "type": "{type}",
                        "session": "{session_key}",
                        "metadata": {"session_id": "{session_id}", "host": "{host}", "created": "{session_created}"},
                        "idempotency_key": "{idempotency_key}",
                    }),
                    &[("goal_id", "$.id")],
                )],
            );
            map.insert("session-attached".into(), vec![update("active")]);
            map.insert(
                "session-detached".into(),
                vec![save.clone(), update("detached")],
            );
            map.insert("checkpoint".into(), vec![save.clone()]);
            map.insert(
                "session-closed".into(),
                vec![
                    save,
                    spec(
                        "complete_goal",
                        json!({"id": "{goal_id}", "outcome": "session closed", "idempotency_key": "{idempotency_key}"}),
                        &[],
                    ),
                ],
            );
        }
        "server-memory" => {
            // The entity is named once, at creation; `created_name` stays
            // the same when the session is renamed, so later observations
            // still find it.
            let entity = "tmux:{host}:{created_name}:{session_created}";
            map.insert(
                "session-created".into(),
                vec![spec(
                    "create_entities",
                    json!({"entities": [{
                        "name": entity,
                        "entityType": "tmux_session",
                        "observations": "{observations}",
                    }]}),
                    &[],
                )],
            );
            let observe = spec(
                "add_observations",
                json!({"observations": [{"entityName": entity, "contents": "{observations}"}]}),
                &[],
            );
            for trigger in ["session-detached", "session-closed", "checkpoint"] {
                map.insert(trigger.into(), vec![observe.clone()]);
            }
        }
        "agent-runtime" => {
            // agent-runtime-mcp has no tool that completes a goal: a task is
            // created under the goal and completed when the session closes.
            map.insert(
                "session-created".into(),
                vec![
                    spec(
                        "create_goal",
                        json!({"name": "{session}", "description": "[{type}] {goal}"}),
                        &[("goal_id", "$.id")],
                    ),
                    spec(
                        "create_task",
                        json!({"goal_id": "{goal_id}", "title": "tmux session {session}"}),
                        &[("task_id", "$.id")],
                    ),
                ],
            );
            map.insert(
                "session-closed".into(),
                vec![spec(
                    "update_task_status",
                    json!({"task_id": "{task_id}", "status": "completed", "result": "session closed"}),
                    &[],
                )],
            );
        }
        other => return Err(ActionsError::UnknownPreset(other.to_owned())),
    }
    Ok(map)
}

/// The preset's actions followed by the configured ones, checked: every
/// trigger known, every placeholder known or kept by some action.
pub fn combine(preset: ActionMap, configured: &ActionMap) -> Result<ActionMap, ActionsError> {
    let mut map = preset;
    for (trigger, specs) in configured {
        map.entry(trigger.clone())
            .or_default()
            .extend(specs.iter().cloned());
    }
    validate(&map)?;
    Ok(map)
}

/// Checks triggers and placeholders.
pub fn validate(map: &ActionMap) -> Result<(), ActionsError> {
    let kept: Vec<&str> = map
        .values()
        .flatten()
        .flat_map(|spec| spec.keep.keys().map(String::as_str))
        .collect();
    let known: Vec<&str> = PLACEHOLDERS.iter().copied().chain(kept).collect();
    for (trigger, specs) in map {
        if !TRIGGERS.contains(&trigger.as_str()) {
            return Err(ActionsError::UnknownTrigger(trigger.clone()));
        }
        for (index, spec) in specs.iter().enumerate() {
            template::validate(&spec.args, &known).map_err(|source| ActionsError::Template {
                trigger: trigger.clone(),
                index,
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for name in ["builtin", "server-memory", "agent-runtime", "none"] {
            let map = preset(name, "srv").unwrap();
            validate(&map).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(matches!(
            preset("nope", "x"),
            Err(ActionsError::UnknownPreset(_))
        ));
    }

    #[test]
    fn configured_actions_follow_the_preset_and_are_checked() {
        let extra: ActionMap = toml::from_str(
            r#"
            [[session-created]]
            server = "memory"
            tool = "note"
            args = { text = "{session} by {task_id}" }
            "#,
        )
        .unwrap();
        let map = combine(preset("agent-runtime", "rt").unwrap(), &extra).unwrap();
        let created: Vec<&str> = map["session-created"]
            .iter()
            .map(|s| s.tool.as_str())
            .collect();
        assert_eq!(created, ["create_goal", "create_task", "note"]);

        let bad: ActionMap = toml::from_str(
            "[[session-created]]\nserver = \"m\"\ntool = \"t\"\nargs = { x = \"{nope}\" }",
        )
        .unwrap();
        let err = combine(ActionMap::new(), &bad).unwrap_err();
        assert!(err.to_string().contains("{nope}"), "{err}");
        let bad: ActionMap =
            toml::from_str("[[session-exploded]]\nserver = \"m\"\ntool = \"t\"").unwrap();
        assert!(matches!(
            combine(ActionMap::new(), &bad),
            Err(ActionsError::UnknownTrigger(_))
        ));
    }
}
