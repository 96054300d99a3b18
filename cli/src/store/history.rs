//! Reading a chat back in display order (the core's `order_key`): the whole history, a
//! stream of it in constant memory with `--last`/`--since` cuts, and the keyset pages the
//! scrollback turns through by [`DisplayKey`], with the counters and the first unread line a
//! chat view shows.

use super::queries::{
    author_device, chat_key, delivered_up_to, from_db, read_identity_device, read_message,
    resume_point, ChatKey,
};
use super::{Database, StoreError};
use rusqlite::{params, OptionalExtension};
use socketfalco_core::{ChatResume, DeviceId, Message};

/// One message of a chat's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Who wrote it.
    pub author: DeviceId,
    /// This device wrote it.
    pub mine: bool,
    /// The message.
    pub message: Message,
    /// The peer holds it: an own message up to the chat's delivery mark, or any received one.
    pub delivered: bool,
}

/// Where a message stands in its chat's display order: the core's `order_key` (Lamport
/// counter, author, sequence number; an own message still waiting for its number has `seq` 0).
/// The scrollback pages through a chat by keyset queries on it ([`Database::page`]), on the
/// `messages_display` index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DisplayKey {
    /// The Lamport counter.
    pub lamport: u64,
    /// The author.
    pub author: DeviceId,
    /// The author's sequence number; 0 for an own message waiting for its number.
    pub seq: u64,
}

impl DisplayKey {
    /// Before every message.
    pub const FIRST: DisplayKey = DisplayKey {
        lamport: 0,
        author: DeviceId([0; 16]),
        seq: 0,
    };
    /// After every message.
    pub const LAST: DisplayKey = DisplayKey {
        lamport: i64::MAX as u64,
        author: DeviceId([0xff; 16]),
        seq: i64::MAX as u64,
    };
}

impl StoredMessage {
    /// Where the message stands in the chat's display order.
    pub fn display_key(&self) -> DisplayKey {
        DisplayKey {
            lamport: self.message.lamport,
            author: self.author,
            seq: self.message.seq,
        }
    }
}

/// Which side of a [`DisplayKey`] [`Database::page`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSide {
    /// The messages just before the key (the newest of the chat without one).
    Older,
    /// The messages just after the key (the oldest of the chat without one).
    Newer,
}

impl Database {
    /// This device's id, read in `tx` if this handle has not learnt it yet (another process
    /// may have created the identity since this one opened the database); `None` while there
    /// is none.
    pub(super) fn me_if_any_in(
        &self,
        tx: &rusqlite::Connection,
    ) -> Result<Option<DeviceId>, StoreError> {
        match self.me {
            Some(me) => Ok(Some(me)),
            None => read_identity_device(tx),
        }
    }

    /// [`Database::me_if_any_in`], or [`StoreError::NoIdentity`].
    fn me_in(&self, tx: &rusqlite::Connection) -> Result<DeviceId, StoreError> {
        self.me_if_any_in(tx)?
            .ok_or(StoreError::NoIdentity { path: None })
    }

    /// The chat with `peer` in display order (the core's `order_key`: Lamport counter, then
    /// author, then sequence number); empty for an unknown chat.
    pub fn history(&self, peer: DeviceId) -> Result<Vec<StoredMessage>, StoreError> {
        let mut history = Vec::new();
        self.for_each_message(peer, None, None, |m| {
            history.push(m);
            true
        })?;
        Ok(history)
    }

    /// Hands the chat with `peer` to `each`, one message at a time in display order, until it
    /// returns false: a chat of any length in constant memory (SQLite sorts the waiting and
    /// stored messages together, spilling to its temporary files if it must). `last`: only
    /// the newest that many; `since_ms`: only messages whose author's clock says they were
    /// written at or after it.
    pub fn for_each_message(
        &self,
        peer: DeviceId,
        last: Option<u64>,
        since_ms: Option<i64>,
        mut each: impl FnMut(StoredMessage) -> bool,
    ) -> Result<(), StoreError> {
        self.read(|tx| {
            let me = self.me_in(tx)?;
            let Some(chat) = chat_key(tx, me, peer)? else {
                return Ok(());
            };
            let delivered_up_to = delivered_up_to(tx, peer)?;
            // Own messages waiting for a number sort with `seq` 0 (before any numbered one of
            // the same Lamport counter, which only a saturated counter can share).
            const BOTH: &str = "SELECT author, seq, lamport, sent_at_ms, text FROM messages
                                 WHERE chat = ?1 AND sent_at_ms >= ?3
                                UNION ALL
                                SELECT ?2, 0, lamport, sent_at_ms, text FROM waiting
                                 WHERE chat = ?1 AND sent_at_ms >= ?3";
            let sql = if last.is_some() {
                format!("SELECT * FROM ({BOTH} ORDER BY 3 DESC, 1 DESC, 2 DESC LIMIT ?4) ORDER BY 3, 1, 2")
            } else {
                format!("{BOTH} ORDER BY 3, 1, 2")
            };
            let limit = last.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
            let mut stmt = tx.prepare_cached(&sql)?;
            let since = since_ms.unwrap_or(i64::MIN);
            let mut rows = if last.is_some() {
                stmt.query(params![chat.id, chat.me, since, limit])?
            } else {
                stmt.query(params![chat.id, chat.me, since])?
            };
            while let Some(row) = rows.next()? {
                let author = author_device(chat, me, peer, row.get(0)?);
                let message = read_message(row, 1)??;
                let mine = author == me;
                let stored = StoredMessage {
                    author,
                    mine,
                    delivered: !mine || (message.seq != 0 && message.seq <= delivered_up_to),
                    message,
                };
                if !each(stored) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// At most `limit` messages of the chat with `peer` next to `from` on `side` (not `from`
    /// itself), in display order: the newest that many before it, or the oldest that many
    /// after it; without `from`, the newest (`Older`) or oldest (`Newer`) of the chat. A
    /// keyset query on the display index: its cost depends on `limit`, not on the chat's
    /// length or the position.
    pub fn page(
        &self,
        peer: DeviceId,
        from: Option<DisplayKey>,
        side: PageSide,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (op, order, bound) = match (side, from) {
            (PageSide::Older, Some(k)) => ("<", "DESC", k),
            (PageSide::Newer, Some(k)) => (">", "ASC", k),
            (PageSide::Older, None) => ("<=", "DESC", DisplayKey::LAST),
            (PageSide::Newer, None) => (">=", "ASC", DisplayKey::FIRST),
        };
        let lamport = i64::try_from(bound.lamport).unwrap_or(i64::MAX);
        let seq = i64::try_from(bound.seq).unwrap_or(i64::MAX);
        self.read(|tx| {
            let me = self.me_in(tx)?;
            let Some(chat) = chat_key(tx, me, peer)? else {
                return Ok(Vec::new());
            };
            let (author, seq) = bound_author(chat, me, peer, bound.author, seq);
            let delivered_up_to = delivered_up_to(tx, peer)?;
            let mut page = Vec::new();
            let stored = format!(
                "SELECT author, seq, lamport, sent_at_ms, text FROM messages
                  WHERE chat = ?1 AND (lamport, author, seq) {op} (?2, ?3, ?4)
                  ORDER BY lamport {order}, author {order}, seq {order} LIMIT ?5"
            );
            let mut stmt = tx.prepare_cached(&stored)?;
            let mut rows = stmt.query(params![chat.id, lamport, author, seq, limit])?;
            while let Some(row) = rows.next()? {
                let author = author_device(chat, me, peer, row.get(0)?);
                page.push((author, read_message(row, 1)??));
            }
            // Own messages waiting for a number sort as (lamport, me, 0).
            let waiting = format!(
                "SELECT 0, lamport, sent_at_ms, text FROM waiting
                  WHERE chat = ?1 AND (lamport, ?6, 0) {op} (?2, ?3, ?4)
                  ORDER BY lamport {order}, position {order} LIMIT ?5"
            );
            let mut stmt = tx.prepare_cached(&waiting)?;
            let mut rows = stmt.query(params![chat.id, lamport, author, seq, limit, chat.me])?;
            while let Some(row) = rows.next()? {
                page.push((me, read_message(row, 0)??));
            }
            let key = |(author, m): &(DeviceId, Message)| (m.lamport, *author, m.seq);
            page.sort_by_key(key);
            match side {
                PageSide::Older => {
                    let extra = page
                        .len()
                        .saturating_sub(usize::try_from(limit).unwrap_or(0));
                    page.drain(..extra);
                }
                PageSide::Newer => page.truncate(usize::try_from(limit).unwrap_or(0)),
            }
            Ok(stored_messages(page, me, delivered_up_to))
        })
    }

    /// What was stored in the chat with `peer` after a view last looked, wherever it sorts:
    /// the peer's messages numbered after `peer_seq` and this device's numbered after
    /// `own_seq` (an own line still waiting for its number is not among them), at most
    /// `limit` of each, in display order. On the primary key: the cost depends on what is
    /// new, not on the chat's length.
    pub fn lines_after(
        &self,
        peer: DeviceId,
        peer_seq: u64,
        own_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|tx| {
            let me = self.me_in(tx)?;
            let Some(chat) = chat_key(tx, me, peer)? else {
                return Ok(Vec::new());
            };
            let delivered_up_to = delivered_up_to(tx, peer)?;
            let mut found = Vec::new();
            let mut stmt = tx.prepare_cached(
                "SELECT seq, lamport, sent_at_ms, text FROM messages
                  WHERE chat = ?1 AND author = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            )?;
            for (author, number, after) in [(peer, chat.peer(), peer_seq), (me, chat.me, own_seq)] {
                let after = i64::try_from(after).unwrap_or(i64::MAX);
                let mut rows = stmt.query(params![chat.id, number, after, limit])?;
                while let Some(row) = rows.next()? {
                    found.push((author, read_message(row, 0)??));
                }
            }
            found.sort_by_key(|(author, m)| (m.lamport, *author, m.seq));
            Ok(stored_messages(found, me, delivered_up_to))
        })
    }

    /// How far the chat with `peer` has got, read only (what opening it for a session
    /// reports, without opening it); `None` for an unknown chat.
    pub fn resume_point(&self, peer: DeviceId) -> Result<Option<ChatResume>, StoreError> {
        self.read(|tx| {
            let me = self.me_in(tx)?;
            let Some(chat) = chat_key(tx, me, peer)? else {
                return Ok(None);
            };
            resume_point(tx, chat, peer).map(Some)
        })
    }

    /// The chat with `peer`'s message and unread counts (see [`ChatSummary`]), read from its
    /// counters; `None` for an unknown chat.
    ///
    /// [`ChatSummary`]: super::ChatSummary
    pub fn chat_counts(&self, peer: DeviceId) -> Result<Option<(u64, u64)>, StoreError> {
        self.read(|tx| {
            let row: Option<(i64, i64)> = tx
                .prepare_cached("SELECT message_count, unread FROM chats WHERE peer = ?1")?
                .query_row([peer.0], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            row.map(|(messages, unread)| {
                Ok((
                    from_db(messages, "message count")?,
                    from_db(unread, "unread count")?,
                ))
            })
            .transpose()
        })
    }

    /// The first unread line of the chat with `peer`, for the marker a chat view draws above
    /// it: the oldest of the peer's newest `unread` messages. `None` when nothing is unread.
    pub fn first_unread(&self, peer: DeviceId) -> Result<Option<DisplayKey>, StoreError> {
        self.read(|tx| {
            let me = self.me_in(tx)?;
            let Some(chat) = chat_key(tx, me, peer)? else {
                return Ok(None);
            };
            let unread: Option<i64> = tx
                .prepare_cached("SELECT unread FROM chats WHERE peer = ?1")?
                .query_row([peer.0], |row| row.get(0))
                .optional()?;
            let Some(unread) = unread.filter(|&n| n > 0) else {
                return Ok(None);
            };
            let row: Option<(i64, i64)> = tx
                .prepare_cached(
                    "SELECT lamport, seq FROM messages WHERE chat = ?1 AND author = ?2
                      ORDER BY seq DESC LIMIT 1 OFFSET ?3",
                )?
                .query_row(params![chat.id, chat.peer(), unread - 1], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            // More unread than stored (a count from an older copy): everything is unread.
            let row = match row {
                Some(row) => Some(row),
                None => tx
                    .prepare_cached(
                        "SELECT lamport, seq FROM messages WHERE chat = ?1 AND author = ?2
                          ORDER BY seq LIMIT 1",
                    )?
                    .query_row([chat.id, chat.peer()], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?,
            };
            row.map(|(lamport, seq)| {
                Ok(DisplayKey {
                    lamport: from_db(lamport, "Lamport counter")?,
                    author: peer,
                    seq: from_db(seq, "sequence number")?,
                })
            })
            .transpose()
        })
    }
}

/// A bound's author as the author numbers of `chat` compare (the greater device id is 1),
/// with its sequence number: a key of either device is exact; an id below both sorts before
/// both (-1), above both after both (2), and between them after every message of the lesser
/// (its number with the greatest sequence number). [`DisplayKey::FIRST`] and
/// [`DisplayKey::LAST`] are such ids.
/// Messages read with their authors, as [`StoredMessage`]s: an own one is delivered once
/// numbered up to the chat's delivery mark, a received one always.
fn stored_messages(
    read: Vec<(DeviceId, Message)>,
    me: DeviceId,
    delivered_up_to: u64,
) -> Vec<StoredMessage> {
    read.into_iter()
        .map(|(author, message)| {
            let mine = author == me;
            StoredMessage {
                author,
                mine,
                delivered: !mine || (message.seq != 0 && message.seq <= delivered_up_to),
                message,
            }
        })
        .collect()
}

fn bound_author(
    chat: ChatKey,
    me: DeviceId,
    peer: DeviceId,
    author: DeviceId,
    seq: i64,
) -> (i64, i64) {
    let (lesser, greater) = (me.min(peer), me.max(peer));
    if author == me {
        (chat.me, seq)
    } else if author == peer {
        (chat.peer(), seq)
    } else if author < lesser {
        (-1, seq)
    } else if author > greater {
        (2, seq)
    } else {
        (0, i64::MAX)
    }
}
