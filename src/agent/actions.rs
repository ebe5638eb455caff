//! What to call on which event: the `[[on.<event>]]` entries of the config,
//! and the presets that ship for known MCP servers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::template::{self, TemplateError};
use super::trigger::Trigger;

/// The placeholders every template may use. Names declared by a `keep`
/// become placeholders too.
pub const PLACEHOLDERS: [&str; 24] = [
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
    "late",
    "pane",
    "agent",
    "agent_status",
    "old_status",
    "goal_status",
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

/// Action lists by trigger.
pub type ActionMap = BTreeMap<Trigger, Vec<ActionSpec>>;

/// Action lists as the config writes them: `[[on.NAME]]`, by name, not yet
/// checked (a misspelt name is reported with its key, not dropped by serde).
pub type ConfiguredActions = BTreeMap<String, Vec<ActionSpec>>;

/// Errors in the action configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionsError {
    #[error("unknown preset {0:?} (known: builtin, server-memory, agent-runtime, none)")]
    UnknownPreset(String),
    #[error("on.{0}: unknown event (known: {known})", known = Trigger::configurable_names())]
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
    use Trigger::{
        AgentExited, AgentIdle, AgentWaiting, AgentWorking, Checkpoint, SessionAttached,
        SessionClosed, SessionCreated, SessionDetached, SessionRestored,
    };
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
                SessionCreated,
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
            // A restored session's goal is the one it had, active again
            // (`{goal_id}` is kept by the reactor from restore's note; empty
            // when the snapshot had none, and then a goal is registered).
            map.insert(
                SessionRestored,
                vec![spec(
                    "restore_goal",
                    json!({
                        "id": "{goal_id}",
                        "session": "{session_key}",
                        "name": "{session}",
                        "description": "{goal}",
                        "type": "{type}",
                        "note": "session restored",
                        "idempotency_key": "{idempotency_key}",
                    }),
                    &[("goal_id", "$.id")],
                )],
            );
            map.insert(SessionAttached, vec![update("active")]);
            // An agent's status is recorded on the goal as its note; the
            // goal's own status stays what the session's attachment says.
            let record = spec(
                "update_goal",
                json!({
                    "id": "{goal_id}",
                    "status": "{goal_status}",
                    "note": "agent {agent_status}: {agent} in pane {pane}",
                    "idempotency_key": "{idempotency_key}",
                }),
                &[],
            );
            for trigger in [AgentWaiting, AgentWorking, AgentIdle, AgentExited] {
                map.insert(trigger, vec![record.clone()]);
            }
            map.insert(SessionDetached, vec![save.clone(), update("detached")]);
            map.insert(Checkpoint, vec![save.clone()]);
            map.insert(
                SessionClosed,
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
                SessionCreated,
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
            for trigger in [SessionDetached, SessionClosed, Checkpoint] {
                map.insert(trigger, vec![observe.clone()]);
            }
        }
        "agent-runtime" => {
            // agent-runtime-mcp has no tool that completes a goal: a task is
            // created under the goal and completed when the session closes.
            map.insert(
                SessionCreated,
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
                SessionClosed,
                vec![spec(
                    "update_task_status",
                    json!({"task_id": "{task_id}", "status": "completed", "result": "session closed"}),
                    &[],
                )],
            );
        }
        other => return Err(ActionsError::UnknownPreset(other.to_owned())),
    }
    // Presets that know no restore treat a restored session as created.
    if !map.contains_key(&SessionRestored)
        && let Some(created) = map.get(&SessionCreated).cloned()
    {
        map.insert(SessionRestored, created);
    }
    Ok(map)
}

/// The preset's actions followed by the configured ones, checked: every
/// trigger known and configurable, every placeholder known or kept by some
/// action.
pub fn combine(
    preset: ActionMap,
    configured: &ConfiguredActions,
) -> Result<ActionMap, ActionsError> {
    let mut map = preset;
    for (name, specs) in configured {
        let trigger = name
            .parse::<Trigger>()
            .ok()
            .filter(|t| t.is_configurable())
            .ok_or_else(|| ActionsError::UnknownTrigger(name.clone()))?;
        map.entry(trigger)
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
        if !trigger.is_configurable() {
            return Err(ActionsError::UnknownTrigger(trigger.to_string()));
        }
        for (index, spec) in specs.iter().enumerate() {
            template::validate(&spec.args, &known).map_err(|source| ActionsError::Template {
                trigger: trigger.to_string(),
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
        let extra: ConfiguredActions = toml::from_str(
            r#"
            [[session-created]]
            server = "memory"
            tool = "note"
            args = { text = "{session} by {task_id}" }
            "#,
        )
        .unwrap();
        let map = combine(preset("agent-runtime", "rt").unwrap(), &extra).unwrap();
        let created: Vec<&str> = map[&Trigger::SessionCreated]
            .iter()
            .map(|s| s.tool.as_str())
            .collect();
        assert_eq!(created, ["create_goal", "create_task", "note"]);

        let bad: ConfiguredActions = toml::from_str(
            "[[session-created]]\nserver = \"m\"\ntool = \"t\"\nargs = { x = \"{nope}\" }",
        )
        .unwrap();
        let err = combine(ActionMap::new(), &bad).unwrap_err();
        assert!(err.to_string().contains("{nope}"), "{err}");
        for name in ["session-exploded", "save"] {
            let bad: ConfiguredActions =
                toml::from_str(&format!("[[{name}]]\nserver = \"m\"\ntool = \"t\"")).unwrap();
            let err = combine(ActionMap::new(), &bad).unwrap_err();
            assert_eq!(err, ActionsError::UnknownTrigger(name.to_owned()));
            assert!(
                err.to_string().starts_with(&format!(
                    "on.{name}: unknown event (known: session-created,"
                )),
                "{err}"
            );
        }
    }
}
