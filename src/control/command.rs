//! Commands to tmux: one quoting function for every argument, and typed
//! builders that each produce one command line.
//!
//! # Quoting
//!
//! tmux parses each control-mode input line with the same parser as a config
//! file (`cmd-parse.y`). Outside quotes it treats whitespace, `;`, `{`, `}`,
//! `#` (a comment at the start of a word), `%` (a directive at the start of a
//! word), `$VAR`, `~` (home directory) and `\` escapes specially. Inside single
//! quotes everything is literal up to the next `'`; inside double quotes `$`,
//! `\` and a `~` right after the opening quote are still expanded. [`quote`]
//! picks the plainest form that arrives byte-exact:
//!
//! 1. a word of only `[A-Za-z0-9_-./:,@+=]` goes bare;
//! 2. text without `'` or control characters goes in single quotes;
//! 3. anything else goes in double quotes with `\\`, `\"`, `\$`, `\~` and every
//!    ASCII control character (LF included) as a three-digit octal escape
//!    (`\012`). Control mode splits input on LF, so a raw newline can never be
//!    sent; the parser turns the escape back into the byte.
//!
//! A NUL character cannot be carried at all (tmux arguments are C strings):
//! builders reject it with [`CommandError::Nul`].
//!
//! # Formats
//!
//! tmux expands `#{...}` and runs `#(...)` in some arguments after parsing:
//! every `-F`, `display-message`'s message, `new-session -s` and `-c`. A user
//! string passed there must go through [`escape_format`] (which the builders
//! do where the argument is a name or path), or a session named `#(reboot)`
//! would run it. Option values are stored with `set-option -t $id -- name
//! value`, never `-F`, so they are not expanded.
//!
//! # What is not here, on purpose
//!
//! The connection matches replies to commands in FIFO order, one block per
//! line. So there is no raw-string constructor (a `;` in it would give two
//! blocks, a `#` a comment with none, an empty line would detach the client),
//! and no builder for `wait-for`, `run-shell` or `if-shell`: tmux answers them
//! with an immediate `%begin`/`%end` and then blocks the queue (`wait-for`,
//! `run-shell` without `-b`) or runs more commands later as extra flags = 1
//! blocks (`if-shell`), which breaks FIFO matching. Nor `refresh-client -C`:
//! a control client that sends it starts sizing windows.

use std::fmt::{self, Write as _};

use super::message::{PaneId, SessionId, WindowId};

/// Quotes `arg` so that tmux's command parser turns it back into exactly
/// `arg`, as one argument. See the [module documentation](self) for the forms.
///
/// The result never contains a raw LF or CR. A NUL character cannot be
/// represented (it comes out as `\000`, at which tmux cuts the argument);
/// the builders reject it instead.
pub fn quote(arg: &str) -> String {
    if !arg.is_empty() && arg.bytes().all(is_bare) {
        return arg.to_owned();
    }
    if !arg.chars().any(|c| c == '\'' || c.is_ascii_control()) {
        return format!("'{arg}'");
    }
    let mut quoted = String::with_capacity(arg.len() + 8);
    quoted.push('"');
    for c in arg.chars() {
        match c {
            '\\' | '"' | '$' | '~' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_ascii_control() => {
                // Infallible: writing to a String.
                let _ = write!(quoted, "\\{:03o}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Bytes that mean nothing special to tmux's parser anywhere in a word.
fn is_bare(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-./:,@+=".contains(&b)
}

/// Escapes `s` for an argument that tmux expands as a format, so that it comes
/// out literally: every `#` is doubled (`##` expands to `#`), so neither
/// `#{...}` nor `#(...)` in it is expanded or run.
///
/// `display-message` also passes its message through `strftime` first, where
/// `%` is special: see [`Command::display_message`].
pub fn escape_format(s: &str) -> String {
    s.replace('#', "##")
}

/// Why a command could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An argument contains a NUL character, which tmux cannot carry.
    #[error("a tmux argument cannot contain a NUL character: {argument:?}")]
    Nul {
        /// The offending argument.
        argument: String,
    },
    /// A subscription name is empty or contains `:` (tmux splits
    /// `name:what:format` at the first two colons).
    #[error("a subscription name must be non-empty and contain no ':': {name:?}")]
    SubscriptionName {
        /// The offending name.
        name: String,
    },
}

/// What `display-message -t` can target: a session (its active pane), a
/// window (its active pane) or a pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Session(SessionId),
    Window(WindowId),
    Pane(PaneId),
}

impl From<SessionId> for Target {
    fn from(id: SessionId) -> Self {
        Target::Session(id)
    }
}

impl From<WindowId> for Target {
    fn from(id: WindowId) -> Self {
        Target::Window(id)
    }
}

impl From<PaneId> for Target {
    fn from(id: PaneId) -> Self {
        Target::Pane(id)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Session(id) => id.fmt(f),
            Target::Window(id) => id.fmt(f),
            Target::Pane(id) => id.fmt(f),
        }
    }
}

/// What a `refresh-client -B` subscription reports on (the `what` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionScope {
    /// The client's attached session (empty `what`). With a `#{S:...}` loop
    /// in the format, this watches every session.
    Session,
    /// One pane (`%N`).
    Pane(PaneId),
    /// Every pane of the attached session (`%*`).
    AllPanes,
    /// One window (`@N`).
    Window(WindowId),
    /// Every window of the attached session (`@*`).
    AllWindows,
}

impl fmt::Display for SubscriptionScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionScope::Session => Ok(()),
            SubscriptionScope::Pane(id) => id.fmt(f),
            SubscriptionScope::AllPanes => f.write_str("%*"),
            SubscriptionScope::Window(id) => id.fmt(f),
            SubscriptionScope::AllWindows => f.write_str("@*"),
        }
    }
}

/// One tmux command, rendered as exactly one line: never empty, never
/// containing LF or CR, every argument quoted. Built only by the constructors
/// below; write it followed by one LF (the codec's `Encoder` does).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Command {
    line: String,
}

/// Assembles a command line from a command name and its arguments.
struct Line(String);

impl Line {
    fn new(name: &'static str) -> Self {
        Line(name.to_owned())
    }

    /// A fixed flag or `--`, written as is.
    fn flag(mut self, flag: &'static str) -> Self {
        self.0.push(' ');
        self.0.push_str(flag);
        self
    }

    /// An argument from anywhere, quoted; rejected if it holds a NUL.
    fn arg(mut self, arg: &str) -> Result<Self, CommandError> {
        if arg.contains('\0') {
            return Err(CommandError::Nul {
                argument: arg.to_owned(),
            });
        }
        self.0.push(' ');
        self.0.push_str(&quote(arg));
        Ok(self)
    }

    /// An id (`$3`, `@1`, `%7`) or number, quoted since `$` and `%` matter
    /// to the parser.
    fn id(mut self, id: impl fmt::Display) -> Self {
        self.0.push(' ');
        self.0.push_str(&quote(&id.to_string()));
        self
    }

    fn done(self) -> Command {
        Command { line: self.0 }
    }
}

impl Command {
    /// The command line, without its LF.
    pub fn as_str(&self) -> &str {
        &self.line
    }

    /// `list-sessions -F <format>`: one line per session.
    pub fn list_sessions(format: &str) -> Result<Command, CommandError> {
        Ok(Line::new("list-sessions").flag("-F").arg(format)?.done())
    }

    /// `list-clients -F <format>`: one line per client (control clients too).
    pub fn list_clients(format: &str) -> Result<Command, CommandError> {
        Ok(Line::new("list-clients").flag("-F").arg(format)?.done())
    }

    /// `list-windows -t <session> -F <format>`: one line per window.
    pub fn list_windows(session: SessionId, format: &str) -> Result<Command, CommandError> {
        Ok(Line::new("list-windows")
            .flag("-t")
            .id(session)
            .flag("-F")
            .arg(format)?
            .done())
    }

    /// `list-panes -s -t <session> -F <format>`: one line per pane of every
    /// window of the session.
    pub fn list_panes(session: SessionId, format: &str) -> Result<Command, CommandError> {
        Ok(Line::new("list-panes")
            .flag("-s")
            .flag("-t")
            .id(session)
            .flag("-F")
            .arg(format)?
            .done())
    }

    /// `display-message -p -t <target> -F <format>`: the format expanded for
    /// the target, as one reply line (or more if a value holds newlines).
    ///
    /// tmux runs the format through `strftime` before expanding it, so a `%`
    /// meant literally must be written `%%`, and user text must go through
    /// [`escape_format`].
    pub fn display_message(
        target: impl Into<Target>,
        format: &str,
    ) -> Result<Command, CommandError> {
        Ok(Line::new("display-message")
            .flag("-p")
            .flag("-t")
            .id(target.into())
            .flag("-F")
            .arg(format)?
            .done())
    }

    /// `show-options -v -t <session> -- <name>`: the session option's value.
    /// An unset user option is an error reply.
    pub fn show_option(session: SessionId, name: &str) -> Result<Command, CommandError> {
        Ok(Line::new("show-options")
            .flag("-v")
            .flag("-t")
            .id(session)
            .flag("--")
            .arg(name)?
            .done())
    }

    /// `show-options -t <session>`: every option set on the session itself,
    /// one per line, values quoted so that each stays on its line (read them
    /// with [`crate::control::options::parse_options`]).
    pub fn show_options(session: SessionId) -> Command {
        Line::new("show-options").flag("-t").id(session).done()
    }

    /// `show-options -gv -- <name>`: the global session option's value.
    pub fn show_global_option(name: &str) -> Result<Command, CommandError> {
        Ok(Line::new("show-options")
            .flag("-gv")
            .flag("--")
            .arg(name)?
            .done())
    }

    /// `set-option -t <session> -- <name> <value>`: the value is stored as
    /// given (no `-F`, so no format expansion), byte-exact.
    pub fn set_option(
        session: SessionId,
        name: &str,
        value: &str,
    ) -> Result<Command, CommandError> {
        Ok(Line::new("set-option")
            .flag("-t")
            .id(session)
            .flag("--")
            .arg(name)?
            .arg(value)?
            .done())
    }

    /// `set-option -g -- <name> <value>`: a global session option.
    pub fn set_global_option(name: &str, value: &str) -> Result<Command, CommandError> {
        Ok(Line::new("set-option")
            .flag("-g")
            .flag("--")
            .arg(name)?
            .arg(value)?
            .done())
    }

    /// `set-option -u -t <session> -- <name>`: unsets a session option.
    pub fn unset_option(session: SessionId, name: &str) -> Result<Command, CommandError> {
        Ok(Line::new("set-option")
            .flag("-u")
            .flag("-t")
            .id(session)
            .flag("--")
            .arg(name)?
            .done())
    }

    /// `set-option -gu -- <name>`: unsets a global option.
    pub fn unset_global_option(name: &str) -> Result<Command, CommandError> {
        Ok(Line::new("set-option")
            .flag("-gu")
            .flag("--")
            .arg(name)?
            .done())
    }

    /// `refresh-client -B <name>:<what>:<format>`: subscribes to a format;
    /// tmux checks it every second and sends `%subscription-changed` when its
    /// value changes. The name must be non-empty and contain no `:`.
    pub fn subscribe(
        name: &str,
        scope: SubscriptionScope,
        format: &str,
    ) -> Result<Command, CommandError> {
        check_subscription_name(name)?;
        Ok(Line::new("refresh-client")
            .flag("-B")
            .arg(&format!("{name}:{scope}:{format}"))?
            .done())
    }

    /// `refresh-client -B <name>`: removes a subscription.
    pub fn unsubscribe(name: &str) -> Result<Command, CommandError> {
        check_subscription_name(name)?;
        Ok(Line::new("refresh-client").flag("-B").arg(name)?.done())
    }

    /// `kill-session -t <session>`
    pub fn kill_session(session: SessionId) -> Command {
        Line::new("kill-session").flag("-t").id(session).done()
    }

    /// `has-session -t <session>`: an error reply if the session is gone.
    pub fn has_session(session: SessionId) -> Command {
        Line::new("has-session").flag("-t").id(session).done()
    }

    /// `capture-pane -p -J -t <pane> -S <start>`: the pane's text (no escape
    /// sequences, wrapped lines joined) from line `start` (negative: into the
    /// history) to the bottom of the screen.
    pub fn capture_pane(pane: PaneId, start: i64) -> Command {
        Line::new("capture-pane")
            .flag("-p")
            .flag("-J")
            .flag("-t")
            .id(pane)
            .flag("-S")
            .id(start)
            .done()
    }

    /// `detach-client -t <client>`, the client named as in `list-clients`
    /// (`/dev/pts/3`, `client-1234`).
    pub fn detach_client(client: &str) -> Result<Command, CommandError> {
        Ok(Line::new("detach-client").flag("-t").arg(client)?.done())
    }

    /// `kill-server`
    pub fn kill_server() -> Command {
        Line::new("kill-server").done()
    }

    /// `new-session -d -P -F '#{session_id}' -s <name> [-c <directory>]`: a
    /// detached session; the reply's one line is its id. tmux expands formats
    /// in `-s` and `-c`, so both are passed through [`escape_format`]. tmux
    /// itself changes some bytes of a session name (`.` and `:` to `_`, and
    /// vis-escapes control characters and `$`).
    pub fn new_session(name: &str, start_directory: Option<&str>) -> Result<Command, CommandError> {
        let line = Line::new("new-session")
            .flag("-d")
            .flag("-P")
            .flag("-F")
            .arg("#{session_id}")?
            .flag("-s")
            .arg(&escape_format(name))?;
        let line = match start_directory {
            Some(directory) => line.flag("-c").arg(&escape_format(directory))?,
            None => line,
        };
        Ok(line.done())
    }
}

fn check_subscription_name(name: &str) -> Result<(), CommandError> {
    if name.is_empty() || name.contains(':') {
        return Err(CommandError::SubscriptionName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;

    #[test]
    fn quote_picks_the_plainest_safe_form() {
        let table = [
            ("abc", "abc"),
            (schema::session::GROUP, schema::session::GROUP),
            ("/tmp/x.y,z:1+2=3", "/tmp/x.y,z:1+2=3"),
            ("-x", "-x"),
            ("", "''"),
            ("a b", "'a b'"),
            ("$3", "'$3'"),
            ("%3", "'%3'"),
            ("~", "'~'"),
            (
                "#{session_id}\t#{session_name}",
                "\"#{session_id}\\011#{session_name}\"",
            ),
            ("a;b", "'a;b'"),
            ("{", "'{'"),
            ("\\", "'\\'"),
            ("$HOME \"x\"", "'$HOME \"x\"'"),
            ("café ☃", "'café ☃'"),
            ("it's", "\"it's\""),
            (
                "it's $HOME ~ \\ \"q\"",
                "\"it's \\$HOME \\~ \\\\ \\\"q\\\"\"",
            ),
            ("a\nb", "\"a\\012b\""),
            ("\r\x1b\x7f", "\"\\015\\033\\177\""),
            ("\u{85}", "'\u{85}'"),
        ];
        for (arg, quoted) in table {
            assert_eq!(quote(arg), quoted, "{arg:?}");
        }
    }

    #[test]
    fn quote_never_emits_a_line_break() {
        let nasty: String = (1u8..0x80).map(char::from).collect();
        for arg in [nasty.as_str(), "\n", "\r\n", "x\n%end 1 2 1\n"] {
            let quoted = quote(arg);
            assert!(!quoted.contains(['\n', '\r']), "{quoted:?}");
        }
    }

    #[test]
    fn escape_format_doubles_hashes() {
        assert_eq!(
            escape_format("#{session_name} #(touch x) ##"),
            "##{session_name} ##(touch x) ####"
        );
        assert_eq!(escape_format("plain"), "plain");
    }

    #[test]
    fn builders_render_one_line_each() -> Result<(), CommandError> {
        let s = SessionId(3);
        let table = [
            (
                Command::list_sessions("#{session_id}")?,
                "list-sessions -F '#{session_id}'",
            ),
            (
                Command::list_clients("#{client_name}")?,
                "list-clients -F '#{client_name}'",
            ),
            (
                Command::list_windows(s, "#{window_id}")?,
                "list-windows -t '$3' -F '#{window_id}'",
            ),
            (
                Command::list_panes(s, "#{pane_id}")?,
                "list-panes -s -t '$3' -F '#{pane_id}'",
            ),
            (
                Command::display_message(PaneId(4), "#{pane_pid}")?,
                "display-message -p -t '%4' -F '#{pane_pid}'",
            ),
            (
                Command::show_option(s, schema::session::GROUP)?,
                "show-options -v -t '$3' -- @agent-group",
            ),
            (
                Command::show_global_option(schema::global::MCP)?,
                "show-options -gv -- @agent-mcp",
            ),
            (
                Command::set_option(s, schema::session::GROUP, "-g x")?,
                "set-option -t '$3' -- @agent-group '-g x'",
            ),
            (
                Command::set_global_option(schema::global::DAEMON, "running")?,
                "set-option -g -- @agent-daemon running",
            ),
            (
                Command::unset_option(s, schema::session::GROUP)?,
                "set-option -u -t '$3' -- @agent-group",
            ),
            (
                Command::unset_global_option(schema::global::DAEMON)?,
                "set-option -gu -- @agent-daemon",
            ),
            (
                Command::subscribe("st", SubscriptionScope::Session, "#{S:#{session_id};}")?,
                "refresh-client -B 'st::#{S:#{session_id};}'",
            ),
            (
                Command::subscribe("p", SubscriptionScope::AllPanes, "#{pane_id}")?,
                "refresh-client -B 'p:%*:#{pane_id}'",
            ),
            (
                Command::subscribe(
                    "w",
                    SubscriptionScope::Window(WindowId(2)),
                    "#{window_name}",
                )?,
                "refresh-client -B 'w:@2:#{window_name}'",
            ),
            (Command::unsubscribe("st")?, "refresh-client -B st"),
            (Command::kill_session(s), "kill-session -t '$3'"),
            (Command::has_session(s), "has-session -t '$3'"),
            (
                Command::capture_pane(PaneId(0), -100),
                "capture-pane -p -J -t '%0' -S -100",
            ),
            (
                Command::detach_client("/dev/pts/3")?,
                "detach-client -t /dev/pts/3",
            ),
            (Command::kill_server(), "kill-server"),
            (
                Command::new_session("x'; kill-server; '#(reboot)", Some("/tmp/a b"))?,
                "new-session -d -P -F '#{session_id}' -s \"x'; kill-server; '##(reboot)\" -c '/tmp/a b'",
            ),
        ];
        for (command, line) in table {
            assert_eq!(command.as_str(), line);
            assert_eq!(command.to_string(), line);
        }
        Ok(())
    }

    #[test]
    fn builders_reject_what_tmux_cannot_carry() {
        assert_eq!(
            Command::set_option(SessionId(1), "@x", "a\0b"),
            Err(CommandError::Nul {
                argument: "a\0b".to_owned()
            })
        );
        assert!(Command::new_session("n\0", None).is_err());
        for name in ["", "a:b", ":"] {
            assert_eq!(
                Command::unsubscribe(name),
                Err(CommandError::SubscriptionName {
                    name: name.to_owned()
                })
            );
            assert!(Command::subscribe(name, SubscriptionScope::Session, "x").is_err());
        }
    }
}
