//! Built [`Command`]s run as one short-lived `tmux` process: what the CLI,
//! the built-in MCP server's agent tools and the liveness probe use when
//! they have no control connection.
//!
//! One runner, so that every one-shot path gets the same things right: the
//! argv rendering of [`Command::argv`] (a trailing `;` kept literal),
//! several commands chained into one invocation (tmux runs a chain without
//! another client's commands in between, and stops at the first failure),
//! stdin closed (or, for `load-buffer -`, fed with the caller's bytes and
//! then closed), a timeout, the child killed when the call is dropped, and
//! one typed error whose variants a caller can act on: no server, tmux
//! refused (with its message), timed out, could not start.
//!
//! **Invariant:** this module and [`super::server`] (whose `command` the
//! control connection's long-lived `tmux -C` starts from) are the only
//! places that name the `tmux` binary, and only [`super::command`] spells
//! out a tmux command.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use super::command::Command;
use super::server::{ServerSocket, tmux_binary};

/// How long one invocation may take: tmux answers a one-shot command in
/// milliseconds, so this only bounds a wedged server (or a loaded machine),
/// and never makes a caller hang for good.
pub const ONESHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a one-shot invocation gave no output.
#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    /// Nothing listens on the socket (tmux's `no server running` or `error
    /// connecting to`), or the server went away before it answered.
    #[error("no tmux server is running for `{server}`")]
    NoServer {
        /// The server that was asked.
        server: ServerSocket,
    },
    /// tmux ran and refused: an unknown target, a session gone, a bad flag.
    #[error("tmux {command}: {message}")]
    Refused {
        /// The first command of the invocation (`set-option`).
        command: String,
        /// What tmux printed on stderr, trimmed.
        message: String,
    },
    /// tmux did not finish in time; the child has been killed.
    #[error("tmux {command} timed out after {after:?}")]
    Timeout {
        /// The first command of the invocation.
        command: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The `tmux` binary could not be started.
    #[error("could not run tmux: {0}")]
    Spawn(#[source] std::io::Error),
}

/// A tmux server reached by one-shot `tmux` processes.
#[derive(Debug, Clone)]
pub struct OneShot {
    server: ServerSocket,
    timeout: Duration,
    /// The binary to run: `tmux` (or `$TMUX_AGENT_TMUX`); a stand-in in
    /// this module's tests.
    program: OsString,
}

impl OneShot {
    /// The runner for `server`, with [`ONESHOT_TIMEOUT`].
    pub fn new(server: ServerSocket) -> Self {
        Self {
            server,
            timeout: ONESHOT_TIMEOUT,
            program: tmux_binary(),
        }
    }

    /// The same runner with another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server it runs commands on.
    pub fn server(&self) -> &ServerSocket {
        &self.server
    }

    /// Runs one command; returns its stdout.
    pub async fn run(&self, command: &Command) -> Result<Vec<u8>, OneShotError> {
        self.run_all(std::slice::from_ref(command)).await
    }

    /// Runs `commands` as one invocation, chained with `;`; returns the
    /// stdout of all of them. When one fails, the ones after it do not run
    /// and tmux's message is the error. No commands: nothing is started
    /// (a bare `tmux` would create a session).
    pub async fn run_all(&self, commands: &[Command]) -> Result<Vec<u8>, OneShotError> {
        self.invoke(commands, None).await
    }

    /// Runs one command with `input` on its stdin, then stdin closed: how a
    /// body reaches `load-buffer -` ([`Command::load_buffer_from_stdin`])
    /// without ever being part of a command line. The input may hold any
    /// bytes, NUL included, and any length.
    pub async fn run_with_input(
        &self,
        command: &Command,
        input: &[u8],
    ) -> Result<Vec<u8>, OneShotError> {
        self.invoke(std::slice::from_ref(command), Some(input))
            .await
    }

    async fn invoke(
        &self,
        commands: &[Command],
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>, OneShotError> {
        let Some(first) = commands.first() else {
            return Ok(Vec::new());
        };
        let command = first.name().to_owned();
        let mut process = tokio::process::Command::new(&self.program);
        process
            .args(self.server.tmux_args())
            .args(Command::chain_argv(commands))
            // UTF-8 output, neither sanitised nor mangled by tmux.
            .env("LC_ALL", "C.UTF-8")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out call drops the future, and with it the child.
            .kill_on_drop(true);
        let output = match tokio::time::timeout(self.timeout, feed(&mut process, input)).await {
            Ok(output) => output.map_err(OneShotError::Spawn)?,
            Err(_) => {
                return Err(OneShotError::Timeout {
                    command,
                    after: self.timeout,
                });
            }
        };
        if output.status.success() {
            return Ok(output.stdout);
        }
        let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if is_no_server(&message) {
            return Err(OneShotError::NoServer {
                server: self.server.clone(),
            });
        }
        Err(OneShotError::Refused { command, message })
    }

    /// Whether a tmux server answers on the socket (`list-sessions`
    /// succeeds). `Err` only when `tmux` itself could not be run. A server
    /// that accepted the connection but did not answer in time counts as
    /// running: it is there, only busy, and calling it gone would make the
    /// daemon close every session it tracks.
    pub async fn is_running(&self) -> std::io::Result<bool> {
        let probe = Command::list_sessions("#{session_id}").expect("a constant format has no NUL");
        match self.run(&probe).await {
            Ok(_) | Err(OneShotError::Timeout { .. }) => Ok(true),
            Err(OneShotError::NoServer { .. } | OneShotError::Refused { .. }) => Ok(false),
            Err(OneShotError::Spawn(err)) => Err(err),
        }
    }
}

/// Starts `process`, writes `input` (if any) to its stdin and closes it,
/// while reading its output: writing first and reading after would
/// deadlock on a child that fills its stdout pipe before it has read all
/// its stdin.
async fn feed(
    process: &mut tokio::process::Command,
    input: Option<&[u8]>,
) -> std::io::Result<std::process::Output> {
    use tokio::io::AsyncWriteExt;

    let mut child = process.spawn()?;
    let stdin = child.stdin.take();
    let write = async move {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            // A child that exits without reading everything (tmux refused
            // the command) closes the pipe: its exit status and stderr say
            // why, so the broken pipe itself is no error here.
            match stdin.write_all(input).await {
                Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => return Err(err),
                _ => {}
            }
            drop(stdin);
        }
        Ok(())
    };
    let (written, output) = tokio::join!(write, child.wait_with_output());
    written?;
    output
}

/// Whether tmux's client said there is no server. A server on its way out
/// (`kill-server`, its last session closed) still accepts connections for
/// a moment, and then the client says `server exited unexpectedly` (the
/// connection closed without an answer) or `server exited` (it was told to
/// go: `MSG_SHUTDOWN`) (tmux 3.3a `client.c`). To a caller that is the same
/// as no server; reported as a refusal, it made `peers` right after a
/// `kill-server` say "no session".
fn is_no_server(message: &str) -> bool {
    message.starts_with("no server running")
        || message.starts_with("error connecting to")
        || message == "server exited unexpectedly"
        || message == "server exited"
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    /// A stand-in for `tmux`: a shell script with this body.
    fn fake_tmux(dir: &Path, name: &str, body: &str) -> OsString {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.into_os_string()
    }

    fn runner(program: OsString) -> OneShot {
        OneShot {
            program,
            ..OneShot::new(ServerSocket::Name("oneshot-test".into()))
        }
        .with_timeout(Duration::from_millis(500))
    }

    /// Whether an error is the one a case expects.
    type Expected = fn(&OneShotError) -> bool;

    #[tokio::test]
    async fn each_way_of_failing_has_its_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let command = Command::has_session(crate::control::SessionId(1));
        let table: [(&str, &str, Expected); 7] = [
            (
                "no-server",
                "echo 'no server running on /tmp/tmux-0/x' >&2; exit 1",
                |e| matches!(e, OneShotError::NoServer { .. }),
            ),
            (
                "no-socket",
                "echo 'error connecting to /tmp/x (No such file or directory)' >&2; exit 1",
                |e| matches!(e, OneShotError::NoServer { .. }),
            ),
            (
                "lost",
                "echo 'server exited unexpectedly' >&2; exit 1",
                |e| matches!(e, OneShotError::NoServer { .. }),
            ),
            ("shut-down", "echo 'server exited' >&2; exit 1", |e| {
                matches!(e, OneShotError::NoServer { .. })
            }),
            (
                "refused",
                "echo \"can't find session: \\$1\" >&2; exit 1",
                |e| {
                    matches!(e, OneShotError::Refused { command, message }
                        if command == "has-session" && message == "can't find session: $1")
                },
            ),
            (
                "slow",
                "exec sleep 30",
                |e| matches!(e, OneShotError::Timeout { command, .. } if command == "has-session"),
            ),
            ("missing", "", |e| matches!(e, OneShotError::Spawn(_))),
        ];
        for (name, body, expected) in table {
            let program = if name == "missing" {
                dir.path().join("no-such-tmux").into_os_string()
            } else {
                fake_tmux(dir.path(), name, body)
            };
            let err = runner(program)
                .run(&command)
                .await
                .expect_err("the stand-in fails");
            assert!(expected(&err), "{name}: {err:?}");
        }
    }

    #[tokio::test]
    async fn commands_are_chained_into_one_argv_after_the_server_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Prints each argument on its own line, and whether stdin is closed.
        let program = fake_tmux(
            dir.path(),
            "echo",
            "for a in \"$@\"; do printf '%s\\n' \"$a\"; done; cat; echo \"LC_ALL=$LC_ALL\"",
        );
        let commands = [
            Command::set_global_option("@x", "done;").expect("buildable"),
            Command::show_global_options(),
        ];
        let out = runner(program).run_all(&commands).await.expect("runs");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "-L\noneshot-test\nset-option\n-g\n--\n@x\ndone\\;\n;\nshow-options\n-g\nLC_ALL=C.UTF-8\n"
        );
        // Nothing to run: no process at all.
        let never = runner(dir.path().join("no-such-tmux").into_os_string());
        assert_eq!(never.run_all(&[]).await.expect("no-op"), Vec::<u8>::new());
    }

    #[tokio::test]
    async fn input_reaches_the_child_on_stdin_byte_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let program = fake_tmux(dir.path(), "cat", "cat");
        let command = Command::load_buffer_from_stdin("b").expect("buildable");
        // Larger than a pipe's buffer, with a NUL and a non-UTF-8 byte.
        let mut input = b"a\0b\xff;#{x}$(y)\n".to_vec();
        input.extend(std::iter::repeat_n(b'z', 300_000));
        let out = runner(program)
            .run_with_input(&command, &input)
            .await
            .expect("runs");
        assert_eq!(out, input);
        // A child that reads nothing and fails: its refusal, not a broken pipe.
        let refuses = fake_tmux(dir.path(), "refuses", "echo 'no buffer b' >&2; exit 1");
        let err = runner(refuses)
            .run_with_input(&command, &input)
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, OneShotError::Refused { message, .. } if message == "no buffer b"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_timed_out_server_is_running_and_a_missing_binary_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = [
            ("up", "exit 0", true),
            ("down", "echo 'no server running on x' >&2; exit 1", false),
            ("busy", "exec sleep 30", true),
        ];
        for (name, body, running) in table {
            let probe = runner(fake_tmux(dir.path(), name, body));
            assert_eq!(probe.is_running().await.expect(name), running, "{name}");
        }
        let missing = runner(dir.path().join("no-such-tmux").into_os_string());
        assert!(missing.is_running().await.is_err());
    }
}
