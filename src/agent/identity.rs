//! Which tmux server, and which session on it, beyond one server's life.
//!
//! tmux reuses session ids (`$3`) after a restart, so anything kept longer
//! than a server lives (the outbox, the built-in server's goals and
//! contexts, idempotency keys) names a session by its [`SessionKey`],
//! `host:server-start:$id`. This module is the one place that key is
//! built: the daemon and `tmux-agent show` must agree on it to the byte.

use std::fmt;

use crate::control::SessionId;

/// The tmux format that answers with the server's identity, for
/// `display-message -p`: [`ServerIdentity::parse`] reads its output.
pub const IDENTITY_FORMAT: &str = "#{host}\t#{start_time}";

/// The identity of a tmux server: its host and its start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    pub host: String,
    /// Unix seconds, as tmux prints `#{start_time}`.
    pub start_time: String,
}

impl ServerIdentity {
    /// Reads the output of [`IDENTITY_FORMAT`]; `None` without the tab.
    pub fn parse(text: &str) -> Option<ServerIdentity> {
        let (host, start_time) = text.trim_end_matches(['\r', '\n']).split_once('\t')?;
        Some(ServerIdentity {
            host: host.to_owned(),
            start_time: start_time.trim().to_owned(),
        })
    }

    /// The key of session `id` on this server.
    pub fn session_key(&self, id: SessionId) -> SessionKey {
        SessionKey(format!("{}{id}", self.key_prefix()))
    }

    /// Whether `key` names a session of this server (rather than one of an
    /// earlier server whose `$id` may now be somebody else's session).
    pub fn owns(&self, key: &str) -> bool {
        key.strip_prefix(&self.key_prefix())
            .is_some_and(|id| id.parse::<SessionId>().is_ok())
    }

    fn key_prefix(&self) -> String {
        format!("{}:{}:", self.host, self.start_time)
    }
}

/// A session named beyond one server's life: `host:server-start:$id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(String);

impl SessionKey {
    /// A key read back from storage (the journal), which this module built
    /// when it was first stored: a session of an earlier server keeps the
    /// key it had, whatever `$id` means now.
    pub(crate) fn stored(key: String) -> SessionKey {
        SessionKey(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<SessionKey> for String {
    fn from(key: SessionKey) -> String {
        key.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> SessionId {
        text.parse().unwrap()
    }

    #[test]
    fn identities_parse_from_tmux_output() {
        let cases = [
            ("box\t1700000000\n", Some(("box", "1700000000"))),
            ("box\t1700000000", Some(("box", "1700000000"))),
            ("my host\t17 \n", Some(("my host", "17"))),
            ("no tab here\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = ServerIdentity::parse(text);
            let got = got
                .as_ref()
                .map(|i| (i.host.as_str(), i.start_time.as_str()));
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn keys_name_host_start_and_id() {
        let here = ServerIdentity::parse("box\t100").unwrap();
        let key = here.session_key(id("$3"));
        assert_eq!(key.as_str(), "box:100:$3");
        assert_eq!(key.to_string(), "box:100:$3");

        let cases = [
            ("box:100:$3", true),
            ("box:100:$12", true),
            // An earlier server on the same host: its `$3` is not ours.
            ("box:99:$3", false),
            ("box:1000:$3", false),
            ("other:100:$3", false),
            ("box:100:", false),
            ("box:100:3", false),
        ];
        for (key, owned) in cases {
            assert_eq!(here.owns(key), owned, "{key}");
        }
    }
}
