//! Where a daemon listens, and the lock that makes it the only one for its
//! tmux server.
//!
//! # Files
//!
//! In a runtime directory of mode 0700 owned by the user,
//! `$XDG_RUNTIME_DIR/tmux-agent/`, or `/tmp/tmux-agent-<uid>/` without
//! `$XDG_RUNTIME_DIR`:
//!
//! - `<key>.lock`: held with `flock` by the running daemon, and holding its
//!   pid. The kernel drops the lock when the process dies, however it dies.
//! - `<key>.sock`: the daemon's socket, mode 0600.
//!
//! `<key>` names the tmux server: a readable part (the socket's file name)
//! and a hash of the socket's full path, so `-S /a/x` and `-S /b/x` are two
//! servers while `-L work` and `$TMUX` naming the same socket are one. It is
//! [`crate::paths::server_key`], the same key as the outbox and the log, so
//! a socket and the state files it goes with always agree.
//!
//! A socket file left by a daemon that was killed (SIGKILL) is stale: the
//! lock is free, so the next daemon takes the lock, removes the file and binds
//! afresh. A CLI that finds the file but no listener says the daemon is not
//! running.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::control::server::ServerSocket;

/// How long a starting daemon retries a lock held only for a moment (a CLI
/// probing whether a daemon runs holds it for microseconds).
const LOCK_PATIENCE: Duration = Duration::from_millis(300);

/// Errors finding or claiming the daemon's files.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Another daemon holds the lock for this server.
    #[error("a tmux-agent daemon is already running for `{server}` ({})", holder(.pid))]
    Held { server: String, pid: Option<u32> },
    /// The runtime directory is not safe to use.
    #[error("refusing to use {}: {reason}", path.display())]
    UnsafeDir { path: PathBuf, reason: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn holder(pid: &Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid not known yet".to_owned(),
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EndpointError {
    let path = path.to_path_buf();
    move |source| EndpointError::Io { what, path, source }
}

/// The files of one tmux server's daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The tmux server, for messages (`tmux -L work`).
    pub server: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub lock: PathBuf,
}

impl Endpoint {
    /// The files for `server`, in the user's runtime directory. Nothing is
    /// created.
    pub fn for_server(server: &ServerSocket) -> Self {
        Self::in_dir(runtime_dir(), server)
    }

    /// The files for `server` in `dir` (tests).
    pub fn in_dir(dir: PathBuf, server: &ServerSocket) -> Self {
        let key = server_key(server);
        Self {
            server: server.to_string(),
            socket: dir.join(format!("{key}.sock")),
            lock: dir.join(format!("{key}.lock")),
            dir,
        }
    }

    /// Creates the runtime directory (0700) if needed and checks that it is
    /// a directory of ours that nobody else can enter.
    pub fn prepare_dir(&self) -> Result<(), EndpointError> {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
        {
            Ok(()) => {}
            Err(err) => return Err(io("creating", &self.dir)(err)),
        }
        let meta = std::fs::symlink_metadata(&self.dir).map_err(io("reading", &self.dir))?;
        let unsafe_dir = |reason: String| EndpointError::UnsafeDir {
            path: self.dir.clone(),
            reason,
        };
        if !meta.is_dir() {
            return Err(unsafe_dir("it is not a directory".into()));
        }
        let uid = effective_uid();
        if meta.uid() != uid {
            return Err(unsafe_dir(format!(
                "it belongs to uid {}, not to you (uid {uid})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            // Ours but too open (made by hand, or by a umask): close it.
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io("restricting", &self.dir))?;
        }
        Ok(())
    }
}

/// `$XDG_RUNTIME_DIR/tmux-agent`, or `/tmp/tmux-agent-<uid>`.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        Some(dir) => dir.join("tmux-agent"),
        None => PathBuf::from(format!("/tmp/tmux-agent-{}", effective_uid())),
    }
}

/// The file-name key of a tmux server; the one key of every per-server
/// file, defined in [`crate::paths::server_key`].
pub use crate::paths::server_key;

pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The held lock of the one daemon for a tmux server. Dropping it (or the
/// process dying) releases it.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
    endpoint: Endpoint,
}

impl DaemonLock {
    /// Takes the lock for `endpoint`, writing our pid into it, or says who
    /// holds it.
    pub fn acquire(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        endpoint.prepare_dir()?;
        let mut file = open_lock(&endpoint.lock)?;
        let deadline = Instant::now() + LOCK_PATIENCE;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(EndpointError::Held {
                        server: endpoint.server.clone(),
                        pid: read_pid(&mut file),
                    });
                }
                Err(std::fs::TryLockError::Error(err)) => {
                    return Err(io("locking", &endpoint.lock)(err));
                }
            }
        }
        file.set_len(0).map_err(io("writing", &endpoint.lock))?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io("writing", &endpoint.lock))?;
        Ok(Self {
            _file: file,
            endpoint: endpoint.clone(),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Whether a daemon holds the lock of `endpoint`, and its pid if it wrote
/// it. Takes the lock for a moment when it is free (a starting daemon
/// retries for [`LOCK_PATIENCE`], so this cannot turn it away).
pub fn lock_holder(endpoint: &Endpoint) -> Result<Option<Option<u32>>, EndpointError> {
    if !endpoint.lock.exists() {
        return Ok(None);
    }
    let mut file = match OpenOptions::new().read(true).open(&endpoint.lock) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io("opening", &endpoint.lock)(err)),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(None),
        Err(std::fs::TryLockError::WouldBlock) => Ok(Some(read_pid(&mut file))),
        Err(std::fs::TryLockError::Error(err)) => Err(io("probing", &endpoint.lock)(err)),
    }
}

fn open_lock(path: &Path) -> Result<File, EndpointError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io("opening", path))
}

fn read_pid(file: &mut File) -> Option<u32> {
    use std::io::Seek;
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lock_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint::in_dir(dir.path().join("rt"), &ServerSocket::Name("t".into()));
        assert_eq!(lock_holder(&endpoint).unwrap(), None);
        let held = DaemonLock::acquire(&endpoint).unwrap();
        let mode = std::fs::metadata(&endpoint.dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(
            lock_holder(&endpoint).unwrap(),
            Some(Some(std::process::id()))
        );
        match DaemonLock::acquire(&endpoint) {
            Err(EndpointError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("second lock: {other:?}"),
        }
        drop(held);
        assert_eq!(lock_holder(&endpoint).unwrap(), None);
        assert!(DaemonLock::acquire(&endpoint).is_ok());
    }

    #[test]
    fn an_open_runtime_dir_is_closed_and_foreign_or_odd_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rt = dir.path().join("rt");
        std::fs::create_dir(&rt).unwrap();
        std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o777)).unwrap();
        let endpoint = Endpoint::in_dir(rt.clone(), &ServerSocket::Name("t".into()));
        endpoint.prepare_dir().unwrap();
        assert_eq!(std::fs::metadata(&rt).unwrap().mode() & 0o777, 0o700);

        // A directory someone else made (say, in /tmp before we did).
        if effective_uid() == 0 {
            let theirs = dir.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let endpoint = Endpoint::in_dir(theirs, &ServerSocket::Name("t".into()));
            let err = endpoint.prepare_dir().unwrap_err().to_string();
            assert!(
                err.contains("belongs to uid 65534, not to you (uid 0)"),
                "{err}"
            );
            assert!(DaemonLock::acquire(&endpoint).is_err());
        }

        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let endpoint = Endpoint::in_dir(file, &ServerSocket::Name("t".into()));
        assert!(endpoint.prepare_dir().is_err());
    }
}
