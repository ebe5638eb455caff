//! Shell integration: `tmux-agent completions SHELL` (the script a shell
//! sources), `tmux-agent man` (roff pages), and the live candidates the
//! completions offer for session (`-t`) and group names.
//!
//! Completion is clap_complete's environment-driven kind: the script a shell
//! sources calls `COMPLETE=SHELL tmux-agent -- WORDS...` on every TAB, and
//! [`complete_if_asked`] answers that before anything else runs. That is what
//! lets a completion ask the tmux server for its sessions now, rather than
//! offer what a script generated at install time knew.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, ValueEnum};
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{CompleteEnv, Shells};

use super::Cli;
use crate::control::connection::DEFAULT_SESSION_NAME;
use crate::control::server::{ServerSocket, tmux_binary};

/// The variable the completion scripts set when they call us back.
const COMPLETE_VAR: &str = "COMPLETE";

/// The shells we write a completion script for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    fn name(self) -> &'static str {
        match self {
            Shell::Bash => "bash",
            Shell::Zsh => "zsh",
            Shell::Fish => "fish",
        }
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (tmux-agent.1, tmux-agent-join.1, ...)
    /// into this directory instead of printing tmux-agent.1 on stdout.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Answers a completion request from a script [`completions`] wrote, and
/// exits; returns at once when this run is not one.
pub fn complete_if_asked() {
    CompleteEnv::with_factory(Cli::command)
        .var(COMPLETE_VAR)
        .complete();
}

/// `tmux-agent completions SHELL`: the script, on stdout.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let shells = Shells::builtins();
    let shell = shells
        .completer(args.shell.name())
        .context("clap_complete has no completer for this shell")?;
    // The script calls this very binary back: its absolute path when we
    // know it, so completion works whichever `tmux-agent` is first on PATH.
    let me = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "tmux-agent".to_owned());
    let mut script = Vec::new();
    shell.write_registration(COMPLETE_VAR, "tmux-agent", "tmux-agent", &me, &mut script)?;
    crate::cli::output::write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// `tmux-agent man`: the manual page(s).
pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let command = Cli::command();
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("cannot write the pages into {}", dir.display()))?;
            eprintln!(
                "tmux-agent: wrote the manual pages into {}; read them with `man {}/tmux-agent.1`",
                dir.display(),
                dir.display()
            );
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            crate::cli::output::write_all(&page)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Completion candidates for `-t`: the sessions of the server the command
/// line being completed names (its `-L`/`-S`, else `$TMUX`), without the
/// sidecar's own. Empty when no server answers: a TAB never prints errors.
pub fn session_candidates() -> Vec<CompletionCandidate> {
    let mut names = tmux_lines("#{session_name}");
    names.retain(|name| name != DEFAULT_SESSION_NAME);
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// Completion candidates for a group name: every group a session is in.
pub fn group_candidates() -> Vec<CompletionCandidate> {
    let mut names = tmux_lines(&format!("#{{{}}}", crate::schema::session::GROUP));
    names.retain(|name| !name.is_empty());
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// `tmux list-sessions -F FORMAT` on the server of the command line being
/// completed, one line per session; empty on any failure.
fn tmux_lines(format: &str) -> Vec<String> {
    let server = server_being_completed(std::env::args_os());
    let output = std::process::Command::new(tmux_binary())
        .args(server.tmux_args())
        .args(["list-sessions", "-F", format])
        .env("LC_ALL", "C.UTF-8")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The server a partly typed command line names. A completion callback is
/// not given the parsed line, only our own argv (`tmux-agent -- tmux-agent
/// -L work join -t ...`), so the two global flags are picked out of it
/// here: `-L NAME`, `-LNAME`, `-S PATH`, `-SPATH`.
fn server_being_completed(args: impl IntoIterator<Item = OsString>) -> ServerSocket {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Only what follows `--` is the line being completed.
    let line = match args.iter().position(|a| a == "--") {
        Some(i) => &args[i + 1..],
        None => &args[..],
    };
    let (mut name, mut path) = (None, None);
    let mut words = line.iter();
    while let Some(word) = words.next() {
        for (flag, slot) in [("-L", &mut name), ("-S", &mut path)] {
            if word == flag {
                *slot = words.clone().next().cloned();
            } else if let Some(value) = word.strip_prefix(flag) {
                *slot = Some(value.to_owned());
            }
        }
    }
    ServerSocket::choose(name, path.map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(line: &[&str]) -> ServerSocket {
        server_being_completed(line.iter().map(OsString::from))
    }

    #[test]
    fn the_server_comes_from_the_line_being_completed() {
        assert_eq!(
            server(&[
                "tmux-agent",
                "--",
                "tmux-agent",
                "-L",
                "work",
                "join",
                "-t",
                ""
            ])
            .tmux_args(),
            vec![OsString::from("-L"), OsString::from("work")]
        );
        assert_eq!(
            server(&["tmux-agent", "--", "tmux-agent", "-Lwork", "peers", "-t"]).tmux_args(),
            vec![OsString::from("-L"), OsString::from("work")]
        );
        assert_eq!(
            server(&["tmux-agent", "--", "tmux-agent", "-S", "/tmp/s", "peers"]).tmux_args(),
            vec![OsString::from("-S"), OsString::from("/tmp/s")]
        );
    }
}
