//! Live tmux sessions as MCP resources, read from tmux when asked:
//!
//! - `tmux-agent://sessions`: every session on the server (tmux-agent's own
//!   sidecar session left out), with each one's URI;
//! - `tmux-agent://session/{name}`: one session's `@agent-*` options (goal,
//!   type, goal id, state, group, role, peers, last save) and the agents in
//!   its panes, what `tmux-agent show --json` shows of it without the
//!   daemon's outbox.
//!
//! `{name}` is the session's name percent-encoded (RFC 3986: every byte but
//! `A-Z a-z 0-9 - . _ ~`), so a name with `/`, `#{}`, quotes, `;` or spaces
//! stays one path segment. A name is only ever compared with the names a
//! `list-sessions` listing gives, never handed to tmux as a target (names
//! prefix-match there, and `$3`, `=x`, `{last}` mean something else), and
//! every command is an argv built by [`crate::control::command`]: nothing
//! in a name or an option value is run or expanded. `$N` (a session id)
//! reaches a session whose name is not `$N`.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use rmcp::model::{Resource, ResourceTemplate};
use serde::Serialize;

use super::agent::{AgentOptions, TmuxEnv};
use crate::control::SessionId;
use crate::control::command::Command;
use crate::control::connection::DEFAULT_SESSION_NAME;
use crate::group::direct::{Direct, DirectError};
use crate::schema;
use crate::status::panes::{self, PaneStatus};

/// The list of sessions.
pub const SESSIONS: &str = "tmux-agent://sessions";
/// One session: this prefix, then its percent-encoded name.
pub const SESSION: &str = "tmux-agent://session/";
const JSON: &str = "application/json";

/// RFC 3986 unreserved characters stay; every other byte is encoded.
const NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a session resource could not be read; the message goes to the client.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Tmux(#[from] DirectError),
    #[error(transparent)]
    Command(#[from] crate::control::command::CommandError),
    #[error("no tmux session named {0:?} (read {SESSIONS} for the sessions there are)")]
    NoSuchSession(String),
    #[error("{0:?} is not a percent-encoded UTF-8 session name")]
    BadName(String),
}

/// `tmux-agent://session/{name}` for a session name.
pub fn uri(name: &str) -> String {
    format!("{SESSION}{}", utf8_percent_encode(name, NAME))
}

/// The session name in a `tmux-agent://session/…` URI, decoded; `None` when
/// `uri` is not one.
pub fn name_of(uri: &str) -> Option<Result<String, LiveError>> {
    let encoded = uri.strip_prefix(SESSION)?;
    Some(
        percent_decode_str(encoded)
            .decode_utf8()
            .map(|name| name.into_owned())
            .map_err(|_| LiveError::BadName(encoded.to_owned()))
            .and_then(|name| {
                if name.is_empty() {
                    Err(LiveError::BadName(encoded.to_owned()))
                } else {
                    Ok(name)
                }
            }),
    )
}

/// The fixed resource listing the sessions.
pub fn fixed() -> Resource {
    Resource::new(SESSIONS, "sessions")
        .with_description("The tmux sessions on this server, each with its resource URI")
        .with_mime_type(JSON)
}

/// The session template.
pub fn template() -> ResourceTemplate {
    ResourceTemplate::new(format!("{SESSION}{{name}}"), "session")
        .with_description(
            "A live tmux session by name (percent-encoded): its @agent-* options (goal, \
             group, role, state, ...) and the agents in its panes",
        )
        .with_mime_type(JSON)
}

/// A session in `tmux-agent://sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedSession {
    /// tmux's id, e.g. "$3".
    pub session_id: String,
    pub session_name: String,
    /// Its resource, `tmux-agent://session/{name}`.
    pub uri: String,
}

/// `tmux-agent://sessions`.
#[derive(Debug, Clone, Serialize)]
pub struct SessionList {
    pub sessions: Vec<ListedSession>,
}

/// `tmux-agent://session/{name}`.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub session_id: String,
    pub session_name: String,
    pub uri: String,
    /// Goal, type, goal id, state, group, role and peers, as `whoami`
    /// gives them.
    #[serde(flatten)]
    pub agent: AgentOptions,
    /// `@agent-saved`: when its context was last saved.
    pub saved: Option<String>,
    /// Every `@agent-*` option set on the session, as tmux holds it.
    pub options: BTreeMap<String, String>,
    /// The agents in its panes (`@agent-status`, `-kind`, `-since`).
    pub agents: Vec<PaneStatus>,
}

/// The sessions on the server, in tmux's order, without tmux-agent's own.
/// No server running is no sessions.
pub async fn sessions(env: &TmuxEnv) -> Result<Vec<ListedSession>, LiveError> {
    let direct = Direct::new(env.server.clone());
    let listed = match direct.sessions().await {
        Ok(listed) => listed,
        Err(_) if !direct.is_running().await => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    Ok(listed
        .into_iter()
        .filter(|(_, name)| name != DEFAULT_SESSION_NAME)
        .map(|(id, name)| ListedSession {
            session_id: id.to_string(),
            uri: uri(&name),
            session_name: name,
        })
        .collect())
}

/// The resources for the sessions there are now, one per session.
pub async fn resources(env: &TmuxEnv) -> Vec<Resource> {
    match sessions(env).await {
        Ok(listed) => listed
            .into_iter()
            .map(|session| {
                Resource::new(session.uri, session.session_name.clone())
                    .with_description(format!("tmux session {}", session.session_id))
                    .with_mime_type(JSON)
            })
            .collect(),
        Err(err) => {
            // The fixed resources are still worth listing.
            tracing::warn!(error = %err, "cannot list tmux sessions for resources/list");
            Vec::new()
        }
    }
}

/// Reads the session whose name (or, failing that, `$id`) is `wanted`.
pub async fn read(env: &TmuxEnv, wanted: &str) -> Result<SessionView, LiveError> {
    let listed = sessions(env).await?;
    let found = listed
        .iter()
        .find(|s| s.session_name == wanted)
        .or_else(|| listed.iter().find(|s| s.session_id == wanted))
        .ok_or_else(|| LiveError::NoSuchSession(wanted.to_owned()))?;
    let id: SessionId = found
        .session_id
        .parse()
        .map_err(|_| LiveError::NoSuchSession(wanted.to_owned()))?;
    let direct = Direct::new(env.server.clone());
    let options = direct.session_options(id).await?;
    let listing = direct
        .oneshot()
        .run(&Command::list_panes(id, panes::FORMAT)?)
        .await
        .map_err(DirectError::from)?;
    let agents = panes::parse(&String::from_utf8_lossy(&listing));
    Ok(SessionView {
        session_id: found.session_id.clone(),
        session_name: found.session_name.clone(),
        uri: found.uri.clone(),
        agent: AgentOptions::from_options(&options),
        saved: options
            .get(schema::session::SAVED)
            .filter(|v| !v.is_empty())
            .cloned(),
        options,
        agents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_uris() {
        for name in [
            "work",
            "a/b",
            "say \"hi\"; rm -rf ~",
            "#{session_id} #(reboot)",
            "line\nbreak",
            "100%",
            "ünï",
            &"x".repeat(1000),
        ] {
            let uri = uri(name);
            let segment = uri.strip_prefix(SESSION).unwrap();
            assert!(
                segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                "{uri}"
            );
            assert_eq!(name_of(&uri).unwrap().unwrap(), name);
        }
        assert_eq!(uri("a b/c"), "tmux-agent://session/a%20b%2Fc");
        assert!(name_of("tmux-agent://goals").is_none());
        assert!(name_of("tmux-agent://session/").unwrap().is_err());
        assert!(name_of("tmux-agent://session/%FF").unwrap().is_err());
    }
}
