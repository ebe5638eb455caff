//! What a message is made of, besides its body: its id, who sent it, whom
//! it is for, and the envelope line that goes in front of the body when it
//! reaches an agent.
//!
//! # The envelope
//!
//! One line, then the body exactly as sent:
//!
//! ```text
//! [tmux-agent message m-3f9c2a71d04b6e88 from $3 "build" thread m-3f9c2a71d04b6e88; reply: tmux-agent send -t '$3' --reply-to m-3f9c2a71d04b6e88 -]
//! the body, byte for byte
//! ```
//!
//! A message from a person says `from user` and has no reply hint. The
//! fields are space-separated words in a fixed order (`message ID`, `from
//! SENDER`, an optional quoted session name, `thread ID`, then `; reply:`
//! and the command), so an agent can read them with one pattern:
//! `^\[tmux-agent message (m-[0-9a-f]{16}) from (\S+)`. The session name is
//! JSON-quoted (quotes and backslashes escaped, control characters as
//! `\u00XX`), so nothing in it can end the line or the field early.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::control::{PaneId, SessionId};

/// A message's id: `m-` and 16 lowercase hex digits (64 random bits).
///
/// The sender makes it (the CLI, the MCP server) before the first try, so
/// a send retried after a lost answer names the same message and is not
/// queued twice (the mailbox is idempotent by id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(String);

/// A string that is not a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a message id (m- and 16 hex digits, e.g. m-3f9c2a71d04b6e88)")]
pub struct InvalidMessageId(pub String);

impl MessageId {
    /// A fresh id from the kernel's random source; falls back to the time
    /// and pid (unique enough on one host) if `/dev/urandom` cannot be read.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 8];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .is_ok();
        let value = if random {
            u64::from_le_bytes(bytes)
        } else {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            nanos ^ (u64::from(std::process::id()) << 40)
        };
        Self(format!("m-{value:016x}"))
    }

    /// The id of the copy of fan-out message `base` for one recipient: a
    /// send to a group or to all is one message per recipient, each with
    /// an id of its own, made from the send's id so that a retried send
    /// makes the same ones.
    pub fn for_recipient(base: &MessageId, recipient: &Recipient) -> Self {
        // FNV-1a of the base and the recipient: stable, no dependency.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in base.0.bytes().chain(recipient.to_string().bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Self(format!("m-{hash:016x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MessageId {
    type Err = InvalidMessageId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("m-")
            .ok_or_else(|| InvalidMessageId(s.to_owned()))?;
        if hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidMessageId(s.to_owned()))
        }
    }
}

impl TryFrom<String> for MessageId {
    type Error = InvalidMessageId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> String {
        id.0
    }
}

/// Who sent a message: a person at the CLI, or an agent's session or pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Sender {
    /// A person (`tmux-agent send` outside any pane, or with `--from user`).
    User,
    /// A session (`--from S`, or the session of the pane `send` ran in).
    Session(SessionId),
    /// An agent's pane (the MCP tools, from `$TMUX_PANE`), with its session.
    Pane(PaneId, SessionId),
}

impl Sender {
    /// The session the sender is, or is in; `None` for a person.
    pub fn session(self) -> Option<SessionId> {
        match self {
            Sender::User => None,
            Sender::Session(session) | Sender::Pane(_, session) => Some(session),
        }
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sender::User => f.write_str("user"),
            Sender::Session(session) => write!(f, "{session}"),
            Sender::Pane(pane, session) => write!(f, "{pane}@{session}"),
        }
    }
}

impl FromStr for Sender {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "user" {
            return Ok(Sender::User);
        }
        if let Some((pane, session)) = s.split_once('@') {
            let pane = pane.parse().map_err(|_| bad_sender(s))?;
            let session = session.parse().map_err(|_| bad_sender(s))?;
            return Ok(Sender::Pane(pane, session));
        }
        s.parse().map(Sender::Session).map_err(|_| bad_sender(s))
    }
}

fn bad_sender(s: &str) -> String {
    format!("{s:?} is not a sender (user, $SESSION or %PANE@$SESSION)")
}

impl TryFrom<String> for Sender {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Sender> for String {
    fn from(sender: Sender) -> String {
        sender.to_string()
    }
}

/// Whom one copy of a message is for: a session (its agent's pane is
/// chosen at delivery) or one pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Recipient {
    Session(SessionId),
    Pane(PaneId),
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::Session(session) => write!(f, "{session}"),
            Recipient::Pane(pane) => write!(f, "{pane}"),
        }
    }
}

impl FromStr for Recipient {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with('%') {
            s.parse().map(Recipient::Pane).map_err(|_| bad_recipient(s))
        } else {
            s.parse()
                .map(Recipient::Session)
                .map_err(|_| bad_recipient(s))
        }
    }
}

fn bad_recipient(s: &str) -> String {
    format!("{s:?} is not a recipient ($SESSION or %PANE)")
}

impl TryFrom<String> for Recipient {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Recipient> for String {
    fn from(recipient: Recipient) -> String {
        recipient.to_string()
    }
}

/// Whom a send is addressed to, before the daemon expands it into
/// recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
pub enum Target {
    /// One session (`-t S`, `send_message(to)`).
    Session(SessionId),
    /// One pane (`-t %5`).
    Pane(PaneId),
    /// Every member of a group but the sender (`--group G`).
    Group(String),
    /// The sender's own group, but the sender (`broadcast`).
    OwnGroup,
    /// Every session but the sender and the daemon's (`--all`).
    All,
}

/// The envelope line for a message (see the module doc).
pub fn header(id: &MessageId, from: Sender, from_name: Option<&str>, thread: &MessageId) -> String {
    let mut line = format!("[tmux-agent message {id} from ");
    match from.session() {
        None => line.push_str("user"),
        Some(session) => {
            line.push_str(&session.to_string());
            if let Some(name) = from_name {
                line.push(' ');
                line.push_str(&serde_json::to_string(name).unwrap_or_default());
            }
        }
    }
    line.push_str(&format!(" thread {thread}"));
    if let Some(session) = from.session() {
        line.push_str(&format!(
            "; reply: tmux-agent send -t '{session}' --reply-to {id} -"
        ));
    }
    line.push(']');
    line
}

/// The text an agent receives: the envelope line, a newline, the body.
pub fn render(
    id: &MessageId,
    from: Sender,
    from_name: Option<&str>,
    thread: &MessageId,
    body: &str,
) -> String {
    format!("{}\n{body}", header(id, from, from_name, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_m_and_sixteen_hex_digits_and_fresh_each_time() {
        let a = MessageId::generate();
        let b = MessageId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().parse::<MessageId>().unwrap(), a);
        for bad in [
            "",
            "m-",
            "m-123",
            "M-0123456789abcdef",
            "m-0123456789ABCDEF",
            "x-0123456789abcdef",
            "m-0123456789abcdef0",
        ] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad}");
        }
        let base: MessageId = "m-0123456789abcdef".parse().unwrap();
        let one = MessageId::for_recipient(&base, &Recipient::Session(SessionId(1)));
        let two = MessageId::for_recipient(&base, &Recipient::Session(SessionId(2)));
        assert_ne!(one, two);
        assert_eq!(
            one,
            MessageId::for_recipient(&base, &Recipient::Session(SessionId(1)))
        );
        assert!(one.as_str().parse::<MessageId>().is_ok());
    }

    #[test]
    fn senders_and_recipients_round_trip_through_their_names() {
        for sender in [
            Sender::User,
            Sender::Session(SessionId(3)),
            Sender::Pane(PaneId(5), SessionId(3)),
        ] {
            assert_eq!(sender.to_string().parse::<Sender>().unwrap(), sender);
        }
        for recipient in [Recipient::Session(SessionId(3)), Recipient::Pane(PaneId(5))] {
            assert_eq!(
                recipient.to_string().parse::<Recipient>().unwrap(),
                recipient
            );
        }
        assert!("someone".parse::<Sender>().is_err());
        assert!("%x".parse::<Recipient>().is_err());
    }

    #[test]
    fn the_envelope_is_one_line_whatever_the_name() {
        let id: MessageId = "m-0123456789abcdef".parse().unwrap();
        let line = header(&id, Sender::Session(SessionId(3)), Some("a\"b\nc]"), &id);
        assert_eq!(
            line,
            r#"[tmux-agent message m-0123456789abcdef from $3 "a\"b\nc]" thread m-0123456789abcdef; reply: tmux-agent send -t '$3' --reply-to m-0123456789abcdef -]"#
        );
        assert!(!line.contains('\n'));
        let user = header(&id, Sender::User, None, &id);
        assert_eq!(
            user,
            "[tmux-agent message m-0123456789abcdef from user thread m-0123456789abcdef]"
        );
        assert_eq!(
            render(&id, Sender::User, None, &id, "hi\nthere"),
            format!("{user}\nhi\nthere")
        );
    }
}
