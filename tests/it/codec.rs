//! `ControlCodec` against real and random input.
//!
//! - Every real transcript in `tests/fixtures/transcripts/` (tmux 3.3a and
//!   3.7c) is rebuilt into each client's server→client byte stream and
//!   decoded whole, split in two at every byte boundary, and one byte at a
//!   time: the events must be identical, and must say what the transcript
//!   shows.
//! - proptest: the decoder never panics on any bytes, and how the bytes are
//!   chunked never changes what comes out.

use std::{collections::BTreeMap, fs, path::Path};

use bytes::Bytes;
use proptest::test_runner::FileFailurePersistence;
use proptest::{collection::vec, prelude::*};
use tmux_agent::control::codec::{ControlCodec, decode_stream};
use tmux_agent::control::{ControlEvent, Notification, PaneId, SessionId};

/// What decoding a stream gives: the events, then the error if one ended it.
type Decoded = (Vec<ControlEvent>, Option<String>);

/// Feeds `chunks` to a fresh codec as a reader would, then signals EOF.
fn decode_chunks<'a>(
    max_line_length: Option<usize>,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Decoded {
    let mut codec = match max_line_length {
        Some(max) => ControlCodec::with_max_line_length(max),
        None => ControlCodec::new(),
    };
    let (events, error) = decode_stream(&mut codec, chunks);
    (events, error.map(|e| e.to_string()))
}

fn decode_whole(max: Option<usize>, input: &[u8]) -> Decoded {
    decode_chunks(max, [input])
}

fn decode_split(max: Option<usize>, input: &[u8], at: usize) -> Decoded {
    let (a, b) = input.split_at(at);
    decode_chunks(max, [a, b])
}

fn decode_bytewise(max: Option<usize>, input: &[u8]) -> Decoded {
    decode_chunks(max, input.chunks(1))
}

/// One client's server→client stream, rebuilt from a transcript.
#[derive(Debug, Default)]
struct Stream {
    bytes: Vec<u8>,
    /// Lines tmux sent, as recorded (for cross-checks).
    lines: Vec<Vec<u8>>,
    ended: bool,
}

/// Undoes Python's backslashreplace (`\xNN` for bytes that were not UTF-8).
/// The transcripts hold no literal `\x` followed by two hex digits.
fn unbackslash(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"\\x")
            && let Some(hex) = text.get(i + 2..i + 4)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Splits a transcript into one stream per client (`C1`, `C2`, ...).
fn streams(transcript: &str) -> BTreeMap<String, Stream> {
    let mut streams: BTreeMap<String, Stream> = BTreeMap::new();
    let mut last_was_sent = false;
    for line in transcript.split('\n') {
        let tag = line.get(..6).unwrap_or(line).trim_end();
        let is_prefixed = tag.len() >= 3
            && tag.starts_with('C')
            && tag[1..tag.len() - 1].bytes().all(|b| b.is_ascii_digit())
            && (tag.ends_with('>') || tag.ends_with('<'));
        if !is_prefixed {
            // Comments, blank lines, and continuations of a sent line.
            assert!(
                line.is_empty() || line.starts_with('#') || last_was_sent,
                "unexpected transcript line {line:?}"
            );
            continue;
        }
        last_was_sent = tag.ends_with('<');
        if last_was_sent {
            continue;
        }
        let client = tag[..tag.len() - 1].to_owned();
        let content = line.get(7..).unwrap_or("");
        let stream = streams.entry(client).or_default();
        assert!(!stream.ended, "a line after <EOF>: {line:?}");
        if content == "<EOF>" {
            stream.ended = true;
            continue;
        }
        let bytes = unbackslash(content);
        stream.bytes.extend_from_slice(&bytes);
        stream.bytes.push(b'\n');
        stream.lines.push(bytes);
    }
    streams
}

fn transcripts() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transcripts");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 7, "transcripts in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, fs::read_to_string(&path).expect("transcript"))
        })
        .collect()
}

#[test]
fn transcripts_decode_the_same_however_they_are_split() {
    let mut clients = 0;
    for (file, text) in transcripts() {
        for (client, stream) in streams(&text) {
            clients += 1;
            let what = format!("{file} {client}");
            let whole = decode_whole(None, &stream.bytes);
            assert_eq!(whole.1, None, "{what}: decoding failed");
            for at in 0..=stream.bytes.len() {
                let split = decode_split(None, &stream.bytes, at);
                assert!(split == whole, "{what}: split at byte {at} differs");
            }
            assert!(
                decode_bytewise(None, &stream.bytes) == whole,
                "{what}: byte-at-a-time differs"
            );

            // What the transcript shows: every line form is known ...
            for event in &whole.0 {
                assert!(
                    !matches!(
                        event,
                        ControlEvent::Notification(Notification::Unknown { .. })
                    ),
                    "{what}: {event:?}"
                );
            }
            // ... and every block was closed into exactly one reply.
            let begins = stream
                .lines
                .iter()
                .filter(|l| l.starts_with(b"%begin "))
                .count();
            let replies = whole
                .0
                .iter()
                .filter(|e| matches!(e, ControlEvent::Reply(_)))
                .count();
            assert_eq!(begins, replies, "{what}");
            if stream.ended {
                assert!(
                    matches!(
                        whole.0.last(),
                        Some(ControlEvent::Notification(Notification::Exit { .. }))
                    ),
                    "{what}: a stream that ended says %exit last"
                );
            }
        }
    }
    assert!(clients >= 15, "only {clients} client streams found");
}

fn client_events(file: &str, client: &str) -> Vec<ControlEvent> {
    let (_, text) = transcripts()
        .into_iter()
        .find(|(name, _)| name == file)
        .expect("transcript");
    let streams = streams(&text);
    let (events, error) = decode_whole(None, &streams[client].bytes);
    assert_eq!(error, None);
    events
}

fn reply_lines(event: &ControlEvent) -> Option<Vec<&[u8]>> {
    match event {
        ControlEvent::Reply(reply) => Some(reply.lines.iter().map(|l| &l[..]).collect()),
        _ => None,
    }
}

#[test]
fn user_data_that_looks_like_a_guard_stays_in_its_reply() {
    let events = client_events("3.3a-sidecar-session-and-names.txt", "C1");
    let replies: Vec<_> = events.iter().filter_map(reply_lines).collect();
    let trap: Vec<&[u8]> = vec![b"a", b"%end 1 2 1", b"b"];
    assert_eq!(replies.iter().filter(|lines| **lines == trap).count(), 2);
    assert!(
        events.contains(&ControlEvent::Notification(Notification::SessionRenamed {
            session: SessionId(0),
            name: "my sess".into(),
        }))
    );
    // An empty reply line is a line.
    assert!(replies.iter().any(|lines| *lines == vec![&b""[..]]));
}

#[test]
fn in_block_notifications_and_stray_lines_on_3_7c() {
    let events = client_events("3.7c-config-errors-messages-buffers.txt", "C1");
    let config_error = events
        .iter()
        .position(|e| {
            matches!(
                e,
                ControlEvent::Notification(Notification::ConfigError { .. })
            )
        })
        .expect("%config-error from the attach block");
    assert!(
        matches!(&events[config_error + 1], ControlEvent::Reply(r) if !r.guard.is_ours() && r.lines.is_empty())
    );
    // Our own display-message block keeps its %message line as reply data.
    let own: Vec<&[u8]> = vec![b"%message hello-from-self"];
    assert!(
        events
            .iter()
            .filter_map(reply_lines)
            .any(|lines| lines == own)
    );
    for expected in [
        ControlEvent::Notification(Notification::Message {
            message: "HOOK-MSG created $2 u2".into(),
        }),
        ControlEvent::Stray(Bytes::from_static(b"HOOK-P created u2")),
        ControlEvent::Stray(Bytes::from_static(b"RS-OUT")),
        ControlEvent::Notification(Notification::PasteBufferChanged {
            name: "mybuf".into(),
        }),
        ControlEvent::Notification(Notification::PasteBufferDeleted {
            name: "mybuf".into(),
        }),
        ControlEvent::Notification(Notification::Pause { pane: PaneId(0) }),
        ControlEvent::Notification(Notification::Continue { pane: PaneId(0) }),
    ] {
        assert!(events.contains(&expected), "missing {expected:?}");
    }
}

#[test]
fn subscriptions_and_extended_output_on_3_3a() {
    let events = client_events("3.3a-subscriptions.txt", "C1");
    assert!(events.contains(&ControlEvent::Notification(
        Notification::SubscriptionChanged {
            name: "allsess".into(),
            session: SessionId(0),
            window: None,
            window_index: None,
            pane: None,
            value: Bytes::from_static(b"a,b,z,"),
        }
    )));
    assert!(
        events.contains(&ControlEvent::Notification(Notification::ExtendedOutput {
            pane: PaneId(0),
            age_ms: 0,
            data: Bytes::from_static(b"hello-pause-after"),
        }))
    );
}

/// Pieces of the protocol and its traps, to make random input interesting.
fn protocolish() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(b"%begin 1 2 1\n".to_vec()),
        Just(b"%end 1 2 1\n".to_vec()),
        Just(b"%error 1 2 1\n".to_vec()),
        Just(b"%begin 7 8 0\n".to_vec()),
        Just(b"%end 7 8 0\r\n".to_vec()),
        Just(b"%output %0 ".to_vec()),
        Just(b"%extended-output %1 5 : ".to_vec()),
        Just(b"\\033".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"%pause %0\n".to_vec()),
        Just(b"%continue %0\n".to_vec()),
        Just(b"%message m\n".to_vec()),
        Just(b"%config-error c\n".to_vec()),
        Just(b"%subscription-changed s $1 @2 3 %4 : ".to_vec()),
        Just(b"%layout-change @1 a b ".to_vec()),
        Just(b"%session-renamed $1 ".to_vec()),
        Just(b"%exit".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\x1bP1000p".to_vec()),
        vec(any::<u8>(), 0..24),
    ];
    vec(fragment, 0..40).prop_map(|fragments| fragments.concat())
}

/// Splits `input` into chunks of the given sizes (cycled).
fn chunked<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = input;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

proptest! {
    // Seeds of past failures are kept next to this file, in
    // codec.proptest-regressions. proptest's default (SourceParallel) would
    // look for them beside the directory holding main.rs, which for this
    // one-binary suite is tests/proptest-regressions/codec.txt: it would
    // silently stop replaying them.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn chunking_never_changes_the_events(
        input in protocolish(),
        split in any::<prop::sample::Index>(),
        sizes in vec(1usize..32, 1..8),
        max in prop_oneof![Just(None), (0usize..48).prop_map(Some)],
    ) {
        let whole = decode_whole(max, &input);
        prop_assert_eq!(&decode_split(max, &input, split.index(input.len() + 1)), &whole);
        prop_assert_eq!(&decode_chunks(max, chunked(&input, &sizes)), &whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in vec(any::<u8>(), 0..1024), sizes in vec(1usize..64, 1..4)) {
        let whole = decode_whole(Some(64), &input);
        prop_assert_eq!(&decode_chunks(Some(64), chunked(&input, &sizes)), &whole);
        prop_assert_eq!(&decode_bytewise(None, &input), &decode_whole(None, &input));
    }

    #[test]
    fn output_data_round_trips(data in vec(any::<u8>(), 0..512), pane in any::<u32>()) {
        // tmux's escaping (control.c:control_append_data).
        let mut line = format!("%output %{pane} ").into_bytes();
        for &b in &data {
            if b < b' ' || b == b'\\' {
                line.extend_from_slice(format!("\\{b:03o}").as_bytes());
            } else {
                line.push(b);
            }
        }
        line.push(b'\n');
        let (events, error) = decode_whole(None, &line);
        prop_assert_eq!(error, None);
        prop_assert_eq!(events, vec![ControlEvent::Notification(Notification::Output {
            pane: PaneId(pane),
            data: Bytes::from(data),
        })]);
    }
}
