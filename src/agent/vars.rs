//! The values templates are rendered with, and what the reactor remembers
//! of a session so that it can still fill them in once tmux has forgotten
//! the session (a close-time call needs the goal and the name of a session
//! that no longer exists).
//!
//! The values are computed when an action is committed and stored with it
//! in the outbox: a call sent after a restart says what was true when the
//! event happened, not when the call went out. Only values kept from an
//! earlier result (`{goal_id}`) are added at delivery, because they do not
//! exist yet at commit time.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::context::SessionContext;
use super::identity::SessionKey;
use super::settings::ReactorSettings;
use super::trigger::Trigger;
use crate::control::SessionId;
use crate::schema;
use crate::state::LifecycleEvent;

/// What the reactor remembers of a session.
#[derive(Debug, Clone, Default)]
pub(crate) struct Memo {
    pub name: String,
    /// Unix seconds, tmux's `session_created`.
    pub created: i64,
    /// The `@agent-*` options as last read.
    pub options: BTreeMap<String, String>,
    /// The last context captured.
    pub context: Option<SessionContext>,
    pub attached: bool,
}

impl Memo {
    /// A session the reactor learns of from an event alone.
    pub fn from_event(event: &LifecycleEvent) -> Memo {
        Memo {
            name: event.session.clone(),
            created: event.session_created.unwrap_or_default(),
            ..Memo::default()
        }
    }

    /// An option's value; an empty one counts as unset (`set -u` is not the
    /// only way people clear an option).
    fn option(&self, name: &str) -> Option<String> {
        self.options.get(name).filter(|v| !v.is_empty()).cloned()
    }
}

/// Everything a template may name (see `actions::PLACEHOLDERS`), for one
/// event of one session.
pub(crate) fn vars(
    event: &LifecycleEvent,
    trigger: Trigger,
    memo: &Memo,
    key: &SessionKey,
    context: &SessionContext,
    settings: &ReactorSettings,
    host: &str,
) -> Value {
    let goal = memo
        .option(schema::session::GOAL)
        .unwrap_or_else(|| settings.default_goal.replace("{session}", &memo.name));
    let agent_type = memo
        .option(schema::session::TYPE)
        .unwrap_or_else(|| settings.default_type.clone());
    let time = event.time.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut vars = Map::new();
    vars.insert("session".into(), json!(event.session));
    vars.insert("session_id".into(), json!(event.session_id.to_string()));
    vars.insert("session_created".into(), json!(memo.created));
    vars.insert("session_key".into(), json!(key.as_str()));
    vars.insert("goal".into(), json!(goal));
    vars.insert("type".into(), json!(agent_type));
    vars.insert("group".into(), json!(memo.option(schema::session::GROUP)));
    vars.insert("role".into(), json!(memo.option(schema::session::ROLE)));
    vars.insert("time".into(), json!(time));
    vars.insert("host".into(), json!(host));
    vars.insert("event".into(), json!(trigger.as_str()));
    vars.insert("client".into(), json!(event.client));
    vars.insert("old_name".into(), json!(event.old_name));
    // True when the event happened while no daemon watched (see
    // `agent::journal`): the call is made late, on the daemon's return.
    vars.insert("late".into(), json!(event.late));
    // Not a placeholder: tells the dispatcher which state a requested save
    // leaves the session in.
    vars.insert("attached".into(), json!(memo.attached));
    vars.insert(
        "context".into(),
        serde_json::to_value(context).unwrap_or_default(),
    );
    vars.insert(
        "observations".into(),
        json!(observations(trigger, &time, &goal, &agent_type, context)),
    );
    Value::Object(vars)
}

/// The context of a session that can no longer be read from tmux: what the
/// reactor kept.
pub(crate) fn minimal_context(id: SessionId, memo: &Memo) -> SessionContext {
    let option = |name: &str| memo.options.get(name).cloned();
    SessionContext {
        session: memo.name.clone(),
        session_id: id,
        created: memo.created,
        goal: option(schema::session::GOAL),
        agent_type: option(schema::session::TYPE),
        group: option(schema::session::GROUP),
        role: option(schema::session::ROLE),
        windows: Vec::new(),
        captured_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        truncated: false,
    }
}

/// One line per fact, for memory servers that store observations as text.
fn observations(
    trigger: Trigger,
    time: &str,
    goal: &str,
    agent_type: &str,
    context: &SessionContext,
) -> Vec<String> {
    let mut lines = vec![
        format!("{trigger} at {time}"),
        format!("goal: {goal}"),
        format!("type: {agent_type}"),
    ];
    if let Some(group) = &context.group {
        lines.push(format!(
            "group: {group} ({})",
            context.role.as_deref().unwrap_or("member")
        ));
    }
    for window in &context.windows {
        lines.push(format!(
            "window {}: {} ({} panes)",
            window.index,
            window.name,
            window.panes.len()
        ));
        for pane in &window.panes {
            lines.push(format!(
                "pane {}.{}: {} in {}",
                window.index, pane.index, pane.command, pane.path
            ));
            if !pane.lines.is_empty() {
                lines.push(format!(
                    "pane {}.{} last lines:\n{}",
                    window.index,
                    pane.index,
                    pane.lines.join("\n")
                ));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::agent::identity::ServerIdentity;
    use crate::state::EventKind;

    fn event() -> LifecycleEvent {
        LifecycleEvent {
            kind: EventKind::SessionDetached,
            session_id: "$3".parse().unwrap(),
            session: "work".into(),
            time: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
            client: Some("/dev/pts/1".into()),
            old_name: None,
            session_created: Some(1_699_999_000),
            late: false,
        }
    }

    fn memo(options: &[(&str, &str)]) -> Memo {
        Memo {
            name: "work".into(),
            created: 1_699_999_000,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            attached: true,
            ..Memo::default()
        }
    }

    #[test]
    fn goal_and_type_come_from_options_else_the_defaults() {
        let settings = ReactorSettings::default();
        type Options = &'static [(&'static str, &'static str)];
        let cases: [(Options, &str, &str); 3] = [
            (&[], "tmux session work", "session"),
            (
                &[
                    (schema::session::GOAL, "fix the build"),
                    (schema::session::TYPE, "claude"),
                ],
                "fix the build",
                "claude",
            ),
            // An option set to nothing is as good as unset.
            (
                &[(schema::session::GOAL, "")],
                "tmux session work",
                "session",
            ),
        ];
        let key = ServerIdentity::parse("box\t100")
            .unwrap()
            .session_key("$3".parse().unwrap());
        for (options, goal, agent_type) in cases {
            let memo = memo(options);
            let context = minimal_context("$3".parse().unwrap(), &memo);
            let vars = vars(
                &event(),
                Trigger::SessionDetached,
                &memo,
                &key,
                &context,
                &settings,
                "box",
            );
            assert_eq!(vars["goal"], goal, "{options:?}");
            assert_eq!(vars["type"], agent_type, "{options:?}");
        }
    }

    #[test]
    fn every_value_is_filled_in() {
        let memo = memo(&[
            (schema::session::GROUP, "infra"),
            (schema::session::ROLE, "lead"),
        ]);
        let key = ServerIdentity::parse("box\t100")
            .unwrap()
            .session_key("$3".parse().unwrap());
        let context = minimal_context("$3".parse().unwrap(), &memo);
        let vars = vars(
            &event(),
            Trigger::Save,
            &memo,
            &key,
            &context,
            &ReactorSettings::default(),
            "box",
        );
        let cases = [
            ("session", json!("work")),
            ("session_id", json!("$3")),
            ("session_created", json!(1_699_999_000)),
            ("session_key", json!("box:100:$3")),
            ("group", json!("infra")),
            ("role", json!("lead")),
            ("time", json!("2023-11-14T22:13:20.123Z")),
            ("host", json!("box")),
            ("event", json!("save")),
            ("client", json!("/dev/pts/1")),
            ("old_name", Value::Null),
            ("late", json!(false)),
            ("attached", json!(true)),
            (
                "observations",
                json!([
                    "save at 2023-11-14T22:13:20.123Z",
                    "goal: tmux session work",
                    "type: session",
                    "group: infra (lead)",
                ]),
            ),
        ];
        for (name, want) in cases {
            assert_eq!(vars[name], want, "{name}");
        }
        assert_eq!(vars["context"]["session"], "work");
    }

    #[test]
    fn a_minimal_context_is_what_the_memo_kept() {
        let memo = memo(&[(schema::session::GOAL, "g"), (schema::session::ROLE, "r")]);
        let context = minimal_context("$3".parse().unwrap(), &memo);
        assert_eq!(
            (
                context.session.as_str(),
                context.created,
                context.goal.as_deref(),
                context.role.as_deref(),
                context.group.as_deref(),
                context.windows.len(),
            ),
            ("work", 1_699_999_000, Some("g"), Some("r"), None, 0)
        );
    }
}
