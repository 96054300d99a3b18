//! Lines piped through two real binaries with real SQLite stores, beside SQLite's own
//! insert rate measured in the same run.
//!
//! ```text
//! cargo build --release -p socketfalco -p socketfalco-benches --example binaries
//! target/release/examples/binaries [LINES] [BYTES_PER_LINE]
//! ```
//!
//! A listener (`socketfalco -l --json`) and a caller (`socketfalco -c … --json`), each with
//! its own data directory on the build's disk, run as separate processes. Once they are
//! connected, `LINES` (default 100,000) lines go to the caller's standard input in one
//! stream; the clock stops when the caller reports the last one delivered (the listener
//! holds it durably and acked it). Then the listener's store is checked: every line is
//! there, once, in order. Before and after, the example measures SQLite's own `synchronous
//! = FULL` insert rate at 1,024 rows per commit on the same disk (the ceiling), and prints
//! the ratio.

use socketfalco_benches::data::message;
use socketfalco_benches::sqlite::{temp_dir, PlainTable};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn binary() -> PathBuf {
    std::env::var_os("SOCKETFALCO_BIN").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/release/socketfalco"
            ))
        },
        PathBuf::from,
    )
}

fn run(dir: &Path, args: &[&str]) {
    let status = Command::new(binary())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary().display()));
    assert!(status.success(), "{args:?} failed");
}

fn spawn(dir: &Path, args: &[&str]) -> (Child, mpsc::Receiver<serde_json::Value>) {
    let mut child = Command::new(binary())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .arg("--json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary().display()));
    let stdout: ChildStdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Only the events the measurement waits for are parsed: the reader must not take
        // the CPU the two processes are measured with.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let wanted = ["\"listening\"", "\"connected\"", "\"delivered\""]
                .iter()
                .any(|event| line.contains(event));
            if !wanted {
                continue;
            }
            if let Ok(value) = serde_json::from_str(&line) {
                // The test may stop listening; the child's output is still drained.
                let _ = tx.send(value);
            }
        }
    });
    (child, rx)
}

fn wait_for(
    rx: &mpsc::Receiver<serde_json::Value>,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) if pred(&event) => return event,
            Ok(_) => {}
            Err(_) => panic!("no {what} within 600 s"),
        }
    }
}

/// SQLite's own rate for rows of `bytes` bytes at 1,024 rows per FULL commit.
fn ceiling(base: &str, bytes: usize) -> f64 {
    let dir = temp_dir(base);
    let mut table = PlainTable::create(dir.path(), "FULL");
    let text = "x".repeat(bytes);
    let start = Instant::now();
    for batch in 0..16u64 {
        let rows: Vec<_> = (1..=1024)
            .map(|i| message(batch * 1024 + i, &text))
            .collect();
        table.insert(&rows);
    }
    (16 * 1024) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let lines: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let bytes: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20)
        .max(8);
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tmp");
    let before = ceiling(base, bytes);
    println!("ceiling before: SQLite FULL, 1,024 rows of {bytes} B per commit: {before:.0} rows/s");

    let (alice_dir, bob_dir) = (temp_dir(base), temp_dir(base));
    run(alice_dir.path(), &["-eN", "alice"]);
    run(bob_dir.path(), &["-eN", "bob"]);
    let (mut alice, alice_events) =
        spawn(alice_dir.path(), &["-l", "-p", "0", "--bind", "127.0.0.1"]);
    let listening = wait_for(&alice_events, "listening", |e| e["event"] == "listening");
    let port = listening["addr"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .expect("an address")
        .to_owned();
    let (mut bob, bob_events) = spawn(bob_dir.path(), &["-c", "127.0.0.1", "-p", &port]);
    wait_for(&bob_events, "connected", |e| e["event"] == "connected");

    let mut input: Vec<u8> = Vec::with_capacity(lines as usize * (bytes + 1));
    for i in 0..lines {
        let head = format!("{i:08}");
        input.extend_from_slice(head.as_bytes());
        input.extend(std::iter::repeat_n(b'.', bytes - head.len()));
        input.push(b'\n');
    }
    let mut stdin = bob.stdin.take().expect("piped");
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&input).expect("write the lines");
        stdin
    });
    wait_for(&bob_events, "the last line delivered", |e| {
        e["event"] == "delivered" && e["up_to"].as_u64() >= Some(lines)
    });
    let elapsed = start.elapsed();
    let rate = lines as f64 / elapsed.as_secs_f64();
    drop(writer.join());
    let _ = bob.wait();
    drop(alice.stdin.take());
    let _ = alice.wait();

    let after = ceiling(base, bytes);
    println!("ceiling after: {after:.0} rows/s");
    let ceiling = before.max(after);
    println!(
        "{lines} lines of {bytes} B through two binaries: {:.2} s, {rate:.0} msg/s = {:.2} of the higher ceiling ({ceiling:.0} rows/s)",
        elapsed.as_secs_f64(),
        rate / ceiling
    );

    // Complete and in order on the listener's side.
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(alice_dir.path())
        .args(["-ls", "--json"])
        .output()
        .expect("-ls");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let chats = list.as_array().cloned().unwrap_or_default();
    let messages = chats
        .iter()
        .find_map(|c| c["messages"].as_u64())
        .unwrap_or(0);
    println!("the listener holds {messages} messages of the chat (expected {lines})");
    assert_eq!(messages, lines, "every line stored once");
    let chat = chats
        .iter()
        .find_map(|c| c["chat"].as_str().map(str::to_owned))
        .expect("the chat");
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(alice_dir.path())
        .args(["-eC", &chat, "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("-eC");
    let mut next = 0u64;
    for line in out.stdout.split(|b| *b == b'\n') {
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if event["event"] != "history" {
            continue;
        }
        let text = event["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with(&format!("{next:08}")),
            "line {next} out of order: {text:?}"
        );
        next += 1;
    }
    assert_eq!(next, lines, "the whole chat, in order");
    println!("complete and in order on the listener's side");
}
