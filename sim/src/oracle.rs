//! The oracle: what the users did and were told, recorded independently of the code under
//! test, and the invariants that hold the stores to it.
//!
//! The oracle never asks the core what *should* be. It keeps its own record of every write
//! each user made (by its text: the simulator's texts are unique, so a text *is* a write),
//! of how each author numbered its writes (the **numbering history**, `seq → message`, which
//! survives the author's restores: it is what the author's store said when it numbered), the
//! highest "delivered" each sender was told, and what each user was shown. Protocol 2
//! numbers a message written offline only later, in a session (docs/PROTOCOL.md §2.1), so
//! the compose call's `seq` identifies nothing; the invariants are about writes and ids:
//!
//! - **own-mismatch** — a device's own numbered messages are exactly `1..=M` with no gap,
//!   each a write of its user with the write's Lamport counter and time; its unnumbered
//!   messages (`seq` 0) are writes of its user, in the order written;
//! - **own-lost**, **received-lost**, **write-lost** — a store never loses a numbered own
//!   message, a received message or a write it held, except by a restore of that store;
//! - **write-twice** — a write is held at most once in its author's store (numbered or
//!   waiting, not both);
//! - **renumbered** — a write, once numbered, is never numbered again while a store still
//!   holds it under its first number (a numbered message never changes);
//! - **id-two-texts** — an id `(author, seq)` never has two texts: a device's stored copy of
//!   the peer's messages is a gap-free prefix `1..=R` whose every message equals the author's
//!   numbering of that id, and an author gives an id a new text only when no store holds it
//!   any more (both devices lost it to restores: then, and only then, the number is free);
//! - **acked-lost** — nothing is marked delivered (a `Delivered` notice, or the sender's
//!   store mark) that the receiver does not hold at that instant, unless the receiver's store
//!   (or the sender's) went back in time since; then the sender's mark must come down to what
//!   the receiver holds at the sender's first sync on a later connection;
//! - **delivered-regressed**, **delivered-beyond-written** — the mark only goes down across a
//!   restore (until that sync), and never passes the highest number the author gave;
//! - **mark-not-resynced** — once the storage requests a link made up to its sync are
//!   carried out, the sender's stored mark is at least what the sync said the peer holds:
//!   delivery marks are advisory (they may ride in a later commit, or be lost in a crash),
//!   and it is the next sync that sets them right;
//! - **shown-mismatch** — a message shown as received and stored is the author's numbering of
//!   that id, and is stored;
//! - **temporary-phantom**, **temporary-duplicate** — a message shown in a temporary session
//!   was written by the peer in a temporary session, and shown once per connection;
//! - **not-converged** (at the end) — both hold the same chat in the same order: every write
//!   still held by at least one store when the faults stopped (writes that *both* devices
//!   lost to restores are legitimately gone), numbered, on both sides, with nothing waiting.
//!
//! With no restore in a run, every one of these is exactly as strict as protocol 1's: no
//! store ever loses anything, no mark ever goes down, no id is ever reused.

use crate::event::Who;
use socketfalco_core::limits::MAX_COUNTER;
use socketfalco_core::DeviceId;
use socketfalco_core::{encode_frame, Frame, Message, Notice};
use socketfalco_testkit::{MemoryChat, MemoryStore, Pair};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A broken invariant: a stable kind (what the shrinker preserves) and the details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant, e.g. `acked-lost`.
    pub kind: &'static str,
    /// What exactly was seen.
    pub detail: String,
}

impl Violation {
    /// A violation of `kind`.
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Violation {
        Violation {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// The two devices of one chat as the oracle sees them: device `a` and device `b`, each
/// with its store. A [`Pair`] is one; so is one chat of a listener serving many peers
/// ([`ChatView`]), whose store also holds its chats with other peers.
pub trait ChatStores {
    /// The id of device `who`.
    fn id(&self, who: Who) -> DeviceId;
    /// The store of device `who`.
    fn store(&self, who: Who) -> &MemoryStore;
}

impl ChatStores for Pair {
    fn id(&self, who: Who) -> DeviceId {
        match who {
            Who::A => self.a.id,
            Who::B => self.b.id,
        }
    }

    fn store(&self, who: Who) -> &MemoryStore {
        match who {
            Who::A => &self.a.store,
            Who::B => &self.b.store,
        }
    }
}

/// One chat between two devices, each given by its id and its store.
#[derive(Clone, Copy, Debug)]
pub struct ChatView<'a> {
    /// Device `a`: its id and its store.
    pub a: (DeviceId, &'a MemoryStore),
    /// Device `b`: its id and its store.
    pub b: (DeviceId, &'a MemoryStore),
}

impl ChatStores for ChatView<'_> {
    fn id(&self, who: Who) -> DeviceId {
        match who {
            Who::A => self.a.0,
            Who::B => self.b.0,
        }
    }

    fn store(&self, who: Who) -> &MemoryStore {
        match who {
            Who::A => self.a.1,
            Who::B => self.b.1,
        }
    }
}

/// The chat as device `who` stores it, if it has one.
pub fn chat(pair: &impl ChatStores, who: Who) -> Option<&MemoryChat> {
    pair.store(who).chats.get(&pair.id(who.other()))
}

fn own(pair: &impl ChatStores, who: Who) -> &[Message] {
    chat(pair, who).map_or(&[], |c| c.own.as_slice())
}

fn unnumbered(pair: &impl ChatStores, who: Who) -> &[Message] {
    chat(pair, who).map_or(&[], |c| c.unnumbered.as_slice())
}

fn received(pair: &impl ChatStores, who: Who) -> &[Message] {
    chat(pair, who).map_or(&[], |c| c.received.as_slice())
}

fn delivered(pair: &impl ChatStores, who: Who) -> u64 {
    chat(pair, who).map_or(0, |c| c.delivered_up_to)
}

/// Size of a message's frame on the wire, length prefix included.
pub fn frame_bytes(message: &Message) -> usize {
    let mut out = Vec::new();
    encode_frame(&Frame::Message(message.clone()), &mut out);
    out.len()
}

/// The largest frame a write can become once numbered (its `seq` may be any number).
fn numbered_frame_bytes(message: &Message) -> usize {
    let mut numbered = message.clone();
    numbered.seq = MAX_COUNTER - 1;
    frame_bytes(&numbered)
}

/// Short text of a message for reports.
fn short(text: &str) -> String {
    let mut s: String = text.chars().take(24).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

/// One write, as its compose call (or the store, after a crash inside it) returned it.
#[derive(Clone, Debug)]
struct Write {
    /// Position among the author's writes (0, 1, 2, …).
    order: usize,
    lamport: u64,
    sent_at_ms: i64,
    /// Written while no session was established: it waited unnumbered, and takes a new
    /// Lamport counter, above the one it was written with, when it is numbered.
    waited: bool,
}

/// What the oracle knows of one author.
#[derive(Clone, Debug, Default)]
struct Author {
    /// Every stored write, by text.
    writes: BTreeMap<String, Write>,
    /// The numbering history: the message each id was last given (survives restores).
    numbering: BTreeMap<u64, Message>,
    /// The number each write was last given.
    numbered_as: BTreeMap<String, u64>,
    /// The highest number ever given.
    max_seq: u64,
}

/// Counters of restore-related moments the run reached (coverage, for the soak figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreCoverage {
    /// Own numbered messages that came back into their author's store after a restore
    /// (returned by the peer).
    pub recovered: u64,
    /// Of those, writes that were waiting unnumbered in the restored store and came back
    /// numbered (kept once).
    pub returned_waiting: u64,
    /// Ids given a new text after both devices had lost their first one.
    pub ids_reused: u64,
    /// Writes numbered a second time after both devices had lost their first number (the
    /// same number or another).
    pub renumbered: u64,
    /// Delivered marks a sync set lower than they were (the peer's store went back).
    pub marks_set_down: u64,
    /// Writes gone from both stores (lost to restores) when the faults stopped.
    pub writes_lost_to_restores: u64,
}

/// The independent record; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    authors: [Author; 2],
    /// Stored writes per user.
    writes: [usize; 2],
    /// Texts handed to compose so far, per user (they make texts unique).
    attempts: [u64; 2],
    /// Texts each user wrote in temporary sessions.
    temporary: [BTreeSet<String>; 2],
    /// Temporary messages shown: (connection, viewer, text).
    temporary_shown: BTreeSet<(u64, Who, String)>,
    /// Peer messages shown to each user.
    shown: [usize; 2],
    /// The highest "delivered up to" each sender's user was told by a notice (lowered to
    /// what the receiver still holds when the receiver's store goes back).
    told_delivered: [u64; 2],
    /// How much of each store's lists has been checked already (they only grow, except by
    /// a restore).
    checked_own: [usize; 2],
    checked_received: [usize; 2],
    last_delivered: [u64; 2],
    /// A store went back in time on connection `n` (or before it): the sender's mark may
    /// exceed what the receiver holds until the sender's sync on a later connection.
    stale_mark: [Option<u64>; 2],
    /// Writes each author's store holds (numbered or waiting), as of the last full check.
    held: [BTreeSet<String>; 2],
    /// Of those, the ones waiting unnumbered.
    waiting: [BTreeSet<String>; 2],
    /// Restores of each device so far.
    restores: [u64; 2],
    /// Largest message frame each user wrote, for the memory bound.
    max_frame: [usize; 2],
    /// Restore coverage so far.
    pub coverage: RestoreCoverage,
    /// A sync each sender's link applied, whose storage requests are not all carried out
    /// yet: checked when they are ([`Oracle::sync_landed`]).
    pending_sync: [Option<PendingSync>; 2],
}

/// A sync a sender's link applied (its `Connected` notice): on which connection, and what
/// the peer said it holds of the sender's messages (the session's `peer_acked` then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PendingSync {
    connection: u64,
    peer_holds: u64,
    /// The sender's stored mark as last checked before the sync.
    mark_before: u64,
}

/// What [`Oracle::sync_landed`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncLanded {
    /// No sync was waiting to be checked.
    Nothing,
    /// The stored mark is right.
    Right,
}

/// Whether `stored`, the copy of a write its author's store holds, is what a compose call
/// (its `Composed` notice) showed the user: the same number, Lamport counter and time — or,
/// shown waiting (`seq` 0), still waiting as shown, or numbered since with a new, higher
/// Lamport counter (a waiting message takes its place in the chat when it is numbered).
pub fn composed_as_stored(shown: &Message, stored: Option<&Message>) -> bool {
    let Some(m) = stored else {
        return false;
    };
    if m.sent_at_ms != shown.sent_at_ms {
        return false;
    }
    if shown.seq != 0 {
        return m.seq == shown.seq && m.lamport == shown.lamport;
    }
    if m.seq == 0 {
        m.lamport == shown.lamport
    } else {
        m.lamport > shown.lamport || m.lamport == MAX_COUNTER
    }
}

impl Oracle {
    /// Nothing written yet.
    pub fn new() -> Oracle {
        Oracle::default()
    }

    /// A fresh, unique text for `who`'s next message: `a17` padded to `size` bytes.
    pub fn next_text(&mut self, who: Who, size: usize) -> String {
        self.attempts[who.index()] += 1;
        let mut text = format!("{who}{}", self.attempts[who.index()]);
        if size > text.len() {
            // Multi-byte UTF-8 too, so texts cross piece boundaries mid-character; exactly
            // `size` bytes.
            let filler: Vec<char> = " the quick brown fox — jumps over → the lazy 🦅 dog, ünïcödé"
                .chars()
                .collect();
            let mut i = 0;
            while text.len() < size {
                let c = filler[i % filler.len()];
                text.push(if text.len() + c.len_utf8() <= size {
                    c
                } else {
                    '.'
                });
                i += 1;
            }
        }
        text
    }

    /// `who`'s user wrote `message`, stored (the compose call returned it, numbered or not,
    /// or it was found stored after a crash inside compose).
    pub fn wrote(&mut self, who: Who, message: &Message) -> Result<(), Violation> {
        let i = who.index();
        let author = &mut self.authors[i];
        if author.writes.contains_key(&message.text) {
            return Err(Violation::new(
                "own-mismatch",
                format!("{who}'s user wrote {:?} twice", short(&message.text)),
            ));
        }
        author.writes.insert(
            message.text.clone(),
            Write {
                order: self.writes[i],
                lamport: message.lamport,
                sent_at_ms: message.sent_at_ms,
                waited: message.seq == 0,
            },
        );
        self.writes[i] += 1;
        // From now on its author's store must hold it (until a restore of that store).
        self.held[i].insert(message.text.clone());
        self.max_frame[i] = self.max_frame[i].max(numbered_frame_bytes(message));
        Ok(())
    }

    /// `who`'s user wrote `message` in a temporary session.
    pub fn wrote_temporary(&mut self, who: Who, message: &Message) {
        self.max_frame[who.index()] = self.max_frame[who.index()].max(frame_bytes(message));
        self.temporary[who.index()].insert(message.text.clone());
    }

    /// Stored writes `who`'s user made.
    pub fn writes(&self, who: Who) -> usize {
        self.writes[who.index()]
    }

    /// Restores of `who`'s store so far.
    pub fn restores(&self, who: Who) -> u64 {
        self.restores[who.index()]
    }

    /// Peer messages shown to `who`'s user so far.
    pub fn shown(&self, who: Who) -> usize {
        self.shown[who.index()]
    }

    /// Largest message frame `who` wrote so far (0 if none).
    pub fn max_frame(&self, who: Who) -> usize {
        self.max_frame[who.index()]
    }

    /// `who`'s store was just put back to an earlier committed state, on (or before)
    /// connection `connection`; its link is gone. What it held before may be gone: the
    /// baselines of its lists start again from the restored state, its peer's delivered mark
    /// may be stale until the peer's next sync, and its own mark too.
    pub fn restored(
        &mut self,
        pair: &impl ChatStores,
        who: Who,
        connection: u64,
    ) -> Result<(), Violation> {
        let i = who.index();
        let peer = who.other();
        let p = peer.index();
        self.restores[i] += 1;
        self.pending_sync[i] = None;
        self.checked_own[i] = 0;
        self.checked_received[i] = 0;
        let (held, waiting) = held_texts(pair, who);
        self.held[i] = held;
        self.waiting[i] = waiting;
        // The peer's mark of what this store holds may now be too high: the sync of a later
        // connection sets it.
        self.stale_mark[p] = Some(connection);
        let now_held = received(pair, who).len() as u64;
        self.told_delivered[p] = self.told_delivered[p].min(now_held);
        // This store's own mark is an old one; the peer may since have lost messages too.
        let mark = delivered(pair, who);
        self.last_delivered[i] = mark;
        let peer_holds = received(pair, peer).len() as u64;
        if mark > peer_holds {
            self.stale_mark[i] = Some(connection);
        }
        self.told_delivered[i] = self.told_delivered[i].min(peer_holds);
        // The restored state is the new baseline: check it (nothing in it counts as new).
        let coverage = self.coverage;
        let result = self.check_device(pair, who);
        self.coverage = coverage;
        result
    }

    /// A notice `viewer`'s link produced on connection `connection`, in a session that is
    /// `temporary` or not.
    pub fn observe(
        &mut self,
        pair: &impl ChatStores,
        viewer: Who,
        notice: &Notice,
        temporary: bool,
        connection: u64,
    ) -> Result<(), Violation> {
        let author = viewer.other();
        match notice {
            Notice::Received {
                message,
                stored: true,
            } => {
                let numbered = self.authors[author.index()].numbering.get(&message.seq);
                if numbered != Some(message) {
                    return Err(Violation::new(
                        "shown-mismatch",
                        format!(
                            "{viewer} was shown {author}'s message #{} {:?} as stored, but {author} numbered {}",
                            message.seq,
                            short(&message.text),
                            numbered.map_or("nothing".to_owned(), |m| format!(
                                "#{} {:?}",
                                m.seq,
                                short(&m.text)
                            ))
                        ),
                    ));
                }
                let held = received(pair, viewer).len() as u64;
                if held < message.seq {
                    return Err(Violation::new(
                        "shown-mismatch",
                        format!(
                            "{viewer} was shown {author}'s message #{} as stored, but its store holds {held} of them",
                            message.seq
                        ),
                    ));
                }
                self.shown[viewer.index()] += 1;
            }
            Notice::Received {
                message,
                stored: false,
            } => {
                if !temporary {
                    return Err(Violation::new(
                        "shown-mismatch",
                        format!(
                            "{viewer} was shown {author}'s message {:?} as not stored, in a session that is not temporary",
                            short(&message.text)
                        ),
                    ));
                }
                if !self.temporary[author.index()].contains(&message.text) {
                    return Err(Violation::new(
                        "temporary-phantom",
                        format!(
                            "{viewer} was shown {:?} in a temporary session; {author} never wrote it there",
                            short(&message.text)
                        ),
                    ));
                }
                if !self
                    .temporary_shown
                    .insert((connection, viewer, message.text.clone()))
                {
                    return Err(Violation::new(
                        "temporary-duplicate",
                        format!(
                            "{viewer} was shown {:?} twice in one temporary session",
                            short(&message.text)
                        ),
                    ));
                }
                self.shown[viewer.index()] += 1;
            }
            // While a store is back in time, acks of the connection it was on may still
            // arrive: true when written, stale now. The next sync decides.
            Notice::Delivered { up_to }
                if !temporary && self.stale_mark[viewer.index()].is_none() =>
            {
                let told = &mut self.told_delivered[viewer.index()];
                *told = (*told).max(*up_to);
                self.check_acked(pair, viewer)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// `sender`'s link has just applied the peer's sync on `connection` (its `Connected`
    /// notice, not temporary): the peer holds `peer_holds` of its messages. The storage
    /// requests the link made for it (a `SetDelivered`, and marks of acks after it) may not
    /// be carried out yet; the driver calls [`Oracle::sync_landed`] once they are.
    pub fn sync_seen(&mut self, sender: Who, connection: u64, peer_holds: u64) {
        self.pending_sync[sender.index()] = Some(PendingSync {
            connection,
            peer_holds,
            mark_before: self.last_delivered[sender.index()],
        });
    }

    /// Whether a sync of `sender`'s link waits for its storage requests to be carried out.
    pub fn sync_pending(&self, sender: Who) -> bool {
        self.pending_sync[sender.index()].is_some()
    }

    /// `sender`'s link is gone (a crash, a restore): its sync will not land.
    pub fn link_gone(&mut self, sender: Who) {
        self.pending_sync[sender.index()] = None;
    }

    /// Every storage request `sender`'s link made up to and since its sync has been carried
    /// out: the stored mark must be at least what the sync said the peer holds (marks are
    /// advisory, lost in a crash or held back, and the sync sets them right), and, if a store
    /// went back in time on an earlier connection, no more than what the receiver holds.
    pub fn sync_landed(
        &mut self,
        pair: &impl ChatStores,
        sender: Who,
    ) -> Result<SyncLanded, Violation> {
        let s = sender.index();
        let Some(sync) = self.pending_sync[s].take() else {
            return Ok(SyncLanded::Nothing);
        };
        let receiver = sender.other();
        let mark = delivered(pair, sender);
        let held = received(pair, receiver).len() as u64;
        if mark < sync.peer_holds {
            return Err(Violation::new(
                "mark-not-resynced",
                format!(
                    "{receiver}'s sync on connection #{} said it holds {sender}'s messages up to #{}, yet once {sender}'s storage carried out what its link asked for, {sender}'s store marks only #{mark} delivered",
                    sync.connection, sync.peer_holds
                ),
            ));
        }
        let Some(since) = self.stale_mark[s] else {
            return Ok(SyncLanded::Right);
        };
        if sync.connection <= since {
            // A sync the peer wrote before its store went back.
            return Ok(SyncLanded::Right);
        }
        if mark > held {
            return Err(Violation::new(
                "acked-lost",
                format!(
                    "after a store went back in time, {sender}'s sync left its mark at #{mark} delivered, but {receiver}'s store holds {held} of its messages"
                ),
            ));
        }
        if mark < sync.mark_before {
            self.coverage.marks_set_down += 1;
        }
        self.stale_mark[s] = None;
        self.last_delivered[s] = mark;
        self.told_delivered[s] = self.told_delivered[s].min(held);
        Ok(SyncLanded::Right)
    }

    /// Every message `sender` was told is delivered is in the peer's store.
    fn check_acked(&self, pair: &impl ChatStores, sender: Who) -> Result<(), Violation> {
        let s = sender.index();
        let receiver = sender.other();
        let told = self.told_delivered[s];
        let mark = delivered(pair, sender);
        let held = received(pair, receiver).len() as u64;
        let stale = self.stale_mark[s].is_some();
        if told > held || (!stale && mark > held) {
            let (how, up_to) = if told > held {
                (format!("a Delivered notice told {sender}'s user"), told)
            } else {
                (format!("{sender}'s store marks"), mark)
            };
            return Err(Violation::new(
                "acked-lost",
                format!(
                    "{how} that {receiver} holds {sender}'s messages up to #{up_to}, but {receiver}'s store holds {held}"
                ),
            ));
        }
        let max_seq = self.authors[s].max_seq;
        if mark > max_seq {
            return Err(Violation::new(
                "delivered-beyond-written",
                format!(
                    "{sender}'s store marks #{mark} delivered, but {sender} never numbered beyond #{max_seq}"
                ),
            ));
        }
        Ok(())
    }

    /// The invariants on both stores, looking only at what changed since the last call
    /// (stores only ever append, except by a restore).
    pub fn check(&mut self, pair: &impl ChatStores) -> Result<(), Violation> {
        for who in Who::BOTH {
            self.check_device(pair, who)?;
        }
        Ok(())
    }

    /// The invariants on both stores, every message compared again, and every write each
    /// author's store held still held.
    pub fn check_full(&mut self, pair: &impl ChatStores) -> Result<(), Violation> {
        let (own, received) = (self.checked_own, self.checked_received);
        self.checked_own = [0; 2];
        self.checked_received = [0; 2];
        let coverage = self.coverage;
        let result = self.check(pair);
        self.coverage = coverage;
        result?;
        for who in Who::BOTH {
            let i = who.index();
            if self.checked_own[i] < own[i] {
                return Err(Violation::new(
                    "own-lost",
                    format!(
                        "{who}'s store held {} own numbered messages, now {}",
                        own[i], self.checked_own[i]
                    ),
                ));
            }
            if self.checked_received[i] < received[i] {
                return Err(Violation::new(
                    "received-lost",
                    format!(
                        "{who}'s store held {} of {}'s messages, now {}",
                        received[i],
                        who.other(),
                        self.checked_received[i]
                    ),
                ));
            }
            self.check_writes(pair, who)?;
        }
        Ok(())
    }

    /// `who`'s store holds every write it held (or was told stored) since its last restore,
    /// each once, and its waiting ones are writes of its user in the order written.
    fn check_writes(&mut self, pair: &impl ChatStores, who: Who) -> Result<(), Violation> {
        let i = who.index();
        let author = &self.authors[i];
        let mut now: BTreeSet<&str> = BTreeSet::new();
        for m in own(pair, who) {
            if !now.insert(m.text.as_str()) {
                return Err(Violation::new(
                    "write-twice",
                    format!("{who}'s store numbers {:?} twice", short(&m.text)),
                ));
            }
        }
        let mut last_order = None;
        let mut waiting = BTreeSet::new();
        for m in unnumbered(pair, who) {
            let Some(write) = author.writes.get(&m.text) else {
                return Err(Violation::new(
                    "own-mismatch",
                    format!(
                        "{who}'s store has {:?} waiting, which its user never wrote",
                        short(&m.text)
                    ),
                ));
            };
            if m.seq != 0 || (m.lamport, m.sent_at_ms) != (write.lamport, write.sent_at_ms) {
                return Err(Violation::new(
                    "own-mismatch",
                    format!(
                        "{who}'s waiting message {m:?} is not the write its user made (lamport {}, time {})",
                        write.lamport, write.sent_at_ms
                    ),
                ));
            }
            if last_order.is_some_and(|o| o > write.order) {
                return Err(Violation::new(
                    "own-mismatch",
                    format!(
                        "{who}'s waiting messages are out of the order written at {:?}",
                        short(&m.text)
                    ),
                ));
            }
            last_order = Some(write.order);
            if !now.insert(m.text.as_str()) {
                return Err(Violation::new(
                    "write-twice",
                    format!(
                        "{who}'s store holds {:?} both numbered and waiting (or waiting twice)",
                        short(&m.text)
                    ),
                ));
            }
            waiting.insert(m.text.clone());
        }
        if let Some(lost) = self.held[i].iter().find(|t| !now.contains(t.as_str())) {
            return Err(Violation::new(
                "write-lost",
                format!(
                    "{who}'s store no longer holds {:?}, which it held (and was never restored since)",
                    short(lost)
                ),
            ));
        }
        self.held[i] = now.into_iter().map(str::to_owned).collect();
        self.waiting[i] = waiting;
        Ok(())
    }

    fn check_device(&mut self, pair: &impl ChatStores, who: Who) -> Result<(), Violation> {
        let i = who.index();
        let peer = who.other();
        // Own numbered messages: 1..=M, each a write of this user, ids consistent.
        let own_list = own(pair, who);
        if own_list.len() < self.checked_own[i] {
            return Err(Violation::new(
                "own-lost",
                format!(
                    "{who}'s store held {} own numbered messages, now {}",
                    self.checked_own[i],
                    own_list.len()
                ),
            ));
        }
        for k in self.checked_own[i]..own_list.len() {
            self.check_numbered(pair, who, k)?;
        }
        self.checked_own[i] = own_list.len();
        // The peer's messages: a gap-free prefix, each the author's numbering of its id.
        let got = received(pair, who);
        if got.len() < self.checked_received[i] {
            return Err(Violation::new(
                "received-lost",
                format!(
                    "{who}'s store held {} of {peer}'s messages, now {}",
                    self.checked_received[i],
                    got.len()
                ),
            ));
        }
        let numbering = &self.authors[peer.index()].numbering;
        for (k, message) in got.iter().enumerate().skip(self.checked_received[i]) {
            if message.seq != k as u64 + 1 {
                return Err(Violation::new(
                    "received-mismatch",
                    format!(
                        "{who}'s stored message {} from {peer} is #{} {:?} (a gap, a duplicate or a reordering)",
                        k + 1,
                        message.seq,
                        short(&message.text)
                    ),
                ));
            }
            match numbering.get(&message.seq) {
                Some(m) if m == message => {}
                Some(m) => {
                    let kind = if m.text == message.text {
                        "received-mismatch"
                    } else {
                        "id-two-texts"
                    };
                    return Err(Violation::new(
                        kind,
                        format!(
                            "{who} stores {peer}'s #{} as {:?} (lamport {}, time {}), but {peer} numbered #{} {:?} (lamport {}, time {})",
                            message.seq,
                            short(&message.text),
                            message.lamport,
                            message.sent_at_ms,
                            m.seq,
                            short(&m.text),
                            m.lamport,
                            m.sent_at_ms
                        ),
                    ));
                }
                None => {
                    return Err(Violation::new(
                        "received-mismatch",
                        format!(
                            "{who} stores {peer}'s #{} {:?}, a number {peer} never gave",
                            message.seq,
                            short(&message.text)
                        ),
                    ));
                }
            }
        }
        self.checked_received[i] = got.len();
        // The delivered mark.
        let mark = delivered(pair, who);
        if mark < self.last_delivered[i] && self.stale_mark[i].is_none() {
            return Err(Violation::new(
                "delivered-regressed",
                format!(
                    "{who}'s delivered mark went back from {} to {mark}, though no store went back in time",
                    self.last_delivered[i]
                ),
            ));
        }
        self.last_delivered[i] = mark;
        self.check_acked(pair, who)
    }

    /// `who`'s own numbered message at index `k`: in place, a write of its user, and
    /// consistent with every number given so far.
    fn check_numbered(
        &mut self,
        pair: &impl ChatStores,
        who: Who,
        k: usize,
    ) -> Result<(), Violation> {
        let i = who.index();
        let peer = who.other();
        let m = &own(pair, who)[k];
        if m.seq != k as u64 + 1 {
            return Err(Violation::new(
                "own-mismatch",
                format!(
                    "{who}'s own message {} is numbered #{} {:?}: own numbering must be 1, 2, 3… with no gap",
                    k + 1,
                    m.seq,
                    short(&m.text)
                ),
            ));
        }
        let author = &self.authors[i];
        let Some(write) = author.writes.get(&m.text) else {
            return Err(Violation::new(
                "own-mismatch",
                format!(
                    "{who}'s store holds #{} {:?}, which {who}'s user was never told was written",
                    m.seq,
                    short(&m.text)
                ),
            ));
        };
        let lamport_ok = if write.waited {
            m.lamport > write.lamport || m.lamport == socketfalco_core::limits::MAX_COUNTER
        } else {
            m.lamport == write.lamport
        };
        if !lamport_ok || m.sent_at_ms != write.sent_at_ms {
            return Err(Violation::new(
                "own-mismatch",
                format!(
                    "{who}'s #{} {:?} has lamport {} and time {}; its user's write had {} and {}",
                    m.seq,
                    short(&m.text),
                    m.lamport,
                    m.sent_at_ms,
                    write.lamport,
                    write.sent_at_ms
                ),
            ));
        }
        let peer_has = |seq: u64| received(pair, peer).get(usize::try_from(seq).ok()? - 1);
        let known = author.numbering.get(&m.seq);
        if known == Some(m) {
            // Seen before: a full check, the message came back from the peer after a restore
            // (the peer holds it: no number the peer holds is ever given again), or both
            // devices lost it and the author gave the waiting write the same number again.
            if !self.held[i].contains(&m.text) || self.waiting[i].contains(&m.text) {
                if peer_has(m.seq) == Some(m) {
                    self.coverage.recovered += 1;
                    if self.waiting[i].contains(&m.text) {
                        self.coverage.returned_waiting += 1;
                    }
                } else {
                    self.coverage.renumbered += 1;
                }
            }
            return Ok(());
        }
        if let Some(old) = known {
            // The id had another text: only free again if no store holds it any more.
            if let Some(held) = peer_has(m.seq).filter(|h| h.text == old.text) {
                return Err(Violation::new(
                    "id-two-texts",
                    format!(
                        "{who} numbered {:?} as #{}, but {peer} holds #{} as {:?}",
                        short(&m.text),
                        m.seq,
                        held.seq,
                        short(&held.text)
                    ),
                ));
            }
            self.coverage.ids_reused += 1;
        }
        if let Some(&first) = author.numbered_as.get(&m.text) {
            if first != m.seq {
                let in_own = own(pair, who)
                    .get(usize::try_from(first).unwrap_or(usize::MAX) - 1)
                    .is_some_and(|h| h.text == m.text);
                let in_peer = peer_has(first).is_some_and(|h| h.text == m.text);
                if in_own || in_peer {
                    return Err(Violation::new(
                        "renumbered",
                        format!(
                            "{who} numbered {:?} as #{}, though {} holds it as #{first}",
                            short(&m.text),
                            m.seq,
                            if in_own { who } else { peer }
                        ),
                    ));
                }
                self.coverage.renumbered += 1;
            }
        }
        let author = &mut self.authors[i];
        author.numbering.insert(m.seq, m.clone());
        author.numbered_as.insert(m.text.clone(), m.seq);
        author.max_seq = author.max_seq.max(m.seq);
        Ok(())
    }

    /// The writes of `author` that some store holds now (its own store, numbered or waiting,
    /// or the peer's): what convergence must deliver. Writes outside it were lost by both
    /// devices to restores.
    pub fn held_anywhere(&self, pair: &impl ChatStores, author: Who) -> BTreeSet<String> {
        let (mut held, _) = held_texts(pair, author);
        held.extend(
            received(pair, author.other())
                .iter()
                .map(|m| m.text.clone()),
        );
        held
    }

    /// The end state after healing: one chat, in one order, holding exactly `required` of
    /// each author's writes (those some store held when the faults stopped), numbered, on
    /// both sides, with nothing waiting.
    pub fn check_converged(
        &mut self,
        pair: &impl ChatStores,
        required: &[BTreeSet<String>; 2],
    ) -> Result<(), Violation> {
        self.check_full(pair)?;
        for who in Who::BOTH {
            let peer = who.other();
            let mine = own(pair, who);
            let theirs = received(pair, peer);
            let waiting = unnumbered(pair, who).len();
            if waiting != 0 {
                return Err(Violation::new(
                    "not-converged",
                    format!("{waiting} of {who}'s messages are still waiting unnumbered"),
                ));
            }
            if theirs.len() != mine.len() {
                return Err(Violation::new(
                    "not-converged",
                    format!(
                        "{peer} holds {} of the {} message(s) {who} numbered",
                        theirs.len(),
                        mine.len()
                    ),
                ));
            }
            let texts: BTreeSet<&str> = mine.iter().map(|m| m.text.as_str()).collect();
            if let Some(missing) = required[who.index()]
                .iter()
                .find(|t| !texts.contains(t.as_str()))
            {
                return Err(Violation::new(
                    "not-converged",
                    format!(
                        "{who}'s {:?} was held when the faults stopped, but is not in the chat",
                        short(missing)
                    ),
                ));
            }
            if let Some(extra) = texts.iter().find(|t| !required[who.index()].contains(**t)) {
                return Err(Violation::new(
                    "not-converged",
                    format!(
                        "{who}'s {:?} is in the chat, but no store held it when the faults stopped",
                        short(extra)
                    ),
                ));
            }
            let waiting = pair.store(who).waiting(pair.id(peer));
            if waiting != 0 {
                return Err(Violation::new(
                    "not-converged",
                    format!("{waiting} of {who}'s messages are still waiting for delivery"),
                ));
            }
        }
        let history = |who: Who| pair.store(who).history(pair.id(who), pair.id(who.other()));
        let (a, b) = (history(Who::A), history(Who::B));
        if a != b {
            let at = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            return Err(Violation::new(
                "not-converged",
                format!(
                    "the two chats differ at position {at}: a shows {:?}, b shows {:?}",
                    a.get(at).map(|(_, m)| short(&m.text)),
                    b.get(at).map(|(_, m)| short(&m.text))
                ),
            ));
        }
        let lost: usize = Who::BOTH
            .iter()
            .map(|w| self.writes[w.index()] - required[w.index()].len())
            .sum();
        self.coverage.writes_lost_to_restores = lost as u64;
        self.stale_mark = [None; 2];
        Ok(())
    }
}

/// The writes `who`'s store holds (numbered or waiting), and those waiting.
fn held_texts(pair: &impl ChatStores, who: Who) -> (BTreeSet<String>, BTreeSet<String>) {
    let waiting: BTreeSet<String> = unnumbered(pair, who)
        .iter()
        .map(|m| m.text.clone())
        .collect();
    let mut held = waiting.clone();
    held.extend(own(pair, who).iter().map(|m| m.text.clone()));
    (held, waiting)
}
