//! The agent tools of `tmux-agent mcp serve` (whoami, set_goal,
//! complete_my_goal, and the group tools group_peers, group_share,
//! group_context) against a real tmux server on a private socket, with
//! the MCP server either given a pane's `$TMUX`/`$TMUX_PANE` or running
//! inside a real pane (over HTTP, since the pane's stdio is its terminal).
//! The group tools run beside a real `tmux-agent daemon`, and without one.

use std::path::Path;

use crate::support::serve::{connect, ok, serve_command, tool_error};
use crate::support::{PATIENCE, TmuxServer, eventually};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

/// The MCP server as an agent in `pane` of `tmux` would run it over stdio.
async fn serve_in_pane_env(
    tmux: &TmuxServer,
    pane: &str,
    db: &Path,
) -> crate::support::serve::Client {
    let mut cmd = serve_command(db, &[]);
    cmd.env("TMUX", tmux.tmux_env()).env("TMUX_PANE", pane);
    connect(cmd).await
}

#[tokio::test]
async fn whoami_reads_the_pane_sessions_agent_options() {
    let tmux = TmuxServer::start_with_session("work");
    let dir = tempfile::tempdir().unwrap();
    let session_id = tmux.display("work", "#{session_id}");
    let pane = tmux.display(&session_id, "#{pane_id}");
    let client = serve_in_pane_env(&tmux, &pane, &dir.path().join("b.db")).await;

    let me = ok(&client, "whoami", json!({})).await;
    assert_eq!(me["session_id"], session_id.as_str());
    assert_eq!(me["session_name"], "work");
    assert_eq!(me["pane"], pane.as_str());
    for field in [
        "goal",
        "type",
        "goal_id",
        "state",
        "group",
        "role",
        "goal_record",
    ] {
        assert_eq!(me[field], Value::Null, "{field} unset");
    }
    assert_eq!(me["peers"], json!([]));

    for (name, value) in [
        ("@agent-goal", "ship the #(parser) 'today'"),
        ("@agent-type", "claude"),
        ("@agent-state", "active"),
        ("@agent-group", "build"),
        ("@agent-role", "coordinator"),
        ("@agent-peers", "review,docs, tests"),
        ("@agent-goal-id", "77"),
    ] {
        tmux.tmux(&["set-option", "-t", &session_id, "--", name, value]);
    }
    let me = ok(&client, "whoami", json!({})).await;
    assert_eq!(me["goal"], "ship the #(parser) 'today'");
    assert_eq!(me["type"], "claude");
    assert_eq!(me["state"], "active");
    assert_eq!(me["group"], "build");
    assert_eq!(me["role"], "coordinator");
    assert_eq!(me["peers"], json!(["review", "docs", "tests"]));
    assert_eq!(me["goal_id"], "77");
    assert_eq!(
        me["goal_record"],
        Value::Null,
        "goal 77 is not in this database"
    );

    // An empty value is set-but-empty, not unset.
    tmux.tmux(&["set-option", "-t", &session_id, "--", "@agent-group", ""]);
    let me = ok(&client, "whoami", json!({})).await;
    assert_eq!(me["group"], "");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn whoami_by_explicit_session_name_or_id() {
    let tmux = TmuxServer::start_with_session("main");
    // A name with quotes, spaces, a semicolon and non-ASCII ('#' is doubled
    // because new-session -s expands formats).
    let odd = "it's \"odd\"; ##{not} ünï 会话";
    tmux.tmux(&["new-session", "-d", "-s", odd]);
    let odd_listed = "it's \"odd\"; #{not} ünï 会话";
    let odd_id = tmux
        .tmux(&["list-sessions", "-F", "#{session_id} #{session_name}"])
        .lines()
        .find_map(|line| line.strip_suffix(odd_listed))
        .map(|id| id.trim().to_owned())
        .expect("the odd session is listed");
    tmux.tmux(&["set-option", "-t", &odd_id, "--", "@agent-type", "reviewer"]);
    // Prefix matching must not pick "main" for "mai", nor "main" for "main2".
    tmux.tmux(&["new-session", "-d", "-s", "main2"]);

    let dir = tempfile::tempdir().unwrap();
    let mut cmd = serve_command(&dir.path().join("b.db"), &[]);
    cmd.args(["-L", &tmux.name]);
    let client = connect(cmd).await;

    let me = ok(&client, "whoami", json!({"session": odd_listed})).await;
    assert_eq!(me["session_id"], odd_id.as_str());
    assert_eq!(me["session_name"], odd_listed);
    assert_eq!(me["type"], "reviewer");
    assert_eq!(me["pane"], Value::Null);
    let by_id = ok(&client, "whoami", json!({"session": odd_id})).await;
    assert_eq!(by_id["session_name"], odd_listed);
    let main = ok(&client, "whoami", json!({"session": "main"})).await;
    assert_eq!(main["session_name"], "main");

    let message = tool_error(&client, "whoami", json!({"session": "mai"})).await;
    assert!(
        message.contains("no tmux session named \"mai\""),
        "{message}"
    );
    let message = tool_error(&client, "whoami", json!({"session": "$999"})).await;
    assert!(
        message.contains("no tmux session named \"$999\""),
        "{message}"
    );
    // Not in a pane and no session named: say what to do.
    let message = tool_error(&client, "whoami", json!({})).await;
    assert!(message.contains("$TMUX_PANE"), "{message}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn set_goal_stores_hostile_text_verbatim_and_refuses_line_breaks() {
    let tmux = TmuxServer::start_with_session("work");
    let session_id = tmux.display("work", "#{session_id}");
    let pane = tmux.display(&session_id, "#{pane_id}");
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let client = serve_in_pane_env(&tmux, &pane, &dir.path().join("b.db")).await;

    let hostile = format!(
        "x'; kill-server; '#(touch {}) #{{session_name}} \"q\" é",
        marker.display()
    );
    for goal in [
        hostile.as_str(),
        "-t $0 --starts-with-a-dash",
        "",
        "日本語 🚀",
    ] {
        let me = ok(&client, "set_goal", json!({"goal": goal})).await;
        assert_eq!(me["goal"].as_str(), Some(goal));
        assert_eq!(tmux.option(&session_id, "@agent-goal").unwrap(), goal);
    }
    // Shown through a status-line format, the value is still just text.
    tmux.tmux(&[
        "set-option",
        "-t",
        &session_id,
        "--",
        "@agent-goal",
        &hostile,
    ]);
    let shown = tmux.display(&session_id, "#{@agent-goal}");
    assert_eq!(shown, hostile);
    assert!(!marker.exists(), "#(...) in a goal must never run");

    let message = tool_error(&client, "set_goal", json!({"goal": "two\nlines"})).await;
    assert!(message.contains("single line"), "{message}");
    assert_eq!(
        tmux.option(&session_id, "@agent-goal").unwrap(),
        hostile,
        "unchanged"
    );
    // The server is still there.
    tmux.tmux(&["has-session", "-t", &session_id]);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn set_goal_keeps_a_trailing_semicolon_and_refuses_control_characters() {
    let tmux = TmuxServer::start_with_session("work");
    let session_id = tmux.display("work", "#{session_id}");
    let pane = tmux.display(&session_id, "#{pane_id}");
    let dir = tempfile::tempdir().unwrap();
    let client = serve_in_pane_env(&tmux, &pane, &dir.path().join("b.db")).await;

    // On a tmux command line an argument ending in `;` ends the command
    // and one ending in `\;` means `;`: passed raw, these came back as
    // `done`, `a;`, `x;` and nothing.
    for goal in ["done;", "a\\;", "x;;", ";", "tab\there;"] {
        let me = ok(&client, "set_goal", json!({"goal": goal})).await;
        assert_eq!(me["goal"].as_str(), Some(goal));
        assert_eq!(
            tmux.option(&session_id, "@agent-goal").unwrap(),
            goal,
            "{goal:?}"
        );
    }

    // What `tmux-agent new --goal` and `share` refuse, set_goal refuses too,
    // saying which character, and the goal stays as it was.
    for (goal, found) in [
        ("two\nlines", "a newline"),
        ("cr\r", "a carriage return"),
        ("bell\u{7}", "U+0007"),
        ("\u{1b}[31mred", "U+001B"),
        ("del\u{7f}", "U+007F"),
    ] {
        let message = tool_error(&client, "set_goal", json!({"goal": goal})).await;
        assert!(
            message.contains("@agent-goal") && message.contains(found),
            "{goal:?}: {message}"
        );
        assert_eq!(
            tmux.option(&session_id, "@agent-goal").unwrap(),
            "tab\there;"
        );
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn complete_my_goal_completes_the_goal_in_agent_goal_id() {
    let tmux = TmuxServer::start_with_session("work");
    let session_id = tmux.display("work", "#{session_id}");
    let pane = tmux.display(&session_id, "#{pane_id}");
    let dir = tempfile::tempdir().unwrap();
    let client = serve_in_pane_env(&tmux, &pane, &dir.path().join("b.db")).await;

    let message = tool_error(&client, "complete_my_goal", json!({})).await;
    assert!(message.contains("@agent-goal-id is not set"), "{message}");
    tmux.tmux(&[
        "set-option",
        "-t",
        &session_id,
        "--",
        "@agent-goal-id",
        "goal-abc",
    ]);
    let message = tool_error(&client, "complete_my_goal", json!({})).await;
    assert!(
        message.contains("not a goal id of this server"),
        "{message}"
    );

    // What the daemon does on session-created: register, keep the id.
    let goal = ok(
        &client,
        "register_goal",
        json!({"name": "work", "session": "h:$0:1"}),
    )
    .await;
    let id = goal["id"].as_i64().unwrap().to_string();
    tmux.tmux(&["set-option", "-t", &session_id, "--", "@agent-goal-id", &id]);
    let me = ok(&client, "whoami", json!({})).await;
    assert_eq!(me["goal_record"]["status"], "active");

    let done = ok(
        &client,
        "complete_my_goal",
        json!({"outcome": "all tests pass"}),
    )
    .await;
    assert_eq!(done["id"].as_i64().unwrap().to_string(), id);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["outcome"], "all tests pass");
    let me = ok(&client, "whoami", json!({})).await;
    assert_eq!(me["goal_record"], done);
    // The daemon's own complete_goal at close time is then harmless.
    let again = ok(
        &client,
        "complete_goal",
        json!({"id": id, "outcome": "closed"}),
    )
    .await;
    assert_eq!(again, done);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn server_running_inside_a_real_pane_knows_its_session() {
    let tmux = TmuxServer::start_with_session("agent-home");
    let session_id = tmux.display("agent-home", "#{session_id}");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    // The pane's shell is replaced by the server; tmux sets TMUX and
    // TMUX_PANE for it as for any program in a pane.
    let command = format!(
        "exec env -u TMUX_AGENT_DB TMUX_AGENT_LOG=warn '{}' mcp serve --db '{}' --http 127.0.0.1:0",
        crate::support::AGENT,
        db.display()
    );
    let pane = tmux
        .tmux(&[
            "new-window",
            "-P",
            "-F",
            "#{pane_id}",
            "-t",
            &session_id,
            &command,
        ])
        .trim_end()
        .to_owned();
    // Until the whole address is on screen: a capture can land while the
    // line is still being drawn (it read `http://` once under load).
    let url = eventually(
        PATIENCE,
        "the server's address (…/mcp) in the pane",
        || {
            let screen = tmux.tmux(&["capture-pane", "-p", "-J", "-t", &pane]);
            screen
                .lines()
                .find_map(|line| line.split("listening on ").nth(1))
                .map(|url| url.trim().to_owned())
                .filter(|url| url.ends_with("/mcp"))
        },
    );
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );

    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("pane-test", "0"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25);
    let client = tokio::time::timeout(
        PATIENCE,
        config.serve(StreamableHttpClientTransport::from_uri(url)),
    )
    .await
    .expect("HTTP handshake timed out")
    .expect("HTTP handshake failed");
    let me = ok(&client, "whoami", json!({})).await;
    assert_eq!(me["session_id"], session_id.as_str());
    assert_eq!(me["session_name"], "agent-home");
    assert_eq!(me["pane"], pane.as_str());
    let me = ok(&client, "set_goal", json!({"goal": "from inside"})).await;
    assert_eq!(me["goal"], "from inside");
    assert_eq!(
        tmux.option(&session_id, "@agent-goal").unwrap(),
        "from inside"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_stale_pane_or_a_dead_server_is_a_tool_error() {
    let tmux = TmuxServer::start_with_session("work");
    let dir = tempfile::tempdir().unwrap();
    let client = serve_in_pane_env(&tmux, "%999", &dir.path().join("b.db")).await;
    let message = tool_error(&client, "whoami", json!({})).await;
    assert!(
        message.contains("%999") && message.contains("not on the tmux server"),
        "{message}"
    );

    tmux.tmux(&["kill-server"]);
    for (tool, args) in [("whoami", json!({})), ("set_goal", json!({"goal": "x"}))] {
        let message = tool_error(&client, tool, args).await;
        assert!(
            message.contains("no tmux server is running for `tmux -S"),
            "{tool}: {message}"
        );
    }
    // Goal tools do not need tmux.
    ok(&client, "list_goals", json!({})).await;
    client.cancel().await.unwrap();
}

/// The MCP server as an agent in `pane` of the group tests' server would run
/// it over stdio: that pane's `$TMUX`/`$TMUX_PANE`, and the same HOME and
/// runtime directory as the daemon, so it finds the daemon's socket.
async fn serve_in_group_pane(server: &TmuxServer, pane: &str) -> crate::support::serve::Client {
    let tmux_env = server.tmux(&[
        "display-message",
        "-p",
        "-t",
        pane,
        "#{socket_path},#{pid},0",
    ]);
    let home = server.home.path();
    let mut cmd = serve_command(&home.join("builtin.db"), &[]);
    cmd.env("TMUX", tmux_env.trim_end())
        .env("TMUX_PANE", pane)
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_RUNTIME_DIR", home.join("run"));
    connect(cmd).await
}

/// Two sessions, `one` then `two`, in group `g` (set with plain tmux, as a
/// key binding would), and a third, `loner`, in no group. Returns their ids.
fn two_in_group_g(server: &TmuxServer) -> (String, String, String) {
    let one = crate::support::daemon::new_session(server, "one");
    let two = crate::support::daemon::new_session(server, "two");
    let loner = crate::support::daemon::new_session(server, "loner");
    for id in [&one, &two] {
        server.tmux(&["set-option", "-t", id, "@agent-group", "g"]);
    }
    (one, two, loner)
}

fn pane_of(server: &TmuxServer, session: &str) -> String {
    server
        .tmux(&["display-message", "-p", "-t", session, "#{pane_id}"])
        .trim_end()
        .to_owned()
}

#[tokio::test]
async fn group_tools_see_peers_and_share_through_the_daemon() {
    let server = TmuxServer::start();
    let (one, two, loner) = two_in_group_g(&server);
    let _daemon = crate::support::daemon::Daemon::start(&server);
    // The daemon derives roles and peers on its first pass.
    let derived = crate::support::wait_for(crate::support::PATIENCE, || {
        (server.option(&two, "@agent-role").as_deref() == Some("member")).then_some(())
    });
    assert!(derived.is_some(), "the daemon did not derive @agent-role");
    let client = serve_in_group_pane(&server, &pane_of(&server, &one)).await;

    let peers = ok(&client, "group_peers", json!({})).await;
    assert_eq!(peers["session_id"], one.as_str());
    assert_eq!(peers["session_name"], "one");
    assert_eq!(peers["group"], "g");
    assert_eq!(peers["role"], "coordinator");
    assert_eq!(
        peers["coordinator"],
        json!({"id": one, "name": "one", "role": "coordinator"})
    );
    assert_eq!(
        peers["peers"],
        json!([{"id": two, "name": "two", "role": "member"}])
    );
    assert_eq!(peers["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(peers["daemon"], true);
    assert_eq!(peers["notes"], json!([]));
    // The other member, named explicitly, sees the same group from its side.
    let theirs = ok(&client, "group_peers", json!({"session": "two"})).await;
    assert_eq!(theirs["role"], "member");
    assert_eq!(theirs["coordinator"]["name"], "one");
    assert_eq!(theirs["peers"][0]["id"], one.as_str());

    let shared = ok(
        &client,
        "group_share",
        json!({"key": "task", "value": "refactor"}),
    )
    .await;
    assert_eq!(shared["group"], "g");
    assert_eq!(shared["key"], "task");
    assert_eq!(shared["value"], "refactor");
    assert_eq!(shared["daemon"], true);
    assert_eq!(shared["context"]["task"], "refactor");
    for id in [&one, &two] {
        assert_eq!(
            server.option(id, "@agent-ctx-task").as_deref(),
            Some("refactor"),
            "{id}"
        );
    }
    assert_eq!(server.option(&loner, "@agent-ctx-task"), None);
    let context = ok(&client, "group_context", json!({})).await;
    assert_eq!(context["group"], "g");
    assert_eq!(context["context"], json!({"task": "refactor"}));
    assert_eq!(context["daemon"], true);

    // A hostile value is data all the way: stored, shown and returned as is.
    let canary = server.home.path().join("canary");
    let hostile = format!(
        "#(touch {}) #{{session_name}} 'single' \"double\" x;",
        canary.display()
    );
    ok(
        &client,
        "group_share",
        json!({"key": "note", "value": hostile}),
    )
    .await;
    assert_eq!(
        server.option(&two, "@agent-ctx-note").as_deref(),
        Some(hostile.as_str())
    );
    // As a status line would show it.
    let shown = server.tmux(&["display-message", "-p", "-t", &two, "#{@agent-ctx-note}"]);
    assert_eq!(shown.trim_end(), hostile);
    let context = ok(&client, "group_context", json!({"session": two})).await;
    assert_eq!(context["context"]["note"], hostile.as_str());
    assert_eq!(context["context"]["task"], "refactor");
    assert!(!canary.exists(), "#(...) in a shared value must never run");

    // Bad input: a tool error saying what is allowed, and nothing written.
    let before = crate::support::daemon::snapshot(&server);
    for (args, expect) in [
        (json!({"key": "a b", "value": "x"}), "A-Z a-z 0-9 _ . -"),
        (json!({"key": "a;b", "unset": true}), "invalid key"),
        (json!({"key": "", "value": "x"}), "invalid key"),
        (json!({"key": "k", "value": "line\nbreak"}), "a newline"),
        (json!({"key": "k", "value": "\u{1b}[31m"}), "U+001B"),
        (json!({"key": "k", "value": "x".repeat(4097)}), "4096 bytes"),
        (json!({"key": "k"}), "pass `value`"),
        (json!({"key": "k", "value": "x", "unset": true}), "not both"),
        (
            json!({"key": "k", "value": "x", "session": "nosuch"}),
            "no tmux session named",
        ),
    ] {
        let message = tool_error(&client, "group_share", args.clone()).await;
        assert!(message.contains(expect), "{args}: {message}");
    }
    assert_eq!(
        crate::support::daemon::snapshot(&server),
        before,
        "a refused share wrote"
    );

    // A session in no group.
    for tool in ["group_peers", "group_context"] {
        let message = tool_error(&client, tool, json!({"session": "loner"})).await;
        assert!(
            message.contains("loner (") && message.contains("is in no group"),
            "{tool}: {message}"
        );
    }
    let message = tool_error(
        &client,
        "group_share",
        json!({"key": "k", "value": "v", "session": loner}),
    )
    .await;
    assert!(
        message.contains("is in no group, so there is nobody to share with"),
        "{message}"
    );

    // Removing a key removes it from every member.
    let removed = ok(
        &client,
        "group_share",
        json!({"key": "task", "unset": true}),
    )
    .await;
    assert_eq!(removed["value"], Value::Null);
    assert_eq!(removed["context"].get("task"), None);
    for id in [&one, &two] {
        assert_eq!(server.option(id, "@agent-ctx-task"), None, "{id}");
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn group_tools_without_a_daemon_write_tmux_directly() {
    let server = TmuxServer::start();
    let (one, two, _loner) = two_in_group_g(&server);
    let client = serve_in_group_pane(&server, &pane_of(&server, &two)).await;

    let shared = ok(
        &client,
        "group_share",
        json!({"key": "task", "value": "offline"}),
    )
    .await;
    assert_eq!(shared["daemon"], false);
    let notes = shared["notes"].to_string();
    assert!(notes.contains("no daemon is running"), "{notes}");
    for id in [&one, &two] {
        assert_eq!(
            server.option(id, "@agent-ctx-task").as_deref(),
            Some("offline"),
            "{id}"
        );
    }
    // Roles as the daemon will set them; nothing derived is written.
    let peers = ok(&client, "group_peers", json!({})).await;
    assert_eq!(peers["daemon"], false);
    assert_eq!(peers["role"], "member");
    assert_eq!(peers["coordinator"]["name"], "one");
    assert_eq!(server.option(&two, "@agent-role"), None);
    let context = ok(&client, "group_context", json!({})).await;
    assert_eq!(context["context"], json!({"task": "offline"}));
    client.cancel().await.unwrap();
}
