//! End-to-end security stories with the real `socketfalco` binary: device keys, trust on
//! first use, fingerprints, and the integrity of the encrypted stream.
//!
//! Like `e2e.rs`: separate data directories (`--data-dir`), real sockets on 127.0.0.1 with
//! ephemeral ports, sessions with `--json` read as events, stdin lines as messages, generous
//! timeouts and no timing assertions. Some stories put a small TCP relay of the test's own
//! between the two processes: it copies bytes both ways and records them, and can flip one
//! bit on the way.

mod common;

use common::{assert_ok, is_incoming, text, Device, WAIT};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};

/// The key file in a data directory (see `cli/src/keys.rs`).
const KEY_FILE: &str = "identity.key";

// --- Devices ---------------------------------------------------------------------------------

/// What only these stories ask of a device (the rest is in `common`).
impl Device {
    /// Another device with a copy of `other`'s data directory (same uuid, same chats, same
    /// pinned keys) but without its key file: it makes a new key at its next start. That is
    /// an impostor who stole the database, or the same user after losing the key file.
    fn copy_without_key(other: &Device) -> Device {
        let device = Device::unnamed();
        for entry in std::fs::read_dir(other.path()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != KEY_FILE && entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), device.path().join(entry.file_name())).unwrap();
            }
        }
        device
    }

    /// `--fingerprint --json`.
    fn whoami(&self) -> Value {
        let out = self.run(&["--fingerprint", "--json"]);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// This device's id (its uuid) as `--fingerprint --json` gives it; `id()` reads `-ls`.
    fn uuid(&self) -> String {
        self.whoami()["device"].as_str().unwrap().to_owned()
    }

    fn fingerprint(&self) -> String {
        self.whoami()["fingerprint"].as_str().unwrap().to_owned()
    }

    /// The `-ls --json` row of the chat with `peer`.
    fn chat_with(&self, peer: &Device) -> Value {
        let id = peer.uuid();
        self.list()
            .into_iter()
            .find(|row| row["chat"] == id.as_str())
            .unwrap_or_else(|| panic!("no chat with {id}"))
    }
}

/// alice listens, bob connects, both see the other, bob leaves: the first contact, which
/// pins each side's key on the other.
fn first_contact(alice: &Device, bob: &Device) {
    let (mut listener, port) = alice.listen();
    let mut caller = bob.connect(port);
    caller.connected();
    listener.connected();
    caller.finish();
    listener.wait_for("peer left", |e| e["event"] == "peer_left");
    listener.finish();
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every element of `texts` exactly once in `history`.
#[track_caller]
fn each_once(history: &[String], texts: &[String]) {
    for t in texts {
        let n = history.iter().filter(|h| *h == t).count();
        assert_eq!(n, 1, "{t:?} appears {n} times in {history:?}");
    }
}

// --- The relay -------------------------------------------------------------------------------

/// Where the relay flips a bit: in the caller → listener direction, the last byte (part of
/// the authentication tag) of the first Noise message that starts once `after` bytes have
/// passed — well past the handshake. The relay reads the Noise framing (a 2-byte big-endian
/// length before each message) only to aim; it cannot read the contents.
#[derive(Clone, Copy)]
struct Flip {
    after: usize,
}

/// A TCP relay on 127.0.0.1: accepts `connections` connections, forwards each to `target`,
/// records every byte that passes (both directions), then stops listening.
struct Relay {
    port: u16,
    /// Caller → listener, then listener → caller, over all connections.
    up: Arc<Mutex<Vec<u8>>>,
    down: Arc<Mutex<Vec<u8>>>,
    flipped: Arc<Mutex<bool>>,
    done: Receiver<()>,
}

impl Relay {
    fn start(target: u16, connections: usize, flip: Option<Flip>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(Mutex::new(Vec::new()));
        let flipped = Arc::new(Mutex::new(false));
        let (done_tx, done) = channel();
        let (up2, down2, flipped2) = (up.clone(), down.clone(), flipped.clone());
        std::thread::spawn(move || {
            let mut pumps = Vec::new();
            for index in 0..connections {
                let Ok((client, _)) = listener.accept() else {
                    break;
                };
                let server = TcpStream::connect(("127.0.0.1", target)).unwrap();
                // Only the first connection is tampered with.
                let flip = if index == 0 { flip } else { None };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (up, down, flipped) = (up2.clone(), down2.clone(), flipped2.clone());
                pumps.push(std::thread::spawn(move || {
                    pump(client, server, &up, flip.map(|f| (f, flipped)))
                }));
                pumps.push(std::thread::spawn(move || pump(s2, c2, &down, None)));
            }
            drop(listener);
            for p in pumps {
                let _ = p.join();
            }
            let _ = done_tx.send(());
        });
        Relay {
            port,
            up,
            down,
            flipped,
            done,
        }
    }

    /// Waits until every relayed connection has ended; returns the bytes of both directions.
    fn finish(self) -> (Vec<u8>, Vec<u8>) {
        self.done
            .recv_timeout(WAIT)
            .expect("the relayed connections end");
        let up = std::mem::take(&mut *self.up.lock().unwrap());
        let down = std::mem::take(&mut *self.down.lock().unwrap());
        (up, down)
    }

    fn flipped(&self) -> bool {
        *self.flipped.lock().unwrap()
    }
}

/// Copies `from` to `to`, recording into `record`, flipping one bit if asked, until either
/// side ends; then passes the end on.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    record: &Mutex<Vec<u8>>,
    flip: Option<(Flip, Arc<Mutex<bool>>)>,
) {
    let mut aim = Aim::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((flip, flipped)) = &flip {
            for byte in &mut buf[..n] {
                if aim.observe(*byte, flip.after) {
                    *byte ^= 0x01;
                    *flipped.lock().unwrap() = true;
                }
            }
        }
        record.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// Follows the Noise framing byte by byte to find the one byte to flip.
#[derive(Default)]
struct Aim {
    offset: usize,
    header: Vec<u8>,
    body_left: usize,
    aiming: bool,
    done: bool,
}

impl Aim {
    /// Advances over one byte of the stream; true if it is the byte to flip.
    fn observe(&mut self, byte: u8, after: usize) -> bool {
        if self.done {
            self.offset += 1;
            return false;
        }
        if self.body_left == 0 {
            let start = self.offset;
            self.offset += 1;
            self.header.push(byte);
            if self.header.len() == 1 {
                self.aiming = start >= after;
            }
            if self.header.len() == 2 {
                self.body_left = usize::from(u16::from_be_bytes([self.header[0], self.header[1]]));
                self.header.clear();
            }
            return false;
        }
        self.offset += 1;
        self.body_left -= 1;
        if self.body_left == 0 && self.aiming {
            self.done = true;
            return true;
        }
        false
    }
}

// --- The stories -----------------------------------------------------------------------------

/// An impostor presents bob's uuid with another key: alice refuses it before anything is
/// sent or stored, warns with both fingerprints, and the real bob still gets everything.
#[test]
fn an_impostor_with_a_known_uuid_is_refused_and_the_real_peer_gets_everything() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    first_contact(&alice, &bob);
    let bob_fingerprint = bob.fingerprint();
    assert_eq!(
        alice.chat_with(&bob)["peer_fingerprint"],
        bob_fingerprint.as_str()
    );

    // Alice writes to bob while he is away.
    let secret = "for bob's eyes only: the door code is 4711";
    let out = alice.run_with_input(&["-eC", &bob.uuid()[..8]], &format!("{secret}\n"));
    assert_ok(&out);
    assert_eq!(alice.chat_with(&bob)["waiting"], 1);

    // The impostor: bob's data directory without bob's key.
    let impostor = Device::copy_without_key(&bob);
    assert_eq!(impostor.uuid(), bob.uuid(), "same uuid");
    let impostor_fingerprint = impostor.fingerprint();
    assert_ne!(impostor_fingerprint, bob_fingerprint, "another key");

    let (mut listener, port) = alice.listen();
    let (status, events, stderr) = impostor.connect(port).exit_events();
    assert!(!status.success(), "the impostor was let in: {events:#?}");
    assert!(stderr.contains("refused"), "{stderr}");
    // The close the impostor got is a bare refusal: nothing says that bob's uuid is pinned.
    let close = events
        .iter()
        .find(|e| e["event"] == "peer_left" && e["by"] == "peer")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(close["code"], 8, "Refused: {close}");
    let reason = close["reason"].as_str().unwrap().to_lowercase();
    for hint in ["key", "pin", "identity", "device"] {
        assert!(!reason.contains(hint), "{reason:?} hints at {hint}");
    }
    assert!(
        !events.iter().any(is_incoming),
        "the impostor received something: {events:#?}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "connected"),
        "{events:#?}"
    );

    let warning = listener.wait_for("the key mismatch", |e| e["event"] == "key_mismatch");
    assert_eq!(warning["peer"], bob.uuid().as_str());
    assert_eq!(warning["name"], "bob");
    assert_eq!(warning["presented"], impostor_fingerprint.as_str());
    assert_eq!(warning["pinned"], bob_fingerprint.as_str());
    assert!(warning["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    listener.wait_for("the refusal", |e| {
        e["event"] == "peer_left" && e["by"] == "local"
    });

    // Nothing reached the impostor's store, and alice's side is unchanged.
    assert!(
        !impostor.history(&alice).contains(&secret.to_owned()),
        "the waiting message reached the impostor"
    );
    let row = alice.chat_with(&bob);
    assert_eq!(row["waiting"], 1, "still waiting for the real bob");
    assert_eq!(
        row["peer_fingerprint"],
        bob_fingerprint.as_str(),
        "pin kept"
    );

    // The real bob connects to the same listener and gets the message, once.
    let mut caller = bob.connect(port);
    caller.connected();
    caller.received(secret);
    listener.wait_for("delivery", |e| e["event"] == "delivered");
    caller.finish();
    listener.wait_for("bob left", |e| {
        e["event"] == "peer_left" && e["by"] == "peer"
    });
    listener.finish();
    each_once(&bob.history(&alice), &[secret.to_owned()]);
    assert_eq!(alice.chat_with(&bob)["waiting"], 0);
    assert!(!impostor.history(&alice).contains(&secret.to_owned()));
}

/// A relay between the peers sees only ciphertext: none of the typed texts, names or ids.
#[test]
fn a_relay_sees_none_of_the_typed_text() {
    let alice = Device::new("alice_relayed");
    let bob = Device::new("bob_relayed");
    let (mut listener, port) = alice.listen();
    let relay = Relay::start(port, 1, None);
    let mut caller = bob.connect(relay.port);
    assert_eq!(caller.connected()["name"], "alice_relayed");
    listener.connected();
    let from_bob = [
        "the eagle lands at midnight",
        "ça va très bien, merci ✓ 日本語のテキスト",
    ];
    let from_alice = ["meet me by the old oak tree", "password hunter2 again"];
    for t in from_bob {
        caller.say(t);
    }
    for t in from_alice {
        listener.say(t);
    }
    for t in from_bob {
        listener.received(t);
    }
    for t in from_alice {
        caller.received(t);
    }
    caller.wait_for("delivered", |e| {
        e["event"] == "delivered" && e["up_to"] == 2
    });
    listener.wait_for("delivered", |e| {
        e["event"] == "delivered" && e["up_to"] == 2
    });
    caller.finish();
    listener.wait_for("peer left", |e| e["event"] == "peer_left");
    listener.finish();

    let (up, down) = relay.finish();
    assert!(up.len() > 100 && down.len() > 100, "the chat went through");
    let (alice_id, bob_id) = (alice.uuid(), bob.uuid());
    let mut secrets: Vec<&str> = from_bob.iter().chain(&from_alice).copied().collect();
    secrets.extend([
        "alice_relayed",
        "bob_relayed",
        alice_id.as_str(),
        bob_id.as_str(),
    ]);
    for bytes in [&up, &down] {
        for s in &secrets {
            assert!(!contains(bytes, s.as_bytes()), "{s:?} crossed in the clear");
        }
        for id in [&alice_id, &bob_id] {
            let raw: Vec<u8> = (0..16)
                .map(|i| u8::from_str_radix(&id.replace('-', "")[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            assert!(!contains(bytes, &raw), "a device id crossed in the clear");
        }
    }
    assert_eq!(alice.history(&bob), bob.history(&alice));
}

/// A relay flips one bit of the caller's stream after the handshake: both sides end that
/// connection cleanly (the listener reports the integrity failure), and a clean connection
/// afterwards delivers everything exactly once.
#[test]
fn a_flipped_bit_ends_the_connection_cleanly_and_a_reconnection_delivers_everything_once() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let (mut listener, port) = alice.listen();
    let relay = Relay::start(port, 1, Some(Flip { after: 200 }));
    let mut caller = bob.connect(relay.port);
    caller.connected();
    listener.connected();
    let from_alice: Vec<String> = (0..5).map(|i| format!("alice says {i}")).collect();
    let from_bob: Vec<String> = (0..20)
        .map(|i| format!("bob says {i:02}, with a few more words to fill the stream"))
        .collect();
    for t in &from_alice {
        listener.say(t);
    }
    for t in &from_alice {
        caller.received(t);
    }
    for t in &from_bob {
        caller.say(t);
        // One line per turn of the caller's loop: a burst would be stored and sent as one
        // batch, and the flipped message could then come after every line.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The tampered message ends the connection on the listener's side, which says why ...
    let closed = listener.wait_for("the integrity failure", |e| {
        e["event"] == "peer_left" && e["by"] == "local"
    });
    assert_eq!(closed["code"], 11, "{closed}");
    assert!(
        closed["reason"].as_str().unwrap().contains("integrity"),
        "{closed}"
    );
    assert!(relay.flipped());
    // ... and on the caller's side, which stays up and tries again (the relay is gone).
    caller.wait_for("the end of the connection", |e| e["event"] == "peer_left");
    caller.wait_for("a reconnection attempt", |e| e["event"] == "reconnecting");
    let first = caller.finish();
    relay.finish();
    let delivered_before = first
        .iter()
        .filter(|e| e["event"] == "delivered")
        .filter_map(|e| e["up_to"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        delivered_before < 20,
        "every line was acked despite the broken stream"
    );

    // A clean, direct connection: everything arrives, once.
    listener.seen.clear(); // Its first `connected` is behind us.
    let mut caller = bob.connect(port);
    caller.connected();
    listener.connected();
    caller.wait_for("all of bob's lines delivered", |e| {
        e["event"] == "delivered" && e["up_to"] == 20
    });
    listener.received(&from_bob[19]);
    caller.finish();
    listener.wait_for("bob left", |e| {
        e["event"] == "peer_left" && e["by"] == "peer"
    });
    listener.finish();

    let all: Vec<String> = from_alice.iter().chain(&from_bob).cloned().collect();
    let on_alice = alice.history(&bob);
    let on_bob = bob.history(&alice);
    assert_eq!(on_alice, on_bob, "the same chat on both sides");
    assert_eq!(on_alice.len(), all.len(), "{on_alice:?}");
    each_once(&on_alice, &all);
    assert_eq!(alice.chat_with(&bob)["waiting"], 0);
    assert_eq!(bob.chat_with(&alice)["waiting"], 0);
}

/// `--fingerprint` shows what the peer's `-ls` shows as the pinned fingerprint, both ways.
#[test]
fn the_own_fingerprint_is_what_the_peer_pinned() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    assert!(
        alice.list().is_empty(),
        "no chat yet, but a key: {:?}",
        alice.whoami()
    );
    first_contact(&alice, &bob);
    let (alice_fp, bob_fp) = (alice.fingerprint(), bob.fingerprint());
    assert_ne!(alice_fp, bob_fp);
    assert_eq!(
        alice_fp.len(),
        39,
        "eight groups of four hex digits: {alice_fp}"
    );
    assert_eq!(alice.chat_with(&bob)["peer_fingerprint"], bob_fp.as_str());
    assert_eq!(bob.chat_with(&alice)["peer_fingerprint"], alice_fp.as_str());

    // The same in the plain forms.
    let plain = text(&alice.run(&["--fingerprint"]).stdout);
    assert!(plain.contains(&alice_fp), "{plain}");
    assert!(plain.contains(&alice.uuid()), "{plain}");
    let table = text(&alice.run(&["-ls"]).stdout);
    let header = table.lines().next().unwrap();
    assert!(header.contains(&alice_fp), "{table}");
    let row = table.lines().find(|l| l.contains(&bob.uuid())).unwrap();
    assert!(row.ends_with(&bob_fp), "{table}");
    // The key is stable: the next start loads the same one.
    assert_eq!(alice.fingerprint(), alice_fp);
}

/// bob reinstalls (a new key for the same uuid): refused until alice accepts exactly his new
/// key by its fingerprint with `--trust-new-key CHAT FINGERPRINT`. The old one-argument form
/// and a malformed fingerprint are usage errors that change nothing; a wrong fingerprint
/// keeps bob refused; the right one lets him in, pins his key, and the next connection works.
#[test]
fn trust_new_key_accepts_exactly_the_key_with_the_compared_fingerprint() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    first_contact(&alice, &bob);
    let old_fp = bob.fingerprint();
    std::fs::remove_file(bob.path().join(KEY_FILE)).unwrap();
    let new_fp = bob.fingerprint();
    assert_ne!(new_fp, old_fp, "the reinstall made a new key");
    let chat = bob.uuid();
    let prefix = &chat[..8];

    let (mut listener, port) = alice.listen();
    let (status, _, stderr) = bob.connect(port).exit_events();
    assert!(!status.success());
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(
        stderr.contains(&format!("--trust-new-key {chat} '{new_fp}'")),
        "says what the peer runs: {stderr}"
    );
    let warning = listener.wait_for("the key mismatch", |e| e["event"] == "key_mismatch");
    assert_eq!(warning["presented"], new_fp.as_str());
    assert_eq!(warning["pinned"], old_fp.as_str());
    let accept = warning["accept_command"].as_str().unwrap().to_owned();
    assert!(
        accept.ends_with(&format!("--trust-new-key {chat} '{new_fp}'")),
        "{accept}"
    );
    assert!(
        accept.contains(&alice.path().display().to_string()),
        "names the data directory: {accept}"
    );

    // The one-argument form of earlier versions: refused, saying what to compare and how.
    let out = alice.run(&["--trust-new-key", prefix]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(said.contains("socketfalco --fingerprint"), "{said}");
    assert!(said.contains("FINGERPRINT"), "{said}");
    // A malformed fingerprint: a usage error naming the format.
    let out = alice.run(&["--trust-new-key", prefix, "1234 5678"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("xxxx xxxx xxxx xxxx"));
    assert_eq!(alice.chat_with(&bob)["peer_fingerprint"], old_fp.as_str());

    // A wrong fingerprint (someone else's key): bob stays refused.
    let stranger = Device::new("stranger");
    let wrong_fp = stranger.fingerprint();
    let out = alice.run(&["--trust-new-key", prefix, &wrong_fp]);
    assert_ok(&out);
    let (status, events, _) = bob.connect(port).exit_events();
    assert!(
        !status.success(),
        "bob let in on a wrong fingerprint: {events:#?}"
    );
    assert!(!events.iter().any(|e| e["event"] == "connected"));
    assert_eq!(alice.chat_with(&bob)["peer_fingerprint"], old_fp.as_str());

    // The right one, as bob's --fingerprint shows it (here without spaces, in capitals).
    let typed = new_fp.replace(' ', "").to_uppercase();
    let out = alice.run(&["--trust-new-key", prefix, &typed]);
    assert_ok(&out);
    let said = text(&out.stdout);
    assert!(said.contains(&new_fp), "names the accepted key: {said}");
    assert!(said.contains(&old_fp), "names the key it replaces: {said}");
    // Pinned only once the key is proved.
    assert_eq!(alice.chat_with(&bob)["peer_fingerprint"], old_fp.as_str());

    let mut caller = bob.connect(port);
    caller.connected();
    caller.say("it is me, reinstalled");
    listener.received("it is me, reinstalled");
    caller.finish();
    listener.wait_for("bob left", |e| {
        e["event"] == "peer_left" && e["by"] == "peer"
    });
    assert_eq!(alice.chat_with(&bob)["peer_fingerprint"], new_fp.as_str());
    let table = text(&alice.run(&["-ls"]).stdout);
    assert!(
        table.contains(&new_fp) && !table.contains(&old_fp),
        "{table}"
    );

    // The next connection works: the new key is the pinned one now.
    listener.seen.clear();
    let mut caller = bob.connect(port);
    caller.connected();
    listener.connected();
    caller.finish();
    listener.wait_for("bob left again", |e| {
        e["event"] == "peer_left" && e["by"] == "peer"
    });
    listener.finish();

    // Naming the pinned key again, as JSON: nothing to change.
    let out = alice.run(&["--trust-new-key", &chat, &new_fp, "--json"]);
    assert_ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "already_pinned");
    assert_eq!(v["chat"], chat.as_str());
    assert_eq!(v["expected_fingerprint"], new_fp.as_str());
}

/// Two listeners on ONE data directory, and two callers with the same uuid but different
/// keys connecting at the same time, one to each (a first contact for both): exactly one is
/// accepted and its key pinned, the other is refused. Several rounds, new devices each.
#[test]
fn two_listeners_on_one_data_directory_pin_exactly_one_of_two_racing_keys() {
    for round in 0..3 {
        let alice = Device::new("alice");
        let bob = Device::new("bob");
        let twin = Device::copy_without_key(&bob);
        assert_eq!(twin.uuid(), bob.uuid());
        let (bob_fp, twin_fp) = (bob.fingerprint(), twin.fingerprint());
        assert_ne!(bob_fp, twin_fp);
        let (_first, port1) = alice.listen();
        let (_second, port2) = alice.listen();
        let callers = [bob.connect(port1), twin.connect(port2)];
        let mut results = Vec::new();
        for (caller, fp) in callers.into_iter().zip([&bob_fp, &twin_fp]) {
            results.push((caller, fp.clone()));
        }
        // The refused one exits by itself; the accepted one stays until its input ends.
        let mut winners = Vec::new();
        for (mut caller, fp) in results {
            let event = caller.wait_for("connected or refused", |e| {
                e["event"] == "connected" || (e["event"] == "peer_left" && e["by"] == "peer")
            });
            if event["event"] == "connected" {
                winners.push(fp);
                caller.finish();
            } else {
                let (status, _, _) = caller.exit_events();
                assert!(!status.success(), "round {round}");
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let pinned = alice.chat_with(&bob)["peer_fingerprint"].clone();
        assert_eq!(pinned, winners[0].as_str(), "round {round}");
    }
}

#[test]
fn a_new_device_that_could_be_taken_for_a_known_one_is_pointed_out_at_first_contact() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    first_contact(&alice, &bob);
    // Another device that calls itself "Bob", and one holding a copy of bob's key file under
    // a device id of its own.
    let namesake = Device::new("Bob");
    let same_key = Device::new("robert");
    std::fs::copy(bob.path().join(KEY_FILE), same_key.path().join(KEY_FILE)).unwrap();
    for (newcomer, same_key) in [(&namesake, false), (&same_key, true)] {
        let (mut listener, port) = alice.listen();
        let mut caller = newcomer.connect(port);
        caller.connected();
        let contact = listener.wait_for("first contact", |e| e["event"] == "first_contact");
        assert_eq!(contact["peer"], newcomer.uuid().as_str(), "{contact}");
        assert_eq!(
            contact["lookalikes"],
            serde_json::json!([{"peer": bob.uuid(), "name": "bob", "same_key": same_key}]),
            "{contact}"
        );
        caller.finish();
        listener.wait_for("peer left", |e| e["event"] == "peer_left");
        listener.finish();
    }
}

/// A peer made of the core's own link over a real socket, driven step by step: what a
/// client of another make could do.
struct RawPeer {
    link: socketfalco_core::Link,
    socket: TcpStream,
    store: socketfalco_testkit::MemoryStore,
}

impl RawPeer {
    fn connect(port: u16, id: u8, name: &str) -> RawPeer {
        let device = socketfalco_testkit::Device::new(socketfalco_core::DeviceId([id; 16]), name);
        let link = socketfalco_core::Link::new_secure(
            device.config.clone(),
            0,
            socketfalco_core::Role::Initiator,
            &device.keypair,
            [id; 32],
        );
        let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(20)))
            .unwrap();
        RawPeer {
            link,
            socket,
            store: socketfalco_testkit::MemoryStore::new(),
        }
    }

    /// Moves bytes both ways until `done`. With `stores`, its store requests are carried
    /// out (it syncs and chats); without, never (it says hello and stops there).
    fn drive_until(&mut self, stores: bool, done: impl Fn(&socketfalco_core::Link) -> bool) {
        let deadline = std::time::Instant::now() + WAIT;
        while !done(&self.link) {
            assert!(
                std::time::Instant::now() < deadline,
                "the listener never got there"
            );
            if stores {
                self.link.pump_with(&mut self.store, 0).unwrap();
            }
            let out = self.link.poll_transmit(0).to_vec();
            if !out.is_empty() {
                self.socket.write_all(&out).unwrap();
                self.link.advance_transmit(out.len());
            }
            let mut buf = [0u8; 4096];
            match self.socket.read(&mut buf) {
                Ok(0) => panic!("the listener closed"),
                Ok(n) => self.link.handle_input(&buf[..n], 0),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A stranger admitted by `alice`'s listener on `port` (the chat opened for it, its key
    /// pinned: seen in `-ls`), that never sends its sync.
    fn between_hello_and_sync(alice: &Device, port: u16) -> RawPeer {
        let mut stranger = RawPeer::connect(port, 0x4d, "mallory");
        stranger.drive_until(false, |link| link.session().peer().is_some());
        let deadline = std::time::Instant::now() + WAIT;
        while alice.list().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no chat opened");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        stranger
    }
}

/// Waits (a few seconds at most) until `device` has no chat left.
fn no_chat_left(device: &Device) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let list = device.list();
        if list.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stranger's chat stays: {list:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A stranger that proves a key and says hello but never sends its sync (a client that stops
/// there) leaves nothing behind on the listener: no chat, no pinned key — its first contact
/// was never made.
#[test]
fn a_stranger_that_never_syncs_leaves_no_chat_and_no_pinned_key() {
    let alice = Device::new("Alice");
    let (mut listener, port) = alice.listen_with(|cmd| {
        cmd.arg("--serve");
    });
    let stranger = RawPeer::between_hello_and_sync(&alice, port);
    drop(stranger);
    listener.wait_for("the stranger left", |e| e["event"] == "peer_left");
    // The chat is forgotten on the listener's storage thread, just after the event.
    no_chat_left(&alice);
    listener.kill();
}

/// The same stranger, when the listener is stopped (SIGTERM) while it sits between its
/// hello and its sync: the chat its connection opened goes with it.
#[cfg(unix)]
#[test]
fn a_stranger_between_hello_and_sync_when_the_listener_stops_leaves_no_chat() {
    let alice = Device::new("Alice");
    let (listener, port) = alice.listen_with(|cmd| {
        cmd.arg("--serve");
    });
    let stranger = RawPeer::between_hello_and_sync(&alice, port);
    let pid = listener.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, _, stderr) = listener.exit();
    assert!(status.success(), "{stderr}");
    drop(stranger);
    no_chat_left(&alice);
}

/// A peer whose name carries a bidirectional override (another make of client; ours refuse
/// such names) is shown with it replaced wherever its name is shown: the `-eC` header too.
#[test]
fn a_peer_name_with_an_override_is_never_shown_raw() {
    let alice = Device::new("Alice");
    let (mut listener, port) = alice.listen_with(|cmd| {
        cmd.arg("--serve");
    });
    let mut carol = RawPeer::connect(port, 0xc3, "Ca\u{202e}rol");
    carol.drive_until(true, |link| link.session().is_established());
    carol
        .link
        .compose_one_with(&mut carol.store, "hello", 1, 0)
        .unwrap();
    carol.drive_until(true, |link| link.session().peer_acked() >= 1);
    listener.received("hello");
    drop(carol);
    let chat = alice.list()[0]["chat"].as_str().unwrap().to_owned();
    let out = alice.run_with_input(&["-eC", &chat], "");
    assert_ok(&out);
    let shown = text(&out.stdout);
    assert!(shown.contains("chat with Ca\u{fffd}rol"), "{shown}");
    assert!(shown.contains("Ca\u{fffd}rol: hello"), "{shown}");
    assert!(!shown.contains('\u{202e}'), "{shown:?}");
    listener.kill();
}
