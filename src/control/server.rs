//! Which tmux server to talk to, chosen the way tmux itself chooses: `-L
//! NAME`, `-S PATH`, else the server of `$TMUX`, else the default socket.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A tmux server, named the way the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSocket {
    /// tmux's default socket (`$TMUX_TMPDIR/tmux-UID/default`).
    Default,
    /// `-L NAME`: a named socket in tmux's socket directory.
    Name(String),
    /// `-S PATH`: a socket at an explicit path.
    Path(PathBuf),
}

impl ServerSocket {
    /// Picks the server from the global flags, then `$TMUX`, then the default.
    pub fn choose(name: Option<String>, path: Option<PathBuf>) -> Self {
        Self::choose_with_env(name, path, std::env::var_os("TMUX"))
    }

    /// [`Self::choose`] with `$TMUX` passed in, for tests.
    pub fn choose_with_env(
        name: Option<String>,
        path: Option<PathBuf>,
        tmux_env: Option<OsString>,
    ) -> Self {
        if let Some(path) = path {
            return Self::Path(path);
        }
        if let Some(name) = name {
            return Self::Name(name);
        }
        // `$TMUX` is `socket_path,server_pid,session_index`; a socket path
        // with a comma in it is cut short by tmux itself, so we do the same.
        match tmux_env.as_deref().and_then(|v| v.to_str()) {
            Some(value) if !value.is_empty() => {
                let socket = value.split(',').next().unwrap_or(value);
                Self::Path(PathBuf::from(socket))
            }
            _ => Self::Default,
        }
    }

    /// The arguments that select this server on a `tmux` command line.
    pub fn tmux_args(&self) -> Vec<OsString> {
        match self {
            Self::Default => Vec::new(),
            Self::Name(name) => vec!["-L".into(), name.into()],
            Self::Path(path) => vec!["-S".into(), path.into()],
        }
    }

    /// A `tmux` process aimed at this server, with a UTF-8 locale so tmux
    /// neither sanitises nor mangles non-ASCII output: for the control
    /// connection's long-lived `tmux -C`. One-shot commands go through
    /// [`super::oneshot`].
    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(tmux_binary());
        cmd.args(self.tmux_args()).env("LC_ALL", "C.UTF-8");
        cmd
    }

    /// Whether a tmux server answers on this socket: see
    /// [`OneShot::is_running`](super::oneshot::OneShot::is_running).
    pub async fn is_running(&self) -> std::io::Result<bool> {
        super::oneshot::OneShot::new(self.clone())
            .is_running()
            .await
    }

    /// The socket's path on disk, as tmux computes it: this is the key for
    /// "one daemon per tmux server".
    pub fn socket_path(&self) -> PathBuf {
        match self {
            Self::Path(path) => path.clone(),
            Self::Name(name) => socket_dir().join(name),
            Self::Default => socket_dir().join("default"),
        }
    }
}

impl std::fmt::Display for ServerSocket {
    /// The server as the `tmux` command line that reaches it: `tmux`,
    /// `tmux -L work`, `tmux -S /path`. Messages quote it in backticks so a
    /// person can paste it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => write!(f, "tmux"),
            Self::Name(name) => write!(f, "tmux -L {name}"),
            Self::Path(path) => write!(f, "tmux -S {}", path.display()),
        }
    }
}

/// The tmux binary: `$TMUX_AGENT_TMUX` when set (tests and unusual installs),
/// else `tmux` on `PATH`.
pub fn tmux_binary() -> OsString {
    std::env::var_os("TMUX_AGENT_TMUX").unwrap_or_else(|| "tmux".into())
}

/// tmux's socket directory: `$TMUX_TMPDIR` (or `/tmp`) plus `tmux-<uid>`.
fn socket_dir() -> PathBuf {
    let base = std::env::var_os("TMUX_TMPDIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/tmp").to_path_buf());
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    base.join(format!("tmux-{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_tmux_env() {
        let env = Some(OsString::from("/tmp/tmux-0/work,123,0"));
        assert_eq!(
            ServerSocket::choose_with_env(Some("x".into()), None, env.clone()),
            ServerSocket::Name("x".into())
        );
        assert_eq!(
            ServerSocket::choose_with_env(None, Some("/s".into()), env.clone()),
            ServerSocket::Path("/s".into())
        );
        assert_eq!(
            ServerSocket::choose_with_env(None, None, env),
            ServerSocket::Path("/tmp/tmux-0/work".into())
        );
        assert_eq!(
            ServerSocket::choose_with_env(None, None, None),
            ServerSocket::Default
        );
        assert_eq!(
            ServerSocket::choose_with_env(None, None, Some(OsString::new())),
            ServerSocket::Default
        );
    }
}
