//! The `--detach` handshake: how a background daemon tells the process that
//! started it that it has attached.
//!
//! The parent makes a socket pair and hands one end to the child as fd 3
//! (naming it in `TMUX_AGENT_READY_FD`). The daemon writes `attached\n` on
//! it once it is attached and listening; EOF without that line means it
//! failed, and its reason is in its log. This beats polling
//! `@agent-daemon`: a stale `running` left by a killed daemon cannot make a
//! failed start look successful.

use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::time::Duration;

/// The fd on which a detached daemon reports that it has attached.
pub const READY_FD: RawFd = 3;
/// Tells a daemon started by `--detach` which fd to report on.
pub const READY_FD_ENV: &str = "TMUX_AGENT_READY_FD";

/// What a detached daemon says when it is ready.
const READY_LINE: &[u8] = b"attached\n";

/// The daemon's end: the fd its `--detach` parent waits on.
#[derive(Debug)]
pub struct ReadyReport {
    socket: std::fs::File,
}

impl ReadyReport {
    /// Takes the fd a `--detach` parent left, if there is one, and marks it
    /// close-on-exec so the tmux client and MCP servers the daemon starts
    /// do not hold it open (the parent would then see no EOF when the
    /// daemon fails). Call before starting any child process.
    pub fn inherited() -> Option<Self> {
        let named = std::env::var(READY_FD_ENV)
            .ok()
            .and_then(|v| v.parse::<RawFd>().ok());
        if named != Some(READY_FD) {
            return None;
        }
        // SAFETY: fcntl on an fd number only reads or changes that fd's
        // flags; F_SETFD failing means the fd is not open, and then it is
        // not ours to take.
        if unsafe { libc::fcntl(READY_FD, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return None;
        }
        // SAFETY: the parent put a socket on this fd for us alone, and
        // nothing else in the process uses it; the File owns and closes it.
        let socket = unsafe { std::fs::File::from_raw_fd(READY_FD) };
        Some(Self { socket })
    }

    /// Tells the parent the daemon is attached, and closes the fd.
    pub fn report(mut self) {
        // The parent may have given up (its timeout): nothing to tell then.
        let _ = self.socket.write_all(READY_LINE);
    }
}

/// The parent's end, waiting for [`ReadyReport::report`].
#[derive(Debug)]
pub struct ReadyWait {
    socket: UnixStream,
    /// The child's end, open until the child has been spawned.
    child_end: Option<UnixStream>,
}

impl ReadyWait {
    /// Makes the socket pair and sets up `command` so its child gets one
    /// end as [`READY_FD`]. Spawn `command`, then [`ReadyWait::wait`].
    pub fn prepare(command: &mut std::process::Command) -> std::io::Result<Self> {
        let (socket, child_end) = UnixStream::pair()?;
        let child_fd = child_end.as_raw_fd();
        command.env(READY_FD_ENV, READY_FD.to_string());
        // SAFETY: between fork and exec only dup2 or fcntl runs, both
        // async-signal-safe: the socket goes on a known fd, without
        // close-on-exec (dup2 onto itself would keep the flag).
        unsafe {
            command.pre_exec(move || {
                let inherited = if child_fd == READY_FD {
                    libc::fcntl(READY_FD, libc::F_SETFD, 0)
                } else {
                    libc::dup2(child_fd, READY_FD)
                };
                if inherited < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(Self {
            socket,
            child_end: Some(child_end),
        })
    }

    /// Waits at most `timeout` for the child's report: `true` when it is
    /// attached, `false` when its end closed without a word (it failed) or
    /// the time ran out.
    pub fn wait(mut self, timeout: Duration) -> std::io::Result<bool> {
        // Our copy of the child's end would keep EOF from ever coming.
        drop(self.child_end.take());
        self.socket.set_read_timeout(Some(timeout))?;
        let mut line = Vec::new();
        // One line, not up to EOF: the daemon's tmux child may inherit the
        // fd, so EOF could come only when that client exits.
        let _ = std::io::BufReader::new((&self.socket).take(64)).read_until(b'\n', &mut line);
        Ok(line == READY_LINE)
    }
}
