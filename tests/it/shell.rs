//! Shell integration: the completion scripts load in a real shell and
//! complete live session and group names of a private tmux server; the
//! manual pages render.

use std::process::Command;

use crate::support::daemon::{agent_ok, new_session};
use crate::support::tmux::{TmuxServer, clean_env};
use crate::support::{AGENT, require, text};

/// What bash completes for `WORDS` (the last word the one being typed),
/// after sourcing `tmux-agent completions bash` exactly as a user would.
fn bash_completes(server: &TmuxServer, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| shlex::try_quote(w).unwrap().into_owned())
        .collect();
    let script = format!(
        r#"set -e
source <({agent} completions bash)
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
COMP_TYPE=9
_clap_complete_tmux_agent tmux-agent "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        agent = shlex::try_quote(AGENT).unwrap(),
        words = quoted.join(" "),
    );
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-c", &script]);
    clean_env(&mut cmd, server.home.path());
    let out = cmd.output().expect("run bash");
    assert!(
        out.status.success(),
        "bash failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "noise on stderr: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_bash_script_loads_and_completes_session_and_group_names() {
    if !require(
        Command::new("bash").arg("--version").output().is_ok(),
        "bash",
        "install bash",
    ) {
        return;
    }
    let server = TmuxServer::start_with_session("alpha");
    new_session(&server, "beta two");
    new_session(&server, "tmux-agent");
    let reviewed = new_session(&server, "reviewer");
    agent_ok(&server, &["join", "-t", &reviewed, "review-7"]);

    // Loading alone: no error, no output on stderr.
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-c"]).arg(format!(
        "source <({} completions bash) && complete -p tmux-agent",
        shlex::try_quote(AGENT).unwrap()
    ));
    clean_env(&mut cmd, server.home.path());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("_clap_complete_tmux_agent"));

    let sessions = bash_completes(
        &server,
        &["tmux-agent", "-L", &server.name, "peers", "-t", ""],
    );
    for name in ["alpha", "beta two", "reviewer"] {
        assert!(sessions.iter().any(|s| s == name), "{name} in {sessions:?}");
    }
    assert!(
        !sessions.iter().any(|s| s == "tmux-agent"),
        "the sidecar's session is not offered: {sessions:?}"
    );
    let prefixed = bash_completes(
        &server,
        &["tmux-agent", "-L", &server.name, "show", "-t", "al"],
    );
    assert_eq!(prefixed, ["alpha"]);

    let groups = bash_completes(&server, &["tmux-agent", "-L", &server.name, "join", "rev"]);
    assert_eq!(groups, ["review-7"]);
}

#[test]
fn zsh_and_fish_scripts_are_written_and_man_pages_render() {
    for shell in ["zsh", "fish"] {
        let out = Command::new(AGENT)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("COMPLETE"),
            "{shell} script calls us back: {}",
            text(&out.stdout)
        );
    }
    let out = Command::new(AGENT).arg("man").output().unwrap();
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH tmux-agent 1"),
        "{page}"
    );
    assert!(page.contains("completions"), "subcommands are listed");

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(AGENT)
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for page in [
        "tmux-agent.1",
        "tmux-agent-join.1",
        "tmux-agent-mcp-servers.1",
    ] {
        assert!(dir.path().join(page).is_file(), "{page} written");
    }
}
