//! Fuzz target: `ControlCodec` must never panic on any bytes, and how the
//! bytes are chunked must never change the events it yields.
//!
//! The first input byte picks the chunk size and the line limit, the rest is
//! the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tmux_agent::control::ControlEvent;
use tmux_agent::control::codec::{ControlCodec, decode_stream};

/// Decodes `input` fed `chunk` bytes at a time, then signals end of input.
fn decode(input: &[u8], chunk: usize, max: usize) -> (Vec<ControlEvent>, Option<String>) {
    let mut codec = ControlCodec::with_max_line_length(max);
    let (events, error) = decode_stream(&mut codec, input.chunks(chunk.max(1)));
    (events, error.map(|e| e.to_string()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(knob & 0x0f) + 1;
    let max = if knob & 0x80 != 0 { 64 } else { 16 * 1024 * 1024 };
    let whole = decode(stream, stream.len().max(1), max);
    let chunked = decode(stream, chunk, max);
    assert!(whole == chunked, "chunking by {chunk} changed the events");
});
