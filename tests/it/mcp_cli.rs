//! `tmux-agent mcp ...` as a user runs it: the built binary, a temporary
//! HOME with a config.toml naming the test server.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::mcp::*;
use serde_json::{Value, json};

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// A HOME whose config.toml has the test server as `t` (recording to
    /// `rec.jsonl`) plus `extra` TOML.
    fn new(extra: &str) -> Home {
        let dir = tempdir();
        let record = dir.path().join("rec.jsonl");
        crate::support::write_config(
            dir.path(),
            &format!(
                "[servers.t]\ncommand = {:?}\nargs = [\"--record\", {:?}]\n{extra}",
                TEST_SERVER,
                record.display().to_string()
            ),
        );
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn record(&self) -> PathBuf {
        self.path().join("rec.jsonl")
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        run_in(self.path(), args, stdin)
    }
}

/// Runs `tmux-agent ARGS` with `home` as HOME and working directory:
/// exit code, stdout, stderr.
fn run_in(home: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(TMUX_AGENT)
        .args(args)
        .env("HOME", home)
        .env_remove("TMUX_AGENT_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CLAUDE_CONFIG_DIR")
        .current_dir(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mcp_call_prints_the_result_and_reads_arguments_from_stdin() {
    let home = Home::new("");
    let (code, stdout, stderr) = home.run(
        &["mcp", "call", "t", "echo", r#"{"q": "ünï \"x\"; #(y)"}"#],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({"q": "ünï \"x\"; #(y)"})
    );

    let (code, stdout, stderr) = home.run(
        &["mcp", "call", "t", "echo", "-"],
        Some("{\"from\": \"stdin\"}\n"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({"from": "stdin"})
    );

    // No arguments: an empty object.
    let (code, stdout, _) = home.run(&["mcp", "call", "t", "echo"], None);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), json!({}));

    // Plain text results print as text.
    let (code, stdout, _) = home.run(&["mcp", "call", "t", "big", r#"{"bytes": 3}"#], None);
    assert_eq!(code, 0);
    assert_eq!(stdout, "xxx\n");

    let (code, stdout, _) = home.run(&["mcp", "call", "t", "echo", r#"{"a":1}"#, "--json"], None);
    assert_eq!(code, 0);
    let full: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(full["value"], json!({"a": 1}));
    assert_eq!(full["source"], "structured");
    assert_eq!(full["result"]["structuredContent"], json!({"a": 1}));
    assert!(full["latency"].as_f64().unwrap() > 0.0);
}

#[test]
fn mcp_call_failures_exit_1_with_the_error_on_stderr() {
    let home = Home::new("");
    let (code, stdout, stderr) = home.run(
        &["mcp", "call", "t", "fail", r#"{"message":"no disk"}"#],
        None,
    );
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert_eq!(
        stderr.trim_end(),
        "tmux-agent: t/fail returned an error: no disk"
    );

    let (code, stdout, _) = home.run(
        &[
            "mcp",
            "call",
            "t",
            "fail",
            r#"{"message":"no disk"}"#,
            "--json",
        ],
        None,
    );
    assert_eq!(code, 1);
    let error: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(error["error"]["kind"], "tool-error");

    let (code, _, stderr) = home.run(
        &[
            "mcp",
            "call",
            "t",
            "sleep",
            r#"{"ms": 30000}"#,
            "--timeout",
            "300ms",
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("t/sleep gave no answer within")
            && stderr.contains("the request was cancelled"),
        "{stderr}"
    );
    let cancelled = eventually(PATIENCE, "cancel recorded", || {
        events(
            &home.record(),
            "notification",
            Some("notifications/cancelled"),
        )
        .into_iter()
        .next()
    });
    assert_eq!(cancelled["params"]["reason"], "request timeout");

    let (code, _, stderr) = home.run(&["mcp", "call", "t", "echo", "{not json"], None);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("the arguments are not valid JSON"),
        "{stderr}"
    );

    let (code, _, stderr) = home.run(&["mcp", "call", "nope", "echo"], None);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        "tmux-agent: no MCP server named `nope`; configured: builtin, t"
    );

    let (code, _, stderr) = home.run(&["mcp", "call", "t", "echo", "--timeout", "soon"], None);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--timeout: `soon` is not a duration"),
        "{stderr}"
    );
}

#[test]
fn mcp_servers_and_tools_list_what_is_configured() {
    let home = Home::new(
        "[servers.broken]\ncommand = \"/nonexistent/server\"\n[servers.web]\ntype = \"sse\"\nurl = \"https://x/sse\"\n",
    );
    let (code, stdout, stderr) = home.run(&["mcp", "servers", "--json"], None);
    assert_eq!(code, 0, "the list was made: {stdout}{stderr}");
    let servers: Value = serde_json::from_str(&stdout).unwrap();
    let by_name = |name: &str| {
        servers
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("t")["state"], "ready");
    assert_eq!(by_name("t")["transport"], "stdio");
    assert_eq!(by_name("broken")["state"], "backoff");
    assert!(
        by_name("broken")["detail"]
            .as_str()
            .unwrap()
            .contains("could not start")
    );
    assert_eq!(by_name("web")["state"], "skipped");
    // An sse entry in our own file is a problem, reported on stderr too.
    assert!(stderr.contains("servers.web.type"), "{stderr}");

    let (code, stdout, _) = home.run(&["mcp", "servers", "--offline"], None);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("NAME"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("t ") && l.contains("idle")),
        "{stdout}"
    );

    let (code, stdout, _) = home.run(&["mcp", "tools", "t"], None);
    assert_eq!(code, 0);
    assert!(stdout.lines().any(|l| l.starts_with("echo")), "{stdout}");
    let (code, stdout, _) = home.run(&["mcp", "tools", "t", "--json"], None);
    assert_eq!(code, 0);
    let tools: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(tools.as_array().unwrap().len(), 6);

    let (code, stdout, _) = home.run(&["mcp", "stats", "t", "--json"], None);
    assert_eq!(code, 0);
    let stats: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stats[0]["server"], "t");
    assert_eq!(stats[0]["calls"], 0);
}

#[test]
fn help_teaches_with_examples() {
    let home = Home::new("");
    let (code, stdout, _) = home.run(&["mcp", "call", "--help"], None);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("tmux-agent mcp call memory search_nodes"),
        "{stdout}"
    );
    assert!(stdout.contains("~/.claude.json"), "{stdout}");
}

#[test]
fn mcp_servers_probes_all_at_once_within_the_probe_timeout() {
    // One server that reads `initialize` and never answers, three that do.
    let records = tempdir();
    let hang_record = records.path().join("hang.jsonl");
    let mut extra = String::new();
    for name in ["hang", "u", "v"] {
        let (record, hang) = if name == "hang" {
            (hang_record.clone(), ", \"--hang-initialize\"")
        } else {
            (records.path().join(format!("{name}.jsonl")), "")
        };
        extra.push_str(&format!(
            "[servers.{name}]\ncommand = {TEST_SERVER:?}\nargs = [\"--record\", {:?}{hang}]\n",
            record.display().to_string()
        ));
    }
    let home = Home::new(&extra);
    let probe = std::time::Duration::from_secs(2);
    let started = std::time::Instant::now();
    let (code, stdout, stderr) =
        home.run(&["mcp", "servers", "--json", "--probe-timeout", "2s"], None);
    let took = started.elapsed();
    assert_eq!(code, 0, "listing worked, so exit 0: {stdout}{stderr}");
    // Loose on purpose: the old way waited 30 s (connect_timeout) on the
    // hung server; all that matters is that it is the probe timeout now.
    assert!(
        took < probe + std::time::Duration::from_secs(12),
        "took {took:?} with a {probe:?} probe timeout"
    );
    let servers: Value = serde_json::from_str(&stdout).unwrap();
    let state = |name: &str| -> Value {
        servers
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {servers}"))
            .clone()
    };
    for good in ["t", "u", "v"] {
        assert_eq!(state(good)["state"], "ready", "{servers}");
    }
    let hang = state("hang");
    assert_ne!(hang["state"], "ready", "{servers}");
    assert!(
        hang["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "the hung server says why: {hang}"
    );
    // The hung server really was asked (and did not just fail to start).
    assert_eq!(
        events(&hang_record, "request", Some("initialize")).len(),
        1,
        "{:?}",
        recording(&hang_record)
    );

    let (code, _, _) = home.run(
        &["mcp", "servers", "--probe-timeout", "2s", "--check"],
        None,
    );
    assert_eq!(code, 1, "--check makes a server that is down an exit code");
    let (code, stdout, stderr) = home.run(&["mcp", "servers", "--offline", "--check"], None);
    assert_eq!(
        code, 2,
        "--offline and --check contradict: {stdout}{stderr}"
    );
}

#[test]
fn mcp_tools_and_call_reach_an_ad_hoc_stdio_server() {
    // No configured server at all: the command line names it.
    let home = Home { dir: tempdir() };
    // A path with a space and a quote, to show the line is split as a
    // shell would split it (and not at every space).
    let record = home.path().join("ad hoc 'rec'.jsonl");
    let line = format!(
        "{} --record {}",
        shlex::try_quote(TEST_SERVER).unwrap(),
        shlex::try_quote(&record.display().to_string()).unwrap()
    );
    let (code, stdout, stderr) = home.run(&["mcp", "tools", "--stdio", &line], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("echo")), "{stdout}");
    let (code, stdout, stderr) = home.run(
        &[
            "mcp",
            "call",
            "--stdio",
            &line,
            "echo",
            r#"{"a": "; $(x) #{y}"}"#,
        ],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({"a": "; $(x) #{y}"})
    );
    let calls = events(&record, "request", Some("tools/call"));
    assert_eq!(calls.len(), 1, "{:?}", recording(&record));
    assert_eq!(calls[0]["arguments"], json!({"a": "; $(x) #{y}"}));

    // A line a shell could not split is refused before anything runs.
    let (code, _, stderr) = home.run(&["mcp", "tools", "--stdio", "'unclosed"], None);
    assert_eq!(code, 1);
    assert!(stderr.contains("unbalanced quotes"), "{stderr}");
    let (code, _, stderr) = home.run(&["mcp", "tools", "t", "--stdio", &line], None);
    assert_eq!(code, 2, "a server name and --stdio together: {stderr}");
}

#[tokio::test]
async fn mcp_tools_and_call_reach_an_ad_hoc_http_server() {
    let dir = tempdir();
    let mut server = crate::serve_http::start_http(&dir.path().join("b.db")).await;
    let url = server.url.clone();
    let home = Home { dir: tempdir() };
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let url = url.clone();
        let home_path = home.path().to_owned();
        move || run_in(&home_path, &["mcp", "tools", "--url", &url], None)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("register_goal")),
        "{stdout}"
    );
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let home_path = home.path().to_owned();
        move || {
            run_in(
                &home_path,
                &[
                    "mcp",
                    "call",
                    "--url",
                    &url,
                    "register_goal",
                    r#"{"name": "ad hoc \"goal\"; $(x)"}"#,
                    "--json",
                ],
                None,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        holds_string(&result["value"], "ad hoc \"goal\"; $(x)"),
        "the goal came back with its name as given: {result}"
    );
    server.child.kill().await.unwrap();
}

/// Whether `value` has `wanted` as a string somewhere inside.
fn holds_string(value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(s) => s == wanted,
        Value::Array(items) => items.iter().any(|v| holds_string(v, wanted)),
        Value::Object(map) => map.values().any(|v| holds_string(v, wanted)),
        _ => false,
    }
}

#[test]
fn config_check_compares_actions_with_the_tools_they_call() {
    // The recording test server as `t`, one that never answers, and the
    // built-in server (always there): each kind of misfit once, on top of
    // the builtin preset, whose own actions fit.
    let home = Home::new(&format!(
        r#"[servers.hang]
command = {TEST_SERVER:?}
args = ["--hang-initialize"]

[reactor]
preset = "builtin"

[[on.session-created]]
server = "builtin"
tool = "register_goal"
args = {{ description = "{{goal}}" }}

[[on.session-detached]]
server = "builtin"
tool = "set_goal"
args = {{ goal = "{{context}}" }}

[[on.session-attached]]
server = "t"
tool = "no_such_tool"

[[on.session-closed]]
server = "t"
tool = "echo"
args = {{ text = "closed: {{context}}" }}

[[on.session-closed]]
server = "hang"
tool = "anything"
"#
    ));
    let (code, stdout, stderr) = home.run(&["config", "check", "--probe-timeout", "2s"], None);
    assert_eq!(code, 0, "misfits are warnings by default: {stdout}{stderr}");
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has("register_goal requires \"name\""), "{stdout}");
    assert!(
        has("server \"t\" has no tool \"no_such_tool\" (it has: big, crash, echo"),
        "{stdout}"
    );
    assert!(
        has("args.goal is {context}, an object, but set_goal takes a string"),
        "{stdout}"
    );
    assert!(has("not checked against hang.anything"), "{stdout}");
    assert_eq!(
        lines.len(),
        4,
        "the preset's actions and the echo one fit: {stdout}"
    );
    assert!(stdout.contains("config OK"), "{stdout}");

    let (code, stdout, _) = home.run(
        &["config", "check", "--probe-timeout", "2s", "--strict"],
        None,
    );
    assert_eq!(code, 1, "--strict makes them problems: {stdout}");
    assert!(
        !stdout.contains("warning:") && !stdout.contains("config OK"),
        "{stdout}"
    );

    let (code, stdout, _) = home.run(&["config", "check", "--offline"], None);
    assert_eq!(code, 0);
    assert!(
        !stdout.contains("no_such_tool"),
        "--offline asks no server: {stdout}"
    );
}

#[test]
fn the_daemon_warns_at_start_of_an_action_that_does_not_fit_its_tool() {
    use crate::support::daemon::Daemon;
    use crate::support::tmux::TmuxServer;
    let server = TmuxServer::start();
    crate::support::write_config(
        server.home.path(),
        "[[on.session-detached]]\nserver = \"builtin\"\ntool = \"set_goal\"\nargs = { goal = \"{context}\" }\n",
    );
    let mut daemon = Daemon::attach(&server);
    assert!(
        daemon.wait_stderr(
            "this action will fail at its server",
            crate::support::PATIENCE
        ),
        "{}",
        daemon.stderr()
    );
    let log = daemon.stderr();
    assert!(log.contains("on.session-detached[2]"), "{log}");
    assert!(log.contains("set_goal takes a string"), "{log}");
}
