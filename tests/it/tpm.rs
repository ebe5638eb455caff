//! `tmux-agent.tmux`, the TPM plugin, loaded on a private server exactly as
//! TPM loads a plugin: TPM's `scripts/source_plugins.sh` runs, from tmux's
//! `run-shell`, every `*.tmux` file of the plugin's directory as an
//! executable with its output thrown away (`$tmux_file >/dev/null 2>&1`).
//! The same loop runs here, from `run-shell`, over a plugin directory laid
//! out as TPM clones it (`~/.tmux/plugins/tmux-agent/`).
//!
//! `@tmux-agent-bin` points the plugin at a wrapper that logs every argv it
//! is started with (NUL-separated, one line per run) and then runs the real
//! binary: that counts the processes the hooks start, and shows what
//! arguments the aliases pass.

use std::path::{Path, PathBuf};
use std::process::Child;

use crate::support::tmux::{TerminalClient, TmuxServer};
use crate::support::{AGENT, PATIENCE, eventually, wait_for};

/// TPM's loop (scripts/source_plugins.sh, `silently_source_all_tmux_files`)
/// over one plugin directory.
fn tpm_loop(plugin_dir: &Path) -> String {
    format!(
        "for tmux_file in {}/*.tmux; do [ -f \"$tmux_file\" ] || continue; $tmux_file >/dev/null 2>&1; done",
        shlex::try_quote(&plugin_dir.display().to_string()).unwrap()
    )
}

/// A server with the plugin installed where TPM puts it, and the logging
/// wrapper as `@tmux-agent-bin`.
struct Plugged {
    server: TmuxServer,
    plugin_dir: PathBuf,
    log: PathBuf,
}

impl Plugged {
    fn new(options: &[(&str, &str)]) -> Plugged {
        let server = TmuxServer::start();
        let plugin_dir = server.path(".tmux/plugins/tmux-agent");
        std::fs::create_dir_all(&plugin_dir).unwrap();
        let plugin = plugin_dir.join("tmux-agent.tmux");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tmux-agent.tmux"),
            &plugin,
        )
        .unwrap();
        let log = server.path("calls.log");
        let wrapper = server.path("bin/tmux-agent");
        std::fs::create_dir_all(wrapper.parent().unwrap()).unwrap();
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nprintf '%s\\0' \"$@\" >> {log}\nprintf '\\n' >> {log}\nexec {agent} \"$@\"\n",
                log = shlex::try_quote(&log.display().to_string()).unwrap(),
                agent = shlex::try_quote(AGENT).unwrap(),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        server.tmux(&[
            "set-option",
            "-g",
            "@tmux-agent-bin",
            wrapper.to_str().unwrap(),
        ]);
        for (name, value) in options {
            server.tmux(&["set-option", "-g", name, value]);
        }
        Plugged {
            server,
            plugin_dir,
            log,
        }
    }

    /// Loads the plugin as TPM does, and waits for that to finish.
    fn load(&self) {
        self.server
            .tmux(&["run-shell", &tpm_loop(&self.plugin_dir)]);
    }

    /// Every run of the wrapper so far, as its argv.
    fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                line.split('\0')
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }

    fn ensures(&self) -> usize {
        self.calls().iter().filter(|c| c[..] == ["ensure"]).count()
    }

    /// True while the daemon's session has a client: the daemon is attached.
    fn daemon_attached(&self) -> bool {
        self.server
            .tmux(&["list-sessions", "-F", "#{session_name} #{session_attached}"])
            .lines()
            .any(|l| l == "tmux-agent 1")
    }

    /// What the plugin sets, minus what the daemon sets as it attaches
    /// (the `@agent-*` options it keeps changing, and its hook that names
    /// missed sessions): global and server options, hooks, key bindings.
    fn settings(&self) -> String {
        let mut all = String::new();
        for args in [
            &["show-options", "-g"][..],
            &["show-options", "-s"],
            &["show-hooks", "-g"],
            &["list-keys"],
        ] {
            for line in self.server.tmux(args).lines() {
                if !line.starts_with("@agent-")
                    && !line.starts_with(tmux_agent::schema::global::NAME_HOOK)
                {
                    all.push_str(line);
                    all.push('\n');
                }
            }
        }
        all
    }
}

fn daemon_pid(server: &TmuxServer) -> i32 {
    let clients = server.tmux(&["list-clients", "-F", "#{client_control_mode} #{client_pid}"]);
    let client_pid: i32 = clients
        .lines()
        .find_map(|l| l.strip_prefix("1 "))
        .expect("a control client")
        .trim()
        .parse()
        .unwrap();
    // The control client is `tmux -C`, a child of the daemon.
    let stat = std::fs::read_to_string(format!("/proc/{client_pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn loading_the_plugin_starts_the_daemon_and_loading_it_again_changes_nothing() {
    let plugged = Plugged::new(&[]);
    plugged.load();
    eventually(PATIENCE, "the daemon to attach", || {
        plugged.daemon_attached().then_some(())
    });
    assert_eq!(plugged.ensures(), 1, "{:?}", plugged.calls());
    let once = plugged.settings();
    for piece in [
        "session-created[100] if-shell -F",
        "command-alias[100] \"agent-join-group=display-popup",
        "lsag=display-popup",
        "choose-tree -Zs -f \"#{!=:#{session_name},tmux-agent}\"",
        "status-right \"#{E:@tmux-agent-status-format}",
    ] {
        assert!(once.contains(piece), "{piece:?} set:\n{once}");
    }

    // tmux.conf reloaded: TPM runs the plugin again.
    plugged.load();
    assert_eq!(plugged.settings(), once, "a second load changes nothing");

    // A live daemon: new sessions start no process at all.
    for i in 0..5 {
        plugged
            .server
            .tmux(&["new-session", "-d", "-s", &format!("live-{i}")]);
    }

    // A SIGKILLed daemon leaves @agent-daemon behind, but its session loses
    // its client: the next session created starts one `ensure`.
    let pid = daemon_pid(&plugged.server);
    // SAFETY: kill(2) on the daemon this test started through the plugin.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    eventually(PATIENCE, "the killed daemon's client to go", || {
        (!plugged.daemon_attached()).then_some(())
    });
    assert_eq!(
        plugged.server.global_option("@agent-daemon").as_deref(),
        Some("running"),
        "the stale value the hook must not trust"
    );
    plugged
        .server
        .tmux(&["new-session", "-d", "-s", "after-kill"]);
    eventually(PATIENCE, "the hook to bring the daemon back", || {
        plugged.daemon_attached().then_some(())
    });
    // The reload and the five sessions with a live daemon started nothing:
    // the only runs are the first load's and the one after the kill.
    assert_eq!(plugged.ensures(), 2, "{:?}", plugged.calls());
    assert_eq!(plugged.calls().len(), 2, "{:?}", plugged.calls());
}

/// Runs `tmux ALIAS ARGS...` as a person at `prefix :` would, waits until
/// `done` holds, closes the popup the alias opened, and returns.
fn run_alias(plugged: &Plugged, client: &str, words: &[&str], done: impl Fn() -> bool) {
    let mut child: Child = plugged.server.command().args(words).spawn().unwrap();
    eventually(PATIENCE, &format!("{words:?} to take effect"), || {
        done().then_some(())
    });
    plugged.server.tmux(&["display-popup", "-C", "-c", client]);
    let exited = wait_for(PATIENCE, || child.try_wait().unwrap());
    if exited.is_none() {
        let _ = child.kill();
        panic!("`tmux {words:?}` did not return once its popup closed");
    }
}

#[test]
fn the_forks_command_names_pass_their_words_as_arguments() {
    let plugged = Plugged::new(&[("@tmux-agent-start", "off"), ("@tmux-agent-heal", "off")]);
    plugged.load();
    let _terminal: TerminalClient = plugged.server.attach_terminal("base");
    let client = eventually(PATIENCE, "the terminal client", || {
        plugged
            .server
            .tmux(&[
                "list-clients",
                "-F",
                "#{client_control_mode} #{client_name}",
            ])
            .lines()
            .find_map(|l| l.strip_prefix("0 ").map(str::to_owned))
    });
    let base = plugged.server.session_id("base");

    run_alias(&plugged, &client, &["ajoin", "build"], || {
        plugged.server.option(&base, "@agent-group").as_deref() == Some("build")
    });
    let pwned = plugged.server.path("pwned");
    let hostile = format!(
        "k=$(touch {}) `touch {}` \"q\" 'single' #{{session_name}} #(touch {});y",
        pwned.display(),
        pwned.display(),
        pwned.display()
    );
    run_alias(&plugged, &client, &["ashare", &hostile], || {
        plugged.server.option(&base, "@agent-ctx-k").is_some()
    });
    run_alias(&plugged, &client, &["agent-peers", "-t", "base"], || {
        plugged.calls().iter().any(|c| c[0] == "peers")
    });

    let calls = plugged.calls();
    assert_eq!(calls[0], ["join", "build"]);
    assert_eq!(
        calls[1],
        ["share", hostile.as_str()],
        "one argument, byte for byte"
    );
    assert_eq!(calls[2], ["peers", "-t", "base"]);
    assert_eq!(
        plugged.server.option(&base, "@agent-ctx-k").as_deref(),
        Some(&hostile["k=".len()..]),
        "the value as typed"
    );
    assert!(!pwned.exists(), "nothing in the value was run");
}

#[test]
fn without_a_binary_or_cargo_the_plugin_says_how_to_get_one() {
    let server = TmuxServer::start();
    let plugin_dir = server.path(".tmux/plugins/tmux-agent");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tmux-agent.tmux"),
        plugin_dir.join("tmux-agent.tmux"),
    )
    .unwrap();
    // tmux and bash are in /usr/bin; tmux-agent and cargo are not.
    server.tmux(&["set-environment", "-g", "PATH", "/usr/bin:/bin"]);
    server.tmux(&["run-shell", &tpm_loop(&plugin_dir)]);
    let problem = server
        .global_option("@tmux-agent-problem")
        .unwrap_or_default();
    assert!(problem.contains("no cargo"), "{problem:?}");
    assert!(problem.contains("https://rustup.rs"), "{problem:?}");
    assert!(
        server
            .tmux(&["show-hooks", "-g"])
            .lines()
            .all(|l| !l.contains("[100]")),
        "no hook without a binary"
    );
}
