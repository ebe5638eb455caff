//! Everything the CLI prints on stdout goes through here, so that a closed
//! stdout (`tmux-agent status | head -1`, a pager quit early) is one typed
//! error instead of a panic in `crate::outln!`: `main` turns
//! [`OutputError::Closed`] into a quiet exit 0, which is what a reader that
//! has seen enough expects of a Unix filter.
//!
//! Use [`outln!`](crate::outln) and [`out!`](crate::out) as `crate::outln!` and
//! `crate::out!`, followed by `?`.

use std::io::Write;

/// Why writing to stdout failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader went away (EPIPE): not a failure of the command.
    #[error("stdout is closed")]
    Closed,
    /// Any other write error (a full disk behind a redirection).
    #[error("writing to stdout: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for OutputError {
    fn from(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            Self::Closed
        } else {
            Self::Io(err)
        }
    }
}

/// Writes `args` to stdout, flushed, so a closed pipe is seen at this write
/// and not at exit (where Rust ignores it, but after the command went on).
pub fn write(args: std::fmt::Arguments<'_>) -> Result<(), OutputError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args)?;
    stdout.flush()?;
    Ok(())
}

/// [`write`] for bytes made elsewhere (a generated script, a man page).
pub fn write_all(bytes: &[u8]) -> Result<(), OutputError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(())
}

/// Whether the error, or one of its causes, is a closed stdout.
pub fn is_closed_stdout(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(cause.downcast_ref(), Some(OutputError::Closed))
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether nobody reads stdout any more: a pipe whose reading end is closed
/// polls as `POLLERR`. Lets a command that prints only now and then
/// (`watch`) stop when its reader goes, not at its next line.
pub fn stdout_reader_gone() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout; poll only writes `revents`.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// `crate::outln!` to stdout, returning early with an [`OutputError`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!("\n"))?
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// `crate::out!` to stdout, returning early with an [`OutputError`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*))?
    };
}
