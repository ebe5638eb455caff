//! `tmux-agent restore`, `tmux-agent snapshots` and `tmux-agent
//! import-resurrect`: the daemon's session snapshots listed, brought back
//! and imported. The work is in [`crate::sessions::restore`]; this parses
//! flags and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use serde_json::json;

use super::GlobalArgs;
use super::coordination::print_json;
use crate::agent::outbox::Outbox;
use crate::configuration::Configuration;
use crate::control::oneshot::OneShot;
use crate::group::access::printable;
use crate::mcp::serve::snapshots::SnapshotSummary;
use crate::sessions::resume::ResumeBook;
use crate::sessions::resurrect;
use crate::sessions::snapshot::{
    PaneSnapshot, Reason, Retention, SessionSnapshot, StoredSnapshot, Which, WindowSnapshot,
};
use crate::sessions::{SessionsFile, restore};

/// Bring sessions back from the daemon's snapshots, after kill-server, a
/// crash or a reboot: windows, layouts, pane directories and commands, with
/// each agent resumed with its own conversation (`claude --resume ID`, the
/// id its SessionStart hook reported; `[agents.NAME] resume` in the config).
/// An agent without a resume id starts fresh, and restore says so.
///
/// Goals come back under the ids they had (active again, through the
/// daemon's session-restored event), and groups in their join order, so the
/// coordinator is the same. Sessions whose name exists are left alone.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    tmux-agent restore --list\n  \
    tmux-agent restore --all --dry-run\n  \
    tmux-agent restore api review\n  \
    # in tmux.conf, at server start:\n  \
    run-shell -b 'tmux-agent restore --all --if-empty'")]
pub struct RestoreArgs {
    /// The sessions to restore, by name (each from its latest snapshot).
    #[arg(value_name = "SESSION", conflicts_with = "all")]
    pub sessions: Vec<String>,
    /// Restore every session of the last server snapshotted (or of the
    /// last import) that was not closed on purpose.
    #[arg(long)]
    pub all: bool,
    /// Show what can be restored (the latest snapshot of each session) and
    /// restore nothing.
    #[arg(long, conflicts_with_all = ["dry_run", "if_empty"])]
    pub list: bool,
    /// Show what would be created, and each pane's command, and create
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do nothing unless the server is empty: no session but tmux-agent's
    /// own and at most one of one window with one pane (the one a starting
    /// `tmux` just made).
    #[arg(long)]
    pub if_empty: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: RestoreArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let server = global.server();
    let outbox = crate::paths::outbox(&server);
    if args.list {
        let latest = restore::stored(&outbox, Which::Latest)?;
        return list(&latest, args.json);
    }
    if args.sessions.is_empty() && !args.all {
        bail!(
            "name the sessions to restore, or pass --all (see what can be restored: tmux-agent restore --list)"
        );
    }
    let tmux = OneShot::new(server);
    let (existing, empty) = restore::server_sessions(&tmux).await?;
    if args.if_empty && !empty {
        if args.json {
            print_json(&json!({"restored": [], "skipped": "the server is not empty"}))?;
        } else {
            crate::outln!("the server is not empty: nothing restored (--if-empty)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let latest = restore::stored(&outbox, Which::Latest)?;
    let chosen = restore::choose(latest, &args.sessions, args.all)?;
    let book = resume_book(global).await;
    let plans = restore::plan(&chosen, &book, &existing)?;
    if args.dry_run || plans.iter().all(|p| p.exists) {
        if args.json {
            print_json(&json!({"dry_run": args.dry_run, "sessions": plans}))?;
        } else {
            if plans.is_empty() {
                crate::outln!("no snapshot to restore (see tmux-agent restore --list)");
            }
            print_plans(&plans, if args.dry_run { "would restore" } else { "" })?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let restored = restore::restore(&tmux, &outbox, &plans)
        .await
        .map_err(|err| match err {
            restore::RestoreError::Up(crate::sessions::up::UpError::Invalid(err)) => {
                anyhow::anyhow!("{err}\nnothing was created")
            }
            other => anyhow::Error::new(other),
        })?;
    if args.json {
        print_json(&json!({
            "sessions": plans,
            "created": restored.up.sessions,
            "warnings": restored.warnings,
        }))?;
    } else {
        print_plans(&plans, "restored")?;
        for warning in &restored.warnings {
            crate::outln!("warning: {}", printable(warning));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The resume templates of the config; the shipped ones (with a warning)
/// when the config cannot be read.
async fn resume_book(global: &GlobalArgs) -> ResumeBook {
    match Configuration::load(global.config.clone()).await {
        Ok(configuration) => {
            for problem in configuration
                .problems
                .iter()
                .filter(|p| p.to_string().contains(".resume"))
            {
                eprintln!("tmux-agent: {problem} (the shipped resume command is used)");
            }
            configuration.resume
        }
        Err(err) => {
            eprintln!("tmux-agent: {err}; the shipped resume commands are used");
            ResumeBook::default()
        }
    }
}

fn print_plans(plans: &[restore::SessionPlan], verb: &str) -> anyhow::Result<()> {
    for plan in plans {
        if plan.exists {
            crate::outln!("{}: exists, left alone", printable(&plan.session));
            continue;
        }
        let goal = match &plan.goal_id {
            Some(id) => format!(", goal {id} back to active"),
            None => String::new(),
        };
        let group = match &plan.group {
            Some(group) => format!(", group {group}"),
            None => String::new(),
        };
        crate::outln!(
            "{verb} {} ({} window(s), {} pane(s)) from snapshot {} of {}{goal}{group}",
            printable(&plan.session),
            plan.windows,
            plan.panes.len(),
            plan.snapshot_id,
            plan.taken_at
        );
        for pane in &plan.panes {
            let command = shlex::try_join(pane.command.iter().map(String::as_str))
                .unwrap_or_else(|_| pane.command.join(" "));
            let agent = pane.agent.as_deref().unwrap_or_default();
            match pane.start {
                "resumed" => {
                    crate::outln!("  {}: {agent} resumed: {}", pane.pane, printable(&command))
                }
                "fresh" => crate::outln!(
                    "  {}: {agent} starts FRESH ({}): {}",
                    pane.pane,
                    pane.why.as_deref().unwrap_or_default(),
                    printable(&command)
                ),
                _ if command.is_empty() => {
                    crate::outln!("  {}: shell in {}", pane.pane, printable(&pane.cwd))
                }
                _ => crate::outln!("  {}: {}", pane.pane, printable(&command)),
            }
        }
    }
    Ok(())
}

fn list(snapshots: &[StoredSnapshot], json: bool) -> anyhow::Result<ExitCode> {
    let summaries: Vec<SnapshotSummary> = snapshots.iter().map(SnapshotSummary::of).collect();
    if json {
        print_json(&json!({"snapshots": summaries}))?;
        return Ok(ExitCode::SUCCESS);
    }
    if summaries.is_empty() {
        crate::outln!(
            "no snapshots: the daemon takes them while it runs (see [snapshots] in the README)"
        );
    }
    for s in &summaries {
        let closed = match &s.closed_at {
            Some(at) => format!(", closed {at} (restore it by name)"),
            None => String::new(),
        };
        let agents = if s.agents.is_empty() {
            String::new()
        } else {
            format!(", agents: {}", s.agents.join(" "))
        };
        crate::outln!(
            "{}  {}  {} window(s), {} pane(s){agents}  [snapshot {}, {}{closed}]",
            s.taken_at,
            printable(&s.session),
            s.windows,
            s.panes,
            s.id,
            s.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The daemon's snapshots: list them all, show one, drop one.
#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// Every kept snapshot (newest first), or one session's.
    List(SnapshotsListArgs),
    /// One snapshot in full, as JSON.
    Show(SnapshotIdArgs),
    /// Delete one snapshot (one that cannot be read, say).
    Drop(SnapshotIdArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotsListArgs {
    /// Only this session's snapshots.
    #[arg(value_name = "SESSION")]
    pub session: Option<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotIdArgs {
    /// The snapshot's number, as `list` shows it.
    #[arg(value_name = "ID")]
    pub id: i64,
}

pub async fn run_snapshots(cmd: SnapshotsCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let outbox = crate::paths::outbox(&global.server());
    match cmd {
        SnapshotsCommand::List(args) => {
            let which = match &args.session {
                Some(name) => Which::Named(name),
                None => Which::All,
            };
            list(&restore::stored(&outbox, which)?, args.json)
        }
        SnapshotsCommand::Show(args) => {
            let found = restore::stored(&outbox, Which::Id(args.id))?;
            let Some(stored) = found.first() else {
                bail!(
                    "there is no snapshot {} (see tmux-agent snapshots list)",
                    args.id
                );
            };
            print_json(&serde_json::to_value(stored)?)?;
            Ok(ExitCode::SUCCESS)
        }
        SnapshotsCommand::Drop(args) => {
            let dropped = tokio::task::spawn_blocking(move || {
                Outbox::open(&outbox).and_then(|mut o| o.drop_snapshot(args.id))
            })
            .await??;
            if !dropped {
                bail!(
                    "there is no snapshot {} (see tmux-agent snapshots list)",
                    args.id
                );
            }
            crate::outln!("dropped snapshot {}", args.id);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Import a tmux-resurrect save file as snapshots, so `restore` brings its
/// sessions back (or write it as a sessions file for `up` with -o).
///
/// Reads the file tmux-resurrect's `last` link points to, in
/// ~/.tmux/resurrect (or $XDG_DATA_HOME/tmux/resurrect), unless given a
/// file or directory. Every line is checked first; a line that is not
/// tmux-resurrect's is an error naming it, and nothing is imported. A pane
/// that ran a program gets it as its command (tmux-resurrect types it into
/// a shell instead); grouped sessions are not imported.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    tmux-agent import-resurrect && tmux-agent restore --all\n  \
    tmux-agent import-resurrect ~/.tmux/resurrect/tmux_resurrect_20261201T141803.txt --dry-run\n  \
    tmux-agent import-resurrect -o team.toml && tmux-agent up team.toml")]
pub struct ImportResurrectArgs {
    /// A save file, or tmux-resurrect's directory (its `last` link is read).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Write a sessions file (TOML) here instead of storing snapshots.
    #[arg(short = 'o', value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Show what would be imported, and import nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A tmux-resurrect save as snapshots.
pub fn snapshots_of(save: &resurrect::ResurrectSave) -> Vec<SessionSnapshot> {
    save.sessions
        .iter()
        .map(|session| SessionSnapshot {
            name: session.name.clone(),
            options: Default::default(),
            windows: session
                .windows
                .iter()
                .map(|(index, window)| WindowSnapshot {
                    index: *index,
                    name: window.name.clone(),
                    layout: window.layout.clone(),
                    active: window.active,
                    panes: window
                        .panes
                        .iter()
                        .map(|(pane_index, pane)| PaneSnapshot {
                            index: *pane_index,
                            cwd: pane.cwd.to_string_lossy().into_owned(),
                            // Typed into a shell by tmux-resurrect: one
                            // word, run by the shell.
                            command: Some(pane.full_command.clone())
                                .filter(|c| !c.is_empty())
                                .into_iter()
                                .collect(),
                            agent: None,
                            resume_id: None,
                            active: pane.active,
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

pub async fn run_import(
    args: ImportResurrectArgs,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    let given = match args.file.clone() {
        Some(file) => file,
        None => resurrect::default_dir().context("no HOME: name the save file to import")?,
    };
    let path = resurrect::resolve(&given);
    let save =
        resurrect::read(&path).map_err(|err| anyhow::anyhow!("{err}\nnothing was imported"))?;
    let snapshots = snapshots_of(&save);
    let skipped: Vec<&str> = save.grouped.iter().map(|(name, _)| name.as_str()).collect();
    if let Some(out) = &args.output {
        let book = ResumeBook::default();
        let mut file = SessionsFile::default();
        for snapshot in &snapshots {
            let (spec, _) = restore::to_spec(snapshot, &book)
                .map_err(|reason| anyhow::anyhow!("{}: {reason}", snapshot.name))?;
            file.sessions.push(spec);
        }
        let text = file.to_toml().context("writing the sessions file")?;
        if !args.dry_run {
            std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
        }
    } else if !args.dry_run {
        let outbox = crate::paths::outbox(&global.server());
        let stored = snapshots.clone();
        let now = Utc::now().timestamp_millis();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut outbox = Outbox::open(&outbox)?;
            // One generation per import: `restore --all` brings back what
            // this save held.
            let keyed: Vec<(String, SessionSnapshot)> = stored
                .into_iter()
                .map(|s| (format!("import:{now}:{}", s.name), s))
                .collect();
            outbox.keep_snapshots(&keyed, Reason::Import, now, Retention::default())?;
            Ok(())
        })
        .await??;
    }
    if args.json {
        print_json(&json!({
            "file": path,
            "dry_run": args.dry_run,
            "output": args.output,
            "sessions": snapshots,
            "grouped_sessions_skipped": skipped,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if args.dry_run {
        "would import"
    } else {
        "imported"
    };
    for s in &snapshots {
        crate::outln!(
            "{verb} {} ({} window(s), {} pane(s))",
            printable(&s.name),
            s.windows.len(),
            s.panes().count()
        );
    }
    for name in &skipped {
        crate::outln!(
            "skipped {} (a grouped session: it shares another's windows)",
            printable(name)
        );
    }
    match (&args.output, args.dry_run) {
        (Some(out), false) => {
            crate::outln!("wrote {}: bring it up with tmux-agent up", out.display())
        }
        (None, false) => crate::outln!("from {}: see tmux-agent restore --list", path.display()),
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}
