//! A fixed amount of one bench workload, for profilers: `valgrind --tool=callgrind` counts
//! instructions reliably even on a busy machine, and a fixed count makes runs comparable
//! (instructions per message = total / count).
//!
//! ```text
//! cargo build --release -p socketfalco-benches --example profile
//! valgrind --tool=callgrind target/release/examples/profile decode-short 100000
//! ```
//!
//! It prints the wall time and, on Linux, the time its thread spent on a CPU: on a shared
//! machine the second is the fairer figure of what the code costs.
//!
//! Workloads: `encode-short`, `decode-short`, `decode-4k`, `sessions` (two bare sessions,
//! short lines), `links-plain`, `links-secure` (two links with O(1) stores, lines typed 256
//! at a time).

use socketfalco_benches::data::{message, message_frame, text_4k, SHORT_LINE};
use socketfalco_benches::memory::{BenchStore, LinkPair, SessionPair};
use socketfalco_core::{encode_message_frame, FrameDecoder};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn decode(frame: &[u8], count: u64) {
    let mut decoder = FrameDecoder::new();
    for _ in 0..count {
        let mut input = black_box(frame);
        match decoder.decode(&mut input) {
            Ok(Some(frame)) => {
                black_box(frame);
            }
            other => panic!("decode: {other:?}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(workload), Some(count)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: profile WORKLOAD COUNT  (see the source for the workloads)");
        std::process::exit(2);
    };
    let Ok(count) = count.parse::<u64>() else {
        eprintln!("COUNT must be a number");
        std::process::exit(2);
    };
    let cpu_before = on_cpu();
    let start = Instant::now();
    match workload.as_str() {
        "encode-short" => {
            let m = message(4_321, SHORT_LINE);
            let mut out = Vec::with_capacity(256);
            for _ in 0..count {
                out.clear();
                encode_message_frame(black_box(&m), &mut out);
                black_box(&out);
            }
        }
        "decode-short" => decode(&message_frame(4_321, SHORT_LINE), count),
        "decode-4k" => decode(&message_frame(4_321, &text_4k()), count),
        "sessions" => {
            let mut pair = SessionPair::established(1024);
            pair.send(count, SHORT_LINE);
        }
        "links-plain" | "links-secure" => {
            let secure = workload == "links-secure";
            let mut pair = LinkPair::connect(BenchStore::new(), BenchStore::counting(), secure);
            pair.type_lines(count, SHORT_LINE, 256);
        }
        other => {
            eprintln!("unknown workload {other}");
            std::process::exit(2);
        }
    }
    let took = start.elapsed();
    eprintln!(
        "{workload} x{count}: {took:.2?} wall ({:.0} per second)",
        count as f64 / took.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (cpu_before, on_cpu()) {
        let cpu = after.saturating_sub(before);
        eprintln!(
            "{workload} x{count}: {cpu:.2?} on the CPU ({:.0} per CPU-second; the wall figure \
             also counts the time other processes held the CPU)",
            count as f64 / cpu.as_secs_f64()
        );
    }
}

/// Time this thread has spent running on a CPU (Linux: `/proc/thread-self/schedstat`, in
/// nanoseconds), so that a busy machine's waits for a CPU do not count.
fn on_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}
