//! `impl Store for Database`: the core's durability contract, with exactly the semantics of
//! its in-memory twin `socketfalco_testkit::MemoryStore` — opening a chat (checking and pinning the
//! peer's key in the same transaction), composing, numbering waiting messages, persisting
//! received ones, delivery marks — and group commits: [`Store::begin_group`] opens one
//! `BEGIN IMMEDIATE` transaction in which every call runs in a savepoint, and
//! [`Store::commit_group`] makes them durable with one fsync.

use super::queries::{
    add_messages, chat_key, chat_keys, chat_tail, count_waiting, ensure_chat, insert_messages,
    max_seq, number_waiting, read_message, resume_point, to_db, OnConflict,
};
use super::{Database, StoreError};
use rusqlite::params;
use socketfalco_core::{
    check_name, check_text, key_verdict, ChatHead, ChatOpening, ChatResume, DeviceId, KeyVerdict,
    Message, PeerHello, Store,
};

impl Store for Database {
    type Error = StoreError;

    fn open_chat(
        &mut self,
        peer: &PeerHello,
        key: Option<[u8; 32]>,
    ) -> Result<ChatOpening, StoreError> {
        let chat = peer.device;
        if peer.temporary {
            // Nothing is written: only the key is checked against the pin.
            let Some(key) = key else {
                return Ok(ChatOpening::Opened(ChatResume::default()));
            };
            let (pinned, expected) = self.key_state(chat)?.unwrap_or_default();
            return match key_verdict(pinned, expected, &key) {
                KeyVerdict::Refuse => mismatch(pinned),
                KeyVerdict::Known | KeyVerdict::Pin => {
                    Ok(ChatOpening::Opened(ChatResume::default()))
                }
            };
        }
        // The core checked the name when decoding the hello; store nothing it would refuse.
        check_name(&peer.name).map_err(StoreError::InvalidName)?;
        let me = self.me()?;
        let now = (self.clock)();
        // One BEGIN IMMEDIATE transaction: the pin is read under the write lock, so of two
        // processes opening a first contact at once the second sees the first one's pin.
        self.write(|tx| {
            let verdict = match key {
                Some(key) => {
                    let (pinned, expected) = chat_keys(tx, chat)?.unwrap_or_default();
                    match key_verdict(pinned, expected, &key) {
                        // Nothing written: the (empty) transaction commits nothing.
                        KeyVerdict::Refuse => return mismatch(pinned),
                        verdict => Some((key, verdict)),
                    }
                }
                None => None,
            };
            tx.prepare_cached(
                "INSERT INTO chats (peer, peer_name, created_at_ms, openings) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (peer) DO UPDATE SET peer_name = excluded.peer_name,
                                                  openings = openings + 1",
            )?
            .execute(params![chat.0, peer.name, now])?;
            if let Some((key, KeyVerdict::Pin)) = verdict {
                tx.prepare_cached(
                    "UPDATE chats SET peer_key = ?2, expected_fingerprint = NULL WHERE peer = ?1",
                )?
                .execute(params![chat.0, key])?;
            }
            let key = ensure_chat(tx, me, chat, now)?;
            Ok(ChatOpening::Opened(resume_point(tx, key, chat)?))
        })
    }

    fn compose_batch(
        &mut self,
        peer: DeviceId,
        texts: &[String],
        sent_at_ms: i64,
        number_after: Option<u64>,
    ) -> Result<Vec<Message>, StoreError> {
        for text in texts {
            check_text(text).map_err(StoreError::InvalidText)?;
        }
        let me = self.me()?;
        let now = (self.clock)();
        self.write(|tx| {
            let chat = ensure_chat(tx, me, peer, now)?;
            let mut tail = chat_tail(tx, chat)?;
            if let Some(after) = number_after {
                if tail.any_waiting {
                    number_waiting(tx, chat, after)?;
                    tail = chat_tail(tx, chat)?;
                }
            }
            let mut head = ChatHead {
                last_own_seq: tail.last_own_seq.max(number_after.unwrap_or(0)),
                max_lamport: tail.max_lamport,
            };
            let mut messages = Vec::with_capacity(texts.len());
            for text in texts {
                let mut message = head
                    .compose(text, sent_at_ms)
                    .map_err(StoreError::InvalidText)?;
                head.observe(&message, true);
                if number_after.is_none() {
                    message.seq = 0;
                    tx.prepare_cached(
                        "INSERT INTO waiting (chat, lamport, sent_at_ms, text, stored_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        chat.id,
                        to_db(message.lamport, "Lamport counter")?,
                        message.sent_at_ms,
                        message.text,
                        now
                    ])?;
                }
                messages.push(message);
            }
            if number_after.is_some() {
                // A plain INSERT: the sequence numbers are new by construction, and a
                // conflict would be a bug to report, not to paper over.
                let rows: Vec<&Message> = messages.iter().collect();
                insert_messages(tx, OnConflict::Fail, chat, chat.me, &rows, now)?;
            }
            if !messages.is_empty() {
                add_messages(tx, chat, messages.len(), false, Some(now))?;
            }
            Ok(messages)
        })
    }

    fn number_waiting(&mut self, peer: DeviceId, after: u64) -> Result<u64, StoreError> {
        let me = self.me()?;
        // Cheap path, called whenever the send window has room: a read, no write lock.
        let waiting = self.read(|tx| match chat_key(tx, me, peer)? {
            Some(chat) => count_waiting(tx, chat),
            None => Ok(0),
        })?;
        if waiting == 0 {
            return Ok(0);
        }
        self.write(|tx| match chat_key(tx, me, peer)? {
            Some(chat) => number_waiting(tx, chat, after),
            None => Ok(0),
        })
    }

    fn own_messages(
        &mut self,
        peer: DeviceId,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let me = self.me()?;
        // No stored sequence number is above i64::MAX, so such a start finds nothing; and
        // more than i64::MAX rows cannot exist.
        let Ok(from) = i64::try_from(from_seq) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.read(|tx| {
            let Some(chat) = chat_key(tx, me, peer)? else {
                return Ok(Vec::new());
            };
            let mut stmt = tx.prepare_cached(
                "SELECT seq, lamport, sent_at_ms, text FROM messages
                  WHERE chat = ?1 AND author = ?2 AND seq >= ?3
                  ORDER BY seq LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![chat.id, chat.me, from, limit], |row| {
                read_message(row, 0)
            })?;
            let mut messages = Vec::new();
            for row in rows {
                messages.push(row??);
            }
            Ok(messages)
        })
    }

    fn persist_received(&mut self, peer: DeviceId, batch: &[Message]) -> Result<(), StoreError> {
        // The core checked every text; store nothing it would refuse.
        for message in batch {
            check_text(&message.text).map_err(StoreError::InvalidText)?;
        }
        let me = self.me()?;
        let now = (self.clock)();
        self.write(|tx| {
            let chat = ensure_chat(tx, me, peer, now)?;
            // As the core's MemoryStore: the peer's messages are kept in sequence order, so
            // a message at or below the highest one stored is already here and is skipped.
            // INSERT OR IGNORE guards the same rule at the key level: never doubled.
            let mut last = max_seq(tx, chat, chat.peer())?;
            let mut rows = Vec::with_capacity(batch.len());
            for message in batch {
                if message.seq > last {
                    rows.push(message);
                    last = message.seq;
                }
            }
            let stored = insert_messages(tx, OnConflict::Ignore, chat, chat.peer(), &rows, now)?;
            if stored > 0 {
                add_messages(tx, chat, stored, true, Some(now))?;
            }
            Ok(())
        })
    }

    fn peer_messages(
        &mut self,
        peer: DeviceId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Message>, StoreError> {
        let from = to_db(from, "sequence number")?;
        let to = to_db(to, "sequence number")?;
        let me = self.me()?;
        self.read(|tx| {
            let Some(chat) = chat_key(tx, me, peer)? else {
                return Ok(Vec::new());
            };
            let mut stmt = tx.prepare_cached(
                "SELECT seq, lamport, sent_at_ms, text FROM messages
                  WHERE chat = ?1 AND author = ?2 AND seq BETWEEN ?3 AND ?4
                  ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![chat.id, chat.peer(), from, to], |row| {
                read_message(row, 0)
            })?;
            let mut messages = Vec::new();
            for row in rows {
                messages.push(row??);
            }
            Ok(messages)
        })
    }

    fn restore_own(&mut self, peer: DeviceId, batch: &[Message]) -> Result<(), StoreError> {
        for message in batch {
            check_text(&message.text).map_err(StoreError::InvalidText)?;
        }
        let me = self.me()?;
        let now = (self.clock)();
        self.write(|tx| {
            let chat = ensure_chat(tx, me, peer, now)?;
            let mut last = max_seq(tx, chat, chat.me)?;
            for message in batch {
                if message.seq != last + 1 {
                    continue;
                }
                insert_messages(tx, OnConflict::Fail, chat, chat.me, &[message], now)?;
                last = message.seq;
                // One more message in the chat, unless it replaces its waiting twin below; no
                // activity (it is history coming back).
                add_messages(tx, chat, 1, false, None)?;
                // The same write, still waiting here: it was numbered (and delivered) before
                // this store went back in time. Keep the numbered copy only (one waiting copy
                // per returned message: two identical lines written in the same millisecond
                // are two writes).
                let twins = tx
                    .prepare_cached(
                        "DELETE FROM waiting WHERE position = (
                           SELECT min(position) FROM waiting
                            WHERE chat = ?1 AND sent_at_ms = ?2 AND text = ?3)",
                    )?
                    .execute(params![chat.id, message.sent_at_ms, message.text])?;
                if twins > 0 {
                    tx.prepare_cached(
                        "UPDATE chats SET message_count = message_count - ?2 WHERE id = ?1",
                    )?
                    .execute(params![chat.id, i64::try_from(twins).unwrap_or(0)])?;
                }
            }
            Ok(())
        })
    }

    fn set_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), StoreError> {
        let up_to = to_db(up_to, "delivery mark")?;
        let me = self.me()?;
        let now = (self.clock)();
        self.write(|tx| {
            let chat = ensure_chat(tx, me, peer, now)?;
            tx.prepare_cached("UPDATE chats SET delivered_up_to = ?2 WHERE id = ?1")?
                .execute(params![chat.id, up_to])?;
            Ok(())
        })
    }

    fn mark_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), StoreError> {
        let up_to = to_db(up_to, "delivery mark")?;
        let me = self.me()?;
        let now = (self.clock)();
        self.write(|tx| {
            let chat = ensure_chat(tx, me, peer, now)?;
            tx.prepare_cached(
                "UPDATE chats SET delivered_up_to = max(delivered_up_to, ?2) WHERE id = ?1",
            )?
            .execute(params![chat.id, up_to])?;
            Ok(())
        })
    }

    /// `BEGIN IMMEDIATE`: the write lock is taken at once, so a group never has to upgrade
    /// a read lock (which could deadlock with another process's writer).
    fn begin_group(&mut self) -> Result<(), StoreError> {
        self.control("BEGIN IMMEDIATE")
            .map_err(|e| e.at(&self.path))?;
        self.in_group = true;
        Ok(())
    }

    /// `COMMIT`, with the full fsync of `synchronous = FULL`: the one durable commit of the
    /// group. On failure everything of the group is rolled back.
    fn commit_group(&mut self) -> Result<(), StoreError> {
        self.in_group = false;
        if let Err(e) = self.control("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.at(&self.path));
        }
        Ok(())
    }
}

/// The answer to a refused key: the pinned key it is not. A refusal without a pinned key
/// (an expected fingerprint on a chat that has none) cannot arise, as
/// [`Database::expect_key`] sets none there.
fn mismatch(pinned: Option<[u8; 32]>) -> Result<ChatOpening, StoreError> {
    let pinned = pinned.ok_or_else(|| StoreError::Corrupt {
        path: None,
        detail: "a chat that expects a new key but has none pinned".to_owned(),
    })?;
    Ok(ChatOpening::KeyMismatch { pinned })
}
