//! STAND-IN, to be replaced by the `msg-pane` branch's `pane.rs` at merge
//! (it owns typing into panes; this file only keeps the contract the
//! scheduler calls, so that this branch builds and its tests run).
//!
//! The contract: [`gate`] says whether a message may be typed into a pane
//! now; [`type_into`] pastes it (`load-buffer -` from stdin, so the body is
//! never on a command line; `paste-buffer -p -d -r`; the submit key) and
//! verifies it (the pane's `@agent-status` goes `working`, or the body's
//! first line shows up) within a deadline. This stand-in does not check for
//! a person typing; msg-pane's does.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::control::PaneId;
use crate::control::command::{Command, CommandError};
use crate::control::connection::{ControlError, ControlHandle};
use crate::status::{AgentStatus, Board};

/// Whether a message may be typed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Ready,
    Hold(HoldReason),
}

/// Why a message is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldReason {
    Busy,
    InMode,
    UserTyping,
    NoAgent,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::Busy => "busy",
            HoldReason::InMode => "in-mode",
            HoldReason::UserTyping => "user-typing",
            HoldReason::NoAgent => "no-agent",
        }
    }
}

/// What typing a message came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typed {
    Delivered,
    Unverified,
}

/// Why a message could not be typed.
#[derive(Debug, thiserror::Error)]
pub enum PaneError {
    #[error("the pane is gone")]
    Gone,
    #[error("tmux: {0}")]
    Tmux(String),
}

impl From<ControlError> for PaneError {
    fn from(err: ControlError) -> Self {
        match &err {
            ControlError::Command { message, .. } if message.starts_with("can't find") => {
                PaneError::Gone
            }
            _ => PaneError::Tmux(err.to_string()),
        }
    }
}

impl From<CommandError> for PaneError {
    fn from(err: CommandError) -> Self {
        PaneError::Tmux(err.to_string())
    }
}

const VERIFY_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn gate(handle: &ControlHandle, board: &Board, pane: &PaneId) -> Result<Gate, PaneError> {
    let reply = handle
        .run(Command::display_message(
            *pane,
            "#{pane_id} #{pane_in_mode}",
        )?)
        .await?;
    let text = reply.text();
    if !text.starts_with(&pane.to_string()) {
        return Err(PaneError::Gone);
    }
    match board.pane(*pane).map(|agent| agent.status) {
        None | Some(AgentStatus::Exited) => return Ok(Gate::Hold(HoldReason::NoAgent)),
        Some(AgentStatus::Working | AgentStatus::Unknown) => {
            return Ok(Gate::Hold(HoldReason::Busy));
        }
        Some(AgentStatus::Idle | AgentStatus::Waiting) => {}
    }
    if text.trim_end().ends_with(" 1") {
        return Ok(Gate::Hold(HoldReason::InMode));
    }
    Ok(Gate::Ready)
}

pub async fn type_into(
    handle: &ControlHandle,
    _board: &Board,
    pane: &PaneId,
    text: &str,
    submit_key: &str,
) -> Result<Typed, PaneError> {
    let socket = handle
        .run(Command::display_server("#{socket_path}")?)
        .await?
        .text();
    let socket = socket.trim_end();
    let name = format!(
        "tmux-agent-msg-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let pane_arg = pane.to_string();
    let mut child = tokio::process::Command::new(crate::control::server::tmux_binary())
        .args([
            "-S",
            socket,
            "load-buffer",
            "-b",
            &name,
            "-",
            ";",
            "paste-buffer",
            "-p",
            "-d",
            "-r",
            "-b",
            &name,
            "-t",
            &pane_arg,
            ";",
            "send-keys",
            "-t",
            &pane_arg,
            submit_key,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| PaneError::Tmux(err.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|err| PaneError::Tmux(err.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|err| PaneError::Tmux(err.to_string()))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(if message.starts_with("can't find") {
            PaneError::Gone
        } else {
            PaneError::Tmux(message)
        });
    }
    let needle: String = text
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(40)
        .collect();
    let deadline = tokio::time::Instant::now() + VERIFY_TIMEOUT;
    loop {
        let status = handle
            .run(Command::display_message(
                *pane,
                &format!("#{{{}}}", crate::schema::pane::STATUS),
            )?)
            .await?;
        if status.text().trim() == "working" {
            return Ok(Typed::Delivered);
        }
        let screen = handle.run(Command::capture_pane(*pane, -200)).await?.text();
        if !needle.is_empty() && screen.contains(needle.trim_end()) {
            return Ok(Typed::Delivered);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Typed::Unverified);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
