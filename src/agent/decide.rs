//! The reactor's decisions, apart from its I/O: which configured calls an
//! event (or a checkpoint, or a requested save) causes, what they are
//! committed as, and what `@agent-state` says once one is delivered.
//!
//! Pure functions of the settings and the event, so that the rules can be
//! read in one place and tested by table; the reactor does the reading
//! (options, context) and the writing (outbox, tmux) around them.

use chrono::Utc;
use serde_json::Value;

use super::actions::{ActionMap, ActionSpec};
use super::identity::SessionKey;
use super::outbox::{NewAction, Priority};
use super::trigger::Trigger;
use crate::control::SessionId;
use crate::schema::AgentState;
use crate::state::{EventKind, LifecycleEvent};

/// The calls one trigger causes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    /// The name the calls are recorded under.
    pub trigger: Trigger,
    pub priority: Priority,
    /// Never empty: no calls is no decision.
    pub specs: Vec<ActionSpec>,
}

impl Decision {
    /// Whether a call sends the session's context, so it must be captured
    /// first.
    pub fn needs_context(&self) -> bool {
        self.specs.iter().any(carries_context)
    }
}

/// The configured calls of `trigger`, if there are any.
pub(crate) fn on_trigger(actions: &ActionMap, trigger: Trigger) -> Option<Decision> {
    let specs = actions.get(&trigger).filter(|s| !s.is_empty())?;
    Some(Decision {
        trigger,
        priority: trigger.priority(),
        specs: specs.clone(),
    })
}

/// The calls a requested save sends: the `checkpoint` actions, else the
/// `session-detached` actions that carry the context (a save is a
/// detach's save without the detach). Recorded as `save`, at save priority.
pub(crate) fn on_save(actions: &ActionMap) -> Option<Decision> {
    let specs = match actions.get(&Trigger::Checkpoint).filter(|s| !s.is_empty()) {
        Some(specs) => specs.clone(),
        None => actions
            .get(&Trigger::SessionDetached)
            .into_iter()
            .flatten()
            .filter(|s| carries_context(s))
            .cloned()
            .collect(),
    };
    (!specs.is_empty()).then_some(Decision {
        trigger: Trigger::Save,
        priority: Priority::Save,
        specs,
    })
}

/// Whether an action sends the session's context.
fn carries_context(spec: &ActionSpec) -> bool {
    let text = spec.args.to_string();
    text.contains("{context}") || text.contains("{observations}")
}

/// Whether the context is captured from tmux for `kind`: not for a closed
/// session, which tmux no longer has (the last capture is used).
pub(crate) fn captures_for(kind: EventKind) -> bool {
    // Nor for a missed one, which tmux never showed.
    !matches!(kind, EventKind::SessionClosed | EventKind::SessionMissed)
}

/// The `@agent-state` a lifecycle event puts its session in, if any.
pub(crate) fn state_on(kind: EventKind) -> Option<AgentState> {
    match kind {
        EventKind::SessionCreated | EventKind::SessionRestored | EventKind::SessionAttached => {
            Some(AgentState::Active)
        }
        EventKind::SessionDetached => Some(AgentState::Detached),
        EventKind::SessionRenamed
        | EventKind::SessionClosed
        | EventKind::ClientAttached
        | EventKind::ClientDetached
        | EventKind::SessionMissed
        | EventKind::AgentWaiting
        | EventKind::AgentWorking
        | EventKind::AgentIdle
        | EventKind::AgentExited => None,
    }
}

/// The actions to commit for `decision`, one per spec, with the event's
/// values. `sequence` makes idempotency keys unique among events of the
/// same millisecond.
pub(crate) fn actions(
    decision: &Decision,
    event: &LifecycleEvent,
    key: &SessionKey,
    vars: &Value,
    sequence: u64,
) -> Vec<NewAction> {
    let trigger = decision.trigger.as_str();
    let stamp = format!("{}-{sequence}", event.time.timestamp_millis());
    decision
        .specs
        .iter()
        .enumerate()
        .map(|(i, spec)| NewAction {
            idempotency_key: format!("{key}/{trigger}/{stamp}/{i}"),
            session_key: key.to_string(),
            session_id: event.session_id.to_string(),
            event: trigger.to_owned(),
            priority: decision.priority,
            server: spec.server.clone(),
            tool: spec.tool.clone(),
            template: spec.args.clone(),
            vars: vars.clone(),
            keep: serde_json::to_value(&spec.keep).unwrap_or_default(),
            late: event.late,
        })
        .collect()
}

/// An event for calls tmux did not cause (a checkpoint, a requested save):
/// it carries the session, and the time it was decided.
pub(crate) fn synthetic_event(id: SessionId, name: String, created: i64) -> LifecycleEvent {
    LifecycleEvent {
        kind: EventKind::SessionAttached,
        session_id: id,
        session: name,
        time: Utc::now(),
        client: None,
        old_name: None,
        session_created: Some(created),
        late: false,
        options: None,
        agent: None,
    }
}

/// The `@agent-state` a delivered action leaves its session in, and
/// whether it counts as a save (`@agent-saved`): only saves and
/// checkpoints say anything; other calls leave the state to the events.
/// `attached` is whether the session was attached when a save was asked.
pub(crate) fn state_after_delivery(
    trigger: Option<Trigger>,
    priority: Priority,
    attached: bool,
) -> Option<AgentState> {
    match trigger {
        Some(Trigger::Checkpoint) => Some(AgentState::Active),
        Some(Trigger::Save) if attached => Some(AgentState::Active),
        _ if priority == Priority::Save => Some(AgentState::Detached),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::agent::identity::ServerIdentity;

    fn spec(tool: &str, args: Value) -> ActionSpec {
        ActionSpec {
            server: "s".into(),
            tool: tool.into(),
            args,
            keep: Default::default(),
        }
    }

    fn tools(decision: &Option<Decision>) -> Vec<&str> {
        decision
            .iter()
            .flat_map(|d| &d.specs)
            .map(|s| s.tool.as_str())
            .collect()
    }

    fn map(entries: &[(Trigger, &[ActionSpec])]) -> ActionMap {
        entries.iter().map(|(t, s)| (*t, s.to_vec())).collect()
    }

    #[test]
    fn triggers_fire_their_own_specs_at_their_priority() {
        let actions = map(&[
            (Trigger::SessionCreated, &[spec("register", json!({}))]),
            (
                Trigger::SessionClosed,
                &[spec("a", json!({})), spec("b", json!({}))],
            ),
            (Trigger::SessionRenamed, &[]),
        ]);
        let cases = [
            (
                Trigger::SessionCreated,
                vec!["register"],
                Some(Priority::Register),
            ),
            (
                Trigger::SessionClosed,
                vec!["a", "b"],
                Some(Priority::Complete),
            ),
            // An empty list is no decision, nor is a missing one.
            (Trigger::SessionRenamed, vec![], None),
            (Trigger::Checkpoint, vec![], None),
        ];
        for (trigger, want, priority) in cases {
            let decision = on_trigger(&actions, trigger);
            assert_eq!(tools(&decision), want, "{trigger}");
            assert_eq!(decision.map(|d| d.priority), priority, "{trigger}");
        }
    }

    #[test]
    fn a_save_sends_the_checkpoint_else_the_detach_saves() {
        let save = spec("save", json!({"c": "{context}"}));
        let observe = spec("observe", json!({"o": "{observations}"}));
        let status = spec("status", json!({"s": "detached"}));
        let cases: [(ActionMap, Vec<&str>); 4] = [
            (
                map(&[
                    (Trigger::Checkpoint, &[spec("checkpoint", json!({}))]),
                    (Trigger::SessionDetached, std::slice::from_ref(&save)),
                ]),
                vec!["checkpoint"],
            ),
            (
                map(&[(
                    Trigger::SessionDetached,
                    &[save.clone(), status.clone(), observe],
                )]),
                vec!["save", "observe"],
            ),
            (map(&[(Trigger::SessionDetached, &[status])]), vec![]),
            (ActionMap::new(), vec![]),
        ];
        for (actions, want) in cases {
            let decision = on_save(&actions);
            assert_eq!(tools(&decision), want);
            if let Some(decision) = decision {
                assert_eq!(
                    (decision.trigger, decision.priority),
                    (Trigger::Save, Priority::Save)
                );
            }
        }
    }

    #[test]
    fn context_is_needed_only_by_calls_that_send_it() {
        let cases = [
            (json!({"c": "{context}"}), true),
            (json!({"deep": ["{observations}"]}), true),
            (json!({"n": "{session}"}), false),
        ];
        for (args, needed) in cases {
            let decision = Decision {
                trigger: Trigger::Checkpoint,
                priority: Priority::Checkpoint,
                specs: vec![spec("t", json!({})), spec("t", args.clone())],
            };
            assert_eq!(decision.needs_context(), needed, "{args}");
        }
        assert!(captures_for(EventKind::SessionDetached));
        assert!(!captures_for(EventKind::SessionClosed));
    }

    #[test]
    fn events_set_the_session_state() {
        let cases = [
            (EventKind::SessionCreated, Some(AgentState::Active)),
            (EventKind::SessionAttached, Some(AgentState::Active)),
            (EventKind::SessionDetached, Some(AgentState::Detached)),
            (EventKind::SessionClosed, None),
            (EventKind::SessionRenamed, None),
            (EventKind::ClientAttached, None),
        ];
        for (kind, state) in cases {
            assert_eq!(state_on(kind), state, "{kind}");
        }
    }

    #[test]
    fn deliveries_that_save_set_the_state() {
        use Trigger::*;
        let cases = [
            (
                Some(Checkpoint),
                Priority::Checkpoint,
                false,
                Some(AgentState::Active),
            ),
            (Some(Save), Priority::Save, true, Some(AgentState::Active)),
            (
                Some(Save),
                Priority::Save,
                false,
                Some(AgentState::Detached),
            ),
            (
                Some(SessionDetached),
                Priority::Save,
                true,
                Some(AgentState::Detached),
            ),
            (Some(SessionCreated), Priority::Register, false, None),
            (Some(SessionClosed), Priority::Complete, false, None),
            (None, Priority::Register, false, None),
        ];
        for (trigger, priority, attached, state) in cases {
            assert_eq!(
                state_after_delivery(trigger, priority, attached),
                state,
                "{trigger:?} {priority:?} {attached}"
            );
        }
    }

    #[test]
    fn committed_actions_carry_keys_unique_per_event_and_spec() {
        let decision = Decision {
            trigger: Trigger::SessionCreated,
            priority: Priority::Register,
            specs: vec![spec("a", json!({"x": "{session}"})), spec("b", json!({}))],
        };
        let event = LifecycleEvent {
            kind: EventKind::SessionCreated,
            session_id: "$7".parse().unwrap(),
            session: "w".into(),
            time: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
            client: None,
            old_name: None,
            session_created: Some(1),
            agent: None,
            late: false,
            options: None,
        };
        let key = ServerIdentity::parse("box\t100")
            .unwrap()
            .session_key(event.session_id);
        let vars = json!({"session": "w"});
        let actions = actions(&decision, &event, &key, &vars, 9);
        let keys: Vec<&str> = actions.iter().map(|a| a.idempotency_key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "box:100:$7/session-created/1700000000123-9/0",
                "box:100:$7/session-created/1700000000123-9/1"
            ]
        );
        let first = &actions[0];
        assert_eq!(
            (
                first.session_key.as_str(),
                first.session_id.as_str(),
                first.event.as_str(),
                first.priority,
                first.tool.as_str(),
            ),
            (
                "box:100:$7",
                "$7",
                "session-created",
                Priority::Register,
                "a"
            )
        );
        assert_eq!(first.template, json!({"x": "{session}"}));
        assert_eq!(first.vars, vars);
    }
}
