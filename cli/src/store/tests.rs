//! The store's tests: every call round-trips, the same story gives the same results as the
//! core's `MemoryStore`, everything survives reopening, concurrent handles and processes, the
//! migrations from older schemas, key pinning, refusals, and the display-order pages.

use super::schema::{APPLICATION_ID, MIGRATIONS};
use super::*;
use rusqlite::{params, Connection};
use socketfalco_core::{
    ChatOpening, ChatResume, DeviceId, Message, NameError, PeerHello, PublicKey, Store, TextError,
};
use socketfalco_testkit::MemoryStore;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Barrier};

/// Composing during an established session that sent nothing yet: numbered at once.
trait ComposeLive: Store {
    fn compose_live(
        &mut self,
        peer: DeviceId,
        text: &str,
        sent_at_ms: i64,
    ) -> Result<Message, Self::Error> {
        let mut messages = self.compose_batch(peer, &[text.to_owned()], sent_at_ms, Some(0))?;
        Ok(messages.remove(0))
    }
}

impl<S: Store> ComposeLive for S {}

const ME: DeviceId = DeviceId([0xaa; 16]);

fn hello(device: DeviceId, name: &str) -> PeerHello {
    PeerHello {
        device,
        name: name.to_owned(),
        peer_temporary: false,
        temporary: false,
    }
}

fn msg(seq: u64, lamport: u64, text: &str) -> Message {
    Message {
        seq,
        lamport,
        sent_at_ms: 1_000 + i64::try_from(seq % 1_000).unwrap(),
        text: text.to_owned(),
    }
}

/// A device id whose text form starts with the given bytes.
fn id(prefix: &[u8]) -> DeviceId {
    let mut bytes = [0u8; 16];
    bytes[..prefix.len()].copy_from_slice(prefix);
    DeviceId(bytes)
}

/// A database in a fresh folder, with this device's identity.
fn fresh() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Database::open(dir.path()).unwrap();
    db.create_identity(ME, "Me").unwrap();
    (dir, db)
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

fn raw(dir: &Path) -> Connection {
    Connection::open(dir.join(DB_FILE_NAME)).unwrap()
}

#[test]
fn round_trip_of_every_method() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Database::open(dir.path()).unwrap();
    assert_eq!(db.path(), dir.path().join("socketfalco.db"));
    assert_eq!(db.identity().unwrap(), None);
    db.create_identity(ME, "Me").unwrap();
    assert_eq!(
        db.identity().unwrap(),
        Some(Identity {
            device: ME,
            name: "Me".into()
        })
    );
    let other = DeviceId([0xbb; 16]);
    assert!(matches!(
        db.create_identity(other, "Other"),
        Err(StoreError::IdentityExists { device }) if device == ME
    ));

    let peer = id(&[0x42]);
    assert!(!db.chat_exists(peer).unwrap());
    assert_eq!(
        db.open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap(),
        ChatResume {
            received_up_to: 0,
            last_own_seq: 0,
            unnumbered: 0,
            delivered_up_to: 0
        }
    );
    assert!(db.chat_exists(peer).unwrap());

    let one = db.compose_live(peer, "one", 10).unwrap();
    assert_eq!(one, msg_at(1, 1, 10, "one"));
    let two = db.compose_live(peer, "two", 20).unwrap();
    assert_eq!(two, msg_at(2, 2, 20, "two"));
    // The peer wrote two messages, concurrently with ours (Lamport 1 and 3).
    db.persist_received(peer, &[msg_at(1, 1, 15, "hi"), msg_at(2, 3, 25, "yo")])
        .unwrap();
    let three = db.compose_live(peer, "three", 30).unwrap();
    assert_eq!(three, msg_at(3, 4, 30, "three"));

    assert_eq!(seqs(&db.own_messages(peer, 0, 100).unwrap()), [1, 2, 3]);
    assert_eq!(
        db.own_messages(peer, 2, 1).unwrap(),
        std::slice::from_ref(&two)
    );
    assert_eq!(db.own_messages(peer, 2, 0).unwrap(), []);
    assert_eq!(db.own_messages(peer, 4, 10).unwrap(), []);
    assert_eq!(db.own_messages(peer, u64::MAX, 10).unwrap(), []);
    assert_eq!(db.own_messages(id(&[0x99]), 1, 10).unwrap(), []);

    db.mark_delivered(peer, 2).unwrap();
    db.mark_delivered(peer, 1).unwrap(); // never goes back
    db.set_last_address(peer, "192.0.2.7:4000").unwrap();
    assert!(matches!(
        db.set_last_address(id(&[0x99]), "192.0.2.8:4000"),
        Err(StoreError::NoSuchChat { .. })
    ));
    assert!(!db.chat_exists(id(&[0x99])).unwrap());

    let chats = db.list_chats().unwrap();
    assert_eq!(chats.len(), 1);
    let chat = &chats[0];
    assert_eq!(chat.peer, peer);
    assert_eq!(chat.peer_name, "Peer");
    assert_eq!(chat.last_address.as_deref(), Some("192.0.2.7:4000"));
    assert_eq!((chat.messages, chat.waiting), (5, 1));
    assert!(chat.last_activity_ms.is_some());

    let history = db.history(peer).unwrap();
    let shown: Vec<(&str, bool, bool)> = history
        .iter()
        .map(|s| (s.message.text.as_str(), s.mine, s.delivered))
        .collect();
    // Lamport 1 twice: ME (0xaa…) sorts after the peer (0x42…).
    assert_eq!(
        shown,
        [
            ("hi", false, true),
            ("one", true, true),
            ("two", true, true),
            ("yo", false, true),
            ("three", true, false),
        ]
    );
    assert_eq!(history[0].author, peer);
    assert_eq!(history[1].author, ME);
    assert_eq!(db.history(id(&[0x99])).unwrap(), []);

    // Reopening the chat updates the name and resumes where both sides are.
    assert_eq!(
        db.open_chat(&hello(peer, "Peer Two"), None)
            .map(opened)
            .unwrap(),
        ChatResume {
            received_up_to: 2,
            last_own_seq: 3,
            unnumbered: 0,
            delivered_up_to: 2
        }
    );
    assert_eq!(db.list_chats().unwrap()[0].peer_name, "Peer Two");
    assert_eq!(db.find_chat("42").unwrap(), peer);
    assert_eq!(db.rename("Myself").unwrap(), "Me");
    assert_eq!(db.identity().unwrap().unwrap().name, "Myself");
}

fn msg_at(seq: u64, lamport: u64, sent_at_ms: i64, text: &str) -> Message {
    Message {
        seq,
        lamport,
        sent_at_ms,
        text: text.to_owned(),
    }
}

/// The schema version this build writes.
fn current_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap()
}

/// The resume of an opening that must have succeeded.
#[track_caller]
fn opened(opening: ChatOpening) -> ChatResume {
    match opening {
        ChatOpening::Opened(resume) => resume,
        other => panic!("not opened: {other:?}"),
    }
}

/// One call of the [`Store`] trait, run against both stores.
#[derive(Clone, Debug)]
enum Op {
    Open(DeviceId, &'static str),
    Compose(DeviceId, &'static str, i64),
    ComposeOffline(DeviceId, &'static str, i64),
    Number(DeviceId, u64),
    PeerMessages(DeviceId, u64, u64),
    Restore(DeviceId, Vec<Message>),
    SetDelivered(DeviceId, u64),
    Persist(DeviceId, Vec<Message>),
    Delivered(DeviceId, u64),
    Own(DeviceId, u64, usize),
    OpenWithKey(DeviceId, &'static str, [u8; 32]),
}

/// What a call returned, comparable across the two stores.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Resume(ChatResume),
    Composed(Message),
    Done,
    Own(Vec<Message>),
    Opening(ChatOpening),
    Numbered(u64),
}

fn apply<S: Store>(store: &mut S, op: &Op) -> Outcome
where
    S::Error: fmt::Debug,
{
    match op {
        Op::Open(peer, name) => {
            Outcome::Resume(opened(store.open_chat(&hello(*peer, name), None).unwrap()))
        }
        Op::Compose(peer, text, at) => {
            Outcome::Composed(store.compose_live(*peer, text, *at).unwrap())
        }
        Op::ComposeOffline(peer, text, at) => {
            Outcome::Composed(store.compose(*peer, text, *at).unwrap())
        }
        Op::Number(peer, after) => Outcome::Numbered(store.number_waiting(*peer, *after).unwrap()),
        Op::PeerMessages(peer, from, to) => {
            Outcome::Own(store.peer_messages(*peer, *from, *to).unwrap())
        }
        Op::Restore(peer, batch) => {
            store.restore_own(*peer, batch).unwrap();
            Outcome::Done
        }
        Op::SetDelivered(peer, up_to) => {
            store.set_delivered(*peer, *up_to).unwrap();
            Outcome::Done
        }
        Op::Persist(peer, batch) => {
            store.persist_received(*peer, batch).unwrap();
            Outcome::Done
        }
        Op::Delivered(peer, up_to) => {
            store.mark_delivered(*peer, *up_to).unwrap();
            Outcome::Done
        }
        Op::Own(peer, from, max) => Outcome::Own(store.own_messages(*peer, *from, *max).unwrap()),
        Op::OpenWithKey(peer, name, key) => {
            Outcome::Opening(store.open_chat(&hello(*peer, name), Some(*key)).unwrap())
        }
    }
}

#[test]
fn the_same_story_gives_the_same_results_as_the_memory_store() {
    let a = id(&[0x10]);
    let b = id(&[0xc0]);
    let c = id(&[0xee]);
    let story = vec![
        Op::Open(a, "Alice"),
        // A plain open pinned nothing: the first key is pinned, another refused.
        Op::OpenWithKey(a, "Alice", [0xa1; 32]),
        Op::OpenWithKey(a, "Alice", [0xa9; 32]),
        Op::Compose(a, "one", 1),
        Op::Compose(a, "two", 2),
        Op::Persist(a, vec![msg(1, 1, "a1"), msg(2, 3, "a2")]),
        Op::Compose(a, "three", 3),
        // A re-sent message is skipped, the new one kept.
        Op::Persist(a, vec![msg(2, 3, "a2 again"), msg(3, 5, "a3")]),
        // A batch past a gap, then a message below the highest stored: skipped, as in
        // the memory store (a peer's messages are kept in sequence order).
        Op::Persist(a, vec![msg(5, 6, "a5")]),
        Op::Persist(a, vec![msg(4, 6, "a4 late")]),
        Op::Delivered(a, 2),
        Op::Delivered(a, 1),
        Op::Open(a, "Alicia"),
        // Written offline: waits unnumbered; numbered at the next sync after what the
        // peer holds (7: say, our rows were restored from an old backup).
        Op::ComposeOffline(b, "offline one", 4),
        Op::ComposeOffline(b, "offline two", 4),
        Op::Open(b, "Bob"),
        Op::SetDelivered(b, 7),
        Op::Number(b, 7),
        Op::Number(b, 9),
        Op::Compose(b, "after the floor", 4),
        // The peer sent back our own messages 1..=7, which we had lost; one is a write
        // still waiting here (same Lamport counter, time and text): kept once.
        Op::ComposeOffline(b, "lost and found", 5),
        Op::Restore(
            b,
            vec![
                msg_at(1, 1, 1, "lost 1"),
                msg_at(2, 2, 2, "lost 2"),
                msg_at(3, 8, 5, "lost and found"),
            ],
        ),
        Op::SetDelivered(b, 2),
        Op::PeerMessages(a, 2, 4),
        Op::PeerMessages(a, 7, 9),
        Op::Persist(b, vec![]),
        Op::Open(b, "Bob"),
        // A compose for a chat never opened creates it.
        Op::Compose(c, "hello?", 5),
        Op::Own(a, 0, 100),
        Op::Own(a, 2, 1),
        Op::Own(a, 3, 10),
        Op::Own(a, 4, 10),
        Op::Own(a, u64::MAX, 5),
        Op::Own(b, 0, usize::MAX),
        Op::Own(id(&[0x77]), 1, 5),
        Op::Compose(a, "four", 6),
        Op::Persist(a, vec![msg(6, 1, "a6 with an old Lamport")]),
        Op::Compose(a, "five", 7),
        Op::Open(a, "Alice"),
        // A renamed peer keeps its key; a first contact creates the chat and pins.
        Op::OpenWithKey(a, "Alicia", [0xa1; 32]),
        Op::OpenWithKey(id(&[0x55]), "Five", [0x55; 32]),
        Op::OpenWithKey(a, "Alice", [0xa2; 32]),
    ];

    let (_dir, mut db) = fresh();
    let mut memory = MemoryStore::new();
    for (step, op) in story.iter().enumerate() {
        let from_db = apply(&mut db, op);
        let from_memory = apply(&mut memory, op);
        assert_eq!(from_db, from_memory, "step {step}: {op:?}");
        for peer in [a, b, c] {
            assert_eq!(
                db.chat_exists(peer).unwrap(),
                memory.chats.contains_key(&peer),
                "step {step}"
            );
            assert_eq!(
                db.own_messages(peer, 0, usize::MAX).unwrap(),
                memory.own_messages(peer, 0, usize::MAX).unwrap(),
                "step {step}"
            );
            let history: Vec<(DeviceId, Message)> = db
                .history(peer)
                .unwrap()
                .into_iter()
                .map(|s| (s.author, s.message))
                .collect();
            assert_eq!(history, memory.history(ME, peer), "step {step}");
        }
        for chat in db.list_chats().unwrap() {
            let twin = &memory.chats[&chat.peer];
            assert_eq!(chat.peer_name, twin.peer_name, "step {step}");
            assert_eq!(chat.peer_key, twin.peer_key, "step {step}");
            assert_eq!(
                chat.waiting,
                u64::try_from(memory.waiting(chat.peer)).unwrap(),
                "step {step}"
            );
            assert_eq!(
                chat.messages,
                u64::try_from(twin.own.len() + twin.unnumbered.len() + twin.received.len())
                    .unwrap(),
                "step {step}"
            );
        }
    }
    // A few of the values the story must have produced, so it cannot pass vacuously.
    assert_eq!(
        seqs(&db.own_messages(b, 0, 10).unwrap()),
        [8, 9, 10],
        "numbered after what the peer holds"
    );
    // a, b, c, and the chat the first contact created.
    assert_eq!(db.list_chats().unwrap().len(), 4);
    assert_eq!(db.key_state(a).unwrap(), Some((Some([0xa1; 32]), None)));
    let resume = db.open_chat(&hello(a, "Alice"), None).map(opened).unwrap();
    assert_eq!((resume.received_up_to, resume.last_own_seq), (6, 5));
    let texts: Vec<String> = db
        .history(a)
        .unwrap()
        .into_iter()
        .map(|s| s.message.text)
        .collect();
    assert!(!texts.contains(&"a2 again".to_owned()));
    assert!(!texts.contains(&"a4 late".to_owned()));
    assert_eq!(texts.len(), 10, "{texts:?}");
}

#[test]
fn everything_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let peer = id(&[0x42]);
    let (chats, history) = {
        let mut db = Database::open(dir.path()).unwrap();
        db.create_identity(ME, "Me").unwrap();
        db.open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap();
        db.compose_live(peer, "one", 1).unwrap();
        db.compose_live(peer, "two", 2).unwrap();
        db.persist_received(peer, &[msg(1, 1, "hi"), msg(2, 4, "yo")])
            .unwrap();
        db.mark_delivered(peer, 1).unwrap();
        db.set_last_address(peer, "[::1]:4000").unwrap();
        db.rename("Renamed").unwrap();
        (db.list_chats().unwrap(), db.history(peer).unwrap())
    };
    let mut db = Database::open(dir.path()).unwrap();
    assert_eq!(
        db.identity().unwrap(),
        Some(Identity {
            device: ME,
            name: "Renamed".into()
        })
    );
    assert_eq!(db.list_chats().unwrap(), chats);
    assert_eq!(chats[0].messages, 4);
    assert_eq!(chats[0].waiting, 1);
    assert_eq!(db.history(peer).unwrap(), history);
    assert_eq!(history.len(), 4);
    assert_eq!(
        db.open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap(),
        ChatResume {
            received_up_to: 2,
            last_own_seq: 2,
            unnumbered: 0,
            delivered_up_to: 1
        }
    );
    // Composing after the reopen continues the numbering (the identity was reloaded).
    assert_eq!(
        db.compose_live(peer, "three", 3).unwrap(),
        msg_at(3, 5, 3, "three")
    );
}

#[test]
fn two_handles_on_two_threads_compose_concurrently() {
    const EACH: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let peer = id(&[0x42]);
    {
        let mut db = Database::open(dir.path()).unwrap();
        db.create_identity(ME, "Me").unwrap();
        db.open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap();
    }
    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            let dir = dir.path().to_owned();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> Result<Vec<u64>, String> {
                let mut db = Database::open(&dir).map_err(|e| e.to_string())?;
                barrier.wait();
                let mut seqs = Vec::with_capacity(EACH);
                for i in 0..EACH {
                    let text = format!("writer {writer} message {i}");
                    let sent = i64::try_from(i).unwrap_or(0);
                    let m = db
                        .compose_live(peer, &text, sent)
                        .map_err(|e| e.to_string())?;
                    seqs.push(m.seq);
                }
                Ok(seqs)
            })
        })
        .collect();
    let mut all = Vec::new();
    for writer in writers {
        let seqs = writer.join().unwrap().unwrap();
        assert_eq!(seqs.len(), EACH);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=2 * EACH as u64).collect::<Vec<_>>());

    let mut db = Database::open(dir.path()).unwrap();
    let stored = db.own_messages(peer, 0, usize::MAX).unwrap();
    assert_eq!(seqs(&stored), (1..=2 * EACH as u64).collect::<Vec<_>>());
    // Each compose saw every earlier one: Lamport counters are distinct and contiguous too.
    let lamports: Vec<u64> = stored.iter().map(|m| m.lamport).collect();
    assert_eq!(lamports, (1..=2 * EACH as u64).collect::<Vec<_>>());
    let mut texts: Vec<&str> = stored.iter().map(|m| m.text.as_str()).collect();
    texts.sort_unstable();
    texts.dedup();
    assert_eq!(texts.len(), 2 * EACH);
}

/// Two processes (this test binary run twice more) compose into one chat at once: what
/// a listener and an offline writer on one data folder do. SQLite's locks between
/// processes are file locks, unlike those between two connections of one process.
#[test]
fn two_processes_compose_concurrently() {
    const DIR: &str = "SOCKETFALCO_STORE_TEST_CHILD_DIR";
    const EACH: u64 = 300;
    let peer = id(&[0x42]);
    if let Some(dir) = std::env::var_os(DIR) {
        // The child: compose EACH messages as fast as it can.
        let mut db = Database::open(Path::new(&dir)).unwrap();
        for i in 0..EACH {
            db.compose_live(peer, &format!("{} {i}", std::process::id()), 0)
                .unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = Database::open(dir.path()).unwrap();
        db.create_identity(ME, "Me").unwrap();
        db.open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap();
    }
    let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let name = format!("{module}::two_processes_compose_concurrently");
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name.as_str(), "--test-threads=1"])
                .env(DIR, dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut db = Database::open(dir.path()).unwrap();
    let stored = db.own_messages(peer, 0, usize::MAX).unwrap();
    assert_eq!(seqs(&stored), (1..=2 * EACH).collect::<Vec<_>>());
}

#[test]
fn concurrent_first_opens_create_the_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    let barrier = Arc::new(Barrier::new(4));
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let data = data.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                Database::open(&data).map(|_| ()).map_err(|e| e.to_string())
            })
        })
        .collect();
    for opener in openers {
        opener.join().unwrap().unwrap();
    }
    assert_eq!(schema_version(&data), current_version());
}

/// A data folder written by an older release: the schema of `version` (its migrations
/// applied by hand), this device's identity, nothing else yet.
fn old_data_folder(dir: &Path, version: usize) -> Connection {
    let conn = raw(dir);
    for step in &MIGRATIONS[..version] {
        conn.execute_batch(step).unwrap();
    }
    conn.pragma_update(None, "user_version", i64::try_from(version).unwrap())
        .unwrap();
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    conn.execute(
        "INSERT INTO identity VALUES (1, ?1, 'Me', 5)",
        params![ME.0],
    )
    .unwrap();
    conn
}

/// A message as schema versions 1 to 5 stored it: keyed by the chat's and the author's ids.
fn insert_old_message(
    conn: &Connection,
    chat: DeviceId,
    author: DeviceId,
    seq: i64,
    lamport: i64,
    text: &str,
) {
    conn.execute(
        "INSERT INTO messages VALUES (?1, ?2, ?3, ?4, 100, ?5, 8)",
        params![chat.0, author.0, seq, lamport, text],
    )
    .unwrap();
}

/// The schema version of the database in `dir`.
fn schema_version(dir: &Path) -> i64 {
    raw(dir)
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn a_version_1_database_opens_as_the_current_version_with_its_data_intact() {
    let dir = tempfile::tempdir().unwrap();
    let peer = id(&[0x42]);
    // A data folder of the first release, written by hand with its schema.
    {
        let conn = old_data_folder(dir.path(), 1);
        conn.execute(
            "INSERT INTO chats VALUES (?1, 'Peer', '10.0.0.2:30000', 1, 6, 7)",
            params![peer.0],
        )
        .unwrap();
        let rows = [
            (ME, 1, 1, "mine"),
            (peer, 1, 2, "theirs"),
            (ME, 2, 3, "waits"),
        ];
        for (author, seq, lamport, text) in rows {
            insert_old_message(&conn, peer, author, seq, lamport, text);
        }
    }
    let mut db = Database::open(dir.path()).unwrap();
    assert_eq!(schema_version(dir.path()), current_version());
    assert_eq!(db.identity().unwrap().unwrap().device, ME);
    let chats = db.list_chats().unwrap();
    assert_eq!(
        chats,
        [ChatSummary {
            peer,
            peer_name: "Peer".into(),
            last_address: Some("10.0.0.2:30000".into()),
            messages: 3,
            waiting: 1,
            unread: 0,
            last_activity_ms: Some(7),
            peer_key: None,
        }]
    );
    let texts: Vec<String> = db
        .history(peer)
        .unwrap()
        .into_iter()
        .map(|m| m.message.text)
        .collect();
    assert_eq!(texts, ["mine", "theirs", "waits"]);
    // The old chat has no key yet: its next connection pins one.
    assert_eq!(db.key_state(peer).unwrap(), Some((None, None)));
    db.open_chat(&hello(peer, "Peer"), Some([7; 32]))
        .map(opened)
        .unwrap();
    drop(db);
    let mut db = Database::open(dir.path()).unwrap();
    assert_eq!(db.key_state(peer).unwrap(), Some((Some([7; 32]), None)));
    assert_eq!(db.compose_live(peer, "next", 0).unwrap().seq, 3);
}

/// Version 6 keys messages by integers: a version-5 database, with a chat whose peer's id is
/// below this device's and one above it, messages of both authors sharing Lamport counters,
/// own messages waiting, counters, a pin and a delivery mark, opens with everything as it
/// was — the same display order (the author number follows the ids' order), the same
/// counts — and its chats go on numbering, deduplicating and paging.
#[test]
fn a_version_5_database_keeps_its_chats_and_their_order_under_integer_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (below, above) = (id(&[0x11]), id(&[0xf0]));
    assert!(below < ME && ME < above);
    {
        let conn = old_data_folder(dir.path(), 5);
        for (n, peer) in [below, above].into_iter().enumerate() {
            conn.execute(
                "INSERT INTO chats (peer, peer_name, delivered_up_to, created_at_ms,
                                    last_activity_ms, peer_key, message_count, unread)
                 VALUES (?1, ?2, 1, ?3, 9, ?4, 5, 2)",
                params![peer.0, format!("peer{n}"), n as i64, [n as u8; 32]],
            )
            .unwrap();
            // Both authors at Lamport 1 and 2: only the author decides the order there.
            let rows = [
                (ME, 1, 1, "mine 1"),
                (peer, 1, 1, "theirs 1"),
                (ME, 2, 2, "mine 2"),
                (peer, 2, 2, "theirs 2"),
            ];
            for (author, seq, lamport, text) in rows {
                insert_old_message(&conn, peer, author, seq, lamport, text);
            }
            conn.execute(
                "INSERT INTO waiting (chat, lamport, sent_at_ms, text, stored_at_ms)
                 VALUES (?1, 3, 100, 'waits', 8)",
                params![peer.0],
            )
            .unwrap();
        }
    }
    let mut db = Database::open(dir.path()).unwrap();
    assert_eq!(schema_version(dir.path()), current_version());
    for (n, peer) in [below, above].into_iter().enumerate() {
        // The core's order: (lamport, author id, seq).
        let history = db.history(peer).unwrap();
        let texts: Vec<&str> = history.iter().map(|m| m.message.text.as_str()).collect();
        let expected = if peer < ME {
            ["theirs 1", "mine 1", "theirs 2", "mine 2", "waits"]
        } else {
            ["mine 1", "theirs 1", "mine 2", "theirs 2", "waits"]
        };
        assert_eq!(texts, expected, "peer {n}");
        for m in &history {
            assert_eq!(
                m.mine,
                m.message.text != "theirs 1" && m.message.text != "theirs 2"
            );
            assert_eq!(m.author, if m.mine { ME } else { peer });
        }
        let keys: Vec<DisplayKey> = history.iter().map(StoredMessage::display_key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "peer {n}: pages follow the same order");
        assert_eq!(
            db.page(peer, Some(keys[2]), PageSide::Older, 10).unwrap(),
            history[..2],
            "peer {n}"
        );
        assert_eq!(
            db.page(peer, Some(keys[1]), PageSide::Newer, 10).unwrap(),
            history[2..],
            "peer {n}"
        );
        assert_eq!(db.chat_counts(peer).unwrap(), Some((5, 2)));
        assert_eq!(
            db.first_unread(peer).unwrap().map(|k| k.seq),
            Some(1),
            "peer {n}"
        );
        assert_eq!(
            db.key_state(peer).unwrap(),
            Some((Some([n as u8; 32]), None))
        );
        let resume = opened(db.open_chat(&hello(peer, "again"), None).unwrap());
        assert_eq!(
            resume,
            ChatResume {
                received_up_to: 2,
                last_own_seq: 2,
                unnumbered: 1,
                delivered_up_to: 1,
            }
        );
        // The waiting line is numbered next, then a new one; a received repeat is skipped.
        let sent = db
            .compose_batch(peer, &["next".to_owned()], 200, Some(0))
            .unwrap();
        assert_eq!(sent[0].seq, 4);
        db.persist_received(peer, &[msg(2, 2, "theirs 2"), msg(3, 9, "theirs 3")])
            .unwrap();
        assert_eq!(db.peer_messages(peer, 1, 9).unwrap().len(), 3);
        assert_eq!(seqs(&db.own_messages(peer, 1, 10).unwrap()), [1, 2, 3, 4]);
    }
    let chats = db.list_chats().unwrap();
    assert_eq!(chats.len(), 2);
    for chat in &chats {
        assert_eq!(chat.messages, 7, "{chat:?}");
        assert_eq!(
            chat.waiting, 3,
            "own seq 2, 3, 4 above the delivery mark 1: {chat:?}"
        );
    }
}

#[test]
fn a_key_is_pinned_at_first_contact_and_replaced_only_by_the_expected_fingerprint() {
    let (_dir, mut db) = fresh();
    let peer = id(&[0x42]);
    let (old, new, other) = ([9; 32], [10; 32], [11; 32]);
    let new_fp = PublicKey(new).fingerprint_bytes();
    assert!(matches!(
        db.expect_key(peer, new_fp),
        Err(StoreError::NoSuchChat { .. })
    ));
    // A temporary first contact writes nothing, pin included.
    let mut temporary = hello(peer, "Peer");
    temporary.temporary = true;
    assert_eq!(
        db.open_chat(&temporary, Some(old)).unwrap(),
        ChatOpening::Opened(ChatResume::default())
    );
    assert!(!db.chat_exists(peer).unwrap());
    // The first contact creates the chat and pins its key, in one call.
    db.open_chat(&hello(peer, "Peer"), Some(old))
        .map(opened)
        .unwrap();
    assert_eq!(db.list_chats().unwrap()[0].peer_key, Some(old));
    // A rename (the next hello) keeps the key; another key is refused and changes nothing,
    // the name included; a temporary session with another key is refused as well.
    db.open_chat(&hello(peer, "Pierre"), Some(old))
        .map(opened)
        .unwrap();
    let refused = ChatOpening::KeyMismatch { pinned: old };
    assert_eq!(
        db.open_chat(&hello(peer, "Mallory"), Some(new)).unwrap(),
        refused
    );
    assert_eq!(db.open_chat(&temporary, Some(new)).unwrap(), refused);
    assert_eq!(db.list_chats().unwrap()[0].peer_name, "Pierre");
    assert_eq!(db.key_state(peer).unwrap(), Some((Some(old), None)));

    // The user accepts the key with the fingerprint `new_fp`: from now on only that key.
    assert_eq!(
        db.expect_key(peer, new_fp).unwrap(),
        KeyExpectation::Expected { old }
    );
    assert_eq!(db.key_state(peer).unwrap(), Some((Some(old), Some(new_fp))));
    assert_eq!(
        db.open_chat(&hello(peer, "Pierre"), Some(old)).unwrap(),
        refused
    );
    assert_eq!(
        db.open_chat(&hello(peer, "Pierre"), Some(other)).unwrap(),
        refused
    );
    // A temporary session with the new key is let in but pins nothing.
    assert_eq!(
        db.open_chat(&temporary, Some(new)).unwrap(),
        ChatOpening::Opened(ChatResume::default())
    );
    assert_eq!(db.key_state(peer).unwrap(), Some((Some(old), Some(new_fp))));
    db.open_chat(&hello(peer, "Pierre"), Some(new))
        .map(opened)
        .unwrap();
    assert_eq!(db.key_state(peer).unwrap(), Some((Some(new), None)));
    assert_eq!(
        db.open_chat(&hello(peer, "Pierre"), Some(old)).unwrap(),
        ChatOpening::KeyMismatch { pinned: new }
    );
    // Naming the pinned key's own fingerprint changes nothing; a chat without a pin
    // takes no expectation (its next connection pins whatever it proves).
    assert_eq!(
        db.expect_key(peer, new_fp).unwrap(),
        KeyExpectation::AlreadyPinned { withdrawn: None }
    );
    // Naming it while another key is awaited puts the pinned key back, and says which
    // expectation went.
    let other_fp = [0x77; 16];
    assert!(matches!(
        db.expect_key(peer, other_fp).unwrap(),
        KeyExpectation::Expected { .. }
    ));
    assert_eq!(
        db.expect_key(peer, new_fp).unwrap(),
        KeyExpectation::AlreadyPinned {
            withdrawn: Some(other_fp)
        }
    );
    assert_eq!(db.key_state(peer).unwrap().unwrap().1, None);
    let unpinned = id(&[0x43]);
    db.open_chat(&hello(unpinned, "Plain"), None)
        .map(opened)
        .unwrap();
    assert_eq!(
        db.expect_key(unpinned, new_fp).unwrap(),
        KeyExpectation::NothingPinned
    );
    assert_eq!(db.key_state(unpinned).unwrap(), Some((None, None)));
    // A fingerprint of the wrong length cannot be stored.
    let short = db.conn.execute(
        "UPDATE chats SET expected_fingerprint = ?2 WHERE peer = ?1",
        params![peer.0, [1u8; 15]],
    );
    assert!(short.is_err());
    // A key of the wrong length cannot be stored.
    let short = db.conn.execute(
        "UPDATE chats SET peer_key = ?2 WHERE peer = ?1",
        params![peer.0, [1u8; 31]],
    );
    assert!(short.is_err());
}

/// Two handles (as two processes on one data folder) open a first contact with the same
/// device id and two different keys at the same instant, many times: each time exactly
/// one key is pinned and the other opening is refused, whichever commits first.
#[test]
fn two_first_contacts_racing_with_two_keys_pin_exactly_one() {
    const ROUNDS: u8 = 20;
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = Database::open(dir.path()).unwrap();
        db.create_identity(ME, "Me").unwrap();
    }
    let handles: Vec<Database> = (0..2)
        .map(|_| Database::open(dir.path()).unwrap())
        .collect();
    let handles: Vec<_> = handles
        .into_iter()
        .map(|db| Arc::new(std::sync::Mutex::new(db)))
        .collect();
    for round in 0..ROUNDS {
        let peer = id(&[0x60, round]);
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(racer, db)| {
                let db = Arc::clone(db);
                let barrier = Arc::clone(&barrier);
                let key = [u8::try_from(racer).unwrap() + 1; 32];
                std::thread::spawn(move || {
                    let mut db = db.lock().unwrap();
                    barrier.wait();
                    let opening = db.open_chat(&hello(peer, "Peer"), Some(key)).unwrap();
                    (key, opening)
                })
            })
            .collect();
        let results: Vec<([u8; 32], ChatOpening)> =
            racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners: Vec<[u8; 32]> = results
            .iter()
            .filter(|(_, o)| matches!(o, ChatOpening::Opened(_)))
            .map(|(key, _)| *key)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let winner = winners[0];
        let loser = results.iter().find(|(key, _)| *key != winner).unwrap();
        assert_eq!(
            loser.1,
            ChatOpening::KeyMismatch { pinned: winner },
            "round {round}"
        );
        let db = handles[0].lock().unwrap();
        assert_eq!(
            db.key_state(peer).unwrap(),
            Some((Some(winner), None)),
            "round {round}"
        );
    }
}

#[test]
fn persisting_the_same_batch_twice_stores_it_once() {
    let (_dir, mut db) = fresh();
    let peer = id(&[0x42]);
    db.open_chat(&hello(peer, "Peer"), None)
        .map(opened)
        .unwrap();
    let batch = [msg(1, 1, "a"), msg(2, 2, "b"), msg(3, 3, "c")];
    db.persist_received(peer, &batch).unwrap();
    db.persist_received(peer, &batch).unwrap();
    assert_eq!(db.history(peer).unwrap().len(), 3);
    assert_eq!(db.list_chats().unwrap()[0].messages, 3);
    // An overlapping batch adds only what is new.
    db.persist_received(peer, &[msg(3, 3, "c"), msg(4, 4, "d")])
        .unwrap();
    let received: Vec<u64> = db
        .history(peer)
        .unwrap()
        .iter()
        .map(|s| s.message.seq)
        .collect();
    assert_eq!(received, [1, 2, 3, 4]);
    assert_eq!(
        db.open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap()
            .received_up_to,
        4
    );
}

/// Batches go in statements of 64, 16 and 1 rows: batches of every length around those sizes
/// store every message once, in order, with its text, and count it.
#[test]
fn batches_of_any_length_are_stored_whole_in_order_and_once() {
    let (_dir, mut db) = fresh();
    let peer = id(&[0x42]);
    db.open_chat(&hello(peer, "bob"), None).unwrap();
    let mut own: u64 = 0;
    let mut theirs: u64 = 0;
    // Around every statement size (64, 16, 1 rows) and their sums.
    for n in [
        1, 15, 16, 17, 31, 32, 33, 40, 63, 64, 65, 79, 80, 81, 95, 128, 143,
    ] {
        let texts: Vec<String> = (0..n).map(|i| format!("mine {}", own + i + 1)).collect();
        let sent = db.compose_batch(peer, &texts, 7, Some(0)).unwrap();
        assert_eq!(seqs(&sent), (own + 1..=own + n).collect::<Vec<_>>());
        own += n;
        // The peer's batch overlaps what is stored by a few: those are skipped.
        let from = theirs.saturating_sub(3) + 1;
        let batch: Vec<Message> = (from..=theirs + n)
            .map(|seq| msg(seq, seq, &format!("theirs {seq}")))
            .collect();
        db.persist_received(peer, &batch).unwrap();
        theirs += n;
    }
    let mine = db.own_messages(peer, 1, 1_000).unwrap();
    assert_eq!(seqs(&mine), (1..=own).collect::<Vec<_>>());
    assert!(mine.iter().all(|m| m.text == format!("mine {}", m.seq)));
    let received = db.peer_messages(peer, 1, 1_000).unwrap();
    assert_eq!(seqs(&received), (1..=theirs).collect::<Vec<_>>());
    assert!(received
        .iter()
        .all(|m| m.text == format!("theirs {}", m.seq)));
    assert_eq!(db.chat_counts(peer).unwrap(), Some((own + theirs, theirs)));
    // The same batch again: nothing more.
    let again: Vec<Message> = (1..=theirs).map(|seq| msg(seq, seq, "other")).collect();
    db.persist_received(peer, &again).unwrap();
    assert_eq!(db.peer_messages(peer, 1, 1_000).unwrap(), received);
    assert_eq!(db.chat_counts(peer).unwrap(), Some((own + theirs, theirs)));
}

#[test]
fn find_chat_takes_unique_prefixes_in_any_case_with_or_without_hyphens() {
    let (_dir, mut db) = fresh();
    let a = id(&[0x12, 0x34, 0x56, 0x78]);
    let b = id(&[0x12, 0x34, 0xab, 0xcd, 0xef]);
    let c = id(&[0xff, 0xff]);
    db.open_chat(&hello(a, "Ann"), None).map(opened).unwrap();
    db.open_chat(&hello(b, "Ben"), None).map(opened).unwrap();
    db.open_chat(&hello(c, "Cid"), None).map(opened).unwrap();

    assert_eq!(db.find_chat("12345").unwrap(), a);
    assert_eq!(db.find_chat("1234AB").unwrap(), b);
    assert_eq!(db.find_chat("1234abcd-ef").unwrap(), b);
    assert_eq!(db.find_chat("1234ABCDEF").unwrap(), b);
    assert_eq!(db.find_chat(" ff ").unwrap(), c);
    assert_eq!(db.find_chat(&a.to_string()).unwrap(), a);
    assert_eq!(
        db.find_chat(&a.to_string().replace('-', "").to_uppercase())
            .unwrap(),
        a
    );

    match db.find_chat("1234") {
        Err(StoreError::AmbiguousChat { prefix, candidates }) => {
            assert_eq!(prefix, "1234");
            assert_eq!(
                candidates,
                [
                    ChatCandidate {
                        peer: a,
                        peer_name: "Ann".into()
                    },
                    ChatCandidate {
                        peer: b,
                        peer_name: "Ben".into()
                    }
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    let text = db.find_chat("1234").unwrap_err().to_string();
    assert!(
        text.contains(&a.to_string()) && text.contains("(Ben)"),
        "{text}"
    );

    assert!(matches!(
        db.find_chat("9"),
        Err(StoreError::NoSuchChat { prefix }) if prefix == "9"
    ));
    // A peer's name, in any case, whole or its start (as `/to` takes it): the id first.
    assert_eq!(db.find_chat("ben").unwrap(), b);
    assert_eq!(db.find_chat("AN").unwrap(), a);
    assert_eq!(
        db.find_chat("a").unwrap(),
        a,
        "no id starts with a: the name does"
    );
    for bad in ["", "-", "xyz", "12 34", &"1".repeat(33)] {
        assert!(
            matches!(db.find_chat(bad), Err(StoreError::InvalidPrefix { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    drop(Database::open(dir.path()).unwrap());
    raw(dir.path())
        .pragma_update(None, "user_version", current_version() + 1)
        .unwrap();
    match Database::open(dir.path()) {
        Err(e @ StoreError::NewerSchema { .. }) => {
            let text = e.to_string();
            assert!(text.contains("socketfalco.db"), "{text}");
            let newer = format!("version {}", current_version() + 1);
            assert!(text.contains(&newer), "{text}");
            let StoreError::NewerSchema {
                found, supported, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(
                (found, supported),
                (current_version() + 1, current_version())
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(schema_version(dir.path()), current_version() + 1);
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    raw(dir.path())
        .pragma_update(None, "application_id", 42)
        .unwrap();
    assert!(matches!(
        Database::open(dir.path()),
        Err(StoreError::NotSocketFalco {
            application_id: 42,
            ..
        })
    ));
}

/// The log file's size, 0 when it does not exist.
fn log_size(db: &Database) -> u64 {
    std::fs::metadata(db.log_path()).map_or(0, |m| m.len())
}

fn page_size(db: &Database) -> u64 {
    let page: i64 = db
        .conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    page.try_into().unwrap()
}

fn message_count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_handle_for_lines_grows_the_log_which_is_then_overwritten_not_grown() {
    let (dir, mut db) = fresh();
    let page = page_size(&db);
    db.reserve_log();
    // The log holds one checkpoint cycle (1,000 pages) from the start…
    let grown = log_size(&db);
    assert!(grown >= 1_000 * page, "log of {grown} bytes");
    // …written by a transaction that was rolled back: the database has none of it (a new
    // database is a few dozen pages; the reserve alone would be a thousand).
    let (tables, pages): (i64, i64) = db
        .conn
        .query_row(
            "SELECT (SELECT count(*) FROM sqlite_schema WHERE name = 'log_reserve'),
                    (SELECT page_count FROM pragma_page_count)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(tables, 0);
    assert!(pages < 100, "{pages} pages");
    // Commits overwrite the log instead of growing it: far more of them than it has room
    // for, so it was checkpointed and started again from its beginning.
    let peer = id(&[1]);
    db.open_chat(&hello(peer, "Bob"), None).unwrap();
    for seq in 1..=600 {
        db.persist_received(
            peer,
            &[msg(seq, seq, "a line of about forty bytes, as typed")],
        )
        .unwrap();
        db.compose_live(peer, "and an answer", 0).unwrap();
    }
    assert_eq!(log_size(&db), grown);
    assert_eq!(message_count(&db.conn), 1_200);
    // The last close deletes the log, as SQLite always does, so the database file alone
    // holds everything; the next handle for lines grows a new one.
    drop(db);
    assert!(!dir.path().join(format!("{DB_FILE_NAME}-wal")).exists());
    let mut db = Database::open(dir.path()).unwrap();
    db.reserve_log();
    assert!(log_size(&db) >= 1_000 * page);
    assert_eq!(message_count(&db.conn), 1_200);
}

#[test]
fn an_opening_to_read_leaves_the_log_alone() {
    // `-ls`, a rename, a view: they commit once if at all, and a grown log would only cost
    // them the time and the writes.
    let (dir, db) = fresh();
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    let page = page_size(&db);
    let size = log_size(&db);
    assert!(size < 100 * page, "log of {size} bytes");
    // Once a handle for lines has grown it, another opening finds it grown (one log per
    // database, shared while any handle is open) and leaves it so.
    let mut session = Database::open(dir.path()).unwrap();
    session.reserve_log();
    let grown = log_size(&session);
    assert!(grown >= 1_000 * page);
    let reader = Database::open(dir.path()).unwrap();
    assert_eq!(log_size(&reader), grown);
    drop((db, reader));
}

#[test]
fn a_database_file_put_back_alone_from_an_older_copy_opens_whole() {
    // A backup of the database file alone, taken while no program ran, is put back while
    // the log of a later session… would be there if the log were kept across closes: the
    // older file and the newer log would open as a mix of the two. It is deleted on close,
    // so the older file opens whole, as it was.
    let (dir, mut db) = fresh();
    let peer = id(&[1]);
    db.open_chat(&hello(peer, "Bob"), None).unwrap();
    for seq in 1..=50 {
        db.persist_received(peer, &[msg(seq, seq, "before the backup")])
            .unwrap();
    }
    drop(db);
    let file = dir.path().join(DB_FILE_NAME);
    let backup = dir.path().join("backup.db");
    std::fs::copy(&file, &backup).unwrap();
    let mut db = Database::open(dir.path()).unwrap();
    for seq in 51..=400 {
        db.persist_received(
            peer,
            &[msg(
                seq,
                seq,
                "after the backup, a longer line that takes more pages",
            )],
        )
        .unwrap();
    }
    drop(db);
    std::fs::copy(&backup, &file).unwrap();
    let db = Database::open(dir.path()).unwrap();
    let check: String = db
        .conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert_eq!(message_count(&db.conn), 50);
}

#[test]
fn the_pragmas_are_in_force() {
    let (_dir, db) = fresh();
    let text = |pragma: &str| -> String {
        db.conn
            .pragma_query_value(None, pragma, |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| match v {
                rusqlite::types::Value::Text(t) => t,
                rusqlite::types::Value::Integer(i) => i.to_string(),
                other => format!("{other:?}"),
            })
            .unwrap()
    };
    assert_eq!(text("journal_mode"), "wal");
    assert_eq!(text("synchronous"), "2"); // FULL
    assert_eq!(text("foreign_keys"), "1");
    assert_eq!(text("busy_timeout"), "10000");
    assert_eq!(text("user_version"), current_version().to_string());
    assert_eq!(text("application_id"), APPLICATION_ID.to_string());
    // The foreign key is enforced: no message without its chat.
    let orphan = db.conn.execute(
        "INSERT INTO messages VALUES (?1, ?2, 1, 1, 0, 'x', 0)",
        params![[1u8; 16], ME.0],
    );
    assert!(orphan.is_err());
    // STRICT and the length checks: a 15-byte id is refused.
    let short = db.conn.execute(
        "INSERT INTO chats (peer, peer_name, created_at_ms) VALUES (?1, '', 0)",
        params![[1u8; 15]],
    );
    assert!(short.is_err());
}

#[test]
fn names_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Database::open(dir.path()).unwrap();
    assert!(matches!(
        db.rename("Bob"),
        Err(StoreError::NoIdentity { path: Some(_) })
    ));
    assert!(matches!(
        db.create_identity(ME, "A"),
        Err(StoreError::InvalidName(NameError::TooShort))
    ));
    assert_eq!(db.identity().unwrap(), None);
    db.create_identity(ME, "Alice").unwrap();
    let cases = [
        ("A", NameError::TooShort),
        ("ABCDEFGHIJKLMNOP", NameError::TooLong),
        ("Bo\nb", NameError::ControlCharacter),
        ("Bob\x1b[2J", NameError::ControlCharacter),
        (" Bob", NameError::SurroundingSpace),
    ];
    for (name, why) in cases {
        match db.rename(name) {
            Err(StoreError::InvalidName(e)) => assert_eq!(e, why, "{name:?}"),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    assert_eq!(db.identity().unwrap().unwrap().name, "Alice");
    assert_eq!(db.rename("ÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉ").unwrap(), "Alice"); // 15 characters
    assert_eq!(db.rename("Bob").unwrap(), "ÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉ");
    assert_eq!(db.identity().unwrap().unwrap().name, "Bob");
    // A peer's name is checked too before it is stored.
    let peer = id(&[0x42]);
    assert!(matches!(
        db.open_chat(&hello(peer, "x"), None).map(opened),
        Err(StoreError::InvalidName(NameError::TooShort))
    ));
    assert!(!db.chat_exists(peer).unwrap());
}

#[test]
fn counters_above_i64_max_are_refused_not_wrapped() {
    let (_dir, mut db) = fresh();
    let peer = id(&[0x42]);
    db.open_chat(&hello(peer, "Peer"), None)
        .map(opened)
        .unwrap();
    let too_big = u64::try_from(i64::MAX).unwrap() + 1;

    assert!(matches!(
        db.mark_delivered(peer, u64::MAX),
        Err(StoreError::OutOfRange {
            value: u64::MAX,
            ..
        })
    ));
    // The whole batch is refused: its valid first message is not stored either.
    assert!(matches!(
        db.persist_received(peer, &[msg(1, 1, "ok"), msg(too_big, 2, "big")]),
        Err(StoreError::OutOfRange { what: "sequence number", value }) if value == too_big
    ));
    assert_eq!(db.history(peer).unwrap(), []);

    // i64::MAX itself is storable (the core's frames never carry more than 2^53); the
    // compose after it does not wrap: Lamport counters saturate at the protocol's limit.
    db.persist_received(peer, &[msg_at(1, too_big - 1, 0, "max")])
        .unwrap();
    let next = db.compose_live(peer, "next", 0).unwrap();
    assert_eq!(next.lamport, socketfalco_core::limits::MAX_COUNTER);
    assert_eq!(db.own_messages(peer, 0, 10).unwrap(), [next]);
    assert_eq!(db.own_messages(peer, u64::MAX, 10).unwrap(), []);
}

#[test]
fn a_returned_message_replaces_its_waiting_twin_and_numbering_follows_the_peer() {
    let (_dir, mut db) = fresh();
    let peer = id(&[0x42]);
    let waiting = db.compose(peer, "written offline", 5).unwrap();
    let other = db.compose(peer, "another", 6).unwrap();
    assert_eq!(
        (waiting.seq, other.seq),
        (0, 0),
        "no sync yet: not numbered"
    );
    assert_eq!(db.list_chats().unwrap()[0].waiting, 2);
    let resume = db
        .open_chat(&hello(peer, "Peer"), None)
        .map(opened)
        .unwrap();
    assert_eq!((resume.last_own_seq, resume.unnumbered), (0, 2));
    // The peer sends back our message 1: the first waiting write, numbered before our
    // store went back in time.
    let returned = Message {
        seq: 1,
        ..waiting.clone()
    };
    db.restore_own(peer, std::slice::from_ref(&returned))
        .unwrap();
    db.restore_own(peer, std::slice::from_ref(&returned))
        .unwrap(); // idempotent
    assert_eq!(db.own_messages(peer, 1, 10).unwrap(), [returned]);
    // The peer holds up to 4 of ours (say): the other waiting write is numbered after.
    assert_eq!(db.number_waiting(peer, 4).unwrap(), 1);
    assert_eq!(db.number_waiting(peer, 4).unwrap(), 0);
    assert_eq!(seqs(&db.own_messages(peer, 1, 10).unwrap()), [1, 5]);
    db.set_delivered(peer, 5).unwrap();
    db.set_delivered(peer, 1).unwrap(); // the sync may lower it
    let chat = &db.list_chats().unwrap()[0];
    assert_eq!((chat.messages, chat.waiting), (2, 1));
    let delivered: Vec<bool> = db
        .history(peer)
        .unwrap()
        .iter()
        .map(|s| s.delivered)
        .collect();
    assert_eq!(delivered, [true, false]);
}

#[test]
fn message_and_unread_counts_are_kept_with_the_messages() {
    let (_dir, mut db) = fresh();
    let peer = id(&[0x42]);
    db.open_chat(&hello(peer, "Peer"), None)
        .map(opened)
        .unwrap();
    let counts = |db: &Database| {
        let chats = db.list_chats().unwrap();
        let c = chats.iter().find(|c| c.peer == peer).unwrap();
        (c.messages, c.unread, c.waiting)
    };
    let waiting = db.compose(peer, "offline", 7).unwrap();
    db.compose_live(peer, "live", 8).unwrap();
    assert_eq!(counts(&db), (2, 0, 2));
    db.persist_received(peer, &[msg(1, 1, "a"), msg(2, 2, "b")])
        .unwrap();
    db.persist_received(peer, &[msg(2, 2, "b again"), msg(3, 3, "c")])
        .unwrap();
    assert_eq!(
        counts(&db),
        (5, 3, 2),
        "a re-sent message is not counted twice"
    );
    db.mark_read(peer).unwrap();
    assert_eq!(counts(&db), (5, 0, 2));
    db.number_waiting(peer, 1).unwrap();
    assert_eq!(counts(&db), (5, 0, 2), "numbering moves, never counts");
    db.set_delivered(peer, 3).unwrap();
    assert_eq!(counts(&db).2, 0);
    // Our own message 4 comes back from the peer while its twin still waits here.
    let other = id(&[0x43]);
    let twin = db.compose(other, "twin", 9).unwrap();
    let returned = Message { seq: 1, ..twin };
    db.restore_own(other, &[returned, msg_at(2, 5, 10, "lost")])
        .unwrap();
    let other_chat = db
        .list_chats()
        .unwrap()
        .into_iter()
        .find(|c| c.peer == other)
        .unwrap();
    assert_eq!(other_chat.messages, 2, "the twin counted once");
    let _ = waiting;
    // The counts are what counting the history gives.
    let history = db.history(peer).unwrap().len() as u64;
    assert_eq!(counts(&db).0, history);
}

#[test]
fn compose_needs_an_identity_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Database::open(dir.path()).unwrap();
    let err = db.compose_live(id(&[0x42]), "hi", 0).unwrap_err();
    assert!(matches!(err, StoreError::NoIdentity { .. }), "{err:?}");
    assert!(err.to_string().contains("socketfalco.db"), "{err}");
    // An identity created by another process is picked up without reopening.
    Database::open(dir.path())
        .unwrap()
        .create_identity(ME, "Me")
        .unwrap();
    assert_eq!(db.compose_live(id(&[0x42]), "hi", 0).unwrap().seq, 1);
}

#[test]
fn compose_creates_an_unknown_chat_with_an_empty_name() {
    let (_dir, mut db) = fresh();
    let peer = id(&[0x42]);
    assert!(matches!(
        db.compose_live(peer, "", 0),
        Err(StoreError::InvalidText(TextError::Empty))
    ));
    assert!(!db.chat_exists(peer).unwrap());
    db.compose_live(peer, "hi", 0).unwrap();
    let chats = db.list_chats().unwrap();
    assert_eq!(chats.len(), 1);
    assert_eq!(chats[0].peer_name, "");
    assert_eq!((chats[0].messages, chats[0].waiting), (1, 1));
}

#[test]
fn the_chat_list_is_ordered_by_last_activity() {
    let (_dir, mut db) = fresh();
    let (a, b, c) = (id(&[0x0a]), id(&[0x0b]), id(&[0x0c]));
    db.clock = || 100;
    db.open_chat(&hello(a, "Ann"), None).map(opened).unwrap();
    db.open_chat(&hello(b, "Ben"), None).map(opened).unwrap();
    db.clock = || 150;
    db.open_chat(&hello(c, "Cid"), None).map(opened).unwrap(); // no message yet: last
    db.clock = || 200;
    db.compose_live(a, "to Ann", 0).unwrap();
    db.clock = || 300;
    db.persist_received(b, &[msg(1, 1, "from Ben")]).unwrap();
    db.clock = || 400;
    db.persist_received(b, &[msg(1, 1, "from Ben")]).unwrap(); // nothing new: no activity
    db.mark_delivered(a, 1).unwrap(); // not an activity either
    let order: Vec<(DeviceId, Option<i64>)> = db
        .list_chats()
        .unwrap()
        .iter()
        .map(|c| (c.peer, c.last_activity_ms))
        .collect();
    assert_eq!(order, [(b, Some(300)), (a, Some(200)), (c, None)]);
}

#[test]
fn pages_in_both_directions_are_the_history_cut_at_a_key() {
    let (_dir, mut db) = fresh();
    let peer = id(&[0x42]);
    db.open_chat(&hello(peer, "Peer"), None)
        .map(opened)
        .unwrap();
    let batch: Vec<Message> = (1..=40).map(|i| msg(i, i * 2, "p")).collect();
    db.persist_received(peer, &batch).unwrap();
    db.compose_live(peer, "numbered", 5).unwrap();
    db.compose(peer, "waiting one", 6).unwrap();
    db.compose(peer, "waiting two", 7).unwrap();
    let all: Vec<DisplayKey> = db
        .history(peer)
        .unwrap()
        .iter()
        .map(StoredMessage::display_key)
        .collect();
    assert_eq!(all.len(), 43);
    let keys = |page: Vec<StoredMessage>| -> Vec<DisplayKey> {
        page.iter().map(StoredMessage::display_key).collect()
    };
    // The newest and the oldest pages.
    assert_eq!(
        keys(db.page(peer, None, PageSide::Older, 5).unwrap()),
        all[38..]
    );
    assert_eq!(
        keys(db.page(peer, None, PageSide::Newer, 5).unwrap()),
        all[..5]
    );
    // Walking back from the end, then forward from the start, gives every message once.
    let mut back = Vec::new();
    let mut from = None;
    loop {
        let page = keys(db.page(peer, from, PageSide::Older, 7).unwrap());
        let Some(&first) = page.first() else { break };
        back.splice(0..0, page);
        from = Some(first);
    }
    assert_eq!(back, all);
    let mut forth = Vec::new();
    let mut from = None;
    loop {
        let page = keys(db.page(peer, from, PageSide::Newer, 6).unwrap());
        let Some(&last) = page.last() else { break };
        forth.extend(page);
        from = Some(last);
    }
    assert_eq!(forth, all);
    // A page next to a waiting message, both ways.
    let waiting = all[42];
    assert_eq!(waiting.seq, 0);
    assert_eq!(
        keys(db.page(peer, Some(waiting), PageSide::Older, 2).unwrap()),
        all[40..42]
    );
    assert!(db
        .page(peer, Some(waiting), PageSide::Newer, 2)
        .unwrap()
        .is_empty());
    // The stored messages are read on the display index, never sorted.
    let plan: Vec<String> = db
        .conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT author, seq FROM messages
              WHERE chat = ?1 AND (lamport, author, seq) < (?2, ?3, ?4)
              ORDER BY lamport DESC, author DESC, seq DESC LIMIT 10",
        )
        .unwrap()
        .query_map(params![peer.0, 10, peer.0, 3], |row| {
            row.get::<_, String>(3)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan.iter().any(|p| p.contains("messages_display")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
}

#[test]
fn the_first_unread_line_is_the_oldest_of_the_newest_unread() {
    let (_dir, mut db) = fresh();
    let peer = id(&[0x42]);
    db.open_chat(&hello(peer, "Peer"), None)
        .map(opened)
        .unwrap();
    assert_eq!(db.first_unread(peer).unwrap(), None);
    db.persist_received(peer, &[msg(1, 1, "a"), msg(2, 2, "b")])
        .unwrap();
    db.mark_read(peer).unwrap();
    assert_eq!(db.first_unread(peer).unwrap(), None);
    db.compose_live(peer, "mine", 5).unwrap();
    db.persist_received(peer, &[msg(3, 4, "c"), msg(4, 5, "d")])
        .unwrap();
    assert_eq!(db.chat_counts(peer).unwrap(), Some((5, 2)));
    assert_eq!(
        db.first_unread(peer).unwrap(),
        Some(DisplayKey {
            lamport: 4,
            author: peer,
            seq: 3
        })
    );
    assert_eq!(db.chat_counts(id(&[0x99])).unwrap(), None);
}

/// A cached statement is compiled once: binding new values (another chat, the next batch)
/// never makes SQLite re-prepare it (`SQLITE_DBCONFIG_ENABLE_QPSG`, set in `configure`),
/// and the cache holds every statement of a group, transaction controls included. Without
/// them the `max(seq)` query of every persisted batch was re-compiled at every run, and the
/// savepoints parsed again for every request.
#[test]
fn the_storage_path_never_re_prepares_its_statements() {
    use rusqlite::StatementStatus;
    let (_dir, mut db) = fresh();
    let (bob, carol) = (id(&[0x42]), id(&[0x43]));
    db.open_chat(&hello(bob, "bob"), None).unwrap();
    db.open_chat(&hello(carol, "carol"), None).unwrap();
    let mut seq = 0;
    for _ in 0..5 {
        db.begin_group().unwrap();
        for peer in [bob, carol, bob] {
            let batch: Vec<Message> = (0..4)
                .map(|_| {
                    seq += 1;
                    msg(seq, seq, "x")
                })
                .collect();
            db.persist_received(peer, &batch).unwrap();
            db.compose_live(peer, "mine", 1_000).unwrap();
        }
        db.commit_group().unwrap();
    }
    for sql in [
        "SELECT max(seq) FROM messages WHERE chat = ?1 AND author = ?2",
        super::queries::ADD_MESSAGES_SQL,
        super::queries::CHAT_TAIL_SQL,
        "SELECT id FROM chats WHERE peer = ?1",
        super::queries::cached_insert_sql(super::queries::OnConflict::Fail, 2),
        super::queries::cached_insert_sql(super::queries::OnConflict::Ignore, 2),
        // The transaction controls are cached too, and none is evicted from the cache.
        "SAVEPOINT request",
        "RELEASE request",
        "BEGIN IMMEDIATE",
        "COMMIT",
    ] {
        let statement = db.conn.prepare_cached(sql).unwrap();
        let runs = statement.get_status(StatementStatus::Run);
        let reprepared = statement.get_status(StatementStatus::RePrepare);
        assert!(
            runs >= 5,
            "{runs} runs of {sql}: not kept in the statement cache"
        );
        assert_eq!(
            reprepared, 0,
            "{sql} was re-prepared {reprepared} times in {runs} runs"
        );
    }
}

/// The statements every message and every sync run cost the same in a chat of any length:
/// with 2,000 lines written offline and 2,000 received, each runs in a few dozen of SQLite's
/// virtual-machine steps (a seek on an index), not one or more per row of the chat. Without
/// `waiting_lamport`, the highest waiting Lamport counter read every line waiting, once per
/// line written; without `waiting_sent`, the twin of a returned message did, once per
/// message returned.
#[test]
fn the_hot_statements_cost_the_same_in_a_chat_of_any_length() {
    use rusqlite::StatementStatus;
    const ROWS: u64 = 2_000;
    let (_dir, mut db) = fresh();
    let peer = id(&[0x42]);
    db.open_chat(&hello(peer, "bob"), None).unwrap();
    let offline: Vec<String> = (0..ROWS).map(|i| format!("offline {i}")).collect();
    db.compose_batch(peer, &offline, 1, None).unwrap();
    let received: Vec<Message> = (1..=ROWS).map(|i| msg(i, i, "x")).collect();
    db.persist_received(peer, &received).unwrap();
    let chat: i64 = db
        .conn
        .query_row("SELECT id FROM chats WHERE peer = ?1", [peer.0], |r| {
            r.get(0)
        })
        .unwrap();
    let at = |sql: &str, params: &[i64]| -> i32 {
        let mut statement = db.conn.prepare(sql).unwrap();
        let mut rows = statement
            .query(rusqlite::params_from_iter(params.iter()))
            .unwrap();
        while rows.next().unwrap().is_some() {}
        drop(rows);
        statement.get_status(StatementStatus::VmStep)
    };
    let peer_author = i64::from(peer > ME);
    for (sql, params) in [
        (
            "SELECT max(seq) FROM messages WHERE chat = ?1 AND author = ?2",
            vec![chat, peer_author],
        ),
        (
            "SELECT seq, lamport, sent_at_ms, text FROM messages
              WHERE chat = ?1 AND author = ?2 AND seq BETWEEN ?3 AND ?4 ORDER BY seq",
            vec![chat, peer_author, 1_000, 1_002],
        ),
        (super::queries::ADD_MESSAGES_SQL, vec![chat, 0, 0, 5]),
        // Where a line typed in a live session takes its numbers from.
        (super::queries::CHAT_TAIL_SQL, vec![chat, 1 - peer_author]),
        // The waiting twin of a message returned after a restore (none here).
        (
            "SELECT min(position) FROM waiting WHERE chat = ?1 AND sent_at_ms = ?2 AND text = 'x'",
            vec![chat, 2],
        ),
    ] {
        let steps = at(sql, &params);
        assert!(
            steps < 100,
            "{steps} steps for {sql}: it reads the chat instead of seeking"
        );
    }
}

#[test]
fn a_database_that_cannot_be_opened_or_written_or_grown_says_what_to_do() {
    let error = |code| StoreError::Sqlite {
        path: Some("/data/socketfalco.db".into()),
        source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
    };
    for code in [
        rusqlite::ffi::SQLITE_CANTOPEN,
        rusqlite::ffi::SQLITE_READONLY,
    ] {
        let said = error(code).to_string();
        assert!(said.contains("must be writable by this user"), "{said}");
    }
    let said = error(rusqlite::ffi::SQLITE_FULL).to_string();
    assert!(said.contains("free some space"), "{said}");
    let said = error(rusqlite::ffi::SQLITE_CORRUPT).to_string();
    assert!(
        !said.contains('('),
        "no advice where there is none to give: {said}"
    );
}

/// The database holds private conversations: readable by its owner alone, with its log,
/// even in a folder the user made open to others; one found open to others is narrowed.
#[cfg(unix)]
#[test]
fn the_database_is_readable_by_its_owner_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut db = Database::open(dir.path()).unwrap();
    db.create_identity(ME, "me").unwrap();
    let file = dir.path().join(DB_FILE_NAME);
    let mut wal = file.clone().into_os_string();
    wal.push("-wal");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(Path::new(&wal)), 0o600);
    drop(db);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(mode(&file), 0o600, "narrowed on opening");
    drop(db);
}

/// A chat its connection opened but never established is forgotten with its pin; one that
/// is older than that connection, or holds a line, is not.
#[test]
fn only_a_new_empty_chat_is_forgotten_when_its_connection_never_opened() {
    let (_dir, mut db) = fresh();
    let (new, old, written) = (id(&[0x51]), id(&[0x52]), id(&[0x53]));
    db.open_chat(&hello(old, "Old"), None).unwrap();
    let since = socketfalco_transport::clock::wall_clock_ms() + 1;
    std::thread::sleep(std::time::Duration::from_millis(5));
    db.open_chat(&hello(new, "New"), None).unwrap();
    db.open_chat(&hello(written, "Written"), None).unwrap();
    db.compose(written, "waiting for them", since + 10).unwrap();
    assert!(!db.forget_unopened_chat(old, since).unwrap(), "older");
    assert!(
        !db.forget_unopened_chat(written, since).unwrap(),
        "holds a line"
    );
    assert!(db.forget_unopened_chat(new, since).unwrap());
    assert!(!db.chat_exists(new).unwrap());
    assert!(db.chat_exists(old).unwrap() && db.chat_exists(written).unwrap());
    // Its next first contact pins again, as new.
    db.open_chat(&hello(new, "New"), None).unwrap();
    assert!(db.chat_exists(new).unwrap());
    // Opened by a second connection meanwhile (another process on the same folder): kept.
    db.open_chat(&hello(new, "New"), None).unwrap();
    assert!(
        !db.forget_unopened_chat(new, since).unwrap(),
        "opened twice"
    );
    assert!(db.chat_exists(new).unwrap());
}

#[test]
fn contacts_are_the_pinned_peers_this_device_wrote_to() {
    let (_dir, mut db) = fresh();
    // Ids on both sides of this device's (0xaa): the author bit of "own" differs.
    let (wrote_low, wrote_high) = (id(&[0x42]), id(&[0xcc]));
    let (waiting, only_theirs, unpinned) = (id(&[0x43]), id(&[0xcd]), id(&[0x44]));
    for (peer, key) in [
        (wrote_low, Some([1; 32])),
        (wrote_high, Some([2; 32])),
        (waiting, Some([3; 32])),
        (only_theirs, Some([4; 32])),
        (unpinned, None),
    ] {
        db.open_chat(&hello(peer, "Peer"), key).unwrap();
    }
    assert_eq!(db.contacts().unwrap(), []);
    for peer in [wrote_low, wrote_high, unpinned] {
        db.compose_live(peer, "hello", 10).unwrap();
    }
    // Written while the peer was away: stored unnumbered, to wait.
    db.compose_batch(waiting, &["later".to_owned()], 20, None)
        .unwrap();
    db.persist_received(only_theirs, &[msg(1, 1, "hi")])
        .unwrap();
    let mut contacts = db.contacts().unwrap();
    contacts.sort_by_key(|(d, _)| d.0);
    assert_eq!(
        contacts,
        [
            (wrote_low, PublicKey([1; 32])),
            (waiting, PublicKey([3; 32])),
            (wrote_high, PublicKey([2; 32])),
        ]
    );
}
