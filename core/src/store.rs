//! The durability contract between the core and whatever stores a chat.
//!
//! The core does no I/O. A driver stores messages through the [`Store`] trait, whose every
//! method returns only once its effect is durable (committed). [`crate::link::Link`] calls
//! it in the order the contract needs: a received batch is persisted in one call and only
//! then acked; an own message is composed (stored) before it is shown or sent.
//!
//! The peer's key is bound to its device id in the same call that opens the chat
//! ([`Store::open_chat`]), so that two processes on one store cannot both pin a first
//! contact: reading the pin, creating the chat and pinning are one transaction, and
//! [`key_verdict`] is the one rule every store applies.

use crate::ids::DeviceId;
use crate::message::Message;
use crate::secure::PublicKey;
use crate::session::PeerHello;

/// How far this device has got in a chat, read from storage when a peer is accepted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ChatResume {
    /// This device durably holds every message of the peer's up to this sequence number.
    pub received_up_to: u64,
    /// This device's own last sequence number in the chat.
    pub last_own_seq: u64,
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
