//! How a link binds a peer's device id to its key: the first contact pins in the very call
//! that opens the chat, a mismatch stores nothing and tells the peer nothing, and a new key
//! is accepted only by the fingerprint the user gave.

use socketfalco_core::{execute, CloseCode, Link, Notice, Role, Side, StaticKeypair, StoreRequest};
use socketfalco_testkit::{Device, MemoryStore, Pair, DEVICE_A, DEVICE_B};

/// A [`MemoryStore`] whose storage requests are carried out one by one, recording after
/// each whether it opened the chat and the key pinned for [`DEVICE_B`] at that moment.
#[derive(Default)]
struct Recording {
    store: MemoryStore,
    calls: Vec<(bool, Option<[u8; 32]>)>,
}

/// How a test carries out a link's storage requests.
trait CarryOut {
    fn carry_out(&mut self, link: &mut Link);
}

impl CarryOut for MemoryStore {
    fn carry_out(&mut self, link: &mut Link) {
        let _ = link.pump_with(self, 0);
    }
}

impl CarryOut for Recording {
    fn carry_out(&mut self, link: &mut Link) {
        link.pump(0);
        while let Some((id, request)) = link.poll_store_request() {
            let result = execute(&mut self.store, &request).map_err(|e| e.to_string());
            let opens = matches!(request, StoreRequest::OpenChat { .. });
            let pinned = self.store.chats.get(&DEVICE_B).and_then(|c| c.peer_key);
            self.calls.push((opens, pinned));
            drop(request);
            link.handle_store_completion(id, result, 0).unwrap();
        }
    }
}

/// A secure link for `device` on connection `n`.
fn link(device: &Device, role: Role, n: u8) -> Link {
    Link::new_secure(device.config.clone(), 0, role, &device.keypair, [n; 32])
}

/// Moves bytes both ways and pumps both links until nothing moves; returns every notice of
/// each side.
fn drive(
    a: &mut Link,
    a_store: &mut impl CarryOut,
    b: &mut Link,
    b_store: &mut impl CarryOut,
) -> (Vec<Notice>, Vec<Notice>) {
    let (mut a_notices, mut b_notices) = (Vec::new(), Vec::new());
    for _ in 0..10_000 {
        let mut moved = false;
        let out = a.poll_transmit(0).to_vec();
        if !out.is_empty() {
            a.advance_transmit(out.len());
            b.handle_input(&out, 0);
            moved = true;
        }
        let out = b.poll_transmit(0).to_vec();
        if !out.is_empty() {
            b.advance_transmit(out.len());
            a.handle_input(&out, 0);
            moved = true;
        }
        a_store.carry_out(a);
        b_store.carry_out(b);
        while let Some(n) = a.poll_notice() {
            a_notices.push(n);
            moved = true;
        }
        while let Some(n) = b.poll_notice() {
            b_notices.push(n);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    (a_notices, b_notices)
}

fn connected(notices: &[Notice]) -> bool {
    notices
        .iter()
        .any(|n| matches!(n, Notice::Connected { .. }))
}

fn closes(notices: &[Notice]) -> Vec<(CloseCode, String, Side)> {
    notices
        .iter()
        .filter_map(|n| match n {
            Notice::Closed { reason, by } => Some((reason.code, reason.detail.clone(), *by)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_first_contact_pins_in_the_call_that_opens_the_chat() {
    let (alice, bob) = (Device::new(DEVICE_A, "alice"), Device::new(DEVICE_B, "bob"));
    let mut a_store = Recording::default();
    let mut b_store = MemoryStore::new();
    let (mut a, mut b) = (
        link(&alice, Role::Responder, 1),
        link(&bob, Role::Initiator, 1),
    );
    let (a_notices, _) = drive(&mut a, &mut a_store, &mut b, &mut b_store);
    assert!(connected(&a_notices), "{a_notices:?}");
    // The first store call is the opening, and bob's key is pinned when it returns: there is
    // no moment where the chat exists without the key, nor a second call that pins.
    let bob_key = bob.keypair.public().0;
    assert_eq!(a_store.calls.first(), Some(&(true, Some(bob_key))));
    let openings = a_store.calls.iter().filter(|(opens, _)| *opens).count();
    assert_eq!(openings, 1, "{:?}", a_store.calls);
    assert_eq!(a_store.store.commits, 1, "one commit for chat and pin");
}

#[test]
fn a_mismatch_stores_nothing_and_the_peer_learns_nothing() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.disconnect();
    pair.write(true, "for bob only");
    let before = pair.a.store.chats.clone();
    let real_bob = pair.b.keypair.clone();
    pair.b.keypair = StaticKeypair::from_secret([0x66; 32]);
    pair.b.notices.clear();
    pair.a.notices.clear();
    pair.connect_and_drive();
    assert_eq!(pair.a.store.chats, before, "the refusal stored nothing");
    let warned =
        pair.a.notices.iter().any(
            |n| matches!(n, Notice::KeyMismatch { pinned, .. } if *pinned == real_bob.public()),
        );
    assert!(warned, "the local user is told: {:?}", pair.a.notices);
    // The impostor's close: a bare refusal, no word of a key, a pin or its device id.
    let got = closes(&pair.b.notices);
    assert_eq!(got, [(CloseCode::Refused, String::new(), Side::Peer)]);
    for n in &pair.b.notices {
        if let Notice::Closed { reason, .. } = n {
            let text = reason.to_string().to_lowercase();
            for hint in ["key", "pin", "identity", "device"] {
                assert!(!text.contains(hint), "{text:?} hints at {hint}");
            }
        }
    }
}

#[test]
fn two_first_contacts_on_one_store_pin_the_first_and_refuse_the_second() {
    let alice = Device::new(DEVICE_A, "alice");
    let bob = Device::new(DEVICE_B, "bob");
    let mut mallory = Device::new(DEVICE_B, "bob");
    mallory.keypair = StaticKeypair::from_secret([0x77; 32]);
    // Two listeners of alice on one store; both handshakes finish before either hello is
    // handled, as with two processes on one data folder.
    let mut store = MemoryStore::new();
    let (mut a1, mut b) = (
        link(&alice, Role::Responder, 1),
        link(&bob, Role::Initiator, 2),
    );
    let (mut a2, mut m) = (
        link(&alice, Role::Responder, 3),
        link(&mallory, Role::Initiator, 4),
    );
    let (mut bob_store, mut mallory_store) = (MemoryStore::new(), MemoryStore::new());
    let (first, _) = drive(&mut a1, &mut store, &mut b, &mut bob_store);
    let (second, mallory_notices) = drive(&mut a2, &mut store, &mut m, &mut mallory_store);
    assert!(connected(&first));
    assert!(!connected(&second) && !connected(&mallory_notices));
    assert_eq!(
        store.chats[&DEVICE_B].peer_key,
        Some(bob.keypair.public().0)
    );
    assert!(mallory_store.chats.values().all(|c| c.received.is_empty()));
}

#[test]
fn a_new_key_is_accepted_only_by_its_expected_fingerprint() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.disconnect();
    let old = pair.b.keypair.public();
    let new = StaticKeypair::from_secret([0x42; 32]);
    let other = StaticKeypair::from_secret([0x43; 32]);
    // The user accepts the key whose fingerprint bob read out.
    pair.a
        .store
        .chats
        .get_mut(&DEVICE_B)
        .unwrap()
        .expected_fingerprint = Some(new.public().fingerprint_bytes());
    for refused in [other, pair.b.keypair.clone()] {
        pair.b.keypair = refused;
        pair.b.notices.clear();
        pair.connect_and_drive();
        assert!(!pair.is_connected(), "only the expected key is let in");
        assert_eq!(pair.a.store.chats[&DEVICE_B].peer_key, Some(old.0));
    }
    pair.b.keypair = new.clone();
    pair.b.store = MemoryStore::new();
    pair.a.notices.clear();
    pair.connect_and_drive();
    assert!(connected(&pair.a.notices), "{:?}", pair.a.notices);
    let chat = &pair.a.store.chats[&DEVICE_B];
    assert_eq!(chat.peer_key, Some(new.public().0), "pinned");
    assert_eq!(chat.expected_fingerprint, None, "expectation cleared");
}
