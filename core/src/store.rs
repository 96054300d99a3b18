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
    /// This device's own last sequence number in the chat.
    pub last_own_seq: u64,
}

/// Durable storage of chats, one per peer device. Each method's effect is durable when it
/// returns `Ok`; an `Err` means nothing of the call took effect.
pub trait Store {
    /// A storage failure, shown to the user.
    type Error: std::fmt::Display;

    /// Opens the chat with `peer` (creating it the first time), records the peer's current
    /// name, and says how far this device has got in it.
    fn open_chat(&mut self, peer: &PeerHello) -> Result<ChatResume, Self::Error>;

    /// Writes a new own message in the chat with `peer`, in one transaction: reads the chat's
    /// [`ChatHead`](crate::message::ChatHead), builds the message with
    /// [`ChatHead::compose`](crate::message::ChatHead::compose) and stores it. The text has
    /// been checked already. The sequence number must follow both the last own message and
    /// everything the peer was ever seen to hold ([`Store::mark_delivered`]).
    fn compose(
        &mut self,
        peer: DeviceId,
        text: &str,
        sent_at_ms: i64,
    ) -> Result<Message, Self::Error>;

    /// Writes several new own messages in the chat with `peer`, in order, as
    /// [`Store::compose`] would one after the other — but a store should make them one
    /// transaction (one durable commit for a burst of typed lines). On `Err` a transactional
    /// store wrote none of them; the default composes them one by one.
    fn compose_batch(
        &mut self,
        peer: DeviceId,
        texts: &[String],
        sent_at_ms: i64,
    ) -> Result<Vec<Message>, Self::Error> {
        texts
            .iter()
            .map(|text| self.compose(peer, text, sent_at_ms))
            .collect()
    }

    /// Own messages in the chat with `peer` with sequence numbers from `from_seq`, in order,
    /// at most `max` of them.
    fn own_messages(
        &mut self,
        peer: DeviceId,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Message>, Self::Error>;

    /// Stores a batch of the peer's messages in one transaction. A message already stored
    /// (same author and sequence number) is skipped, never doubled.
    fn persist_received(&mut self, peer: DeviceId, batch: &[Message]) -> Result<(), Self::Error>;

    /// The peer holds our messages up to `up_to`: mark them delivered.
    fn mark_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), Self::Error>;

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
