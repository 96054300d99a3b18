//! Two endpoints in one process over real loopback sockets, with in-memory stores.

use socketfalco_core::{CloseCode, PublicKey, SessionConfig};
use socketfalco_testkit::{MemoryStore, SlowCommits, DEVICE_A, DEVICE_B};
use socketfalco_transport::{Command, Control, Endpoint, EndpointConfig, Output, Role};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::Duration;

struct Running {
    control: Control,
    outputs: Events,
    thread: JoinHandle<(Result<(), String>, MemoryStore)>,
}

fn start(role: Role, config: EndpointConfig) -> Running {
    start_with(role, config, None)
}

/// An endpoint over an in-memory store: driven inline, or — with `commit_ms` — behind a
/// storage thread whose every group commit takes that long (a slow disk).
fn start_with(role: Role, config: EndpointConfig, commit_ms: Option<u64>) -> Running {
    let (tx, outputs) = channel();
    let thread = match commit_ms {
        None => return start_over(role, config, MemoryStore::new()),
        Some(ms) => {
            let store = SlowCommits {
                inner: MemoryStore::new(),
                delay: Duration::from_millis(ms),
            };
            let (endpoint, control) = Endpoint::new(role, config, store).unwrap();
            let thread = std::thread::spawn(move || {
                let mut endpoint = endpoint;
                let result = endpoint.run(|_, output| {
                    let _ = tx.send(output);
                });
                let store = endpoint.take_store().map(|s| s.inner).unwrap_or_default();
                (result.map_err(|e| e.to_string()), store)
            });
            (control, thread)
        }
    };
    Running {
        control: thread.0,
        outputs: Events::new(outputs),
        thread: thread.1,
    }
}

/// An endpoint over `store`, driven inline.
fn start_over(role: Role, config: EndpointConfig, store: MemoryStore) -> Running {
    let (tx, outputs) = channel();
    let (endpoint, control) = Endpoint::new(role, config, store).unwrap();
    let thread = std::thread::spawn(move || {
        let mut endpoint = endpoint;
        let result = endpoint.run(|_, output| {
            let _ = tx.send(output);
        });
        let store = endpoint.take_store().unwrap_or_default();
        (result.map_err(|e| e.to_string()), store)
    });
    Running {
        control,
        outputs: Events::new(outputs),
        thread,
    }
}

/// The outputs of one endpoint, as the test reads them.
struct Events {
    rx: Receiver<Output>,
    /// Outputs that arrived while the test waited for another: an event that comes earlier
    /// than the test looks for it is not lost.
    seen: RefCell<Vec<Output>>,
}

impl Events {
    fn new(rx: Receiver<Output>) -> Events {
        Events {
            rx,
            seen: RefCell::new(Vec::new()),
        }
    }

    /// Whether no output so far (those that have arrived, without waiting) matches `pred`.
    fn seen_none(&self, pred: impl Fn(&Output) -> bool) -> bool {
        let mut seen = self.seen.borrow_mut();
        while let Ok(output) = self.rx.try_recv() {
            seen.push(output);
        }
        !seen.iter().any(pred)
    }
}

fn wait_for(events: &Events, what: &str, pred: impl Fn(&Output) -> bool) -> Output {
    let mut seen = events.seen.borrow_mut();
    if let Some(i) = seen.iter().position(&pred) {
        return seen.remove(i);
    }
    loop {
        match events.rx.recv_timeout(Duration::from_secs(10)) {
            Ok(output) if pred(&output) => return output,
            Ok(output) => seen.push(output),
            Err(e) => panic!("waiting for {what}: {e}; saw {seen:?}"),
        }
    }
}

fn config(device: socketfalco_core::DeviceId, name: &str) -> EndpointConfig {
    let mut config =
        EndpointConfig::new(SessionConfig::new(device, name), Some(keypair_of(device)));
    config.reconnect_min_ms = 50;
    config.quit_grace_ms = 2_000;
    config
}

/// A listener's configuration with room for one chat at a time.
fn limited_to_one(device: socketfalco_core::DeviceId, name: &str) -> EndpointConfig {
    let mut config = config(device, name);
    config.max_peers = 1;
    config
}

/// Alice listening with room for one chat, Bob's chat open in it, and Carol dialling: how
/// the busy tests begin. Returns alice, her address, bob and carol.
fn bob_in_and_carol_dialling() -> (Running, SocketAddr, Running, Running) {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let alice = start(Role::Listen { bind }, limited_to_one(DEVICE_A, "alice"));
    let addr = listening_addr(&alice);
    let bob = dial(DEVICE_B, "bob", addr);
    wait_for(&alice.outputs, "connected", |o| {
        matches!(o, Output::Connected { .. })
    });
    let carol = dial(socketfalco_core::DeviceId([0xcc; 16]), "carol", addr);
    (alice, addr, bob, carol)
}

/// The address a listener that was just started listens on.
fn listening_addr(listener: &Running) -> SocketAddr {
    match wait_for(&listener.outputs, "listening", |o| {
        matches!(o, Output::Listening(_))
    }) {
        Output::Listening(addr) => addr,
        _ => unreachable!(),
    }
}

fn listen(device: socketfalco_core::DeviceId, name: &str) -> (Running, SocketAddr) {
    listen_with(device, name, None)
}

fn listen_with(
    device: socketfalco_core::DeviceId,
    name: &str,
    commit_ms: Option<u64>,
) -> (Running, SocketAddr) {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener = start_with(Role::Listen { bind }, config(device, name), commit_ms);
    let addr = listening_addr(&listener);
    (listener, addr)
}

fn dial(device: socketfalco_core::DeviceId, name: &str, addr: SocketAddr) -> Running {
    let role = Role::connect(vec![addr], addr.to_string());
    start(role, config(device, name))
}

#[test]
fn a_chat_over_loopback_delivers_both_ways_and_stores_it() {
    let (alice, addr) = listen(DEVICE_A, "alice");
    let bob = dial(DEVICE_B, "bob", addr);
    wait_for(&bob.outputs, "connected", |o| {
        matches!(o, Output::Connected { .. })
    });
    wait_for(&alice.outputs, "connected", |o| {
        matches!(o, Output::Connected { .. })
    });
    bob.control.send(Command::Write("hello alice".into()));
    alice.control.send(Command::Write("hello bob".into()));
    wait_for(
        &alice.outputs,
        "bob's line",
        |o| matches!(o, Output::Received { message, .. } if message.text == "hello alice"),
    );
    wait_for(
        &bob.outputs,
        "alice's line",
        |o| matches!(o, Output::Received { message, .. } if message.text == "hello bob"),
    );
    wait_for(&bob.outputs, "delivery", |o| {
        matches!(o, Output::Delivered { up_to: 1, .. })
    });
    bob.control.send(Command::Quit);
    let (result, bob_store) = bob.thread.join().unwrap();
    result.unwrap();
    wait_for(
        &alice.outputs,
        "bob left",
        |o| matches!(o, Output::Disconnected { reason, .. } if reason.code == CloseCode::Normal),
    );
    alice.control.send(Command::Quit);
    let (result, alice_store) = alice.thread.join().unwrap();
    result.unwrap();
    assert_eq!(
        alice_store.history(DEVICE_A, DEVICE_B),
        bob_store.history(DEVICE_B, DEVICE_A)
    );
    assert_eq!(alice_store.history(DEVICE_A, DEVICE_B).len(), 2);
    assert_eq!(bob_store.waiting(DEVICE_A), 0);
}

/// A `Control` wakes the endpoint only when no wake is on its way: lines queued from four
/// threads at once, most of them without a wake of their own, all arrive, each thread's in
/// its order; and a line queued once all is quiet still arrives.
#[test]
fn lines_queued_from_several_threads_at_once_all_arrive() {
    const THREADS: usize = 4;
    const LINES: usize = 2_000;
    let (alice, addr) = listen(DEVICE_A, "alice");
    let bob = dial(DEVICE_B, "bob", addr);
    wait_for(&bob.outputs, "connected", |o| {
        matches!(o, Output::Connected { .. })
    });
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let control = bob.control.clone();
            std::thread::spawn(move || {
                for i in 0..LINES {
                    assert!(control.send(Command::Write(format!("{t} {i}"))));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let mut next = [0usize; THREADS];
    for _ in 0..THREADS * LINES {
        let Output::Received { message, .. } = wait_for(&alice.outputs, "a line", |o| {
            matches!(o, Output::Received { .. })
        }) else {
            unreachable!()
        };
        let (t, i) = message.text.split_once(' ').unwrap();
        let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[t], "thread {t}'s lines in order");
        next[t] += 1;
    }
    assert_eq!(next, [LINES; THREADS]);
    // Once all is quiet, one more line.
    std::thread::sleep(Duration::from_millis(300));
    bob.control.send(Command::Write("last".into()));
    wait_for(
        &alice.outputs,
        "the last line",
        |o| matches!(o, Output::Received { message, .. } if message.text == "last"),
    );
    bob.control.send(Command::Quit);
    bob.thread.join().unwrap().0.unwrap();
    alice.control.send(Command::Quit);
    alice.thread.join().unwrap().0.unwrap();
}

#[test]
fn a_listener_chats_with_several_peers_at_once_each_in_its_own_chat() {
    // Alice's disk is slow: her storage thread commits each group in 20 ms at least, while
    // her loop serves both peers.
    let (alice, addr) = listen_with(DEVICE_A, "alice", Some(20));
    let carol_id = socketfalco_core::DeviceId([0xcc; 16]);
    let bob = dial(DEVICE_B, "bob", addr);
    let carol = dial(carol_id, "carol", addr);
    for peer in [&bob, &carol] {
        wait_for(&peer.outputs, "connected", |o| {
            matches!(o, Output::Connected { .. })
        });
    }
    bob.control.send(Command::Write("from bob".into()));
    carol.control.send(Command::Write("from carol".into()));
    wait_for(
        &alice.outputs,
        "bob's line",
        |o| matches!(o, Output::Received { peer, message, .. } if *peer == DEVICE_B && message.text == "from bob"),
    );
    wait_for(
        &alice.outputs,
        "carol's line",
        |o| matches!(o, Output::Received { peer, message, .. } if *peer == carol_id && message.text == "from carol"),
    );
    alice.control.send(Command::WriteTo {
        to: DEVICE_B,
        text: "to bob".into(),
    });
    alice.control.send(Command::WriteTo {
        to: carol_id,
        text: "to carol".into(),
    });
    wait_for(
        &bob.outputs,
        "alice's line",
        |o| matches!(o, Output::Received { message, .. } if message.text == "to bob"),
    );
    wait_for(
        &carol.outputs,
        "alice's line",
        |o| matches!(o, Output::Received { message, .. } if message.text == "to carol"),
    );
    for peer in [bob, carol] {
        peer.control.send(Command::Quit);
        peer.thread.join().unwrap().0.unwrap();
    }
    alice.control.send(Command::Quit);
    let (result, store) = alice.thread.join().unwrap();
    result.unwrap();
    let texts = |peer| -> Vec<String> {
        store
            .history(DEVICE_A, peer)
            .into_iter()
            .map(|(_, m)| m.text)
            .collect()
    };
    assert_eq!(texts(DEVICE_B), ["from bob", "to bob"]);
    assert_eq!(texts(carol_id), ["from carol", "to carol"]);
}

#[test]
fn past_its_limit_a_listener_refuses_a_caller_as_busy_and_the_caller_waits_its_turn() {
    let (alice, _, bob, carol) = bob_in_and_carol_dialling();
    let refused = wait_for(&carol.outputs, "busy", |o| {
        matches!(o, Output::Disconnected { .. })
    });
    match refused {
        Output::Disconnected { reason, .. } => assert_eq!(reason.code, CloseCode::Busy),
        _ => unreachable!(),
    }
    wait_for(&carol.outputs, "retry", |o| {
        matches!(o, Output::Reconnecting { .. })
    });
    wait_for(&alice.outputs, "refusal", |o| {
        matches!(o, Output::RefusedBusy(_))
    });
    // Bob leaves; carol's next attempt gets in.
    bob.control.send(Command::Quit);
    bob.thread.join().unwrap().0.unwrap();
    wait_for(&carol.outputs, "connected", |o| {
        matches!(o, Output::Connected { .. })
    });
    carol.control.send(Command::Quit);
    carol.thread.join().unwrap().0.unwrap();
    alice.control.send(Command::Quit);
    alice.thread.join().unwrap().0.unwrap();
}

/// Alice listening with room for one chat, whose contacts are `contacts`, and Carol — a
/// stranger — in it: how the contact tests begin. Returns alice, her address and carol.
fn carol_in_a_listener_with_contacts(
    contacts: &[(socketfalco_core::DeviceId, PublicKey)],
) -> (Running, SocketAddr, Running) {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = limited_to_one(DEVICE_A, "alice");
    config.contacts.extend(contacts.iter().copied());
    let alice = start(Role::Listen { bind }, config);
    let addr = listening_addr(&alice);
    let carol = dial(CAROL, "carol", addr);
    wait_for(
        &alice.outputs,
        "carol in",
        |o| matches!(o, Output::Connected { peer, .. } if peer.device == CAROL),
    );
    (alice, addr, carol)
}

/// Each endpoint quits, in order, and ends well.
fn quit_all<const N: usize>(endpoints: [Running; N]) {
    for running in endpoints {
        running.control.send(Command::Quit);
        running.thread.join().unwrap().0.unwrap();
    }
}

const CAROL: socketfalco_core::DeviceId = socketfalco_core::DeviceId([0xcc; 16]);

/// The static key [`config`] gives `device`.
fn keypair_of(device: socketfalco_core::DeviceId) -> socketfalco_core::StaticKeypair {
    socketfalco_core::StaticKeypair::from_secret([device.0[0]; 32])
}

/// The public key [`config`] gives `device`.
fn key_of(device: socketfalco_core::DeviceId) -> PublicKey {
    keypair_of(device).public()
}

/// Every place is held by a stranger: a contact who calls (a device the user wrote to, with
/// the key it proved then) gets the stranger's place; the stranger is told the listener is
/// busy and waits its turn, as any caller refused would.
#[test]
fn a_contact_calling_a_full_listener_takes_the_place_of_a_stranger() {
    let (alice, addr, carol) = carol_in_a_listener_with_contacts(&[(DEVICE_B, key_of(DEVICE_B))]);
    let bob = dial(DEVICE_B, "bob", addr);
    match wait_for(&alice.outputs, "room made", |o| {
        matches!(o, Output::MadeRoom { .. })
    }) {
        Output::MadeRoom {
            contact,
            stranger,
            stranger_name,
        } => {
            assert_eq!(contact.device, DEVICE_B);
            assert_eq!(stranger, CAROL);
            assert_eq!(stranger_name.as_deref(), Some("carol"));
        }
        _ => unreachable!(),
    }
    wait_for(
        &alice.outputs,
        "bob in",
        |o| matches!(o, Output::Connected { peer, .. } if peer.device == DEVICE_B),
    );
    match wait_for(&carol.outputs, "carol put out", |o| {
        matches!(o, Output::Disconnected { .. })
    }) {
        Output::Disconnected { reason, .. } => assert_eq!(reason.code, CloseCode::Busy),
        _ => unreachable!(),
    }
    // Carol's next attempts find the place taken; once bob leaves, she is back.
    wait_for(&alice.outputs, "carol refused", |o| {
        matches!(o, Output::RefusedBusy(_))
    });
    bob.control.send(Command::Quit);
    bob.thread.join().unwrap().0.unwrap();
    wait_for(&carol.outputs, "carol back", |o| {
        matches!(o, Output::Connected { .. })
    });
    quit_all([carol, alice]);
}

/// Bob calls `alice`, at `addr`, and is refused as busy, with nobody put out for him.
fn bob_refused_and_nobody_put_out(alice: &Running, addr: SocketAddr) -> Running {
    let bob = dial(DEVICE_B, "bob", addr);
    wait_for(
        &bob.outputs,
        "bob refused",
        |o| matches!(o, Output::Disconnected { reason, .. } if reason.code == CloseCode::Busy),
    );
    wait_for(&alice.outputs, "refusal", |o| {
        matches!(o, Output::RefusedBusy(_))
    });
    assert!(alice
        .outputs
        .seen_none(|o| matches!(o, Output::MadeRoom { .. })));
    bob
}

/// A device id is not enough to pass for a contact: a caller claiming a contact's id with
/// another key finds the listener busy, and the stranger in it stays.
#[test]
fn a_contacts_device_id_with_another_key_is_a_stranger() {
    let (alice, addr, carol) = carol_in_a_listener_with_contacts(&[(DEVICE_B, PublicKey([9; 32]))]);
    let bob = bob_refused_and_nobody_put_out(&alice, addr);
    // Carol is still in: a line reaches her.
    alice.control.send(Command::Write("still here".into()));
    wait_for(
        &carol.outputs,
        "the line",
        |o| matches!(o, Output::Received { message, .. } if message.text == "still here"),
    );
    quit_all([bob, carol, alice]);
}

/// Writing to a stranger makes it a contact: a contact calling then finds no stranger to put
/// out, and the listener busy.
#[test]
fn a_stranger_the_user_wrote_to_is_a_contact_and_stays() {
    let (alice, addr, carol) = carol_in_a_listener_with_contacts(&[(DEVICE_B, key_of(DEVICE_B))]);
    alice.control.send(Command::WriteTo {
        to: CAROL,
        text: "welcome".into(),
    });
    wait_for(
        &carol.outputs,
        "the line",
        |o| matches!(o, Output::Received { message, .. } if message.text == "welcome"),
    );
    let bob = bob_refused_and_nobody_put_out(&alice, addr);
    quit_all([bob, carol, alice]);
}

/// A caller told the listener is busy, whose listener then stops: its attempts meet a closed
/// port, which is retried (a listener was there), not the end of the caller — and once the
/// listener is back on its port, the caller gets in.
#[test]
fn a_caller_refused_as_busy_outlasts_a_restart_of_the_listener() {
    let (alice, addr, bob, carol) = bob_in_and_carol_dialling();
    wait_for(&alice.outputs, "refusal", |o| {
        matches!(o, Output::RefusedBusy(_))
    });
    quit_all([alice, bob]);
    let failed = wait_for(&carol.outputs, "an attempt that met the closed port", |o| {
        matches!(
            o,
            Output::Reconnecting {
                failed: Some(_),
                ..
            }
        )
    });
    assert!(!carol.thread.is_finished(), "carol gave up: {failed:?}");
    let alice = start(
        Role::Listen { bind: addr },
        limited_to_one(DEVICE_A, "alice"),
    );
    wait_for(&carol.outputs, "connected", |o| {
        matches!(o, Output::Connected { .. })
    });
    quit_all([carol, alice]);
}

/// A chat that ends as soon as it opens because the listener cannot store what comes in (its
/// disk is full) is retried with a growing delay, not twice a second for ever; the caller is
/// told the peer could not store the chat, and nothing of the listener's own error.
#[test]
fn a_peer_that_cannot_store_is_retried_with_a_growing_delay() {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let store = MemoryStore {
        fail_persists: true,
        ..MemoryStore::new()
    };
    let alice = start_over(Role::Listen { bind }, config(DEVICE_A, "alice"), store);
    let addr = listening_addr(&alice);
    let bob = dial(DEVICE_B, "bob", addr);
    bob.control.send(Command::Write("for a full disk".into()));
    let mut delays = Vec::new();
    while delays.len() < 4 {
        match wait_for(&bob.outputs, "a chat that ends", |o| {
            matches!(
                o,
                Output::Reconnecting { .. } | Output::Disconnected { peer: Some(_), .. }
            )
        }) {
            Output::Reconnecting { in_ms, .. } => delays.push(in_ms),
            Output::Disconnected { reason, .. } => {
                assert_eq!(reason.code, CloseCode::StorageFailure);
                assert_eq!(reason.detail, "the peer's device could not store the chat");
            }
            _ => unreachable!(),
        }
    }
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]),
        "the delay does not grow: {delays:?}"
    );
    for running in [bob, alice] {
        running.control.send(Command::Quit);
        let _ = running.thread.join().unwrap();
    }
}

#[test]
fn an_unreachable_address_is_a_clear_error() {
    // Bind then drop a listener: its port is now (almost certainly) closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bob = dial(DEVICE_B, "bob", addr);
    let (result, _) = bob.thread.join().unwrap();
    let error = result.unwrap_err();
    assert!(error.contains("could not connect"), "{error}");
}

#[test]
fn the_caller_reconnects_after_the_listener_comes_back_and_resyncs() {
    let (alice, addr) = listen(DEVICE_A, "alice");
    let bob = dial(DEVICE_B, "bob", addr);
    wait_for(&bob.outputs, "connected", |o| {
        matches!(o, Output::Connected { .. })
    });
    alice.control.send(Command::Quit);
    let (result, alice_store) = alice.thread.join().unwrap();
    result.unwrap();
    wait_for(&bob.outputs, "reconnecting", |o| {
        matches!(o, Output::Reconnecting { .. })
    });
    // Bob writes while alice is away: stored, waiting.
    bob.control.send(Command::Write("are you there?".into()));
    wait_for(&bob.outputs, "stored offline", |o| {
        matches!(o, Output::Sent { live: false, .. })
    });
    // Alice comes back on the same port with her store.
    let bind = addr;
    let (tx, outputs) = channel();
    let (endpoint, control) = Endpoint::new(
        Role::Listen { bind },
        config(DEVICE_A, "alice"),
        alice_store,
    )
    .unwrap();
    let thread = std::thread::spawn(move || {
        let mut endpoint = endpoint;
        let result = endpoint.run(|_, output| {
            let _ = tx.send(output);
        });
        (
            result.map_err(|e| e.to_string()),
            endpoint.take_store().unwrap_or_default(),
        )
    });
    let outputs = Events::new(outputs);
    wait_for(
        &outputs,
        "bob's offline line",
        |o| matches!(o, Output::Received { message, .. } if message.text == "are you there?"),
    );
    wait_for(&bob.outputs, "delivered", |o| {
        matches!(o, Output::Delivered { .. })
    });
    bob.control.send(Command::Quit);
    bob.thread.join().unwrap().0.unwrap();
    control.send(Command::Quit);
    let (result, store) = thread.join().unwrap();
    result.unwrap();
    assert_eq!(store.history(DEVICE_A, DEVICE_B).len(), 1);
}
