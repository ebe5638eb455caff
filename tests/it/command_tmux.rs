//! Proves `control::command` against a real tmux (3.3a on this machine): the
//! lines the builders produce are accepted, quoted arguments arrive
//! byte-exact, and `#(...)`/`#{...}` in user strings are never expanded.
//!
//! Each test runs its own server ([`TmuxServer`]: a private socket, `-f
//! /dev/null`, a UTF-8 locale), killed when the test ends, even on panic.
//! Commands go in the three ways tmux parses them: a control-mode client
//! (`tmux -C`, decoded with `ControlCodec`), `source-file` (the same parser,
//! fed from a file), and the argv of a one-shot `tmux` process run by
//! `control::oneshot` (parsed by `cmd_parse_from_arguments`, where a
//! trailing `;` ends a command).

use std::{
    io::{Read, Write},
    path::Path,
    process::{Child, ChildStdin, Output, Stdio},
    sync::mpsc,
    thread,
    time::Instant,
};

use bytes::BytesMut;
use tmux_agent::control::{
    ControlEvent, Notification, Reply, SessionId,
    codec::ControlCodec,
    command::{Command, SessionTarget, SubscriptionScope, escape_format},
    oneshot::{OneShot, OneShotError},
    server::ServerSocket,
};
use tokio_util::codec::Decoder;

use crate::support::{PATIENCE, TmuxServer, eventually};

/// `source-file` of the given command lines: tmux's own parser, as a
/// control client's lines go through it, fed from a file.
fn source(server: &TmuxServer, lines: &[&Command]) -> Output {
    let mut text = String::new();
    for line in lines {
        text.push_str(line.as_str());
        text.push('\n');
    }
    let path = server.path("commands.conf");
    std::fs::write(&path, text).expect("write commands file");
    server.try_tmux(&["source-file", path.to_str().expect("utf-8 path")])
}

/// The id of session `name`, typed.
fn session_id(server: &TmuxServer, name: &str) -> SessionId {
    server.session_id(name).parse().expect("a session id")
}

/// The library's one-shot runner aimed at this server.
fn oneshot(server: &TmuxServer) -> OneShot {
    OneShot::new(ServerSocket::Name(server.name.clone()))
}

/// A value as `show-options -v` prints it, newline included.
fn shown(server: &TmuxServer, session: Option<SessionId>, name: &str) -> Vec<u8> {
    let out = match session {
        Some(id) => server.try_tmux(&["show-options", "-v", "-t", &id.to_string(), name]),
        None => server.try_tmux(&["show-options", "-gv", name]),
    };
    assert!(out.status.success(), "show {name}: {out:?}");
    out.stdout
}

/// Runs a future to completion: the one-shot runner is async, these tests
/// are not.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// A `tmux -C` client whose output is decoded by `ControlCodec` on a thread.
struct ControlClient {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Result<ControlEvent, String>>,
}

impl ControlClient {
    fn attach(server: &TmuxServer, session: &str) -> ControlClient {
        let mut child = server
            .command()
            .args(["-C", "attach-session", "-t", session])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tmux -C");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::channel();
        thread::spawn(move || {
            let mut codec = ControlCodec::new();
            let mut buf = BytesMut::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = match stdout.read(&mut chunk) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    let decoded = if n == 0 {
                        codec.decode_eof(&mut buf)
                    } else {
                        codec.decode(&mut buf)
                    };
                    match decoded {
                        Ok(Some(event)) => {
                            if tx.send(Ok(event)).is_err() {
                                return;
                            }
                        }
                        Ok(None) if n == 0 => return,
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    }
                }
            }
        });
        let client = ControlClient {
            child,
            stdin,
            events,
        };
        // tmux 3.3a may run commands written before the attach completes.
        client.wait_for(|event| {
            matches!(
                event,
                ControlEvent::Notification(Notification::SessionChanged { .. })
            )
        });
        client
    }

    fn next_event(&self, deadline: Instant) -> ControlEvent {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(Ok(event)) => event,
            Ok(Err(e)) => panic!("control stream failed: {e}"),
            Err(e) => panic!("no control-mode event in time: {e}"),
        }
    }

    fn wait_for(&self, mut wanted: impl FnMut(&ControlEvent) -> bool) -> ControlEvent {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let event = self.next_event(deadline);
            if wanted(&event) {
                return event;
            }
        }
    }

    /// Sends one command and returns its reply (the next flags = 1 block).
    fn command(&mut self, command: &Command) -> Reply {
        writeln!(self.stdin, "{command}").expect("write command");
        self.stdin.flush().expect("flush");
        match self.wait_for(|e| matches!(e, ControlEvent::Reply(r) if r.guard.is_ours())) {
            ControlEvent::Reply(reply) => reply,
            _ => unreachable!(),
        }
    }

    /// Sends a command that must succeed and returns its output.
    fn ok(&mut self, command: &Command) -> String {
        let reply = self.command(command);
        assert!(reply.success, "{command} failed: {}", reply.text());
        reply.text()
    }
}

impl Drop for ControlClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Option values that would break or exploit a naively built command line.
fn nasty_values(pwned: &Path) -> Vec<String> {
    let pwned = pwned.display();
    let controls: String = (1u8..0x20).chain([0x7f]).map(char::from).collect();
    vec![
        format!("a b'c\"d;e#{{x}}#(touch {pwned})"),
        format!("#(touch {pwned})"),
        "$HOME".into(),
        "${HOME}".into(),
        "~".into(),
        "~root".into(),
        "~/x".into(),
        "\\".into(),
        "\\\\".into(),
        "\\n\\012\\e".into(),
        "{".into(),
        "}".into(),
        "{ display -p x }".into(),
        "\n".into(),
        "line1\nline2\n".into(),
        "\r".into(),
        "a\rb".into(),
        "\t".into(),
        "\x1b[31mred\x1b[0m".into(),
        controls,
        "café ☃ 🎉 ÿ".into(),
        "\u{85}\u{9b}\u{a0}\u{feff}".into(),
        "x".repeat(1000),
        "'\"'\"".repeat(300),
        "%end 1 2 1".into(),
        "%if #{true}".into(),
        "# comment".into(),
        "a;b ; c".into(),
        "FOO=bar".into(),
        "-g".into(),
        "--".into(),
        "".into(),
        " ".into(),
        " leading and trailing ".into(),
        "'".into(),
        "\"".into(),
        "$".into(),
        "$3".into(),
        "%3".into(),
        // A trailing `;` ends a command in argv unless written `\;`.
        "done;".into(),
        "a\\;".into(),
        "x;;".into(),
        ";".into(),
        ";;".into(),
        "\\".into(),
        "a;b;".into(),
        // These need double quotes (a `'` or a control character), where `~`
        // right after the quote, `$` and `\\` are still special.
        "~'s".into(),
        "$HOME's\n".into(),
        "\\'\\n\\012\t".into(),
        "~\n~".into(),
    ]
}

#[test]
fn set_option_values_arrive_byte_exact_through_source_file() {
    let server = TmuxServer::start();
    let session = session_id(&server, "base");
    let pwned = server.path("pwned");
    let values = nasty_values(&pwned);

    let commands: Vec<Command> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            if i % 2 == 0 {
                Command::set_option(session, &format!("@v{i}"), value)
            } else {
                Command::set_global_option(&format!("@v{i}"), value)
            }
            .expect("buildable")
        })
        .collect();
    for command in &commands {
        let line = command.as_str();
        assert!(!line.is_empty() && !line.contains(['\n', '\r']), "{line:?}");
    }
    let out = source(&server, &commands.iter().collect::<Vec<_>>());
    assert!(out.status.success(), "source-file failed: {out:?}");

    for (i, value) in values.iter().enumerate() {
        let name = format!("@v{i}");
        let out = if i % 2 == 0 {
            server.try_tmux(&["show-options", "-v", "-t", &session.to_string(), &name])
        } else {
            server.try_tmux(&["show-options", "-gv", &name])
        };
        assert!(out.status.success(), "show {name}: {out:?}");
        let mut expected = value.clone().into_bytes();
        expected.push(b'\n');
        assert_eq!(
            out.stdout,
            expected,
            "value {value:?} came back as {:?} via {:?}",
            String::from_utf8_lossy(&out.stdout),
            commands[i].as_str()
        );
    }
    assert!(!pwned.exists(), "a #() in a value ran");
}

/// What the daemon's start-up marks rely on: `set-option -o` sets an unset
/// option, and leaves one that is set (by anyone, meanwhile) as it is.
#[test]
fn set_option_if_unset_leaves_a_set_option_alone() {
    let server = TmuxServer::start();
    let session = session_id(&server, "base");
    server.tmux(&["new-session", "-d", "-s", "marked"]);
    let marked = session_id(&server, "marked");
    server.tmux(&[
        "set-option",
        "-t",
        "marked",
        "@agent-state",
        "error: it failed",
    ]);

    let mark = |id| Command::set_option_if_unset(id, "@agent-state", "detached;#{x}");
    let out = source(&server, &[&mark(session).expect("buildable")]);
    assert!(out.status.success(), "an unset option: {out:?}");
    let out = source(&server, &[&mark(marked).expect("buildable")]);
    assert!(
        !out.status.success(),
        "tmux said nothing of a set option: {out:?}"
    );

    assert_eq!(
        shown(&server, Some(session), "@agent-state"),
        b"detached;#{x}\n"
    );
    assert_eq!(
        shown(&server, Some(marked), "@agent-state"),
        b"error: it failed\n"
    );
}

#[test]
fn set_option_values_arrive_byte_exact_through_control_mode() {
    let server = TmuxServer::start();
    let session = session_id(&server, "base");
    let pwned = server.path("pwned");
    let mut client = ControlClient::attach(&server, "base");

    for (i, value) in nasty_values(&pwned).iter().enumerate() {
        let name = format!("@c{i}");
        client.ok(&Command::set_option(session, &name, value).expect("buildable"));
        let out = server.try_tmux(&["show-options", "-v", "-t", &session.to_string(), &name]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{value}\n"),
            "value {value:?}"
        );
        // And back through our own control connection: tmux does not escape
        // reply lines, so the value comes back split on its newlines.
        let reply = client.command(&Command::show_option(session, &name).expect("buildable"));
        assert!(reply.success);
        if !value.contains('\r') {
            assert_eq!(reply.text(), *value, "show-options reply for {value:?}");
        }
    }

    // An unset option is an error reply, and unset/global forms work.
    client.ok(&Command::unset_option(session, "@c0").expect("buildable"));
    let reply = client.command(&Command::show_option(session, "@c0").expect("buildable"));
    assert!(!reply.success, "{}", reply.text());
    client.ok(&Command::set_global_option("@g", "#(touch x) ~ $HOME").expect("buildable"));
    assert_eq!(
        client.ok(&Command::show_global_option("@g").expect("buildable")),
        "#(touch x) ~ $HOME"
    );
    client.ok(&Command::unset_global_option("@g").expect("buildable"));
    assert!(
        !client
            .command(&Command::show_global_option("@g").expect("buildable"))
            .success
    );
    assert!(!pwned.exists(), "a #() in a value ran");
}

#[test]
fn escape_format_keeps_display_message_literal() {
    let server = TmuxServer::start();
    let session = session_id(&server, "base");
    let pwned = server.path("pwned");
    let ran = server.path("ran");
    let mut client = ControlClient::attach(&server, "base");

    let literal = format!(
        "lit #{{session_name}} #(touch {}) ## #{{?1,a,b}} '\"; $HOME ~",
        pwned.display()
    );
    let shown =
        client.ok(&Command::display_message(session, &escape_format(&literal)).expect("buildable"));
    assert_eq!(shown, literal);

    // Positive control: unescaped, the same kind of format does run its job
    // (the client keeps it alive), so the check below is not vacuous.
    let shown = client.ok(&Command::display_message(
        session,
        &format!("#{{session_name}} #(touch {})", ran.display()),
    )
    .expect("buildable"));
    assert!(shown.starts_with("base "), "{shown:?}");
    eventually(PATIENCE, "the control #() job to run", || {
        (ran.exists()).then_some(())
    });
    assert!(!pwned.exists(), "an escaped #() ran");
}

#[test]
fn every_builder_is_accepted_by_tmux() {
    let server = TmuxServer::start();
    let session = session_id(&server, "base");
    let pwned = server.path("pwned");
    let mut client = ControlClient::attach(&server, "base");

    // new-session with a hostile name and directory: both arrive literally.
    // tmux itself rewrites some bytes of session names (`.` and `:` to `_`,
    // `$` to `\$`), so the name avoids them; option values cover `$`.
    let name = format!("x'; kill-server; '#(touch {}) {{ }} ~", pwned.display());
    let name = name.replace(['.', ':'], "_");
    let dir = server.path("start dir #{session_name} ~");
    std::fs::create_dir(&dir).expect("mkdir");
    let created = client.ok(&Command::new_session(
        &name,
        None,
        None,
        &tmux_agent::control::command::Spawn {
            directory: Some(dir.to_str().expect("utf-8").to_owned()),
            ..Default::default()
        },
    )
    .expect("buildable"));
    let created: SessionId = created.trim().parse().expect("new-session prints the id");
    let format = "#{session_id}\t#{session_name}\t#{session_path}";
    let listed = client.ok(&Command::list_sessions(format).expect("buildable"));
    assert!(
        listed
            .lines()
            .any(|l| l == format!("{created}\t{name}\t{}", dir.display())),
        "{listed:?}"
    );

    client.ok(&Command::has_session(created));
    let windows = client.ok(&Command::list_windows(created, "#{window_id}").expect("buildable"));
    assert!(windows.starts_with('@'), "{windows:?}");
    let panes = client.ok(&Command::list_panes(created, "#{pane_id}").expect("buildable"));
    let pane = panes.trim().parse().expect("a pane id");
    client.ok(&Command::capture_pane(pane, -10));
    let clients = client.ok(&Command::list_clients("#{client_name}").expect("buildable"));
    assert!(clients.starts_with("client-"), "{clients:?}");
    assert_eq!(
        client.ok(&Command::display_message(pane, "#{pane_id}").expect("buildable")),
        pane.to_string()
    );

    client.ok(
        &Command::subscribe("st", SubscriptionScope::Session, "#{S:#{session_id},}")
            .expect("buildable"),
    );
    let value = client.wait_for(|e| {
        matches!(e, ControlEvent::Notification(Notification::SubscriptionChanged { name, .. }) if name == "st")
    });
    let ControlEvent::Notification(Notification::SubscriptionChanged { value, .. }) = value else {
        unreachable!()
    };
    assert_eq!(&value[..], format!("{session},{created},").as_bytes());
    client.ok(&Command::unsubscribe("st").expect("buildable"));

    client.ok(&Command::kill_session(created));
    assert!(!client.command(&Command::has_session(created)).success);
    assert!(!pwned.exists(), "a #() in a name ran");

    // A second control client, detached by name.
    let other = ControlClient::attach(&server, "base");
    let names = client.ok(&Command::list_clients("#{client_name}").expect("buildable"));
    let other_name = names
        .lines()
        .find(|n| *n != clients.trim())
        .expect("second client")
        .to_owned();
    client.ok(&Command::detach_client(&other_name).expect("buildable"));
    other.wait_for(|e| matches!(e, ControlEvent::Notification(Notification::Exit { .. })));

    writeln!(client.stdin, "{}", Command::kill_server()).expect("write");
    client.wait_for(|e| matches!(e, ControlEvent::Notification(Notification::Exit { .. })));
}

#[test]
fn tmux_itself_ends_a_command_at_a_trailing_semicolon_in_argv() {
    // The positive control for the argv escaping below: passed raw, tmux
    // 3.3a cuts one trailing `;` and ends the command there (what follows
    // is the next command), and turns a trailing `\;` into `;`.
    let server = TmuxServer::start();
    // (raw argument, value stored, whether the command ended there)
    let table = [
        ("done;", "done\n", true),
        ("x;;", "x;\n", true),
        ("a\\;", "a;\n", false),
        ("a;b", "a;b\n", false),
    ];
    for (i, (raw, stored, ends)) in table.into_iter().enumerate() {
        let name = format!("@raw{i}");
        let mut argv = vec!["set-option", "-g", "--", &name, raw];
        if ends {
            // Runs only as a command of its own.
            argv.extend(["display-message", "-p", "next"]);
        }
        let out = server.try_tmux(&argv);
        assert!(out.status.success(), "{raw:?}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&shown(&server, None, &name)),
            stored,
            "{raw:?}"
        );
        if ends {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "next\n", "{raw:?}");
        }
    }
}

#[test]
fn set_option_values_arrive_byte_exact_through_argv() {
    let server = TmuxServer::start();
    let session = session_id(&server, "base");
    let pwned = server.path("pwned");
    let values = nasty_values(&pwned);
    let tmux = oneshot(&server);
    let build = |prefix: &str, i: usize, value: &str| {
        let name = format!("@{prefix}{i}");
        if i.is_multiple_of(2) {
            Command::set_option(session, &name, value)
        } else {
            Command::set_global_option(&name, value)
        }
        .expect("buildable")
    };
    let check = |prefix: &str, commands: &[Command]| {
        for (i, value) in values.iter().enumerate() {
            let target = i.is_multiple_of(2).then_some(session);
            let mut expected = value.clone().into_bytes();
            expected.push(b'\n');
            let shown = shown(&server, target, &format!("@{prefix}{i}"));
            assert_eq!(
                shown,
                expected,
                "value {value:?} came back as {:?} via argv {:?}",
                String::from_utf8_lossy(&shown),
                commands[i].argv()
            );
        }
    };

    // One invocation per value.
    let singles: Vec<Command> = values
        .iter()
        .enumerate()
        .map(|(i, v)| build("a", i, v))
        .collect();
    for command in &singles {
        block_on(tmux.run(command)).unwrap_or_else(|e| panic!("{:?}: {e}", command.argv()));
    }
    check("a", &singles);

    // All of them chained into one invocation: every `;` inside a value
    // stays in it, and only the separators end commands.
    let chained: Vec<Command> = values
        .iter()
        .enumerate()
        .map(|(i, v)| build("c", i, v))
        .collect();
    block_on(tmux.run_all(&chained)).expect("the chain runs");
    check("c", &chained);
    assert!(!pwned.exists(), "a #() in a value ran");
}

#[test]
fn the_oneshot_runner_reports_tmux_refusals_and_a_missing_server() {
    let server = TmuxServer::start();
    let session = session_id(&server, "base");
    let tmux = oneshot(&server);

    // A chain stops at the first command tmux refuses, with its message.
    let chain = [
        Command::set_global_option("@before", "1").expect("buildable"),
        Command::has_session(SessionId(999)),
        Command::set_global_option("@after", "1").expect("buildable"),
    ];
    match block_on(tmux.run_all(&chain)) {
        Err(OneShotError::Refused { command, message }) => {
            assert_eq!(command, "set-option");
            assert!(message.contains("$999"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(shown(&server, None, "@before"), b"1\n");
    assert!(
        !server
            .try_tmux(&["show-options", "-gv", "@after"])
            .status
            .success()
    );

    // Exact-name targets and the other builders the CLI uses, by argv.
    let named = SessionTarget::Exact("base".into());
    block_on(tmux.run(&Command::set_option(named.clone(), "@n", "v;").expect("buildable")))
        .expect("set by exact name");
    assert_eq!(shown(&server, Some(session), "@n"), b"v;\n");
    let shown =
        block_on(tmux.run(&Command::show_option_if_set(session, "@n").expect("ok"))).expect("show");
    assert_eq!(shown, b"v;\n");
    let unset = block_on(tmux.run(&Command::show_option_if_set(session, "@unset").expect("ok")))
        .expect("an unset option is no output, not an error");
    assert!(unset.is_empty());
    let version =
        block_on(tmux.run(&Command::display_server("#{version}").expect("ok"))).expect("version");
    assert!(!version.is_empty());
    // The pane's command gets its words byte-exact too: it writes its
    // argument to a file.
    let argument = server.path("argument");
    let script = format!("printf %s \"$0\" > '{}'; exec sleep 30", argument.display());
    let words = ["sh".to_owned(), "-c".to_owned(), script, "arg;".to_owned()];
    let spawn = tmux_agent::control::command::Spawn {
        command: words.to_vec(),
        ..Default::default()
    };
    let created =
        block_on(tmux.run(&Command::new_session("made;", None, None, &spawn).expect("ok")))
            .expect("new-session");
    let created: SessionId = String::from_utf8_lossy(&created)
        .trim()
        .parse()
        .expect("id");
    let listed = block_on(tmux.run(
        &Command::list_windows(SessionTarget::Given("made;".into()), "#{session_id}").expect("ok"),
    ))
    .expect("a typed target ending in ';' resolves");
    assert_eq!(String::from_utf8_lossy(&listed).trim(), created.to_string());
    block_on(tmux.run(&Command::rename_session_to_number(created).expect("ok"))).expect("rename");
    let name = server.try_tmux(&[
        "display-message",
        "-p",
        "-t",
        &created.to_string(),
        "#{session_name}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&name.stdout).trim(),
        created.to_string().trim_start_matches('$')
    );
    eventually(PATIENCE, "the pane's command to run", || {
        std::fs::read(&argument)
            .is_ok_and(|a| a == b"arg;")
            .then_some(())
    });
    let panes =
        block_on(tmux.run(&Command::list_all_panes("#{session_id}").expect("ok"))).expect("panes");
    assert!(
        String::from_utf8_lossy(&panes).contains(&created.to_string()),
        "{panes:?}"
    );
    let number = created.to_string().trim_start_matches('$').to_owned();
    block_on(tmux.run(&Command::kill_session_named(&number).expect("ok"))).expect("kill by name");
    assert!(
        !server
            .try_tmux(&["has-session", "-t", &created.to_string()])
            .status
            .success()
    );

    // No server on the socket: a typed error, not tmux's text.
    // At once: a server still on its way out counts as none.
    server.try_tmux(&["kill-server"]);
    match block_on(tmux.run(&Command::show_global_options())) {
        Err(OneShotError::NoServer { .. }) => {}
        other => panic!("expected no server, got {other:?}"),
    }
    assert!(!block_on(tmux.is_running()).expect("tmux runs"));
}
