//! Where tmux-agent keeps files, following the XDG base directory rules.

use std::path::PathBuf;

use crate::control::server::ServerSocket;

fn home() -> PathBuf {
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

/// A short, file-name-safe name for a tmux server, for per-server files.
pub fn server_key(server: &ServerSocket) -> String {
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

/// The outbox database of the daemon on `server`.
pub fn outbox(server: &ServerSocket) -> PathBuf {
    state_dir().join(format!("outbox-{}.db", server_key(server)))
}

/// The log file of a detached daemon on `server`.
pub fn daemon_log(server: &ServerSocket) -> PathBuf {
    state_dir().join(format!("daemon-{}.log", server_key(server)))
}
