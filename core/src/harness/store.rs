//! [`MemoryStore`]: the in-memory twin of the SQLite store, with a switch to make it fail.

use crate::ids::DeviceId;
use crate::message::{order_key, ChatHead, Message};
use crate::session::PeerHello;
use crate::store::{key_verdict, ChatOpening, ChatResume, KeyVerdict, Store};
use std::collections::BTreeMap;
use std::fmt;

/// One chat as stored: the peer's last name, both sides' messages, and the delivery mark.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryChat {
    /// The peer's name as of its last hello.
    pub peer_name: String,
    /// Own messages, ascending by sequence number.
    pub own: Vec<Message>,
    /// The peer's messages, ascending by sequence number.
    pub received: Vec<Message>,
    /// The peer holds our messages up to here.
    pub delivered_up_to: u64,
    /// The peer's static key, pinned on first contact over an encrypted link.
    pub peer_key: Option<[u8; 32]>,
    /// The fingerprint of the key the user accepted to replace `peer_key`
    /// (`--trust-new-key`), until a peer presents it.
    pub expected_fingerprint: Option<[u8; 16]>,
}

impl MemoryChat {
    fn head(&self) -> ChatHead {
        let last_own = self.own.last().map_or(0, |m| m.seq);
        let max_lamport = self
            .own
            .iter()
            .chain(&self.received)
            .map(|m| m.lamport)
            .max()
            .unwrap_or(0);
        ChatHead {
            last_own_seq: last_own.max(self.delivered_up_to),
            max_lamport,
        }
    }
}

/// The store failed (only when told to, with [`MemoryStore::fail_next_writes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryStoreError;

impl fmt::Display for MemoryStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "simulated storage failure")
    }
}

impl std::error::Error for MemoryStoreError {}

/// A [`Store`] in memory. Every successful call is one durable commit: a crash of its
/// device (dropping the device's link) keeps all of it.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    /// The chats, by peer device.
    pub chats: BTreeMap<DeviceId, MemoryChat>,
    /// Successful write calls so far (commits).
    pub commits: u64,
    /// Fail this many of the next write calls.
    pub fail_next_writes: u32,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The chat with `peer` in display order ([`order_key`]), each message with its author.
    pub fn history(&self, me: DeviceId, peer: DeviceId) -> Vec<(DeviceId, Message)> {
        let Some(chat) = self.chats.get(&peer) else {
            return Vec::new();
        };
        let mut all: Vec<(DeviceId, Message)> = chat
            .own
            .iter()
            .map(|m| (me, m.clone()))
            .chain(chat.received.iter().map(|m| (peer, m.clone())))
            .collect();
        all.sort_by_key(|(author, m)| order_key(*author, m));
        all
    }

    /// Own messages not yet delivered to `peer`.
    pub fn waiting(&self, peer: DeviceId) -> usize {
        self.chats.get(&peer).map_or(0, |c| {
            c.own.iter().filter(|m| m.seq > c.delivered_up_to).count()
        })
    }

    fn write(&mut self) -> Result<(), MemoryStoreError> {
        if self.fail_next_writes > 0 {
            self.fail_next_writes -= 1;
            return Err(MemoryStoreError);
        }
        self.commits += 1;
        Ok(())
    }
}

impl Store for MemoryStore {
    type Error = MemoryStoreError;

    fn open_chat(
        &mut self,
        peer: &PeerHello,
        key: Option<[u8; 32]>,
    ) -> Result<ChatOpening, MemoryStoreError> {
        let existing = self.chats.get(&peer.device);
        let verdict = key.map(|key| {
            let (pinned, expected) =
                existing.map_or((None, None), |c| (c.peer_key, c.expected_fingerprint));
            (key, pinned, key_verdict(pinned, expected, &key))
        });
        if let Some((_, pinned, KeyVerdict::Refuse)) = verdict {
            // Nothing is written; a refusal without a pinned key cannot be reported.
            let pinned = pinned.ok_or(MemoryStoreError)?;
            return Ok(ChatOpening::KeyMismatch { pinned });
        }
        if peer.temporary {
            // A temporary session writes nothing, a key it would pin included.
            return Ok(ChatOpening::Opened(ChatResume::default()));
        }
        self.write()?;
        let chat = self.chats.entry(peer.device).or_default();
        chat.peer_name.clone_from(&peer.name);
        if let Some((key, _, KeyVerdict::Pin)) = verdict {
            chat.peer_key = Some(key);
            chat.expected_fingerprint = None;
        }
        Ok(ChatOpening::Opened(ChatResume {
            received_up_to: chat.received.last().map_or(0, |m| m.seq),
            last_own_seq: chat.own.last().map_or(0, |m| m.seq),
        }))
    }

    fn compose(
        &mut self,
        peer: DeviceId,
        text: &str,
        sent_at_ms: i64,
    ) -> Result<Message, MemoryStoreError> {
        self.write()?;
        let chat = self.chats.entry(peer).or_default();
        let message = chat
            .head()
            .compose(text, sent_at_ms)
            .map_err(|_| MemoryStoreError)?;
        chat.own.push(message.clone());
        Ok(message)
    }

    fn own_messages(
        &mut self,
        peer: DeviceId,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Message>, MemoryStoreError> {
        let Some(chat) = self.chats.get(&peer) else {
            return Ok(Vec::new());
        };
        let start = chat.own.partition_point(|m| m.seq < from_seq);
        Ok(chat.own[start..].iter().take(max).cloned().collect())
    }

    fn persist_received(
        &mut self,
        peer: DeviceId,
        batch: &[Message],
    ) -> Result<(), MemoryStoreError> {
        self.write()?;
        let chat = self.chats.entry(peer).or_default();
        for message in batch {
            if chat
                .received
                .last()
                .is_none_or(|last| message.seq > last.seq)
            {
                chat.received.push(message.clone());
            }
        }
        Ok(())
    }

    fn mark_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), MemoryStoreError> {
        self.write()?;
        let chat = self.chats.entry(peer).or_default();
        chat.delivered_up_to = chat.delivered_up_to.max(up_to);
        Ok(())
    }
}
