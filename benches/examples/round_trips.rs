//! A fixed number of durable round trips and nothing else, for the kernel's tracer: the
//! same two endpoints as `loopback/round_trip/endpoints/sqlite` (real SQLite stores, two
//! databases on the build's disk, bob's lines typed from this thread), 1,000 round trips to
//! warm up, then COUNT measured, their p50 and p99 printed. Under `perf record` of the
//! scheduler's and the syscalls' tracepoints, `benches/round_trip_trace.py` takes each round
//! trip apart (docs/PERFORMANCE.md, "Where a round trip's time goes, from the kernel's
//! trace", has the command and what it found).
//!
//! ```text
//! cargo build --release -p socketfalco-benches --example round_trips
//! target/release/examples/round_trips plain 3000     # or secure
//! ```

use socketfalco_benches::data::SHORT_LINE;
use socketfalco_benches::net::connected_endpoints;
use socketfalco_benches::sqlite::{open_database, temp_dir};
use socketfalco_benches::stats::Percentiles;
use socketfalco_testkit::{DEVICE_A, DEVICE_B};
use socketfalco_transport::Command;
use std::time::Instant;

/// Round trips before the measured ones: past the logs' first growth.
const WARM_UP: u64 = 1_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secure = match args.get(1).map(String::as_str) {
        Some("plain") => false,
        Some("secure") => true,
        _ => {
            eprintln!("usage: round_trips plain|secure [COUNT]");
            std::process::exit(2);
        }
    };
    let count: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3_000);
    // On the build's disk (never a tmpfs, where an fsync costs nothing).
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tmp");
    let dirs = [temp_dir(base), temp_dir(base)];
    let alice_db = open_database(dirs[0].path(), DEVICE_A, "alice");
    let bob_db = open_database(dirs[1].path(), DEVICE_B, "bob");
    let (alice, bob) = connected_endpoints(alice_db, bob_db, secure);
    let mut typed = 0;
    let mut round_trip = || {
        bob.control.send(Command::Write(SHORT_LINE.to_owned()));
        typed += 1;
        bob.wait_delivered(typed);
    };
    for _ in 0..WARM_UP {
        round_trip();
    }
    let mut samples = Vec::new();
    for _ in 0..count {
        let start = Instant::now();
        round_trip();
        samples.push(start.elapsed());
    }
    if let Some(p) = Percentiles::of(&samples) {
        println!("{count} durable round trips ({}): {p}", args[1]);
    }
    bob.quit();
    alice.quit();
}
