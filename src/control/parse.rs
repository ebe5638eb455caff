//! nom parsers, one per control-mode line form, each applied to one complete
//! framed line (without its LF or CR).
//!
//! The parsers are nom 8 *complete* parsers over bytes: a line is never valid
//! UTF-8 by contract (`%output` carries raw bytes ≥ 0x80, reply lines are
//! unescaped command output), so nothing here takes `&str`. Each parser is
//! named after the line form it reads and quotes that form, as tmux prints it
//! (`control.c`, `control-notify.c`, `cmd-queue.c`, tmux 3.3a–3.7c), in its doc
//! comment.
//!
//! [`notification`] dispatches on the `%word` and never fails: a word it does
//! not know, or a known word whose arguments do not parse, becomes
//! [`Notification::Unknown`]. Names (sessions, windows, clients, buffers) are
//! decoded lossily into `String`; pane output stays bytes.
//!
//! `%output` data is unescaped *in place* in the line's own buffer (an escape
//! is always longer than the byte it stands for), so decoding pane output costs
//! no allocation.

use bytes::{Buf, Bytes, BytesMut};
use memchr::{memchr, memmem};
use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_till, take_till1, take_until},
    character::complete::{char, i64 as dec_i64, u32 as dec_u32, u64 as dec_u64},
    combinator::{all_consuming, opt, rest, verify},
    sequence::preceded,
};

use super::message::{Guard, Notification, PaneId, SessionId, WindowId};

type ParseResult<'a, T> = IResult<&'a [u8], T>;

/// Which of the three guard lines a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuardKind {
    Begin,
    End,
    Error,
}

/// `$<digits>`: a session id.
fn session_id(input: &[u8]) -> ParseResult<'_, SessionId> {
    preceded(char('$'), dec_u32).map(SessionId).parse(input)
}

/// `@<digits>`: a window id.
fn window_id(input: &[u8]) -> ParseResult<'_, WindowId> {
    preceded(char('@'), dec_u32).map(WindowId).parse(input)
}

/// `%<digits>`: a pane id.
fn pane_id(input: &[u8]) -> ParseResult<'_, PaneId> {
    preceded(char('%'), dec_u32).map(PaneId).parse(input)
}

/// A field that is either `parser`'s value or the placeholder `-`.
fn or_dash<'a, T>(
    parser: impl Parser<&'a [u8], Output = T, Error = nom::error::Error<&'a [u8]>>,
) -> impl Parser<&'a [u8], Output = Option<T>, Error = nom::error::Error<&'a [u8]>> {
    alt((parser.map(Some), char('-').map(|_| None)))
}

/// Everything to the end of the line, as lossily decoded text.
fn text(input: &[u8]) -> ParseResult<'_, String> {
    rest.map(lossy).parse(input)
}

/// Everything up to the next space, at least one byte.
fn token(input: &[u8]) -> ParseResult<'_, &[u8]> {
    take_till1(|b| b == b' ').parse(input)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The word of a `%word ...` line, without the `%`, up to the first space.
fn word(line: &[u8]) -> &[u8] {
    let after = line.get(1..).unwrap_or_default();
    let end = memchr(b' ', after).unwrap_or(after.len());
    &after[..end]
}

/// `%begin <time> <number> <flags>`, `%end <time> <number> <flags>`,
/// `%error <time> <number> <flags>` (`cmd-queue.c:cmdq_guard`,
/// `"%%%s %ld %u %d"`).
pub(crate) fn guard(input: &[u8]) -> ParseResult<'_, (GuardKind, Guard)> {
    all_consuming((
        alt((
            tag("%begin ").map(|_| GuardKind::Begin),
            tag("%end ").map(|_| GuardKind::End),
            tag("%error ").map(|_| GuardKind::Error),
        )),
        dec_i64,
        char(' '),
        dec_u64,
        char(' '),
        dec_u32,
    ))
    .map(|(kind, time, _, number, _, flags)| {
        (
            kind,
            Guard {
                time,
                number,
                flags,
            },
        )
    })
    .parse(input)
}

/// `%output %<pane> <escaped-data>`. Returns the pane; the remaining input is
/// the still-escaped data.
fn output(input: &[u8]) -> ParseResult<'_, PaneId> {
    (tag("%output "), pane_id, char(' '))
        .map(|(_, pane, _)| pane)
        .parse(input)
}

/// `%extended-output %<pane> <age-ms> [<reserved> ...] : <escaped-data>`.
/// Returns the pane and the age; the remaining input is the still-escaped data.
/// tmux reserves the fields between the age and ` : ` for later use.
fn extended_output(input: &[u8]) -> ParseResult<'_, (PaneId, u64)> {
    (
        tag("%extended-output "),
        pane_id,
        char(' '),
        dec_u64,
        verify(take_until(" : "), |reserved: &[u8]| {
            reserved.is_empty() || reserved[0] == b' '
        }),
        tag(" : "),
    )
        .map(|(_, pane, _, age_ms, _, _)| (pane, age_ms))
        .parse(input)
}

/// `%pause %<pane>`
fn pause(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming(preceded(tag("%pause "), pane_id))
        .map(|pane| Notification::Pause { pane })
        .parse(input)
}

/// `%continue %<pane>`
fn r#continue(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming(preceded(tag("%continue "), pane_id))
        .map(|pane| Notification::Continue { pane })
        .parse(input)
}

/// `%exit` or `%exit <reason>` (printed by the `tmux -C` client process). An
/// empty reason is no reason.
fn exit(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming(preceded(tag("%exit"), opt(preceded(char(' '), rest))))
        .map(|reason| Notification::Exit {
            reason: reason.filter(|r: &&[u8]| !r.is_empty()).map(lossy),
        })
        .parse(input)
}

/// `%layout-change @<window> <layout>[ <visible-layout>[ <flags>]]`: two
/// fields before tmux 2.2, three before 3.2, four since; the window flags may
/// be empty (a trailing space).
fn layout_change(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming((
        tag("%layout-change "),
        window_id,
        char(' '),
        token,
        opt((
            preceded(char(' '), token),
            opt(preceded(char(' '), take_till(|b| b == b' '))),
        )),
    ))
    .map(|(_, window, _, layout, more)| {
        let (visible_layout, flags) = match more {
            Some((visible, flags)) => (Some(lossy(visible)), flags.map(lossy)),
            None => (None, None),
        };
        Notification::LayoutChange {
            window,
            layout: lossy(layout),
            visible_layout,
            flags,
        }
    })
    .parse(input)
}

/// `%session-changed $<session> <name>`
fn session_changed(input: &[u8]) -> ParseResult<'_, Notification> {
    (tag("%session-changed "), session_id, char(' '), text)
        .map(|(_, session, _, name)| Notification::SessionChanged { session, name })
        .parse(input)
}

/// `%session-renamed $<session> <name>` (tmux.1 omits the id; the wire has it).
fn session_renamed(input: &[u8]) -> ParseResult<'_, Notification> {
    (tag("%session-renamed "), session_id, char(' '), text)
        .map(|(_, session, _, name)| Notification::SessionRenamed { session, name })
        .parse(input)
}

/// `%sessions-changed` (no arguments)
fn sessions_changed(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming(tag("%sessions-changed"))
        .map(|_| Notification::SessionsChanged)
        .parse(input)
}

/// `%session-window-changed $<session> @<window>`
fn session_window_changed(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming((
        tag("%session-window-changed "),
        session_id,
        char(' '),
        window_id,
    ))
    .map(|(_, session, _, window)| Notification::SessionWindowChanged { session, window })
    .parse(input)
}

/// `%client-session-changed <client> $<session> <name>`
fn client_session_changed(input: &[u8]) -> ParseResult<'_, Notification> {
    (
        tag("%client-session-changed "),
        token,
        char(' '),
        session_id,
        char(' '),
        text,
    )
        .map(
            |(_, client, _, session, _, name)| Notification::ClientSessionChanged {
                client: lossy(client),
                session,
                name,
            },
        )
        .parse(input)
}

/// `%client-detached <client>`
fn client_detached(input: &[u8]) -> ParseResult<'_, Notification> {
    preceded(tag("%client-detached "), text)
        .map(|client| Notification::ClientDetached { client })
        .parse(input)
}

/// `%window-add @<window>`
fn window_add(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming(preceded(tag("%window-add "), window_id))
        .map(|window| Notification::WindowAdd { window })
        .parse(input)
}

/// `%unlinked-window-add @<window>`
fn unlinked_window_add(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming(preceded(tag("%unlinked-window-add "), window_id))
        .map(|window| Notification::UnlinkedWindowAdd { window })
        .parse(input)
}

/// `%window-close @<window>`
fn window_close(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming(preceded(tag("%window-close "), window_id))
        .map(|window| Notification::WindowClose { window })
        .parse(input)
}

/// `%unlinked-window-close @<window>`
fn unlinked_window_close(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming(preceded(tag("%unlinked-window-close "), window_id))
        .map(|window| Notification::UnlinkedWindowClose { window })
        .parse(input)
}

/// `%window-renamed @<window> <name>`
fn window_renamed(input: &[u8]) -> ParseResult<'_, Notification> {
    (tag("%window-renamed "), window_id, char(' '), text)
        .map(|(_, window, _, name)| Notification::WindowRenamed { window, name })
        .parse(input)
}

/// `%unlinked-window-renamed @<window>[ <name>]`: the 3.3a man page omits the
/// name, so an absent name is an empty one.
fn unlinked_window_renamed(input: &[u8]) -> ParseResult<'_, Notification> {
    (
        tag("%unlinked-window-renamed "),
        window_id,
        opt(preceded(char(' '), text)),
    )
        .map(|(_, window, name)| Notification::UnlinkedWindowRenamed {
            window,
            name: name.unwrap_or_default(),
        })
        .parse(input)
}

/// `%window-pane-changed @<window> %<pane>`
fn window_pane_changed(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming((tag("%window-pane-changed "), window_id, char(' '), pane_id))
        .map(|(_, window, _, pane)| Notification::WindowPaneChanged { window, pane })
        .parse(input)
}

/// `%pane-mode-changed %<pane>`
fn pane_mode_changed(input: &[u8]) -> ParseResult<'_, Notification> {
    all_consuming(preceded(tag("%pane-mode-changed "), pane_id))
        .map(|pane| Notification::PaneModeChanged { pane })
        .parse(input)
}

/// The fields of `%subscription-changed` after the name:
/// `$<session> <@window|-> <index|-> <%pane|-> [<reserved> ...] : `.
type SubscriptionFields = (SessionId, Option<WindowId>, Option<u32>, Option<PaneId>);

fn subscription_fields(input: &[u8]) -> ParseResult<'_, SubscriptionFields> {
    (
        session_id,
        char(' '),
        or_dash(window_id),
        char(' '),
        or_dash(dec_u32),
        char(' '),
        or_dash(pane_id),
        verify(take_until(" : "), |reserved: &[u8]| {
            reserved.is_empty() || reserved[0] == b' '
        }),
        tag(" : "),
    )
        .map(|(session, _, window, _, index, _, pane, _, _)| (session, window, index, pane))
        .parse(input)
}

/// `%subscription-changed <name> $<session> <@window|-> <index|-> <%pane|-> : <value>`:
/// session form `name $s - - - : v`, window form `name $s @w idx - : v`, pane
/// form `name $s @w idx %p : v`. The value is the expanded format, unescaped
/// and kept raw. tmux does not forbid spaces in a subscription name, so the
/// name ends at the first ` $` after which the fields parse.
fn subscription_changed(input: &[u8]) -> ParseResult<'_, Notification> {
    let (args, _) = tag("%subscription-changed ").parse(input)?;
    for at in memmem::find_iter(args, b" $") {
        if let Ok((value, (session, window, window_index, pane))) =
            subscription_fields(&args[at + 1..])
        {
            let notification = Notification::SubscriptionChanged {
                name: lossy(&args[..at]),
                session,
                window,
                window_index,
                pane,
                value: Bytes::copy_from_slice(value),
            };
            return Ok((&value[value.len()..], notification));
        }
    }
    Err(nom::Err::Error(nom::error::Error::new(
        input,
        nom::error::ErrorKind::Verify,
    )))
}

/// `%paste-buffer-changed <name>` (tmux 3.4+)
fn paste_buffer_changed(input: &[u8]) -> ParseResult<'_, Notification> {
    preceded(tag("%paste-buffer-changed "), text)
        .map(|name| Notification::PasteBufferChanged { name })
        .parse(input)
}

/// `%paste-buffer-deleted <name>` (tmux 3.4+)
fn paste_buffer_deleted(input: &[u8]) -> ParseResult<'_, Notification> {
    preceded(tag("%paste-buffer-deleted "), text)
        .map(|name| Notification::PasteBufferDeleted { name })
        .parse(input)
}

/// `%config-error <message>` (tmux 3.4+)
fn config_error(input: &[u8]) -> ParseResult<'_, Notification> {
    preceded(tag("%config-error "), text)
        .map(|message| Notification::ConfigError { message })
        .parse(input)
}

/// `%message <message>` (tmux 3.4+)
fn message(input: &[u8]) -> ParseResult<'_, Notification> {
    preceded(tag("%message "), text)
        .map(|message| Notification::Message { message })
        .parse(input)
}

/// Parses one `%word ...` line into a notification. Never fails: an unknown
/// word, or a known word whose arguments do not parse, gives
/// [`Notification::Unknown`].
///
/// Takes the line's own buffer so that `%output` data can be unescaped in
/// place and handed out as a slice of it.
pub(crate) fn notification(line: BytesMut) -> Notification {
    let parsed = match word(&line) {
        b"output" => {
            let header = output(&line)
                .ok()
                .map(|(data, pane)| (line.len() - data.len(), pane));
            return match header {
                Some((offset, pane)) => Notification::Output {
                    pane,
                    data: unescape_from(line, offset),
                },
                None => unknown(line),
            };
        }
        b"extended-output" => {
            let header = extended_output(&line)
                .ok()
                .map(|(data, header)| (line.len() - data.len(), header));
            return match header {
                Some((offset, (pane, age_ms))) => Notification::ExtendedOutput {
                    pane,
                    age_ms,
                    data: unescape_from(line, offset),
                },
                None => unknown(line),
            };
        }
        b"pause" => pause(&line),
        b"continue" => r#continue(&line),
        b"exit" => exit(&line),
        b"layout-change" => layout_change(&line),
        b"session-changed" => session_changed(&line),
        b"session-renamed" => session_renamed(&line),
        b"sessions-changed" => sessions_changed(&line),
        b"session-window-changed" => session_window_changed(&line),
        b"client-session-changed" => client_session_changed(&line),
        b"client-detached" => client_detached(&line),
        b"window-add" => window_add(&line),
        b"unlinked-window-add" => unlinked_window_add(&line),
        b"window-close" => window_close(&line),
        b"unlinked-window-close" => unlinked_window_close(&line),
        b"window-renamed" => window_renamed(&line),
        b"unlinked-window-renamed" => unlinked_window_renamed(&line),
        b"window-pane-changed" => window_pane_changed(&line),
        b"pane-mode-changed" => pane_mode_changed(&line),
        b"subscription-changed" => subscription_changed(&line),
        b"paste-buffer-changed" => paste_buffer_changed(&line),
        b"paste-buffer-deleted" => paste_buffer_deleted(&line),
        b"config-error" => config_error(&line),
        b"message" => message(&line),
        _ => return unknown(line),
    };
    match parsed {
        Ok((_, notification)) => notification,
        Err(_) => unknown(line),
    }
}

/// The notifications that released tmux writes *inside* a reply block, for
/// the line forms that may be passed through there (see the rule in
/// [`super::codec`]): `%pause`/`%continue` always, `%message`/`%config-error`
/// only in an unsolicited (flags = 0) block. `None` means "a raw reply line".
pub(crate) fn in_block_notification(line: &[u8], unsolicited: bool) -> Option<Notification> {
    let parsed = match word(line) {
        b"pause" => pause(line),
        b"continue" => r#continue(line),
        b"message" if unsolicited => message(line),
        b"config-error" if unsolicited => config_error(line),
        _ => return None,
    };
    parsed.ok().map(|(_, notification)| notification)
}

/// `Notification::Unknown` for a `%word rest` line.
fn unknown(line: BytesMut) -> Notification {
    let mut line = line.freeze();
    let start = usize::from(line.first() == Some(&b'%'));
    let end = memchr(b' ', &line[start..]).map_or(line.len(), |at| start + at);
    let name = lossy(&line[start..end]);
    line.advance((end + 1).min(line.len()));
    Notification::Unknown { name, rest: line }
}

/// Unescapes the data that starts at `offset` in `line` and returns it,
/// sharing `line`'s buffer.
fn unescape_from(mut line: BytesMut, offset: usize) -> Bytes {
    line.advance(offset);
    let len = unescape_in_place(&mut line);
    line.truncate(len);
    line.freeze()
}

/// Decodes tmux's `%output` escaping in place and returns the decoded length.
///
/// tmux writes a byte below 0x20 or a `\` as `\` and three octal digits
/// (`control.c:control_append_data`, `"\\%03o"`) and every other byte raw. A
/// backslash that does not start a valid `\[0-3][0-7][0-7]` never comes from
/// tmux; it is kept as is rather than failing the whole line.
///
/// Terminal output is dense with escapes (`seq` gives two per number: CR and
/// LF), so the runs between them are short: they are copied eight bytes at a
/// time, the first backslash in each word found with a bit trick rather than
/// a call. A whole word is written only once the write position trails the
/// read position by eight bytes (each escape widens the gap by three), so it
/// never lands on bytes not yet read.
pub(crate) fn unescape_in_place(data: &mut [u8]) -> usize {
    let Some(first) = memchr(b'\\', data) else {
        return data.len();
    };
    let (mut read, mut write) = (first, first);
    while read < data.len() {
        if data[read] == b'\\' {
            match octal_escape(&data[read..]) {
                Some(byte) => {
                    data[write] = byte;
                    read += 4;
                }
                None => {
                    data[write] = b'\\';
                    read += 1;
                }
            }
            write += 1;
        } else if let Some(&word) = data[read..].first_chunk::<8>() {
            let run = first_backslash(u64::from_le_bytes(word));
            if read - write >= 8 {
                // The word lands wholly on bytes already consumed.
                data[write..write + 8].copy_from_slice(&word);
            } else {
                data.copy_within(read..read + run, write);
            }
            read += run;
            write += run;
        } else {
            data[write] = data[read];
            read += 1;
            write += 1;
        }
    }
    write
}

/// The index of the first `\` in the little-endian `word`, or 8. Only the
/// lowest match of the zero-byte trick is exact, which is the one used.
fn first_backslash(word: u64) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let x = word ^ (ONES * u64::from(b'\\'));
    let found = x.wrapping_sub(ONES) & !x & HIGHS;
    (found.trailing_zeros() / 8) as usize
}

/// The byte of a `\ooo` escape at the start of `input`, if there is one.
fn octal_escape(input: &[u8]) -> Option<u8> {
    match input {
        [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', ..] => {
            Some(((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0'))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[u8]) -> Notification {
        notification(BytesMut::from(line))
    }

    fn unknown(name: &str, rest: &[u8]) -> Notification {
        Notification::Unknown {
            name: name.to_owned(),
            rest: Bytes::copy_from_slice(rest),
        }
    }

    fn output(pane: u32, data: &[u8]) -> Notification {
        Notification::Output {
            pane: PaneId(pane),
            data: Bytes::copy_from_slice(data),
        }
    }

    /// tmux's `control_append_data`, to check that unescaping inverts it.
    fn escape(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in data {
            if b < b' ' || b == b'\\' {
                out.extend_from_slice(format!("\\{b:03o}").as_bytes());
            } else {
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn every_notification_form() {
        use Notification::*;
        let s = |n| SessionId(n);
        let w = |n| WindowId(n);
        let p = |n| PaneId(n);
        let text = |t: &str| t.to_owned();
        let table: Vec<(&[u8], Notification)> = vec![
            (b"%output %0 hello", output(0, b"hello")),
            (b"%output %12 ", output(12, b"")),
            (b"%output %0 bs\\134\\134 caf\xc3\xa9 \xe2\x98\x83", output(0, "bs\\\\ café ☃".as_bytes())),
            (b"%output %0 \\001\\033\\134\\015\\012", output(0, b"\x01\x1b\\\r\n")),
            (b"%output %3 \\015\\033[K\\015root@vm:<probe-dir># ", output(3, b"\r\x1b[K\rroot@vm:<probe-dir># ")),
            // A UTF-8 sequence split across %output lines: bytes, not text.
            (b"%output %1 \xe2\x98", output(1, b"\xe2\x98")),
            (b"%output %1 \x7f\xff", output(1, b"\x7f\xff")),
            (
                b"%extended-output %0 0 : hello-pause-after",
                ExtendedOutput { pane: p(0), age_ms: 0, data: Bytes::from_static(b"hello-pause-after") },
            ),
            (
                b"%extended-output %4 1500 reserved x : a : b\\012",
                ExtendedOutput { pane: p(4), age_ms: 1500, data: Bytes::from_static(b"a : b\n") },
            ),
            (b"%pause %0", Pause { pane: p(0) }),
            (b"%continue %7", Continue { pane: p(7) }),
            (b"%exit", Exit { reason: None }),
            (b"%exit too far behind", Exit { reason: Some(text("too far behind")) }),
            (b"%exit ", Exit { reason: None }),
            (
                b"%layout-change @3 c892,100x30,0,0[100x15,0,0,3,100x14,0,16,5] c892,100x30,0,0[100x15,0,0,3,100x14,0,16,5] *",
                LayoutChange {
                    window: w(3),
                    layout: text("c892,100x30,0,0[100x15,0,0,3,100x14,0,16,5]"),
                    visible_layout: Some(text("c892,100x30,0,0[100x15,0,0,3,100x14,0,16,5]")),
                    flags: Some(text("*")),
                },
            ),
            (
                b"%layout-change @1 b25d,80x24,0,0,1 b25d,80x24,0,0,1 ",
                LayoutChange {
                    window: w(1),
                    layout: text("b25d,80x24,0,0,1"),
                    visible_layout: Some(text("b25d,80x24,0,0,1")),
                    flags: Some(text("")),
                },
            ),
            (
                b"%layout-change @1 b25d,80x24,0,0,1 b25d,80x24,0,0,1",
                LayoutChange {
                    window: w(1),
                    layout: text("b25d,80x24,0,0,1"),
                    visible_layout: Some(text("b25d,80x24,0,0,1")),
                    flags: None,
                },
            ),
            (
                b"%layout-change @1 b25d,80x24,0,0,1",
                LayoutChange { window: w(1), layout: text("b25d,80x24,0,0,1"), visible_layout: None, flags: None },
            ),
            (b"%session-changed $0 a", SessionChanged { session: s(0), name: text("a") }),
            (b"%session-changed $1 my sess", SessionChanged { session: s(1), name: text("my sess") }),
            (b"%session-renamed $0 my sess", SessionRenamed { session: s(0), name: text("my sess") }),
            (b"%session-renamed $0 line1\\nline2", SessionRenamed { session: s(0), name: text("line1\\nline2") }),
            (b"%session-renamed $1 esc\\033[31mred", SessionRenamed { session: s(1), name: text("esc\\033[31mred") }),
            (b"%session-renamed $2 caf\xe9", SessionRenamed { session: s(2), name: text("caf\u{fffd}") }),
            (b"%sessions-changed", SessionsChanged),
            (b"%session-window-changed $0 @3", SessionWindowChanged { session: s(0), window: w(3) }),
            (
                b"%client-session-changed /dev/pts/3 $1 b",
                ClientSessionChanged { client: text("/dev/pts/3"), session: s(1), name: text("b") },
            ),
            (
                b"%client-session-changed client-17503 $1 two words",
                ClientSessionChanged { client: text("client-17503"), session: s(1), name: text("two words") },
            ),
            (b"%client-detached /dev/pts/3", ClientDetached { client: text("/dev/pts/3") }),
            (b"%client-detached client-16155", ClientDetached { client: text("client-16155") }),
            (b"%window-add @3", WindowAdd { window: w(3) }),
            (b"%unlinked-window-add @4", UnlinkedWindowAdd { window: w(4) }),
            (b"%window-close @3", WindowClose { window: w(3) }),
            (b"%unlinked-window-close @2", UnlinkedWindowClose { window: w(2) }),
            (b"%window-renamed @1 win with\\nnewline", WindowRenamed { window: w(1), name: text("win with\\nnewline") }),
            (b"%window-renamed @0 [tmux]", WindowRenamed { window: w(0), name: text("[tmux]") }),
            (b"%unlinked-window-renamed @4 bw", UnlinkedWindowRenamed { window: w(4), name: text("bw") }),
            (b"%unlinked-window-renamed @4", UnlinkedWindowRenamed { window: w(4), name: text("") }),
            (b"%window-pane-changed @0 %5", WindowPaneChanged { window: w(0), pane: p(5) }),
            (b"%pane-mode-changed %0", PaneModeChanged { pane: p(0) }),
            (
                b"%subscription-changed sess $0 - - - : a:1:g2",
                SubscriptionChanged {
                    name: text("sess"), session: s(0), window: None, window_index: None, pane: None,
                    value: Bytes::from_static(b"a:1:g2"),
                },
            ),
            (
                b"%subscription-changed wins $0 @0 0 - : cat",
                SubscriptionChanged {
                    name: text("wins"), session: s(0), window: Some(w(0)), window_index: Some(0), pane: None,
                    value: Bytes::from_static(b"cat"),
                },
            ),
            (
                b"%subscription-changed p0 $0 @0 0 %0 : 100x30",
                SubscriptionChanged {
                    name: text("p0"), session: s(0), window: Some(w(0)), window_index: Some(0), pane: Some(p(0)),
                    value: Bytes::from_static(b"100x30"),
                },
            ),
            // The value is kept raw: it may contain ` : `, `%end`, escapes, any byte.
            (
                b"%subscription-changed st $0 - - - : $1=0=g : x;%end 1 2 1;\\012\xff",
                SubscriptionChanged {
                    name: text("st"), session: s(0), window: None, window_index: None, pane: None,
                    value: Bytes::from_static(b"$1=0=g : x;%end 1 2 1;\\012\xff"),
                },
            ),
            (
                b"%subscription-changed allsess $0 - - - : ",
                SubscriptionChanged {
                    name: text("allsess"), session: s(0), window: None, window_index: None, pane: None,
                    value: Bytes::new(),
                },
            ),
            (
                b"%subscription-changed my sub $2 - - - : v",
                SubscriptionChanged {
                    name: text("my sub"), session: s(2), window: None, window_index: None, pane: None,
                    value: Bytes::from_static(b"v"),
                },
            ),
            (b"%paste-buffer-changed mybuf", PasteBufferChanged { name: text("mybuf") }),
            (b"%paste-buffer-deleted buffer0", PasteBufferDeleted { name: text("buffer0") }),
            (
                b"%config-error <probe-dir>/bad.conf:2: unknown command: frobnicate",
                ConfigError { message: text("<probe-dir>/bad.conf:2: unknown command: frobnicate") },
            ),
            (b"%message HOOK-MSG created $2 u2", Message { message: text("HOOK-MSG created $2 u2") }),
        ];
        for (line, expected) in table {
            assert_eq!(
                parse(line),
                expected,
                "line {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn unknown_words_and_bad_arguments_become_unknown() {
        let table: Vec<(&[u8], Notification)> = vec![
            (b"%frobnicate a b c", unknown("frobnicate", b"a b c")),
            (b"%frobnicate", unknown("frobnicate", b"")),
            (b"%", unknown("", b"")),
            (b"% x", unknown("", b"x")),
            (b"%new-thing \xff\xfe", unknown("new-thing", b"\xff\xfe")),
            (b"%w\xffrd x", unknown("w\u{fffd}rd", b"x")),
            // Known words whose arguments do not parse.
            (b"%output 0 x", unknown("output", b"0 x")),
            (b"%output %0", unknown("output", b"%0")),
            (b"%output %x data", unknown("output", b"%x data")),
            (
                b"%output %99999999999 data",
                unknown("output", b"%99999999999 data"),
            ),
            (
                b"%extended-output %0 0 no-colon",
                unknown("extended-output", b"%0 0 no-colon"),
            ),
            (
                b"%extended-output %0 12x : data",
                unknown("extended-output", b"%0 12x : data"),
            ),
            (b"%pause %0 extra", unknown("pause", b"%0 extra")),
            (b"%pause", unknown("pause", b"")),
            (b"%continue @0", unknown("continue", b"@0")),
            (b"%exited", unknown("exited", b"")),
            (b"%layout-change @1", unknown("layout-change", b"@1")),
            (
                b"%layout-change @1 a b c d",
                unknown("layout-change", b"@1 a b c d"),
            ),
            (b"%session-changed 0 a", unknown("session-changed", b"0 a")),
            (b"%session-changed $0", unknown("session-changed", b"$0")),
            (
                b"%session-renamed name-only",
                unknown("session-renamed", b"name-only"),
            ),
            (
                b"%sessions-changed now",
                unknown("sessions-changed", b"now"),
            ),
            (
                b"%session-window-changed $0 3",
                unknown("session-window-changed", b"$0 3"),
            ),
            (
                b"%client-session-changed /dev/pts/3 b",
                unknown("client-session-changed", b"/dev/pts/3 b"),
            ),
            (b"%window-add 3", unknown("window-add", b"3")),
            (b"%window-close @3 x", unknown("window-close", b"@3 x")),
            (b"%window-renamed @3", unknown("window-renamed", b"@3")),
            (
                b"%window-pane-changed @0",
                unknown("window-pane-changed", b"@0"),
            ),
            // tmux master may send a non-%N payload here.
            (
                b"%pane-mode-changed copy-mode",
                unknown("pane-mode-changed", b"copy-mode"),
            ),
            (
                b"%subscription-changed s $0 - - - no-colon",
                unknown("subscription-changed", b"s $0 - - - no-colon"),
            ),
            (
                b"%subscription-changed $0 - - - : v",
                unknown("subscription-changed", b"$0 - - - : v"),
            ),
            (b"%message", unknown("message", b"")),
            (b"%config-error", unknown("config-error", b"")),
            // Guard lines are not notifications.
            (b"%end 1 2 1", unknown("end", b"1 2 1")),
            (b"%begin 1 2 1", unknown("begin", b"1 2 1")),
        ];
        for (line, expected) in table {
            assert_eq!(
                parse(line),
                expected,
                "line {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn guard_lines() {
        let guard = |time, number, flags| Guard {
            time,
            number,
            flags,
        };
        let ok: Vec<(&[u8], GuardKind, Guard)> = vec![
            (
                b"%begin 1795276294 264 0",
                GuardKind::Begin,
                guard(1795276294, 264, 0),
            ),
            (
                b"%end 1795276294 264 0",
                GuardKind::End,
                guard(1795276294, 264, 0),
            ),
            (
                b"%error 1795276296 273 1",
                GuardKind::Error,
                guard(1795276296, 273, 1),
            ),
            (b"%end 1 2 1", GuardKind::End, guard(1, 2, 1)),
        ];
        for (line, kind, expected) in ok {
            assert_eq!(super::guard(line).map(|(_, g)| g), Ok((kind, expected)));
        }
        let bad: [&[u8]; 8] = [
            b"%begin",
            b"%begin 1 2",
            b"%begin 1 2 3 4",
            b"%begin 1 2 x",
            b"%end  1 2 3",
            b"%end 1 2 3 ",
            b"%ending 1 2 3",
            b"%end 1 -2 3",
        ];
        for line in bad {
            assert!(
                super::guard(line).is_err(),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn in_block_notifications_follow_the_flags_rule() {
        let pause = Some(Notification::Pause { pane: PaneId(0) });
        assert_eq!(in_block_notification(b"%pause %0", false), pause);
        assert_eq!(in_block_notification(b"%pause %0", true), pause);
        assert_eq!(
            in_block_notification(b"%continue %0", false),
            Some(Notification::Continue { pane: PaneId(0) })
        );
        // Only lines that parse fully are taken out of the reply.
        assert_eq!(in_block_notification(b"%pause %0 and more", true), None);
        assert_eq!(in_block_notification(b"%pause", true), None);
        let message = Some(Notification::Message {
            message: "hi".to_owned(),
        });
        assert_eq!(in_block_notification(b"%message hi", true), message);
        assert_eq!(in_block_notification(b"%message hi", false), None);
        assert_eq!(in_block_notification(b"%config-error f:1: x", false), None);
        assert!(in_block_notification(b"%config-error f:1: x", true).is_some());
        // Everything else stays a reply line.
        assert_eq!(in_block_notification(b"%output %0 x", true), None);
        assert_eq!(in_block_notification(b"%sessions-changed", true), None);
    }

    #[test]
    fn unescape_inverts_tmux_escaping() {
        let all: Vec<u8> = (0..=255).collect();
        for data in [
            &all[..],
            b"",
            b"\\",
            b"\\\\\\",
            b"plain",
            b"\n\n\r\x00",
            "☃\\134".as_bytes(),
            // Runs right after the first escapes, while the write position
            // trails the read position by less than a word (found by proptest).
            b"\0 \0\0\0\0\0\0\0\0",
            b"\0ab\0cd\0efghijklmnop\0q\0",
        ] {
            let mut escaped = escape(data);
            let len = unescape_in_place(&mut escaped);
            assert_eq!(&escaped[..len], data);
        }
    }

    #[test]
    fn unescape_keeps_what_is_not_an_escape() {
        let table: [(&[u8], &[u8]); 8] = [
            (b"\\", b"\\"),
            (b"a\\", b"a\\"),
            (b"\\01", b"\\01"),
            (b"\\018", b"\\018"),
            (b"\\400", b"\\400"),
            (b"\\x41", b"\\x41"),
            (b"\\\\101", b"\\A"),
            (b"\\101\\102x\\9\\103", b"ABx\\9C"),
        ];
        for (input, expected) in table {
            let mut buf = input.to_vec();
            let len = unescape_in_place(&mut buf);
            assert_eq!(
                &buf[..len],
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
