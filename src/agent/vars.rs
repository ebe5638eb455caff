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
//!
//! Each action stores the session's context once, in `context`.
//! `{observations}` repeats all of it as text lines (pane text included),
//! so it is not stored but derived from the stored values when the action
//! is rendered ([`add_derived`]): the same lines, from the same values.

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
    // The agent-* events' pane and statuses (null for other events).
    let agent = event.agent.as_ref();
    vars.insert("pane".into(), json!(agent.map(|a| a.pane.to_string())));
    vars.insert("agent".into(), json!(agent.and_then(|a| a.agent.clone())));
    vars.insert("agent_status".into(), json!(agent.map(|a| a.status)));
    vars.insert("old_status".into(), json!(agent.and_then(|a| a.old_status)));
    // The goal status the session's attachment means, for calls that
    // record something on the goal without changing its status.
    let goal_status = if memo.attached { "active" } else { "detached" };
    vars.insert("goal_status".into(), json!(goal_status));
    // Not a placeholder: tells the dispatcher which state a requested save
    // leaves the session in.
    vars.insert("attached".into(), json!(memo.attached));
    vars.insert(
        "context".into(),
        serde_json::to_value(context).unwrap_or_default(),
    );
    Value::Object(vars)
}

/// Adds the values derived from the stored ones, at render time:
/// `{observations}` (see the module doc). An action stored by an older
/// build already has it, and keeps it.
pub(crate) fn add_derived(vars: &mut Map<String, Value>) {
    if vars.contains_key("observations") {
        return;
    }
    let text = |name: &str| vars.get(name).and_then(Value::as_str).unwrap_or_default();
    let lines = observations(
        text("event"),
        text("time"),
        text("goal"),
        text("type"),
        vars.get("context").unwrap_or(&Value::Null),
    );
    vars.insert("observations".into(), json!(lines));
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

/// One line per fact, for memory servers that store observations as text,
/// read from the stored context (a [`SessionContext`] as JSON).
fn observations(
    trigger: &str,
    time: &str,
    goal: &str,
    agent_type: &str,
    context: &Value,
) -> Vec<String> {
    let text = |v: &Value, name: &str| v[name].as_str().unwrap_or_default().to_owned();
    let number = |v: &Value, name: &str| v[name].as_u64().unwrap_or_default();
    let list = |v: &Value, name: &str| v[name].as_array().cloned().unwrap_or_default();
    let mut lines = vec![
        format!("{trigger} at {time}"),
        format!("goal: {goal}"),
        format!("type: {agent_type}"),
    ];
    if let Some(group) = context["group"].as_str() {
        lines.push(format!(
            "group: {group} ({})",
            context["role"].as_str().unwrap_or("member")
        ));
    }
    for window in list(context, "windows") {
        let panes = list(&window, "panes");
        let index = number(&window, "index");
        lines.push(format!(
            "window {index}: {} ({} panes)",
            text(&window, "name"),
            panes.len()
        ));
        for pane in &panes {
            let pane_index = number(pane, "index");
            lines.push(format!(
                "pane {index}.{pane_index}: {} in {}",
                text(pane, "command"),
                text(pane, "path")
            ));
            let captured: Vec<String> = list(pane, "lines")
                .iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect();
            if !captured.is_empty() {
                lines.push(format!(
                    "pane {index}.{pane_index} last lines:\n{}",
                    captured.join("\n")
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
            agent: None,
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
        assert!(vars.get("observations").is_none(), "stored twice");
        let mut vars = vars.as_object().unwrap().clone();
        add_derived(&mut vars);
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
            ("pane", Value::Null),
            ("agent_status", Value::Null),
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
    fn observations_are_derived_from_the_stored_context_with_pane_text_once() {
        let memo = memo(&[]);
        let key = ServerIdentity::parse("box\t100")
            .unwrap()
            .session_key("$3".parse().unwrap());
        let mut context = minimal_context("$3".parse().unwrap(), &memo);
        context.windows = vec![super::super::context::WindowContext {
            index: 1,
            id: "@1".into(),
            name: "edit".into(),
            layout: "l".into(),
            active: true,
            panes: vec![super::super::context::PaneContext {
                index: 0,
                id: "%1".into(),
                command: "vim".into(),
                path: "/src".into(),
                title: "t".into(),
                pid: 1,
                active: true,
                lines: vec!["secret-ish line".into(), "two".into()],
            }],
        }];
        let stored = vars(
            &event(),
            Trigger::SessionDetached,
            &memo,
            &key,
            &context,
            &ReactorSettings::default(),
            "box",
        );
        let text = stored.to_string();
        assert_eq!(text.matches("secret-ish line").count(), 1, "{text}");
        let mut vars = stored.as_object().unwrap().clone();
        add_derived(&mut vars);
        assert_eq!(
            vars["observations"],
            json!([
                "session-detached at 2023-11-14T22:13:20.123Z",
                "goal: tmux session work",
                "type: session",
                "window 1: edit (1 panes)",
                "pane 1.0: vim in /src",
                "pane 1.0 last lines:\nsecret-ish line\ntwo",
            ])
        );
        // An action stored by an older build keeps its own.
        let mut old = serde_json::Map::new();
        old.insert("observations".into(), json!(["kept"]));
        add_derived(&mut old);
        assert_eq!(old["observations"], json!(["kept"]));
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
