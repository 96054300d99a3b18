//! The durability contract between the core and whatever stores a chat.
//!
//! The core does no I/O. A driver stores messages through the [`Store`] trait, whose every
//! method returns only once its effect is durable (committed). [`crate::link::Link`] calls
//! it in the order the contract needs: a received batch is persisted in one call and only
//! then acked; an own message is composed (stored) before it is shown or sent.

use crate::ids::DeviceId;
use crate::message::Message;
use crate::session::PeerHello;

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
}

/// Durable storage of chats, one per peer device. Each method's effect is durable when it
/// returns `Ok`; an `Err` means nothing of the call took effect.
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
    /// name, and says how far this device has got in it.
    fn open_chat(&mut self, peer: &PeerHello) -> Result<ChatResume, Self::Error>;

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

    /// The static public key pinned for `peer` on first contact, if any. A store without
    /// keys (plain links only) keeps the default.
    fn pinned_key(&mut self, peer: DeviceId) -> Result<Option<[u8; 32]>, Self::Error> {
        let _ = peer;
        Ok(None)
    }

    /// Pins `key` for `peer` (first contact over an encrypted link; called after
    /// [`Store::open_chat`]).
    fn pin_key(&mut self, peer: DeviceId, key: [u8; 32]) -> Result<(), Self::Error> {
        let _ = (peer, key);
        Ok(())
    }
}
