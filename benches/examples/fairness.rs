//! Fairness of one listener serving many peers: how long a live line of one peer takes while
//! another peer re-syncs a large backlog into the same listener.
//!
//! ```text
//! cargo run --release -p socketfalco-benches --example fairness [BACKLOG] [COMMIT_MS] [PEER_DIR]
//! ```
//!
//! Alice listens (the real SQLite store, on the build's disk, encrypted connections as the
//! product runs them). Carol connects and measures round trips — a line typed, until alice's
//! ack of it comes back — first alone, then while Bob connects with `BACKLOG` (default
//! 100,000) lines written offline, which re-sync into alice's store at the same time. It
//! prints the round-trip percentiles of both phases and how long the re-sync took.
//!
//! With `COMMIT_MS`, every group commit of alice's store takes that much longer (a slow disk,
//! [`SlowCommits`]): carol's live line should then wait about one commit, not the re-sync's
//! many, because alice's event loop never waits for her disk.
//!
//! All three stores are on the build's disk by default: three devices sharing one disk, so
//! carol's own commit queues behind alice's group writes, which no two real devices do. With
//! `PEER_DIR` (for instance `/dev/shm`), bob's and carol's stores go there instead, and the
//! figures show what alice's listener alone makes carol wait.

use socketfalco_benches::net::RunningEndpoint;
use socketfalco_benches::sqlite::{open_database, temp_dir};
use socketfalco_core::{DeviceId, SessionConfig, StaticKeypair, Store};
use socketfalco_testkit::SlowCommits;
use socketfalco_transport::{Command, EndpointConfig, Output, Role};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const ALICE: DeviceId = DeviceId([0xa1; 16]);
const BOB: DeviceId = DeviceId([0xb0; 16]);
const CAROL: DeviceId = DeviceId([0xc0; 16]);

fn config(device: DeviceId, name: &str) -> EndpointConfig {
    let keypair =
        StaticKeypair::from_secret([device.0, device.0].concat().try_into().unwrap_or([7; 32]));
    let mut config = EndpointConfig::new(SessionConfig::new(device, name), Some(keypair));
    config.quit_grace_ms = 2_000;
    socketfalco_benches::net::configure_from_env(&mut config);
    config
}

fn caller(
    addr: SocketAddr,
    device: DeviceId,
    name: &str,
    store: socketfalco::store::Database,
) -> RunningEndpoint {
    RunningEndpoint::start(
        Role::connect(vec![addr], addr.to_string()),
        config(device, name),
        store,
    )
}

/// One round trip of carol's: a line typed, until alice acks it.
fn round_trip(carol: &RunningEndpoint, seq: u64) -> Duration {
    let started = Instant::now();
    carol
        .control
        .send(Command::Write(format!("live line {seq}")));
    carol.wait_delivered(seq);
    started.elapsed()
}

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "{name}: {} round trips, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
}

fn main() {
    let backlog: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let commit_ms: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    // Alice on the build's disk (never a tmpfs, where an fsync costs nothing); the peers
    // there too unless PEER_DIR says otherwise.
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tmp");
    let peer_base = std::env::args().nth(3).unwrap_or_else(|| base.to_owned());
    if peer_base != base {
        println!("bob's and carol's stores: in {peer_base}");
    }
    let (dir_a, dir_b, dir_c) = (temp_dir(base), temp_dir(&peer_base), temp_dir(&peer_base));
    let alice_db = open_database(dir_a.path(), ALICE, "alice");
    let mut bob_db = open_database(dir_b.path(), BOB, "bob");
    let carol_db = open_database(dir_c.path(), CAROL, "carol");
    // Bob's backlog, written offline (waiting for the sync), 10,000 lines per transaction.
    let texts: Vec<String> = (0..10_000).map(|i| format!("backlog line {i}")).collect();
    for _ in 0..backlog / 10_000 {
        if let Err(e) = bob_db.compose_batch(ALICE, &texts, 0, None) {
            panic!("backlog: {e}");
        }
    }

    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!());
    let alice_store = SlowCommits {
        inner: alice_db,
        delay: Duration::from_millis(commit_ms),
    };
    if commit_ms > 0 {
        println!("alice's store: every group commit takes {commit_ms} ms more");
    }
    let alice = RunningEndpoint::start(Role::Listen { bind }, config(ALICE, "alice"), alice_store);
    let addr = match alice.wait_for("listening", |o| matches!(o, Output::Listening(_))) {
        Output::Listening(addr) => addr,
        _ => unreachable!(),
    };
    let carol = caller(addr, CAROL, "carol", carol_db);
    carol.wait_for("carol connected", |o| matches!(o, Output::Connected { .. }));

    let mut seq = 0;
    let mut alone = Vec::new();
    for _ in 0..200 {
        seq += 1;
        alone.push(round_trip(&carol, seq));
    }
    percentiles("carol alone", alone);

    let before = alice.received.load(Ordering::Relaxed);
    let started = Instant::now();
    let bob = caller(addr, BOB, "bob", bob_db);
    let mut during = Vec::new();
    // Alice's count includes carol's own lines (`seq - 200` of them during the re-sync).
    while alice.received.load(Ordering::Relaxed) - (seq - 200) < before + backlog {
        seq += 1;
        during.push(round_trip(&carol, seq));
        if started.elapsed() > Duration::from_secs(600) {
            panic!("the re-sync did not finish in 10 minutes");
        }
    }
    let resync = started.elapsed();
    percentiles(&format!("carol while bob re-syncs {backlog}"), during);
    println!(
        "bob's re-sync of {backlog} lines into alice: {:.2} s ({:.0} msg/s)",
        resync.as_secs_f64(),
        backlog as f64 / resync.as_secs_f64()
    );
    bob.quit();
    carol.quit();
    alice.quit();
}
