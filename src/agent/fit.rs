//! Whether the configured actions fit the tools they call: each `[[on.*]]`
//! entry's `args` template against the tool's `inputSchema`, as the server
//! lists it. Finds what would make every call of the entry fail at the
//! server: a tool the server does not have, a required field the template
//! does not give, a placeholder whose JSON type the schema does not accept
//! (`"{context}"` is an object, `"{observations}"` an array of lines).
//!
//! It reads templates, never renders them: the values come later, from
//! each event. Only what is certain from the template is reported: a field
//! given by a placeholder inside a longer string is text, whatever the
//! placeholder's value.

use std::collections::BTreeMap;
use std::time::Duration;

use rmcp::model::Tool;
use serde_json::{Map, Value};

use super::actions::{ActionMap, ActionSpec};
use crate::mcp::McpPool;

/// What checking every action found, for one entry (`on.EVENT[I]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `on.session-created[0]`.
    pub key: String,
    pub server: String,
    pub tool: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered and the entry does not fit its tool.
    Misfit(Misfit),
    /// The server could not be asked for its tools (down, not configured,
    /// no answer within the timeout): nothing is known.
    NotChecked(String),
}

/// Checks every action in `actions` against the tools its server lists:
/// each server is asked once, all at the same time, each within `within`.
/// Only entries that do not fit, or could not be checked, are returned.
pub async fn check_all(actions: &ActionMap, pool: &McpPool, within: Duration) -> Vec<Finding> {
    let mut servers: Vec<&str> = actions
        .values()
        .flatten()
        .map(|a| a.server.as_str())
        .collect();
    servers.sort_unstable();
    servers.dedup();
    check_servers(actions, pool, within, &servers).await
}

/// [`check_all`] for the actions that call one of `servers` (keys still
/// count every action, so `on.EVENT[I]` is the same entry either way).
pub async fn check_servers(
    actions: &ActionMap,
    pool: &McpPool,
    within: Duration,
    servers: &[&str],
) -> Vec<Finding> {
    let listings = futures::future::join_all(servers.iter().map(|server| async move {
        let listed = match tokio::time::timeout(within, pool.list_tools(server)).await {
            Ok(Ok(tools)) => Ok(tools),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {} s", within.as_secs_f64())),
        };
        (server.to_string(), listed)
    }))
    .await;
    let listings: BTreeMap<String, Result<Vec<Tool>, String>> = listings.into_iter().collect();
    let mut findings = Vec::new();
    for (trigger, list) in actions {
        for (index, action) in list.iter().enumerate() {
            let Some(listed) = listings.get(&action.server) else {
                continue;
            };
            let finding = |outcome| Finding {
                key: format!("on.{trigger}[{index}]"),
                server: action.server.clone(),
                tool: action.tool.clone(),
                outcome,
            };
            match listed {
                Ok(tools) => findings.extend(
                    check(action, tools)
                        .into_iter()
                        .map(|m| finding(Outcome::Misfit(m))),
                ),
                Err(why) => findings.push(finding(Outcome::NotChecked(why.clone()))),
            }
        }
    }
    findings
}

/// One way an action does not fit its tool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misfit {
    #[error("server {server:?} has no tool {tool:?} (it has: {known})")]
    UnknownTool {
        server: String,
        tool: String,
        known: String,
    },
    #[error("{tool} requires {path:?}, which args does not give")]
    MissingField { tool: String, path: String },
    #[error(
        "args.{path} is {{{placeholder}}}, {what}, but {tool} takes a {wanted} there (use it inside a string, e.g. \"{{{placeholder}}} \", to send it as text)"
    )]
    WrongType {
        tool: String,
        path: String,
        placeholder: String,
        what: &'static str,
        wanted: String,
    },
}

/// The JSON type a placeholder that fills a whole string has, when it is
/// not a string: what a schema wanting a string would reject.
fn placeholder_type(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "context" => Some(("object", "an object")),
        "observations" => Some(("array", "an array")),
        _ => None,
    }
}

/// Every misfit of `action` with the tools its server lists.
pub fn check(action: &ActionSpec, tools: &[Tool]) -> Vec<Misfit> {
    let Some(tool) = tools.iter().find(|t| t.name == action.tool) else {
        let mut known: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        known.sort_unstable();
        return vec![Misfit::UnknownTool {
            server: action.server.clone(),
            tool: action.tool.clone(),
            known: if known.is_empty() {
                "no tools".to_owned()
            } else {
                known.join(", ")
            },
        }];
    };
    let schema = Value::Object(tool.input_schema.as_ref().clone());
    let mut found = Vec::new();
    walk(&action.tool, "", &action.args, &schema, &mut found);
    found
}

/// Checks `value` (the template at `path`) against `schema`, and the
/// fields of an object against the schema's `properties` and `required`.
fn walk(tool: &str, path: &str, value: &Value, schema: &Value, found: &mut Vec<Misfit>) {
    match value {
        Value::String(text) => {
            let Some(name) = whole_placeholder(text) else {
                return;
            };
            let Some((json_type, what)) = placeholder_type(name) else {
                return;
            };
            let accepted = accepted_types(schema);
            if !accepted.is_empty() && !accepted.iter().any(|t| t == json_type) {
                found.push(Misfit::WrongType {
                    tool: tool.to_owned(),
                    path: path.to_owned(),
                    placeholder: name.to_owned(),
                    what,
                    wanted: accepted.join(" or "),
                });
            }
        }
        Value::Object(fields) => {
            let empty = Map::new();
            let properties = schema
                .get("properties")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !fields.contains_key(name) {
                        found.push(Misfit::MissingField {
                            tool: tool.to_owned(),
                            path: join(path, name),
                        });
                    }
                }
            }
            for (name, field) in fields {
                if let Some(field_schema) = properties.get(name) {
                    walk(tool, &join(path, name), field, field_schema, found);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(tool, &format!("{path}[{i}]"), item, item_schema, found);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// The placeholder a string is exactly (`"{context}"`), if it is one.
fn whole_placeholder(text: &str) -> Option<&str> {
    let name = text.strip_prefix('{')?.strip_suffix('}')?;
    (!name.is_empty() && !name.contains(['{', '}'])).then_some(name)
}

/// The JSON types a schema names (`"type": "string"` or a list), empty when
/// it names none (anything goes, or `anyOf` we do not second-guess).
fn accepted_types(schema: &Value) -> Vec<String> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, schema: Value) -> Tool {
        serde_json::from_value(json!({"name": name, "inputSchema": schema})).unwrap()
    }

    fn action(tool: &str, args: Value) -> ActionSpec {
        ActionSpec {
            server: "s".into(),
            tool: tool.into(),
            args,
            keep: Default::default(),
        }
    }

    #[test]
    fn each_misfit_is_found_and_a_fitting_action_has_none() {
        let tools = [tool(
            "save",
            json!({"type": "object", "required": ["name", "body"],
                   "properties": {"name": {"type": "string"}, "body": {"type": "string"},
                                  "meta": {"type": "object", "required": ["host"],
                                           "properties": {"host": {"type": "string"}}},
                                  "any": {}}}),
        )];
        assert_eq!(
            check(&action("nope", json!({})), &tools),
            [Misfit::UnknownTool {
                server: "s".into(),
                tool: "nope".into(),
                known: "save".into()
            }]
        );
        let found = check(
            &action(
                "save",
                json!({"body": "{context}", "meta": {}, "any": "{context}"}),
            ),
            &tools,
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.contains(&Misfit::MissingField {
            tool: "save".into(),
            path: "name".into()
        }));
        assert!(found.contains(&Misfit::MissingField {
            tool: "save".into(),
            path: "meta.host".into()
        }));
        assert!(
            found
                .iter()
                .any(|m| matches!(m, Misfit::WrongType { path, .. } if path == "body")),
            "{found:?}"
        );
        // In a longer string the placeholder is text; a string wants that.
        assert!(
            check(
                &action(
                    "save",
                    json!({"name": "{session}", "body": "ctx: {context}"})
                ),
                &tools
            )
            .is_empty()
        );
    }
}
