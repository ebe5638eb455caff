//! The bad-input corpus: one list of hostile values (quotes, `;`, `#{}`,
//! `#()`, newlines, control characters, invalid UTF-8, 10,000 characters,
//! protocol look-alikes), driven through every command that takes a name
//! or a value and through the events, plus config files that are empty, not
//! TOML, or wrong in each field.
//!
//! The rules, for every value: a command either does what it says with the
//! value intact, or fails with exit status 1 or 2 and a message (never a
//! panic, never silence); the calls the daemon makes carry the value as
//! tmux stores it, as a JSON string; no `#()` ever runs; and the daemon is
//! still answering at the end.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::process::Output;

use crate::support::PATIENCE;
use crate::support::rig::Rig;
use crate::support::wait_for;
use serde_json::Value;

/// The corpus. `CANARY` is replaced by a path that must never be created.
fn corpus() -> Vec<OsString> {
    let mut values: Vec<OsString> = [
        "plain",
        "it's \"quoted\" `back`",
        ";",
        "semi;colon; ls",
        "escaped\\;semicolon",
        "#{session_name}",
        "##{session_name}",
        "#(touch CANARY)",
        "##(touch CANARY)",
        "$(touch CANARY)",
        "line1\nline2",
        "carriage\rreturn",
        "tab\there",
        "\u{1b}[31mred\u{1b}[0m",
        "%exit",
        "%begin 1 2 0",
        "-dash-first",
        "--help",
        "a:b.c",
        "é ü 中文 🦀",
        " spaces around ",
        "{session}",
        "\\",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    values.push(OsString::from("x".repeat(10_000)));
    values.push(OsString::from_vec(b"bad\xff\xfeutf8".to_vec()));
    values.push(OsString::from_vec(b"\xc3".to_vec()));
    values
}

/// The corpus with `CANARY` pointing into `dir`.
fn corpus_in(dir: &std::path::Path) -> Vec<OsString> {
    let canary = dir.join("canary");
    corpus()
        .into_iter()
        .map(|v| {
            let bytes = v.as_bytes();
            let text = String::from_utf8_lossy(bytes);
            if text.contains("CANARY") {
                OsString::from(text.replace("CANARY", canary.to_str().unwrap()))
            } else {
                v
            }
        })
        .collect()
}

/// `value` as an argument of a tmux command line: a last `;` would end
/// the command (it is written `\;`), and where tmux expands formats in the
/// argument (`expands`), `#` is written `##`. tmux then stores `value`.
fn tmux_arg(value: &OsStr, expands: bool) -> OsString {
    let mut bytes = value.as_bytes().to_vec();
    if expands {
        bytes = bytes
            .iter()
            .flat_map(|&b| if b == b'#' { vec![b'#', b'#'] } else { vec![b] })
            .collect();
    }
    if bytes.last() == Some(&b';') {
        bytes.insert(bytes.len() - 1, b'\\');
    }
    OsString::from_vec(bytes)
}

/// A value for an assertion message: long ones cut.
fn short(value: &OsStr) -> String {
    let text = format!("{value:?}");
    if text.len() > 80 {
        let head: String = text.chars().take(60).collect();
        format!("{head}… ({} bytes)", value.len())
    } else {
        text
    }
}

fn canary(rig: &Rig) -> std::path::PathBuf {
    rig.server.home.path().join("canary")
}

/// Runs tmux-agent with raw (possibly non-UTF-8) arguments.
fn agent(rig: &Rig, args: &[&OsStr]) -> Output {
    rig.server
        .agent()
        .args(args)
        .output()
        .expect("run tmux-agent")
}

/// The rule every command obeys: success, or exit 1/2 with a message.
fn assert_clean(what: &str, value: &OsStr, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "{what} {} panicked: {stderr}",
        short(value)
    );
    if !out.status.success() {
        let code = out.status.code();
        assert!(
            matches!(code, Some(1 | 2)),
            "{what} {} exited {code:?}: {stderr}",
            short(value)
        );
        assert!(
            !stderr.trim().is_empty(),
            "{what} {} failed without a word",
            short(value)
        );
    }
}

/// Session names and goals: created through `tmux-agent new` and through
/// plain tmux, each session's register call names it exactly as tmux
/// stores it, with its goal as given, and every close completes it.
#[test]
fn hostile_names_and_goals_reach_the_calls_as_tmux_stores_them() {
    let rig = Rig::new(
        r#"
[[on.session-created]]
server = "rec"
tool = "echo"
args = { step = "register", id = "{session_id}", name = "{session}", goal = "{goal}", type = "{type}" }

[[on.session-closed]]
server = "rec"
tool = "echo"
args = { step = "complete", id = "{session_id}", name = "{session}" }
"#,
    );
    let _daemon = rig.start_daemon();
    let values = corpus_in(rig.server.home.path());
    let mut expected_goals = std::collections::HashMap::new();
    let mut made_by_new = Vec::new();
    for value in &values {
        // As a name and a goal through `new`.
        let out = agent(
            &rig,
            &[
                "new".as_ref(),
                "--json".as_ref(),
                "-s".as_ref(),
                value,
                "--goal".as_ref(),
                value,
                "--type".as_ref(),
                "t".as_ref(),
            ],
        );
        // `new` must take every value that can be a goal (one line, UTF-8,
        // at most 4096 bytes; a name has no rule of its own beyond
        // non-empty), and the session must then exist under the name tmux
        // makes of it, with the goal as given.
        if assert_must("new -s/--goal", value, must_new(value), &out) {
            let made: Value = serde_json::from_slice(&out.stdout).expect("new --json is JSON");
            let id = made["session_id"].as_str().unwrap().to_owned();
            let text = value.to_str().unwrap();
            let name = tmux_session_name(text);
            assert_eq!(made["session"], name.as_str(), "new -s {}", short(value));
            assert_eq!(
                rig.server.display(&id, "#{session_name}"),
                name,
                "new -s {}",
                short(value)
            );
            assert_eq!(
                rig.server.option(&id, "@agent-goal").as_deref(),
                Some(text),
                "new --goal {}",
                short(value)
            );
            expected_goals.insert(id.clone(), text.to_owned());
            made_by_new.push((id, name));
        }
        // As a goal set with plain tmux in the creating command (any bytes
        // tmux takes: newlines, invalid UTF-8).
        let id = rig
            .server
            .command()
            .args(["new-session", "-d", "-P", "-F", "#{session_id}", ";"])
            .args(["set-option", "@agent-goal"])
            .arg(tmux_arg(value, false))
            .output()
            .unwrap();
        assert!(id.status.success(), "tmux refused {}", short(value));
        let id = String::from_utf8_lossy(&id.stdout).trim().to_owned();
        expected_goals.insert(id, String::from_utf8_lossy(value.as_bytes()).into_owned());
    }

    // Every session tmux has, registered under the name tmux stores.
    let listing = rig
        .server
        .tmux(&["list-sessions", "-F", "#{session_id}\t#{session_name}"]);
    let stored: Vec<(String, String)> = listing
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, n)| *n != "tmux-agent")
        .map(|(i, n)| (i.to_owned(), n.to_owned()))
        .collect();
    let calls = wait_for(PATIENCE * 2, || {
        let calls = rig.calls();
        (calls.len() >= stored.len()).then_some(calls)
    })
    .expect("not every session was registered");
    for (id, name) in &stored {
        let call = calls
            .iter()
            .find(|c| c["arguments"]["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no register call for {id} {name:?}"));
        assert_eq!(call["arguments"]["name"], name.as_str(), "{id}");
        if let Some(goal) = expected_goals.get(id) {
            assert_eq!(call["arguments"]["goal"], goal.as_str(), "{id}");
        }
    }
    // Among them, every session `new` made, under the name it reported.
    for (id, name) in &made_by_new {
        assert!(
            stored.contains(&(id.clone(), name.clone())),
            "{id} {name:?} made by new is not listed: {stored:?}"
        );
    }
    // And every close completes, by the name tmux stored.
    for (id, _) in &stored {
        rig.server.tmux(&["kill-session", "-t", id]);
    }
    wait_for(PATIENCE, || {
        let n = rig
            .calls()
            .iter()
            .filter(|c| c["arguments"]["step"] == "complete")
            .count();
        (n == stored.len()).then_some(())
    })
    .expect("not every session was completed");
    assert!(!canary(&rig).exists(), "a #() or $() from the corpus ran");
}

/// Window names travel in the context saved on detach exactly as tmux
/// lists them.
#[test]
fn hostile_window_names_reach_the_saved_context_intact() {
    let rig = Rig::new(
        r#"
[[on.session-detached]]
server = "rec"
tool = "echo"
args = { step = "save", context = "{context}" }
"#,
    );
    let _daemon = rig.start_daemon();
    let values = corpus_in(rig.server.home.path());
    for value in &values {
        let out = rig
            .server
            .command()
            .args(["new-window", "-d", "-t", "base:", "-n"])
            .arg(tmux_arg(value, true))
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux refused window {}", short(value));
    }
    // As tmux stores them, with control characters shown as `?` (the
    // documented rule for names and titles in a context: one per line).
    let expected: Vec<String> = values
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .map(|c| {
                    if ('\u{1}'..='\u{1f}').contains(&c) {
                        '?'
                    } else {
                        c
                    }
                })
                .collect::<String>()
        })
        .collect();
    let terminal = rig.server.attach_terminal("base");
    wait_for(PATIENCE, || {
        (rig.option("base", "@agent-state") == "active").then_some(())
    })
    .expect("never attached");
    drop(terminal);
    let calls = rig.wait_calls(1);
    let windows: Vec<&str> = calls[0]["arguments"]["context"]["windows"]
        .as_array()
        .expect("the context lists windows")
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    // The first window is the session's own (named by its command).
    assert_eq!(windows.len(), 1 + expected.len());
    for (got, want) in windows[1..].iter().zip(&expected) {
        assert!(
            got == want,
            "window {} arrived as {}",
            short(want.as_ref()),
            short(got.as_ref())
        );
    }
    assert!(!canary(&rig).exists(), "a #() from a window name ran");
}

/// What a command must do with a value of the corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Must {
    /// Succeed (and the caller checks what tmux holds afterwards).
    Accept,
    /// Fail cleanly (exit 1 or 2, with a message).
    Refuse,
    /// The value is where clap may read it as an option (it starts with
    /// `-`): a refusal, or `--help`'s usage on stdout with exit 0.
    OptionLike,
}

/// A group name or a context key: 1 to 64 of `A-Z a-z 0-9 _ . -`
/// (src/group/names.rs), as the value of a positional argument, where a
/// leading `-` makes it an option instead.
fn must_name(value: &OsStr) -> Must {
    let bytes = value.as_bytes();
    if bytes.first() == Some(&b'-') {
        Must::OptionLike
    } else if (1..=64).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
    {
        Must::Accept
    } else {
        Must::Refuse
    }
}

/// A shared value: valid UTF-8 (the CLI takes text), one line (no control
/// character but tab) of at most 4096 bytes (src/group/names.rs).
fn must_value(value: &OsStr) -> Must {
    match value.to_str() {
        Some(text) if text.len() <= 4096 && !text.chars().any(|c| c.is_control() && c != '\t') => {
            Must::Accept
        }
        _ => Must::Refuse,
    }
}

/// A positional argument that names nothing that exists (no tool, server
/// or JSON object in the corpus): refused, unless clap reads it as an option.
fn must_refuse_positional(value: &OsStr) -> Must {
    if value.as_bytes().first() == Some(&b'-') {
        Must::OptionLike
    } else {
        Must::Refuse
    }
}

/// `new -s VALUE --goal VALUE`: the goal's rule ([`must_value`]), the name
/// being non-empty, and a leading `-` is clap's.
fn must_new(value: &OsStr) -> Must {
    if value.as_bytes().first() == Some(&b'-') {
        Must::OptionLike
    } else if value.is_empty() {
        Must::Refuse
    } else {
        must_value(value)
    }
}

/// The name tmux 3.3a stores for a session asked to be called `name` (one
/// line, as [`must_value`] accepts): `.` and `:` become `_`, and its
/// escaping (vis(3)) doubles `\` and writes a tab as `\t`.
fn tmux_session_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' | ':' => "_".to_owned(),
            '\\' => "\\\\".to_owned(),
            '\t' => "\\t".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// Checks `out` against `must` (on top of [`assert_clean`]); true when the
/// command succeeded for the value itself (not as `--help`), so that the
/// caller goes on to check what tmux holds.
fn assert_must(what: &str, value: &OsStr, must: Must, out: &Output) -> bool {
    assert_clean(what, value, out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match must {
        Must::Accept => {
            assert!(
                out.status.success(),
                "{what} must accept {} but refused it: {stderr}",
                short(value)
            );
            true
        }
        Must::Refuse => {
            assert!(
                !out.status.success(),
                "{what} must refuse {} but accepted it: {}",
                short(value),
                String::from_utf8_lossy(&out.stdout)
            );
            false
        }
        Must::OptionLike => {
            if out.status.success() {
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    stdout.contains("Usage:"),
                    "{what} took the option-like {} as a value: {stdout}",
                    short(value)
                );
            }
            false
        }
    }
}

/// Every command that takes a session, group, key or value, given each
/// value of the corpus. Each value is also made a session name (with plain
/// tmux), so that session targets name something that exists.
///
/// * A group name (`join VALUE`) or a key (`share VALUE=v`, `share --unset
///   VALUE`) must be accepted when it is a valid name ([`must_name`]) and
///   refused otherwise; once accepted, tmux holds it: `@agent-group` is the
///   name, `@agent-ctx-VALUE` is set, then unset.
/// * A shared value (`share k=VALUE`) must be accepted when it is one line
///   of at most 4096 bytes of UTF-8 ([`must_value`]), and tmux then holds
///   it byte for byte in `@agent-ctx-k`.
/// * A tool, server or arguments that name nothing (`mcp call`) must be
///   refused.
/// * Every session, whatever its name, can be acted on by its exact name
///   (`-t =NAME`, NAME as tmux stores it, or its id for a NAME starting
///   with `$`, which tmux reads as an id even after `=`): `show`, `show --json` (which
///   names it), `peers`, `join` (tmux then holds the group), `leave` (and the
///   group is gone), and `save` (whose checkpoint call carries the name).
///   A bare `-t VALUE` is a tmux target (`a:b.c` is session `a`, window `b`,
///   pane `c`), so tmux decides what it names; those runs need only be
///   clean.
///
/// Nothing from the corpus runs, and the daemon still answers at the end.
#[test]
fn every_command_takes_every_hostile_value_cleanly() {
    let rig = Rig::new(
        r#"
[[on.checkpoint]]
server = "rec"
tool = "echo"
args = { step = "checkpoint", id = "{session_id}", session = "{session}" }
"#,
    );
    let _daemon = rig.start_daemon();
    let values = corpus_in(rig.server.home.path());
    // `base` is in a group, so that `share` has a group to share with; group
    // names are tried on a session of their own, so `base` stays in `g`.
    rig.server.tmux(&["new-session", "-d", "-s", "joiner"]);
    let joined = agent(
        &rig,
        &[
            "join".as_ref(),
            "g".as_ref(),
            "-t".as_ref(),
            "base".as_ref(),
        ],
    );
    assert!(
        joined.status.success(),
        "{}",
        String::from_utf8_lossy(&joined.stderr)
    );
    // One session per value, named by it; tmux stores its own form of the
    // name (`.` and `:` as `_`, control bytes escaped), read back by id.
    let sessions: Vec<(String, String)> = values
        .iter()
        .map(|value| {
            let out = rig
                .server
                .command()
                .args(["new-session", "-d", "-P", "-F", "#{session_id}", "-s"])
                .arg(tmux_arg(value, true))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tmux refused session {}",
                short(value)
            );
            let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let name = rig.server.display(&id, "#{session_name}");
            (id, name)
        })
        .collect();

    for value in &values {
        let assignment = {
            let mut a = OsString::from("k=");
            a.push(value);
            a
        };
        let key_assignment = {
            let mut a = value.clone();
            a.push("=v");
            a
        };
        let key_option = {
            let mut name = b"@agent-ctx-".to_vec();
            name.extend_from_slice(value.as_bytes());
            String::from_utf8_lossy(&name).into_owned()
        };
        // (what, argv, what it must do, what tmux must then hold)
        type Holds<'a> = Box<dyn Fn() + 'a>;
        let nothing = || -> Holds { Box::new(|| ()) };
        let runs: Vec<(&str, Vec<&OsStr>, Option<Must>, Holds)> = vec![
            (
                "show -t",
                vec!["show".as_ref(), "-t".as_ref(), value],
                None,
                nothing(),
            ),
            (
                "show --json -t",
                vec!["show".as_ref(), "--json".as_ref(), "-t".as_ref(), value],
                None,
                nothing(),
            ),
            (
                "join",
                vec!["join".as_ref(), value, "-t".as_ref(), "joiner".as_ref()],
                Some(must_name(value)),
                Box::new(|| {
                    assert_eq!(
                        rig.server.option("joiner", "@agent-group").as_deref(),
                        value.to_str(),
                        "join {}",
                        short(value)
                    )
                }),
            ),
            (
                "join -t",
                vec!["join".as_ref(), "g".as_ref(), "-t".as_ref(), value],
                None,
                nothing(),
            ),
            (
                "share value",
                vec![
                    "share".as_ref(),
                    &assignment,
                    "-t".as_ref(),
                    "base".as_ref(),
                ],
                Some(must_value(value)),
                Box::new(|| {
                    assert_eq!(
                        rig.server.option("base", "@agent-ctx-k").as_deref(),
                        value.to_str(),
                        "share k={}",
                        short(value)
                    )
                }),
            ),
            (
                "share key",
                vec![
                    "share".as_ref(),
                    &key_assignment,
                    "-t".as_ref(),
                    "base".as_ref(),
                ],
                Some(must_name(value)),
                Box::new(|| {
                    assert_eq!(
                        rig.server.option("base", &key_option).as_deref(),
                        Some("v"),
                        "share {}=v",
                        short(value)
                    )
                }),
            ),
            (
                "share --unset",
                vec![
                    "share".as_ref(),
                    "--unset".as_ref(),
                    value,
                    "-t".as_ref(),
                    "base".as_ref(),
                ],
                Some(must_name(value)),
                Box::new(|| {
                    assert_eq!(
                        rig.server.option("base", &key_option),
                        None,
                        "share --unset {}",
                        short(value)
                    )
                }),
            ),
            (
                "peers -t",
                vec!["peers".as_ref(), "-t".as_ref(), value],
                None,
                nothing(),
            ),
            (
                "leave -t",
                vec!["leave".as_ref(), "-t".as_ref(), value],
                None,
                nothing(),
            ),
            (
                "save -t",
                vec!["save".as_ref(), "-t".as_ref(), value],
                None,
                nothing(),
            ),
            (
                "groups",
                vec!["groups".as_ref(), "--json".as_ref()],
                Some(Must::Accept),
                nothing(),
            ),
            (
                "mcp call tool",
                vec!["mcp".as_ref(), "call".as_ref(), "builtin".as_ref(), value],
                Some(must_refuse_positional(value)),
                nothing(),
            ),
            (
                "mcp call server",
                vec!["mcp".as_ref(), "call".as_ref(), value, "whoami".as_ref()],
                Some(must_refuse_positional(value)),
                nothing(),
            ),
            (
                "mcp call args",
                vec![
                    "mcp".as_ref(),
                    "call".as_ref(),
                    "builtin".as_ref(),
                    "list_goals".as_ref(),
                    value,
                ],
                Some(must_refuse_positional(value)),
                nothing(),
            ),
        ];
        for (what, args, must, holds) in runs {
            let out = agent(&rig, &args);
            let accepted = match must {
                Some(must) => assert_must(what, value, must, &out),
                None => {
                    assert_clean(what, value, &out);
                    false
                }
            };
            if accepted {
                holds();
            }
            if out.status.success() && args.iter().any(|a| *a == OsStr::new("--json")) {
                serde_json::from_slice::<Value>(&out.stdout)
                    .unwrap_or_else(|e| panic!("{what} {}: not JSON ({e})", short(value)));
            }
        }
    }
    // Whatever was accepted is stored byte for byte: the shared values.
    for value in values.iter().filter_map(|v| v.to_str()) {
        let out = agent(
            &rig,
            &[
                "share".as_ref(),
                format!("k={value}").as_ref(),
                "-t".as_ref(),
                "base".as_ref(),
            ],
        );
        if out.status.success() {
            assert_eq!(rig.option("base", "@agent-ctx-k"), value);
        }
    }

    // Every session, by its exact name as tmux stores it; tmux reads a
    // target starting with `$` as a session id even after `=`, so those
    // sessions are named by their id (tmux's grammar, not ours).
    for (id, name) in &sessions {
        let exact = if name.starts_with('$') {
            id.clone()
        } else {
            format!("={name}")
        };
        let run = |args: &[&str]| {
            let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
            argv.extend([OsStr::new("-t"), OsStr::new(&exact)]);
            let out = agent(&rig, &argv);
            assert!(
                out.status.success(),
                "{args:?} -t {} failed: {}",
                short(exact.as_ref()),
                String::from_utf8_lossy(&out.stderr)
            );
            out
        };
        run(&["show"]);
        let shown: Value =
            serde_json::from_slice(&run(&["show", "--json"]).stdout).expect("show --json is JSON");
        assert_eq!(shown["session"]["name"], name.as_str(), "{shown}");
        assert_eq!(shown["session"]["id"], id.as_str(), "{shown}");
        run(&["join", "g2"]);
        assert_eq!(rig.server.option(id, "@agent-group").as_deref(), Some("g2"));
        run(&["peers"]);
        run(&["leave"]);
        assert_eq!(rig.server.option(id, "@agent-group"), None);
        run(&["save"]);
        let call = wait_for(PATIENCE, || {
            rig.calls()
                .into_iter()
                .find(|c| c["arguments"]["id"] == id.as_str())
        })
        .unwrap_or_else(|| panic!("no checkpoint call for {id}"));
        assert_eq!(call["arguments"]["session"], name.as_str(), "{id}");
    }

    let status = agent(&rig, &["status".as_ref(), "--json".as_ref()]);
    assert!(status.status.success(), "the daemon stopped answering");
    assert!(!canary(&rig).exists(), "a #() or $() from the corpus ran");
}

/// `watch --json` prints one JSON object per line whatever the names.
#[test]
fn watch_json_stays_one_object_per_line() {
    let rig = Rig::new("");
    let mut cmd = rig.server.agent();
    cmd.args(["watch", "--json"]);
    let mut watcher = crate::support::LineReader::spawn(cmd);
    let values = corpus_in(rig.server.home.path());
    // Watch follows changes once it has read the server the first time and
    // says so; its control client is listed earlier than that, and a
    // session made in between is in that first listing, with no event.
    assert!(
        watcher.wait_stderr("following", PATIENCE),
        "watch never started: {}",
        watcher.stderr()
    );
    for value in &values {
        let out = rig
            .server
            .command()
            .args(["new-session", "-d", "-s"])
            .arg(tmux_arg(value, true))
            .output()
            .unwrap();
        assert!(out.status.success() || !out.stderr.is_empty());
    }
    let created = rig.server.tmux(&["list-sessions", "-F", "#{session_name}"]);
    let expected = created
        .lines()
        .filter(|n| *n != "base" && *n != "tmux-agent")
        .count();
    let mut seen = 0;
    while seen < expected {
        let line = watcher
            .next_line(PATIENCE)
            .unwrap_or_else(|| panic!("watch went quiet after {seen} of {expected}"));
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        if event["event"] == "session-created" {
            seen += 1;
        }
    }
    assert!(!canary(&rig).exists());
}

/// Config files that are empty, not TOML, or wrong in one field at a time:
/// `config check` names the file and the key, and the daemon refuses to run
/// a config it could only half read.
#[test]
fn bad_config_files_are_named_key_by_key_and_stop_the_daemon() {
    let rig = Rig::new("");
    let file = rig.server.home.path().join("bad.toml");
    let check = |text: &[u8]| -> (Option<i32>, String) {
        std::fs::write(&file, text).unwrap();
        let out = rig
            .server
            .agent()
            .arg("--config")
            .arg(&file)
            .args(["config", "check"])
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("panicked"), "{all}");
        (out.status.code(), all)
    };

    // Empty is a valid, empty config.
    assert_eq!(check(b"").0, Some(0));
    // Not TOML at all.
    for text in [
        &b"this is not toml"[..],
        b"[[[",
        b"\xff\xfe\x00binary",
        b"[servers.a]\ncommand = \"x\"\n[servers.a]\ncommand = \"y\"\n",
        b"key = \"unterminated\n",
    ] {
        let (code, out) = check(text);
        assert_eq!(code, Some(1), "{text:?}: {out}");
        assert!(out.contains("bad.toml"), "{text:?}: {out}");
    }
    // Each field wrong on its own: the problem names its key.
    let fields: [(&str, &str, &str); 31] = [
        ("", "unknown_top = 1", "unknown_top"),
        ("[mcp]", "import_claude = \"yes\"", "mcp.import_claude"),
        ("[mcp]", "connect_timeout = \"soon\"", "mcp.connect_timeout"),
        ("[mcp]", "call_timeout = -1", "mcp.call_timeout"),
        ("[mcp]", "concurrency = \"two\"", "mcp.concurrency"),
        ("[mcp]", "nonsense = 1", "mcp.nonsense"),
        (
            "[mcp]",
            "trust_project_servers = \"yes\"",
            "mcp.trust_project_servers",
        ),
        ("[servers.s]", "command = 1", "servers.s.command"),
        (
            "[servers.s]",
            "command = \"x\"\nargs = \"not a list\"",
            "servers.s.args",
        ),
        ("[servers.s]", "command = \"x\"\nenv = [1]", "servers.s.env"),
        ("[servers.s]", "command = \"x\"\ncwd = 3", "servers.s.cwd"),
        ("[servers.s]", "url = 5", "servers.s.url"),
        (
            "[servers.s]",
            "url = \"http://x\"\nheaders = \"h\"",
            "servers.s.headers",
        ),
        ("[servers.s]", "socket = false", "servers.s.socket"),
        (
            "[servers.s]",
            "command = \"x\"\nenabled = \"no\"",
            "servers.s.enabled",
        ),
        (
            "[servers.s]",
            "command = \"x\"\nconnect = \"sometimes\"",
            "servers.s.connect",
        ),
        (
            "[servers.s]",
            "command = \"x\"\nconnect_timeout = \"1 fortnight\"",
            "servers.s.connect_timeout",
        ),
        (
            "[servers.s]",
            "command = \"x\"\ncall_timeout = true",
            "servers.s.call_timeout",
        ),
        (
            "[servers.s]",
            "command = \"x\"\nmax_call_time = []",
            "servers.s.max_call_time",
        ),
        (
            "[servers.s]",
            "command = \"x\"\nqueue = -5",
            "servers.s.queue",
        ),
        (
            "[servers.s]",
            "command = \"x\"\nidle_timeout = {}",
            "servers.s.idle_timeout",
        ),
        (
            "[servers.s]",
            "command = \"x\"\nping_interval = \"often\"",
            "servers.s.ping_interval",
        ),
        (
            "[servers.s]",
            "command = \"x\"\nprotocol = \"1999-01-01\"",
            "servers.s.protocol",
        ),
        (
            "[servers.s]",
            "command = \"x\"\nmax_message_bytes = \"big\"",
            "servers.s.max_message_bytes",
        ),
        (
            "[servers.s]",
            "command = \"x\"\ntool_timeouts = { t = \"never\" }",
            "servers.s.tool_timeouts",
        ),
        ("[reactor]", "preset = 7", "reactor.preset"),
        (
            "[reactor]",
            "checkpoint_interval = \"hourly\"",
            "reactor.checkpoint_interval",
        ),
        ("[reactor]", "max_pending = \"many\"", "reactor.max_pending"),
        ("[context]", "capture_lines = -1", "context.capture_lines"),
        ("[context]", "redact = \"secret\"", "context.redact"),
        ("", "[[on.session-created]]\nserver = 1\ntool = \"t\"", "on"),
    ];
    for (table, line, key) in fields {
        let (code, out) = check(format!("{table}\n{line}\n").as_bytes());
        assert_eq!(code, Some(1), "{table} {line}: {out}");
        assert!(
            out.contains(&format!("bad.toml: {key}")),
            "{table} {line}: the problem does not name `{key}`: {out}"
        );
    }
    // Semantic problems, past the types: an unknown preset, an unknown
    // event, a redaction pattern that is not a regex.
    for (text, key) in [
        ("[reactor]\npreset = \"nope\"\n", "reactor.preset"),
        (
            "[[on.session-exploded]]\nserver = \"builtin\"\ntool = \"t\"\n",
            "on.session-exploded",
        ),
        ("[context]\nredact = [\"(unclosed\"]\n", "context.redact"),
    ] {
        let (code, out) = check(text.as_bytes());
        assert_eq!(code, Some(1), "{text}: {out}");
        assert!(out.contains(key), "{text}: {out}");
    }

    // The daemon will not run a config with problems, and says why.
    std::fs::write(&file, "[servers.s]\ncommand = 1\n").unwrap();
    let out = rig
        .server
        .agent()
        .arg("--config")
        .arg(&file)
        .arg("daemon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("servers.s.command") && stderr.contains("config check"),
        "{stderr}"
    );
}
