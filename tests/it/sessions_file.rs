//! Sessions as files (issue #14 items 1–2): `freeze`, `up`, `down` on real
//! tmux servers on private sockets, through the `tmux-agent` binary.
//!
//! - the round trip: three sessions frozen, the server killed, the file
//!   brought `up` on a fresh server: the same `list-panes -a` and the same
//!   user-set `@agent-*` options;
//! - bad files: each problem names its line and key, and nothing is made;
//! - hostile values in a valid file arrive intact and run nothing;
//! - idempotence, `--reconcile`, `down`, a failure half-way undone, and a
//!   git worktree per session.

use std::path::{Path, PathBuf};

use crate::support::daemon::{agent, agent_ok};
use crate::support::tmux::{ROUND_TRIP_PANES, TmuxServer};
use crate::support::{PATIENCE, eventually, require, text};

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Every session's name on the server, sorted.
fn session_names(server: &TmuxServer) -> Vec<String> {
    let out = server.try_tmux(&["list-sessions", "-F", "#{session_name}"]);
    let mut names: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    names.sort();
    names
}

/// The `@agent-*` options set on a session, as `show-options` prints them.
fn agent_options(server: &TmuxServer, session: &str) -> Vec<String> {
    server
        .tmux(&["show-options", "-t", &format!("={session}:")])
        .lines()
        .filter(|l| l.starts_with("@agent-"))
        .map(str::to_owned)
        .collect()
}

/// Kills the server and waits until it is gone; then starts an empty one
/// (no session, so no pane takes an id `up` will want) that stays up.
fn fresh_server(server: &TmuxServer) {
    let _ = server.try_tmux(&["kill-server"]);
    eventually(PATIENCE, "the old server to go", || {
        (!server.is_running()).then_some(())
    });
    // The old server may still be on its way out for a moment after it
    // stopped answering (a client then says "server exited
    // unexpectedly"): start again until a server stays.
    eventually(PATIENCE, "a fresh server", || {
        let started = server
            .try_tmux(&["start-server", ";", "set-option", "-s", "exit-empty", "off"])
            .status
            .success();
        (started && server.is_running()).then_some(())
    });
}

#[test]
fn a_frozen_server_comes_back_the_same_on_a_fresh_one() {
    // Sessions, windows and panes are made in the order `up` makes them
    // (session by session, window by window, pane by pane), so that the
    // fresh server gives its panes the same ids, which `#{window_layout}`
    // includes.
    let server = TmuxServer::start_with_session("alpha");
    let (a, b, c) = (server.dir("a"), server.dir("b"), server.dir("c dir"));
    let marker = server.path("marker");
    let goal = format!("ship it; \"now\" '$HOME' #(touch {})", marker.display());
    // alpha: a renamed window split in two, then a window running a long
    // command, split; a goal and a user option of its own.
    server.tmux(&["rename-window", "-t", "=alpha:0", "editor"]);
    server.tmux(&["split-window", "-h", "-t", "=alpha:0", "-c", s(&a)]);
    server.tmux(&[
        "new-window",
        "-t",
        "=alpha:",
        "-n",
        "logs",
        "-c",
        s(&b),
        "sleep 10000",
    ]);
    server.tmux(&["split-window", "-t", "=alpha:1", "-c", s(&c)]);
    server.tmux(&["set-option", "-t", "=alpha:", "@agent-goal", &goal]);
    server.tmux(&[
        "set-option",
        "-t",
        "=alpha:",
        "@agent-note",
        "mine {not a var}",
    ]);
    // beta: three panes laid out side by side, in a group, with a type.
    server.tmux(&[
        "new-session",
        "-d",
        "-s",
        "beta",
        "-x",
        "100",
        "-y",
        "30",
        "-n",
        "build",
        "-c",
        s(&b),
    ]);
    server.tmux(&["split-window", "-t", "=beta:", "-c", s(&c)]);
    server.tmux(&[
        "split-window",
        "-t",
        "=beta:",
        "-c",
        s(&a),
        "--",
        "sleep",
        "20000",
    ]);
    server.tmux(&["select-layout", "-t", "=beta:", "even-horizontal"]);
    server.tmux(&["set-option", "-t", "=beta:", "@agent-group", "build"]);
    server.tmux(&["set-option", "-t", "=beta:", "@agent-type", "coder"]);
    // gamma: a long command and a window at index 5. (Every window has a
    // name of its own: one named by automatic-rename changes on tmux's
    // timer, between the listing and the freeze.)
    server.tmux(&[
        "new-session",
        "-d",
        "-s",
        "gamma",
        "-n",
        "long job",
        "-c",
        s(&c),
        "sleep 30000; echo done",
    ]);
    server.tmux(&["new-window", "-t", "=gamma:5", "-n", "five", "-c", s(&a)]);

    // And for every pane's process to have started: until then its current
    // path reads empty (two spaces in a line).
    let before = eventually(PATIENCE, "every pane's current path", || {
        Some(server.tmux(&["list-panes", "-a", "-F", ROUND_TRIP_PANES]))
            .filter(|l| !l.contains("  "))
    });
    let options_before: Vec<Vec<String>> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|name| agent_options(&server, name))
        .collect();
    assert_eq!(before.lines().count(), 9, "{before}");

    let file = server.path("frozen.toml");
    agent_ok(&server, &["freeze", "--all", "-o", s(&file)]);
    let frozen = std::fs::read_to_string(&file).unwrap();
    fresh_server(&server);
    let up = agent_ok(&server, &["up", s(&file)]);
    assert_eq!(up.matches(": created").count(), 3, "{up}");

    // A pane's current path is read from its process, which may not have
    // started yet right after `up`: poll for the listing, then compare.
    let settled = crate::support::wait_for(PATIENCE, || {
        let after = server.tmux(&["list-panes", "-a", "-F", ROUND_TRIP_PANES]);
        (after == before).then_some(())
    });
    let after = server.tmux(&["list-panes", "-a", "-F", ROUND_TRIP_PANES]);
    assert!(
        settled.is_some(),
        "before:\n{before}\nafter:\n{after}\nthe frozen file:\n{frozen}"
    );
    let options_after: Vec<Vec<String>> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|name| agent_options(&server, name))
        .collect();
    assert_eq!(options_after, options_before);
    assert!(!marker.exists(), "a #() in a goal ran");

    // Again: every session exists, nothing is made twice.
    let again = agent_ok(&server, &["up", s(&file), "--json"]);
    let json: serde_json::Value = serde_json::from_str(&again).unwrap();
    let outcomes: Vec<&str> = json["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["existing"; 3]);
    assert_eq!(
        server.tmux(&["list-panes", "-a", "-F", ROUND_TRIP_PANES]),
        before
    );
}

/// Writes `body` as `name` in the test HOME; its path.
fn write(server: &TmuxServer, name: &str, body: &str) -> PathBuf {
    let path = server.path(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn a_bad_file_names_line_and_key_and_nothing_is_created() {
    let server = TmuxServer::start();
    let ok = server.dir("ok");
    // A key no one knows: serde stops there, with its line.
    let unknown = write(
        &server,
        "unknown.toml",
        "[[session]]\nname = \"a\"\n\n[[session.window]]\nname = \"w\"\nlayuot = \"x\"\n",
    );
    let out = agent(&server, &["up", s(&unknown)]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown.toml:6: session[0].window[0].layuot: unknown key"),
        "{err}"
    );
    assert!(err.contains("nothing was created"), "{err}");

    // Everything else at once: each problem on its own line.
    let body = format!(
        r##"[[session]]
name = "one"
cwd = "{ok}"

[[session]]
name = "one"

[[session]]
name = "x; kill-server"

[[session]]
name = "#(touch {ok}/ran)"

[[session]]
name = "two\nlines"

[[session]]
name = "laid-out"
[[session.window]]
layout = "bb62,200x50,0,0,1"

[[session]]
name = "nowhere"
cwd = "{ok}/missing"
"##,
        ok = ok.display()
    );
    let bad = write(&server, "bad.toml", &body);
    let out = agent(&server, &["up", s(&bad)]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    for expected in [
        "bad.toml:6: session[1].name: session \"one\" is already defined by session[0]",
        "bad.toml:9: session[2].name: `;` ends a tmux command",
        "bad.toml:12: session[3].name: `#` starts a tmux format",
        "bad.toml:15: session[4].name: '\\n' in a session name",
        "bad.toml:20: session[5].window[0].layout: tmux would refuse this layout: the checksum",
        "bad.toml:24: session[6].cwd: directory",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    assert!(err.contains("nothing was created"), "{err}");
    assert_eq!(session_names(&server), ["base"]);
    assert!(!ok.join("ran").exists());
}

#[test]
fn layouts_tmux_refuses_are_the_ones_the_check_refuses() {
    let server = TmuxServer::start();
    // (layout, panes in the window): accepted by the check iff by tmux.
    let right = tmux_agent::sessions::layout::with_checksum("80x24,0,0{40x24,0,0,1,39x24,41,0,2}");
    let table = [
        (right.clone(), true),
        (right.replacen(&right[..4], "0000", 1), false),
        (
            tmux_agent::sessions::layout::with_checksum("80x24,0,0{40x24,0,0,1,39x23,41,0,2}"),
            false,
        ),
        // tmux corrects a top cell whose size is not its children's sum.
        (
            tmux_agent::sessions::layout::with_checksum("80x24,0,0{40x24,0,0,1,40x24,41,0,2}"),
            true,
        ),
        (
            tmux_agent::sessions::layout::with_checksum("80x24,0,0{40x24,0,0,1,39x24,41,0,2"),
            false,
        ),
        ("b25d,80x24".to_owned(), false),
    ];
    server.tmux(&["split-window", "-h", "-t", "=base:"]);
    for (layout, valid) in table {
        let by_check = tmux_agent::sessions::layout::check(&layout).is_ok();
        let by_tmux = server
            .try_tmux(&["select-layout", "-t", "=base:", &layout])
            .status
            .success();
        assert_eq!((by_check, by_tmux), (valid, valid), "{layout}");
    }
}

#[test]
fn hostile_values_in_a_valid_file_arrive_intact_and_run_nothing() {
    let server = TmuxServer::start();
    let canary = server.path("canary");
    let touch = format!("touch {}", canary.display());
    let weird = server.dir("d;'q' $(x) #(y)");
    let out_file = server.path("said");
    let value = format!("'; {touch}; ' $({touch}) `{touch}` #({touch}) \"q\" ~ $HOME {{x}}");
    let name = "it's \"q\" ~ a,b {x}";
    let body = format!(
        r#"[vars]
v = "default"

[[session]]
name = {name}
goal = {goal}
cwd = {cwd}
env = {{ HOSTILE = {goal} }}
options = {{ "@agent-note" = {goal} }}

[[session.window]]
name = {goal}

[[session.window.pane]]
command = "printf '%s' {{v}} > {out}; exec sleep 10000"
"#,
        name = toml_string(&name.replace('{', "{{").replace('}', "}}")),
        goal = toml_string(&value.replace("{x}", "{{x}}")),
        cwd = toml_string(s(&weird)),
        out = out_file.display(),
    );
    let file = write(&server, "hostile.toml", &body);
    agent_ok(&server, &["up", s(&file), "--var", &format!("v={value}")]);
    // By id: the name is hostile to a target's syntax too.
    let target = server.session_id(name);
    eventually(PATIENCE, "the pane's command to write its value", || {
        std::fs::read_to_string(&out_file)
            .ok()
            .filter(|t| !t.is_empty())
    });
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), value);
    assert_eq!(
        server.option(&target, "@agent-goal").as_deref(),
        Some(value.as_str())
    );
    assert_eq!(
        server.option(&target, "@agent-note").as_deref(),
        Some(value.as_str())
    );
    assert_eq!(server.display(&target, "#{window_name}"), value);
    let cwd = eventually(PATIENCE, "the pane's current path", || {
        Some(server.display(&target, "#{pane_current_path}")).filter(|p| !p.is_empty())
    });
    assert_eq!(cwd, s(&weird));
    assert_eq!(server.display(&target, "#{session_name}"), name);
    let env = server.tmux(&["show-environment", "-t", &target, "HOSTILE"]);
    assert_eq!(env.trim_end_matches('\n'), format!("HOSTILE={value}"));
    assert!(!canary.exists(), "a hostile value ran a command");
}

/// A TOML basic string holding `value` exactly.
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

#[test]
fn reconcile_sets_the_options_of_existing_sessions_and_down_closes_only_the_file_s() {
    let server = TmuxServer::start();
    let file = write(
        &server,
        "team.toml",
        "[vars]\nteam = \"red\"\n\n[[session]]\nname = \"{team}-lead\"\ngoal = \"lead the {team} team\"\ngroup = \"g1\"\nrole = \"coordinator\"\n\n[[session]]\nname = \"{team}-dev\"\ntype = \"coder\"\ngroup = \"g1\"\n",
    );
    agent_ok(&server, &["up", s(&file)]);
    assert_eq!(session_names(&server), ["base", "red-dev", "red-lead"]);
    assert_eq!(
        server.option("=red-lead:", "@agent-goal").as_deref(),
        Some("lead the red team")
    );
    // The coordinator was made first: it has the lower id.
    let lead: u32 = server.session_id("red-lead")[1..].parse().unwrap();
    let dev: u32 = server.session_id("red-dev")[1..].parse().unwrap();
    assert!(lead < dev);

    server.tmux(&[
        "set-option",
        "-t",
        "=red-lead:",
        "@agent-goal",
        "changed by hand",
    ]);
    agent_ok(&server, &["up", s(&file)]);
    assert_eq!(
        server.option("=red-lead:", "@agent-goal").as_deref(),
        Some("changed by hand"),
        "without --reconcile an existing session is left alone"
    );
    let out = agent_ok(&server, &["up", s(&file), "--reconcile"]);
    assert!(out.contains("options reconciled"), "{out}");
    assert_eq!(
        server.option("=red-lead:", "@agent-goal").as_deref(),
        Some("lead the red team")
    );

    // Another var value names other sessions: down of those closes nothing.
    let none = agent_ok(&server, &["down", s(&file), "--var", "team=blue"]);
    assert_eq!(none.matches("not running").count(), 2, "{none}");
    let down = agent_ok(&server, &["down", s(&file)]);
    assert_eq!(down.matches("closed").count(), 2, "{down}");
    assert_eq!(session_names(&server), ["base"]);
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

fn has_git() -> bool {
    std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_failure_half_way_undoes_what_was_made_and_a_worktree_is_made_per_session() {
    if !require(has_git(), "git", "install git (apt-get install git)") {
        return;
    }
    let server = TmuxServer::start();
    let repo = server.dir("repo");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "first"]);
    let not_a_repo = server.dir("plain");

    // The second session's worktree cannot be made: the first session's
    // worktree is removed again, and the error says so.
    let body = format!(
        r#"[[session]]
name = "feature"
cwd = "{repo}"
worktree = {{ branch = "feat-{{session}}", path = "../wt/{{session}}" }}

[[session]]
name = "broken"
cwd = "{plain}"
worktree = {{ branch = "b", path = "../wt/broken" }}
"#,
        repo = repo.display(),
        plain = not_a_repo.display()
    );
    let file = write(&server, "wt.toml", &body);
    let out = agent(&server, &["up", s(&file)]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("session \"broken\""), "{err}");
    // feature's session was still waiting for its batch: never made.
    assert!(!err.contains("closed the session"), "{err}");
    assert!(err.contains("removed the worktree(s) it had made"), "{err}");
    assert_eq!(session_names(&server), ["base"]);
    let worktree = server.path("wt/feature");
    assert!(!worktree.exists());

    // Without the broken one: the worktree is made on its own branch, and
    // the session starts there.
    let good = write(
        &server,
        "good.toml",
        body.split("\n[[session]]\nname = \"broken\"")
            .next()
            .unwrap(),
    );
    agent_ok(&server, &["up", s(&good)]);
    let cwd = eventually(PATIENCE, "the pane's current path", || {
        Some(server.display("=feature:", "#{pane_current_path}")).filter(|p| !p.is_empty())
    });
    assert_eq!(cwd, s(&worktree));
    let branch = std::process::Command::new("git")
        .arg("-C")
        .arg(&worktree)
        .args(["branch", "--show-current"])
        .output()
        .unwrap();
    assert_eq!(text(&branch.stdout).trim(), "feat-feature");
}

#[test]
fn tmux_refusing_one_session_undoes_the_sessions_made_with_it() {
    let server = TmuxServer::start();
    // Sessions go to tmux several to an invocation; tmux refuses b's
    // second window (an index it cannot hold), after a was made and while
    // b is half made: both are closed again, c was never started.
    let file = write(
        &server,
        "refused.toml",
        "[[session]]\nname = \"a\"\n\n[[session]]\nname = \"b\"\n[[session.window]]\n[[session.window]]\nindex = 3000000000\n\n[[session]]\nname = \"c\"\n",
    );
    let out = agent(&server, &["up", s(&file)]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("session \"b\": tmux"), "{err}");
    assert!(err.contains("can't find window: 3000000000"), "{err}");
    assert!(
        err.contains("its half-made session tmux-agent-up-"),
        "{err}"
    );
    assert!(err.contains(", a"), "{err}");
    assert_eq!(session_names(&server), ["base"]);
}

#[test]
fn a_session_created_hook_already_sees_each_session_s_name_and_options() {
    let server = TmuxServer::start();
    // What a `session-created` reaction (the daemon's, or this hook) sees:
    // tmux runs hooks once the creating command list is done.
    server.tmux(&[
        "set-hook",
        "-g",
        "session-created",
        "set-option -agF @seen '#{session_name}|#{@agent-goal}|#{@agent-type}|#{@agent-group};'",
    ]);
    let file = write(
        &server,
        "seen.toml",
        "[[session]]\nname = \"one\"\ngoal = \"first #{{x}}\"\ngroup = \"g\"\n\n[[session]]\nname = \"two\"\ntype = \"coder\"\n[[session.window]]\n[[session.window]]\nname = \"second\"\n\n[[session]]\nname = \"three\"\ngoal = \"third\"\n",
    );
    agent_ok(&server, &["up", s(&file)]);
    let seen = eventually(PATIENCE, "the hooks to run", || {
        server
            .global_option("@seen")
            .filter(|seen| seen.matches(';').count() == 3)
    });
    assert_eq!(seen, "one|first #{x}||g;two||coder|;three|third||;");
    // And freeze of one session writes that one only.
    let one = agent_ok(&server, &["freeze", "-t", "two"]);
    assert!(one.contains("name = \"two\""), "{one}");
    assert!(one.contains("name = \"second\""), "{one}");
    assert!(!one.contains("name = \"one\""), "{one}");
}

#[test]
fn with_a_daemon_up_registers_each_session_with_its_goal_and_down_completes_them() {
    use crate::support::rig::{LIFECYCLE, Rig};
    let rig = Rig::new(LIFECYCLE);
    let _daemon = rig.start_daemon();
    rig.wait_calls(1); // `base`, registered as the daemon starts
    let file = write(
        &rig.server,
        "pair.toml",
        "[[session]]\nname = \"writer\"\ngoal = \"write the parser\"\ntype = \"coder\"\n\n[[session]]\nname = \"checker\"\ngoal = \"review it\"\n[[session.window]]\n[[session.window.pane]]\n[[session.window.pane]]\n",
    );
    agent_ok(&rig.server, &["up", s(&file)]);
    let calls = rig.wait_calls(3);
    let registered: Vec<(String, String, String)> = calls[1..]
        .iter()
        .map(|c| {
            let a = &c["arguments"];
            assert_eq!(a["step"], "register", "{c}");
            (
                a["name"].as_str().unwrap().to_owned(),
                a["goal"].as_str().unwrap().to_owned(),
                a["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        registered.contains(&("writer".into(), "write the parser".into(), "coder".into())),
        "{registered:?}"
    );
    assert!(
        registered
            .iter()
            .any(|(n, g, _)| n == "checker" && g == "review it"),
        "{registered:?}"
    );
    let ids: Vec<String> = ["writer", "checker"]
        .iter()
        .map(|name| rig.server.session_id(name))
        .collect();
    for id in &ids {
        eventually(PATIENCE, "the goal id kept from register", || {
            (!rig.option(id, "@agent-goal-id").is_empty()).then_some(())
        });
    }

    agent_ok(&rig.server, &["down", s(&file)]);
    let calls = rig.wait_calls(5);
    let completed: Vec<&str> = calls[3..]
        .iter()
        .filter(|c| c["arguments"]["step"] == "complete")
        .map(|c| c["arguments"]["goal_id"].as_str().unwrap())
        .collect();
    let mut expected: Vec<String> = ids.iter().map(|id| format!("goal-{id}")).collect();
    let mut completed: Vec<String> = completed.into_iter().map(str::to_owned).collect();
    expected.sort();
    completed.sort();
    assert_eq!(completed, expected);
}
