//! Where tmux-agent keeps files, following the XDG base directory rules,
//! and the one name of a tmux server in every per-server file.
//!
//! Every file that belongs to one tmux server (the outbox, the detached
//! daemon's log, the IPC socket and lock in [`crate::ipc::endpoint`]) is
//! named by [`server_key`]: a readable part and a hash of the server's
//! canonical socket path. Naming them by the socket's file name alone made
//! `-L work` and `-S ~/sockets/work` share one outbox, so two daemons
//! claimed and re-sent each other's calls.
//!
//! The state these files hold is private (captured pane text, goals):
//! directories are made 0700 and files 0600 ([`private_dir`],
//! [`private_file`]), and existing ones made by older builds are closed.

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::control::server::ServerSocket;

/// The longest readable part of a key; Unix socket paths are limited to
/// about 108 bytes, and the socket is named by the key.
const KEY_NAME_MAX: usize = 32;

/// `$HOME` (or `/` without one).
pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home().join(fallback))
}

/// `$XDG_STATE_HOME/tmux-agent`: logs, the outbox, history.
pub fn state_dir() -> PathBuf {
    xdg("XDG_STATE_HOME", ".local/state").join("tmux-agent")
}

/// `$XDG_DATA_HOME/tmux-agent`: the built-in MCP server's database.
pub fn data_dir() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share").join("tmux-agent")
}

/// `$XDG_CONFIG_HOME/tmux-agent`: config.toml.
pub fn config_dir() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config").join("tmux-agent")
}

/// The socket's file name, made file-name-safe: the readable part of a
/// key, and the whole of the key older builds used.
fn readable_name(server: &ServerSocket) -> String {
    let path = server.socket_path();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "default".to_owned());
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The file-name key of a tmux server: its readable name, then a hash of
/// the socket's full (canonical) path. `-S /a/x` and `-S /b/x` are two
/// servers; `-L work` and `$TMUX` naming the same socket are one. The hash
/// is FNV-1a, fixed here, so a CLI and a daemon from different builds agree
/// on it.
pub fn server_key(server: &ServerSocket) -> String {
    let path = server.socket_path();
    let path = std::fs::canonicalize(&path)
        .or_else(|_| std::path::absolute(&path))
        .unwrap_or(path);
    let mut name = readable_name(server);
    if name.len() > KEY_NAME_MAX {
        let mut cut = KEY_NAME_MAX;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    format!("{name}-{:016x}", fnv1a(path.as_os_str().as_encoded_bytes()))
}

/// 64-bit FNV-1a: small, and the same in every build.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The outbox database of the daemon on `server`.
pub fn outbox(server: &ServerSocket) -> PathBuf {
    state_dir().join(outbox_file_name(&server_key(server)))
}

/// The mailbox database (`crate::messages::mailbox`) that goes with the
/// outbox at `outbox`: the same directory and server key.
pub fn mailbox_beside(outbox: &Path) -> PathBuf {
    let name = outbox
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = name
        .strip_prefix("outbox-")
        .and_then(|n| n.strip_suffix(".db"))
        .unwrap_or(&name);
    outbox.with_file_name(format!("mailbox-{key}.db"))
}

/// The mailbox database of the daemon on `server`.
pub fn mailbox(server: &ServerSocket) -> PathBuf {
    mailbox_beside(&outbox(server))
}

/// Where builds before the full key kept the outbox of `server`, in the
/// directory `dir` of the current one: named by the socket's file name
/// only, so possibly shared with other servers of the same name.
pub fn legacy_outbox(server: &ServerSocket, dir: &Path) -> PathBuf {
    dir.join(outbox_file_name(&readable_name(server)))
}

fn outbox_file_name(key: &str) -> String {
    format!("outbox-{key}.db")
}

/// The log of `tmux-agent hook` (what a hook could not do: it prints
/// nothing, so that the agent does not act on it).
pub fn hook_log() -> PathBuf {
    state_dir().join("hook.log")
}

/// The log file of a detached daemon on `server`.
pub fn daemon_log(server: &ServerSocket) -> PathBuf {
    state_dir().join(format!("daemon-{}.log", server_key(server)))
}

/// Creates `dir` (and its parents) if needed, and makes it 0700: what is in
/// it is nobody else's business. A directory made by an older build or by
/// a umask is closed.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    restrict(dir, 0o700)
}

/// Creates `file` if needed, empty and 0600, without truncating an existing
/// one, and makes an existing one 0600. Done before SQLite or a log writer
/// opens it, so the file is never readable by others, not even for a
/// moment.
pub fn private_file(file: &Path) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)?;
    restrict(file, 0o600)
}

/// Sets `mode` on `path` when it has more bits than that; a path that does
/// not exist is left alone.
pub fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if meta.permissions().mode() & 0o777 & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_distinct_and_short() {
        let a = server_key(&ServerSocket::Path("/a/x".into()));
        let b = server_key(&ServerSocket::Path("/b/x".into()));
        assert_ne!(a, b);
        assert!(a.starts_with("x-"), "{a}");
        assert_eq!(a, server_key(&ServerSocket::Path("/a/x".into())));
        // The published FNV-1a 64 test vectors: the key must not change
        // between builds, or a new CLI would not find an old daemon.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        let long = server_key(&ServerSocket::Name("é".repeat(100)));
        assert!(long.len() <= KEY_NAME_MAX + 17, "{long}");
    }

    #[test]
    fn per_server_files_use_the_full_key_and_the_legacy_name_the_short_one() {
        let a = ServerSocket::Path("/a/work".into());
        let b = ServerSocket::Path("/b/work".into());
        assert_ne!(outbox(&a), outbox(&b));
        assert_ne!(daemon_log(&a), daemon_log(&b));
        let name = outbox(&a)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(name, format!("outbox-{}.db", server_key(&a)));
        let dir = Path::new("/s");
        assert_eq!(legacy_outbox(&a, dir), Path::new("/s/outbox-work.db"));
        assert_eq!(legacy_outbox(&a, dir), legacy_outbox(&b, dir));
    }

    #[test]
    fn private_files_and_directories_are_closed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        let file = dir.join("f");
        std::fs::write(&file, "kept").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
        let new = dir.join("new");
        private_file(&new).unwrap();
        assert_eq!(mode(&new), 0o600);
    }
}
