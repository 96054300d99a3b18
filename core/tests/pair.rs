//! Protocol stories on the in-memory [`Pair`]: two devices, one simulated connection.

use socketfalco_core::{
    execute, CloseCode, Link, Notice, OwnLinesShown, RequestId, Side, Store, StoreReply,
    StoreRequest,
};
use socketfalco_testkit::{MemoryStore, Pair, DEVICE_A, DEVICE_B};

fn received_texts(notices: &[Notice]) -> Vec<String> {
    notices
        .iter()
        .filter_map(|n| match n {
            Notice::Received { message, .. } => Some(message.text.clone()),
            _ => None,
        })
        .collect()
}

fn closes(notices: &[Notice]) -> Vec<(CloseCode, Side)> {
    notices
        .iter()
        .filter_map(|n| match n {
            Notice::Closed { reason, by } => Some((reason.code, *by)),
            _ => None,
        })
        .collect()
}

/// Both devices hold the same chat, in the same order, with nothing waiting.
fn assert_converged(pair: &Pair) {
    let a = pair.history(true);
    let b = pair.history(false);
    assert_eq!(
        a, b,
        "both devices must hold the same chat in the same order"
    );
    assert_eq!(pair.waiting(true), 0, "a has undelivered messages");
    assert_eq!(pair.waiting(false), 0, "b has undelivered messages");
}

#[test]
fn handshake_works_whoever_starts() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    assert!(pair.is_established());
    let names: Vec<_> = [&pair.a, &pair.b]
        .iter()
        .map(|d| match &d.notices[0] {
            Notice::Connected { peer, .. } => peer.name.clone(),
            other => panic!("first notice should be Connected, got {other:?}"),
        })
        .collect();
    assert_eq!(names, ["bob", "alice"]);
    // The handshake is symmetric: a side whose bytes arrive late still gets there.
    let mut pair = Pair::new();
    pair.b_to_a.latency_ms = 500;
    pair.connect_and_drive();
    assert!(pair.is_established());
}

#[test]
fn live_exchange_delivers_both_ways_in_one_order() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.write(true, "hello bob");
    pair.write(false, "hi alice");
    pair.drive();
    pair.write(true, "how are you?");
    pair.drive();
    assert_converged(&pair);
    assert_eq!(
        received_texts(&pair.b.notices),
        ["hello bob", "how are you?"]
    );
    assert_eq!(received_texts(&pair.a.notices), ["hi alice"]);
    assert_eq!(pair.history(true).len(), 3);
}

#[test]
fn acks_are_cumulative_one_per_persisted_batch() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    let commits_before = pair.b.store.commits;
    for i in 0..100 {
        pair.write(true, &format!("message {i}"));
    }
    pair.drive();
    // All 100 arrived in one read: one store commit, one ack, one delivery notice.
    assert_eq!(pair.b.store.commits - commits_before, 1);
    let delivered: Vec<_> = pair
        .a
        .notices
        .iter()
        .filter_map(|n| match n {
            Notice::Delivered { up_to } => Some(*up_to),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, [100]);
    assert_converged(&pair);
}

#[test]
fn nothing_is_acked_before_it_is_persisted() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.write(true, "one");
    pair.write(true, "two");
    let now = pair.now_ms;
    // Deliver a's bytes to b's link without letting b's driver pump: nothing is stored.
    let bytes = {
        let a = pair.a.link.as_mut().unwrap();
        let bytes = a.poll_transmit(now).to_vec();
        a.advance_transmit(bytes.len());
        bytes
    };
    let b = &mut pair.b;
    let link = b.link.as_mut().unwrap();
    link.handle_input(&bytes, now);
    assert_eq!(link.session().received_up_to(), 2);
    assert!(!link.wants_write(), "no ack may be due before persistence");
    assert_eq!(link.session().acked_up_to(), 0);
    // The pump asks to store the batch; still no ack until the store says it is durable.
    link.pump(now);
    let (id, request) = link.poll_store_request().expect("a persist request");
    assert!(matches!(request, StoreRequest::PersistReceived { .. }));
    assert!(
        !link.wants_write(),
        "no ack may be due before the store's completion"
    );
    let reply = execute(&mut b.store, &request).expect("stored");
    drop(request);
    link.handle_store_completion(id, Ok(reply), now).unwrap();
    assert!(link.wants_write());
    let _ = link.poll_transmit(now);
    assert_eq!(link.session().acked_up_to(), 2);
}

#[test]
fn a_drop_mid_stream_resyncs_with_no_loss_and_no_duplicate() {
    // each way carries ~1,100 bytes of messages (and b→a as much, plus acks), so every cut
    // point falls inside the stream: in a length prefix, in a body, between frames.
    for cut_at in [1, 4, 5, 17, 300, 900] {
        for cut_a_to_b in [true, false] {
            let mut pair = Pair::new();
            pair.connect_and_drive();
            for i in 0..60 {
                pair.write(true, &format!("a{i}"));
                pair.write(false, &format!("b{i}"));
            }
            let pipe = if cut_a_to_b {
                &mut pair.a_to_b
            } else {
                &mut pair.b_to_a
            };
            pipe.cut_after = Some(cut_at);
            pipe.max_piece = 7;
            pair.drive();
            assert!(!pair.is_connected(), "cut at {cut_at} must break the link");
            pair.a_to_b.cut_after = None;
            pair.b_to_a.cut_after = None;
            pair.connect_and_drive();
            assert_converged(&pair);
            assert_eq!(pair.history(true).len(), 120, "cut at {cut_at}");
            let chat = &pair.b.store.chats[&DEVICE_A];
            let seqs: Vec<u64> = chat.received.iter().map(|m| m.seq).collect();
            assert_eq!(seqs, (1..=60).collect::<Vec<_>>(), "no gap, no duplicate");
        }
    }
}

#[test]
fn lost_acks_make_the_sender_resend_only_what_the_peer_lacks() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    // b's acks never arrive: a believes nothing is delivered.
    pair.b_to_a.cut_after = Some(0);
    for i in 0..10 {
        pair.write(true, &format!("m{i}"));
    }
    pair.drive();
    assert_eq!(pair.b.store.chats[&DEVICE_A].received.len(), 10);
    assert_eq!(pair.waiting(true), 10, "a never saw the acks");
    pair.b_to_a.cut_after = None;
    pair.connect_and_drive();
    assert_converged(&pair);
    // b's sync said it holds 10: a re-sent none of them.
    let b = pair.b.link.as_ref().unwrap().session();
    assert_eq!(b.duplicates_dropped(), 0);
    assert_eq!(b.received_up_to(), 10);
}

#[test]
fn offline_writes_on_both_sides_merge_into_one_order() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.write(true, "before");
    pair.drive();
    pair.disconnect();
    // Both write while apart, interleaved in time; b's clock runs an hour behind.
    pair.wall_b_ms -= 3_600_000;
    for i in 0..5 {
        pair.write(true, &format!("a offline {i}"));
        pair.write(false, &format!("b offline {i}"));
    }
    assert_eq!(pair.waiting(true), 5);
    assert_eq!(pair.waiting(false), 5);
    pair.connect_and_drive();
    assert_converged(&pair);
    let texts: Vec<String> = pair
        .history(true)
        .into_iter()
        .map(|(_, m)| m.text)
        .collect();
    assert_eq!(texts.len(), 11);
    assert_eq!(texts[0], "before");
    // A waiting message takes its place when it is numbered, at the sync, after everything
    // its device holds then (docs/PROTOCOL.md §2.1): each side's offline burst stays
    // together and in the order written, and both devices agree on which came first.
    let burst = |who: &str| -> Vec<usize> {
        (0..5)
            .map(|i| {
                let text = format!("{who} offline {i}");
                texts.iter().position(|t| *t == text).unwrap()
            })
            .collect()
    };
    for who in ["a", "b"] {
        let at = burst(who);
        assert!(
            at.windows(2).all(|w| w[1] == w[0] + 1),
            "{who}'s burst is split or reordered: {texts:?}"
        );
    }
    // Whoever listens next time, the result is the same chat.
    pair.disconnect();
    std::mem::swap(&mut pair.a_to_b, &mut pair.b_to_a);
    pair.connect_and_drive();
    assert_converged(&pair);
}

#[test]
fn a_temporary_session_stores_nothing_on_either_side() {
    let mut pair = Pair::new();
    pair.a.config.temporary = true;
    pair.connect_and_drive();
    match &pair.b.notices[0] {
        Notice::Connected { peer, .. } => {
            assert!(peer.peer_temporary && peer.temporary, "b is told");
        }
        other => panic!("unexpected {other:?}"),
    }
    pair.write(true, "off the record");
    pair.write(false, "understood");
    pair.drive();
    assert_eq!(received_texts(&pair.b.notices), ["off the record"]);
    assert_eq!(received_texts(&pair.a.notices), ["understood"]);
    assert!(pair.a.store.chats.is_empty(), "a stored something");
    assert!(pair.b.store.chats.is_empty(), "b stored something");
    assert_eq!(pair.a.store.commits + pair.b.store.commits, 0);
    let stored_flags: Vec<bool> = pair
        .b
        .notices
        .iter()
        .filter_map(|n| match n {
            Notice::Received { stored, .. } => Some(*stored),
            _ => None,
        })
        .collect();
    assert_eq!(stored_flags, [false]);
}

#[test]
fn a_temporary_session_does_not_deliver_or_take_the_stored_backlog() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.disconnect();
    pair.write(true, "waiting for a real session");
    pair.b.config.temporary = true;
    pair.connect_and_drive();
    assert!(received_texts(&pair.b.notices).is_empty());
    assert_eq!(pair.waiting(true), 1);
    pair.disconnect();
    pair.b.config.temporary = false;
    pair.connect_and_drive();
    assert_converged(&pair);
}

#[test]
fn a_peer_with_our_own_identity_is_refused() {
    let mut pair = Pair::new();
    pair.b.id = DEVICE_A;
    pair.b.config.device = DEVICE_A;
    pair.connect_and_drive();
    assert!(!pair.is_connected());
    assert_eq!(closes(&pair.a.notices)[0].0, CloseCode::SelfConnection);
    assert_eq!(closes(&pair.b.notices)[0].0, CloseCode::SelfConnection);
    assert!(pair.a.store.chats.is_empty() && pair.b.store.chats.is_empty());
}

#[test]
fn keepalives_hold_an_idle_connection_and_a_silent_peer_times_out() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.advance(60_000);
    assert!(pair.is_established(), "pings keep an idle chat alive");
    // b vanishes without a word (cable pulled): a's pings go nowhere, nothing comes back.
    pair.b.link = None;
    pair.a_to_b.blackhole = true;
    pair.advance(25_000);
    let a_closes = closes(&pair.a.notices);
    assert_eq!(a_closes, [(CloseCode::Timeout, Side::Local)]);
}

/// A driver that stops reading (its output is far behind) takes nothing in, and neither
/// side takes the pause for a dead peer however long it lasts; once it reads again,
/// everything arrives.
#[test]
fn a_paused_reader_takes_nothing_in_and_nobody_times_out() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.b.link.as_mut().unwrap().pause_reading();
    pair.write(true, "sent while b is not reading");
    pair.advance(60_000);
    assert!(pair.is_established(), "neither side gave up on the other");
    assert!(closes(&pair.a.notices).is_empty() && closes(&pair.b.notices).is_empty());
    assert!(received_texts(&pair.b.notices).is_empty());
    assert_eq!(pair.waiting(true), 1, "nothing acked that b did not read");
    let now = pair.now_ms;
    pair.b.link.as_mut().unwrap().resume_reading(now);
    pair.drive();
    assert_eq!(
        received_texts(&pair.b.notices),
        ["sent while b is not reading"]
    );
    assert_eq!(pair.waiting(true), 0);
    // Reading again, b times a silent peer out as before.
    pair.a.link = None;
    pair.b_to_a.blackhole = true;
    pair.advance(25_000);
    assert_eq!(closes(&pair.b.notices), [(CloseCode::Timeout, Side::Local)]);
}

#[test]
fn a_handshake_that_never_finishes_times_out() {
    let mut pair = Pair::new();
    pair.connect();
    pair.b.link = None; // nobody answers
    pair.advance(11_000);
    assert_eq!(closes(&pair.a.notices), [(CloseCode::Timeout, Side::Local)]);
}

#[test]
fn lines_typed_faster_than_the_window_opens_are_sent_from_memory_not_read_back() {
    let mut pair = Pair::new();
    pair.a.config.window = 64;
    pair.connect_and_drive();
    let reads_before = pair.a.store.own_reads;
    // Typed while connected, far more than the window: the link keeps what the window
    // cannot take yet and sends it as acks come back.
    for i in 0..1_000 {
        pair.write(true, &format!("typed {i}"));
    }
    pair.drive();
    assert_converged(&pair);
    assert_eq!(pair.history(false).len(), 1_000);
    assert_eq!(
        pair.a.store.own_reads, reads_before,
        "nothing was read back from the store"
    );
}

#[test]
fn a_burst_past_the_memory_bound_is_read_from_the_store_and_nothing_is_lost() {
    let mut pair = Pair::new();
    pair.a.config.window = 64;
    pair.connect_and_drive();
    let reads_before = pair.a.store.own_reads;
    // More than the link keeps in memory (4,096 lines): the rest is read back.
    for i in 0..6_000 {
        pair.write(true, &format!("burst {i}"));
    }
    pair.drive();
    assert_converged(&pair);
    let texts: Vec<String> = pair
        .history(false)
        .into_iter()
        .map(|(_, m)| m.text)
        .collect();
    let expected: Vec<String> = (0..6_000).map(|i| format!("burst {i}")).collect();
    assert_eq!(texts, expected, "every line once, in order");
    assert!(pair.a.store.own_reads > reads_before, "the store was read");
}

#[test]
fn a_large_backlog_streams_within_the_window() {
    let mut pair = Pair::new();
    pair.a.config.window = 64;
    pair.connect_and_drive();
    pair.disconnect();
    for i in 0..5_000 {
        pair.write(true, &format!("backlog {i}"));
    }
    pair.connect();
    let mut max_in_flight = 0;
    let mut max_buffered = 0;
    while pair.step() {
        if let Some(link) = pair.a.link.as_mut() {
            max_in_flight = max_in_flight.max(link.session().in_flight());
            max_buffered = max_buffered.max(link.poll_transmit(0).len());
        }
    }
    pair.drive();
    assert_converged(&pair);
    assert!(max_in_flight <= 64, "in flight {max_in_flight}");
    assert!(max_buffered < 64 * 64, "output buffer {max_buffered}");
    match pair
        .b
        .notices
        .iter()
        .find(|n| matches!(n, Notice::Connected { .. }))
    {
        Some(Notice::Connected { incoming, .. }) => assert_eq!(*incoming, 0),
        _ => panic!("no connect notice"),
    }
    let incoming: Vec<u64> = pair
        .b
        .notices
        .iter()
        .filter_map(|n| match n {
            Notice::Connected { incoming, .. } => Some(*incoming),
            _ => None,
        })
        .collect();
    assert_eq!(incoming, [0, 5_000], "the re-sync announces its size");
}

#[test]
fn a_storage_failure_closes_and_the_next_connection_delivers() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.b.store.fail_next_writes = 1;
    pair.write(true, "will be retried");
    pair.drive();
    assert!(!pair.is_connected());
    assert_eq!(
        closes(&pair.b.notices),
        [(CloseCode::StorageFailure, Side::Local)]
    );
    assert_eq!(pair.waiting(true), 1);
    pair.connect_and_drive();
    assert_converged(&pair);
    assert_eq!(received_texts(&pair.b.notices), ["will be retried"]);
}

#[test]
fn a_crash_of_the_receiver_loses_nothing_that_was_acked() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    for i in 0..20 {
        pair.write(true, &format!("m{i}"));
    }
    pair.drive();
    pair.crash(false);
    pair.connect_and_drive();
    assert_converged(&pair);
    assert_eq!(pair.history(false).len(), 20);
}

#[test]
fn new_messages_never_reuse_ids_the_peer_already_holds() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    for i in 0..3 {
        pair.write(true, &format!("m{i}"));
    }
    pair.drive();
    pair.disconnect();
    // a's store loses its tail (say, a restored backup): it remembers only message 1.
    pair.a
        .store
        .chats
        .get_mut(&DEVICE_B)
        .unwrap()
        .own
        .truncate(1);
    pair.a
        .store
        .chats
        .get_mut(&DEVICE_B)
        .unwrap()
        .delivered_up_to = 1;
    pair.connect_and_drive();
    let m = pair.write(true, "after the restore");
    assert_eq!(m.seq, 4, "b holds up to 3, so the next id is 4");
    pair.drive();
    let seqs: Vec<u64> = pair.b.store.chats[&DEVICE_A]
        .received
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
}

#[test]
fn the_same_story_gives_the_same_bytes() {
    fn run() -> (u64, u64, Vec<Notice>) {
        let mut pair = Pair::new();
        pair.a_to_b.max_piece = 3;
        pair.b_to_a.latency_ms = 7;
        pair.connect_and_drive();
        for i in 0..30 {
            pair.write(i % 3 == 0, &format!("line {i}"));
            pair.step();
        }
        pair.drive();
        (pair.a_to_b.carried, pair.b_to_a.carried, pair.a.notices)
    }
    assert_eq!(run(), run());
}

#[test]
fn the_chat_is_encrypted_on_the_wire() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    let before = pair.a_to_b.carried;
    pair.a_to_b.max_piece = 1;
    pair.write(true, "a secret only bob may read");
    pair.drive();
    assert!(pair.a_to_b.carried > before);
    assert_eq!(
        received_texts(&pair.b.notices),
        ["a secret only bob may read"]
    );
    // The plain variant, for contrast, carries the text as is: see the codec's golden frames.
    assert!(pair.secure);
}

#[test]
fn an_impostor_with_a_known_device_id_but_another_key_gets_nothing() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.disconnect();
    pair.write(true, "for bob's eyes only");
    // Someone presents bob's device id with a key of their own.
    let real_bob_key = pair.b.keypair.clone();
    let real_bob_store = std::mem::take(&mut pair.b.store);
    pair.b.keypair = socketfalco_core::StaticKeypair::from_secret([0x66; 32]);
    pair.b.notices.clear();
    pair.connect_and_drive();
    assert!(!pair.is_connected());
    assert!(
        pair.b.store.chats.values().all(|c| c.received.is_empty()),
        "the impostor received nothing"
    );
    assert!(received_texts(&pair.b.notices).is_empty());
    let mismatch = pair
        .a
        .notices
        .iter()
        .find_map(|n| match n {
            Notice::KeyMismatch {
                presented, pinned, ..
            } => Some((*presented, *pinned)),
            _ => None,
        })
        .expect("a is warned with both keys");
    assert_eq!(mismatch.1, real_bob_key.public());
    assert_ne!(mismatch.0, mismatch.1);
    assert_eq!(closes(&pair.b.notices), [(CloseCode::Refused, Side::Peer)]);
    assert_eq!(pair.waiting(true), 1, "still waiting for the real bob");
    // The real bob comes back and gets everything.
    pair.b.keypair = real_bob_key;
    pair.b.store = real_bob_store;
    pair.b.notices.clear();
    pair.connect_and_drive();
    assert_converged(&pair);
    assert_eq!(received_texts(&pair.b.notices), ["for bob's eyes only"]);
}

#[test]
fn a_flipped_bit_closes_both_sides_and_the_next_connection_delivers_once() {
    for flip_at in [3, 40, 100, 400, 700] {
        let mut pair = Pair::new();
        pair.connect_and_drive();
        for i in 0..20 {
            pair.write(true, &format!("m{i}"));
        }
        pair.a_to_b.flip_bit_at = Some(pair.a_to_b.carried + flip_at);
        pair.drive();
        let b_closes = closes(&pair.b.notices);
        if pair.a_to_b.flip_bit_at.is_none() {
            assert_eq!(
                b_closes,
                [(CloseCode::IntegrityFailure, Side::Local)],
                "flip at {flip_at}"
            );
        }
        pair.connect_and_drive();
        assert_converged(&pair);
        let seqs: Vec<u64> = pair.b.store.chats[&DEVICE_A]
            .received
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "flip at {flip_at}");
    }
}

#[test]
fn plain_links_still_work_for_comparison() {
    let mut pair = Pair::new();
    pair.secure = false;
    pair.connect_and_drive();
    pair.write(true, "in the clear");
    pair.drive();
    assert_converged(&pair);
}

// ----- a device restored from an older copy of its store (docs/PROTOCOL.md §2) -----

/// Own (`own`) or received messages of `a` (if `a_side`) or `b` as its store numbers them:
/// `(seq, text)`.
fn stored(pair: &Pair, a_side: bool, own: bool) -> Vec<(u64, String)> {
    let (store, peer) = if a_side {
        (&pair.a.store, DEVICE_B)
    } else {
        (&pair.b.store, DEVICE_A)
    };
    store.chats.get(&peer).map_or_else(Vec::new, |chat| {
        let messages = if own { &chat.own } else { &chat.received };
        messages.iter().map(|m| (m.seq, m.text.clone())).collect()
    })
}

fn own_numbered(pair: &Pair, a_side: bool) -> Vec<(u64, String)> {
    stored(pair, a_side, true)
}

fn received_numbered(pair: &Pair, a_side: bool) -> Vec<(u64, String)> {
    stored(pair, a_side, false)
}

fn numbered(texts: &[&str]) -> Vec<(u64, String)> {
    texts
        .iter()
        .zip(1..)
        .map(|(text, seq)| (seq, (*text).to_owned()))
        .collect()
}

/// Issue story 1: Alice's store is restored to its copy from after r-one; she writes r-hello
/// offline. It must reach Bob, under a number Bob does not hold already, and must not be
/// shown delivered before it is; Alice gets r-two and r-three back from Bob.
#[test]
fn a_line_written_after_a_restore_is_sent_and_never_takes_a_number_the_peer_holds() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.write(true, "r-one");
    pair.drive();
    let alice_after_r_one = pair.a.store.clone();
    let bob_after_r_one = pair.b.store.clone();
    pair.write(true, "r-two");
    pair.write(true, "r-three");
    pair.drive();
    pair.disconnect();
    assert_eq!(received_numbered(&pair, false).len(), 3);

    pair.a.store = alice_after_r_one;
    let hello = pair.write(true, "r-hello");
    assert_eq!(
        hello.seq, 0,
        "written offline: numbered only at the next sync"
    );
    assert_eq!(pair.waiting(true), 1, "r-hello waits, visibly");

    pair.connect_and_drive();
    let all = numbered(&["r-one", "r-two", "r-three", "r-hello"]);
    assert_eq!(
        received_numbered(&pair, false),
        all,
        "Bob: each id one text"
    );
    assert_eq!(
        own_numbered(&pair, true),
        all,
        "Alice got her own history back and numbered r-hello after it"
    );
    assert_converged(&pair);
    assert!(received_texts(&pair.b.notices).contains(&"r-hello".to_owned()));

    // Issue story 2, continued: now Bob's store goes back to its copy from after r-one, and
    // Alice writes r-after. Nothing stalls: Bob gets everything again, once.
    pair.disconnect();
    pair.b.store = bob_after_r_one;
    pair.write(true, "r-after");
    pair.connect_and_drive();
    let all = numbered(&["r-one", "r-two", "r-three", "r-hello", "r-after"]);
    assert_eq!(received_numbered(&pair, false), all);
    assert_eq!(own_numbered(&pair, true), all);
    assert_converged(&pair);
}

/// While Bob's store is behind, Alice's delivery marks follow Bob's sync: what Bob lost is
/// shown waiting again (and sent again), never delivered.
#[test]
fn a_delivery_mark_follows_the_peers_sync_down_after_the_peer_is_restored() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.write(true, "one");
    pair.drive();
    let bob_after_one = pair.b.store.clone();
    pair.write(true, "two");
    pair.drive();
    pair.disconnect();
    assert_eq!(pair.waiting(true), 0);
    pair.b.store = bob_after_one;
    // Only the handshake and the sync: Alice's mark goes down to what Bob holds.
    pair.connect();
    while !pair.is_established() {
        assert!(pair.step(), "the handshake stalled");
    }
    assert_eq!(pair.a.store.chats[&DEVICE_B].delivered_up_to, 1);
    pair.drive();
    assert_converged(&pair);
}

/// A restored device whose own messages the peer holds gets them back, in batches, and
/// then writes on after them.
#[test]
fn a_restored_device_gets_its_whole_history_back_from_the_peer() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    let empty_bob = pair.b.store.clone();
    for i in 0..600 {
        pair.write(false, &format!("bob {i}"));
    }
    pair.drive();
    pair.disconnect();
    pair.b.store = empty_bob;
    pair.write(false, "after the restore");
    // Alice knows from bob's sync that he is getting his lines back from her, until she has
    // sent them all: a side that leaves once settled waits for that.
    pair.connect();
    let mut seen_recovering = false;
    while pair.step() {
        let alice = pair.a.link.as_ref().unwrap().session();
        seen_recovering |= alice.is_established() && alice.peer_is_recovering();
    }
    assert!(seen_recovering);
    assert!(!pair.a.link.as_ref().unwrap().session().peer_is_recovering());
    pair.drive();
    let own = own_numbered(&pair, false);
    assert_eq!(own.len(), 601);
    assert_eq!(own[599], (600, "bob 599".to_owned()));
    assert_eq!(own[600], (601, "after the restore".to_owned()));
    assert_eq!(received_numbered(&pair, true), own);
    assert_converged(&pair);
}

/// A message written offline, numbered and delivered at the next connection, then lost to
/// a restore of its writer's store (which still holds it unnumbered) is recognised when it
/// comes back, and not sent a second time under a new number.
#[test]
fn a_write_numbered_in_a_lost_future_is_not_sent_twice() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    pair.disconnect();
    pair.write(true, "written offline");
    let alice_with_it_waiting = pair.a.store.clone();
    pair.connect_and_drive();
    assert_eq!(
        received_numbered(&pair, false),
        numbered(&["written offline"])
    );
    pair.disconnect();
    pair.a.store = alice_with_it_waiting;
    assert_eq!(pair.waiting(true), 1);
    pair.connect_and_drive();
    assert_eq!(
        received_numbered(&pair, false),
        numbered(&["written offline"])
    );
    assert_eq!(own_numbered(&pair, true), numbered(&["written offline"]));
    assert_converged(&pair);
}

/// Both devices restored, repeatedly, with writes on both sides in between: after the last
/// connection both hold the same chat, every id with one text, nothing waiting.
#[test]
fn repeated_restores_on_both_sides_converge_without_a_stall() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    let mut copies_a = vec![pair.a.store.clone()];
    let mut copies_b = vec![pair.b.store.clone()];
    for round in 0..12 {
        pair.write(round % 2 == 0, &format!("online {round}"));
        pair.drive();
        pair.disconnect();
        copies_a.push(pair.a.store.clone());
        copies_b.push(pair.b.store.clone());
        if round % 3 == 1 {
            pair.a.store = copies_a[round / 2].clone();
        }
        if round % 4 == 2 {
            pair.b.store = copies_b[round / 3].clone();
        }
        pair.write(true, &format!("offline a {round}"));
        pair.write(false, &format!("offline b {round}"));
        pair.connect_and_drive();
        let a = own_numbered(&pair, true);
        assert_eq!(a, received_numbered(&pair, false), "round {round}");
        assert_eq!(
            a.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            (1..=a.len() as u64).collect::<Vec<_>>(),
            "round {round}: own numbering has no gap"
        );
        assert_eq!(own_numbered(&pair, false), received_numbered(&pair, true));
        assert_converged(&pair);
    }
}

#[test]
fn the_window_is_bounded_in_bytes_as_well_as_messages() {
    use socketfalco_core::limits::MAX_TEXT_BYTES;
    let mut pair = Pair::new();
    // The smallest byte window: one message of the largest size.
    pair.a.config.window_bytes = 0;
    pair.connect_and_drive();
    let long = "x".repeat(4096);
    let n = MAX_TEXT_BYTES / long.len() + 4;
    let mut written = Vec::new();
    for i in 0..n {
        written.push(pair.write(true, &format!("{i:04}{long}")).seq);
    }
    // Nothing may be in flight beyond the byte window (plus the one message that opened
    // it), whatever the message window says.
    let session = pair.a.link.as_ref().unwrap().session();
    assert!(
        session.in_flight_bytes() <= MAX_TEXT_BYTES + long.len() + 4,
        "{} bytes in flight",
        session.in_flight_bytes()
    );
    assert!(
        session.in_flight() < n as u64,
        "the byte bound held some back"
    );
    // Acks open the window again: everything arrives, once, in order.
    pair.drive();
    let texts = received_texts(&pair.b.notices);
    assert_eq!(texts.len(), n);
    assert!(texts
        .iter()
        .enumerate()
        .all(|(i, t)| t.starts_with(&format!("{i:04}"))));
    assert_eq!(pair.a.link.as_ref().unwrap().session().in_flight_bytes(), 0);
}

/// Carries Alice's bytes (a link taken out of the pair, driven by the test) to Bob and Bob's
/// back until nothing moves. Bob's storage is carried out at once; Alice's requests stay
/// with her link, for the test to carry out.
fn shuttle(alice: &mut Link, pair: &mut Pair) {
    let now = pair.now_ms;
    loop {
        let mut moved = false;
        let out = alice.poll_transmit(now);
        let bob = pair.b.link.as_mut().expect("bob is connected");
        if !out.is_empty() {
            let n = out.len();
            bob.handle_input(out, now);
            alice.advance_transmit(n);
            moved = true;
        }
        let _ = bob.pump_with(&mut pair.b.store, now);
        let back = bob.poll_transmit(now);
        if !back.is_empty() {
            let n = back.len();
            alice.handle_input(back, now);
            bob.advance_transmit(n);
            alice.pump(now);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// Alice composes `text` and her store carries the request out inside a transaction that
/// has not committed (a copy of her store): the link is told the lines are written and sends
/// them. Returns the request, its reply, and the store as it will be once committed.
fn compose_before_commit(
    alice: &mut Link,
    pair: &Pair,
    text: &str,
) -> (RequestId, StoreReply, MemoryStore) {
    let now = pair.now_ms;
    let id = alice
        .compose_batch(vec![text.to_owned()], 0, now)
        .expect("alice is connected");
    let (request_id, request) = alice.poll_store_request().expect("the compose request");
    assert_eq!(request_id, id);
    let mut committing = pair.a.store.clone();
    let reply = execute(&mut committing, &request).expect("the compose is carried out");
    let StoreReply::Composed(messages) = &reply else {
        panic!("a compose answers with the messages, got {reply:?}");
    };
    alice
        .handle_store_written(id, messages, now)
        .expect("a compose awaiting its completion takes the written lines");
    (id, reply, committing)
}

fn notice_kinds(link: &mut Link) -> Vec<String> {
    std::iter::from_fn(|| link.poll_notice())
        .map(|notice| match notice {
            Notice::Composed { messages, .. } => format!("composed {}", messages[0].text),
            Notice::ComposeFailed { reason, .. } => format!("failed: {reason}"),
            Notice::Delivered { up_to } => format!("delivered {up_to}"),
            Notice::Closed { reason, by } => format!("closed {:?} {by:?}", reason.code),
            other => format!("{other:?}"),
        })
        .collect()
}

/// docs/PROTOCOL.md §6.2: a line numbered in a group commit still running is sent at once,
/// so the peer stores and acks it while the sender's commit runs; the sender shows it
/// stored only when its commit is done, and delivered only after that.
#[test]
fn a_line_sent_before_its_commit_is_shown_stored_then_delivered() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    let now = pair.now_ms;
    let mut alice = pair.a.link.take().expect("alice is connected");
    let (id, reply, committed) = compose_before_commit(&mut alice, &pair, "early");
    shuttle(&mut alice, &mut pair);
    assert_eq!(
        received_numbered(&pair, false),
        numbered(&["early"]),
        "Bob stored the line while Alice's commit ran"
    );
    assert_eq!(alice.session().peer_acked(), 1, "and acked it");
    assert_eq!(
        notice_kinds(&mut alice),
        Vec::<String>::new(),
        "nothing is shown before Alice's own commit is done"
    );
    assert!(
        own_numbered(&pair, true).is_empty(),
        "(the commit has not happened)"
    );
    // The requests Alice's link made meanwhile (the delivery mark) wait for the commit.
    let later: Vec<_> = std::iter::from_fn(|| alice.poll_store_request()).collect();
    pair.a.store = committed;
    alice
        .handle_store_completion(id, Ok(reply), now)
        .expect("the compose's completion");
    for (request_id, request) in later {
        let result = execute(&mut pair.a.store, &request).map_err(|e| e.to_string());
        alice
            .handle_store_completion(request_id, result, now)
            .expect("in order");
    }
    assert_eq!(
        notice_kinds(&mut alice),
        ["composed early", "delivered 1"],
        "stored first, then delivered"
    );
    pair.a.link = Some(alice);
    pair.write(true, "next");
    pair.drive();
    assert_converged(&pair);
    assert_eq!(own_numbered(&pair, true), numbered(&["early", "next"]));
}

/// docs/PROTOCOL.md §6.2: if the commit fails after its line was sent, the user is told it
/// is not stored (and why it may have gone), the session closes, and the next connection
/// gives the line back from the peer, under its number: nothing lost, nothing doubled.
#[test]
fn a_line_sent_before_a_commit_that_failed_comes_back_from_the_peer() {
    let mut pair = Pair::new();
    pair.connect_and_drive();
    let now = pair.now_ms;
    let mut alice = pair.a.link.take().expect("alice is connected");
    let (id, _reply, _never_committed) = compose_before_commit(&mut alice, &pair, "lost here");
    shuttle(&mut alice, &mut pair);
    assert_eq!(received_numbered(&pair, false), numbered(&["lost here"]));
    alice
        .handle_store_completion(id, Err("disk full".into()), now)
        .expect("the compose's completion");
    while let Some((request_id, _)) = alice.poll_store_request() {
        let _ = alice.handle_store_completion(request_id, Err("disk full".into()), now);
    }
    let kinds = notice_kinds(&mut alice);
    assert!(
        kinds[0].starts_with("failed: disk full (the lines were sent before their commit failed"),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"closed StorageFailure Local".to_owned()),
        "{kinds:?}"
    );
    assert!(
        !kinds.iter().any(|k| k.starts_with("delivered")),
        "a line not stored here is never shown delivered: {kinds:?}"
    );
    pair.a.link = Some(alice);
    pair.drive();
    pair.disconnect();
    assert!(
        own_numbered(&pair, true).is_empty(),
        "Alice's store lost it"
    );

    pair.connect_and_drive();
    assert_eq!(
        own_numbered(&pair, true),
        numbered(&["lost here"]),
        "Bob gave it back"
    );
    pair.write(true, "after");
    pair.drive();
    assert_eq!(
        received_numbered(&pair, false),
        numbered(&["lost here", "after"]),
        "Bob holds each once, and the next line takes the next number"
    );
    assert_converged(&pair);
}

/// The texts of the own lines `notices` announce as written elsewhere, in order.
fn written_elsewhere(notices: &[Notice]) -> Vec<String> {
    notices
        .iter()
        .filter_map(|n| match n {
            Notice::WrittenElsewhere { message } => Some(message.text.clone()),
            _ => None,
        })
        .collect()
}

/// Checks that `a`'s link announced no line as written elsewhere.
fn assert_nothing_written_elsewhere(pair: &Pair) {
    let announced = written_elsewhere(&pair.a.notices);
    assert!(announced.is_empty(), "{announced:?}");
}

/// Lines another process of this device writes into the chat while a session runs (`-eC`
/// beside it) are sent — at the next refill, or numbered ahead of the next line typed — and
/// each is announced once as written elsewhere, so that the session's view shows them as
/// the user's own. The lines the chat held when the session opened, the lines typed through
/// the link (live, or unnumbered while the session was not established) and the lines sent
/// again at the next connection are never announced.
#[test]
fn lines_written_beside_a_running_session_are_sent_and_announced_once() {
    let mut pair = Pair::new();
    pair.write(true, "offline before");
    pair.connect_and_drive();
    pair.write(true, "typed live");
    pair.drive();
    // Another process on a's store: stored unnumbered, as `-eC` does.
    let wall = pair.wall_a_ms;
    pair.a
        .store
        .compose(DEVICE_B, "elsewhere one", wall)
        .unwrap();
    let now = pair.now_ms;
    pair.a.link.as_mut().unwrap().refill(now);
    pair.drive();
    // Another, then a line typed at once: the compose numbers the waiting line first.
    pair.a
        .store
        .compose(DEVICE_B, "elsewhere two", wall)
        .unwrap();
    pair.write(true, "typed after");
    pair.drive();
    assert_eq!(
        received_texts(&pair.b.notices),
        [
            "offline before",
            "typed live",
            "elsewhere one",
            "elsewhere two",
            "typed after"
        ]
    );
    assert_eq!(
        written_elsewhere(&pair.a.notices),
        ["elsewhere one", "elsewhere two"]
    );
    assert_converged(&pair);

    // Written while apart, and unacked lines sent again: the user's own history, not news.
    pair.disconnect();
    pair.a.notices.clear();
    pair.a
        .store
        .compose(DEVICE_B, "elsewhere offline", wall)
        .unwrap();
    pair.write(true, "typed offline");
    pair.connect_and_drive();
    assert_nothing_written_elsewhere(&pair);
    assert_converged(&pair);

    // While the next connection opens (the chat open, the session not established): a line
    // typed through the link (stored unnumbered, numbered at the sync with a new Lamport
    // counter) and one the driver wrote itself (`note_written_here`) were both shown as
    // waiting: neither is announced when it goes.
    pair.disconnect();
    pair.a.notices.clear();
    pair.b.notices.clear();
    pair.connect();
    while pair.a.link.as_ref().is_some_and(|l| l.peer().is_none()) {
        assert!(pair.step(), "the connection settled before the chat opened");
    }
    assert!(!pair.is_established(), "the chat opened with the session");
    pair.write(true, "typed while opening");
    let by_driver = pair
        .a
        .store
        .compose(DEVICE_B, "written by the driver while opening", wall + 1)
        .unwrap();
    pair.a
        .link
        .as_mut()
        .unwrap()
        .note_written_here(std::slice::from_ref(&by_driver));
    pair.drive();
    // The driver's store poll.
    let now = pair.now_ms;
    pair.a.link.as_mut().unwrap().refill(now);
    pair.drive();
    assert_eq!(
        received_texts(&pair.b.notices),
        ["typed while opening", "written by the driver while opening"]
    );
    assert_nothing_written_elsewhere(&pair);
    assert_converged(&pair);
}

/// Connects again, `a`'s new link handed `shown` once its peer is known and before the chat
/// opens: `a` holds the peer for admission (as a listener does), as a driver that carries
/// out storage requests inline (`pump_with`) must, since the link opens the chat and sends
/// within one pump.
fn reconnect_handing_over(pair: &mut Pair, shown: OwnLinesShown) {
    pair.connect();
    pair.a.link.as_mut().unwrap().require_admission();
    while !pair
        .a
        .notices
        .iter()
        .any(|n| matches!(n, Notice::PeerProved { .. }))
    {
        assert!(
            pair.step(),
            "the connection settled before the peer proved its key"
        );
    }
    let now = pair.now_ms;
    let link = pair.a.link.as_mut().unwrap();
    link.inherit_own_lines_shown(shown);
    link.admit(now);
}

/// A driver that keeps running between two connections of a chat (a listener whose peer
/// went away and came back) hands the next link what the last one had shown
/// (`own_lines_shown` → `inherit_own_lines_shown`): a line another process wrote into the
/// chat meanwhile is then announced once when it goes, while the lines the driver wrote
/// itself meanwhile, the line sent and not acked before the drop (sent again now) and the
/// chat's older lines are not.
#[test]
fn a_line_written_elsewhere_while_the_peer_was_away_is_announced_by_the_next_link() {
    let mut pair = Pair::new();
    pair.write(true, "offline before");
    pair.connect_and_drive();
    pair.write(true, "typed live");
    pair.drive();
    // A line that leaves and is lost with the connection: sent, never acked.
    pair.a_to_b.blackhole = true;
    pair.write(true, "lost in the drop");
    for _ in 0..4 {
        pair.step();
    }
    let mut shown = pair.a.link.as_ref().unwrap().own_lines_shown();
    pair.a_to_b.blackhole = false;
    pair.disconnect();
    pair.a.notices.clear();
    pair.b.notices.clear();

    // While apart: another process writes a line; the driver writes one itself, which its
    // user interface showed as waiting.
    let wall = pair.wall_a_ms;
    pair.a
        .store
        .compose(DEVICE_B, "elsewhere while apart", wall)
        .unwrap();
    let by_driver = pair
        .a
        .store
        .compose(DEVICE_B, "typed while apart", wall + 1)
        .unwrap();
    shown.note_written_here(std::slice::from_ref(&by_driver));

    reconnect_handing_over(&mut pair, shown);
    pair.drive();
    assert_eq!(
        received_texts(&pair.b.notices),
        [
            "lost in the drop",
            "elsewhere while apart",
            "typed while apart"
        ]
    );
    assert_eq!(
        written_elsewhere(&pair.a.notices),
        ["elsewhere while apart"]
    );
    assert_converged(&pair);

    // The link after that, handed what this one showed: nothing is news any more.
    let shown = pair.a.link.as_ref().unwrap().own_lines_shown();
    pair.disconnect();
    pair.a.notices.clear();
    reconnect_handing_over(&mut pair, shown);
    pair.drive();
    pair.write(true, "typed after");
    pair.drive();
    assert_nothing_written_elsewhere(&pair);
    assert_converged(&pair);
}
