//! Reaching one tmux server's groups the way every front end does (the
//! CLI's coordination commands and the built-in MCP server's group tools):
//! through the daemon when one answers on its socket, since it is the writer
//! of the derived options and makes a pass before it answers; else with
//! one-shot `tmux` commands ([`super::direct`]), planning the groups as the
//! daemon would.
//!
//! Nothing here prints: how the groups were reached (no daemon, or a daemon
//! that did not answer) comes back as [`Fetched::notes`], sentences for a
//! person that each front end shows its own way.

use std::borrow::Cow;

use super::direct::{Direct, DirectError};
use super::names::{InputError, VALUE_MAX, check_value};
use super::plan::{Write, plan};
use super::{ContextKey, GroupName, GroupsReport, SessionRef};
use crate::control::SessionId;
use crate::control::oneshot::OneShotError;
use crate::control::server::ServerSocket;
use crate::ipc::{ClientError, Endpoint, Request, Response};
use crate::schema;

/// How often a direct share retries when a member closes under it.
const SHARE_ATTEMPTS: usize = 3;

/// Why the groups could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Direct(#[from] DirectError),
    /// The daemon answered with an error of its own.
    #[error("{0}")]
    Daemon(String),
    #[error("unexpected answer from the daemon: {0}")]
    UnexpectedAnswer(String),
}

/// Why a value could not be shared. The messages are the ones
/// `tmux-agent share` prints.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The value is not one line of at most [`VALUE_MAX`] bytes.
    // The reason is part of the message (not a `#[source]`) so that it is
    // said once, whichever way the error is printed.
    #[error("cannot share {key}: values are one line of at most {VALUE_MAX} bytes: {reason}")]
    BadValue { key: String, reason: InputError },
    /// The key is not a [`ContextKey`].
    #[error(transparent)]
    BadKey(InputError),
    #[error(
        "{who} is in no group, so there is nobody to share with: join one first (tmux-agent join GROUP)"
    )]
    NotInGroup { who: String },
    #[error("{who} has @agent-group {group:?}, which is not a usable group: {reason}")]
    UnusableGroup {
        who: String,
        group: String,
        reason: InputError,
    },
    #[error(transparent)]
    Access(#[from] AccessError),
}

/// Checks what is to be shared: `value` (`None` removes the key) first,
/// then `key`, as `tmux-agent share` does.
pub fn check_share(
    key: &str,
    value: Option<&str>,
) -> Result<(ContextKey, Option<String>), ShareError> {
    if let Some(value) = value {
        check_value(value).map_err(|reason| ShareError::BadValue {
            key: key.to_owned(),
            reason,
        })?;
    }
    let key = ContextKey::new(key).map_err(ShareError::BadKey)?;
    Ok((key, value.map(str::to_owned)))
}

/// Groups as they were reached.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub report: GroupsReport,
    /// Whether the daemon answered (else tmux was read directly).
    pub daemon: bool,
    /// What a person should know about how the groups were read: that no
    /// daemon keeps the derived options, or why the daemon was not used.
    /// Empty when the daemon answered.
    pub notes: Vec<String>,
}

/// The ways to the groups of one tmux server: its daemon's socket, and the
/// server itself.
#[derive(Debug, Clone)]
pub struct GroupAccess {
    pub direct: Direct,
    pub endpoint: Endpoint,
}

impl GroupAccess {
    pub fn new(server: ServerSocket) -> Self {
        Self {
            endpoint: Endpoint::for_server(&server),
            direct: Direct::new(server),
        }
    }

    /// The session's `@agent-group`, if it holds a non-empty one.
    pub async fn group_of(&self, session: SessionId) -> Result<Option<String>, AccessError> {
        let options = self.direct.session_options(session).await?;
        Ok(options
            .get(schema::session::GROUP)
            .cloned()
            .filter(|g| !g.is_empty()))
    }

    /// Sets or unsets the session's `@agent-group` (a user option: it is
    /// written here, daemon or not).
    pub async fn set_group(
        &self,
        session: SessionId,
        group: Option<&GroupName>,
    ) -> Result<(), AccessError> {
        let write = match group {
            Some(group) => Write::Set {
                session,
                name: schema::session::GROUP.to_owned(),
                value: group.to_string(),
            },
            None => Write::Unset {
                session,
                name: schema::session::GROUP.to_owned(),
            },
        };
        Ok(self.direct.apply(&[write]).await?)
    }

    /// The groups after a daemon pass, or as read from tmux when no daemon
    /// answers.
    pub async fn reconciled(&self) -> Result<Fetched, AccessError> {
        let mut notes = Vec::new();
        match self.ask(&Request::Reconcile, &mut notes).await? {
            Some(report) => Ok(Fetched {
                report,
                daemon: true,
                notes,
            }),
            None => self.read_directly(notes).await,
        }
    }

    /// Shares `value` (or removes `key` with `None`) in the group of
    /// `session`, after checking that it is in a usable group. Returns the
    /// group and the groups afterwards.
    pub async fn share_in_group(
        &self,
        session: &SessionRef,
        key: &ContextKey,
        value: Option<&str>,
    ) -> Result<(GroupName, Fetched), ShareError> {
        let me = who(session.id, &session.name);
        let Some(group) = self.group_of(session.id).await? else {
            return Err(ShareError::NotInGroup { who: me });
        };
        let group = GroupName::new(&group).map_err(|reason| ShareError::UnusableGroup {
            who: me,
            group: printable(&group).into_owned(),
            reason,
        })?;
        let fetched = self.share(session.id, &group, key, value).await?;
        Ok((group, fetched))
    }

    /// Sets (or removes) `@agent-ctx-KEY` on every member of `group`: by the
    /// daemon when it runs (it is the writer of derived options), else here.
    pub async fn share(
        &self,
        session: SessionId,
        group: &GroupName,
        key: &ContextKey,
        value: Option<&str>,
    ) -> Result<Fetched, AccessError> {
        let request = Request::Share {
            session,
            key: key.clone(),
            value: value.map(str::to_owned),
        };
        let mut notes = Vec::new();
        if let Some(report) = self.ask(&request, &mut notes).await? {
            return Ok(Fetched {
                report,
                daemon: true,
                notes,
            });
        }
        let name = schema::session::context(key.as_str());
        // Members may close between the read and the write: read again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let observation = self.direct.observe().await?;
            let writes: Vec<Write> = observation
                .sessions
                .iter()
                .filter(|s| {
                    s.options.get(schema::session::GROUP).map(String::as_str)
                        == Some(group.as_str())
                })
                .map(|s| match value {
                    Some(value) => Write::Set {
                        session: s.id,
                        name: name.clone(),
                        value: value.to_owned(),
                    },
                    None => Write::Unset {
                        session: s.id,
                        name: name.clone(),
                    },
                })
                .collect();
            match self.direct.apply(&writes).await {
                Ok(()) => break,
                Err(DirectError::Tmux(OneShotError::Refused { .. }))
                    if attempts < SHARE_ATTEMPTS =>
                {
                    continue;
                }
                Err(err) => return Err(err.into()),
            }
        }
        self.read_directly(notes).await
    }

    /// Asks the daemon; `None` when none runs, or when it does not answer
    /// (why is added to `notes`).
    async fn ask(
        &self,
        request: &Request,
        notes: &mut Vec<String>,
    ) -> Result<Option<GroupsReport>, AccessError> {
        match crate::ipc::request(&self.endpoint, request).await {
            Ok(Response::Groups(report)) => Ok(Some(report)),
            Ok(Response::Error { message }) => Err(AccessError::Daemon(message)),
            Ok(other) => Err(AccessError::UnexpectedAnswer(format!("{other:?}"))),
            Err(ClientError::NotRunning { .. }) => Ok(None),
            Err(err) => {
                notes.push(format!("{err}; reading tmux directly"));
                Ok(None)
            }
        }
    }

    /// The groups as tmux options describe them, planned as the daemon
    /// would (no writes), with a note that no daemon keeps them.
    pub async fn read_directly(&self, mut notes: Vec<String>) -> Result<Fetched, AccessError> {
        let observation = self.direct.observe().await?;
        notes.push(format!(
            "no daemon is running for `{}`: @agent-role, @agent-peers and shared context are shown as it will set them when it runs (start it: tmux-agent ensure)",
            self.direct.server()
        ));
        Ok(Fetched {
            report: plan(&observation, &[]).report,
            daemon: false,
            notes,
        })
    }
}

/// Text safe to show on a terminal: control characters escaped.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// A session as messages name it: `name ($id)`.
pub fn who(id: SessionId, name: &str) -> String {
    format!("{} ({id})", printable(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_checks_the_value_then_the_key() {
        let (key, value) = check_share("task", Some("#(x) 'q'")).unwrap();
        assert_eq!(key.as_str(), "task");
        assert_eq!(value.as_deref(), Some("#(x) 'q'"));
        assert_eq!(check_share("task", None).unwrap().1, None);

        let err = check_share("a b", Some("line\nbreak")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot share a b: values are one line of at most 4096 bytes: \
             the value must be a single line of text: it contains a newline"
        );
        let err = check_share("a b", Some("ok")).unwrap_err().to_string();
        assert!(err.starts_with("invalid key \"a b\""), "{err}");
        assert!(check_share("a;b", None).is_err());
    }

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(printable("plain é"), "plain é");
        assert_eq!(printable("a\nb\u{1b}"), "a\\nb\\u{1b}");
        assert_eq!(who(SessionId(3), "w\tx"), "w\\tx ($3)");
    }
}
