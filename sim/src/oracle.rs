//! The oracle: what the users did and were told, recorded independently of the code under
//! test, and the invariants that hold the stores to it.
//!
//! The oracle never asks the core what *should* be: it keeps its own list of every message
//! each user wrote (as the compose call returned it), the highest "delivered" each sender
//! was told, and what each user was shown, and checks the stores and notices against that:
//!
//! - **own-mismatch** — a device's own messages are exactly what its user wrote, numbered
//!   1, 2, 3… with nothing missing, extra or changed;
//! - **received-mismatch** — a device's stored copy of the peer's messages is an exact
//!   prefix of what the peer's user wrote: same number, same text, same order, no duplicate,
//!   nothing nobody wrote;
//! - **received-lost** — what a device stored from its peer never shrinks (across crashes);
//! - **acked-lost** — every message a sender was told is delivered (a `Delivered` notice, or
//!   its store's delivered mark) is in the receiver's store, at every instant;
//! - **delivered-regressed**, **delivered-beyond-written** — the delivered mark only grows and
//!   never passes what was written;
//! - **shown-mismatch** — a message shown as received and stored is the author's, and is
//!   stored;
//! - **temporary-phantom**, **temporary-duplicate** — a message shown in a temporary session
//!   was written by the peer in a temporary session, and shown once per connection;
//! - **not-converged** (at the end) — both hold the same chat in the same order, holding
//!   everything either user wrote, with nothing waiting.

use crate::event::Who;
use socketfalco_core::harness::{MemoryChat, Pair};
use socketfalco_core::{encode_frame, Frame, Message, Notice};
use std::collections::BTreeSet;
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

/// The chat as device `who` stores it, if it has one.
pub fn chat(pair: &Pair, who: Who) -> Option<&MemoryChat> {
    match who {
        Who::A => pair.a.store.chats.get(&pair.b.id),
        Who::B => pair.b.store.chats.get(&pair.a.id),
    }
}

fn own(pair: &Pair, who: Who) -> &[Message] {
    chat(pair, who).map_or(&[], |c| c.own.as_slice())
}

fn received(pair: &Pair, who: Who) -> &[Message] {
    chat(pair, who).map_or(&[], |c| c.received.as_slice())
}

fn delivered(pair: &Pair, who: Who) -> u64 {
    chat(pair, who).map_or(0, |c| c.delivered_up_to)
}

/// Size of a message's frame on the wire, length prefix included.
pub fn frame_bytes(message: &Message) -> usize {
    let mut out = Vec::new();
    encode_frame(&Frame::Message(message.clone()), &mut out);
    out.len()
}

/// The independent record; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    /// Every stored message each user wrote, as composed, in order.
    written: [Vec<Message>; 2],
    /// Texts handed to compose so far, per user (they make texts unique).
    attempts: [u64; 2],
    /// Texts each user wrote in temporary sessions.
    temporary: [BTreeSet<String>; 2],
    /// Temporary messages shown: (connection, viewer, text).
    temporary_shown: BTreeSet<(u64, Who, String)>,
    /// Peer messages shown to each user.
    shown: [usize; 2],
    /// The highest "delivered up to" each sender's user was told by a notice.
    told_delivered: [u64; 2],
    /// How much of each store's lists has been checked already (they only grow).
    checked_own: [usize; 2],
    checked_received: [usize; 2],
    last_delivered: [u64; 2],
    /// Largest message frame each user wrote, for the memory bound.
    max_frame: [usize; 2],
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

    /// `who`'s user wrote `message`, stored (the compose call returned it, or it was found
    /// stored after a crash inside compose).
    pub fn wrote(&mut self, who: Who, message: Message) -> Result<(), Violation> {
        let list = &mut self.written[who.index()];
        let expected = list.len() as u64 + 1;
        if message.seq != expected {
            return Err(Violation::new(
                "own-mismatch",
                format!(
                    "{who}'s message {:?} was numbered {}, expected {expected} (ids must be 1, 2, 3…)",
                    message.text, message.seq
                ),
            ));
        }
        self.max_frame[who.index()] = self.max_frame[who.index()].max(frame_bytes(&message));
        list.push(message);
        Ok(())
    }

    /// `who`'s user wrote `message` in a temporary session.
    pub fn wrote_temporary(&mut self, who: Who, message: &Message) {
        self.max_frame[who.index()] = self.max_frame[who.index()].max(frame_bytes(message));
        self.temporary[who.index()].insert(message.text.clone());
    }

    /// Stored messages `who`'s user wrote.
    pub fn written(&self, who: Who) -> &[Message] {
        &self.written[who.index()]
    }

    /// Peer messages shown to `who`'s user so far.
    pub fn shown(&self, who: Who) -> usize {
        self.shown[who.index()]
    }

    /// Largest message frame `who` wrote so far (0 if none).
    pub fn max_frame(&self, who: Who) -> usize {
        self.max_frame[who.index()]
    }

    /// A notice `viewer`'s link produced on connection `connection`, in a session that is
    /// `temporary` or not.
    pub fn observe(
        &mut self,
        pair: &Pair,
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
                let index = usize::try_from(message.seq).unwrap_or(usize::MAX);
                let written = &self.written[author.index()];
                if index == 0 || written.get(index - 1) != Some(message) {
                    return Err(Violation::new(
                        "shown-mismatch",
                        format!(
                            "{viewer} was shown {author}'s message #{} {:?} as stored, but {author} wrote {} message(s){}",
                            message.seq,
                            message.text,
                            written.len(),
                            written
                                .get(index.wrapping_sub(1))
                                .map(|m| format!(", #{} being {:?}", m.seq, m.text))
                                .unwrap_or_default()
                        ),
                    ));
                }
                let held = received(pair, viewer).len();
                if held < index {
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
                            message.text
                        ),
                    ));
                }
                if !self.temporary[author.index()].contains(&message.text) {
                    return Err(Violation::new(
                        "temporary-phantom",
                        format!(
                            "{viewer} was shown {:?} in a temporary session; {author} never wrote it there",
                            message.text
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
                            message.text
                        ),
                    ));
                }
                self.shown[viewer.index()] += 1;
            }
            Notice::Delivered { up_to } if !temporary => {
                let told = &mut self.told_delivered[viewer.index()];
                *told = (*told).max(*up_to);
                self.check_acked(pair, viewer)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Every message `sender` was told is delivered is in the peer's store.
    fn check_acked(&self, pair: &Pair, sender: Who) -> Result<(), Violation> {
        let receiver = sender.other();
        let told = self.told_delivered[sender.index()];
        let mark = delivered(pair, sender);
        let held = received(pair, receiver).len() as u64;
        if told.max(mark) > held {
            let how = if told >= mark {
                format!("a Delivered notice told {sender}'s user")
            } else {
                format!("{sender}'s store marks")
            };
            return Err(Violation::new(
                "acked-lost",
                format!(
                    "{how} that {receiver} holds {sender}'s messages up to #{}, but {receiver}'s store holds {held}",
                    told.max(mark)
                ),
            ));
        }
        if mark > self.written[sender.index()].len() as u64 {
            return Err(Violation::new(
                "delivered-beyond-written",
                format!(
                    "{sender}'s store marks #{mark} delivered, but {sender} wrote {}",
                    self.written[sender.index()].len()
                ),
            ));
        }
        Ok(())
    }

    /// The invariants on both stores, looking only at what changed since the last call
    /// (stores only ever append).
    pub fn check(&mut self, pair: &Pair) -> Result<(), Violation> {
        for who in Who::BOTH {
            self.check_device(pair, who)?;
        }
        Ok(())
    }

    /// The invariants on both stores, every message compared again.
    pub fn check_full(&mut self, pair: &Pair) -> Result<(), Violation> {
        let (own, received) = (self.checked_own, self.checked_received);
        self.checked_own = [0; 2];
        self.checked_received = [0; 2];
        self.check(pair)?;
        for who in Who::BOTH {
            let i = who.index();
            if self.checked_own[i] < own[i] || self.checked_received[i] < received[i] {
                return Err(Violation::new(
                    "received-lost",
                    format!("{who}'s store lost messages it held earlier"),
                ));
            }
        }
        Ok(())
    }

    fn check_device(&mut self, pair: &Pair, who: Who) -> Result<(), Violation> {
        let i = who.index();
        let peer = who.other();
        // Own messages: exactly what the user wrote.
        let own = own(pair, who);
        let written = &self.written[i];
        if own.len() != written.len() {
            let what = if own.len() > written.len() {
                format!(
                    "holds {:?}, which {who}'s user was never told was written",
                    own[written.len()].text
                )
            } else {
                format!("lost {:?}", written[own.len()].text)
            };
            return Err(Violation::new(
                "own-mismatch",
                format!(
                    "{who}'s store has {} own message(s), its user wrote {}: it {what}",
                    own.len(),
                    written.len()
                ),
            ));
        }
        for k in self.checked_own[i]..own.len() {
            if own[k] != written[k] {
                return Err(Violation::new(
                    "own-mismatch",
                    format!(
                        "{who}'s own message #{} is {:?}, its user wrote {:?}",
                        k + 1,
                        own[k],
                        written[k]
                    ),
                ));
            }
        }
        self.checked_own[i] = own.len();
        // The peer's messages: an exact prefix of what the peer wrote.
        let got = received(pair, who);
        let theirs = &self.written[peer.index()];
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
        for (k, message) in got.iter().enumerate().skip(self.checked_received[i]) {
            if theirs.get(k) != Some(message) {
                let expected = theirs
                    .get(k)
                    .map_or("nothing (the author wrote fewer)".to_owned(), |m| {
                        format!("#{} {:?}", m.seq, m.text)
                    });
                return Err(Violation::new(
                    "received-mismatch",
                    format!(
                        "{who}'s stored message {} from {peer} is #{} {:?}; {peer} wrote {expected} there (a duplicate, a reordering or a message nobody wrote)",
                        k + 1,
                        message.seq,
                        message.text
                    ),
                ));
            }
        }
        self.checked_received[i] = got.len();
        // The delivered mark.
        let mark = delivered(pair, who);
        if mark < self.last_delivered[i] {
            return Err(Violation::new(
                "delivered-regressed",
                format!(
                    "{who}'s delivered mark went back from {} to {mark}",
                    self.last_delivered[i]
                ),
            ));
        }
        self.last_delivered[i] = mark;
        self.check_acked(pair, who)
    }

    /// The end state after healing: one chat, in one order, with everything in it.
    pub fn check_converged(&mut self, pair: &Pair) -> Result<(), Violation> {
        self.check_full(pair)?;
        for who in Who::BOTH {
            let peer = who.other();
            let have = received(pair, who).len();
            let wrote = self.written[peer.index()].len();
            if have != wrote {
                return Err(Violation::new(
                    "not-converged",
                    format!("{who} holds {have} of the {wrote} message(s) {peer} wrote"),
                ));
            }
            let waiting = match who {
                Who::A => pair.waiting(true),
                Who::B => pair.waiting(false),
            };
            if waiting != 0 {
                return Err(Violation::new(
                    "not-converged",
                    format!("{waiting} of {who}'s messages are still waiting for delivery"),
                ));
            }
        }
        let (a, b) = (pair.history(true), pair.history(false));
        if a != b {
            let at = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len());
            return Err(Violation::new(
                "not-converged",
                format!(
                    "the two chats differ at position {at}: a shows {:?}, b shows {:?}",
                    a.get(at).map(|(_, m)| &m.text),
                    b.get(at).map(|(_, m)| &m.text)
                ),
            ));
        }
        Ok(())
    }
}
