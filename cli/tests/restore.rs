//! End-to-end: a device restored from an older copy of its data directory (a backup, a synced
//! folder, a disk that lost its cache), with the real binary, real sockets and real SQLite
//! files copied and put back while the program is not running. Protocol rules in
//! docs/PROTOCOL.md §2.1.

mod common;

use common::{assert_ok, stdout, Device};
use serde_json::Value;
use std::fs;
use std::path::Path;

/// Copies every file of a data directory (database, its WAL, the key file) to `to`,
/// replacing what was there: a backup, or its restore. Only while no process uses `from`.
fn copy_data_dir(from: &Path, to: &Path) {
    if to.exists() {
        for entry in fs::read_dir(to).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
    } else {
        fs::create_dir_all(to).unwrap();
    }
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        // fs::copy keeps the permissions: the key file stays owner-only.
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The chat with `peer` as `-eC --json` shows it: `(text, seq, delivered, mine)` in order.
fn history(device: &Device, peer: &Device) -> Vec<(String, Option<u64>, bool, bool)> {
    let out = device.run(&["-eC", &peer.id(), "--json"]);
    assert_ok(&out);
    stdout(&out)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|v| v["event"] == "history")
        .map(|v| {
            (
                v["text"].as_str().unwrap().to_owned(),
                v["seq"].as_u64(),
                v["delivered"].as_bool().unwrap(),
                v["mine"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// `alice` calls `bob`, types `lines`, waits until Bob holds all of them, and both leave.
fn chat(alice: &Device, bob: &Device, lines: &[&str]) {
    let (mut listener, port) = bob.listen();
    let mut caller = alice.connect(port);
    caller.connected();
    for line in lines {
        caller.say(line);
    }
    for line in lines {
        listener.received(line);
    }
    caller.finish();
    listener.finish();
}

/// Alice's own messages as `(seq, text)`, from her view of the chat.
fn own(history: &[(String, Option<u64>, bool, bool)]) -> Vec<(Option<u64>, String)> {
    history
        .iter()
        .filter(|(_, _, _, mine)| *mine)
        .map(|(text, seq, _, _)| (*seq, text.clone()))
        .collect()
}

/// `device`'s copy of `peer`'s messages as `(seq, text)`.
fn received(device: &Device, peer: &Device) -> Vec<(Option<u64>, String)> {
    history(device, peer)
        .into_iter()
        .filter(|(_, _, _, mine)| !mine)
        .map(|(text, seq, _, _)| (seq, text))
        .collect()
}

fn numbered(texts: &[&str]) -> Vec<(Option<u64>, String)> {
    texts
        .iter()
        .zip(1..)
        .map(|(text, seq)| (Some(seq), (*text).to_owned()))
        .collect()
}

/// The two stories. Alice sends r-one, r-two, r-three; her data directory goes back
/// to its copy from after r-one, and she writes r-hello offline: it must reach Bob under a
/// new number, never be shown delivered before it is, and Alice gets r-two and r-three
/// back. Then Bob's directory goes back to its copy from after r-one, and Alice writes
/// r-after: Bob gets everything again, nothing stalls.
#[test]
fn restored_data_directories_lose_nothing_mark_nothing_delivered_unsent_and_never_stall() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    chat(&alice, &bob, &["r-one"]);
    let backups = tempfile::tempdir().unwrap();
    let alice_after_r_one = backups.path().join("alice");
    let bob_after_r_one = backups.path().join("bob");
    copy_data_dir(alice.path(), &alice_after_r_one);
    copy_data_dir(bob.path(), &bob_after_r_one);
    chat(&alice, &bob, &["r-two", "r-three"]);

    // Alice's directory is restored; she writes offline.
    copy_data_dir(&alice_after_r_one, alice.path());
    assert_eq!(own(&history(&alice, &bob)), numbered(&["r-one"]));
    let out = alice.run_with_input(&["-eC", &bob.id()], "r-hello\n");
    assert_ok(&out);
    let shown = history(&alice, &bob);
    assert_eq!(
        shown.last(),
        Some(&("r-hello".to_owned(), None, false, true)),
        "written offline: waiting, not numbered, not delivered"
    );
    let waiting = &alice.list()[0]["waiting"];
    assert_eq!(waiting, 1, "-ls counts it as waiting");

    // The next connection: Alice gets her lost history back, then sends r-hello.
    chat(&alice, &bob, &["r-hello live"]);
    let all = ["r-one", "r-two", "r-three", "r-hello", "r-hello live"];
    assert_eq!(own(&history(&alice, &bob)), numbered(&all));
    assert_eq!(
        received(&bob, &alice),
        numbered(&all),
        "Bob: every id with one text, the same as Alice's"
    );
    assert!(history(&alice, &bob)
        .iter()
        .all(|(_, _, delivered, _)| *delivered));
    assert_eq!(alice.list()[0]["waiting"], 0);

    // Now Bob's directory goes back to after r-one; Alice writes r-after offline.
    copy_data_dir(&bob_after_r_one, bob.path());
    let out = alice.run_with_input(&["-eC", &bob.id()], "r-after\n");
    assert_ok(&out);
    let (mut listener, port) = bob.listen();
    let caller = alice.connect(port);
    listener.received("r-after");
    caller.finish();
    listener.finish();
    let all = [
        "r-one",
        "r-two",
        "r-three",
        "r-hello",
        "r-hello live",
        "r-after",
    ];
    assert_eq!(own(&history(&alice, &bob)), numbered(&all));
    assert_eq!(received(&bob, &alice), numbered(&all));
    assert_eq!(alice.list()[0]["waiting"], 0);
}

/// A device restored to an empty copy of its directory (only the identity and the key)
/// gets both halves of the chat back from its peer: its own messages by recovery, the
/// peer's by the ordinary re-sync.
#[test]
fn a_device_restored_to_its_first_day_gets_the_whole_chat_back() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    // Creates the identity and the key, and nothing else.
    assert_ok(&alice.run(&["-ls"]));
    let backups = tempfile::tempdir().unwrap();
    let first_day = backups.path().join("alice");
    copy_data_dir(alice.path(), &first_day);
    let lines: Vec<String> = (0..300).map(|i| format!("line {i}")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    chat(&alice, &bob, &lines);
    copy_data_dir(&first_day, alice.path());
    assert!(alice.list().is_empty(), "the restored copy knows no chat");
    // Her lines come back, and she is told: only bob's device vouches for them.
    let (mut listener, port) = bob.listen();
    let mut caller = alice.connect(port);
    caller.connected();
    caller.wait_for("the lost lines, told", |e| {
        e["event"] == "restored" && e["up_to"] == 300
    });
    caller.say("back again");
    listener.received("back again");
    caller.finish();
    listener.finish();
    let mut all = lines.clone();
    all.push("back again");
    assert_eq!(own(&history(&alice, &bob)), numbered(&all));
    assert_eq!(
        history(&alice, &bob),
        history(&bob, &alice)
            .into_iter()
            .map(|(t, s, d, m)| (t, s, d, !m))
            .collect::<Vec<_>>()
    );
}

/// A restored listener gets its lost lines back from a caller that only syncs and leaves
/// (`-c HOST < /dev/null`): all of them in that one connection — the caller waits until it
/// has sent them all back, not one batch of 256 per connection.
#[test]
fn a_caller_that_syncs_and_leaves_gives_a_restored_listener_all_its_lines_back() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    chat(&alice, &bob, &["hi"]);
    let backups = tempfile::tempdir().unwrap();
    let backup = backups.path().join("bob");
    copy_data_dir(bob.path(), &backup);
    let lines: String = (0..700).map(|i| format!("bob {i}\n")).collect();
    assert_ok(&bob.run_with_input(&["-eC", &alice.id()], &lines));
    let sync_once = |bob: &Device, restored: bool| {
        let (mut listener, port) = bob.listen_with(|cmd| {
            cmd.arg("--serve");
        });
        let port = port.to_string();
        let out = alice.run_with_input(&["-c", "127.0.0.1", "-p", &port], "");
        assert_ok(&out);
        if restored {
            // Only this connection could have brought them: the caller is gone.
            listener.wait_for("all the lines back", |e| {
                e["event"] == "restored" && e["up_to"] == 700
            });
        }
        listener.kill();
    };
    sync_once(&bob, false);
    assert_eq!(received(&alice, &bob).len(), 700);
    copy_data_dir(&backup, bob.path());
    assert!(own(&history(&bob, &alice)).is_empty());
    sync_once(&bob, true);
    let lines: Vec<String> = (0..700).map(|i| format!("bob {i}")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(own(&history(&bob, &alice)), numbered(&lines));
}
