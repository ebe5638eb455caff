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

/// A server whose jobs see only `path` (tmux and bash are in /usr/bin;
/// tmux-agent and the real cargo are not), with the plugin where TPM puts
/// it and a terminal client attached, so the plugin's messages are shown
/// (and logged by tmux, where `show-messages` reads them back).
struct Bare {
    server: TmuxServer,
    plugin_dir: PathBuf,
    _terminal: TerminalClient,
}

impl Bare {
    fn new(path: &str) -> Bare {
        Bare::with_plugin_dir(path, ".tmux/plugins/tmux-agent")
    }

    /// The same with the plugin at `dir` in the test HOME.
    fn with_plugin_dir(path: &str, dir: &str) -> Bare {
        let server = TmuxServer::start();
        let plugin_dir = server.path(dir);
        std::fs::create_dir_all(&plugin_dir).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tmux-agent.tmux"),
            plugin_dir.join("tmux-agent.tmux"),
        )
        .unwrap();
        server.tmux(&["set-environment", "-g", "PATH", path]);
        let terminal = server.attach_terminal("base");
        eventually(PATIENCE, "the terminal client", || {
            server
                .tmux(&["list-clients", "-F", "#{client_control_mode}"])
                .lines()
                .any(|l| l == "0")
                .then_some(())
        });
        Bare {
            server,
            plugin_dir,
            _terminal: terminal,
        }
    }

    fn load(&self) {
        self.server
            .tmux(&["run-shell", &tpm_loop(&self.plugin_dir)]);
    }

    /// The messages tmux showed on a client (`show-messages`).
    fn messages(&self) -> Vec<String> {
        self.server
            .tmux(&["show-messages"])
            .lines()
            .filter_map(|l| l.split_once(" message: ").map(|(_, m)| m.to_owned()))
            .collect()
    }
}

#[test]
fn without_a_binary_or_cargo_the_plugin_says_how_to_get_one() {
    let bare = Bare::new("/usr/bin:/bin");
    bare.load();
    let server = &bare.server;
    let problem = server
        .global_option("@tmux-agent-problem")
        .unwrap_or_default();
    assert!(problem.contains("no cargo"), "{problem:?}");
    assert!(problem.contains("https://rustup.rs"), "{problem:?}");
    // Shown to the person at the terminal, not only kept in an option.
    let messages = bare.messages();
    assert!(
        messages.contains(&format!("tmux-agent: {problem}")),
        "{messages:?}"
    );
    assert!(
        server
            .tmux(&["show-hooks", "-g"])
            .lines()
            .all(|l| !l.contains("[100]")),
        "no hook without a binary"
    );
}

/// No tmux-agent on the PATH but a cargo: the plugin builds one in the
/// background (once, however often it is loaded meanwhile), says so, and
/// sets itself up with the built binary when the build is done. The cargo
/// here is a script that records how it was run, waits to be let go, and
/// writes a stub binary that records its own runs: no real build.
#[test]
fn without_a_binary_the_plugin_builds_one_with_cargo_once_and_then_uses_it() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cargo_log = scratch.path().join("cargo.log");
    let release = scratch.path().join("go");
    let stub_log = scratch.path().join("stub.log");
    let q = |p: &Path| shlex::try_quote(p.to_str().unwrap()).unwrap().into_owned();
    std::fs::write(
        bin.join("cargo"),
        format!(
            "#!/bin/sh\n\
             printf '%s|%s\\n' \"$PWD\" \"$*\" >> {log}\n\
             i=0; while [ ! -e {go} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done\n\
             mkdir -p target/release\n\
             printf '#!/bin/sh\\nprintf \"%%s\\\\n\" \"$*\" >> %s\\n' {stub} > target/release/tmux-agent\n\
             chmod +x target/release/tmux-agent\n\
             echo '    Finished `release` profile [optimized] target(s)'\n",
            log = q(&cargo_log),
            go = q(&release),
            stub = q(&stub_log),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(bin.join("cargo"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A plugin directory whose path a shell would expand or cut short: the
    // build command must get it as one word. (No space: TPM's own loop runs
    // `$tmux_file` unquoted, so a plugin path with a space never loads.)
    let bare = Bare::with_plugin_dir(
        &format!("{}:/usr/bin:/bin", bin.display()),
        "plugins/it's$HOME;`x`&/tmux-agent",
    );
    let server = &bare.server;
    let cargo_runs = || {
        std::fs::read_to_string(&cargo_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    bare.load();
    let started = eventually(PATIENCE, "cargo to be started", || {
        let runs = cargo_runs();
        (!runs.is_empty()).then_some(runs)
    });
    assert_eq!(
        started,
        [format!(
            "{}|build --release --locked",
            bare.plugin_dir.display()
        )]
    );
    assert_eq!(
        server.global_option("@tmux-agent-building").as_deref(),
        Some("yes")
    );
    let problem = server
        .global_option("@tmux-agent-problem")
        .unwrap_or_default();
    assert!(
        problem.starts_with("building tmux-agent with cargo"),
        "{problem:?}"
    );
    assert!(
        bare.messages().contains(&format!("tmux-agent: {problem}")),
        "{:?}",
        bare.messages()
    );
    // tmux.conf reloaded while the build runs: no second build.
    bare.load();
    assert_eq!(cargo_runs().len(), 1, "{:?}", cargo_runs());

    // The build finishes: the plugin loads itself again with the result.
    std::fs::write(&release, "").unwrap();
    let built = bare.plugin_dir.join("target/release/tmux-agent");
    eventually(PATIENCE, "the plugin to take the built binary", || {
        (server.global_option("@tmux-agent-bin").as_deref() == built.to_str()).then_some(())
    });
    eventually(PATIENCE, "the built binary to be started", || {
        std::fs::read_to_string(&stub_log)
            .ok()
            .filter(|log| log.lines().any(|l| l == "ensure"))
    });
    assert_eq!(server.global_option("@tmux-agent-building"), None);
    assert_eq!(server.global_option("@tmux-agent-problem"), None);
    // The plugin starts the binary before it sets its hook: wait for that.
    eventually(
        PATIENCE,
        "the plugin set up as with a binary on the PATH",
        || {
            server
                .tmux(&["show-hooks", "-g"])
                .lines()
                .any(|l| l.starts_with("session-created[100]"))
                .then_some(())
        },
    );
    let log = std::fs::read_to_string(bare.plugin_dir.join("target-build.log")).unwrap();
    assert!(
        log.contains("Finished `release`"),
        "cargo's output is kept: {log}"
    );
    assert_eq!(cargo_runs().len(), 1);
}

/// A build that fails is said so, with where its log is, and is not started
/// again by itself: the plugin run after it knows it failed.
#[test]
fn a_failed_build_is_reported_and_not_retried_in_a_loop() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cargo_log = scratch.path().join("cargo.log");
    std::fs::write(
        bin.join("cargo"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\n\
             echo 'error[E0425]: cannot find value `x` in this scope'\nexit 101\n",
            log = shlex::try_quote(cargo_log.to_str().unwrap()).unwrap(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(bin.join("cargo"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bare = Bare::new(&format!("{}:/usr/bin:/bin", bin.display()));
    bare.load();
    let problem = eventually(PATIENCE, "the failed build to be reported", || {
        bare.server
            .global_option("@tmux-agent-problem")
            .filter(|p| p.starts_with("cargo build failed"))
    });
    let log = bare.plugin_dir.join("target-build.log");
    assert!(problem.contains(&log.display().to_string()), "{problem}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("error[E0425]"),
        "cargo's output is kept for the user to read"
    );
    // The script sets the option, then shows the message: the message
    // may come a moment after the option this waited for.
    let shown = format!("tmux-agent: {problem}");
    eventually(PATIENCE, "the failed build to be shown", || {
        bare.messages().contains(&shown).then_some(())
    });
    assert_eq!(bare.server.global_option("@tmux-agent-building"), None);
    // The run that reported it started no build: one cargo run in all.
    let runs = std::fs::read_to_string(&cargo_log).unwrap();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        ["build --release --locked"]
    );
}
