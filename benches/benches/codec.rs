//! Frame codec: encode and decode of typical frames (a short chat line, a 4 KiB message, an
//! ack), and decode of a long stream fed in 1-byte, 1-KiB and 64-KiB pieces.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use socketfalco_benches::data::SHORT_LINE;
use socketfalco_benches::data::{ack_frame, message, message_frame, message_stream, text_4k};
use socketfalco_benches::stats::print_load;
use socketfalco_core::{encode_frame, encode_message_frame, Frame, FrameDecoder};
use std::hint::black_box;
use std::time::Duration;

/// Frames in the long stream: 16,384 short lines (about 1 MiB).
const STREAM_FRAMES: u64 = 16_384;

fn one_frame(bytes: u64) -> Throughput {
    Throughput::ElementsAndBytes { elements: 1, bytes }
}

fn encode(c: &mut Criterion) {
    print_load("codec");
    let long = text_4k();
    let mut group = c.benchmark_group("codec/encode");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    // A seq and Lamport counter of a chat in its thousands: 3-byte CBOR integers.
    for (name, text) in [("short_line", SHORT_LINE), ("4KiB", long.as_str())] {
        let m = message(4_321, text);
        let len = message_frame(4_321, text).len() as u64;
        group.throughput(one_frame(len));
        group.bench_function(BenchmarkId::new("message", name), |b| {
            let mut out = Vec::with_capacity(8 * 1024);
            b.iter(|| {
                out.clear();
                encode_message_frame(black_box(&m), &mut out);
                black_box(out.len())
            })
        });
    }
    let ack = Frame::Ack { up_to: 4_321 };
    group.throughput(one_frame(ack_frame(4_321).len() as u64));
    group.bench_function("ack", |b| {
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            out.clear();
            encode_frame(black_box(&ack), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let long = text_4k();
    let mut group = c.benchmark_group("codec/decode");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let frames = [
        ("message/short_line", message_frame(4_321, SHORT_LINE)),
        ("message/4KiB", message_frame(4_321, &long)),
        ("ack", ack_frame(4_321)),
    ];
    for (name, bytes) in &frames {
        group.throughput(one_frame(bytes.len() as u64));
        group.bench_function(*name, |b| {
            let mut decoder = FrameDecoder::new();
            b.iter(|| {
                let mut input = black_box(&bytes[..]);
                match decoder.decode(&mut input) {
                    Ok(Some(frame)) => black_box(frame),
                    other => panic!("decode: {other:?}"),
                }
            })
        });
    }
    group.finish();
}

fn decode_stream(c: &mut Criterion) {
    let stream = message_stream(1, STREAM_FRAMES, SHORT_LINE);
    let mut group = c.benchmark_group("codec/decode_stream");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    group.throughput(Throughput::ElementsAndBytes {
        elements: STREAM_FRAMES,
        bytes: stream.len() as u64,
    });
    for (name, piece) in [("1B", 1), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
        group.bench_function(BenchmarkId::new("short_lines", name), |b| {
            b.iter(|| {
                let mut decoder = FrameDecoder::new();
                let mut frames = 0u64;
                for chunk in stream.chunks(piece) {
                    let mut input = chunk;
                    loop {
                        match decoder.decode(&mut input) {
                            Ok(Some(frame)) => {
                                black_box(frame);
                                frames += 1;
                            }
                            Ok(None) => break,
                            Err(e) => panic!("decode: {e}"),
                        }
                    }
                }
                assert_eq!(frames, STREAM_FRAMES);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, decode, decode_stream);
criterion_main!(benches);
