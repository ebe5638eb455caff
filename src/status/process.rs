//! Which panes run an agent, from the pane's process: how agents without
//! hooks (aider, opencode, an agent named only in the config) get on the
//! board at all, and how they leave it when they exit (DESIGN.md D15).
//!
//! The keeper looks when tmux pushes a change, never on a timer: a new
//! window or pane, a session made, and, most often, the window being
//! renamed by tmux's `automatic-rename` (on by default), which follows the
//! active pane's foreground command, so starting `aider` at a shell prompt
//! renames the window and the keeper looks within a moment. An agent
//! started in a pane that is not its window's active one, with
//! `automatic-rename` off, is seen at the next change of any kind (or
//! once its hook speaks).
//!
//! One look is one `list-panes -a` with `#{pane_current_command}`: the
//! first word of the pane's foreground process (tmux reads it from the
//! terminal's foreground process group). That names native and
//! self-titled agents directly (`codex`, `claude`, which sets its process
//! title). An agent run by an interpreter shows as the interpreter
//! (`python3` for aider, `node`, `sh` for a script): then the foreground
//! process's own command line is read from `/proc` (the terminal's
//! foreground group, field 8 of the pane shell's `/proc/PID/stat`), and its
//! script's file name counts. On a system without `/proc` only the direct
//! names are seen.

use std::collections::BTreeSet;
use std::path::Path;

use super::model::AgentKind;
use crate::control::{PaneId, SessionId};

/// The `list-panes -a` format of one look: the session's id comes before
/// the command, which may hold anything.
pub const FORMAT: &str = "#{pane_id}\t#{session_id}\t#{pane_pid}\t#{pane_current_command}";

/// Foreground commands that run the agent as a script: the script's name
/// is what counts.
const INTERPRETERS: [&str; 10] = [
    "python", "python3", "node", "bun", "deno", "ruby", "perl", "sh", "bash", "dash",
];

/// One pane of a look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaneProcess {
    pub pane: PaneId,
    pub session: SessionId,
    /// The pane's first process (its shell, usually).
    pub pid: Option<u32>,
    /// `#{pane_current_command}`.
    pub command: String,
}

/// The panes of a [`FORMAT`] listing (lines that do not parse are skipped).
/// A pane listed more than once (grouped sessions share their windows)
/// appears once.
pub fn parse(listing: &str) -> Vec<PaneProcess> {
    let mut seen = BTreeSet::new();
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(4, '\t');
            let pane: PaneId = fields.next()?.parse().ok()?;
            let session = fields.next()?.parse().ok()?;
            let pid = fields.next()?.parse().ok();
            let command = fields.next().unwrap_or_default().to_owned();
            seen.insert(pane).then_some(PaneProcess {
                pane,
                session,
                pid,
                command,
            })
        })
        .collect()
}

/// The agents a look recognises: the known ones and those the config
/// names (`[agents.NAME]`), by the name their process runs under.
#[derive(Debug, Clone)]
pub struct ProcessNames {
    names: BTreeSet<String>,
}

impl ProcessNames {
    /// The known agents and `configured` (the names of `[agents.*]`).
    pub fn new<'a>(configured: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: BTreeSet<String> = AgentKind::KNOWN
            .iter()
            .map(|kind| kind.as_str().to_owned())
            .collect();
        names.extend(configured.into_iter().map(str::to_owned));
        Self { names }
    }

    /// The agent `pane` runs, if any: its foreground command by name, or
    /// the script an interpreter runs (read from `/proc`).
    pub fn agent_of(&self, pane: &PaneProcess) -> Option<AgentKind> {
        if let Some(kind) = self.named(&pane.command) {
            return Some(kind);
        }
        if !INTERPRETERS.contains(&pane.command.as_str()) {
            return None;
        }
        let argv = foreground_argv(pane.pid?)?;
        self.script_agent(&argv)
    }

    fn named(&self, word: &str) -> Option<AgentKind> {
        let base = Path::new(word).file_name()?.to_str()?;
        self.names.contains(base).then(|| AgentKind::named(base))
    }

    /// The agent an interpreter's command line runs: the first argument
    /// that is not an option, by its file name (with a `.js`/`.py`/`.mjs`
    /// extension dropped).
    fn script_agent(&self, argv: &[String]) -> Option<AgentKind> {
        let script = argv.iter().skip(1).find(|arg| !arg.starts_with('-'))?;
        let path = Path::new(script);
        let stem = match path.extension().and_then(|e| e.to_str()) {
            Some("js" | "mjs" | "cjs" | "py") => path.file_stem()?,
            _ => path.file_name()?,
        };
        self.named(stem.to_str()?)
    }
}

/// The command line of the foreground process of the terminal whose
/// session leader is `pid` (the pane's shell): its terminal's foreground
/// group is field 8 of `/proc/PID/stat`, and the group's leader is the
/// foreground job.
fn foreground_argv(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything.
    let after = &stat[stat.rfind(')')? + 2..];
    // Fields from 3 on: state, ppid, pgrp, session, tty_nr, tpgid.
    let tpgid: i64 = after.split(' ').nth(5)?.parse().ok()?;
    if tpgid <= 0 {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{tpgid}/cmdline")).ok()?;
    Some(
        cmdline
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> ProcessNames {
        ProcessNames::new(["mybot"])
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn a_listing_parses_once_per_pane_whatever_the_command_holds() {
        let listing =
            "%1\t$0\t100\tclaude\n%1\t$3\t100\tclaude\n%2\t$0\t101\tweird\tname\n%x\t$0\t1\tsh\n";
        let panes = parse(listing);
        assert_eq!(panes.len(), 2, "{panes:?}");
        assert_eq!(panes[0].command, "claude");
        assert_eq!(panes[1].command, "weird\tname");
        assert_eq!(panes[1].pid, Some(101));
    }

    #[test]
    fn agents_are_known_by_their_command_or_by_the_configured_name() {
        let pane = |command: &str| PaneProcess {
            pane: PaneId(1),
            session: SessionId(0),
            pid: None,
            command: command.to_owned(),
        };
        assert_eq!(names().agent_of(&pane("codex")), Some(AgentKind::Codex));
        assert_eq!(names().agent_of(&pane("claude")), Some(AgentKind::Claude));
        assert_eq!(
            names().agent_of(&pane("mybot")),
            Some(AgentKind::Other("mybot".into()))
        );
        assert_eq!(names().agent_of(&pane("vim")), None);
        // An interpreter without a pid to look at: nothing known.
        assert_eq!(names().agent_of(&pane("python3")), None);
    }

    #[test]
    fn an_interpreter_counts_by_the_script_it_runs() {
        let n = names();
        assert_eq!(
            n.script_agent(&argv(&[
                "/usr/bin/python3",
                "/home/u/.local/bin/aider",
                "--model",
                "x"
            ])),
            Some(AgentKind::Aider)
        );
        assert_eq!(
            n.script_agent(&argv(&["node", "--no-warnings", "/opt/opencode.mjs"])),
            Some(AgentKind::Opencode)
        );
        assert_eq!(n.script_agent(&argv(&["sh", "-c", "aider --yes"])), None);
        assert_eq!(n.script_agent(&argv(&["bash"])), None);
        assert_eq!(n.script_agent(&argv(&["python3", "manage.py"])), None);
    }
}
