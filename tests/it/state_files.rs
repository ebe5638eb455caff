//! The daemon's files on disk: one set per tmux server, private, and taken
//! over from the names older builds used.
//!
//! Each test runs detached daemons (`daemon --detach`), since only those
//! write a log file, and reads the files themselves: the outbox with SQLite,
//! the modes with `stat`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::rig::{LIFECYCLE, Rig};
use crate::support::tmux::clean_env;
use crate::support::{AGENT, PATIENCE, eventually, text};

/// A second tmux server, on `-S PATH`, in the same test HOME as another;
/// killed on drop.
struct SocketServer {
    socket: PathBuf,
    home: PathBuf,
}

impl SocketServer {
    fn start(home: &Path, socket: PathBuf, session: &str) -> Self {
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let server = Self {
            socket,
            home: home.to_owned(),
        };
        let out = server
            .tmux()
            .args(["new-session", "-d", "-s", session, "-x", "80", "-y", "24"])
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux -S: {}", text(&out.stderr));
        server
    }

    fn tmux(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]);
        clean_env(&mut cmd, &self.home);
        cmd
    }

    fn agent(&self) -> Command {
        let mut cmd = Command::new(AGENT);
        cmd.arg("-S").arg(&self.socket);
        clean_env(&mut cmd, &self.home);
        cmd
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Runs `daemon --detach` and returns the log file it names.
fn detach(mut cmd: Command) -> PathBuf {
    let out = cmd.args(["daemon", "--detach"]).output().unwrap();
    assert!(
        out.status.success(),
        "daemon --detach: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let log = stdout
        .trim()
        .rsplit_once("log: ")
        .unwrap_or_else(|| panic!("no log path in {stdout:?}"))
        .1;
    PathBuf::from(log)
}

fn state_dir(home: &Path) -> PathBuf {
    home.join(".local/state/tmux-agent")
}

/// The outbox files in the state directory, sorted.
fn outboxes(home: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(state_dir(home))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        // The mailbox beside it is not an outbox (crate::messages).
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("mailbox-"))
        })
        .collect();
    found.sort();
    found
}

/// The session names of every action an outbox holds.
fn sessions_in(outbox: &Path) -> Vec<String> {
    let db =
        rusqlite::Connection::open_with_flags(outbox, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = db
        .prepare("SELECT DISTINCT json_extract(vars, '$.session') FROM payloads ORDER BY 1")
        .unwrap();
    stmt.query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Names the rig's server's sessions were registered under, by the record.
fn registered(rig: &Rig) -> Vec<String> {
    let mut names: Vec<String> = rig
        .calls()
        .iter()
        .filter(|c| c["arguments"]["step"] == "register")
        .filter_map(|c| c["arguments"]["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[test]
fn a_name_and_a_path_with_that_file_name_are_two_servers_with_their_own_files() {
    let rig = Rig::new(LIFECYCLE);
    let home = rig.server.home.path();
    // `-L <name>` and `-S <elsewhere>/<name>`: the same file name, which
    // older builds took as one server.
    let other = SocketServer::start(home, home.join("other").join(&rig.server.name), "only-s");

    let log_l = detach(rig.server.agent());
    let log_s = detach(other.agent());
    eventually(PATIENCE, "both servers' sessions registered", || {
        (registered(&rig) == ["base", "only-s"]).then_some(())
    });

    assert_ne!(log_l, log_s, "one log for two servers");
    let outboxes = outboxes(home);
    assert_eq!(outboxes.len(), 2, "{outboxes:?}");
    let mut held: Vec<Vec<String>> = outboxes.iter().map(|o| sessions_in(o)).collect();
    held.sort();
    assert_eq!(held, [vec!["base".to_owned()], vec!["only-s".to_owned()]]);
    for (log, name) in [(&log_l, "-L"), (&log_s, "-S")] {
        let written = std::fs::read_to_string(log).unwrap();
        assert!(written.contains("daemon attached"), "{name}: {written}");
    }
    let l_log = std::fs::read_to_string(&log_l).unwrap();
    assert!(
        !l_log.contains(&other.socket.display().to_string()),
        "the -L log names the -S server: {l_log}"
    );
}

#[test]
fn state_files_are_private_even_when_an_older_build_left_them_open() {
    let rig = Rig::new(LIFECYCLE);
    let home = rig.server.home.path();
    // An older build's state directory and log, world-readable.
    let dir = state_dir(home);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    let log = detach(rig.server.agent());
    eventually(PATIENCE, "the base session registered", || {
        (registered(&rig) == ["base"]).then_some(())
    });
    let outbox = outboxes(home).pop().expect("an outbox");
    let mut wal = outbox.clone().into_os_string();
    wal.push("-wal");
    assert_eq!(mode(&dir), 0o700, "state dir");
    assert_eq!(mode(&outbox), 0o600, "outbox");
    assert_eq!(mode(Path::new(&wal)), 0o600, "outbox -wal");
    assert_eq!(mode(&log), 0o600, "daemon log");
    assert_eq!(mode(&home.join("run/tmux-agent")), 0o700, "runtime dir");
}

#[test]
fn an_outbox_under_the_old_name_is_taken_over_with_its_open_calls() {
    use tmux_agent::agent::outbox::{NewAction, Outbox, Priority};

    let rig = Rig::new(LIFECYCLE);
    let home = rig.server.home.path();
    // What an older build left: `outbox-<socket file name>.db`, 0644, with
    // a call it never sent.
    let legacy = state_dir(home).join(format!("outbox-{}.db", rig.server.name));
    {
        let mut old = Outbox::open(&legacy).unwrap();
        old.enqueue(
            &[NewAction {
                idempotency_key: "old-build/1".into(),
                session_key: "box:1:$9".into(),
                session_id: "$9".into(),
                event: "session-created".into(),
                priority: Priority::Register,
                server: "rec".into(),
                tool: "echo".into(),
                template: serde_json::json!({"step": "left-over", "key": "{idempotency_key}"}),
                vars: serde_json::json!({"session": "gone"}),
                keep: serde_json::json!({}),
                late: false,
            }],
            0,
        )
        .unwrap();
    }
    std::fs::set_permissions(&legacy, std::fs::Permissions::from_mode(0o644)).unwrap();

    let _log = detach(rig.server.agent());
    eventually(PATIENCE, "the old build's call delivered", || {
        rig.calls()
            .iter()
            .any(|c| c["arguments"]["step"] == "left-over")
            .then_some(())
    });
    assert!(!legacy.exists(), "the old file is still there");
    let outboxes = outboxes(home);
    assert_eq!(outboxes.len(), 1, "{outboxes:?}");
    assert_ne!(outboxes[0], legacy);
    assert_eq!(mode(&outboxes[0]), 0o600);
    assert!(sessions_in(&outboxes[0]).contains(&"gone".to_owned()));
}
