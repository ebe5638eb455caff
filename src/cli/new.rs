//! `tmux-agent new`: create a session with its agent options already set.
//!
//! The options must be on the session before anyone looks: the daemon lists
//! sessions as soon as tmux says one was created, and its `session-created`
//! actions read `@agent-goal` and `@agent-type` then. So the session is
//! created and its options set in *one* tmux invocation, which tmux runs
//! without interleaving other clients' commands.
//!
//! That invocation cannot name the new session by `$id` (unknown until it
//! exists), and a command without `-t` after `new-session -d` does not
//! target the new session (it falls to tmux's "best session" guess, or to
//! the caller's own session inside tmux). Nor can it name it by the user's
//! name, which tmux may rewrite (`.` and `:` become `_`, control characters
//! are escaped). So it creates the session under a unique temporary name
//! made of plain characters, sets the options on `=TEMP` (exact match), and
//! renames it last: to the name asked for, or, without `-s`, to its id
//! number, which is what tmux would have called it.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::coordination::{Groups, print_json, session_lines, who};
use crate::control::SessionId;
use crate::control::command::{Command, SessionTarget, Spawn};
use crate::group::GroupName;
use crate::group::names::check_value;
use crate::group::plan::SessionRef;
use crate::schema;

/// Create a detached session with its agent options set from the start.
///
/// The goal, type and group are set as @agent-goal, @agent-type and
/// @agent-group in the same tmux invocation that creates the session, so the
/// daemon's session-created actions already see them. A COMMAND of one word
/// runs through the shell, several words run directly, as with tmux itself.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tmux-agent new -s parser --goal 'refactor the parser' --type coder --group build\n  tmux-agent new -s review-1 --group review -c ~/src/app -- claude\n  tmux attach -t parser"
)]
pub struct NewArgs {
    /// The session's name (tmux turns `.` and `:` into `_`). Default: its
    /// number, as tmux would pick.
    #[arg(short = 's', value_name = "NAME")]
    pub name: Option<String>,
    /// The goal of the work in this session (@agent-goal), one line.
    #[arg(long, value_name = "TEXT")]
    pub goal: Option<String>,
    /// The kind of agent or work (@agent-type), e.g. coder, reviewer.
    #[arg(long = "type", value_name = "TYPE")]
    pub agent_type: Option<String>,
    /// Join this coordination group (@agent-group).
    #[arg(
        long,
        value_name = "GROUP",
        add = clap_complete::engine::ArgValueCandidates::new(super::shell::group_candidates)
    )]
    pub group: Option<GroupName>,
    /// The start directory.
    #[arg(short = 'c', value_name = "DIR")]
    pub directory: Option<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The command to run in the session (after `--`); default: your shell.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn run(args: NewArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if let Some(name) = &args.name
        && (name.is_empty() || name.contains('\0'))
    {
        bail!("a session name must be non-empty and hold no NUL character");
    }
    for (what, value) in [("goal", &args.goal), ("type", &args.agent_type)] {
        if let Some(value) = value {
            check_value(value).with_context(|| format!("invalid --{what}"))?;
        }
    }
    if args
        .directory
        .iter()
        .chain(&args.command)
        .any(|a| a.contains('\0'))
    {
        bail!("arguments cannot hold a NUL character");
    }

    let groups = Groups::new(global);
    let temp = format!(
        "tmux-agent-new-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    // By exact name (`=TEMP`), never a prefix of another session's.
    let exact = SessionTarget::Exact(temp.clone());
    let spawn = Spawn {
        directory: args.directory.clone(),
        environment: Vec::new(),
        command: args.command.clone(),
    };
    let mut commands = vec![Command::new_session(&temp, None, None, &spawn)?];
    let options = [
        (schema::session::GOAL, args.goal.clone()),
        (schema::session::TYPE, args.agent_type.clone()),
        (
            schema::session::GROUP,
            args.group.as_ref().map(ToString::to_string),
        ),
    ];
    for (name, value) in options {
        if let Some(value) = value {
            commands.push(Command::set_option(exact.clone(), name, &value)?);
        }
    }
    commands.push(match &args.name {
        Some(name) => Command::rename_session(exact, name)?,
        // tmux's own default name.
        None => Command::rename_session_to_number(exact)?,
    });

    let tmux = groups.direct.oneshot();
    let out = match tmux.run_all(&commands).await {
        Ok(out) => out,
        Err(err) => {
            // Do not leave a half-made session behind.
            let _ = tmux.run(&Command::kill_session_named(&temp)?).await;
            let hint = if args.name.is_none() {
                " (pass -s NAME to choose a name)"
            } else {
                ""
            };
            return Err(anyhow::Error::new(err).context(format!("creating the session{hint}")));
        }
    };
    let text = String::from_utf8_lossy(&out);
    let id: SessionId = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("tmux did not print the new session's id: {text:?}"))?;
    let name_out = tmux
        .run(&Command::display_message(id, "#{session_name}")?)
        .await?;
    let session = SessionRef {
        id,
        name: String::from_utf8_lossy(&name_out)
            .trim_end_matches('\n')
            .to_owned(),
    };

    let fetched = match &args.group {
        Some(_) => Some(groups.reconciled().await?),
        None => None,
    };
    let view = fetched.as_ref().and_then(|f| f.report.group_of(session.id));
    let server = global.server();
    let attach = format!("{server} attach -t '{id}'");
    if args.json {
        print_json(&json!({
            "session_id": id,
            "session": session.name,
            "goal": args.goal,
            "type": args.agent_type,
            "group": args.group,
            "role": view.and_then(|g| g.member(id)).map(|m| m.role),
            "attach": attach,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::outln!("created session {}", who(id, &session.name));
    if let Some(goal) = &args.goal {
        crate::outln!("  goal: {}", super::coordination::printable(goal));
    }
    if let Some(kind) = &args.agent_type {
        crate::outln!("  type: {}", super::coordination::printable(kind));
    }
    if args.group.is_some() {
        for line in session_lines(&session, view) {
            crate::outln!("  {line}");
        }
    }
    crate::outln!("attach: {attach}");
    Ok(ExitCode::SUCCESS)
}
