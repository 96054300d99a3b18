//! Core in memory: two paired sessions exchanging 100,000 messages with acks, no I/O.
//!
//! - `core/sessions`: two bare `Session`s (codec, state machine, window, cumulative acks);
//!   the receiver confirms once per round, as a driver does once per readiness event.
//! - `core/links`: two `Link`s (the driver logic the binary runs) with O(1) in-memory
//!   stores: every line is composed (stored, then sent as the window allows), every received
//!   batch persisted then acked, every ack recorded; plain, and encrypted (Noise XX, as the
//!   product runs).
//! - `core/harness_pair`: the same through the test harness's `Pair` (encrypted, its
//!   default) and `MemoryStore`, with fewer messages: its compose rereads the whole chat
//!   (see docs/PERFORMANCE.md).

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use socketfalco_benches::data::{message_stream, text_4k, SHORT_LINE};
use socketfalco_benches::memory::{BenchStore, LinkPair, SessionPair};
use socketfalco_benches::stats::print_load;
use socketfalco_testkit::Pair;
use std::time::{Duration, Instant};

/// Messages per measured exchange.
const MESSAGES: u64 = 100_000;

/// The default window of a session (`SessionConfig::new`).
const WINDOW: u64 = 1024;

fn throughput(count: u64, text: &str) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: count,
        bytes: message_stream(1, count, text).len() as u64,
    }
}

fn sessions(c: &mut Criterion) {
    print_load("core");
    let long = text_4k();
    let mut group = c.benchmark_group("core/sessions");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, text, count) in [
        ("short_line", SHORT_LINE, MESSAGES),
        ("4KiB", long.as_str(), MESSAGES / 10),
    ] {
        group.throughput(throughput(count, text));
        group.bench_function(BenchmarkId::new(format!("{count}"), name), |b| {
            let mut pair = SessionPair::established(WINDOW);
            b.iter(|| pair.send(count, text))
        });
    }
    group.finish();
}

fn links(c: &mut Criterion) {
    let mut group = c.benchmark_group("core/links");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(throughput(MESSAGES, SHORT_LINE));
    // Lines typed 256 at a time between two readiness events; plain and Noise-encrypted.
    for (name, secure) in [("plain", false), ("secure", true)] {
        group.bench_function(
            BenchmarkId::new(format!("{MESSAGES}/short_line"), name),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut pair =
                            LinkPair::connect(BenchStore::new(), BenchStore::counting(), secure);
                        let start = Instant::now();
                        pair.type_lines(MESSAGES, SHORT_LINE, 256);
                        total += start.elapsed();
                        assert_eq!(pair.store_b.received_count, MESSAGES);
                    }
                    total
                })
            },
        );
    }
    group.finish();
}

fn harness_pair(c: &mut Criterion) {
    const COUNT: u64 = 10_000;
    let mut group = c.benchmark_group("core/harness_pair");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(throughput(COUNT, SHORT_LINE));
    group.bench_function(BenchmarkId::new(format!("{COUNT}"), "short_line"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut pair = Pair::new();
                pair.connect_and_drive();
                let start = Instant::now();
                for i in 0..COUNT {
                    pair.write(true, SHORT_LINE);
                    if i % 256 == 255 {
                        pair.step();
                    }
                }
                pair.drive();
                total += start.elapsed();
                assert_eq!(pair.waiting(true), 0);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, sessions, links, harness_pair);
criterion_main!(benches);
