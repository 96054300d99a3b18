//! [`MemoryStore`]: the in-memory twin of the SQLite store, with a switch to make it fail.

use socketfalco_core::limits::MAX_COUNTER;
use socketfalco_core::{
    key_verdict, order_key, ChatHead, ChatOpening, ChatResume, DeviceId, KeyVerdict, Message,
    PeerHello, Store,
};
use std::collections::BTreeMap;
use std::fmt;

/// One chat as stored: the peer's last name, both sides' messages, and the delivery mark.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryChat {
    /// The peer's name as of its last hello.
    pub peer_name: String,
    /// Own numbered messages, ascending by sequence number (always 1, 2, 3, …).
    pub own: Vec<Message>,
    /// Own messages written while no session was established, in the order written; their
    /// `seq` is 0 until the next sync numbers them.
    pub unnumbered: Vec<Message>,
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
        let max_lamport = self
            .own
            .iter()
            .chain(&self.unnumbered)
            .chain(&self.received)
            .map(|m| m.lamport)
            .max()
            .unwrap_or(0);
        ChatHead {
            last_own_seq: self.last_own_seq(),
            max_lamport,
        }
    }

    fn last_own_seq(&self) -> u64 {
        self.own.last().map_or(0, |m| m.seq)
    }

    /// Numbers the waiting messages after `max(after, last own seq)`, each with a Lamport
    /// counter above everything in the chat now; returns how many.
    fn number_waiting(&mut self, after: u64) -> u64 {
        let mut head = self.head();
        head.last_own_seq = head.last_own_seq.max(after);
        let count = self.unnumbered.len() as u64;
        for mut message in std::mem::take(&mut self.unnumbered) {
            message.seq = head.last_own_seq + 1;
            message.lamport = (head.max_lamport + 1).min(MAX_COUNTER);
            head.observe(&message, true);
            self.own.push(message);
        }
        count
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
    /// Fail every [`Store::persist_received`]: a disk full for what comes in, while the
    /// chat itself opens.
    pub fail_persists: bool,
    /// Reads of own messages to send ([`Store::own_messages`] calls).
    pub own_reads: u64,
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
            .chain(&chat.unnumbered)
            .map(|m| (me, m.clone()))
            .chain(chat.received.iter().map(|m| (peer, m.clone())))
            .collect();
        all.sort_by_key(|(author, m)| order_key(*author, m));
        all
    }

    /// Own messages not yet delivered to `peer`.
    pub fn waiting(&self, peer: DeviceId) -> usize {
        self.chats.get(&peer).map_or(0, |c| {
            c.own.iter().filter(|m| m.seq > c.delivered_up_to).count() + c.unnumbered.len()
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
            last_own_seq: chat.last_own_seq(),
            unnumbered: chat.unnumbered.len() as u64,
            delivered_up_to: chat.delivered_up_to,
        }))
    }

    fn compose_batch(
        &mut self,
        peer: DeviceId,
        texts: &[String],
        sent_at_ms: i64,
        number_after: Option<u64>,
    ) -> Result<Vec<Message>, MemoryStoreError> {
        self.write()?;
        // Work on a copy so that a refused text leaves the chat as it was (one transaction).
        let mut chat = self.chats.get(&peer).cloned().unwrap_or_default();
        if let Some(after) = number_after {
            chat.number_waiting(after);
        }
        let mut messages = Vec::with_capacity(texts.len());
        for text in texts {
            let mut head = chat.head();
            if let Some(after) = number_after {
                head.last_own_seq = head.last_own_seq.max(after);
            }
            let mut message = head
                .compose(text, sent_at_ms)
                .map_err(|_| MemoryStoreError)?;
            if number_after.is_some() {
                chat.own.push(message.clone());
            } else {
                message.seq = 0;
                chat.unnumbered.push(message.clone());
            }
            messages.push(message);
        }
        self.chats.insert(peer, chat);
        Ok(messages)
    }

    fn number_waiting(&mut self, peer: DeviceId, after: u64) -> Result<u64, MemoryStoreError> {
        if self
            .chats
            .get(&peer)
            .is_none_or(|c| c.unnumbered.is_empty())
        {
            return Ok(0);
        }
        self.write()?;
        Ok(self
            .chats
            .get_mut(&peer)
            .map_or(0, |chat| chat.number_waiting(after)))
    }

    fn own_messages(
        &mut self,
        peer: DeviceId,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Message>, MemoryStoreError> {
        self.own_reads += 1;
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
        if self.fail_persists {
            return Err(MemoryStoreError);
        }
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

    fn peer_messages(
        &mut self,
        peer: DeviceId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Message>, MemoryStoreError> {
        Ok(self.chats.get(&peer).map_or_else(Vec::new, |chat| {
            chat.received
                .iter()
                .filter(|m| (from..=to).contains(&m.seq))
                .cloned()
                .collect()
        }))
    }

    fn restore_own(&mut self, peer: DeviceId, batch: &[Message]) -> Result<(), MemoryStoreError> {
        self.write()?;
        let chat = self.chats.entry(peer).or_default();
        for message in batch {
            if message.seq == chat.last_own_seq() + 1 {
                // The same write, still waiting here (one copy per returned message).
                if let Some(twin) = chat
                    .unnumbered
                    .iter()
                    .position(|w| (w.sent_at_ms, &w.text) == (message.sent_at_ms, &message.text))
                {
                    chat.unnumbered.remove(twin);
                }
                chat.own.push(message.clone());
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

    fn set_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), MemoryStoreError> {
        self.write()?;
        self.chats.entry(peer).or_default().delivered_up_to = up_to;
        Ok(())
    }

    /// Held in memory: a driver may run it inline, with no storage thread.
    fn waits_for_disk(&self) -> bool {
        false
    }
}
