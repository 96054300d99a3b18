//! One listener, several links at once, one store: peers interleaved step by step, the
//! listener crashing between persist and ack in one chat while another chat streams, a
//! newer connection of a peer admitted while its older one is still open. Every guarantee
//! holds per chat: durable before ack, exactly once, the same order on both devices.

use socketfalco_core::{DeviceId, Link, Notice, Role};
use socketfalco_testkit::{Device, MemoryStore};

const ALICE: DeviceId = DeviceId([0xa1; 16]);
const BOB: DeviceId = DeviceId([0xb2; 16]);
const CAROL: DeviceId = DeviceId([0xc3; 16]);

/// One connection between the listener (alice) and a peer.
struct Conn {
    listener: Link,
    peer: Link,
}

/// A listener's link waits for admission, as the transport's do.
fn connect(alice: &Device, peer: &Device, n: u8) -> Conn {
    let mut listener = Link::new_secure(
        alice.config.clone(),
        0,
        Role::Responder,
        &alice.keypair,
        [n; 32],
    );
    listener.require_admission();
    let peer = Link::new_secure(
        peer.config.clone(),
        0,
        Role::Initiator,
        &peer.keypair,
        [n + 100; 32],
    );
    Conn { listener, peer }
}

/// One round of one connection: bytes both ways, both sides pump once (each pump is one
/// store batch and one ack), proved peers admitted. Returns whether anything moved.
fn step(conn: &mut Conn, alice_store: &mut MemoryStore, peer_store: &mut MemoryStore) -> bool {
    let mut moved = false;
    let out = conn.listener.poll_transmit(0).to_vec();
    if !out.is_empty() {
        conn.listener.advance_transmit(out.len());
        conn.peer.handle_input(&out, 0);
        moved = true;
    }
    let out = conn.peer.poll_transmit(0).to_vec();
    if !out.is_empty() {
        conn.peer.advance_transmit(out.len());
        conn.listener.handle_input(&out, 0);
        moved = true;
    }
    let _ = conn.listener.pump_with(alice_store, 0);
    let _ = conn.peer.pump_with(peer_store, 0);
    while let Some(notice) = conn.listener.poll_notice() {
        if let Notice::PeerProved { .. } = notice {
            conn.listener.admit(0);
            conn.listener.pump_with(alice_store, 0).unwrap();
        }
        moved = true;
    }
    while conn.peer.poll_notice().is_some() {
        moved = true;
    }
    moved
}

fn texts(store: &MemoryStore, me: DeviceId, peer: DeviceId) -> Vec<String> {
    store
        .history(me, peer)
        .into_iter()
        .map(|(_, m)| m.text)
        .collect()
}

#[test]
fn two_chats_interleave_survive_a_crash_between_persist_and_ack_and_converge() {
    let alice = Device::new(ALICE, "alice");
    let bob = Device::new(BOB, "bob");
    let carol = Device::new(CAROL, "carol");
    let (mut a_store, mut b_store, mut c_store) =
        (MemoryStore::new(), MemoryStore::new(), MemoryStore::new());
    let mut to_bob = connect(&alice, &bob, 1);
    let mut to_carol = connect(&alice, &carol, 2);
    for _ in 0..50 {
        step(&mut to_bob, &mut a_store, &mut b_store);
        step(&mut to_carol, &mut a_store, &mut c_store);
    }
    assert!(to_bob.listener.session().is_established());
    assert!(to_carol.listener.session().is_established());

    // Bob streams 300 lines while carol and alice chat, interleaved step by step.
    let bob_lines: Vec<String> = (0..300).map(|i| format!("bob {i}")).collect();
    to_bob
        .peer
        .compose_with(&mut b_store, &bob_lines, 1, 0)
        .unwrap();
    for i in 0..20 {
        to_carol
            .peer
            .compose_one_with(&mut c_store, &format!("carol {i}"), 2, 0)
            .unwrap();
        to_carol
            .listener
            .compose_one_with(&mut a_store, &format!("alice to carol {i}"), 3, 0)
            .unwrap();
        step(&mut to_bob, &mut a_store, &mut b_store);
        step(&mut to_carol, &mut a_store, &mut c_store);
    }
    // The listener crashes right after persisting a batch of bob's, before its ack goes out:
    // feed bob's pending bytes, pump (persist), and drop every link of alice's.
    let out = to_bob.peer.poll_transmit(0).to_vec();
    to_bob.peer.advance_transmit(out.len());
    to_bob.listener.handle_input(&out, 0);
    let _ = to_bob.listener.pump_with(&mut a_store, 0);
    drop(to_bob);
    drop(to_carol);

    // Everybody reconnects, and carol's older connection is still open when her newer one
    // comes in: the listener serves both until the older is closed.
    let mut to_bob = connect(&alice, &bob, 3);
    let mut carol_old = connect(&alice, &carol, 4);
    for _ in 0..20 {
        step(&mut carol_old, &mut a_store, &mut c_store);
    }
    carol_old
        .peer
        .compose_one_with(&mut c_store, "carol on the old connection", 4, 0)
        .unwrap();
    let mut carol_new = connect(&alice, &carol, 5);
    for _ in 0..200 {
        let a = step(&mut to_bob, &mut a_store, &mut b_store);
        let b = step(&mut carol_new, &mut a_store, &mut c_store);
        let c = step(&mut carol_old, &mut a_store, &mut c_store);
        if !(a || b || c) {
            break;
        }
    }
    // Both devices hold each chat exactly, in the same order, nothing doubled or lost.
    let with_bob = texts(&a_store, ALICE, BOB);
    assert_eq!(with_bob, texts(&b_store, BOB, ALICE));
    assert_eq!(with_bob, bob_lines, "every line of bob's once, in order");
    let with_carol = texts(&a_store, ALICE, CAROL);
    assert_eq!(with_carol, texts(&c_store, CAROL, ALICE));
    assert_eq!(with_carol.len(), 20 + 20 + 1, "{with_carol:?}");
    assert!(
        with_carol.iter().all(|t| t.contains("carol")),
        "{with_carol:?}"
    );
    assert_eq!(b_store.waiting(ALICE), 0);
    assert_eq!(c_store.waiting(ALICE), 0);
    assert_eq!(a_store.waiting(CAROL), 0);
}

/// Moves what each side has written to the other.
fn shuttle(conn: &mut Conn, now_ms: u64) {
    let out = conn.listener.poll_transmit(now_ms).to_vec();
    conn.listener.advance_transmit(out.len());
    conn.peer.handle_input(&out, now_ms);
    let out = conn.peer.poll_transmit(now_ms).to_vec();
    conn.peer.advance_transmit(out.len());
    conn.listener.handle_input(&out, now_ms);
}

/// A listener that never admits a peer (its handshake deadline passes first) closes without
/// its hello: the peer reads why, and learns neither the listener's id nor its name.
#[test]
fn a_listener_that_never_admits_the_peer_closes_without_saying_who_it_is() {
    let alice = Device::new(ALICE, "alice");
    let bob = Device::new(BOB, "bob");
    let (mut a_store, mut b_store) = (MemoryStore::new(), MemoryStore::new());
    let mut conn = connect(&alice, &bob, 1);
    let mut proved = false;
    for _ in 0..20 {
        shuttle(&mut conn, 0);
        conn.listener.pump_with(&mut a_store, 0).unwrap();
        conn.peer.pump_with(&mut b_store, 0).unwrap();
        while let Some(notice) = conn.listener.poll_notice() {
            proved |= matches!(notice, Notice::PeerProved { .. });
        }
        while conn.peer.poll_notice().is_some() {}
    }
    assert!(proved, "bob proved his key and said hello");
    let later = 60_000;
    conn.listener.handle_timeout(later);
    assert!(conn.listener.session().is_closed());
    shuttle(&mut conn, later);
    conn.peer.pump_with(&mut b_store, later).unwrap();
    let mut closed = false;
    while let Some(notice) = conn.peer.poll_notice() {
        closed |= matches!(notice, Notice::Closed { .. });
    }
    assert!(closed, "bob reads the close");
    assert!(
        conn.peer.session().peer().is_none(),
        "bob learnt who the listener is: {:?}",
        conn.peer.session().peer()
    );
}

/// A stranger that proves its key and then closes, or ends its stream, before the listener
/// admitted it (without a hello, or with one the listener never answered) gets nothing of
/// the listener: not its hello.
#[test]
fn a_peer_that_leaves_before_its_admission_learns_nothing_of_the_listener() {
    let alice = Device::new(ALICE, "alice");
    let bob = Device::new(BOB, "bob");
    for ends_stream in [false, true] {
        let (mut a_store, mut b_store) = (MemoryStore::new(), MemoryStore::new());
        let mut conn = connect(&alice, &bob, 1);
        for _ in 0..20 {
            shuttle(&mut conn, 0);
            conn.listener.pump_with(&mut a_store, 0).unwrap();
            conn.peer.pump_with(&mut b_store, 0).unwrap();
            while conn.listener.poll_notice().is_some() {}
            while conn.peer.poll_notice().is_some() {}
        }
        // Bob goes, not admitted.
        if ends_stream {
            conn.listener.handle_eof(1);
        } else {
            conn.peer.close(
                socketfalco_core::Close::new(socketfalco_core::CloseCode::Normal, "bye"),
                1,
            );
            shuttle(&mut conn, 1);
        }
        conn.listener.pump_with(&mut a_store, 1).unwrap();
        assert!(conn.listener.session().is_closed());
        assert!(
            conn.listener.poll_transmit(2).is_empty(),
            "ends_stream {ends_stream}: the listener still has something to say"
        );
        shuttle(&mut conn, 2);
        conn.peer.pump_with(&mut b_store, 2).unwrap();
        assert!(
            conn.peer.session().peer().is_none(),
            "ends_stream {ends_stream}: bob learnt who the listener is"
        );
    }
}
