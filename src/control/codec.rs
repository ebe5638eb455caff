//! `ControlCodec`: the tokio-util `Decoder` that frames the control-mode
//! stream on LF and assembles `%begin` … `%end`/`%error` blocks.
//!
//! # Framing
//!
//! tmux ends every line with LF; one trailing CR is stripped as well (a pty
//! adds it, see `-CC` below). The codec remembers how far it has already
//! looked for an LF, so a long line arriving in many reads is scanned once.
//! Lines have no length bound from tmux (command output, subscription values,
//! names), so the limit is large ([`DEFAULT_MAX_LINE_LENGTH`]). A line longer
//! than the limit is discarded *as it streams*: its bytes are dropped as they
//! arrive, never buffered, until the next LF. It is then reported as
//! [`ControlEvent::LineTooLong`] outside a block, or counted in
//! [`Reply::dropped_lines`] inside one.
//!
//! A stream that starts with `ESC P` is `tmux -CC` output (a DCS for
//! terminals, with CRLF line ends and a trailing `ESC \`): it is rejected with
//! [`CodecError::TerminalControlMode`]; spawn `tmux -C`.
//!
//! # Blocks
//!
//! The decoder is either idle or inside a block opened by a `%begin` line.
//!
//! - **Idle:** `%begin time number flags` opens a block. Any other `%word`
//!   line is a notification (see [`super::parse`]); anything else is
//!   [`ControlEvent::Stray`] (for example a hook's `display -p` output that
//!   tmux delivered to this client).
//! - **In a block:** only `%end` or `%error` with the *same* `time number
//!   flags` triple closes it and yields a [`ControlEvent::Reply`]. Lines inside
//!   are raw command output and tmux does not escape them, so a user option
//!   holding `%end 1 2 1` must not end the block. Every other line is a raw
//!   line of the reply, with these exceptions, which released tmux (3.3a–3.7c)
//!   writes inside blocks although the man page says it never does:
//!   - `%pause %<pane>` and `%continue %<pane>` lines that parse fully are
//!     passed through as notifications in any block (`refresh-client -A`
//!     answers with them inside its own block);
//!   - `%message <text>` and `%config-error <text>` lines are passed through
//!     only inside flags = 0 blocks (the `tmux -C` command-line command and
//!     hooks, where 3.4+ reports config errors). In our own flags = 1 blocks
//!     they stay reply lines: the sidecar never sends a command that makes
//!     tmux put them there (`display-message` without `-p`), and a reply's
//!     user data may well start with those words.
//!
//!   Passed-through notifications are yielded at once; the reply follows when
//!   its block closes.
//!
//! At end of input a trailing line without LF is decoded as a line, and a block
//! still open is [`CodecError::UnclosedBlock`].

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;
use tokio_util::codec::{Decoder, Encoder};

use super::{
    command::Command,
    message::{ControlEvent, Guard, Reply},
    parse::{self, GuardKind},
};

/// The default limit on one line: 16 MiB. tmux bounds `%output` lines (about
/// 11 KB escaped) but not command output or subscription values, so this is
/// only a guard against unbounded memory, far above anything sane.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 16 * 1024 * 1024;

const ESC: u8 = 0x1b;

/// Why the control-mode stream cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The stream starts with `ESC P` (`ESC P1000p`), which is what
    /// `tmux -CC` writes for terminals.
    #[error(
        "the control-mode stream starts with ESC P: tmux was started with -CC (for terminals); start it with -C"
    )]
    TerminalControlMode,
    /// The stream ended inside a reply block: `%begin` came, `%end`/`%error`
    /// did not.
    #[error(
        "the control-mode stream ended inside the reply block `%begin {} {} {}`",
        .guard.time, .guard.number, .guard.flags
    )]
    UnclosedBlock {
        /// The guard of the unclosed block.
        guard: Guard,
    },
    /// Reading or writing the stream failed.
    #[error("control-mode stream I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes tmux's control-mode output into [`ControlEvent`]s and encodes
/// [`Command`]s as lines. See the [module documentation](self) for the rules.
#[derive(Debug)]
pub struct ControlCodec {
    max_line_length: usize,
    /// How many bytes at the front of the buffer are known to hold no LF.
    scanned: usize,
    /// `Some(n)` while discarding an over-long line, `n` bytes of it so far.
    discarding: Option<usize>,
    /// The reply block being assembled.
    block: Option<OpenBlock>,
    /// Whether the start of the stream has been checked for `-CC`'s DCS.
    start_checked: bool,
}

#[derive(Debug)]
struct OpenBlock {
    guard: Guard,
    lines: Vec<Bytes>,
    dropped_lines: usize,
}

impl ControlCodec {
    /// A codec with the default line limit ([`DEFAULT_MAX_LINE_LENGTH`]).
    pub fn new() -> Self {
        Self::with_max_line_length(DEFAULT_MAX_LINE_LENGTH)
    }

    /// A codec that discards lines longer than `max_line_length` bytes (not
    /// counting the LF).
    pub fn with_max_line_length(max_line_length: usize) -> Self {
        ControlCodec {
            max_line_length,
            scanned: 0,
            discarding: None,
            block: None,
            start_checked: false,
        }
    }

    /// The line limit in bytes.
    pub fn max_line_length(&self) -> usize {
        self.max_line_length
    }

    /// Rejects `tmux -CC` output. `Ok(false)` means "need more bytes".
    fn check_start(&mut self, buf: &BytesMut) -> Result<bool, CodecError> {
        match buf.as_ref() {
            [] | [ESC] => return Ok(false),
            [ESC, b'P', ..] => return Err(CodecError::TerminalControlMode),
            _ => {}
        }
        self.start_checked = true;
        Ok(true)
    }

    /// Handles one complete line (LF and CR already stripped).
    fn line(&mut self, line: BytesMut) -> Option<ControlEvent> {
        match &mut self.block {
            None => {
                if line.first() != Some(&b'%') {
                    return Some(ControlEvent::Stray(line.freeze()));
                }
                if line.starts_with(b"%begin ")
                    && let Ok((_, (GuardKind::Begin, guard))) = parse::guard(&line)
                {
                    self.block = Some(OpenBlock {
                        guard,
                        lines: Vec::new(),
                        dropped_lines: 0,
                    });
                    return None;
                }
                Some(ControlEvent::Notification(parse::notification(line)))
            }
            Some(block) => {
                if line.first() == Some(&b'%') {
                    if (line.starts_with(b"%end ") || line.starts_with(b"%error "))
                        && let Ok((_, (kind, guard))) = parse::guard(&line)
                        && guard == block.guard
                    {
                        let block = self.block.take()?;
                        return Some(ControlEvent::Reply(Reply {
                            guard: block.guard,
                            success: kind == GuardKind::End,
                            lines: block.lines,
                            dropped_lines: block.dropped_lines,
                        }));
                    }
                    if let Some(notification) =
                        parse::in_block_notification(&line, !block.guard.is_ours())
                    {
                        return Some(ControlEvent::Notification(notification));
                    }
                }
                block.lines.push(line.freeze());
                None
            }
        }
    }

    /// Accounts for one discarded over-long line of `length` bytes.
    fn too_long(&mut self, length: usize) -> Option<ControlEvent> {
        match &mut self.block {
            Some(block) => {
                block.dropped_lines += 1;
                None
            }
            None => Some(ControlEvent::LineTooLong { length }),
        }
    }
}

impl Default for ControlCodec {
    fn default() -> Self {
        Self::new()
    }
}

/// Decodes a whole captured stream, given in `chunks` as a reader would
/// deliver them, then signals the end of input: every event in order, and
/// the error that ended decoding, if one did. For replaying transcripts in
/// tests, fuzzing and tools; the daemon decodes through `FramedRead`.
pub fn decode_stream<'a>(
    codec: &mut ControlCodec,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<ControlEvent>, Option<CodecError>) {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(event)) => events.push(event),
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}

/// Strips the LF (if any) and one CR before it.
fn strip_line_end(line: &mut BytesMut) {
    if line.last() == Some(&b'\n') {
        line.truncate(line.len() - 1);
    }
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
}

impl Decoder for ControlCodec {
    type Item = ControlEvent;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ControlEvent>, CodecError> {
        if !self.start_checked && !self.check_start(buf)? {
            return Ok(None);
        }
        loop {
            if let Some(discarded) = self.discarding {
                match memchr(b'\n', buf) {
                    None => {
                        self.discarding = Some(discarded + buf.len());
                        buf.clear();
                        return Ok(None);
                    }
                    Some(lf) => {
                        buf.advance(lf + 1);
                        self.discarding = None;
                        match self.too_long(discarded + lf) {
                            Some(event) => return Ok(Some(event)),
                            None => continue,
                        }
                    }
                }
            }

            let Some(offset) = memchr(b'\n', &buf[self.scanned..]) else {
                if buf.len() > self.max_line_length {
                    // Drop what we have of the line and the rest as it comes.
                    self.discarding = Some(buf.len());
                    self.scanned = 0;
                    buf.clear();
                } else {
                    self.scanned = buf.len();
                }
                return Ok(None);
            };
            let lf = self.scanned + offset;
            self.scanned = 0;
            if lf > self.max_line_length {
                buf.advance(lf + 1);
                match self.too_long(lf) {
                    Some(event) => return Ok(Some(event)),
                    None => continue,
                }
            }
            let mut line = buf.split_to(lf + 1);
            strip_line_end(&mut line);
            if let Some(event) = self.line(line) {
                return Ok(Some(event));
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<ControlEvent>, CodecError> {
        if let Some(event) = self.decode(buf)? {
            return Ok(Some(event));
        }
        // Only a partial line (or part of a discarded one) can be left.
        if let Some(discarded) = self.discarding.take() {
            if let Some(event) = self.too_long(discarded) {
                return Ok(Some(event));
            }
        } else if !buf.is_empty() {
            let mut line = buf.split_to(buf.len());
            self.scanned = 0;
            strip_line_end(&mut line);
            if let Some(event) = self.line(line) {
                return Ok(Some(event));
            }
        }
        match self.block.take() {
            Some(block) => Err(CodecError::UnclosedBlock { guard: block.guard }),
            None => Ok(None),
        }
    }
}

impl Encoder<Command> for ControlCodec {
    type Error = CodecError;

    /// Writes the command's line and its LF.
    fn encode(&mut self, command: Command, dst: &mut BytesMut) -> Result<(), CodecError> {
        let line = command.as_str();
        dst.reserve(line.len() + 1);
        dst.extend_from_slice(line.as_bytes());
        dst.extend_from_slice(b"\n");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::message::{Notification, PaneId, SessionId};

    /// Decodes `input` fed in the given chunks, then signals end of input;
    /// the error that ended decoding, if any, as text.
    fn decode_chunks(
        codec: &mut ControlCodec,
        chunks: &[&[u8]],
    ) -> (Vec<ControlEvent>, Option<String>) {
        let (events, error) = decode_stream(codec, chunks.iter().copied());
        (events, error.map(|e| e.to_string()))
    }

    fn decode_all(input: &[u8]) -> Vec<ControlEvent> {
        let (events, error) = decode_chunks(&mut ControlCodec::new(), &[input]);
        assert_eq!(error, None);
        events
    }

    fn reply(time: i64, number: u64, flags: u32, success: bool, lines: &[&[u8]]) -> ControlEvent {
        ControlEvent::Reply(Reply {
            guard: Guard {
                time,
                number,
                flags,
            },
            success,
            lines: lines.iter().map(|l| Bytes::copy_from_slice(l)).collect(),
            dropped_lines: 0,
        })
    }

    fn note(n: Notification) -> ControlEvent {
        ControlEvent::Notification(n)
    }

    #[test]
    fn startup_block_then_notifications() {
        let events = decode_all(
            b"%begin 1795276294 264 0\n%end 1795276294 264 0\n%session-changed $0 a\n%output %0 x\\015\\012\n",
        );
        assert_eq!(
            events,
            vec![
                reply(1795276294, 264, 0, true, &[]),
                note(Notification::SessionChanged {
                    session: SessionId(0),
                    name: "a".into()
                }),
                note(Notification::Output {
                    pane: PaneId(0),
                    data: Bytes::from_static(b"x\r\n")
                }),
            ]
        );
    }

    #[test]
    fn error_block_and_multi_line_reply() {
        let events = decode_all(
            b"%begin 5 273 1\nparse error: unknown command: line2\n%error 5 273 1\n%begin 5 274 1\none\n\ntwo \n%end 5 274 1\n",
        );
        assert_eq!(
            events,
            vec![
                reply(5, 273, 1, false, &[b"parse error: unknown command: line2"]),
                reply(5, 274, 1, true, &[b"one", b"", b"two "]),
            ]
        );
    }

    #[test]
    fn only_the_matching_triple_closes_a_block() {
        // A user option holding "a\n%end 1 2 1\nb" (transcript
        // 3.3a-sidecar-session-and-names), plus guards of other blocks.
        let events = decode_all(
            b"%begin 1795276478 290 1\na\n%end 1 2 1\n%error 1795276478 290 0\n%end 1795276478 291 1\n%begin 1795276478 290 1\nb\n%end 1795276478 290 1\n",
        );
        assert_eq!(
            events,
            vec![reply(
                1795276478,
                290,
                1,
                true,
                &[
                    b"a",
                    b"%end 1 2 1",
                    b"%error 1795276478 290 0",
                    b"%end 1795276478 291 1",
                    b"%begin 1795276478 290 1",
                    b"b"
                ]
            )]
        );
    }

    #[test]
    fn notifications_inside_blocks() {
        let events = decode_all(concat!(
            // refresh-client -A answers inside its own (flags=1) block.
            "%begin 1 300 1\n%pause %0\n%end 1 300 1\n",
            "%begin 1 302 1\n%continue %0\n%end 1 302 1\n",
            // 3.7c: %message inside the display-message block stays a reply line
            // in our flags=1 block ...
            "%begin 1 294 1\n%message hello-from-self\n%config-error x\n%end 1 294 1\n",
            // ... and %config-error in the attach (flags=0) block is passed through.
            "%begin 1 288 0\n%config-error bad.conf:2: unknown command: frobnicate\n%message m\n%end 1 288 0\n",
            // Other %words and malformed pause lines stay reply lines.
            "%begin 1 400 0\n%pause %0 extra\n%sessions-changed\n%output %0 x\n%end 1 400 0\n",
        )
        .as_bytes());
        assert_eq!(
            events,
            vec![
                note(Notification::Pause { pane: PaneId(0) }),
                reply(1, 300, 1, true, &[]),
                note(Notification::Continue { pane: PaneId(0) }),
                reply(1, 302, 1, true, &[]),
                reply(
                    1,
                    294,
                    1,
                    true,
                    &[b"%message hello-from-self", b"%config-error x"]
                ),
                note(Notification::ConfigError {
                    message: "bad.conf:2: unknown command: frobnicate".into()
                }),
                note(Notification::Message {
                    message: "m".into()
                }),
                reply(1, 288, 0, true, &[]),
                reply(
                    1,
                    400,
                    0,
                    true,
                    &[b"%pause %0 extra", b"%sessions-changed", b"%output %0 x"]
                ),
            ]
        );
    }

    #[test]
    fn stray_lines_and_stray_guards_outside_blocks() {
        let events = decode_all(b"HOOK-P created $2 u2\n\n%end 1 2 1\n%begin x\n");
        assert_eq!(
            events,
            vec![
                ControlEvent::Stray(Bytes::from_static(b"HOOK-P created $2 u2")),
                ControlEvent::Stray(Bytes::new()),
                note(Notification::Unknown {
                    name: "end".into(),
                    rest: Bytes::from_static(b"1 2 1")
                }),
                note(Notification::Unknown {
                    name: "begin".into(),
                    rest: Bytes::from_static(b"x")
                }),
            ]
        );
    }

    #[test]
    fn crlf_is_stripped_once() {
        let events = decode_all(b"%begin 1 2 1\r\nx\r\r\n%end 1 2 1\r\n%exit\r\n");
        assert_eq!(
            events,
            vec![
                reply(1, 2, 1, true, &[b"x\r"]),
                note(Notification::Exit { reason: None })
            ]
        );
    }

    #[test]
    fn terminal_control_mode_is_rejected() {
        let cc = b"\x1bP1000p%begin 1795276424 265 0\r\n%end 1795276424 265 0\r\n";
        let (events, error) = decode_chunks(&mut ControlCodec::new(), &[cc]);
        assert!(events.is_empty());
        let error = error.expect("an error");
        assert!(error.contains("-CC") && error.contains("-C"), "{error}");
        // Also when the ESC arrives alone first.
        let (events, error) = decode_chunks(&mut ControlCodec::new(), &[b"\x1b", &cc[1..]]);
        assert!(events.is_empty());
        assert!(error.is_some());
        // An ESC later in the stream is just data.
        assert_eq!(
            decode_all(b"x\n\x1bP1000p\n"),
            vec![
                ControlEvent::Stray(Bytes::from_static(b"x")),
                ControlEvent::Stray(Bytes::from_static(b"\x1bP1000p")),
            ]
        );
    }

    #[test]
    fn over_long_lines_outside_a_block() {
        let mut codec = ControlCodec::with_max_line_length(8);
        let (events, error) = decode_chunks(
            &mut codec,
            &[b"%output %0 12345678\n12345678\n123456789\r\n%exit\n"],
        );
        assert_eq!(error, None);
        assert_eq!(
            events,
            vec![
                ControlEvent::LineTooLong { length: 19 },
                ControlEvent::Stray(Bytes::from_static(b"12345678")),
                ControlEvent::LineTooLong { length: 10 },
                note(Notification::Exit { reason: None }),
            ]
        );
    }

    #[test]
    fn over_long_lines_are_not_buffered() {
        let mut codec = ControlCodec::with_max_line_length(100);
        let mut buf = BytesMut::new();
        // 10 KB of one line in 1 KB reads: the buffer never holds more than a read.
        for _ in 0..10 {
            buf.extend_from_slice(&[b'x'; 1000]);
            assert_eq!(codec.decode(&mut buf).ok(), Some(None));
            assert!(buf.len() <= 1000, "buffered {} bytes", buf.len());
        }
        buf.extend_from_slice(b"tail\nnext\n");
        assert_eq!(
            codec.decode(&mut buf).ok(),
            Some(Some(ControlEvent::LineTooLong { length: 10_004 }))
        );
        assert_eq!(
            codec.decode(&mut buf).ok(),
            Some(Some(ControlEvent::Stray(Bytes::from_static(b"next"))))
        );
    }

    #[test]
    fn over_long_lines_inside_a_block_are_counted() {
        let mut codec = ControlCodec::with_max_line_length(16);
        let long = [b'v'; 40];
        let (events, error) = decode_chunks(
            &mut codec,
            &[
                b"%begin 1 2 1\nshort\n",
                &long[..20],
                &long[20..],
                b"\n",
                &long,
                b"\n%end 1 2 1\n",
            ],
        );
        assert_eq!(error, None);
        assert_eq!(
            events,
            vec![ControlEvent::Reply(Reply {
                guard: Guard {
                    time: 1,
                    number: 2,
                    flags: 1
                },
                success: true,
                lines: vec![Bytes::from_static(b"short")],
                dropped_lines: 2,
            })]
        );
    }

    #[test]
    fn eof_with_a_partial_line() {
        assert_eq!(
            decode_all(b"%sessions-changed\n%exit"),
            vec![
                note(Notification::SessionsChanged),
                note(Notification::Exit { reason: None })
            ]
        );
        assert_eq!(
            decode_all(b"stray\r"),
            vec![ControlEvent::Stray(Bytes::from_static(b"stray"))]
        );
        // A partial closing guard still closes the block.
        assert_eq!(
            decode_all(b"%begin 1 2 1\nx\n%end 1 2 1"),
            vec![reply(1, 2, 1, true, &[b"x"])]
        );
        // An over-long partial line.
        let (events, error) = decode_chunks(
            &mut ControlCodec::with_max_line_length(5),
            &[b"%exit\n123456"],
        );
        assert_eq!(error, None);
        assert_eq!(
            events,
            vec![
                note(Notification::Exit { reason: None }),
                ControlEvent::LineTooLong { length: 6 }
            ]
        );
        assert_eq!(decode_all(b""), vec![]);
    }

    #[test]
    fn eof_inside_a_block_names_the_guard() {
        let mut codec = ControlCodec::new();
        let (events, error) = decode_chunks(
            &mut codec,
            &[b"%begin 1795276478 290 1\npartial\n%pause %1\nmore"],
        );
        assert_eq!(events, vec![note(Notification::Pause { pane: PaneId(1) })]);
        assert_eq!(
            error.as_deref(),
            Some("the control-mode stream ended inside the reply block `%begin 1795276478 290 1`")
        );
        // The error is reported once; the codec is then empty.
        assert_eq!(codec.decode_eof(&mut BytesMut::new()).ok(), Some(None));
    }

    #[test]
    fn scanning_resumes_where_it_stopped() {
        let mut codec = ControlCodec::new();
        let mut buf = BytesMut::from(&b"%output %0 abc"[..]);
        assert_eq!(codec.decode(&mut buf).ok(), Some(None));
        assert_eq!(codec.scanned, buf.len());
        buf.extend_from_slice(b"def\n%exit");
        assert_eq!(
            codec.decode(&mut buf).ok(),
            Some(Some(note(Notification::Output {
                pane: PaneId(0),
                data: Bytes::from_static(b"abcdef")
            })))
        );
        assert_eq!(codec.decode(&mut buf).ok(), Some(None));
        assert_eq!(codec.scanned, 5);
    }

    #[test]
    fn encodes_a_command_as_one_line() {
        let mut codec = ControlCodec::new();
        let mut dst = BytesMut::new();
        codec
            .encode(Command::has_session(SessionId(3)), &mut dst)
            .expect("encode");
        assert_eq!(&dst[..], b"has-session -t '$3'\n");
    }
}
