//! Storage: the SQLite store persisting received messages, one transaction per message vs
//! batched (64, 1024), with the durability settings the chat really uses (`Database::open`:
//! WAL, `synchronous = FULL`). Beside each, measured just before it:
//! - `plain_table/N`: the ceiling, plain prepared inserts into a table with the same key and
//!   index and the same settings, none of the store's checks and bookkeeping;
//! - `compose/1`: the sender's side, one typed line = one transaction.
//!
//! `storage/statements`: what one call costs the storage thread inside a group, its commit
//! not counted (groups of 64 calls, committed outside the timing) — a line typed in a live
//! session (`compose_live/1`) and one received message (`persist_received/1`): the work the
//! thread does before a round trip's line can go on the wire, or its commit can start.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use socketfalco::store::Database;
use socketfalco_benches::data::{message, SENT_AT_MS, SHORT_LINE};
use socketfalco_benches::sqlite::{open_chat, open_database, temp_dir, PlainTable};
use socketfalco_benches::stats::print_load;
use socketfalco_core::{Message, Store};
use socketfalco_testkit::{DEVICE_A, DEVICE_B};
use std::time::{Duration, Instant};

const TMP: &str = env!("CARGO_TARGET_TMPDIR");

/// Messages per transaction: one (what a lone line costs), 64 and 1024 (what one readiness
/// event brings under load; the window is 1024).
const BATCHES: [u64; 3] = [1, 64, 1024];

fn throughput(batch: u64) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: batch,
        bytes: batch * SHORT_LINE.len() as u64,
    }
}

fn batch(first: u64, count: u64) -> Vec<Message> {
    (first..first + count)
        .map(|seq| message(seq, SHORT_LINE))
        .collect()
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn configure(group: &mut Group<'_>) {
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
}

/// Times `insert` alone on batches of `n` messages, each batch numbered on from the last
/// (as a chat grows).
fn bench_inserts(group: &mut Group<'_>, name: &str, n: u64, mut insert: impl FnMut(&[Message])) {
    let mut next = 1;
    group.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let messages = batch(next, n);
                next += n;
                let start = Instant::now();
                insert(&messages);
                total += start.elapsed();
            }
            total
        })
    });
}

fn per_transaction(c: &mut Criterion) {
    print_load("storage");
    eprintln!(
        "[storage] databases under {}",
        socketfalco_benches::sqlite::bench_root(TMP).display()
    );
    // The store and its ceiling side by side for each batch size: this shared disk's fsync
    // latency swings tenfold within minutes, so a ratio is only fair between neighbours.
    let mut group = c.benchmark_group("storage/per_transaction");
    configure(&mut group);
    for n in BATCHES {
        group.throughput(throughput(n));

        let dir = temp_dir(TMP);
        let mut table = PlainTable::create(dir.path(), "FULL");
        bench_inserts(&mut group, "plain_table", n, |messages| {
            table.insert(messages);
        });

        let dir = temp_dir(TMP);
        let mut db = open_database(dir.path(), DEVICE_A, "alice");
        open_chat(&mut db, DEVICE_B, "bob");
        bench_inserts(&mut group, "persist_received", n, |messages| {
            if let Err(e) = db.persist_received(DEVICE_B, messages) {
                panic!("persist: {e}");
            }
        });

        if n == 1 {
            let dir = temp_dir(TMP);
            let mut db = open_database(dir.path(), DEVICE_A, "alice");
            open_chat(&mut db, DEVICE_B, "bob");
            group.bench_function(BenchmarkId::new("compose", n), |b| {
                b.iter(|| match db.compose(DEVICE_B, SHORT_LINE, SENT_AT_MS) {
                    Ok(m) => m,
                    Err(e) => panic!("compose: {e}"),
                })
            });
        }
    }
    group.finish();
}

/// Calls per group in `statements`: the commit that ends a group is not timed.
const CALLS_PER_GROUP: u64 = 64;

/// Times `call(i)` alone, `CALLS_PER_GROUP` calls to a group.
fn bench_in_groups(
    group: &mut Group<'_>,
    name: &str,
    db: &mut Database,
    call: fn(&mut Database, u64),
) {
    let mut next = 0;
    group.bench_function(BenchmarkId::new(name, 1), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                if let Err(e) = db.begin_group() {
                    panic!("begin: {e}");
                }
                for _ in 0..CALLS_PER_GROUP.min(iters - done) {
                    next += 1;
                    let start = Instant::now();
                    call(db, next);
                    total += start.elapsed();
                    done += 1;
                }
                if let Err(e) = db.commit_group() {
                    panic!("commit: {e}");
                }
            }
            total
        })
    });
}

fn statements(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage/statements");
    configure(&mut group);
    group.throughput(throughput(1));
    let dir = temp_dir(TMP);
    let mut db = open_database(dir.path(), DEVICE_A, "alice");
    open_chat(&mut db, DEVICE_B, "bob");
    bench_in_groups(&mut group, "compose_live", &mut db, |db, i| {
        let texts = [SHORT_LINE.to_owned()];
        if let Err(e) = db.compose_batch(DEVICE_B, &texts, SENT_AT_MS, Some(i - 1)) {
            panic!("compose: {e}");
        }
    });
    bench_in_groups(&mut group, "persist_received", &mut db, |db, i| {
        if let Err(e) = db.persist_received(DEVICE_B, &[message(i, SHORT_LINE)]) {
            panic!("persist: {e}");
        }
    });
    group.finish();
}

criterion_group!(benches, per_transaction, statements);
criterion_main!(benches);
