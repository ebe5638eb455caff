//! The operating-system side of a stdio server: the child process in its
//! own process group, its stderr forwarded into `tracing`, the guard on its
//! stdout, and the shutdown sequence.
//!
//! A server started through `npx` is a tree (`npx` → `node`), so signals go
//! to the whole process group, never only to the direct child. Shutdown is
//! the spec's sequence: stdin is closed first (by the transport), then after
//! a grace period SIGTERM to the group, then SIGKILL. Dropping a
//! [`ServerProcess`] that was not shut down SIGKILLs the group at once, so a
//! cancelled connect or an aborted task leaks nothing.
//!
//! [`StdoutGuard`] sits between the child's stdout (or a socket) and rmcp's
//! line reader. It enforces the largest message size by failing the read
//! (rmcp's own limit drops the line silently and leaves the call hanging),
//! and it notices lines that are not JSON: rmcp skips those quietly, which
//! hides the usual misconfiguration (a server printing a banner to stdout).

use std::collections::VecDeque;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::mcp::error::ConnectError;
use crate::mcp::spec::StdioSpec;

/// Lines of stderr kept for error messages.
const STDERR_TAIL_LINES: usize = 12;
/// Longest stderr line kept or logged; the rest is cut.
const STDERR_LINE_MAX: usize = 2000;
/// Bytes of a non-JSON stdout line kept for messages.
const PREVIEW_MAX: usize = 200;
/// Non-JSON stdout lines logged as warnings per connection (then debug).
const NON_JSON_WARNINGS: u64 = 3;

/// What was seen on a server's output stream, for error messages.
#[derive(Debug, Default)]
pub struct StreamReport {
    /// Set when a message exceeded the limit (the limit, in bytes).
    pub oversized: Option<usize>,
    /// Lines that were not JSON.
    pub non_json_lines: u64,
    /// The first bytes of the latest such line.
    pub last_non_json: Option<String>,
}

/// Shared handle on a [`StreamReport`].
pub type SharedReport = Arc<Mutex<StreamReport>>;

/// Locks a mutex even if a panicking thread poisoned it: these hold plain
/// data whose invariants a panic cannot break.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl StreamReport {
    /// A sentence about what went wrong on the stream, if anything did.
    pub fn describe(&self) -> Option<String> {
        if let Some(limit) = self.oversized {
            return Some(format!(
                "the server sent a message longer than {limit} bytes (raise max_message_bytes \
                 if that is expected); the connection was dropped"
            ));
        }
        self.last_non_json.as_ref().map(|line| {
            format!(
                "the server wrote {} non-JSON line(s) to stdout, last: {line:?} (stdout must \
                 carry only JSON-RPC; logs belong on stderr)",
                self.non_json_lines
            )
        })
    }
}

/// Wraps a server's output stream: caps the length of one line and records
/// lines that are not JSON. See the module doc.
pub struct StdoutGuard<R> {
    inner: R,
    server: Arc<str>,
    limit: usize,
    /// Bytes since the last newline.
    line_len: usize,
    /// The first bytes of the current line.
    prefix: Vec<u8>,
    report: SharedReport,
}

impl<R> StdoutGuard<R> {
    pub fn new(inner: R, server: Arc<str>, limit: usize, report: SharedReport) -> Self {
        StdoutGuard {
            inner,
            server,
            limit,
            line_len: 0,
            prefix: Vec::new(),
            report,
        }
    }

    /// Looks at bytes just read; `Err` when a line went over the limit.
    fn inspect(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let (segment, ends_line) = match memchr::memchr(b'\n', bytes) {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            self.line_len += segment.len();
            if self.prefix.len() < PREVIEW_MAX {
                let room = PREVIEW_MAX - self.prefix.len();
                self.prefix
                    .extend_from_slice(&segment[..segment.len().min(room)]);
            }
            if self.line_len > self.limit {
                lock(&self.report).oversized = Some(self.limit);
                tracing::error!(
                    server = %self.server,
                    limit = self.limit,
                    "MCP server sent a message over the size limit; dropping the connection"
                );
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("message longer than {} bytes", self.limit),
                ));
            }
            if ends_line {
                self.end_line();
                bytes = &bytes[segment.len() + 1..];
            } else {
                bytes = &[];
            }
        }
        Ok(())
    }

    fn end_line(&mut self) {
        let text = self.prefix.trim_ascii();
        let looks_like_json = matches!(
            text.strip_prefix(b"\xEF\xBB\xBF".as_slice())
                .unwrap_or(text)
                .first(),
            None | Some(b'{') | Some(b'[')
        );
        if !looks_like_json {
            let preview = String::from_utf8_lossy(text).into_owned();
            let mut report = lock(&self.report);
            // Warn about the first few only: a chatty server must not flood
            // the log; the count and the latest line stay in the report.
            if report.non_json_lines < NON_JSON_WARNINGS {
                tracing::warn!(server = %self.server, line = %preview, "MCP server wrote a non-JSON line to stdout");
            } else {
                tracing::debug!(server = %self.server, line = %preview, "MCP server wrote a non-JSON line to stdout");
            }
            report.non_json_lines += 1;
            report.last_non_json = Some(preview);
        }
        self.line_len = 0;
        self.prefix.clear();
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for StdoutGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let this = &mut *self;
                let fresh = &buf.filled()[before..];
                Poll::Ready(this.inspect(fresh))
            }
            other => other,
        }
    }
}

/// A spawned stdio server: the process plus its pipes.
pub struct Spawned {
    pub process: ServerProcess,
    pub stdout: ChildStdout,
    pub stdin: ChildStdin,
}

/// A running server process, leader of its own process group.
pub struct ServerProcess {
    server: Arc<str>,
    child: Child,
    pgid: i32,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// The group has been killed and the leader reaped.
    done: bool,
}

/// Starts `spec` in a new process group with all three stdio pipes, and a
/// task that forwards its stderr into `tracing`.
pub fn spawn(server: &Arc<str>, spec: &StdioSpec) -> Result<Spawned, ConnectError> {
    let mut command = Command::new(&spec.command);
    command
        .args(&spec.args)
        .envs(&spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own group: the whole tree can be signalled, and a Ctrl-C in the
        // user's terminal does not reach the server behind our back.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(|err| ConnectError::Spawn {
        command: spec.command_line(),
        reason: err.to_string(),
        hint: match err.kind() {
            std::io::ErrorKind::NotFound if spec.cwd.as_ref().is_some_and(|c| !c.is_dir()) => {
                " (the cwd does not exist)"
            }
            std::io::ErrorKind::NotFound => " (is it installed and on PATH?)",
            std::io::ErrorKind::PermissionDenied => " (is it executable?)",
            _ => "",
        },
    })?;
    let pid = child.id().unwrap_or(0);
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ConnectError::Config(
            "the child's pipes were not created".into(),
        ));
    };
    let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
    tokio::spawn(forward_stderr(server.clone(), stderr, stderr_tail.clone()));
    tracing::debug!(server = %server, pid, command = %spec.command_line(), "spawned MCP server");
    Ok(Spawned {
        process: ServerProcess {
            server: server.clone(),
            child,
            pgid: i32::try_from(pid).unwrap_or(0),
            stderr_tail,
            done: false,
        },
        stdout,
        stdin,
    })
}

/// Reads stderr line by line (bounded) into `tracing` and the tail buffer.
async fn forward_stderr(
    server: Arc<str>,
    mut stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut chunk = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line).trim_end().to_string();
        line.clear();
        if text.is_empty() {
            return;
        }
        tracing::info!(target: "tmux_agent::mcp::stderr", server = %server, "{text}");
        let mut tail = lock(&tail);
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    };
    loop {
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in chunk[..n].split_inclusive(|b| *b == b'\n') {
            let room = STDERR_LINE_MAX.saturating_sub(line.len());
            line.extend_from_slice(&piece[..piece.len().min(room)]);
            if piece.ends_with(b"\n") {
                emit(&mut line);
            }
        }
    }
    emit(&mut line);
}

impl ServerProcess {
    /// The leader's pid.
    pub fn pid(&self) -> u32 {
        u32::try_from(self.pgid).unwrap_or(0)
    }

    /// The last lines the server wrote to stderr, oldest first.
    pub fn stderr_tail(&self) -> Vec<String> {
        lock(&self.stderr_tail).iter().cloned().collect()
    }

    /// `"; stderr: ..."` for error messages, or nothing.
    pub fn stderr_context(&self) -> String {
        let tail = self.stderr_tail();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; the server's stderr ends with: {}", tail.join(" | "))
        }
    }

    /// The exit status if the leader has exited.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the whole group: waits `grace` for the leader to exit on its
    /// own (stdin should be closed already), then SIGTERM to the group,
    /// `grace` again, then SIGKILL. Members left after the leader exited
    /// get the same treatment. Returns the leader's exit status.
    pub async fn shutdown(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if self.done {
            return None;
        }
        let mut status = tokio::time::timeout(grace, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        if status.is_none() {
            tracing::debug!(server = %self.server, pgid = self.pgid, "MCP server still running after stdin closed; SIGTERM");
            signal_group(self.pgid, libc::SIGTERM);
            status = tokio::time::timeout(grace, self.child.wait())
                .await
                .ok()
                .and_then(Result::ok);
        }
        if status.is_none() {
            tracing::warn!(server = %self.server, pgid = self.pgid, "MCP server ignored SIGTERM; SIGKILL");
            signal_group(self.pgid, libc::SIGKILL);
            status = self.child.wait().await.ok();
        }
        // The leader is gone; its group may not be (npx → node, helpers).
        if group_alive(self.pgid) {
            signal_group(self.pgid, libc::SIGTERM);
            let deadline = tokio::time::Instant::now() + grace;
            while group_alive(self.pgid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if group_alive(self.pgid) {
                signal_group(self.pgid, libc::SIGKILL);
            }
        }
        self.done = true;
        status
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.done {
            // Not shut down properly (cancelled connect, aborted task, runtime
            // going away): kill the group now rather than leak it. The
            // leader is reaped by tokio (kill_on_drop).
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // has no memory-safety preconditions.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// True while any process is left in the group.
fn group_alive(pgid: i32) -> bool {
    // SAFETY: as above; signal 0 only checks for existence.
    pgid > 0 && unsafe { libc::kill(-pgid, 0) } == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(limit: usize) -> (StdoutGuard<&'static [u8]>, SharedReport) {
        let report = SharedReport::default();
        (
            StdoutGuard::new(&b""[..], "t".into(), limit, report.clone()),
            report,
        )
    }

    #[test]
    fn counts_non_json_lines_across_reads() {
        let (mut g, report) = guard(1000);
        g.inspect(b"{\"jsonrpc\":\"2.0\"}\nStarting ").unwrap();
        g.inspect(b"server...\n\n  {\"a\":1}\n").unwrap();
        let report = lock(&report);
        assert_eq!(report.non_json_lines, 1);
        assert_eq!(report.last_non_json.as_deref(), Some("Starting server..."));
        assert_eq!(report.oversized, None);
    }

    #[test]
    fn a_line_over_the_limit_fails_the_read() {
        let (mut g, report) = guard(10);
        g.inspect(b"{\"a\":1}\n{\"b\":").unwrap();
        assert!(g.inspect(b"1234567").is_err());
        assert_eq!(lock(&report).oversized, Some(10));
        // A line of exactly the limit is fine.
        let (mut g, _) = guard(10);
        g.inspect(b"0123456789\n").unwrap();
    }
}
