//! End to end on loopback, with the ceiling beside it in the same run.
//!
//! - `loopback/throughput`: lines typed on one side (`Command::Write` to bob's endpoint)
//!   until alice has acked the last (`Output::Delivered`), two `transport-mio` endpoints in
//!   this process over real sockets — with the real SQLite store on both sides
//!   (`sqlite`, durable: WAL, `synchronous = FULL`) and with O(1) in-memory stores
//!   (`memory`, to separate the storage's cost from the protocol's and the sockets'), each
//!   in the clear (`plain`) and encrypted (`secure`, Noise XX, as the product runs).
//!   The ceiling: the very bytes those messages are on the wire, pushed through a plain
//!   loopback TCP pair with no protocol, the far end acking cumulatively once per read —
//!   written 64 KiB at a time (`raw_tcp/buffered`), and one `write` per message
//!   (`raw_tcp/write_per_message`, what a driver that writes each message at once pays).
//! - `loopback/round_trip`: one line typed, wait for its delivery, repeated; beside it a
//!   plain TCP ping-pong (64-byte request, 16-byte reply). Criterion gives the mean; each
//!   bench then prints p50/p99/p99.9 of a separately recorded loop. The ping-pong's two
//!   threads are pinned (`placement`): criterion's figure has them across the two cores, as
//!   two devices would be; the percentiles are printed across cores and on one core.
//!
//! - `round_trip/durable_floor`: the same ping-pong with a one-row durable commit on each
//!   side per round trip (the request goes on the wire while the sender's commit runs), two
//!   blocking threads and nothing else — what this machine's disk and scheduler allow a
//!   durable round trip at best, printed beside the product's (`net::DurableEcho`), across
//!   cores and on one core.
//!
//! Before the durable runs the bench prints what one durable commit costs at that moment
//! (the storage ceiling of a typed line), with the log growing and with it reused: on a
//! shared disk it changes from minute to minute. The SQLite round trips are also recorded for
//! a new chat's first lines (`…/new_chat`), before criterion's run writes thousands.
//! `SOCKETFALCO_BENCH_RECEIVER_DIR` puts the receiver's database elsewhere (a tmpfs: one
//! commit on the disk per round trip, as with two devices that each have their own).

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use socketfalco_benches::data::{message, message_frame, message_stream, text_4k, SHORT_LINE};
use socketfalco_benches::memory::BenchStore;
use socketfalco_benches::net::{
    connected_endpoints, DurableEcho, RawEcho, RawSink, RunningEndpoint,
};
use socketfalco_benches::placement::Placement;
use socketfalco_benches::sqlite::{open_database, temp_dir, temp_dir_under, PlainTable};
use socketfalco_benches::stats::{print_load, Percentiles};
use socketfalco_testkit::{DEVICE_A, DEVICE_B};
use socketfalco_transport::Command;
use std::path::Path;
use std::time::{Duration, Instant};

const TMP: &str = env!("CARGO_TARGET_TMPDIR");

/// Messages per measured run: what the ceiling pushes, and the in-memory endpoints.
const RAW_MESSAGES: u64 = 100_000;
const MEMORY_MESSAGES: u64 = 20_000;
/// With durable storage every typed line is one fsync'ed transaction: fewer by default;
/// `SOCKETFALCO_BENCH_SQLITE_MESSAGES` sets another count (once lines are committed in
/// groups, a run of 200 is mostly fixed costs).
fn sqlite_messages() -> u64 {
    std::env::var("SOCKETFALCO_BENCH_SQLITE_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

/// In the clear, and encrypted (Noise XX, as the product runs).
const MODES: [(&str, bool); 2] = [("plain", false), ("secure", true)];

fn throughput(count: u64) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: count,
        bytes: message_stream(1, count, SHORT_LINE).len() as u64,
    }
}

/// Bob's side of a running chat: types lines and waits for alice's acks.
struct Sender {
    alice: RunningEndpoint,
    bob: RunningEndpoint,
    typed: u64,
    /// The line typed.
    text: String,
}

impl Sender {
    fn type_and_wait(&mut self, count: u64) {
        for _ in 0..count {
            self.bob.control.send(Command::Write(self.text.clone()));
        }
        self.typed += count;
        self.bob.wait_delivered(self.typed);
    }

    fn quit(self) {
        self.bob.quit();
        self.alice.quit();
    }
}

fn memory_chat(secure: bool) -> Sender {
    let (alice, bob) = connected_endpoints(BenchStore::counting(), BenchStore::new(), secure);
    Sender {
        alice,
        bob,
        typed: 0,
        text: SHORT_LINE.to_owned(),
    }
}

/// Where alice, the receiver, keeps her database: under `SOCKETFALCO_BENCH_RECEIVER_DIR` if
/// set — a tmpfs there leaves one durable commit on the disk per round trip instead of two,
/// as two devices with a disk each would see it (here both share one disk, which flushes
/// for one at a time) — else with the others.
fn receiver_dir() -> tempfile::TempDir {
    let Some(dir) = std::env::var_os("SOCKETFALCO_BENCH_RECEIVER_DIR") else {
        return temp_dir(TMP);
    };
    eprintln!(
        "[loopback] the receiver's database under {}",
        dir.to_string_lossy()
    );
    temp_dir_under(Path::new(&dir))
}

fn sqlite_chat(secure: bool) -> (Sender, [tempfile::TempDir; 2]) {
    let dirs = [receiver_dir(), temp_dir(TMP)];
    let store_a = open_database(dirs[0].path(), DEVICE_A, "alice");
    let store_b = open_database(dirs[1].path(), DEVICE_B, "bob");
    let (alice, bob) = connected_endpoints(store_a, store_b, secure);
    (
        Sender {
            alice,
            bob,
            typed: 0,
            text: SHORT_LINE.to_owned(),
        },
        dirs,
    )
}

fn measure_typing(sender: &mut Sender, count: u64, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        sender.type_and_wait(count);
    }
    start.elapsed()
}

fn throughput_benches(c: &mut Criterion) {
    print_load("loopback");
    let mut group = c.benchmark_group("loopback/throughput");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));

    // The ceiling: the same bytes, no protocol.
    let stream = message_stream(1, RAW_MESSAGES, SHORT_LINE);
    let mut sink = RawSink::start().unwrap_or_else(|e| panic!("raw tcp: {e}"));
    group.throughput(throughput(RAW_MESSAGES));
    group.bench_function(BenchmarkId::new("raw_tcp/buffered", RAW_MESSAGES), |b| {
        b.iter(|| {
            sink.push(&stream, 64 * 1024)
                .unwrap_or_else(|e| panic!("push: {e}"))
        })
    });
    let frames: Vec<Vec<u8>> = (1..=MEMORY_MESSAGES)
        .map(|seq| message_frame(seq, SHORT_LINE))
        .collect();
    group.throughput(throughput(MEMORY_MESSAGES));
    group.bench_function(
        BenchmarkId::new("raw_tcp/write_per_message", MEMORY_MESSAGES),
        |b| {
            b.iter(|| {
                sink.push_each(frames.iter().map(Vec::as_slice))
                    .unwrap_or_else(|e| panic!("push: {e}"))
            })
        },
    );
    drop(sink);

    for (mode, secure) in MODES {
        let mut chat = memory_chat(secure);
        let id = BenchmarkId::new(format!("endpoints/memory/{mode}"), MEMORY_MESSAGES);
        group.bench_function(id, |b| {
            b.iter_custom(|iters| measure_typing(&mut chat, MEMORY_MESSAGES, iters))
        });
        chat.quit();
    }

    let _ = print_commit_latency("the sqlite throughput runs");
    let sqlite_count = sqlite_messages();
    let ceiling = print_insert_ceiling(SHORT_LINE);
    eprintln!(
        "[loopback] target for endpoints/sqlite: at least half of that, {:.0} msg/s",
        ceiling / 2.0
    );
    group.throughput(throughput(sqlite_count));
    for (mode, secure) in MODES {
        let (mut chat, _dirs) = sqlite_chat(secure);
        let id = BenchmarkId::new(format!("endpoints/sqlite/{mode}"), sqlite_count);
        group.bench_function(id, |b| {
            b.iter_custom(|iters| measure_typing(&mut chat, sqlite_count, iters))
        });
        chat.quit();
    }

    // 4 KiB messages, durable, encrypted: beside SQLite's byte rate for such rows and the
    // raw loopback bytes of the same frames.
    let long = text_4k();
    let long_count = (sqlite_count / 4).max(100);
    let long_stream = message_stream(1, long_count, &long);
    let mut sink = RawSink::start().unwrap_or_else(|e| panic!("raw tcp: {e}"));
    group.throughput(Throughput::ElementsAndBytes {
        elements: long_count,
        bytes: long_stream.len() as u64,
    });
    group.bench_function(BenchmarkId::new("raw_tcp/buffered_4KiB", long_count), |b| {
        b.iter(|| {
            sink.push(&long_stream, 64 * 1024)
                .unwrap_or_else(|e| panic!("push: {e}"))
        })
    });
    drop(sink);
    let rows = print_insert_ceiling(&long);
    eprintln!(
        "[loopback] SQLite's byte rate for 4 KiB rows: {:.1} MiB/s",
        rows * long.len() as f64 / (1024.0 * 1024.0)
    );
    let (mut chat, _dirs) = sqlite_chat(true);
    chat.text = long;
    let id = BenchmarkId::new("endpoints/sqlite/secure_4KiB", long_count);
    group.bench_function(id, |b| {
        b.iter_custom(|iters| measure_typing(&mut chat, long_count, iters))
    });
    chat.quit();
    group.finish();
}

/// Measures and prints SQLite's own rate for rows of `text` at 1,024 rows per
/// `synchronous = FULL` commit, into a plain table on the chats' disk: the ceiling the
/// durable end-to-end figures are held against, in the same run. Returns rows per second.
fn print_insert_ceiling(text: &str) -> f64 {
    let dir = temp_dir(TMP);
    let mut table = PlainTable::create(dir.path(), "FULL");
    let batches = 8u64;
    let mut seq = 1;
    let start = Instant::now();
    for _ in 0..batches {
        let batch: Vec<_> = (seq..seq + 1024).map(|s| message(s, text)).collect();
        seq += 1024;
        table.insert(&batch);
    }
    let rate = (batches * 1024) as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "[loopback] ceiling: SQLite FULL inserts of {}-byte rows, 1,024 per commit: {rate:.0} rows/s",
        text.len()
    );
    rate
}

/// Commits timed for each of [`print_commit_latency`]'s figures: enough that one of the
/// disk's pauses does not move the median (40, before 2026-12-02, did).
const COMMIT_SAMPLES: u64 = 200;

/// What one durable commit costs right now (single-row transactions into a plain table,
/// WAL, `synchronous = FULL`, on the disk the chats use), printed: this shared disk's fsync
/// latency swings tenfold within minutes, so each durable figure needs its own. Two figures:
/// [`COMMIT_SAMPLES`] commits into a new database, whose log grows with each (SQLite's default, and the
/// target's yardstick), then as many more after a checkpoint, which overwrite that log from its
/// start (what the store's commits do, since it grows its log to full size on opening).
/// Returns both.
fn print_commit_latency(before: &str) -> Option<(Percentiles, Percentiles)> {
    let dir = temp_dir(TMP);
    let mut table = PlainTable::create(dir.path(), "FULL");
    let commits = |table: &mut PlainTable, first: u64| {
        let mut samples = Vec::new();
        for seq in first..first + COMMIT_SAMPLES {
            let batch = [message(seq, SHORT_LINE)];
            let start = Instant::now();
            table.insert(&batch);
            samples.push(start.elapsed());
        }
        Percentiles::of(&samples)
    };
    let growing = commits(&mut table, 1)?;
    table.checkpoint();
    let reused = commits(&mut table, 1 + COMMIT_SAMPLES)?;
    eprintln!("[loopback] one durable commit now (before {before}), log growing: {growing}");
    eprintln!("[loopback] one durable commit now (before {before}), log reused: {reused}");
    Some((growing, reused))
}

/// A ceiling's name with where its threads run (`unpinned` where they cannot be pinned).
fn placement_name(placement: Placement) -> String {
    match placement.cpus() {
        Some(_) => placement.label().replace(' ', "_"),
        None => "unpinned".to_string(),
    }
}

/// Runs `round_trip` `count` times, prints the percentiles and returns them.
fn percentiles(name: &str, count: usize, mut round_trip: impl FnMut()) -> Option<Percentiles> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        round_trip();
        samples.push(start.elapsed());
    }
    let p = Percentiles::of(&samples)?;
    eprintln!("[loopback/round_trip/{name}] {p}");
    Some(p)
}

fn round_trip_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("loopback/round_trip");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));

    // Criterion's figure is the ping-pong across the two cores, as two devices have it.
    let mut echo = RawEcho::start(64, 16, Some(Placement::AcrossCores))
        .unwrap_or_else(|e| panic!("raw tcp: {e}"));
    group.bench_function("raw_tcp/64B_16B", |b| {
        b.iter(|| echo.round_trip().unwrap_or_else(|e| panic!("echo: {e}")))
    });
    drop(echo);

    for (mode, secure) in MODES {
        let name = format!("endpoints/memory/{mode}");
        let mut chat = memory_chat(secure);
        group.bench_function(&name, |b| b.iter(|| chat.type_and_wait(1)));
        let _ = percentiles(&name, 3_000, || chat.type_and_wait(1));
        chat.quit();
    }

    let commit = print_commit_latency("the sqlite round trips");
    // The yardsticks, each with its two threads pinned: across the two cores (two devices,
    // as two machines) and on one core (what the scheduler often picks for a ping-pong).
    let mut raw = Vec::new();
    for placement in Placement::ALL {
        let mut echo =
            RawEcho::start(64, 16, Some(placement)).unwrap_or_else(|e| panic!("raw tcp: {e}"));
        let name = format!("raw_tcp/64B_16B/{}", placement_name(placement));
        if let Some(p) = percentiles(&name, 5_000, || {
            echo.round_trip().unwrap_or_else(|e| panic!("echo: {e}"))
        }) {
            raw.push((placement, p));
        }
    }
    for placement in Placement::ALL {
        let floor_dir = temp_dir(TMP);
        let mut floor = DurableEcho::start(floor_dir.path(), Some(placement))
            .unwrap_or_else(|e| panic!("echo: {e}"));
        // Past the first checkpoint, so that both logs are overwritten, not grown, as the
        // store's are.
        for _ in 0..1_000 {
            floor.round_trip().unwrap_or_else(|e| panic!("echo: {e}"));
        }
        let name = format!("durable_floor/{}", placement_name(placement));
        let _ = percentiles(&name, 2_000, || {
            floor.round_trip().unwrap_or_else(|e| panic!("echo: {e}"))
        });
    }
    if let Some((growing, reused)) = commit {
        for (placement, raw) in &raw {
            let raw_us = raw.p50.as_secs_f64() * 1e6;
            for (log, commit) in [("growing", growing), ("reused", reused)] {
                let commit_us = commit.p50.as_secs_f64() * 1e6;
                eprintln!(
                    "[loopback] target for the sqlite round trips: p50 ≤ raw p50 ({}) {raw_us:.1} µs + 2 × commit p50 (log {log}) {commit_us:.1} µs = {:.1} µs",
                    placement.label(),
                    raw_us + 2.0 * commit_us
                );
            }
        }
    }
    for (mode, secure) in MODES {
        let name = format!("endpoints/sqlite/{mode}");
        let (mut chat, _dirs) = sqlite_chat(secure);
        // A new chat's first lines, before the loop below has written thousands: what a
        // session's first lines see on a new data folder.
        let _ = percentiles(&format!("{name}/new_chat"), 300, || chat.type_and_wait(1));
        group.bench_function(&name, |b| b.iter(|| chat.type_and_wait(1)));
        // 3,000, so that the p99 is the 30th worst and not the 3rd: a checkpoint (one in
        // about 330 commits on each side) or one of the disk's pauses is not the tail alone.
        let _ = percentiles(&name, 3_000, || chat.type_and_wait(1));
        chat.quit();
    }
    group.finish();
}

criterion_group!(benches, throughput_benches, round_trip_benches);
criterion_main!(benches);
