//! Proves `control::command` against a real tmux (3.3a on this machine): the
//! lines the builders produce are accepted, quoted arguments arrive
//! byte-exact, and `#(...)`/`#{...}` in user strings are never expanded.
//!
//! Each test runs its own server ([`TmuxServer`]: a private socket, `-f
//! /dev/null`, a UTF-8 locale), killed when the test ends, even on panic. Commands go in the
//! two ways tmux parses them: a control-mode client (`tmux -C`, decoded with
//! `ControlCodec`) and `source-file` (the same parser, fed from a file).

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
    command::{Command, SubscriptionScope, escape_format},
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
    let created = client
        .ok(&Command::new_session(&name, Some(dir.to_str().expect("utf-8"))).expect("buildable"));
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
