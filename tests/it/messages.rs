//! Messages between agents (issue #13): fake agents in real tmux panes
//! (`tests/fixtures/agents/fake-coder.sh`, which reports its status with
//! `tmux-agent hook` and records each message it receives byte for byte),
//! a real daemon, the CLI. Typing, copy-mode and busy-gate details are the
//! pane module's tests.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::daemon::{agent, json};
use crate::support::{Daemon, PATIENCE, TmuxServer, eventually, text, write_config};

/// A fake agent: its session, pane and the directory it records into.
struct FakeAgent {
    session: String,
    pane: String,
    dir: PathBuf,
}

impl FakeAgent {
    /// Starts one and waits until the daemon has it idle at its prompt.
    fn start(server: &TmuxServer, session: &str, kind: &str) -> Self {
        let dir = server.path(&format!("agent-{session}"));
        let pane = server.fake_coder_session(session, kind, &dir);
        let agent = Self {
            session: session.to_owned(),
            pane,
            dir,
        };
        agent.wait_status(server, "idle");
        agent
    }

    fn wait_status(&self, server: &TmuxServer, status: &str) {
        eventually(
            PATIENCE,
            &format!("{} to be {status}", self.session),
            || (server.display(&self.pane, "#{@agent-status}") == status).then_some(()),
        );
    }

    /// Message `n` (from 1) as it arrived, once it has.
    fn received(&self, n: usize) -> String {
        let path = self.dir.join(format!("msg-{n}"));
        eventually(
            PATIENCE,
            &format!("message {n} at {}", self.session),
            || std::fs::read(&path).ok(),
        );
        String::from_utf8(std::fs::read(&path).unwrap()).expect("UTF-8 as sent")
    }

    fn via(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("msg-{n}.via"))).unwrap()
    }

    /// How many messages it has received.
    fn count(&self) -> usize {
        (1..)
            .take_while(|n| self.dir.join(format!("msg-{n}")).exists())
            .count()
    }

    fn set_busy(&self, seconds: f64) {
        std::fs::write(self.dir.join("busy"), seconds.to_string()).unwrap();
    }
}

/// `tmux-agent send ARGS` with `body` on stdin (`-`).
fn send_stdin(server: &TmuxServer, args: &[&str], body: &[u8]) -> Output {
    let mut cmd = server.agent();
    cmd.arg("send")
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run tmux-agent send");
    child.stdin.take().unwrap().write_all(body).unwrap();
    child.wait_with_output().unwrap()
}

/// The messages of a `send --json`.
fn sent(out: &Output) -> Vec<Value> {
    json(&text(&out.stdout))["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {out:?}"))
        .clone()
}

fn start_daemon(server: &TmuxServer, config: &str) -> Daemon {
    write_config(server.home.path(), config);
    Daemon::start(server)
}

/// What a message looks like when it arrives: the envelope line, then the
/// body.
fn check_arrived(arrived: &str, id: &str, body: &str) {
    let (header, rest) = arrived.split_once('\n').expect("an envelope line");
    assert!(
        header.starts_with(&format!("[tmux-agent message {id} from ")),
        "{header:?}"
    );
    assert_eq!(rest, body, "the body arrived changed");
}

#[test]
fn bodies_arrive_byte_exact_and_nothing_in_them_runs() {
    let server = TmuxServer::start();
    let _daemon = start_daemon(&server, "");
    let alice = FakeAgent::start(&server, "alice", "codex");
    let marker = server.path("ran");
    let tricky = format!(
        "quotes ' \" `; semicolon; #{{session_name}} #(touch {m}) $(touch {m}) `touch {m}` \
         \\ back\\slash; unicode ✓ é 日本語 🦀; ANSI \x1b[31mred\x1b[0m \x1b]0;title\x07 end\n\
         second line\twith tab",
        m = marker.display()
    );
    let thousand: String = (1..=1000)
        .map(|i| format!("line {i} of 1000 #{{pane_id}} ;"))
        .collect::<Vec<_>>()
        .join("\n");
    for (n, body) in [tricky, thousand].iter().enumerate() {
        let out = send_stdin(
            &server,
            &["-t", "alice", "--wait=60", "--json"],
            body.as_bytes(),
        );
        assert!(out.status.success(), "send: {out:?}");
        let messages = sent(&out);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0]["state"], "delivered", "{messages:?}");
        assert_eq!(messages[0]["via"], "pane");
        let id = messages[0]["id"].as_str().unwrap();
        check_arrived(&alice.received(n + 1), id, body);
        alice.wait_status(&server, "idle");
    }
    assert!(!marker.exists(), "something in a body ran");
    assert_eq!(alice.count(), 2, "a message arrived twice");
    // The inbox has both, delivered, not read.
    let inbox = json(&text(
        &agent(&server, &["inbox", "-t", "alice", "--json"]).stdout,
    ));
    let states: Vec<_> = inbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["delivered", "delivered"]);
    assert_eq!(
        server.option("=alice:", "@agent-unread").as_deref(),
        Some("2")
    );
    assert_eq!(
        server.global_option("@agent-messages").as_deref(),
        Some("2")
    );
}

#[test]
fn a_nul_byte_and_a_body_over_the_cap_are_refused_with_the_rule() {
    let server = TmuxServer::start();
    let _daemon = start_daemon(&server, "[messages]\nmax_body = 1000\n");
    let _alice = FakeAgent::start(&server, "alice", "codex");
    let out = send_stdin(&server, &["-t", "alice"], b"before\0after");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("refused by body") && err.contains("NUL"),
        "{err}"
    );
    let out = send_stdin(&server, &["-t", "alice", "--json"], &vec![b'x'; 1001]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let answer = json(&text(&out.stdout));
    assert_eq!(answer["refused"], "messages.max_body");
    assert!(answer["error"].as_str().unwrap().contains("max_body"));
    let out = send_stdin(&server, &["-t", "alice"], &[0xff, 0xfe]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not UTF-8"));
    // `--all` needs the config.
    let out = agent(&server, &["send", "--all", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("scope = \"all\""), "{out:?}");
    let inbox = json(&text(
        &agent(&server, &["inbox", "-t", "alice", "--json"]).stdout,
    ));
    assert_eq!(
        inbox["messages"].as_array().unwrap().len(),
        0,
        "nothing was queued"
    );
}

#[test]
fn without_a_daemon_send_says_so() {
    let server = TmuxServer::start();
    let out = agent(&server, &["send", "-t", "base", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("not running") && err.contains("tmux-agent ensure"),
        "{err}"
    );
}

#[test]
fn a_recipient_that_closes_fails_the_message_and_send_wait_exits_1() {
    let server = TmuxServer::start();
    let _daemon = start_daemon(&server, "");
    // A session with no agent: the message waits for one.
    server.tmux(&["new-session", "-d", "-s", "bob"]);
    let mut cmd = server.agent();
    cmd.args(["send", "-t", "bob", "--wait=60", "--json", "are you there?"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let waiting = cmd.spawn().unwrap();
    eventually(PATIENCE, "the message to be queued", || {
        let inbox = json(&text(
            &agent(&server, &["inbox", "-t", "bob", "--json"]).stdout,
        ));
        (inbox["messages"].as_array()?.len() == 1).then_some(())
    });
    server.tmux(&["kill-session", "-t", "=bob"]);
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let messages = sent(&out);
    assert_eq!(messages[0]["state"], "failed");
    assert_eq!(messages[0]["reason"], "recipient-gone");
}

#[test]
fn a_busy_claude_gets_its_message_from_the_stop_hook_and_nothing_is_typed() {
    let server = TmuxServer::start();
    let _daemon = start_daemon(&server, "");
    let claude = FakeAgent::start(&server, "claude", "claude");
    // The first message is typed (the agent is idle); its turn works 10 s,
    // long enough that the second is surely sent while it works (3 s was
    // not, on a loaded machine: the turn ended first, and the second was
    // rightly typed at the idle prompt).
    claude.set_busy(10.0);
    let out = agent(&server, &["send", "-t", "claude", "--wait=60", "first"]);
    assert!(out.status.success(), "{out:?}");
    claude.wait_status(&server, "working");
    let out = agent(
        &server,
        &["send", "-t", "claude", "--json", "second, for the hook"],
    );
    assert!(out.status.success(), "{out:?}");
    let id = sent(&out)[0]["id"].as_str().unwrap().to_owned();
    check_arrived(&claude.received(2), &id, "second, for the hook");
    assert_eq!(claude.via(1), "pane");
    assert_eq!(claude.via(2), "hook", "the second was typed");
    let screen = server.tmux(&["capture-pane", "-p", "-S", "-", "-t", &claude.pane]);
    assert!(
        !screen.contains(&id),
        "the hand-over was typed too: {screen}"
    );
    // Delivered once the agent is seen to take it: the fake's next Stop
    // says it continues because of a hook.
    eventually(PATIENCE, "the hand-over to be delivered", || {
        let looked = json(&text(
            &agent(&server, &["inbox", "-t", "claude", "--json"]).stdout,
        ));
        let second = &looked["messages"][1];
        ((second["state"].as_str(), second["via"].as_str()) == (Some("delivered"), Some("hook")))
            .then_some(())
    });
    claude.set_busy(0.05);
    claude.wait_status(&server, "idle");
    assert_eq!(claude.count(), 2);
}

/// `daemon` with the fault variable `env` set to hold a moment open.
fn daemon_with_fault(server: &TmuxServer, env: &str) -> Daemon {
    let mut cmd = server.agent();
    cmd.arg("daemon").env(env, "60000");
    let daemon = Daemon::spawn(server, cmd);
    eventually(PATIENCE, "the daemon to listen", || {
        agent(server, &["status"]).status.success().then_some(())
    });
    daemon
}

fn sigkill_at(env: &str) {
    let server = TmuxServer::start();
    write_config(server.home.path(), "");
    let mut daemon = daemon_with_fault(&server, env);
    let alice = FakeAgent::start(&server, "alice", "codex");
    let out = agent(
        &server,
        &["send", "-t", "alice", "--json", "exactly once, please"],
    );
    assert!(out.status.success(), "{out:?}");
    let id = sent(&out)[0]["id"].as_str().unwrap().to_owned();
    assert!(
        daemon.wait_stderr("a test holds this moment open", PATIENCE),
        "the fault was never reached: {}",
        daemon.stderr()
    );
    daemon.kill();
    let _daemon = Daemon::start(&server);
    check_arrived(&alice.received(1), &id, "exactly once, please");
    eventually(PATIENCE, "the message to be delivered", || {
        let inbox = json(&text(
            &agent(&server, &["inbox", "-t", "alice", "--json"]).stdout,
        ));
        (inbox["messages"][0]["state"] == "delivered").then_some(())
    });
    alice.wait_status(&server, "idle");
    // Give a second delivery every chance to happen: a later message
    // arrives after it would have.
    let out = agent(
        &server,
        &["send", "-t", "alice", "--wait=60", "the next one"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(alice.received(2).ends_with("\nthe next one"));
    assert_eq!(alice.count(), 2, "the first message arrived twice");
}

#[test]
fn sigkill_after_marking_typing_before_the_paste_delivers_once() {
    sigkill_at("TMUX_AGENT_FAULT_MESSAGE_BEFORE_PASTE_MS");
}

#[test]
fn sigkill_between_paste_and_verify_delivers_once() {
    sigkill_at("TMUX_AGENT_FAULT_MESSAGE_AFTER_PASTE_MS");
}

#[test]
fn sigkill_while_queued_for_a_busy_agent_delivers_once_after_restart() {
    let server = TmuxServer::start();
    let daemon = start_daemon(&server, "");
    let alice = FakeAgent::start(&server, "alice", "codex");
    alice.set_busy(2.0);
    assert!(
        agent(&server, &["send", "-t", "alice", "--wait=60", "one"])
            .status
            .success()
    );
    alice.wait_status(&server, "working");
    let out = agent(&server, &["send", "-t", "alice", "--json", "two"]);
    let id = sent(&out)[0]["id"].as_str().unwrap().to_owned();
    daemon.kill();
    alice.set_busy(0.05);
    let _daemon = Daemon::start(&server);
    check_arrived(&alice.received(2), &id, "two");
    alice.wait_status(&server, "idle");
    assert!(
        agent(&server, &["send", "-t", "alice", "--wait=60", "three"])
            .status
            .success()
    );
    assert!(alice.received(3).ends_with("\nthree"));
    assert_eq!(alice.count(), 3);
}

/// The built-in MCP server as the agent in `pane` runs it: `$TMUX` and
/// `$TMUX_PANE` of that pane, the test's HOME (so it finds the daemon).
async fn mcp_in_pane(server: &TmuxServer, pane: &str) -> crate::support::serve::Client {
    let home = server.home.path();
    let mut cmd = crate::support::serve::serve_command(&home.join("builtin-test.db"), &[]);
    cmd.env("TMUX", server.tmux_env())
        .env("TMUX_PANE", pane)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_RUNTIME_DIR", home.join("run"));
    crate::support::serve::connect(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_message_each_other_through_the_mcp_tools_as_their_own_pane() {
    use crate::support::serve::{ok, tool_error};
    use serde_json::json;
    let server = TmuxServer::start();
    let _daemon = start_daemon(&server, "");
    let alice = FakeAgent::start(&server, "alice", "codex");
    let bob = FakeAgent::start(&server, "bob", "codex");
    server.tmux(&["new-session", "-d", "-s", "outsider"]);
    for who in ["alice", "bob"] {
        let out = agent(&server, &["join", "team", "-t", who]);
        assert!(out.status.success(), "join: {out:?}");
    }
    let as_alice = std::sync::Arc::new(mcp_in_pane(&server, &alice.pane).await);
    let as_bob = mcp_in_pane(&server, &bob.pane).await;
    let body = "from MCP: 'quotes' \"double\" ; #{pane_id} #(date) $(date) ✓ \x1b[1mbold\x1b[0m";
    let sent = ok(
        &as_alice,
        "send_message",
        json!({"to": "bob", "text": body, "wait_secs": 20}),
    )
    .await;
    assert_eq!(sent["delivered"], true, "{sent}");
    let message = &sent["messages"][0];
    assert_eq!(message["state"], "delivered");
    assert_eq!(
        message["from"],
        format!("{}@{}", alice.pane, server.session_id("alice"))
    );
    let id = message["id"].as_str().unwrap().to_owned();
    check_arrived(&bob.received(1), &id, body);
    // Who sends is the pane, never an argument.
    let refused = tool_error(
        &as_alice,
        "send_message",
        json!({"to": "bob", "text": "x", "from": "user"}),
    )
    .await;
    assert!(refused.contains("from"), "{refused}");
    // Outside the group: refused by the scope rule.
    let refused = tool_error(
        &as_alice,
        "send_message",
        json!({"to": "outsider", "text": "x"}),
    )
    .await;
    assert!(refused.contains("messages.scope"), "{refused}");
    // Bob reads (nothing marked), acknowledges, and the sender sees `read`.
    let inbox = ok(&as_bob, "read_messages", json!({})).await;
    assert_eq!(inbox["messages"][0]["id"], id.as_str());
    assert_eq!(inbox["messages"][0]["text"], body);
    let again = ok(&as_bob, "read_messages", json!({})).await;
    assert_eq!(
        again["messages"].as_array().unwrap().len(),
        1,
        "reading marked it read"
    );
    let acked = ok(&as_bob, "ack_message", json!({"id": id})).await;
    assert_eq!(acked["state"], "read");
    let unread = ok(&as_bob, "read_messages", json!({})).await;
    assert_eq!(unread["messages"].as_array().unwrap().len(), 0);
    let not_theirs = tool_error(&as_alice, "ack_message", json!({"id": id})).await;
    assert!(not_theirs.contains("not for"), "{not_theirs}");
    // A reply joins the thread; a broadcast reaches the rest of the group.
    bob.wait_status(&server, "idle");
    let reply = ok(
        &as_bob,
        "send_message",
        json!({"to": "alice", "text": "got it", "reply_to": id, "wait_secs": 20}),
    )
    .await;
    assert_eq!(reply["messages"][0]["thread"], id.as_str());
    assert!(alice.received(1).ends_with("\ngot it"));
    bob.wait_status(&server, "idle");
    let cast = ok(&as_alice, "broadcast", json!({"text": "to the team"})).await;
    let to: Vec<_> = cast["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["to"].clone())
        .collect();
    assert_eq!(to, [json!(server.session_id("bob"))]);
    assert!(bob.received(2).ends_with("\nto the team"));
    // A recipient that closes: the result says so.
    let out = agent(&server, &["join", "team", "-t", "outsider"]);
    assert!(out.status.success());
    let waiting = {
        let as_alice = as_alice.clone();
        tokio::spawn(async move {
            crate::support::serve::call(
                &as_alice,
                "send_message",
                json!({"to": "outsider", "text": "hello?", "wait_secs": 20}),
            )
            .await
        })
    };
    let queued = crate::support::wait_for(PATIENCE, || {
        let inbox = json(&text(
            &agent(&server, &["inbox", "-t", "outsider", "--json"]).stdout,
        ));
        (inbox["messages"].as_array()?.len() == 1).then_some(())
    });
    assert!(queued.is_some(), "never queued");
    server.tmux(&["kill-session", "-t", "=outsider"]);
    let result = waiting.await.unwrap();
    let value = result.structured_content.clone().unwrap();
    assert_eq!(value["delivered"], false);
    assert_eq!(value["messages"][0]["state"], "failed");
    assert_eq!(value["messages"][0]["reason"], "recipient-gone");
}

/// The load the issue names: 10 agents, 100 messages each way in random
/// pairs, sent as fast as the CLI goes. Every message arrives once, and
/// each sender's messages to each recipient arrive in the order sent. Its
/// deadline is its own (minutes, not PATIENCE): a thousand agent turns on
/// a loaded 2-core machine; it asserts nothing about speed.
#[test]
fn ten_agents_a_thousand_messages_none_lost_none_twice_order_kept_per_pair() {
    const AGENTS: usize = 10;
    const MESSAGES: usize = 1000;
    let server = TmuxServer::start();
    let _daemon = start_daemon(&server, "[messages]\nscope = \"all\"\nrate = 0\n");
    let agents: Vec<FakeAgent> = (0..AGENTS)
        .map(|i| FakeAgent::start(&server, &format!("a{i}"), "codex"))
        .collect();
    // A fixed pseudo-random sequence of pairs (no self-sends), so a failure
    // can be run again as it was.
    let mut seed: u64 = 0x5eed;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % n
    };
    let mut expected = vec![Vec::new(); AGENTS];
    for k in 0..MESSAGES {
        let from = next(AGENTS);
        let to = (from + 1 + next(AGENTS - 1)) % AGENTS;
        let body = format!("load from a{from} number {k}");
        let out = agent(
            &server,
            &[
                "send",
                "-t",
                &format!("a{to}"),
                "--from",
                &format!("a{from}"),
                &body,
            ],
        );
        assert!(out.status.success(), "send {k}: {out:?}");
        expected[to].push(body);
    }
    let deadline = Duration::from_secs(600);
    for (i, agent) in agents.iter().enumerate() {
        eventually(
            deadline,
            &format!("a{i} to get its {} messages", expected[i].len()),
            || (agent.count() >= expected[i].len()).then_some(()),
        );
    }
    for (i, agent) in agents.iter().enumerate() {
        let arrived: Vec<String> = (1..=agent.count())
            .map(|n| agent.received(n).split_once('\n').unwrap().1.to_owned())
            .collect();
        // None twice, none lost.
        let mut sorted = arrived.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), arrived.len(), "a{i} got a message twice");
        let mut want = expected[i].clone();
        want.sort();
        assert_eq!(sorted, want, "a{i} did not get exactly its messages");
        // Per sender, in the order sent.
        for from in 0..AGENTS {
            let prefix = format!("load from a{from} number ");
            let got: Vec<&String> = arrived.iter().filter(|b| b.starts_with(&prefix)).collect();
            let sent: Vec<&String> = expected[i]
                .iter()
                .filter(|b| b.starts_with(&prefix))
                .collect();
            assert_eq!(got, sent, "a{from} → a{i}: out of order");
        }
    }
    // Settled: nothing queued, all delivered.
    for i in 0..AGENTS {
        let inbox = json(&text(
            &agent(
                &server,
                &["inbox", "-t", &format!("a{i}"), "-n", "1000", "--json"],
            )
            .stdout,
        ));
        for message in inbox["messages"].as_array().unwrap() {
            assert_eq!(message["state"], "delivered", "{message}");
        }
    }
}

#[test]
fn a_message_nobody_takes_expires_and_a_short_wait_exits_2() {
    let server = TmuxServer::start();
    let _daemon = start_daemon(&server, "[messages]\nexpiry = \"3s\"\n");
    // No agent in it: nothing takes the message.
    server.tmux(&["new-session", "-d", "-s", "nobody"]);
    let out = agent(
        &server,
        &["send", "-t", "nobody", "--wait=1", "--json", "hello?"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let answer = json(&text(&out.stdout));
    assert_eq!(answer["timed_out"], true);
    assert_eq!(answer["messages"][0]["state"], "queued");
    let out = agent(
        &server,
        &["send", "-t", "nobody", "--wait=60", "--json", "anyone?"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let messages = sent(&out);
    assert_eq!(messages[0]["state"], "expired");
    assert_eq!(server.option("=nobody:", "@agent-unread"), None);
    assert_eq!(
        server.global_option("@agent-messages").as_deref(),
        Some("0")
    );
}

#[test]
fn settled_messages_are_pruned_after_keep_and_queued_ones_never() {
    let server = TmuxServer::start();
    let _daemon = start_daemon(&server, "[messages]\nkeep = \"2s\"\n");
    // No agent in it: its message stays queued, older than any other.
    server.tmux(&["new-session", "-d", "-s", "nobody"]);
    let out = agent(&server, &["send", "-t", "nobody", "--json", "wait for me"]);
    assert!(out.status.success(), "{out:?}");
    let queued = sent(&out)[0]["id"].as_str().unwrap().to_owned();
    let alice = FakeAgent::start(&server, "alice", "codex");
    let out = agent(
        &server,
        &["send", "-t", "alice", "--wait=60", "--json", "hi"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sent(&out)[0]["state"], "delivered");
    alice.received(1);
    let inbox = |session: &str| {
        json(&text(
            &agent(&server, &["inbox", "-t", session, "--json"]).stdout,
        ))["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    eventually(PATIENCE, "the delivered message to be pruned", || {
        inbox("alice").is_empty().then_some(())
    });
    // The queued one was posted before the delivered one settled: as old,
    // and still there.
    let left = inbox("nobody");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (left[0]["id"].as_str(), left[0]["state"].as_str()),
        (Some(queued.as_str()), Some("queued"))
    );
}

#[test]
fn the_rate_limit_counts_what_a_daemon_took_before_its_restart() {
    let server = TmuxServer::start();
    let daemon = start_daemon(&server, "[messages]\nrate = 3\n");
    server.tmux(&["new-session", "-d", "-s", "nobody"]);
    for n in 0..3 {
        let out = agent(&server, &["send", "-t", "nobody", &format!("flood {n}")]);
        assert!(out.status.success(), "{out:?}");
    }
    daemon.kill();
    let _daemon = Daemon::start(&server);
    let out = agent(&server, &["send", "-t", "nobody", "--json", "one more"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let answer = json(&text(&out.stdout));
    assert_eq!(answer["refused"], "messages.rate", "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("sent 3 messages")),
        "{answer}"
    );
}

/// `tmux-agent hook claude` as Claude Code runs it in `pane`, with `json`
/// on stdin; its stdout.
fn claude_hook(server: &TmuxServer, pane: &str, json: &str) -> String {
    let mut cmd = server.agent();
    cmd.args(["hook", "claude"])
        .env("TMUX_PANE", pane)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run tmux-agent hook");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    text(&out.stdout)
}

/// The one message in `session`'s inbox.
fn only_message(server: &TmuxServer, session: &str) -> Value {
    let inbox = json(&text(
        &agent(server, &["inbox", "-t", session, "--json"]).stdout,
    ));
    let messages = inbox["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(messages.len(), 1, "{inbox}");
    messages[0].clone()
}

#[test]
fn a_stop_hook_killed_before_its_print_loses_nothing_and_delivers_once() {
    let server = TmuxServer::start();
    let _daemon = start_daemon(&server, "");
    // The test is the fake Claude: a pane, and the hooks Claude Code
    // would run in it, in its order. Its turn runs, so nothing is typed.
    let pane = server.new_session("claude", &[], "cat");
    let stop = r#"{"hook_event_name":"Stop","session_id":"c1","stop_hook_active":false}"#;
    let continued = r#"{"hook_event_name":"Stop","session_id":"c1","stop_hook_active":true}"#;
    let prompt = r#"{"hook_event_name":"UserPromptSubmit","session_id":"c1","prompt":"go"}"#;
    claude_hook(&server, &pane, prompt);
    eventually(PATIENCE, "the agent to be working", || {
        (server.display(&pane, "#{@agent-status}") == "working").then_some(())
    });
    let out = agent(
        &server,
        &["send", "-t", "claude", "--json", "do not lose me"],
    );
    assert!(out.status.success(), "{out:?}");
    let id = sent(&out)[0]["id"].as_str().unwrap().to_owned();

    // The turn ends; its Stop hook gets the message from the daemon and
    // is SIGKILLed before it prints it.
    stop_hook_killed_before_its_print(&server, &pane, stop);

    // Not delivered: the agent never got it. A new prompt (what a person
    // does at an agent that stopped) does not say it did.
    let message = only_message(&server, "claude");
    assert_eq!(message["state"], "queued", "{message}");
    assert!(message["handed_ms"].is_i64(), "{message}");
    claude_hook(&server, &pane, prompt);
    assert_eq!(only_message(&server, "claude")["state"], "queued");

    // That turn's Stop is offered it again, whole.
    let again: Value = serde_json::from_str(&claude_hook(&server, &pane, stop))
        .expect("the Stop hook hands the message over again");
    assert_eq!(again["decision"], "block");
    check_arrived(again["reason"].as_str().unwrap(), &id, "do not lose me");
    assert_eq!(only_message(&server, "claude")["state"], "queued");
    // The agent works on it (a tool call): delivered, by the hook.
    claude_hook(
        &server,
        &pane,
        r#"{"hook_event_name":"PreToolUse","session_id":"c1","tool_name":"Bash"}"#,
    );
    let message = only_message(&server, "claude");
    assert_eq!(
        (message["state"].as_str(), message["via"].as_str()),
        (Some("delivered"), Some("hook")),
        "{message}"
    );
    assert!(message.get("handed_ms").is_none(), "{message}");
    // The continued turn ends, and later a plain one: nothing more.
    assert_eq!(claude_hook(&server, &pane, continued), "");
    claude_hook(&server, &pane, prompt);
    assert_eq!(claude_hook(&server, &pane, stop), "", "handed over twice");
    assert_eq!(only_message(&server, "claude")["state"], "delivered");
}

/// Runs `stop` through a Claude `Stop` hook in `pane` that is SIGKILLed
/// after the daemon's answer and before its print (the fault variable
/// holds that moment open).
fn stop_hook_killed_before_its_print(server: &TmuxServer, pane: &str, stop: &str) {
    let mut cmd = server.agent();
    cmd.args(["hook", "claude"])
        .env("TMUX_PANE", pane)
        .env("TMUX_AGENT_FAULT_HOOK_BEFORE_PRINT_MS", "60000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut hook = cmd.spawn().unwrap();
    hook.stdin
        .take()
        .unwrap()
        .write_all(stop.as_bytes())
        .unwrap();
    let mut stderr = std::io::BufReader::new(hook.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.contains("holds this moment open"), "{line:?}");
    hook.kill().unwrap();
    let out = hook.wait_with_output().unwrap();
    assert!(out.stdout.is_empty(), "the killed hook printed {out:?}");
}

#[test]
fn a_lost_hand_over_is_typed_once_the_agent_shows_up_at_its_prompt() {
    let server = TmuxServer::start();
    let _daemon = start_daemon(&server, "");
    // The terminal echoes what is typed, which verifies the typing; `cat`
    // keeps what reached the program.
    let typed = server.path("typed");
    let command = format!("cat >{}", typed.display());
    let pane = server.new_session("claude", &[], &command);
    claude_hook(
        &server,
        &pane,
        r#"{"hook_event_name":"UserPromptSubmit","session_id":"c1","prompt":"go"}"#,
    );
    eventually(PATIENCE, "the agent to be working", || {
        (server.display(&pane, "#{@agent-status}") == "working").then_some(())
    });
    let out = agent(&server, &["send", "-t", "claude", "--json", "type me then"]);
    let id = sent(&out)[0]["id"].as_str().unwrap().to_owned();
    stop_hook_killed_before_its_print(
        &server,
        &pane,
        r#"{"hook_event_name":"Stop","session_id":"c1","stop_hook_active":false}"#,
    );
    assert_eq!(only_message(&server, "claude")["state"], "queued");
    // No Stop comes to offer it again; Claude's idle notification says it
    // sits at its prompt.
    claude_hook(
        &server,
        &pane,
        r#"{"hook_event_name":"Notification","session_id":"c1","notification_type":"idle_prompt"}"#,
    );
    eventually(PATIENCE, "the message to be typed", || {
        let message = only_message(&server, "claude");
        (message["state"] == "delivered").then_some(message)
    });
    let message = only_message(&server, "claude");
    assert_eq!(message["via"], "pane", "{message}");
    let needle = format!("message {id}");
    let typed = eventually(PATIENCE, "cat to have the message", || {
        std::fs::read_to_string(&typed)
            .ok()
            .filter(|t| t.contains(&needle))
    });
    assert_eq!(
        typed.matches(&needle).count(),
        1,
        "typed other than once: {typed:?}"
    );
}
