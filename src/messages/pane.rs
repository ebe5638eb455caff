//! Typing a message into an agent's pane, and checking that it arrived
//! (DESIGN.md D16): the one way text goes into a pane.
//!
//! # When ([`gate`])
//!
//! Only when the pane's agent is at its prompt and nobody else is at the
//! keyboard:
//!
//! - the [`Board`] says the agent is `idle`, at its prompt. Anything else
//!   is [`HoldReason::Busy`]: `working` (its turn runs), `unknown` (not
//!   known to be at its prompt) and `waiting`, which in the agent model
//!   means a permission dialog or a question from the agent
//!   ([`crate::status::hook`]: `PermissionRequest`, Claude's
//!   `permission_prompt`), never its idle prompt: a message typed there,
//!   and its Enter, would answer the dialog (approve a tool call). No
//!   agent, or one that has `exited`, is [`HoldReason::NoAgent`];
//! - the pane is not in a mode (`#{pane_in_mode}`: copy-mode, view-mode),
//!   where typed text would move a cursor instead of reaching the agent
//!   ([`HoldReason::InMode`]);
//! - no person is typing: no client other than a control client is
//!   attached to the pane's session (or a session grouped with it, which
//!   shows the same windows) with input newer than the typing
//!   window (`#{client_activity}`, which tmux updates on every key and
//!   mouse event of that client; [`HoldReason::UserTyping`]). tmux keeps
//!   that time in whole seconds, so "within 2 s" means "in this second or
//!   the two before".
//!
//! # How ([`type_into`])
//!
//! 1. The body goes into a paste buffer with a name of its own
//!    (`tmux-agent-msg-<pid>-<time>-<n>`), through `load-buffer -b NAME -` run as a
//!    one-shot `tmux` with the body on its stdin: the body is never part of
//!    a command line, so nothing in it (`;`, `#{}`, `#()`, `$(…)`, quotes)
//!    is parsed, expanded or run by tmux or by a shell.
//! 2. `paste-buffer -p -d -r -b NAME -t PANE` over the control connection:
//!    a bracketed paste when the agent asked for one (every agent TUI
//!    does), the buffer deleted once pasted, LF kept LF.
//! 3. The agent's submit key (`[agents.NAME] submit_key`, `Enter` by
//!    default) with `send-keys`.
//!
//! Two things are taken out of the body first, and only these: NUL bytes
//! (no terminal input carries them, and agents stop reading at them) and
//! the bracketed-paste markers `ESC [ 200 ~` / `ESC [ 201 ~`, with which a
//! body could end the paste early and have its remainder read as keys.
//! Everything else, ANSI escapes included, arrives as written.
//!
//! # Verified
//!
//! After the submit key, the pane is watched until the verify deadline
//! (looks 1, 2, 4, … ms apart, then every 25 ms): the body's first line
//! showing up on it (once more than before the paste), or the pane's
//! `@agent-status` turning `working` from another status it had before the
//! paste (the status keeper writes it from the agent's hooks or its
//! activity), is [`Typed::Delivered`]; neither is [`Typed::Unverified`]
//! (the text was typed, nobody saw it land). A pane that disappears at any
//! step is [`PaneError::Gone`]. An empty body (once NULs and markers are
//! out) is refused before anything is typed.
//!
//! The free functions [`gate`] and [`type_into`] use the default settings;
//! [`Delivery`] carries `[delivery]` and the submit keys from the config
//! ([`crate::configuration::Configuration::delivery`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;

use crate::config::Config;
use crate::control::command::{Command, CommandError};
use crate::control::connection::{ControlError, ControlHandle};
use crate::control::oneshot::{OneShot, OneShotError};
use crate::control::server::ServerSocket;
use crate::control::{PaneId, SessionId};
use crate::schema;
use crate::status::{AgentKind, AgentStatus, Board};

/// The submit key when `[agents.NAME] submit_key` does not say.
pub const DEFAULT_SUBMIT_KEY: &str = "Enter";

/// How recent a person's input must be to hold a delivery back, by default.
pub const DEFAULT_TYPING_WINDOW: Duration = Duration::from_secs(2);

/// How long a typed message is watched for before it counts as
/// unverified, by default.
pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(3);

/// How soon the pane is looked at again after the first look, while
/// verifying; the spacing doubles up to [`VERIFY_EVERY`]. An agent echoes
/// a paste within milliseconds, and a fixed 25 ms step made a delivery
/// wait a whole step for nothing (the typing itself took 4 to 30 ms in an
/// ad hoc debug-build run). These looks are two control-mode round trips
/// each, not retries: [`crate::backoff`] is for retrying failures.
const VERIFY_FIRST: Duration = Duration::from_millis(1);

/// The widest spacing of the looks while verifying.
const VERIFY_EVERY: Duration = Duration::from_millis(25);

/// The longest part of the first line looked for on the screen: an agent's
/// TUI wraps and boxes what it shows, so a long line never comes back
/// whole.
const NEEDLE_CHARS: usize = 40;

/// How many rows of history, beyond the rows the body itself takes, the
/// check looks through (a long body scrolls its first line off the screen).
const HISTORY_MARGIN: usize = 200;

/// The most history lines one verification capture asks for.
const HISTORY_CAP: usize = 5_000;

/// Whether a message may be typed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The agent is at its prompt and nobody is typing.
    Ready,
    /// Not now; ask again later.
    Hold(HoldReason),
}

/// Why a message is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldReason {
    /// The agent is working, shows a dialog (`waiting`), or its status is
    /// unknown: it is not at its prompt.
    Busy,
    /// The pane is in a mode (copy-mode): typing would not reach the agent.
    InMode,
    /// A person typed into the pane's session within the typing window.
    UserTyping,
    /// No agent runs in the pane (none seen, or it exited).
    NoAgent,
}

impl HoldReason {
    /// The name in logs and JSON (`busy`, `in-mode`, `user-typing`,
    /// `no-agent`).
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::Busy => "busy",
            HoldReason::InMode => "in-mode",
            HoldReason::UserTyping => "user-typing",
            HoldReason::NoAgent => "no-agent",
        }
    }
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What typing a message came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typed {
    /// Typed, and seen to land (its first line on the screen, or the agent
    /// went `working`).
    Delivered,
    /// Typed, but not seen to land before the deadline.
    Unverified,
}

/// Why a message could not be typed.
#[derive(Debug, thiserror::Error)]
pub enum PaneError {
    /// The pane is not on the tmux server (any more).
    #[error("the pane is gone")]
    Gone,
    /// tmux failed or refused a step (or there was nothing to type: an
    /// empty body).
    #[error("tmux: {0}")]
    Tmux(String),
}

impl From<ControlError> for PaneError {
    fn from(err: ControlError) -> Self {
        match &err {
            ControlError::Command { message, .. } if is_gone(message) => PaneError::Gone,
            _ => PaneError::Tmux(err.to_string()),
        }
    }
}

impl From<OneShotError> for PaneError {
    fn from(err: OneShotError) -> Self {
        PaneError::Tmux(err.to_string())
    }
}

impl From<CommandError> for PaneError {
    fn from(err: CommandError) -> Self {
        PaneError::Tmux(err.to_string())
    }
}

/// tmux's words for a target that does not exist.
fn is_gone(message: &str) -> bool {
    message.starts_with("can't find pane")
        || message.starts_with("can't find window")
        || message.starts_with("can't find session")
}

/// How panes are typed into: `[delivery]`, and each agent's submit key
/// (`[agents.NAME] submit_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Input from a person this recent holds a delivery back.
    pub typing_window: Duration,
    /// How long a typed message is watched for.
    pub verify_timeout: Duration,
    /// Submit keys by agent name, where the config sets one.
    pub submit_keys: BTreeMap<String, String>,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            typing_window: DEFAULT_TYPING_WINDOW,
            verify_timeout: DEFAULT_VERIFY_TIMEOUT,
            submit_keys: BTreeMap::new(),
        }
    }
}

/// A `[delivery]` or `submit_key` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct DeliveryConfigError {
    /// The key in config.toml (`agents.codex.submit_key`).
    pub key: String,
    pub message: String,
}

impl Delivery {
    /// The settings the config file gives; every value that cannot be used
    /// is an error naming its key.
    pub fn from_config(config: &Config) -> Result<Self, Vec<DeliveryConfigError>> {
        let mut delivery = Delivery::default();
        let mut errors = Vec::new();
        if let Some(window) = config.delivery.typing_window {
            delivery.typing_window = window.0;
        }
        if let Some(timeout) = config.delivery.verify_timeout {
            delivery.verify_timeout = timeout.0;
        }
        for (agent, section) in &config.agents {
            let Some(key) = &section.submit_key else {
                continue;
            };
            if key.is_empty() || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
                errors.push(DeliveryConfigError {
                    key: format!("agents.{agent}.submit_key"),
                    message: format!(
                        "{key:?} is not a tmux key name (one word such as \"Enter\", \"C-m\", \"M-Enter\")"
                    ),
                });
                continue;
            }
            delivery.submit_keys.insert(agent.clone(), key.clone());
        }
        if errors.is_empty() {
            Ok(delivery)
        } else {
            Err(errors)
        }
    }

    /// The key that submits a message to `kind` ([`DEFAULT_SUBMIT_KEY`]
    /// unless its `[agents.NAME]` says otherwise).
    pub fn submit_key(&self, kind: Option<&AgentKind>) -> &str {
        kind.and_then(|kind| self.submit_keys.get(kind.as_str()))
            .map_or(DEFAULT_SUBMIT_KEY, String::as_str)
    }
}

/// [`Delivery::gate`] with the default settings.
pub async fn gate(handle: &ControlHandle, board: &Board, pane: &PaneId) -> Result<Gate, PaneError> {
    Delivery::default().gate(handle, board, pane).await
}

/// [`Delivery::type_into`] with the default settings.
pub async fn type_into(
    handle: &ControlHandle,
    board: &Board,
    pane: &PaneId,
    text: &str,
    submit_key: &str,
) -> Result<Typed, PaneError> {
    Delivery::default()
        .type_into(handle, board, pane, text, submit_key)
        .await
}

/// What tmux says of a pane, for the gate.
struct PaneFacts {
    in_mode: bool,
    session: SessionId,
    /// The session's group (`#{session_group}`), if it is grouped.
    group: Option<String>,
}

impl Delivery {
    /// Whether a message may be typed into `pane` now (see the module doc).
    pub async fn gate(
        &self,
        handle: &ControlHandle,
        board: &Board,
        pane: &PaneId,
    ) -> Result<Gate, PaneError> {
        // The pane and the clients in one round trip's time (both are
        // queued at once); the pane decides first: a pane that is gone is
        // an error, whatever the board (a snapshot) still says of it.
        let (facts, clients) = tokio::join!(pane_facts(handle, *pane), client_activity(handle));
        let facts = facts?;
        match board.pane(*pane).map(|agent| agent.status) {
            None | Some(AgentStatus::Exited) => return Ok(Gate::Hold(HoldReason::NoAgent)),
            // `waiting` is a dialog, not the prompt (see the module doc).
            Some(AgentStatus::Working | AgentStatus::Unknown | AgentStatus::Waiting) => {
                return Ok(Gate::Hold(HoldReason::Busy));
            }
            Some(AgentStatus::Idle) => {}
        }
        if facts.in_mode {
            return Ok(Gate::Hold(HoldReason::InMode));
        }
        if self.someone_typing(&clients?, &facts) {
            return Ok(Gate::Hold(HoldReason::UserTyping));
        }
        Ok(Gate::Ready)
    }

    /// Types `text` into `pane` and presses `submit_key`, then verifies
    /// (see the module doc). It does not check the gate: call [`gate`]
    /// first. `board` is not consulted beyond that; the verification reads
    /// the pane's status from tmux, where the keeper keeps it current.
    pub async fn type_into(
        &self,
        handle: &ControlHandle,
        _board: &Board,
        pane: &PaneId,
        text: &str,
        submit_key: &str,
    ) -> Result<Typed, PaneError> {
        let pane = *pane;
        let body = clean_body(text);
        if body.is_empty() {
            // tmux's `load-buffer -` makes no buffer of empty input, and
            // a bare submit key would send the agent an empty prompt.
            return Err(PaneError::Tmux(
                "nothing to type: the message is empty (NULs and paste markers are taken out)"
                    .to_owned(),
            ));
        }
        let needle = needle(&body);
        // The pane's width and status, and where a one-shot `tmux` reaches
        // the server, asked at once.
        let format = format!("#{{pane_width}}\t#{{{}}}", schema::pane::STATUS);
        let (fields, socket) = tokio::join!(pane_fields(handle, pane, &format), socket_of(handle));
        let fields = fields?;
        let (width, status) = fields.split_once('\t').unwrap_or((fields.as_str(), ""));
        let history = history_lines(&body, width.trim().parse().unwrap_or(80));
        // Only a turn that starts after the paste says it landed: the board
        // the gate read is a snapshot, and the agent may have started one
        // on its own since.
        let working_before = status.parse().ok() == Some(AgentStatus::Working);

        // The body goes into its buffer while the pane's text is counted:
        // loading a named buffer does not touch the pane.
        let name = buffer_name();
        let tmux = OneShot::new(socket?);
        let load = Command::load_buffer_from_stdin(&name)?;
        let (before, loaded) = tokio::join!(
            seen_count(handle, pane, needle.as_deref(), history),
            async {
                tmux.run_with_input(&load, body.as_bytes())
                    .await
                    .map_err(PaneError::from)
            }
        );
        let before = match (before, loaded) {
            (Ok(before), Ok(_)) => before,
            (Err(err), _) | (Ok(_), Err(err)) => {
                // Not pasted: no body left behind (a failed load made none).
                let _ = handle.run(Command::delete_buffer(&name)?).await;
                return Err(err);
            }
        };
        if let Err(err) = handle.run(Command::paste_buffer(&name, pane)?).await {
            // Not pasted, so not deleted by `-d`: no body left behind.
            let _ = handle.run(Command::delete_buffer(&name)?).await;
            return Err(err.into());
        }
        handle.run(Command::send_key(pane, submit_key)?).await?;

        let deadline = tokio::time::Instant::now() + self.verify_timeout;
        let mut every = VERIFY_FIRST;
        loop {
            // Both looks at once: one round trip's wait, not two.
            let (status, seen) = tokio::join!(
                status_of(handle, pane),
                seen_count(handle, pane, needle.as_deref(), history)
            );
            if !working_before && status? == Some(AgentStatus::Working) {
                return Ok(Typed::Delivered);
            }
            if needle.is_some() && seen? > before {
                return Ok(Typed::Delivered);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Typed::Unverified);
            }
            tokio::time::sleep(every).await;
            every = (every * 2).min(VERIFY_EVERY);
        }
    }

    /// Whether a client that is not a control client, attached to the
    /// pane's session or to a session grouped with it (`new-session -t`:
    /// the same windows), had input within the typing window; `clients` is
    /// [`client_activity`]'s answer.
    fn someone_typing(&self, clients: &str, facts: &PaneFacts) -> bool {
        let now = Utc::now().timestamp();
        let window = i64::try_from(self.typing_window.as_secs()).unwrap_or(i64::MAX);
        clients.lines().any(|line| {
            let mut fields = line.splitn(4, '\t');
            let (Some(control), Some(activity), Some(session), group) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return false;
            };
            let (Ok(activity), Ok(session)) =
                (activity.parse::<i64>(), session.parse::<SessionId>())
            else {
                return false;
            };
            let same = session == facts.session
                || facts
                    .group
                    .as_deref()
                    .is_some_and(|mine| group == Some(mine));
            same && control != "1" && now.saturating_sub(activity) <= window
        })
    }
}

/// Every client's control flag, last input time, session and session
/// group, a line each, for [`Delivery::someone_typing`].
async fn client_activity(handle: &ControlHandle) -> Result<String, PaneError> {
    // The group name last: it is a session name, which may hold a tab.
    let reply = handle
        .run(Command::list_clients(
            "#{client_control_mode}\t#{client_activity}\t#{session_id}\t#{session_group}",
        )?)
        .await?;
    Ok(reply.text())
}

/// The pane's mode flag and session, or [`PaneError::Gone`].
///
/// `display-message -t` of a pane that does not exist is no error in tmux
/// 3.3a: it falls back to the client's current pane (or prints nothing).
/// So the reply names its pane, and one that is not ours means gone.
async fn pane_facts(handle: &ControlHandle, pane: PaneId) -> Result<PaneFacts, PaneError> {
    let fields = pane_fields(
        handle,
        pane,
        "#{pane_in_mode}\t#{session_id}\t#{session_group}",
    )
    .await?;
    let mut fields = fields.splitn(3, '\t');
    let in_mode = fields.next().unwrap_or_default() == "1";
    let session = fields.next().and_then(|id| id.parse::<SessionId>().ok());
    let group = fields.next().filter(|g| !g.is_empty()).map(str::to_owned);
    match session {
        Some(session) => Ok(PaneFacts {
            in_mode,
            session,
            group,
        }),
        None => Err(PaneError::Gone),
    }
}

/// `format` expanded for `pane`, or [`PaneError::Gone`] when tmux answers
/// for another pane or none (see [`pane_facts`]).
async fn pane_fields(
    handle: &ControlHandle,
    pane: PaneId,
    format: &str,
) -> Result<String, PaneError> {
    let reply = handle
        .run(Command::display_message(
            pane,
            &format!("#{{pane_id}}\t{format}"),
        )?)
        .await?;
    let text = reply.text();
    let text = text.strip_suffix('\n').unwrap_or(&text);
    match text.split_once('\t') {
        Some((id, rest)) if id == pane.to_string() => Ok(rest.to_owned()),
        _ => Err(PaneError::Gone),
    }
}

/// The pane's `@agent-status`, as the status keeper last wrote it.
async fn status_of(handle: &ControlHandle, pane: PaneId) -> Result<Option<AgentStatus>, PaneError> {
    let format = format!("#{{{}}}", schema::pane::STATUS);
    Ok(pane_fields(handle, pane, &format).await?.parse().ok())
}

/// How many lines of the pane's recent text (its screen and `history`
/// lines above) hold `needle`.
async fn seen_count(
    handle: &ControlHandle,
    pane: PaneId,
    needle: Option<&str>,
    history: usize,
) -> Result<usize, PaneError> {
    let Some(needle) = needle else {
        return Ok(0);
    };
    let start = -i64::try_from(history).unwrap_or(i64::MAX);
    let reply = handle.run(Command::capture_pane(pane, start)).await?;
    Ok(reply
        .text()
        .lines()
        .filter(|line| line.contains(needle))
        .count())
}

/// The tmux server behind the connection, as a socket a one-shot `tmux`
/// can reach: tmux says where its socket is.
async fn socket_of(handle: &ControlHandle) -> Result<ServerSocket, PaneError> {
    let reply = handle
        .run(Command::display_server("#{socket_path}")?)
        .await?;
    let path = reply.text().trim_end_matches('\n').to_owned();
    if path.is_empty() {
        return Err(PaneError::Tmux(
            "tmux did not say where its socket is".into(),
        ));
    }
    Ok(ServerSocket::Path(path.into()))
}

/// A buffer name no other message (of this or another process) has.
fn buffer_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("tmux-agent-msg-{}-{nanos}-{n}", std::process::id())
}

/// The body as it is typed: without NULs and bracketed-paste markers (see
/// the module doc).
pub fn clean_body(text: &str) -> String {
    text.replace('\0', "")
        .replace("\x1b[200~", "")
        .replace("\x1b[201~", "")
}

/// What of the body is looked for on the screen: the start of its first
/// line that shows anything, with escape sequences and control characters
/// taken out (the terminal draws them as colours, not text). `None` for a
/// body that shows nothing.
pub fn needle(body: &str) -> Option<String> {
    body.lines()
        .map(|line| visible_text(line).trim().to_owned())
        .find(|line| !line.is_empty())
        .map(|line| line.chars().take(NEEDLE_CHARS).collect::<String>())
        .map(|line| line.trim_end().to_owned())
}

/// `line` without ANSI escape sequences (CSI `ESC [ … final`, OSC `ESC ] …
/// BEL/ST`, two-byte `ESC x`) and other control characters.
fn visible_text(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    // Parameters and intermediates, up to a final byte.
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            },
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// How far into the history to look for the first line: the rows the body
/// takes on a pane `width` columns wide (a long line wraps, and its start
/// scrolls up with every row; `capture-pane -J` joins it again only if its
/// first row is in the capture), and a margin, capped.
fn history_lines(body: &str, width: usize) -> usize {
    let width = width.max(1);
    let rows: usize = body
        .lines()
        .map(|line| line.chars().count().div_ceil(width).max(1))
        .sum();
    (rows + HISTORY_MARGIN).min(HISTORY_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_keys_and_timings_come_from_the_config() {
        let config: Config = toml::from_str(
            "[delivery]\ntyping_window = \"5s\"\nverify_timeout = \"500ms\"\n\
             [agents.codex]\nsubmit_key = \"Enter\"\n[agents.mybot]\nsubmit_key = \"C-j\"\n",
        )
        .unwrap();
        let delivery = Delivery::from_config(&config).unwrap();
        assert_eq!(delivery.typing_window, Duration::from_secs(5));
        assert_eq!(delivery.verify_timeout, Duration::from_millis(500));
        assert_eq!(delivery.submit_key(Some(&AgentKind::named("mybot"))), "C-j");
        assert_eq!(delivery.submit_key(Some(&AgentKind::Claude)), "Enter");
        assert_eq!(delivery.submit_key(None), DEFAULT_SUBMIT_KEY);
        assert_eq!(
            Delivery::from_config(&Config::default()).unwrap(),
            Delivery::default()
        );
    }

    #[test]
    fn a_submit_key_that_is_not_a_key_name_is_refused_by_its_key() {
        for bad in ["", "Enter; kill-server", "C-m\n", "a b"] {
            let mut config = Config::default();
            config.agents.insert(
                "codex".into(),
                crate::status::prompt::AgentPatternsConfig {
                    submit_key: Some(bad.into()),
                    ..Default::default()
                },
            );
            let errors = Delivery::from_config(&config).unwrap_err();
            assert_eq!(errors.len(), 1, "{bad:?}");
            assert_eq!(errors[0].key, "agents.codex.submit_key");
        }
    }

    #[test]
    fn the_body_loses_only_nuls_and_paste_markers() {
        assert_eq!(
            clean_body("a\0b\x1b[201~\rrm -rf /\x1b[200~ \x1b[31mred\x1b[0m ;#{x}$(y)"),
            "ab\rrm -rf / \x1b[31mred\x1b[0m ;#{x}$(y)"
        );
    }

    #[test]
    fn the_needle_is_the_first_visible_line_without_escapes() {
        assert_eq!(
            needle("\n  \n\x1b[1;31mhello\x1b[0m world \x1b]0;title\x07!\nsecond").as_deref(),
            Some("hello world !")
        );
        assert_eq!(needle("\x1b[2J\n\t\n"), None);
        let long = "x".repeat(100);
        assert_eq!(needle(&long).map(|n| n.len()), Some(NEEDLE_CHARS));
        assert_eq!(needle("日本語").as_deref(), Some("日本語"));
    }

    #[test]
    fn buffer_names_are_unique_and_plain() {
        let a = buffer_name();
        let b = buffer_name();
        assert_ne!(a, b);
        assert!(a.starts_with("tmux-agent-msg-"));
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }

    #[test]
    fn history_grows_with_the_body_and_is_capped() {
        assert_eq!(history_lines("one", 80), 1 + HISTORY_MARGIN);
        assert_eq!(history_lines(&"x".repeat(8_000), 80), 100 + HISTORY_MARGIN);
        assert_eq!(history_lines("a\n\nb", 0), 3 + HISTORY_MARGIN);
        assert_eq!(history_lines(&"l\n".repeat(100_000), 80), HISTORY_CAP);
    }
}
