//! A data directory whose one chat holds a long history, for measuring the chat view on it
//! (`benches/history.sh` runs the binary on it and reports time and peak memory).
//!
//! ```text
//! cargo run --release -p socketfalco-benches --example history -- DIR COUNT [UNREAD]
//! ```
//!
//! Creates the device "Alice" in the data directory DIR and stores COUNT messages from the
//! peer "Bob" through the store's own API, in batches as a long re-sync stores them; the
//! newest UNREAD of them (default 10) are left unread. Prints the chat's id (for `-eC`).

use socketfalco::store::Database;
use socketfalco_core::{DeviceId, Message, PeerHello, Store};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(count)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: history DIR COUNT [UNREAD]");
        std::process::exit(2);
    };
    let (Ok(count), Ok(unread)) = (
        count.parse::<u64>(),
        args.get(3).map_or(Ok(10), |u| u.parse::<u64>()),
    ) else {
        eprintln!("COUNT and UNREAD must be numbers");
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    let started = Instant::now();
    let mut db = Database::open(&dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    db.create_identity(DeviceId([0xa1; 16]), "Alice")
        .unwrap_or_else(|e| panic!("create the identity: {e}"));
    let bob = DeviceId([0xb0; 16]);
    let hello = PeerHello {
        device: bob,
        name: "Bob".to_owned(),
        peer_temporary: false,
        temporary: false,
    };
    db.open_chat(&hello, None)
        .unwrap_or_else(|e| panic!("open the chat: {e}"));
    let base_ms: i64 = 1_767_225_600_000;
    let store = |db: &mut Database, from: u64, to: u64| {
        let batch: Vec<Message> = (from..=to)
            .map(|seq| Message {
                seq,
                lamport: seq,
                sent_at_ms: base_ms + i64::try_from(seq).unwrap_or(0) * 1_000,
                text: format!("message {seq}: a line of an ordinary length, as people write them"),
            })
            .collect();
        db.persist_received(bob, &batch)
            .unwrap_or_else(|e| panic!("store: {e}"));
    };
    let read_up_to = count.saturating_sub(unread);
    let mut from = 1;
    while from <= read_up_to {
        let to = (from + 49_999).min(read_up_to);
        store(&mut db, from, to);
        from = to + 1;
    }
    db.mark_read(bob)
        .unwrap_or_else(|e| panic!("mark read: {e}"));
    if read_up_to < count {
        store(&mut db, read_up_to + 1, count);
    }
    eprintln!("stored {count} messages in {:?}", started.elapsed());
    println!("{bob}");
}
