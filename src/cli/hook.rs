//! `tmux-agent hook claude|codex|gemini`: what an agent's hook runs. Reads
//! the hook's JSON, says the status it means to the daemon, and gets out of
//! the agent's way.
//!
//! It runs synchronously inside the agent's turn, so it is built to cost
//! nothing the agent would notice:
//!
//! - no tokio runtime: `main` calls [`run`] before building one;
//! - stdin is read on a thread, at most [`STDIN_BUDGET`]; a payload over
//!   [`MAX_PAYLOAD`] is drained and dropped, never parsed;
//! - one line to the daemon's socket (std `UnixStream`, timeouts set),
//!   one line back; without a daemon, one `tmux set-option -p` chain;
//! - it ALWAYS exits 0 and prints nothing: Claude Code acts on exit code 2
//!   and on JSON on stdout, Gemini CLI parses stdout as JSON. What went
//!   wrong goes to the hook log ([`crate::paths::hook_log`]).
//!
//! The one exception is a message hand-over (issue #13): on Claude Code's
//! `Stop` (with `stop_hook_active` false), the daemon hands over the next
//! message waiting for the pane, and the hook prints
//! `{"decision":"block","reason":"<envelope and body>"}`, which Claude Code
//! reads as its next input: nothing is typed into the pane. The message
//! becomes `delivered` when a later event shows the agent took it (a tool
//! call, or the `Stop` that ends the continued turn: `in_turn` in the
//! request); a plain `Stop` first is offered it again.
//!
//! Which pane: `$TMUX_PANE`, which tmux sets for every process in a pane.
//! Which server: `-L`/`-S`, else `$TMUX` (see [`GlobalArgs::server`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};

use super::GlobalArgs;
use crate::control::PaneId;
use crate::control::command::Command;
use crate::ipc::{Endpoint, Request, Response};
use crate::schema;
use crate::status::hook::{self, HookReading, MAX_PAYLOAD};
use crate::status::{AgentKind, Observation, Source};

/// Test fault (see [`crate::fault`]): milliseconds to wait after the
/// daemon handed a message over and before it is printed.
pub const FAULT_BEFORE_PRINT_ENV: &str = "TMUX_AGENT_FAULT_HOOK_BEFORE_PRINT_MS";

/// How long stdin may take to reach its end.
pub const STDIN_BUDGET: Duration = Duration::from_millis(1000);

/// How long the daemon may take to take the status (it answers before
/// touching tmux).
const DAEMON_BUDGET: Duration = Duration::from_millis(500);

/// How long the one-shot `tmux` may take when no daemon runs.
const TMUX_BUDGET: Duration = Duration::from_millis(1000);

/// Tell tmux-agent what the agent in this pane is doing (for the agent's
/// hooks, not for people).
///
/// Reads the hook's JSON on stdin (Codex's `notify` passes it as the last
/// argument instead), maps the event to a status (see "Agent status" in the
/// README) and hands it to the daemon; without a daemon it sets the pane's
/// options itself. Always exits 0 and prints nothing, whatever happens:
/// problems go to the hook log (~/.local/state/tmux-agent/hook.log).
/// `tmux-agent hooks install` puts it in the agent's settings.
#[derive(Debug, Args)]
#[command(after_help = "Examples (what `hooks install` writes):\n  \
    \"command\": \"tmux-agent hook claude\"   in ~/.claude/settings.json\n  \
    notify = [\"tmux-agent\", \"hook\", \"codex\"]   in ~/.codex/config.toml")]
pub struct HookArgs {
    /// The agent whose hook this is.
    pub agent: HookAgent,
    /// The payload, when the agent passes it as an argument (Codex's
    /// `notify`); stdin is then not read.
    pub payload: Option<String>,
}

/// The agents whose hooks tmux-agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookAgent {
    Claude,
    Codex,
    Gemini,
}

impl HookAgent {
    pub fn kind(self) -> AgentKind {
        match self {
            HookAgent::Claude => AgentKind::Claude,
            HookAgent::Codex => AgentKind::Codex,
            HookAgent::Gemini => AgentKind::Gemini,
        }
    }
}

/// Runs the hook; always [`ExitCode::SUCCESS`].
pub fn run(args: &HookArgs, global: &GlobalArgs) -> ExitCode {
    let started = Instant::now();
    let at = Utc::now();
    let outcome = handle(args, global, at);
    let agent = args.agent.kind();
    let line = match &outcome {
        Ok(done) => {
            // Successes are logged only when asked: a hook runs many times
            // a minute.
            if std::env::var_os("TMUX_AGENT_HOOK_LOG_ALL").is_none() {
                return ExitCode::SUCCESS;
            }
            format!("{agent}: {done}")
        }
        Err(why) => format!("{agent}: {why}; nothing changed"),
    };
    log(&format!(
        "{} {line} ({} µs)",
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        started.elapsed().as_micros()
    ));
    ExitCode::SUCCESS
}

/// Why a hook changed nothing.
#[derive(Debug, thiserror::Error)]
enum Skipped {
    #[error("not run in a tmux pane ($TMUX_PANE is unset or not a pane id: {0:?})")]
    NoPane(Option<String>),
    #[error("stdin did not end within {STDIN_BUDGET:?}")]
    SlowStdin,
    #[error("reading stdin: {0}")]
    Stdin(std::io::Error),
    #[error(transparent)]
    Payload(#[from] hook::HookError),
    #[error("the event {0:?} says nothing about the status")]
    NoStatus(String),
    #[error("the daemon dropped the status (its keeper is behind or stopping)")]
    Dropped,
    #[error("no daemon, and tmux refused the pane option: {0}")]
    Tmux(String),
}

fn handle(args: &HookArgs, global: &GlobalArgs, at: DateTime<Utc>) -> Result<String, Skipped> {
    let pane_env = std::env::var("TMUX_PANE").ok();
    let pane: PaneId = pane_env
        .as_deref()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Skipped::NoPane(pane_env.clone()))?;
    let payload = match &args.payload {
        Some(payload) => payload.clone().into_bytes(),
        None => read_stdin()?,
    };
    let kind = args.agent.kind();
    let reading = hook::read(&kind, &payload)?;
    let stop = reading
        .is_claude_stop(&kind)
        .then_some(reading.stop_hook_active);
    let HookReading {
        event,
        status,
        agent_session_id,
        transcript_path,
        in_turn,
        ..
    } = reading;
    let status = status.ok_or_else(|| Skipped::NoStatus(event.clone()))?;
    let observation = Observation {
        pane,
        kind: Some(kind),
        status,
        source: Source::Hook,
        at,
        agent_session_id,
        transcript_path,
    };
    let server = global.server();
    if let Some(stop_hook_active) = stop {
        let request = Request::StopHook {
            observation: observation.clone(),
            stop_hook_active,
        };
        // No daemon, or one that does not know the request: the status
        // alone, as below.
        if let Some(Response::HandedOver { accepted, text }) =
            ask_daemon(&Endpoint::for_server(&server), &request)
        {
            if let Some(text) = text {
                // A test's SIGKILL between the daemon's answer and the
                // print: the hand-over the agent never gets.
                crate::fault::pause(FAULT_BEFORE_PRINT_ENV);
                hand_over(&text);
                return Ok(format!(
                    "{event} on {pane}: handed a message over, told the daemon"
                ));
            }
            return if accepted {
                Ok(format!("{event} → {status} on {pane}, told the daemon"))
            } else {
                Err(Skipped::Dropped)
            };
        }
    }
    match tell_daemon(&Endpoint::for_server(&server), &observation, in_turn) {
        Some(true) => Ok(format!("{event} → {status} on {pane}, told the daemon")),
        Some(false) => Err(Skipped::Dropped),
        None => {
            set_directly(&server, &observation)?;
            Ok(format!(
                "{event} → {status} on {pane}, set directly (no daemon)"
            ))
        }
    }
}

/// Reads stdin to its end within [`STDIN_BUDGET`]; more than
/// [`MAX_PAYLOAD`] is read to the end (so the agent's write never fails)
/// and refused.
fn read_stdin() -> Result<Vec<u8>, Skipped> {
    let (tx, rx) = mpsc::channel();
    // Left behind if stdin never ends: the process exits without it.
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut stdin = std::io::stdin().lock();
        let result = (&mut stdin)
            .take(MAX_PAYLOAD as u64 + 1)
            .read_to_end(&mut kept)
            .and_then(|_| {
                if kept.len() > MAX_PAYLOAD {
                    std::io::copy(&mut stdin, &mut std::io::sink())?;
                }
                Ok(kept)
            });
        let _ = tx.send(result);
    });
    match rx.recv_timeout(STDIN_BUDGET) {
        Ok(Ok(payload)) => Ok(payload),
        Ok(Err(err)) => Err(Skipped::Stdin(err)),
        Err(_) => Err(Skipped::SlowStdin),
    }
}

/// Prints the hand-over for Claude Code: the message as the reason a
/// `Stop` is blocked, which Claude reads as its next input.
fn hand_over(text: &str) {
    let decision = serde_json::json!({"decision": "block", "reason": text});
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{decision}");
    let _ = stdout.flush();
}

/// One request to the daemon, one answer; `None` when no daemon answers.
fn ask_daemon(endpoint: &Endpoint, request: &Request) -> Option<Response> {
    let mut stream = UnixStream::connect(&endpoint.socket).ok()?;
    // The socket is in our 0700 runtime directory (see ipc::endpoint), so
    // whoever listens there is us (or root).
    stream.set_write_timeout(Some(DAEMON_BUDGET)).ok()?;
    stream.set_read_timeout(Some(DAEMON_BUDGET)).ok()?;
    let mut line = serde_json::to_vec(request).ok()?;
    line.push(b'\n');
    stream.write_all(&line).ok()?;
    let mut answer = Vec::new();
    // A handed-over message is at most the body cap, JSON-escaped.
    BufReader::new(stream)
        .take(crate::ipc::MAX_REQUEST as u64)
        .read_until(b'\n', &mut answer)
        .ok()?;
    serde_json::from_slice(&answer).ok()
}

/// Hands the observation to the daemon: `Some(accepted)`, or `None` when
/// no daemon answers (then the caller sets the options itself).
fn tell_daemon(endpoint: &Endpoint, observation: &Observation, in_turn: bool) -> Option<bool> {
    let request = Request::AgentStatus {
        observation: observation.clone(),
        in_turn,
    };
    match ask_daemon(endpoint, &request)? {
        Response::Observed { accepted } => Some(accepted),
        // An older daemon that does not know the request: do it ourselves.
        _ => None,
    }
}

/// Sets the pane's options with one `tmux` process. Only the pane's: the
/// session aggregate and `@agent-waiting` count need the daemon's board.
fn set_directly(
    server: &crate::control::server::ServerSocket,
    observation: &Observation,
) -> Result<(), Skipped> {
    let pane = observation.pane;
    let mut commands = vec![
        Command::set_pane_option(pane, schema::pane::STATUS, observation.status.as_str()),
        Command::set_pane_option(
            pane,
            schema::pane::SINCE,
            &observation.at.timestamp().to_string(),
        ),
    ];
    if let Some(kind) = &observation.kind {
        commands.push(Command::set_pane_option(
            pane,
            schema::pane::KIND,
            kind.as_str(),
        ));
    }
    if let Some(id) = &observation.agent_session_id {
        commands.push(Command::set_pane_option(pane, schema::pane::SESSION_ID, id));
    }
    if let Some(path) = &observation.transcript_path {
        commands.push(Command::set_pane_option(
            pane,
            schema::pane::TRANSCRIPT,
            &path.to_string_lossy(),
        ));
    }
    let commands: Vec<Command> = commands
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|err| Skipped::Tmux(err.to_string()))?;
    let child = std::process::Command::new(crate::control::server::tmux_binary())
        .args(server.tmux_args())
        .args(Command::chain_argv(&commands))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|err| Skipped::Tmux(format!("could not run tmux: {err}")))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TMUX_BUDGET) {
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => Err(Skipped::Tmux(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )),
        Ok(Err(err)) => Err(Skipped::Tmux(err.to_string())),
        Err(_) => Err(Skipped::Tmux(format!(
            "tmux did not finish within {TMUX_BUDGET:?}"
        ))),
    }
}

/// Appends one line to the hook log; a log that cannot be written is
/// given up on silently (the hook must not fail the agent).
fn log(line: &str) {
    let path = crate::paths::hook_log();
    if let Some(dir) = path.parent()
        && crate::paths::private_dir(dir).is_err()
    {
        return;
    }
    // Kept small: started afresh once past a megabyte, the old one kept.
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > 1024 * 1024) {
        let _ = std::fs::rename(&path, path.with_extension("log.old"));
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path);
    if let Ok(mut file) = file {
        let _ = crate::paths::private_file(&path);
        let _ = writeln!(file, "{line}");
    }
}
