//! The values the control-mode stream carries: tmux's object ids, the
//! notifications (`%word ...` lines), reply blocks (`%begin` … `%end`/`%error`)
//! and the events the codec yields.
//!
//! Everything here is plain data; parsing lives in [`super::parse`] and
//! framing in [`super::codec`].

use std::fmt;

use bytes::Bytes;

/// A session id as tmux prints it: `$3`. Ids are never reused while a
/// server lives, so they are the only safe way to target a session.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct SessionId(pub u32);

/// A window id as tmux prints it: `@7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowId(pub u32);

/// A pane id as tmux prints it: `%12`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct PaneId(pub u32);

macro_rules! tmux_id {
    ($ty:ident, $sigil:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($sigil, "{}"), self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.strip_prefix($sigil)
                    .filter(|digits| {
                        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|digits| digits.parse().ok())
                    .map($ty)
                    .ok_or_else(|| InvalidId(s.to_owned()))
            }
        }
    };
}

tmux_id!(SessionId, "$");
tmux_id!(WindowId, "@");
tmux_id!(PaneId, "%");

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for SessionId {
    type Error = InvalidId;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PaneId> for String {
    fn from(id: PaneId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for PaneId {
    type Error = InvalidId;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A string that is not a tmux id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a tmux id: {0:?}")]
pub struct InvalidId(pub String);

/// The `time number flags` triple of a `%begin`/`%end`/`%error` guard line.
///
/// `number` is a server-wide counter, so two blocks never share a triple;
/// `flags` is 1 only for commands this client wrote on its stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guard {
    pub time: i64,
    pub number: u64,
    pub flags: u32,
}

impl Guard {
    /// Whether the block answers a command this client wrote (flags = 1),
    /// as opposed to the command on `tmux -C`'s command line or a hook.
    pub fn is_ours(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// A complete `%begin` … `%end`/`%error` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub guard: Guard,
    /// `false` when the block closed with `%error`.
    pub success: bool,
    /// The raw output lines between the guards, without their LF. tmux does
    /// not escape them, so they are bytes, not text.
    pub lines: Vec<Bytes>,
    /// Lines inside the block that were longer than the codec's limit and
    /// were dropped; a reply with dropped lines is incomplete.
    pub dropped_lines: usize,
}

impl Reply {
    /// The output lines as text (invalid UTF-8 replaced), for errors and logs.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&String::from_utf8_lossy(line));
        }
        out
    }
}

/// One asynchronous notification line (`%name args`).
///
/// Names are decoded lossily into `String` (tmux vis-escapes session and
/// window names, so they are almost always ASCII); pane output stays bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// `%output %<pane> <octal-escaped bytes>`
    Output { pane: PaneId, data: Bytes },
    /// `%extended-output %<pane> <age-ms> ... : <octal-escaped bytes>`
    ExtendedOutput {
        pane: PaneId,
        age_ms: u64,
        data: Bytes,
    },
    /// `%pause %<pane>`
    Pause { pane: PaneId },
    /// `%continue %<pane>`
    Continue { pane: PaneId },
    /// `%exit[ <reason>]`
    Exit { reason: Option<String> },
    /// `%layout-change @<window> <layout>[ <visible-layout>[ <flags>]]`
    LayoutChange {
        window: WindowId,
        layout: String,
        visible_layout: Option<String>,
        flags: Option<String>,
    },
    /// `%session-changed $<session> <name>`: this client's session changed.
    SessionChanged { session: SessionId, name: String },
    /// `%session-renamed $<session> <name>` (the man page omits the id; the wire has it).
    SessionRenamed { session: SessionId, name: String },
    /// `%sessions-changed`: a session was created or destroyed, no arguments.
    SessionsChanged,
    /// `%session-window-changed $<session> @<window>`
    SessionWindowChanged {
        session: SessionId,
        window: WindowId,
    },
    /// `%client-session-changed <client> $<session> <name>`: another client
    /// attached to or switched to a session.
    ClientSessionChanged {
        client: String,
        session: SessionId,
        name: String,
    },
    /// `%client-detached <client>`
    ClientDetached { client: String },
    /// `%window-add @<window>`
    WindowAdd { window: WindowId },
    /// `%unlinked-window-add @<window>`
    UnlinkedWindowAdd { window: WindowId },
    /// `%window-close @<window>`
    WindowClose { window: WindowId },
    /// `%unlinked-window-close @<window>`
    UnlinkedWindowClose { window: WindowId },
    /// `%window-renamed @<window> <name>`
    WindowRenamed { window: WindowId, name: String },
    /// `%unlinked-window-renamed @<window>[ <name>]`
    UnlinkedWindowRenamed { window: WindowId, name: String },
    /// `%window-pane-changed @<window> %<pane>`
    WindowPaneChanged { window: WindowId, pane: PaneId },
    /// `%pane-mode-changed %<pane>`
    PaneModeChanged { pane: PaneId },
    /// `%subscription-changed <name> $<s> <@w|-> <idx|-> <%p|-> ... : <value>`
    SubscriptionChanged {
        name: String,
        session: SessionId,
        window: Option<WindowId>,
        window_index: Option<u32>,
        pane: Option<PaneId>,
        /// The expanded format; tmux does not escape it.
        value: Bytes,
    },
    /// `%paste-buffer-changed <name>` (tmux 3.4+)
    PasteBufferChanged { name: String },
    /// `%paste-buffer-deleted <name>` (tmux 3.4+)
    PasteBufferDeleted { name: String },
    /// `%config-error <message>` (tmux 3.4+)
    ConfigError { message: String },
    /// `%message <message>` (tmux 3.4+)
    Message { message: String },
    /// A `%word` line this version does not know, or a known word whose
    /// arguments did not parse. Never an error: newer tmux may add lines.
    Unknown { name: String, rest: Bytes },
}

/// What the decoder yields, one per complete unit of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    Notification(Notification),
    /// A complete reply block.
    Reply(Reply),
    /// A line outside any block that is not a `%` line (for example a hook's
    /// `display -p` output landing on this client).
    Stray(Bytes),
    /// A line longer than the codec's limit, discarded (outside a block; inside
    /// one it is counted in [`Reply::dropped_lines`]).
    LineTooLong {
        length: usize,
    },
}
