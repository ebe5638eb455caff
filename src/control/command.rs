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
//! # Two renderings of one command
//!
//! A built [`Command`] goes to tmux either as a control-mode line
//! ([`Command::as_str`], for the daemon's connection) or as the argument
//! vector of a one-shot `tmux` process ([`Command::argv`], run by
//! [`crate::control::oneshot`]). Both carry the same arguments byte-exact,
//! and both refuse the same input: a NUL, at build time, so a `Command` that
//! exists renders both ways. Everything else (LF, ESC, any control
//! character) reaches tmux unchanged either way: control mode as an octal
//! escape, argv as the raw byte.
//!
//! tmux 3.3a parses an argv without its config-file parser
//! (`cmd_parse_from_arguments`): no quotes, `$`, `~`, `#` or `{`. One thing
//! only is special there: an argument *ending* in `;` ends the command (the
//! `;` is cut off; what is left, if anything, is the command's last
//! argument), except that one ending in `\;` stands for a literal `;` (the
//! `\` is dropped). So [`Command::argv`] writes an argument's trailing `;` as
//! `\;`, and tmux turns it back: `done;` goes as `done\;`, `a\;` as `a\\;`,
//! `x;;` as `x;\;` and `;` as `\;`. Commands are chained in one invocation
//! with a bare `;` argument between them ([`Command::chain_argv`]).
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

use std::borrow::Cow;
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

/// A session as a command's `-t` names it.
///
/// By id is the rule once a session is known: names prefix-match, and an id
/// is never reused by a server. The other forms are for what comes before
/// that: a session created under a temporary name, or a target a person
/// typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionTarget {
    /// `$3`.
    Id(SessionId),
    /// `=NAME`: the session named exactly NAME, never a prefix match.
    Exact(String),
    /// A target as a person typed it (`work`, `$3`, `=work`, `%1`,
    /// `work:2`), resolved by tmux's own rules.
    Given(String),
}

impl From<SessionId> for SessionTarget {
    fn from(id: SessionId) -> Self {
        SessionTarget::Id(id)
    }
}

impl SessionTarget {
    /// The target where tmux wants a session (`kill-session`,
    /// `rename-session`, `list-windows`).
    fn session_form(&self) -> String {
        match self {
            SessionTarget::Id(id) => id.to_string(),
            SessionTarget::Exact(name) => format!("={name}"),
            SessionTarget::Given(text) => text.clone(),
        }
    }

    /// The target of one of the session's windows: `=NAME:`, `=NAME:3`.
    /// An empty window part is the session's current window
    /// where a window must exist, and "the next free index" for
    /// `new-window`.
    fn window_form(&self, window: WindowPart) -> String {
        let session = self.session_form();
        match window {
            WindowPart::Current => format!("{session}:"),
            WindowPart::Index(index) => format!("{session}:{index}"),
        }
    }

    /// The target where tmux wants a pane (`set-option -t`): `=NAME` alone
    /// would first be tried as a window of the current session, `=NAME:` is
    /// "session NAME exactly, its current window". An id needs no suffix.
    fn pane_form(&self) -> String {
        match self {
            SessionTarget::Exact(name) => format!("={name}:"),
            other => other.session_form(),
        }
    }
}

/// Which window of a session a command targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowPart {
    /// The session's current window; for `new-window`, the next free index.
    Current,
    /// The window with this index.
    Index(u32),
}

/// What a new pane starts with, for `new-session`, `new-window` and
/// `split-window`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spawn {
    /// `-c`: the start directory. tmux expands formats in it, so it is
    /// passed through [`escape_format`].
    pub directory: Option<String>,
    /// `-e NAME=VALUE` each: set in the new pane's environment (for
    /// `new-session`, the session's). Not expanded.
    pub environment: Vec<(String, String)>,
    /// After `--`: one word runs through the shell, several run directly;
    /// none: the default shell. Not expanded.
    pub command: Vec<String>,
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

/// One tmux command. As a control-mode line ([`Command::as_str`]) it is
/// exactly one line: never empty, never containing LF or CR, every argument
/// quoted; write it followed by one LF (the codec's `Encoder` does). As an
/// argv ([`Command::argv`]) it is for a one-shot `tmux` process. Built only
/// by the constructors below.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Command {
    /// The control-mode line.
    line: String,
    /// The same arguments as tmux must receive them, the command's name
    /// first: no quoting, no argv escaping.
    args: Vec<String>,
}

/// Assembles a command from its name and arguments, in both renderings.
struct Line {
    line: String,
    args: Vec<String>,
}

impl Line {
    fn new(name: &'static str) -> Self {
        Line {
            line: name.to_owned(),
            args: vec![name.to_owned()],
        }
    }

    /// A fixed flag or `--`, written as is.
    fn flag(mut self, flag: &'static str) -> Self {
        self.line.push(' ');
        self.line.push_str(flag);
        self.args.push(flag.to_owned());
        self
    }

    /// An argument from anywhere, quoted; rejected if it holds a NUL.
    fn arg(mut self, arg: &str) -> Result<Self, CommandError> {
        if arg.contains('\0') {
            return Err(CommandError::Nul {
                argument: arg.to_owned(),
            });
        }
        self.line.push(' ');
        self.line.push_str(&quote(arg));
        self.args.push(arg.to_owned());
        Ok(self)
    }

    /// An id (`$3`, `@1`, `%7`) or number, quoted since `$` and `%` matter
    /// to the parser.
    fn id(mut self, id: impl fmt::Display) -> Self {
        let id = id.to_string();
        self.line.push(' ');
        self.line.push_str(&quote(&id));
        self.args.push(id);
        self
    }

    /// `-c DIR`, `-e NAME=VALUE`… and `-- COMMAND…` of a new pane.
    fn spawn(self, spawn: &Spawn) -> Result<Self, CommandError> {
        let mut line = match &spawn.directory {
            Some(directory) => self.flag("-c").arg(&escape_format(directory))?,
            None => self,
        };
        for (name, value) in &spawn.environment {
            line = line.flag("-e").arg(&format!("{name}={value}"))?;
        }
        if !spawn.command.is_empty() {
            line = line.flag("--");
            for word in &spawn.command {
                line = line.arg(word)?;
            }
        }
        Ok(line)
    }

    fn done(self) -> Command {
        Command {
            line: self.line,
            args: self.args,
        }
    }
}

/// Makes `arg` reach tmux unchanged as one argv element: a trailing `;`
/// would otherwise end the command (see the [module docs](self)).
fn argv_arg(arg: &str) -> Cow<'_, str> {
    match arg.strip_suffix(';') {
        Some(rest) => Cow::Owned(format!("{rest}\\;")),
        None => Cow::Borrowed(arg),
    }
}

impl Command {
    /// The command line, without its LF.
    pub fn as_str(&self) -> &str {
        &self.line
    }

    /// The command's name (`set-option`), for messages.
    pub fn name(&self) -> &str {
        &self.args[0]
    }

    /// The command as arguments of a one-shot `tmux` process (after the
    /// server flags), each arriving byte-exact: see the [module
    /// docs](self#two-renderings-of-one-command).
    pub fn argv(&self) -> Vec<String> {
        self.args.iter().map(|a| argv_arg(a).into_owned()).collect()
    }

    /// Several commands as one `tmux` invocation, separated by `;`
    /// arguments: tmux runs them in order, without any other client's
    /// commands in between, and stops at the first that fails.
    pub fn chain_argv(commands: &[Command]) -> Vec<String> {
        let mut argv = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            if i > 0 {
                argv.push(";".to_owned());
            }
            argv.extend(command.argv());
        }
        argv
    }

    /// `list-sessions -F <format>`: one line per session.
    pub fn list_sessions(format: &str) -> Result<Command, CommandError> {
        Ok(Line::new("list-sessions").flag("-F").arg(format)?.done())
    }

    /// `list-clients -F <format>`: one line per client (control clients too).
    pub fn list_clients(format: &str) -> Result<Command, CommandError> {
        Ok(Line::new("list-clients").flag("-F").arg(format)?.done())
    }

    /// `list-windows -t <session> -F <format>`: one line per window. With a
    /// [`SessionTarget::Given`], this is how a target a person typed is
    /// resolved to its session: `-t` here takes any session target (a name,
    /// `=name`, `$3`, a pane id, `session:window`).
    pub fn list_windows(
        session: impl Into<SessionTarget>,
        format: &str,
    ) -> Result<Command, CommandError> {
        Ok(Line::new("list-windows")
            .flag("-t")
            .arg(&session.into().session_form())?
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

    /// `list-panes -a -F <format>`: one line per pane of the whole server.
    pub fn list_all_panes(format: &str) -> Result<Command, CommandError> {
        Ok(Line::new("list-panes")
            .flag("-a")
            .flag("-F")
            .arg(format)?
            .done())
    }

    /// `display-message -p -F <format>`: the format expanded with no target,
    /// for what belongs to the server (`#{version}`, `#{pid}`); anything
    /// about a session would be tmux's guess of the current one.
    pub fn display_server(format: &str) -> Result<Command, CommandError> {
        Ok(Line::new("display-message")
            .flag("-p")
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

    /// `show-options -q -v -t <session> -- <name>`: the session option's
    /// value, or no output at all when it is unset (a set value, even an
    /// empty one, is followed by a newline).
    pub fn show_option_if_set(session: SessionId, name: &str) -> Result<Command, CommandError> {
        Ok(Line::new("show-options")
            .flag("-q")
            .flag("-v")
            .flag("-t")
            .id(session)
            .flag("--")
            .arg(name)?
            .done())
    }

    /// `show-options -g`: every global session option, quoted like
    /// [`Command::show_options`].
    pub fn show_global_options() -> Command {
        Line::new("show-options").flag("-g").done()
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
        session: impl Into<SessionTarget>,
        name: &str,
        value: &str,
    ) -> Result<Command, CommandError> {
        Self::session_option(Line::new("set-option"), session.into(), name, value)
    }

    /// `set-option -o -t <session> -- <name> <value>`: sets the option only
    /// if the session has no value of its own (tmux answers "already set").
    pub fn set_option_if_unset(
        session: impl Into<SessionTarget>,
        name: &str,
        value: &str,
    ) -> Result<Command, CommandError> {
        Self::session_option(
            Line::new("set-option").flag("-o"),
            session.into(),
            name,
            value,
        )
    }

    /// The `-t <session> -- <name> <value>` that ends both session
    /// `set-option`s, after whatever flags `line` already has.
    fn session_option(
        line: Line,
        session: SessionTarget,
        name: &str,
        value: &str,
    ) -> Result<Command, CommandError> {
        Ok(line
            .flag("-t")
            .arg(&session.pane_form())?
            .flag("--")
            .arg(name)?
            .arg(value)?
            .done())
    }

    /// `set-option -p -t <pane> -- <name> <value>`: a pane option, stored
    /// as given (no `-F`).
    pub fn set_pane_option(pane: PaneId, name: &str, value: &str) -> Result<Command, CommandError> {
        Ok(Line::new("set-option")
            .flag("-p")
            .flag("-t")
            .id(pane)
            .flag("--")
            .arg(name)?
            .arg(value)?
            .done())
    }

    /// `set-option -pu -t <pane> -- <name>`: unsets a pane option.
    pub fn unset_pane_option(pane: PaneId, name: &str) -> Result<Command, CommandError> {
        Ok(Line::new("set-option")
            .flag("-pu")
            .flag("-t")
            .id(pane)
            .flag("--")
            .arg(name)?
            .done())
    }

    /// `switch-client [-c <client>] -t <pane>`: shows the pane's session,
    /// window and pane on the client (without `-c`, tmux's best guess of
    /// the current client).
    pub fn switch_client(client: Option<&str>, pane: PaneId) -> Result<Command, CommandError> {
        let mut line = Line::new("switch-client");
        if let Some(client) = client {
            line = line.flag("-c").arg(client)?;
        }
        Ok(line.flag("-t").id(pane).done())
    }

    /// `display-message -c <client> -- <text>`: a message on the client's
    /// status line. The text is shown literally (`#` doubled, `%` too, see
    /// [`Command::display_message`]).
    pub fn tell_client(client: &str, text: &str) -> Result<Command, CommandError> {
        Ok(Line::new("display-message")
            .flag("-c")
            .arg(client)?
            .flag("--")
            .arg(&escape_format(text).replace('%', "%%"))?
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

    /// `set-hook -g <hook> <command>`: `hook` may carry an index
    /// (`session-created[7]`), which leaves the hook's other commands.
    pub fn set_global_hook(hook: &str, command: &str) -> Result<Command, CommandError> {
        Ok(Line::new("set-hook")
            .flag("-g")
            .arg(hook)?
            .arg(command)?
            .done())
    }

    /// `set-hook -gu <hook>`: removes the hook (at its index, if given).
    pub fn unset_global_hook(hook: &str) -> Result<Command, CommandError> {
        Ok(Line::new("set-hook").flag("-gu").arg(hook)?.done())
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

    /// `kill-session -t =<name>`: the session named exactly `name`.
    pub fn kill_session_named(name: &str) -> Result<Command, CommandError> {
        Ok(Line::new("kill-session")
            .flag("-t")
            .arg(&SessionTarget::Exact(name.to_owned()).session_form())?
            .done())
    }

    /// `new-session -A -s <name> -f no-output,ignore-size <pane command>`:
    /// the command line of the daemon's `tmux -C` client (see
    /// `docs/ARCHITECTURE.md`, protocol rules). `-A` joins the session if
    /// it exists, else creates it running `pane_command`; the client flags
    /// keep pane output away from it and its size out of every window's.
    /// The name is passed through [`escape_format`], as in
    /// [`Command::new_session`].
    pub fn control_session(name: &str, pane_command: &str) -> Result<Command, CommandError> {
        Ok(Line::new("new-session")
            .flag("-A")
            .flag("-s")
            .arg(&escape_format(name))?
            .flag("-f")
            .flag("no-output,ignore-size")
            .arg(pane_command)?
            .done())
    }

    /// `rename-session -t <session> -- <name>`. tmux expands formats in the
    /// new name, so it goes through [`escape_format`]; tmux itself changes
    /// some bytes of it, as for [`Command::new_session`].
    pub fn rename_session(
        session: impl Into<SessionTarget>,
        name: &str,
    ) -> Result<Command, CommandError> {
        Self::rename_session_format(session.into(), &escape_format(name))
    }

    /// `rename-session -t <session> -- '#{s/[$]//:session_id}'`: names the
    /// session after its id number, which is what tmux calls a session
    /// created without `-s`.
    pub fn rename_session_to_number(
        session: impl Into<SessionTarget>,
    ) -> Result<Command, CommandError> {
        Self::rename_session_format(session.into(), "#{s/[$]//:session_id}")
    }

    fn rename_session_format(
        session: SessionTarget,
        format: &str,
    ) -> Result<Command, CommandError> {
        Ok(Line::new("rename-session")
            .flag("-t")
            .arg(&session.session_form())?
            .flag("--")
            .arg(format)?
            .done())
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

    /// `load-buffer -b <name> -`: a paste buffer named `name` filled from
    /// the client's stdin. Only for a one-shot `tmux` process
    /// ([`crate::control::oneshot::OneShot::run_with_input`]): the body
    /// travels on stdin, byte-exact, and never in a command line (a control
    /// client has no stdin of its own to give).
    pub fn load_buffer_from_stdin(name: &str) -> Result<Command, CommandError> {
        Ok(Line::new("load-buffer")
            .flag("-b")
            .arg(name)?
            .flag("-")
            .done())
    }

    /// `paste-buffer -p -d -r -b <name> -t <pane>`: the buffer typed into
    /// the pane as a bracketed paste (`-p`, when the application asked for
    /// bracketed paste mode), then deleted (`-d`). `-r` keeps every LF an
    /// LF: without it tmux turns them into CR, and the text would not
    /// arrive byte-exact.
    pub fn paste_buffer(name: &str, pane: PaneId) -> Result<Command, CommandError> {
        Ok(Line::new("paste-buffer")
            .flag("-p")
            .flag("-d")
            .flag("-r")
            .flag("-b")
            .arg(name)?
            .flag("-t")
            .id(pane)
            .done())
    }

    /// `delete-buffer -b <name>`: a buffer that was loaded but not pasted.
    pub fn delete_buffer(name: &str) -> Result<Command, CommandError> {
        Ok(Line::new("delete-buffer").flag("-b").arg(name)?.done())
    }

    /// `send-keys -t <pane> -- <key>`: one key by tmux's name for it
    /// (`Enter`, `C-m`, `M-Enter`); a name tmux does not know is typed as
    /// its characters.
    pub fn send_key(pane: PaneId, key: &str) -> Result<Command, CommandError> {
        Ok(Line::new("send-keys")
            .flag("-t")
            .id(pane)
            .flag("--")
            .arg(key)?
            .done())
    }

    /// `capture-pane -p -J -t <target> -S <start>`: [`Command::capture_pane`]
    /// of a pane as a person named it (`%3`, `work`, `=work:`,
    /// `work:1.2`): tmux refuses a target that matches nothing ("can't
    /// find pane"), which `display-message -t` does not.
    pub fn capture_pane_of(target: &SessionTarget, start: i64) -> Result<Command, CommandError> {
        Ok(Line::new("capture-pane")
            .flag("-p")
            .flag("-J")
            .flag("-t")
            .arg(&target.pane_form())?
            .flag("-S")
            .id(start)
            .done())
    }

    /// `display-message -p -t <target> -F <format>` of a pane as a person
    /// named it. A target that matches nothing is no error here (an empty
    /// line, or the current pane's values): run it after a command that
    /// checks the target, such as [`Command::capture_pane_of`].
    pub fn display_message_of(
        target: &SessionTarget,
        format: &str,
    ) -> Result<Command, CommandError> {
        Ok(Line::new("display-message")
            .flag("-p")
            .flag("-t")
            .arg(&target.pane_form())?
            .flag("-F")
            .arg(format)?
            .done())
    }

    /// `show-messages`: tmux's message log, newest first; it holds every
    /// command any client ran (`client-123 command: ...`), up to
    /// `message-limit` lines. It needs a client, so it works over a control
    /// connection but not as a one-shot command.
    pub fn show_messages() -> Command {
        Line::new("show-messages").done()
    }

    /// `pipe-pane -O -o -t <pane> <shell command>`: the pane's output piped
    /// into `shell_command` (run by `/bin/sh -c`), unless the pane already
    /// has a pipe (`-o`), which is then left alone. tmux expands formats in
    /// the command, so it is passed through [`escape_format`].
    pub fn pipe_pane_out(pane: PaneId, shell_command: &str) -> Result<Command, CommandError> {
        Ok(Line::new("pipe-pane")
            .flag("-O")
            .flag("-o")
            .flag("-t")
            .id(pane)
            .arg(&escape_format(shell_command))?
            .done())
    }

    /// `pipe-pane -t <pane>`: closes the pane's pipe, if it has one.
    pub fn pipe_pane_close(pane: PaneId) -> Command {
        Line::new("pipe-pane").flag("-t").id(pane).done()
    }

    /// `display-message -c <client> -d <ms> <message>`: `message` shown in
    /// the client's status line for `duration_ms` (0: until a key is
    /// pressed). The text is shown literally: `#` and `%` are escaped for
    /// the format expansion and `strftime` that tmux runs it through.
    pub fn display_message_on(
        client: &str,
        duration_ms: u64,
        message: &str,
    ) -> Result<Command, CommandError> {
        Ok(Line::new("display-message")
            .flag("-c")
            .arg(client)?
            .flag("-d")
            .id(duration_ms)
            .flag("--")
            .arg(&escape_format(message).replace('%', "%%"))?
            .done())
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

    /// `new-session -d -P -F '#{session_id}' -s <name> [-n <window>] [-x W
    /// -y H] [-c <directory>] [-e NAME=VALUE]… [-- <command>...]`: a
    /// detached session; the reply's one line is its id. tmux expands
    /// formats in `-s`, `-n` and `-c`, so they are passed through
    /// [`escape_format`]; the command and environment are not expanded.
    /// tmux itself changes some bytes of a session name (`.` and `:` to `_`,
    /// and vis-escapes control characters and `$`). `size` also becomes the
    /// session's `default-size`, so later windows start that big.
    pub fn new_session(
        name: &str,
        window_name: Option<&str>,
        size: Option<(u32, u32)>,
        spawn: &Spawn,
    ) -> Result<Command, CommandError> {
        let mut line = Line::new("new-session")
            .flag("-d")
            .flag("-P")
            .flag("-F")
            .arg("#{session_id}")?
            .flag("-s")
            .arg(&escape_format(name))?;
        if let Some(window) = window_name {
            line = line.flag("-n").arg(&escape_format(window))?;
        }
        if let Some((width, height)) = size {
            line = line.flag("-x").id(width).flag("-y").id(height);
        }
        Ok(line.spawn(spawn)?.done())
    }

    /// `new-window -t <session>:[index] [-n <name>] [-c …] [-e …] [-- …]`:
    /// a window at `index` (or the next free one), made the session's
    /// current window. Formats in the name and directory are escaped.
    pub fn new_window(
        session: &SessionTarget,
        index: Option<u32>,
        name: Option<&str>,
        spawn: &Spawn,
    ) -> Result<Command, CommandError> {
        let window = index.map_or(WindowPart::Current, WindowPart::Index);
        let mut line = Line::new("new-window")
            .flag("-t")
            .arg(&session.window_form(window))?;
        if let Some(name) = name {
            line = line.flag("-n").arg(&escape_format(name))?;
        }
        Ok(line.spawn(spawn)?.done())
    }

    /// `split-window -t <session>:<window> [-c …] [-e …] [-- …]`: a new pane
    /// below the window's active pane, which it becomes.
    pub fn split_window(
        session: &SessionTarget,
        window: WindowPart,
        spawn: &Spawn,
    ) -> Result<Command, CommandError> {
        Ok(Line::new("split-window")
            .flag("-t")
            .arg(&session.window_form(window))?
            .spawn(spawn)?
            .done())
    }

    /// `select-layout -t <session>:<window> <layout>`: the window's panes
    /// arranged (and the window sized) as a `#{window_layout}` string says;
    /// tmux refuses one whose checksum or sizes are wrong.
    pub fn select_layout(
        session: &SessionTarget,
        window: WindowPart,
        layout: &str,
    ) -> Result<Command, CommandError> {
        Ok(Line::new("select-layout")
            .flag("-t")
            .arg(&session.window_form(window))?
            .arg(layout)?
            .done())
    }

    /// `select-window -t <session>:<window>`: makes it the current window.
    pub fn select_window(
        session: &SessionTarget,
        window: WindowPart,
    ) -> Result<Command, CommandError> {
        Ok(Line::new("select-window")
            .flag("-t")
            .arg(&session.window_form(window))?
            .done())
    }

    /// `move-window -s <session>:<from> -t <session>:<index>`: gives a
    /// window another index (which must be free).
    pub fn move_window(
        session: &SessionTarget,
        from: WindowPart,
        index: u32,
    ) -> Result<Command, CommandError> {
        Ok(Line::new("move-window")
            .flag("-s")
            .arg(&session.window_form(from))?
            .flag("-t")
            .arg(&session.window_form(WindowPart::Index(index)))?
            .done())
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
                Command::set_option_if_unset(s, schema::session::STATE, "detached")?,
                "set-option -o -t '$3' -- @agent-state detached",
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
                Command::capture_pane_of(&SessionTarget::Given("work:1.2".into()), -5)?,
                "capture-pane -p -J -t work:1.2 -S -5",
            ),
            (
                Command::display_message_of(&SessionTarget::Exact("a b".into()), "#{pane_id}")?,
                "display-message -p -t '=a b:' -F '#{pane_id}'",
            ),
            (
                Command::load_buffer_from_stdin("tmux-agent-msg-7")?,
                "load-buffer -b tmux-agent-msg-7 -",
            ),
            (
                Command::paste_buffer("tmux-agent-msg-7", PaneId(2))?,
                "paste-buffer -p -d -r -b tmux-agent-msg-7 -t '%2'",
            ),
            (
                Command::delete_buffer("tmux-agent-msg-7")?,
                "delete-buffer -b tmux-agent-msg-7",
            ),
            (
                Command::send_key(PaneId(2), "Enter")?,
                "send-keys -t '%2' -- Enter",
            ),
            (
                Command::send_key(PaneId(2), "C-m; kill-server")?,
                "send-keys -t '%2' -- 'C-m; kill-server'",
            ),
            (
                Command::detach_client("/dev/pts/3")?,
                "detach-client -t /dev/pts/3",
            ),
            (Command::kill_server(), "kill-server"),
            (
                Command::new_session(
                    "x'; kill-server; '#(reboot)",
                    None,
                    None,
                    &Spawn {
                        directory: Some("/tmp/a b".into()),
                        ..Spawn::default()
                    },
                )?,
                "new-session -d -P -F '#{session_id}' -s \"x'; kill-server; '##(reboot)\" -c '/tmp/a b'",
            ),
            (
                Command::new_session(
                    "n",
                    None,
                    None,
                    &Spawn {
                        command: vec!["sh".into(), "-c".into(), "#(x); y".into()],
                        ..Spawn::default()
                    },
                )?,
                "new-session -d -P -F '#{session_id}' -s n -- sh -c '#(x); y'",
            ),
            (
                Command::list_windows(SessionTarget::Given("wo rk".into()), "#{session_id}")?,
                "list-windows -t 'wo rk' -F '#{session_id}'",
            ),
            (
                Command::control_session("tmux-agent", "exec cat")?,
                "new-session -A -s tmux-agent -f no-output,ignore-size 'exec cat'",
            ),
            (
                Command::list_all_panes("#{pane_id}")?,
                "list-panes -a -F '#{pane_id}'",
            ),
            (
                Command::display_server("#{version}")?,
                "display-message -p -F '#{version}'",
            ),
            (
                Command::show_option_if_set(s, schema::session::GOAL)?,
                "show-options -q -v -t '$3' -- @agent-goal",
            ),
            (Command::show_global_options(), "show-options -g"),
            (
                Command::set_option(
                    SessionTarget::Exact("tmp-1".into()),
                    schema::session::GOAL,
                    "x",
                )?,
                "set-option -t =tmp-1: -- @agent-goal x",
            ),
            (
                Command::kill_session_named("tmp-1")?,
                "kill-session -t =tmp-1",
            ),
            (
                Command::rename_session(SessionTarget::Exact("tmp-1".into()), "a #{b}")?,
                "rename-session -t =tmp-1 -- 'a ##{b}'",
            ),
            (
                Command::new_session(
                    "s",
                    Some("w #(x)"),
                    Some((120, 40)),
                    &Spawn {
                        directory: Some("/a#b".into()),
                        environment: vec![("K".into(), "v #(x); y".into())],
                        command: vec!["sleep 9".into()],
                    },
                )?,
                "new-session -d -P -F '#{session_id}' -s s -n 'w ##(x)' -x 120 -y 40 -c '/a##b' -e 'K=v #(x); y' -- 'sleep 9'",
            ),
            (
                Command::new_window(
                    &SessionTarget::Exact("t".into()),
                    Some(3),
                    Some("edit"),
                    &Spawn::default(),
                )?,
                "new-window -t =t:3 -n edit",
            ),
            (
                Command::new_window(
                    &SessionTarget::Exact("t".into()),
                    None,
                    None,
                    &Spawn::default(),
                )?,
                "new-window -t =t:",
            ),
            (
                Command::split_window(
                    &SessionTarget::Exact("t".into()),
                    WindowPart::Current,
                    &Spawn {
                        command: vec!["vim".into(), "a b".into()],
                        ..Spawn::default()
                    },
                )?,
                "split-window -t =t: -- vim 'a b'",
            ),
            (
                Command::select_layout(
                    &SessionTarget::Exact("t".into()),
                    WindowPart::Index(2),
                    "c08a,100x30,0,0[100x15,0,0,0,100x14,0,16,1]",
                )?,
                "select-layout -t =t:2 'c08a,100x30,0,0[100x15,0,0,0,100x14,0,16,1]'",
            ),
            (
                Command::select_window(&SessionTarget::Exact("t".into()), WindowPart::Index(0))?,
                "select-window -t =t:0",
            ),
            (
                Command::move_window(&SessionTarget::Exact("t".into()), WindowPart::Current, 5)?,
                "move-window -s =t: -t =t:5",
            ),
            (
                Command::rename_session_to_number(SessionTarget::Exact("tmp-1".into()))?,
                "rename-session -t =tmp-1 -- '#{s/[$]//:session_id}'",
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
        assert!(Command::new_session("n\0", None, None, &Spawn::default()).is_err());
        let nul = Spawn {
            command: vec!["a\0".into()],
            ..Spawn::default()
        };
        assert!(Command::new_session("n", None, None, &nul).is_err());
        let nul = Spawn {
            environment: vec![("K".into(), "v\0".into())],
            ..Spawn::default()
        };
        assert!(
            Command::split_window(&SessionTarget::Exact("t".into()), WindowPart::Current, &nul)
                .is_err()
        );
        assert!(Command::kill_session_named("n\0").is_err());
        assert!(Command::set_option(SessionTarget::Given("\0".into()), "@x", "v").is_err());
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

    #[test]
    fn argv_escapes_only_a_trailing_semicolon() -> Result<(), CommandError> {
        let s = SessionId(3);
        // (value, what argv carries for it): tmux 3.3a cuts one trailing `;`
        // and turns a `\` left before it into `;`.
        let table = [
            ("plain", "plain"),
            ("a;b", "a;b"),
            ("done;", "done\\;"),
            ("a\\;", "a\\\\;"),
            ("x;;", "x;\\;"),
            (";", "\\;"),
            ("a\\", "a\\"),
            ("", ""),
            ("'$HOME' #{x} ~", "'$HOME' #{x} ~"),
            ("two\nlines\x1b", "two\nlines\x1b"),
        ];
        for (value, carried) in table {
            let command = Command::set_option(s, schema::session::GOAL, value)?;
            assert_eq!(
                command.argv(),
                [
                    "set-option",
                    "-t",
                    "$3",
                    "--",
                    schema::session::GOAL,
                    carried
                ],
                "{value:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn argv_chains_commands_with_a_bare_semicolon() -> Result<(), CommandError> {
        let chained = Command::chain_argv(&[
            Command::show_global_options(),
            Command::set_global_option("@x", ";")?,
            Command::kill_server(),
        ]);
        assert_eq!(
            chained,
            [
                "show-options",
                "-g",
                ";",
                "set-option",
                "-g",
                "--",
                "@x",
                "\\;",
                ";",
                "kill-server"
            ]
        );
        assert!(Command::chain_argv(&[]).is_empty());
        assert_eq!(Command::kill_server().name(), "kill-server");
        Ok(())
    }
}
