//! The durability contract between the core and whatever stores a chat. See [`Store`].

use crate::ids::DeviceId;
use crate::message::Message;
use crate::secure::PublicKey;
use crate::session::PeerHello;
use std::sync::Arc;

/// How far this device has got in a chat, read from storage when a peer is accepted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ChatResume {
    /// This device durably holds every message of the peer's up to this sequence number.
    pub received_up_to: u64,
    /// This device's own last *numbered* message in the chat.
    pub last_own_seq: u64,
    /// Own messages written while no session with the peer was established: they wait,
    /// unnumbered, for the next sync (see [`Store::compose_batch`]).
    pub unnumbered: u64,
    /// The delivery mark as stored: the peer held our messages up to here at the last sync
    /// or ack. (The link writes the sync's value only when it differs.)
    pub delivered_up_to: u64,
}

/// What [`Store::open_chat`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChatOpening {
    /// The chat is open (created and, over an encrypted link, the key pinned if this was
    /// the first contact); this device has got this far in it.
    Opened(ChatResume),
    /// The peer's key is not the one bound to its device id: nothing was stored.
    KeyMismatch {
        /// The key pinned for that device id.
        pinned: [u8; 32],
    },
}

/// What a store does with the key a peer proved ([`key_verdict`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeyVerdict {
    /// The key is the pinned one: open the chat.
    Known,
    /// Pin the key (replacing any other and clearing the expected fingerprint), then open the
    /// chat: the first contact, or the key the user accepted by its fingerprint.
    Pin,
    /// Refuse the peer; store nothing.
    Refuse,
}

/// The rule binding a device id to a key, which every store applies inside the transaction
/// of [`Store::open_chat`]. `pinned` is the key pinned for the chat, `expected` the
/// fingerprint the user accepted for it (`--trust-new-key`), `presented` the key the peer
/// proved.
///
/// - With an expected fingerprint, only a key with that fingerprint is accepted, and it is
///   pinned; every other key is refused, the old pinned one included (the user said the
///   peer's key changed: whoever still holds the old one is not the peer any more).
/// - Without one: no pin yet pins the key (trust on first use); the pinned key is accepted;
///   any other is refused.
pub fn key_verdict(
    pinned: Option<[u8; 32]>,
    expected: Option<[u8; 16]>,
    presented: &[u8; 32],
) -> KeyVerdict {
    match (expected, pinned) {
        (Some(fingerprint), _) if PublicKey(*presented).fingerprint_bytes() == fingerprint => {
            KeyVerdict::Pin
        }
        (Some(_), _) => KeyVerdict::Refuse,
        (None, None) => KeyVerdict::Pin,
        (None, Some(pinned)) if pinned == *presented => KeyVerdict::Known,
        (None, Some(_)) => KeyVerdict::Refuse,
    }
}

/// Durable storage of chats, one per peer device. Each method's effect is durable when it
/// returns `Ok`; an `Err` means nothing of the call took effect.
///
/// The core does no I/O. Storage is an effect: [`Link`](crate::Link) asks for it with
/// [`StoreRequest`] values and takes the results back as completions, in the order the
/// contract needs: a received batch is persisted and only then acked; an own message is
/// composed (stored) before it is shown or sent. A driver carries the requests out against a
/// [`Store`], whose every method returns only once its effect is durable, with [`execute`]:
/// at once on its own thread (tests, the simulator), or on a storage thread that commits
/// many requests in one transaction ([`Store::begin_group`]).
///
/// The peer's key is bound to its device id in the same call that opens the chat
/// ([`Store::open_chat`]), so that two processes on one store cannot both pin a first
/// contact: reading the pin, creating the chat and pinning are one transaction, and
/// [`key_verdict`] is the one rule every store applies.
///
/// # Numbering own messages
///
/// A device's store may go back in time: restored from a backup, a synced folder, a disk
/// that lost its cache. Its own messages are therefore numbered only against the peer's
/// word (docs/PROTOCOL.md §2): a message written while no session with the peer is
/// established is stored *unnumbered* (returned with `seq` 0) and numbered at the next sync,
/// after everything the peer said it holds; a message written during an established session
/// is numbered at once, after everything sent in it. Own numbered messages are always the
/// contiguous run 1..=`last_own_seq`, and a numbered message never changes.
pub trait Store {
    /// A storage failure, shown to the user.
    type Error: std::fmt::Display;

    /// Opens the chat with `peer` (creating it the first time), records the peer's current
    /// name, and says how far this device has got in it — after binding the peer's device id
    /// to `key`, the static key it proved over an encrypted link (`None` on a plain link:
    /// no key is checked or stored).
    ///
    /// All of it is one transaction: the store reads the pinned key and the expected
    /// fingerprint, decides with [`key_verdict`], and either pins and opens, opens, or
    /// returns [`ChatOpening::KeyMismatch`] having written nothing. So of two processes
    /// opening a first contact with the same device id and two different keys, the first to
    /// commit pins its key and the other gets the mismatch.
    ///
    /// A temporary `peer` (`peer.temporary`) writes nothing at all: its key is checked
    /// against the pin the same way (a key [`KeyVerdict::Pin`] would pin is accepted but not
    /// pinned), and the resume is the default.
    fn open_chat(
        &mut self,
        peer: &PeerHello,
        key: Option<[u8; 32]>,
    ) -> Result<ChatOpening, Self::Error>;

    /// Writes new own messages in the chat with `peer`, in order, in one transaction (one
    /// durable commit for a burst of typed lines). The texts have been checked already; each
    /// message's Lamport counter is above every message in the chat
    /// ([`ChatHead::compose`](crate::message::ChatHead::compose)).
    ///
    /// With `number_after: None` (no established session) the messages are stored
    /// unnumbered and returned with `seq` 0. With `Some(n)` (an established session that has
    /// sent up to `n`, and is not recovering) the messages already waiting unnumbered are
    /// numbered first, in the order they were written, then these, each one after
    /// `max(n, last own seq)`. On `Err` nothing was written. (The simulator's and
    /// SQLite's stores create an unknown chat with an empty name.)
    fn compose_batch(
        &mut self,
        peer: DeviceId,
        texts: &[String],
        sent_at_ms: i64,
        number_after: Option<u64>,
    ) -> Result<Vec<Message>, Self::Error>;

    /// Writes one new own message while no session is established: stored unnumbered
    /// ([`Store::compose_batch`] with `number_after: None`).
    fn compose(
        &mut self,
        peer: DeviceId,
        text: &str,
        sent_at_ms: i64,
    ) -> Result<Message, Self::Error> {
        let mut messages = self.compose_batch(peer, &[text.to_owned()], sent_at_ms, None)?;
        Ok(messages.remove(0))
    }

    /// Numbers the own messages waiting unnumbered in the chat with `peer`, in the order they
    /// were written, after `max(after, last own seq)`, in one transaction. Each takes a new
    /// Lamport counter above everything in the chat now: a waiting message takes its place in
    /// the chat when it is numbered, after everything this device holds then. Returns how
    /// many were numbered (0: nothing was waiting, and nothing was written).
    fn number_waiting(&mut self, peer: DeviceId, after: u64) -> Result<u64, Self::Error>;

    /// Own numbered messages in the chat with `peer` with sequence numbers from `from_seq`,
    /// in order, at most `max` of them.
    fn own_messages(
        &mut self,
        peer: DeviceId,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Message>, Self::Error>;

    /// Stores a batch of the peer's messages in one transaction. A message already stored
    /// (same author and sequence number) is skipped, never doubled.
    fn persist_received(&mut self, peer: DeviceId, batch: &[Message]) -> Result<(), Self::Error>;

    /// The peer's own messages `from..=to` that this device holds, in order (to send back to
    /// a peer whose store went back in time).
    fn peer_messages(
        &mut self,
        peer: DeviceId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Message>, Self::Error>;

    /// Stores own messages the peer sent back (this store had lost them), in one
    /// transaction, as numbered own messages, skipping any already stored. For each returned
    /// message, one message waiting unnumbered that is the same write (same time and text:
    /// it was numbered and delivered before this store went back) is dropped, so it is not
    /// sent twice.
    fn restore_own(&mut self, peer: DeviceId, batch: &[Message]) -> Result<(), Self::Error>;

    /// The peer holds our messages up to `up_to` (an ack): mark them delivered. The mark
    /// only grows here.
    fn mark_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), Self::Error>;

    /// The peer's sync says it holds our messages up to exactly `up_to`: set the mark to
    /// it, lower if the peer's store went back in time (those messages are sent again).
    fn set_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), Self::Error>;

    /// Whether a call may wait for a disk. A driver runs the requests of a store that does on
    /// a thread of its own, off its event loop; a store whose calls never wait (held in
    /// memory: tests, benchmarks) may be driven inline. The default: it may.
    fn waits_for_disk(&self) -> bool {
        true
    }

    /// Opens a group commit: every call until [`Store::commit_group`] takes effect in one
    /// durable commit, made by `commit_group` (a call that fails inside the group leaves no
    /// trace, and the others stand). A store whose every call commits on its own needs
    /// neither (the default does nothing).
    ///
    /// The delivery marks are advisory: a store may hold them back until its next commit,
    /// and a crash may lose them. Nothing depends on them but what the user sees as
    /// delivered until the next sync, which sets the mark again (docs/PROTOCOL.md §5).
    fn begin_group(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Commits the group opened by [`Store::begin_group`]. On `Err` nothing of the group took
    /// effect.
    fn commit_group(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// One storage effect a [`crate::link::Link`] asks for ([`crate::link::Link::poll_store_request`]).
///
/// A driver carries requests out with [`execute`] (or inside a group, see
/// [`Store::begin_group`]) and hands each result back with
/// [`crate::link::Link::handle_store_completion`]. The rules a driver keeps:
///
/// - **In order, per link.** A link's requests take effect in the order the link made them,
///   and their completions come back in that order. (Requests of different links may be
///   carried out and completed in any interleaving.)
/// - **Fail-stop, per link.** Once one of a link's requests has failed, every later request
///   of that link fails without being carried out: a failed batch never leaves a hole below
///   a stored one.
/// - **Durable before completed.** A write's completion is handed back only once its effect
///   is durable. The two delivery marks are advisory (each connection's sync says what the
///   peer really holds): a driver may hold them back for a later commit and a crash may lose
///   them; nothing waits for their completion, but a failed one closes the session like any
///   other failure (docs/PROTOCOL.md §6).
///
/// One earlier word is allowed: a driver that numbers a [`StoreRequest::Compose`] inside a
/// transaction still to commit may hand the numbered lines over first
/// ([`crate::link::Link::handle_store_written`]), so they are sent while it commits; they are
/// shown as stored only with the completion (docs/PROTOCOL.md §6.2).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StoreRequest {
    /// [`Store::open_chat`]: answered with [`StoreReply::Opened`].
    OpenChat {
        /// Who.
        peer: PeerHello,
        /// The static key the peer proved over an encrypted link.
        key: Option<[u8; 32]>,
    },
    /// [`Store::compose_batch`]: answered with [`StoreReply::Composed`].
    Compose {
        /// The chat.
        peer: DeviceId,
        /// The texts, already checked (shared with the link, which reports them if the
        /// request fails: no copy).
        texts: Arc<Vec<String>>,
        /// Wall-clock time of writing.
        sent_at_ms: i64,
        /// Number after this (an established session), or store unnumbered (`None`).
        number_after: Option<u64>,
    },
    /// [`Store::number_waiting`]: answered with [`StoreReply::Numbered`].
    NumberWaiting {
        /// The chat.
        peer: DeviceId,
        /// Number after this.
        after: u64,
    },
    /// [`Store::own_messages`]: answered with [`StoreReply::Messages`].
    ReadOwn {
        /// The chat.
        peer: DeviceId,
        /// First sequence number.
        from_seq: u64,
        /// Most messages.
        max: usize,
    },
    /// [`Store::persist_received`]: answered with [`StoreReply::Done`].
    PersistReceived {
        /// The chat.
        peer: DeviceId,
        /// The peer's messages, in order (shared with the link, which shows them once they
        /// are stored: no copy).
        batch: Arc<Vec<Message>>,
    },
    /// [`Store::peer_messages`]: answered with [`StoreReply::Messages`].
    ReadPeer {
        /// The chat.
        peer: DeviceId,
        /// First sequence number.
        from: u64,
        /// Last sequence number.
        to: u64,
    },
    /// [`Store::restore_own`]: answered with [`StoreReply::Done`].
    RestoreOwn {
        /// The chat.
        peer: DeviceId,
        /// Own messages the peer sent back.
        batch: Vec<Message>,
    },
    /// [`Store::mark_delivered`]: advisory; answered with [`StoreReply::Done`], which nothing
    /// waits for.
    MarkDelivered {
        /// The chat.
        peer: DeviceId,
        /// Cumulative.
        up_to: u64,
    },
    /// [`Store::set_delivered`]: advisory; answered with [`StoreReply::Done`], which nothing
    /// waits for.
    SetDelivered {
        /// The chat.
        peer: DeviceId,
        /// Exactly.
        up_to: u64,
    },
}

impl StoreRequest {
    /// Whether this is one of the advisory delivery marks, which a driver may hold back for
    /// its next commit.
    pub fn is_delivery_mark(&self) -> bool {
        matches!(
            self,
            StoreRequest::MarkDelivered { .. } | StoreRequest::SetDelivered { .. }
        )
    }
}

/// What a carried-out [`StoreRequest`] returned.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StoreReply {
    /// For [`StoreRequest::OpenChat`].
    Opened(ChatOpening),
    /// For [`StoreRequest::Compose`]: the messages as stored.
    Composed(Vec<Message>),
    /// For [`StoreRequest::NumberWaiting`]: how many were numbered.
    Numbered(u64),
    /// For [`StoreRequest::ReadOwn`] and [`StoreRequest::ReadPeer`].
    Messages(Vec<Message>),
    /// For the other writes.
    Done,
}

/// Carries out one request against `store`: the one place that maps requests to the
/// [`Store`] contract's methods.
pub fn execute<S: Store + ?Sized>(
    store: &mut S,
    request: &StoreRequest,
) -> Result<StoreReply, S::Error> {
    match request {
        StoreRequest::OpenChat { peer, key } => store.open_chat(peer, *key).map(StoreReply::Opened),
        StoreRequest::Compose {
            peer,
            texts,
            sent_at_ms,
            number_after,
        } => store
            .compose_batch(*peer, texts, *sent_at_ms, *number_after)
            .map(StoreReply::Composed),
        StoreRequest::NumberWaiting { peer, after } => store
            .number_waiting(*peer, *after)
            .map(StoreReply::Numbered),
        StoreRequest::ReadOwn {
            peer,
            from_seq,
            max,
        } => store
            .own_messages(*peer, *from_seq, *max)
            .map(StoreReply::Messages),
        StoreRequest::PersistReceived { peer, batch } => store
            .persist_received(*peer, batch)
            .map(|()| StoreReply::Done),
        StoreRequest::ReadPeer { peer, from, to } => store
            .peer_messages(*peer, *from, *to)
            .map(StoreReply::Messages),
        StoreRequest::RestoreOwn { peer, batch } => {
            store.restore_own(*peer, batch).map(|()| StoreReply::Done)
        }
        StoreRequest::MarkDelivered { peer, up_to } => store
            .mark_delivered(*peer, *up_to)
            .map(|()| StoreReply::Done),
        StoreRequest::SetDelivered { peer, up_to } => store
            .set_delivered(*peer, *up_to)
            .map(|()| StoreReply::Done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_rule() {
        let (a, b) = ([1; 32], [2; 32]);
        let fp_b = PublicKey(b).fingerprint_bytes();
        assert_eq!(key_verdict(None, None, &a), KeyVerdict::Pin);
        assert_eq!(key_verdict(Some(a), None, &a), KeyVerdict::Known);
        assert_eq!(key_verdict(Some(a), None, &b), KeyVerdict::Refuse);
        assert_eq!(key_verdict(Some(a), Some(fp_b), &b), KeyVerdict::Pin);
        assert_eq!(key_verdict(Some(a), Some(fp_b), &a), KeyVerdict::Refuse);
        assert_eq!(
            key_verdict(Some(a), Some(fp_b), &[3; 32]),
            KeyVerdict::Refuse
        );
        assert_eq!(key_verdict(None, Some(fp_b), &b), KeyVerdict::Pin);
    }
}
