//! The pure part of group reconciliation: from the `@agent-*` options found
//! on every session to the groups they describe and the option writes that
//! make tmux agree with them.
//!
//! # The rules
//!
//! - A session is a member of group G while its `@agent-group` is G and G is
//!   a valid [`GroupName`]. An invalid value (set with plain `tmux set`) makes
//!   the session no member; it is listed in [`GroupsReport::ignored`].
//! - Join order is kept in `@agent-joined` as `SEQ:GROUP` (e.g. `7:build`).
//!   A member whose `@agent-joined` names its current group keeps its stamp;
//!   any other member is a newcomer and gets the next stamp, one more than the
//!   largest stamp on any session, newcomers in session-id order. Stamps only
//!   need to order the members present, so "largest present + 1" is monotonic
//!   enough, needs no counter of its own, and survives a daemon restart.
//! - Members are ordered by (stamp, session id); the first is the
//!   `coordinator`, the rest are `member`s. `@agent-peers` is the other
//!   members' names in join order, comma-separated (empty for a lone member).
//! - The group's context is the `@agent-ctx-*` options of its established
//!   members (those that kept their stamp): each key with the value held by
//!   the earliest member that has it. A newcomer's own `@agent-ctx-*` options
//!   do not count (they are leftovers, not the group's) unless the whole
//!   group is new, as when the daemon first sees groups formed while it was
//!   down, and the newcomer carries no stamp of another group (whose
//!   context it would be). Every member is then made to hold exactly that context, so a key
//!   set by hand on one member spreads to the rest, and where members
//!   disagree the earliest one wins. [`ContextEdit`]s (`tmux-agent share`)
//!   are applied on top.
//! - A session in no group holds none of `@agent-role`, `@agent-peers`,
//!   `@agent-joined` or `@agent-ctx-*`.
//! - The global `@agent-groups` is `NAME:COUNT` per group, by name,
//!   space-separated (`build:3 review:2`), and unset when there is no group.
//!
//! A write is planned only where an option differs from what it should be, so
//! a consistent server gets no writes at all: a daemon restart changes
//! nothing a user can see.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::names::{ContextKey, GroupName};
use crate::control::SessionId;
use crate::control::command::{Command, CommandError};
use crate::schema;

/// One session's `@agent-*` options as read from tmux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedSession {
    pub id: SessionId,
    /// The name as tmux lists it.
    pub name: String,
    /// Every option set on the session whose name starts with `@agent-`.
    pub options: BTreeMap<String, String>,
}

/// What one read of the server found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// The user's sessions (never the sidecar's).
    pub sessions: Vec<ObservedSession>,
    /// The global `@agent-groups`, if set.
    pub groups_summary: Option<String>,
}

impl Observation {
    pub fn session(&self, id: SessionId) -> Option<&ObservedSession> {
        self.sessions.iter().find(|s| s.id == id)
    }
}

/// A member's role, as stored in `@agent-role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Coordinator,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Member => "member",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session named by id and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    pub id: SessionId,
    pub name: String,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: SessionId,
    pub name: String,
    pub role: Role,
    /// The join stamp (the `SEQ` of `@agent-joined`): smaller joined earlier.
    pub joined: u64,
}

/// One group: members in join order, the first being the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub name: GroupName,
    pub coordinator: SessionRef,
    pub members: Vec<MemberView>,
    /// The shared context, KEY → value (`@agent-ctx-KEY`).
    pub context: BTreeMap<String, String>,
}

impl GroupView {
    /// The member with this id.
    pub fn member(&self, id: SessionId) -> Option<&MemberView> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// A session whose `@agent-group` is not a valid group name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredSession {
    pub id: SessionId,
    pub name: String,
    /// The `@agent-group` value as found.
    pub group: String,
    /// Why it does not count.
    pub reason: String,
}

/// Every group on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsReport {
    /// By name.
    pub groups: Vec<GroupView>,
    /// Sessions whose `@agent-group` could not be honoured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<IgnoredSession>,
}

impl GroupsReport {
    /// The group that has `id` as a member.
    pub fn group_of(&self, id: SessionId) -> Option<&GroupView> {
        self.groups.iter().find(|g| g.member(id).is_some())
    }

    pub fn group(&self, name: &str) -> Option<&GroupView> {
        self.groups.iter().find(|g| g.name.as_str() == name)
    }

    /// The `@agent-groups` summary these groups make (`build:3 review:2`),
    /// `None` when there is no group.
    pub fn summary(&self) -> Option<String> {
        if self.groups.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .groups
            .iter()
            .map(|g| format!("{}:{}", g.name, g.members.len()))
            .collect();
        Some(parts.join(" "))
    }
}

/// A change to a group's shared context (`tmux-agent share`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEdit {
    pub group: GroupName,
    pub key: ContextKey,
    /// `None` removes the key.
    pub value: Option<String>,
}

/// One option write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Set {
        session: SessionId,
        name: String,
        value: String,
    },
    Unset {
        session: SessionId,
        name: String,
    },
    SetGlobal {
        name: String,
        value: String,
    },
    UnsetGlobal {
        name: String,
    },
}

impl Write {
    /// The write as a control-mode command.
    pub fn to_command(&self) -> Result<Command, CommandError> {
        match self {
            Write::Set {
                session,
                name,
                value,
            } => Command::set_option(*session, name, value),
            Write::Unset { session, name } => Command::unset_option(*session, name),
            Write::SetGlobal { name, value } => Command::set_global_option(name, value),
            Write::UnsetGlobal { name } => Command::unset_global_option(name),
        }
    }

    /// The session written, for a session option.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            Write::Set { session, .. } | Write::Unset { session, .. } => Some(*session),
            _ => None,
        }
    }
}

/// The groups found and the writes that make tmux agree with them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub report: GroupsReport,
    pub writes: Vec<Write>,
}

/// Reads `SEQ:GROUP` from `@agent-joined`.
pub fn parse_joined(value: &str) -> Option<(u64, &str)> {
    let (seq, group) = value.split_once(':')?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((seq.parse().ok()?, group))
}

/// The `@agent-joined` value for a stamp and group.
pub fn format_joined(seq: u64, group: &GroupName) -> String {
    format!("{seq}:{group}")
}

/// Derives the groups from `observation` and plans the writes; see the
/// [module documentation](self) for the rules. `edits` change the shared
/// context of the groups they name (an edit for a group that does not exist
/// is ignored: the caller checks membership).
pub fn plan(observation: &Observation, edits: &[ContextEdit]) -> Plan {
    let mut sessions: Vec<&ObservedSession> = observation.sessions.iter().collect();
    sessions.sort_by_key(|s| s.id);

    let mut next_stamp = sessions
        .iter()
        .filter_map(|s| s.options.get(schema::session::JOINED))
        .filter_map(|v| parse_joined(v))
        .map(|(seq, _)| seq)
        .max()
        .unwrap_or(0);

    struct Candidate<'a> {
        session: &'a ObservedSession,
        stamp: u64,
        /// Kept its stamp for this group.
        established: bool,
        /// Carries a stamp of another group: its context is that group's.
        from_elsewhere: bool,
    }
    let mut groups: BTreeMap<GroupName, Vec<Candidate>> = BTreeMap::new();
    let mut ignored = Vec::new();
    for session in &sessions {
        let Some(value) = session.options.get(schema::session::GROUP) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let group = match GroupName::new(value) {
            Ok(group) => group,
            Err(err) => {
                ignored.push(IgnoredSession {
                    id: session.id,
                    name: session.name.clone(),
                    group: value.clone(),
                    reason: err.to_string(),
                });
                continue;
            }
        };
        let joined = session
            .options
            .get(schema::session::JOINED)
            .and_then(|v| parse_joined(v));
        let candidate = match joined {
            Some((stamp, joined_group)) if joined_group == group.as_str() => Candidate {
                session,
                stamp,
                established: true,
                from_elsewhere: false,
            },
            _ => {
                next_stamp += 1;
                Candidate {
                    session,
                    stamp: next_stamp,
                    established: false,
                    from_elsewhere: joined.is_some(),
                }
            }
        };
        groups.entry(group).or_default().push(candidate);
    }

    let mut report = GroupsReport {
        groups: Vec::new(),
        ignored,
    };
    let mut desired: BTreeMap<SessionId, BTreeMap<String, String>> = BTreeMap::new();
    for (name, mut members) in groups {
        members.sort_by_key(|m| (m.stamp, m.session.id));
        let any_established = members.iter().any(|m| m.established);
        let mut context: BTreeMap<String, String> = BTreeMap::new();
        for member in members
            .iter()
            .filter(|m| m.established || (!any_established && !m.from_elsewhere))
        {
            for (option, value) in &member.session.options {
                if let Some(key) = context_key(option) {
                    context
                        .entry(key.to_owned())
                        .or_insert_with(|| value.clone());
                }
            }
        }
        for edit in edits.iter().filter(|e| e.group == name) {
            match &edit.value {
                Some(value) => context.insert(edit.key.as_str().to_owned(), value.clone()),
                None => context.remove(edit.key.as_str()),
            };
        }

        let views: Vec<MemberView> = members
            .iter()
            .enumerate()
            .map(|(i, m)| MemberView {
                id: m.session.id,
                name: m.session.name.clone(),
                role: if i == 0 {
                    Role::Coordinator
                } else {
                    Role::Member
                },
                joined: m.stamp,
            })
            .collect();
        for view in &views {
            let peers: Vec<&str> = views
                .iter()
                .filter(|other| other.id != view.id)
                .map(|other| other.name.as_str())
                .collect();
            let mut options = BTreeMap::new();
            options.insert(
                schema::session::ROLE.to_owned(),
                view.role.as_str().to_owned(),
            );
            options.insert(schema::session::PEERS.to_owned(), peers.join(","));
            options.insert(
                schema::session::JOINED.to_owned(),
                format_joined(view.joined, &name),
            );
            for (key, value) in &context {
                options.insert(schema::session::context(key.as_str()), value.clone());
            }
            desired.insert(view.id, options);
        }
        let coordinator = SessionRef {
            id: views[0].id,
            name: views[0].name.clone(),
        };
        report.groups.push(GroupView {
            name,
            coordinator,
            members: views,
            context,
        });
    }

    let mut writes = Vec::new();
    let empty = BTreeMap::new();
    for session in &sessions {
        let want = desired.get(&session.id).unwrap_or(&empty);
        let derived = session
            .options
            .keys()
            .filter(|name| is_derived(name))
            .cloned()
            .collect::<BTreeSet<_>>();
        // Context first, then the membership options: a status line that
        // shows the role already finds the group's context there.
        let mut ordered: Vec<(&String, &String)> = want.iter().collect();
        ordered.sort_by_key(|(name, _)| !name.starts_with(schema::session::CONTEXT_PREFIX));
        for (name, value) in ordered {
            if session.options.get(name) != Some(value) {
                writes.push(Write::Set {
                    session: session.id,
                    name: name.clone(),
                    value: value.clone(),
                });
            }
        }
        for name in derived {
            if !want.contains_key(&name) {
                writes.push(Write::Unset {
                    session: session.id,
                    name,
                });
            }
        }
    }
    match (report.summary(), &observation.groups_summary) {
        (Some(want), found) if found.as_ref() != Some(&want) => writes.push(Write::SetGlobal {
            name: schema::global::GROUPS.to_owned(),
            value: want,
        }),
        (None, Some(_)) => writes.push(Write::UnsetGlobal {
            name: schema::global::GROUPS.to_owned(),
        }),
        _ => {}
    }
    Plan { report, writes }
}

/// The KEY of an `@agent-ctx-KEY` option name (any non-empty suffix: a key
/// set by hand outside the CLI's alphabet is still the group's data).
fn context_key(option: &str) -> Option<&str> {
    option
        .strip_prefix(schema::session::CONTEXT_PREFIX)
        .filter(|key| !key.is_empty())
}

/// Whether the daemon owns this session option.
fn is_derived(option: &str) -> bool {
    option == schema::session::ROLE
        || option == schema::session::PEERS
        || option == schema::session::JOINED
        || context_key(option).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: u32, name: &str, options: &[(&str, &str)]) -> ObservedSession {
        ObservedSession {
            id: SessionId(id),
            name: name.to_owned(),
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn observe(sessions: Vec<ObservedSession>, summary: Option<&str>) -> Observation {
        Observation {
            sessions,
            groups_summary: summary.map(str::to_owned),
        }
    }

    /// Applies the writes to the observation, as tmux would.
    fn apply(observation: &mut Observation, writes: &[Write]) {
        for write in writes {
            match write {
                Write::Set {
                    session,
                    name,
                    value,
                } => {
                    let s = observation
                        .sessions
                        .iter_mut()
                        .find(|s| s.id == *session)
                        .unwrap();
                    s.options.insert(name.clone(), value.clone());
                }
                Write::Unset { session, name } => {
                    let s = observation
                        .sessions
                        .iter_mut()
                        .find(|s| s.id == *session)
                        .unwrap();
                    s.options.remove(name);
                }
                Write::SetGlobal { value, .. } => observation.groups_summary = Some(value.clone()),
                Write::UnsetGlobal { .. } => observation.groups_summary = None,
            }
        }
    }

    /// Plans, applies, and checks that a second plan has nothing to write.
    fn settle(observation: &mut Observation, edits: &[ContextEdit]) -> GroupsReport {
        let first = plan(observation, edits);
        apply(observation, &first.writes);
        let second = plan(observation, &[]);
        assert_eq!(second.writes, [], "not settled after {:#?}", first.writes);
        assert_eq!(second.report, first.report);
        first.report
    }

    fn opt<'a>(o: &'a Observation, id: u32, name: &str) -> Option<&'a str> {
        o.session(SessionId(id))?
            .options
            .get(name)
            .map(String::as_str)
    }

    #[test]
    fn first_joiner_coordinates_and_peers_are_the_others() {
        let mut o = observe(
            vec![
                session(1, "a", &[(schema::session::GROUP, "g")]),
                session(2, "b", &[]),
            ],
            None,
        );
        settle(&mut o, &[]);
        assert_eq!(opt(&o, 1, schema::session::ROLE), Some("coordinator"));
        assert_eq!(opt(&o, 1, schema::session::PEERS), Some(""));
        assert_eq!(opt(&o, 1, schema::session::JOINED), Some("1:g"));
        assert_eq!(o.groups_summary.as_deref(), Some("g:1"));

        o.sessions[1]
            .options
            .insert(schema::session::GROUP.into(), "g".into());
        let report = settle(&mut o, &[]);
        assert_eq!(opt(&o, 2, schema::session::ROLE), Some("member"));
        assert_eq!(opt(&o, 2, schema::session::JOINED), Some("2:g"));
        assert_eq!(opt(&o, 1, schema::session::PEERS), Some("b"));
        assert_eq!(opt(&o, 2, schema::session::PEERS), Some("a"));
        assert_eq!(o.groups_summary.as_deref(), Some("g:2"));
        let g = report.group("g").unwrap();
        assert_eq!(g.coordinator.name, "a");
        assert_eq!(g.members.len(), 2);
    }

    #[test]
    fn join_order_beats_session_order_and_survives_a_fresh_plan() {
        // b ($2) joined first (stamp 4), a ($1) later (stamp 9).
        let mut o = observe(
            vec![
                session(
                    1,
                    "a",
                    &[
                        (schema::session::GROUP, "g"),
                        (schema::session::JOINED, "9:g"),
                    ],
                ),
                session(
                    2,
                    "b",
                    &[
                        (schema::session::GROUP, "g"),
                        (schema::session::JOINED, "4:g"),
                    ],
                ),
            ],
            None,
        );
        settle(&mut o, &[]);
        assert_eq!(opt(&o, 2, schema::session::ROLE), Some("coordinator"));
        assert_eq!(opt(&o, 1, schema::session::ROLE), Some("member"));
        // A newcomer gets a stamp after the largest present.
        o.sessions
            .push(session(3, "c", &[(schema::session::GROUP, "g")]));
        settle(&mut o, &[]);
        assert_eq!(opt(&o, 3, schema::session::JOINED), Some("10:g"));
        assert_eq!(opt(&o, 2, schema::session::PEERS), Some("a,c"));
    }

    #[test]
    fn the_next_earliest_is_promoted_when_the_coordinator_goes() {
        let mut o = observe(
            vec![
                session(1, "a", &[(schema::session::GROUP, "g")]),
                session(2, "b", &[(schema::session::GROUP, "g")]),
                session(3, "c", &[(schema::session::GROUP, "g")]),
            ],
            None,
        );
        settle(&mut o, &[]);
        // a leaves by unsetting @agent-group.
        o.sessions[0].options.remove(schema::session::GROUP);
        settle(&mut o, &[]);
        assert_eq!(opt(&o, 2, schema::session::ROLE), Some("coordinator"));
        assert_eq!(opt(&o, 3, schema::session::PEERS), Some("b"));
        for name in [
            schema::session::ROLE,
            schema::session::PEERS,
            schema::session::JOINED,
        ] {
            assert_eq!(opt(&o, 1, name), None, "{name} left on the leaver");
        }
        // b's session closes.
        o.sessions.retain(|s| s.id != SessionId(2));
        settle(&mut o, &[]);
        assert_eq!(opt(&o, 3, schema::session::ROLE), Some("coordinator"));
        assert_eq!(opt(&o, 3, schema::session::PEERS), Some(""));
        assert_eq!(o.groups_summary.as_deref(), Some("g:1"));
        // The last member leaves: the group and the summary disappear.
        o.sessions[1].options.remove(schema::session::GROUP);
        let report = settle(&mut o, &[]);
        assert!(report.groups.is_empty());
        assert_eq!(o.groups_summary, None);
    }

    #[test]
    fn changing_group_is_leaving_and_joining() {
        let mut o = observe(
            vec![
                session(1, "a", &[(schema::session::GROUP, "g")]),
                session(2, "b", &[(schema::session::GROUP, "g")]),
            ],
            None,
        );
        settle(
            &mut o,
            &[ContextEdit {
                group: GroupName::new("g").unwrap(),
                key: ContextKey::new("task").unwrap(),
                value: Some("x".into()),
            }],
        );
        o.sessions[0]
            .options
            .insert(schema::session::GROUP.into(), "h".into());
        let report = settle(&mut o, &[]);
        assert_eq!(opt(&o, 1, schema::session::JOINED), Some("3:h"));
        assert_eq!(opt(&o, 1, schema::session::ROLE), Some("coordinator"));
        assert_eq!(opt(&o, 2, schema::session::ROLE), Some("coordinator"));
        assert_eq!(
            opt(&o, 1, &schema::session::context("task")),
            None,
            "g's context does not follow a to h"
        );
        assert_eq!(opt(&o, 2, &schema::session::context("task")), Some("x"));
        assert_eq!(o.groups_summary.as_deref(), Some("g:1 h:1"));
        assert_eq!(report.groups.len(), 2);
    }

    #[test]
    fn context_is_replicated_to_newcomers_and_edited_everywhere() {
        let mut o = observe(
            vec![
                session(1, "a", &[(schema::session::GROUP, "g")]),
                session(2, "b", &[(schema::session::GROUP, "g")]),
                session(3, "c", &[(&schema::session::context("stale"), "left over")]),
            ],
            None,
        );
        let edit = |key: &str, value: Option<&str>| ContextEdit {
            group: GroupName::new("g").unwrap(),
            key: ContextKey::new(key).unwrap(),
            value: value.map(str::to_owned),
        };
        settle(&mut o, &[edit("task", Some("refactor"))]);
        assert_eq!(
            opt(&o, 1, &schema::session::context("task")),
            Some("refactor")
        );
        assert_eq!(
            opt(&o, 2, &schema::session::context("task")),
            Some("refactor")
        );
        assert_eq!(
            opt(&o, 3, &schema::session::context("stale")),
            None,
            "no group, no context"
        );

        // c joins holding a leftover key: it gets the group's context only.
        o.sessions[2]
            .options
            .insert(schema::session::context("stale"), "left over".into());
        o.sessions[2]
            .options
            .insert(schema::session::GROUP.into(), "g".into());
        let report = settle(&mut o, &[]);
        assert_eq!(
            opt(&o, 3, &schema::session::context("task")),
            Some("refactor")
        );
        assert_eq!(opt(&o, 3, &schema::session::context("stale")), None);
        assert_eq!(
            report.group("g").unwrap().context,
            BTreeMap::from([("task".to_owned(), "refactor".to_owned())])
        );

        settle(&mut o, &[edit("task", None)]);
        for id in 1..=3 {
            assert_eq!(opt(&o, id, &schema::session::context("task")), None);
        }
    }

    #[test]
    fn hand_edits_of_context_converge_earliest_wins() {
        let mut o = observe(
            vec![
                session(1, "a", &[(schema::session::GROUP, "g")]),
                session(2, "b", &[(schema::session::GROUP, "g")]),
            ],
            None,
        );
        settle(&mut o, &[]);
        // A key set by hand on the member spreads; a conflicting value on
        // the member loses to the coordinator's.
        o.sessions[1]
            .options
            .insert(schema::session::context("new"), "n".into());
        o.sessions[0]
            .options
            .insert(schema::session::context("k"), "coord".into());
        o.sessions[1]
            .options
            .insert(schema::session::context("k"), "member".into());
        settle(&mut o, &[]);
        assert_eq!(opt(&o, 1, &schema::session::context("new")), Some("n"));
        assert_eq!(opt(&o, 2, &schema::session::context("k")), Some("coord"));
    }

    #[test]
    fn a_group_formed_while_the_daemon_was_down_keeps_its_context() {
        // a shared task=x while alone (no daemon), then b joined; no stamps.
        let mut o = observe(
            vec![
                session(1, "b", &[(schema::session::GROUP, "g")]),
                session(
                    2,
                    "a",
                    &[
                        (schema::session::GROUP, "g"),
                        (&schema::session::context("task"), "x"),
                    ],
                ),
            ],
            None,
        );
        settle(&mut o, &[]);
        assert_eq!(opt(&o, 1, &schema::session::context("task")), Some("x"));
        assert_eq!(opt(&o, 2, &schema::session::context("task")), Some("x"));
    }

    #[test]
    fn a_consistent_server_gets_no_writes() {
        let mut o = observe(
            vec![
                session(1, "a", &[(schema::session::GROUP, "g")]),
                session(2, "b", &[(schema::session::GROUP, "g")]),
                session(3, "c", &[(schema::session::GROUP, "h")]),
                session(4, "d", &[]),
            ],
            None,
        );
        settle(&mut o, &[]);
        let again = plan(&o, &[]);
        assert_eq!(again.writes, []);
    }

    #[test]
    fn invalid_group_values_are_ignored_not_spread() {
        let mut o = observe(
            vec![
                session(1, "a", &[(schema::session::GROUP, "bad name,x:1")]),
                session(2, "b", &[(schema::session::GROUP, "")]),
                session(3, "c", &[(schema::session::GROUP, "g")]),
            ],
            None,
        );
        let report = settle(&mut o, &[]);
        assert_eq!(report.groups.len(), 1);
        assert_eq!(report.ignored.len(), 1);
        assert_eq!(report.ignored[0].group, "bad name,x:1");
        assert!(report.ignored[0].reason.contains("A-Z a-z 0-9 _ . -"));
        assert_eq!(opt(&o, 1, schema::session::ROLE), None);
        assert_eq!(o.groups_summary.as_deref(), Some("g:1"));
    }

    #[test]
    fn a_clobbered_summary_or_joined_value_is_repaired() {
        let mut o = observe(
            vec![session(
                1,
                "a",
                &[
                    (schema::session::GROUP, "g"),
                    (schema::session::JOINED, "x:g"),
                ],
            )],
            Some("junk"),
        );
        settle(&mut o, &[]);
        assert_eq!(opt(&o, 1, schema::session::JOINED), Some("1:g"));
        assert_eq!(o.groups_summary.as_deref(), Some("g:1"));
    }

    #[test]
    fn joined_values_parse_strictly() {
        assert_eq!(parse_joined("7:build"), Some((7, "build")));
        assert_eq!(parse_joined("7:"), Some((7, "")));
        assert_eq!(parse_joined(":build"), None);
        assert_eq!(parse_joined("-1:build"), None);
        assert_eq!(parse_joined("x:build"), None);
        assert_eq!(parse_joined("99999999999999999999999:g"), None);
    }

    #[test]
    fn writes_render_as_commands_and_argv() {
        let set = Write::Set {
            session: SessionId(3),
            name: schema::session::context("task"),
            value: "a;".into(),
        };
        assert_eq!(
            set.to_command().unwrap().as_str(),
            "set-option -t '$3' -- @agent-ctx-task 'a;'"
        );
        assert_eq!(
            set.to_command().unwrap().argv(),
            [
                "set-option",
                "-t",
                "$3",
                "--",
                &schema::session::context("task"),
                "a\\;"
            ]
        );
        let unset = Write::UnsetGlobal {
            name: schema::global::GROUPS.into(),
        };
        assert_eq!(
            unset.to_command().unwrap().argv(),
            ["set-option", "-gu", "--", schema::global::GROUPS]
        );
    }
}
