//! Storage: the SQLite store persisting received messages, one transaction per message vs
//! batched (64, 1024), with the durability settings the chat really uses (`Database::open`:
//! WAL, `synchronous = FULL`). Beside each, measured just before it:
//! - `plain_table/N`: the ceiling, plain prepared inserts into a table with the same key and
//!   index and the same settings, none of the store's checks and bookkeeping;
//! - `compose/1`: the sender's side, one typed line = one transaction.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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

criterion_group!(benches, per_transaction);
criterion_main!(benches);
