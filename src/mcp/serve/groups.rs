//! The group tools of the built-in server (`group_context`, `group_share`,
//! `group_peers`): the caller's session's coordination group, read and
//! written through [`crate::group::access`] exactly as the `tmux-agent
//! peers` and `share` commands do, so through the daemon when one runs and
//! with one-shot `tmux` commands when none does.
//!
//! The session is found as the other agent tools find it
//! ([`agent::resolve_session`]: `$TMUX_PANE`, or a `session` argument that is
//! a `$id` or an exact name), then checked by the group layer, which refuses
//! tmux-agent's own session.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::agent::{self, TmuxEnv};
use crate::group::access::{Fetched, GroupAccess, check_share, who};
use crate::group::{GroupView, MemberView, SessionRef};

/// Arguments of `group_context` and `group_peers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupArgs {
    /// A session name or `$id`; default: the session of the pane this server
    /// runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
}

/// Arguments of `group_share`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupShareArgs {
    /// The key, stored as `@agent-ctx-KEY`: 1 to 64 characters from
    /// A-Z a-z 0-9 _ . -
    pub key: String,
    /// The value to share: one line of text (tabs allowed, no other control
    /// characters), at most 4096 bytes. It is data: tmux never runs or
    /// expands it. Leave it out when `unset` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub value: Option<String>,
    /// Remove `key` from the group's shared context instead of setting it.
    #[serde(default)]
    pub unset: bool,
    /// A session name or `$id`; default: this pane's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
}

/// A session of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Member {
    /// tmux session id, e.g. "$3".
    pub id: String,
    pub name: String,
    /// coordinator or member.
    pub role: String,
}

/// How the group was read.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    /// Whether the tmux-agent daemon answered (else tmux was read directly,
    /// and role and peers are shown as the daemon will set them).
    pub daemon: bool,
    /// What to know about how the group was read, e.g. that no daemon runs.
    pub notes: Vec<String>,
}

/// Result of `group_context`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GroupContext {
    /// tmux session id of the session asked about, e.g. "$3".
    pub session_id: String,
    pub session_name: String,
    /// Its group (`@agent-group`).
    pub group: String,
    /// The group's shared context: KEY → value, from `@agent-ctx-KEY`.
    pub context: BTreeMap<String, String>,
    #[serde(flatten)]
    pub source: Source,
}

/// Result of `group_share`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GroupShared {
    pub session_id: String,
    pub session_name: String,
    pub group: String,
    /// The key set or removed.
    pub key: String,
    /// The value now shared; null when the key was removed.
    pub value: Option<String>,
    /// The sessions that now hold it, in join order.
    pub members: Vec<Member>,
    /// The group's whole shared context afterwards.
    pub context: BTreeMap<String, String>,
    #[serde(flatten)]
    pub source: Source,
}

/// Result of `group_peers`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GroupPeers {
    pub session_id: String,
    pub session_name: String,
    pub group: String,
    /// This session's role: coordinator (the earliest member) or member.
    pub role: String,
    /// The group's coordinator.
    pub coordinator: Member,
    /// The other members, in join order.
    pub peers: Vec<Member>,
    /// Every member, in join order, this session included.
    pub members: Vec<Member>,
    #[serde(flatten)]
    pub source: Source,
}

/// The `group_context` answer.
pub async fn context(env: &TmuxEnv, session: Option<&str>) -> Result<GroupContext, String> {
    let (access, session) = locate(env, session).await?;
    let fetched = access.reconciled().await.map_err(|err| err.to_string())?;
    let group = group_of(&fetched, &session)?;
    Ok(GroupContext {
        session_id: session.id.to_string(),
        group: group.name.to_string(),
        context: group.context.clone(),
        source: source(&fetched),
        session_name: session.name,
    })
}

/// The `group_peers` answer.
pub async fn peers(env: &TmuxEnv, session: Option<&str>) -> Result<GroupPeers, String> {
    let (access, session) = locate(env, session).await?;
    let fetched = access.reconciled().await.map_err(|err| err.to_string())?;
    let group = group_of(&fetched, &session)?;
    let members: Vec<Member> = group.members.iter().map(member).collect();
    let role = group
        .member(session.id)
        .map(|m| m.role.as_str())
        .unwrap_or("member")
        .to_owned();
    let coordinator = group
        .member(group.coordinator.id)
        .map(member)
        .unwrap_or_else(|| Member {
            id: group.coordinator.id.to_string(),
            name: group.coordinator.name.clone(),
            role: "coordinator".to_owned(),
        });
    let me = session.id.to_string();
    Ok(GroupPeers {
        session_id: me.clone(),
        session_name: session.name,
        group: group.name.to_string(),
        role,
        coordinator,
        peers: members.iter().filter(|m| m.id != me).cloned().collect(),
        members,
        source: source(&fetched),
    })
}

/// The `group_share` answer: the value set (or removed) on every member.
pub async fn share(env: &TmuxEnv, args: GroupShareArgs) -> Result<GroupShared, String> {
    let value = match (args.value, args.unset) {
        (Some(_), true) => {
            return Err(
                "pass either `value` (to share it) or `unset: true` (to remove the \
                        key), not both"
                    .to_owned(),
            );
        }
        (None, false) => {
            return Err(format!(
                "no value to share for {:?}: pass `value`, or `unset: true` to remove the key",
                args.key
            ));
        }
        (value, _) => value,
    };
    // Checked before tmux is asked anything, as `tmux-agent share` does.
    let (key, value) = check_share(&args.key, value.as_deref()).map_err(|err| err.to_string())?;
    let (access, session) = locate(env, args.session.as_deref()).await?;
    let (group, fetched) = access
        .share_in_group(&session, &key, value.as_deref())
        .await
        .map_err(|err| err.to_string())?;
    let view = fetched.report.group(group.as_str());
    Ok(GroupShared {
        session_id: session.id.to_string(),
        session_name: session.name,
        group: group.to_string(),
        key: key.to_string(),
        value,
        members: view
            .map(|g| g.members.iter().map(member).collect())
            .unwrap_or_default(),
        context: view.map(|g| g.context.clone()).unwrap_or_default(),
        source: source(&fetched),
    })
}

/// The group layer on this server's tmux, and the session the caller means.
async fn locate(env: &TmuxEnv, session: Option<&str>) -> Result<(GroupAccess, SessionRef), String> {
    let (found, _) = agent::resolve_session(env, session)
        .await
        .map_err(|err| err.to_string())?;
    let access = GroupAccess::new(env.server.clone());
    // By `$id`, which the group layer resolves exactly, refusing
    // tmux-agent's own session.
    let session = access
        .direct
        .resolve_session(Some(&found.id.to_string()))
        .await
        .map_err(|err| err.to_string())?;
    Ok((access, session))
}

/// The session's group, or why it has none.
fn group_of<'a>(fetched: &'a Fetched, session: &SessionRef) -> Result<&'a GroupView, String> {
    if let Some(group) = fetched.report.group_of(session.id) {
        return Ok(group);
    }
    let me = who(session.id, &session.name);
    match fetched.report.ignored.iter().find(|i| i.id == session.id) {
        Some(ignored) => Err(format!(
            "{me} is in no group: its @agent-group {:?} is ignored: {}",
            ignored.group, ignored.reason
        )),
        None => Err(format!(
            "{me} is in no group: join one first (tmux-agent join GROUP, or set its \
             @agent-group option)"
        )),
    }
}

fn member(view: &MemberView) -> Member {
    Member {
        id: view.id.to_string(),
        name: view.name.clone(),
        role: view.role.as_str().to_owned(),
    }
}

fn source(fetched: &Fetched) -> Source {
    Source {
        daemon: fetched.daemon,
        notes: fetched.notes.clone(),
    }
}
