//! Re-sync: a backlog of 100,000 waiting messages delivered after reconnect, in memory —
//! time (criterion) and peak heap (printed; this binary counts every allocation).
//!
//! - `resync/harness_pair`: the test harness's `Pair` (`MemoryStore` both sides). The
//!   receiver's store and its notice log keep every message in memory, so the heap grows
//!   with the backlog by design; the bench prints that growth apart from the transient peak.
//! - `resync/links`: two `Link`s, the receiver's store counting instead of keeping (a disk
//!   store keeps nothing in memory): the peak above the starting heap is the protocol's
//!   working memory, which the window bounds. Run with backlogs of 10,000 and 100,000 to
//!   show it does not grow with the backlog.

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use socketfalco_benches::alloc::{self, mib, CountingAlloc};
use socketfalco_benches::data::{message_stream, SHORT_LINE};
use socketfalco_benches::memory::{BenchStore, LinkPair};
use socketfalco_benches::stats::print_load;
use socketfalco_testkit::{Pair, DEVICE_A, DEVICE_B};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const BACKLOG: u64 = 100_000;

/// The largest heap figures seen over a bench's iterations.
#[derive(Default)]
struct Memory {
    /// Peak heap above the heap in use just before the reconnect.
    peak_above_start: usize,
    /// Heap still in use after the re-sync, above the start (what was kept).
    kept: usize,
}

impl Memory {
    fn record(&mut self, start: usize) {
        self.peak_above_start = self
            .peak_above_start
            .max(alloc::peak().saturating_sub(start));
        self.kept = self.kept.max(alloc::current().saturating_sub(start));
    }

    fn print(&self, bench: &str, backlog: u64, took: Option<Duration>) {
        let took = took.map_or(String::new(), |d| format!(", one run took {d:.2?}"));
        eprintln!(
            "[{bench}] backlog {backlog}: peak heap above start {:.2} MiB \
             (kept after the re-sync {:.2} MiB, transient {:.2} MiB){took}",
            mib(self.peak_above_start),
            mib(self.kept),
            mib(self.peak_above_start.saturating_sub(self.kept)),
        );
    }
}

fn throughput(count: u64) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: count,
        bytes: message_stream(1, count, SHORT_LINE).len() as u64,
    }
}

/// A harness pair whose alice has `backlog` lines waiting for bob, disconnected.
fn pair_with_backlog(backlog: u64) -> Pair {
    let mut pair = Pair::new();
    // Connect once so both know each other, then write offline (as `Pair::write` does when
    // no link is up), in bulk: the store's compose rereads the chat, quadratic for 100,000.
    pair.connect_and_drive();
    pair.disconnect();
    let mut backlog_store = BenchStore::new().with_backlog(backlog, SHORT_LINE);
    let chat = pair.a.store.chats.entry(DEVICE_B).or_default();
    chat.own = std::mem::take(&mut backlog_store.own);
    pair.a.notices.clear();
    pair.b.notices.clear();
    pair
}

fn harness_pair(c: &mut Criterion) {
    print_load("resync");
    let mut group = c.benchmark_group("resync/harness_pair");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(6));
    group.throughput(throughput(BACKLOG));
    let mut memory = Memory::default();
    let mut last = None;
    group.bench_function(BenchmarkId::from_parameter(BACKLOG), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut pair = pair_with_backlog(BACKLOG);
                let start_heap = alloc::current();
                alloc::reset_peak();
                let start = Instant::now();
                pair.connect_and_drive();
                let took = start.elapsed();
                memory.record(start_heap);
                total += took;
                last = Some(took);
                assert_eq!(pair.waiting(true), 0);
                assert_eq!(pair.b.store.chats[&DEVICE_A].received.len() as u64, BACKLOG);
            }
            total
        })
    });
    memory.print("resync/harness_pair", BACKLOG, last);
    group.finish();
}

fn links(c: &mut Criterion) {
    let mut group = c.benchmark_group("resync/links");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for (backlog, secure) in [(BACKLOG / 10, false), (BACKLOG, false), (BACKLOG, true)] {
        let name = format!("{backlog}/{}", if secure { "secure" } else { "plain" });
        group.throughput(throughput(backlog));
        let mut memory = Memory::default();
        let mut last = None;
        group.bench_function(BenchmarkId::from_parameter(&name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let store_a = BenchStore::new().with_backlog(backlog, SHORT_LINE);
                    let mut store_b = BenchStore::counting();
                    // Bob knows alice already (an earlier connection): open_chat is a commit.
                    store_b.commits = 0;
                    let start_heap = alloc::current();
                    alloc::reset_peak();
                    let start = Instant::now();
                    let pair = LinkPair::connect(store_a, store_b, secure);
                    let took = start.elapsed();
                    memory.record(start_heap);
                    total += took;
                    last = Some(took);
                    assert_eq!(pair.store_b.received_count, backlog);
                    assert_eq!(pair.store_a.delivered_up_to, backlog);
                    drop(pair);
                }
                total
            })
        });
        memory.print(&format!("resync/links/{name}"), backlog, last);
    }
    group.finish();
}

criterion_group!(benches, harness_pair, links);
criterion_main!(benches);
