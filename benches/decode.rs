//! Decoding speed of `ControlCodec` on a real captured `tmux -C` stream,
//! against a baseline that only splits the same bytes on LF with memchr.
//!
//! The stream (`tests/fixtures/control-stream-3.3a.bin`, captured from tmux
//! 3.3a by `tests/fixtures/capture-control-stream.py`) has shell prompts,
//! `seq`, multibyte UTF-8, colours and cursor movement in `%output`, session
//! lifecycle notifications and command replies.
//!
//! A second group decodes the same capture without its `%output` lines: what
//! tmux sends a client with the `no-output` flag, as the sidecar runs (short
//! notification and reply lines only).
//!
//! Criterion reports MB/s for each; at the end the decoder's throughput is
//! printed as a ratio of the baseline's, both measured in this process.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput};
use memchr::memchr;
use tmux_agent::control::{ControlEvent, codec::ControlCodec};
use tokio_util::codec::Decoder;

const STREAM: &[u8] = include_bytes!("../tests/fixtures/control-stream-3.3a.bin");

/// A read as large as a typical pipe read by `FramedRead`.
const READ_SIZE: usize = 64 * 1024;

/// The baseline: split on LF with memchr and touch every line.
fn split_lines(input: &[u8]) -> usize {
    let mut start = 0;
    let mut lines = 0;
    while let Some(offset) = memchr(b'\n', &input[start..]) {
        black_box(&input[start..start + offset]);
        lines += 1;
        start += offset + 1;
    }
    lines
}

/// Decodes a buffer holding the whole stream.
fn decode_buffer(mut buf: BytesMut) -> usize {
    let mut codec = ControlCodec::new();
    let mut events = 0;
    while let Ok(Some(event)) = codec.decode(&mut buf) {
        black_box(&event);
        events += 1;
    }
    events
}

/// Decodes the stream as it arrives in reads, copying each into the buffer.
fn decode_reads(input: &[u8]) -> usize {
    let mut codec = ControlCodec::new();
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut events = 0;
    for read in input.chunks(READ_SIZE) {
        buf.extend_from_slice(read);
        while let Ok(Some(event)) = codec.decode(&mut buf) {
            black_box(&event);
            events += 1;
        }
    }
    events
}

/// The capture without its `%output` lines.
fn without_output() -> Vec<u8> {
    let mut out = Vec::new();
    for line in STREAM.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b"%output ") {
            out.extend_from_slice(line);
        }
    }
    out
}

fn check_stream(stream: &[u8]) {
    let mut buf = BytesMut::from(stream);
    let mut codec = ControlCodec::new();
    let (mut replies, mut others) = (0, 0);
    while let Some(event) = codec.decode_eof(&mut buf).expect("the stream decodes") {
        match event {
            ControlEvent::Reply(_) => replies += 1,
            ControlEvent::LineTooLong { .. } => panic!("no line is too long"),
            _ => others += 1,
        }
    }
    let begins = stream
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"%begin "))
        .count();
    assert_eq!(replies, begins, "every block decodes into one reply");
    assert_eq!(decode_buffer(BytesMut::from(stream)), replies + others);
    assert_eq!(decode_reads(stream), replies + others);
}

fn bench_stream(c: &mut Criterion, name: &str, stream: &[u8]) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("baseline: memchr LF split", |b| {
        b.iter(|| split_lines(black_box(stream)))
    });
    group.bench_function("ControlCodec, whole buffer", |b| {
        b.iter_batched(
            || BytesMut::from(stream),
            decode_buffer,
            BatchSize::LargeInput,
        )
    });
    group.bench_function("ControlCodec, 64 KiB reads", |b| {
        b.iter(|| decode_reads(black_box(stream)))
    });
    group.finish();
}

/// The median time of `run` over batches of one call, for about `budget`.
fn median_time(budget: Duration, mut run: impl FnMut() -> Duration) -> Duration {
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 11 || start.elapsed() < budget {
        times.push(run());
    }
    times.sort();
    times[times.len() / 2]
}

fn report_ratio(name: &str, stream: &[u8]) {
    let budget = Duration::from_secs(2);
    let baseline = median_time(budget, || {
        let t = Instant::now();
        black_box(split_lines(black_box(stream)));
        t.elapsed()
    });
    let whole = median_time(budget, || {
        let buf = BytesMut::from(stream);
        let t = Instant::now();
        black_box(decode_buffer(buf));
        t.elapsed()
    });
    let reads = median_time(budget, || {
        let t = Instant::now();
        black_box(decode_reads(black_box(stream)));
        t.elapsed()
    });
    let mb_s = |d: Duration| stream.len() as f64 / d.as_secs_f64() / 1e6;
    println!(
        "\n{name}: {} bytes; medians in this process:\n  baseline memchr LF split: {:8.0} MB/s\n  ControlCodec, whole buffer: {:6.0} MB/s = {:5.1}% of baseline\n  ControlCodec, 64 KiB reads: {:6.0} MB/s = {:5.1}% of baseline",
        stream.len(),
        mb_s(baseline),
        mb_s(whole),
        100.0 * baseline.as_secs_f64() / whole.as_secs_f64(),
        mb_s(reads),
        100.0 * baseline.as_secs_f64() / reads.as_secs_f64(),
    );
}

fn main() {
    let sidecar = without_output();
    check_stream(STREAM);
    check_stream(&sidecar);
    let mut criterion = Criterion::default().configure_from_args();
    bench_stream(&mut criterion, "control-stream-3.3a", STREAM);
    bench_stream(
        &mut criterion,
        "control-stream-3.3a without %output",
        &sidecar,
    );
    criterion.final_summary();
    // Only `cargo bench` passes `--bench`; `cargo test --benches` runs each
    // benchmark once as a test, and the report would only slow it down.
    if std::env::args().any(|arg| arg == "--bench") {
        report_ratio("control-stream-3.3a", STREAM);
        report_ratio("control-stream-3.3a without %output", &sidecar);
    }
}
