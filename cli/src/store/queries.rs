//! The row-level SQL the other parts share, each run inside the caller's transaction: a
//! chat's key in the message tables ([`ChatKey`]), inserting a message, creating a chat, the
//! per-chat counters, the highest sequence number and Lamport counter, numbering the waiting
//! messages; and the conversions between the protocol's values and what SQLite stores
//! (counters refused above `i64::MAX`, never wrapped).

use super::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};
use socketfalco_core::{ChatResume, DeviceId, Message};
use std::sync::OnceLock;

/// Messages one `INSERT` statement stores, largest first: SQLite's work per row falls by
/// about a third from one row per statement to 16, and by a tenth more to 64 (the
/// statement's setup, its constraint and foreign-key checks' setup, one `sqlite3_step` are
/// shared; docs/PERFORMANCE.md). A batch goes in statements of 64 rows, then of 16, then of
/// one for the rest: at most 1 + 3 + 15 statements for any remainder.
pub(super) const ROWS_PER_INSERT: [usize; 3] = [64, 16, 1];

/// What an insert does with a message already stored (same chat, author and sequence number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OnConflict {
    /// Fails: a new message by construction, and a conflict is a bug to report.
    Fail,
    /// Skips it: never doubled.
    Ignore,
}

/// The first of the four parameters of row `row` in an [`insert_sql`] statement (sequence
/// number, Lamport counter, time of writing, text); `?1` to `?3` are the chat, the author and
/// the time of storing, shared by every row. The SQL and its binding both count from here.
fn row_parameters(row: usize) -> usize {
    4 + 4 * row
}

/// The `INSERT` of `rows` messages of one chat and author (parameters: [`row_parameters`]).
fn insert_sql(on_conflict: OnConflict, rows: usize) -> String {
    let verb = match on_conflict {
        OnConflict::Fail => "INSERT",
        OnConflict::Ignore => "INSERT OR IGNORE",
    };
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let first = row_parameters(row);
            format!(
                "(?1, ?2, ?{}, ?{}, ?{}, ?{}, ?3)",
                first,
                first + 1,
                first + 2,
                first + 3
            )
        })
        .collect();
    format!(
        "{verb} INTO messages (chat, author, seq, lamport, sent_at_ms, text, stored_at_ms) \
         VALUES {}",
        values.join(", ")
    )
}

/// A chat as the message tables key it (schema version 6): the chat's integer id, and which
/// of the two author numbers is this device's. Keys of small integers instead of two 16-byte
/// ids make every message row and index entry shorter and every comparison cheaper (a
/// quarter of SQLite's time per inserted row, docs/PERFORMANCE.md).
///
/// The author number is 1 for the greater of the two device ids (bytewise, as `DeviceId`
/// orders) and 0 for the other, so ordering by `(lamport, author, seq)` is exactly the core's
/// `order_key` and both devices show one order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ChatKey {
    /// `chats.id`.
    pub(super) id: i64,
    /// This device's author number in the chat; the peer's is the other one.
    pub(super) me: i64,
}

impl ChatKey {
    fn new(id: i64, me: DeviceId, peer: DeviceId) -> ChatKey {
        ChatKey {
            id,
            me: i64::from(me > peer),
        }
    }

    /// The peer's author number.
    pub(super) fn peer(self) -> i64 {
        1 - self.me
    }
}

/// The device of an author number read from a row of the chat `chat` with `peer`.
pub(super) fn author_device(chat: ChatKey, me: DeviceId, peer: DeviceId, author: i64) -> DeviceId {
    if author == chat.me {
        me
    } else {
        peer
    }
}

/// The key of the existing chat with `peer`, `None` if there is none. A chat with this
/// device's own id cannot exist (the core refuses a peer presenting it).
pub(super) fn chat_key(
    tx: &Connection,
    me: DeviceId,
    peer: DeviceId,
) -> Result<Option<ChatKey>, StoreError> {
    refuse_self_chat(me, peer)?;
    Ok(tx
        .prepare_cached("SELECT id FROM chats WHERE peer = ?1")?
        .query_row([peer.0], |row| row.get(0))
        .optional()?
        .map(|id| ChatKey::new(id, me, peer)))
}

/// Creates the chat with `peer` if it does not exist, with an unknown (empty) name, and
/// returns its key.
pub(super) fn ensure_chat(
    tx: &Connection,
    me: DeviceId,
    peer: DeviceId,
    now: i64,
) -> Result<ChatKey, StoreError> {
    // The chat exists on every call but the first: one read, and a write only then.
    if let Some(chat) = chat_key(tx, me, peer)? {
        return Ok(chat);
    }
    tx.prepare_cached(
        "INSERT INTO chats (peer, peer_name, created_at_ms) VALUES (?1, '', ?2)
         ON CONFLICT (peer) DO NOTHING",
    )?
    .execute(params![peer.0, now])?;
    chat_key(tx, me, peer)?.ok_or_else(|| StoreError::Corrupt {
        path: None,
        detail: "a chat created in this transaction is not there".to_owned(),
    })
}

fn refuse_self_chat(me: DeviceId, peer: DeviceId) -> Result<(), StoreError> {
    if me == peer {
        return Err(StoreError::Corrupt {
            path: None,
            detail: "a chat with this device's own id".to_owned(),
        });
    }
    Ok(())
}

/// Stores `messages` of `chat` by `author` (an author number), [`ROWS_PER_INSERT`] to a
/// statement; returns the rows inserted (fewer than given only with [`OnConflict::Ignore`]).
pub(super) fn insert_messages(
    tx: &Connection,
    on_conflict: OnConflict,
    chat: ChatKey,
    author: i64,
    messages: &[&Message],
    now: i64,
) -> Result<usize, StoreError> {
    let mut inserted = 0;
    let mut rest = messages;
    for (tier, rows) in ROWS_PER_INSERT.into_iter().enumerate() {
        let mut chunks = rest.chunks_exact(rows);
        if chunks.len() > 0 {
            let mut statement = tx.prepare_cached(cached_insert_sql(on_conflict, tier))?;
            for chunk in chunks.by_ref() {
                inserted += execute_insert(&mut statement, chat, author, chunk, now)?;
            }
        }
        rest = chunks.remainder();
    }
    Ok(inserted)
}

/// [`insert_sql`] for the rows of `ROWS_PER_INSERT[tier]`, built once.
pub(super) fn cached_insert_sql(on_conflict: OnConflict, tier: usize) -> &'static str {
    static SQL: OnceLock<[[String; 3]; 2]> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        [OnConflict::Fail, OnConflict::Ignore]
            .map(|on_conflict| ROWS_PER_INSERT.map(|rows| insert_sql(on_conflict, rows)))
    });
    &sql[usize::from(on_conflict == OnConflict::Ignore)][tier]
}

/// Binds `rows` to an [`insert_sql`] statement of as many rows and runs it.
fn execute_insert(
    statement: &mut rusqlite::Statement<'_>,
    chat: ChatKey,
    author: i64,
    rows: &[&Message],
    now: i64,
) -> Result<usize, StoreError> {
    statement.raw_bind_parameter(1, chat.id)?;
    statement.raw_bind_parameter(2, author)?;
    statement.raw_bind_parameter(3, now)?;
    for (row, message) in rows.iter().enumerate() {
        let first = row_parameters(row);
        statement.raw_bind_parameter(first, to_db(message.seq, "sequence number")?)?;
        statement.raw_bind_parameter(first + 1, to_db(message.lamport, "Lamport counter")?)?;
        statement.raw_bind_parameter(first + 2, message.sent_at_ms)?;
        statement.raw_bind_parameter(first + 3, message.text.as_str())?;
    }
    Ok(statement.raw_execute()?)
}

/// The key pinned for the chat with `peer` and the fingerprint expected to replace it;
/// `None` if there is no such chat.
#[allow(clippy::type_complexity)]
pub(super) fn chat_keys(
    tx: &Connection,
    peer: DeviceId,
) -> Result<Option<(Option<[u8; 32]>, Option<[u8; 16]>)>, StoreError> {
    let row: Option<(Option<Vec<u8>>, Option<Vec<u8>>)> = tx
        .prepare_cached("SELECT peer_key, expected_fingerprint FROM chats WHERE peer = ?1")?
        .query_row([peer.0], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(key, expected)| {
        let expected = expected
            .map(|bytes| {
                <[u8; 16]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt {
                    path: None,
                    detail: format!("an expected fingerprint of {} bytes", bytes.len()),
                })
            })
            .transpose()?;
        Ok((key_from_db(key)?, expected))
    })
    .transpose()
}

/// The statement of [`add_messages`].
pub(super) const ADD_MESSAGES_SQL: &str = "UPDATE chats SET message_count = message_count + ?2,
                      unread = unread + CASE WHEN ?3 THEN ?2 ELSE 0 END,
                      last_activity_ms = coalesce(?4, last_activity_ms)
      WHERE id = ?1";

/// Records `n` new messages in `chat` (`unread`: the peer's) and, if `activity` is given,
/// activity at that time: one statement.
pub(super) fn add_messages(
    tx: &Connection,
    chat: ChatKey,
    n: usize,
    unread: bool,
    activity: Option<i64>,
) -> Result<(), StoreError> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    tx.prepare_cached(ADD_MESSAGES_SQL)?
        .execute(params![chat.id, n, unread, activity])?;
    Ok(())
}

/// Where a new own message of `chat` takes its numbers from, read in one statement.
pub(super) struct ChatTail {
    /// The highest sequence number of this device's messages.
    pub last_own_seq: u64,
    /// The highest Lamport counter in the chat, either author, numbered or waiting.
    pub max_lamport: u64,
    /// Whether own messages wait for a number.
    pub any_waiting: bool,
}

/// The statement of [`chat_tail`].
pub(super) const CHAT_TAIL_SQL: &str =
    "SELECT (SELECT max(seq) FROM messages WHERE chat = ?1 AND author = ?2),
            (SELECT max(lamport) FROM messages WHERE chat = ?1),
            (SELECT max(lamport) FROM waiting WHERE chat = ?1),
            EXISTS (SELECT 1 FROM waiting WHERE chat = ?1)";

/// This device's last sequence number, the chat's highest Lamport counter (either author,
/// numbered or waiting) and whether any message waits, in one statement (the path of every
/// line typed in a live session, and of numbering the waiting ones).
pub(super) fn chat_tail(tx: &Connection, chat: ChatKey) -> Result<ChatTail, StoreError> {
    let (seq, messages_lamport, waiting_lamport, any_waiting): (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        bool,
    ) = tx
        .prepare_cached(CHAT_TAIL_SQL)?
        .query_row(params![chat.id, chat.me], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
    Ok(ChatTail {
        last_own_seq: from_db(seq.unwrap_or(0), "sequence number")?,
        max_lamport: from_db(
            messages_lamport
                .unwrap_or(0)
                .max(waiting_lamport.unwrap_or(0)),
            "Lamport counter",
        )?,
        any_waiting,
    })
}

/// The highest sequence number of `author`'s messages (an author number) in `chat`, 0 if
/// none.
pub(super) fn max_seq(tx: &Connection, chat: ChatKey, author: i64) -> Result<u64, StoreError> {
    let max: Option<i64> = tx
        .prepare_cached("SELECT max(seq) FROM messages WHERE chat = ?1 AND author = ?2")?
        .query_row(params![chat.id, author], |row| row.get(0))?;
    from_db(max.unwrap_or(0), "sequence number")
}

/// Own messages waiting for a number in `chat`.
pub(super) fn count_waiting(tx: &Connection, chat: ChatKey) -> Result<u64, StoreError> {
    let count: i64 = tx
        .prepare_cached("SELECT count(*) FROM waiting WHERE chat = ?1")?
        .query_row([chat.id], |row| row.get(0))?;
    from_db(count, "waiting count")
}

/// Numbers the own messages waiting in `chat`, in the order written, after
/// `max(after, last own seq)`, each with a Lamport counter above everything in the chat now
/// (saturating at the protocol's limit), and moves them to `messages`. Returns how many.
pub(super) fn number_waiting(
    tx: &Connection,
    chat: ChatKey,
    after: u64,
) -> Result<u64, StoreError> {
    let tail = chat_tail(tx, chat)?;
    let last = to_db(tail.last_own_seq.max(after), "sequence number")?;
    let lamport = to_db(tail.max_lamport, "Lamport counter")?;
    let limit = to_db(socketfalco_core::limits::MAX_COUNTER, "Lamport counter")?;
    let moved = tx
        .prepare_cached(
            "INSERT INTO messages (chat, author, seq, lamport, sent_at_ms, text, stored_at_ms)
             SELECT chat, ?2, ?3 + row_number() OVER (ORDER BY position),
                    min(?4 + row_number() OVER (ORDER BY position), ?5), sent_at_ms, text,
                    stored_at_ms
               FROM waiting WHERE chat = ?1",
        )?
        .execute(params![chat.id, chat.me, last, lamport, limit])?;
    tx.prepare_cached("DELETE FROM waiting WHERE chat = ?1")?
        .execute([chat.id])?;
    Ok(moved as u64)
}

/// How far the chat `chat` with `peer` has got: what opening it reports, and what a view
/// follows.
pub(super) fn resume_point(
    tx: &Connection,
    chat: ChatKey,
    peer: DeviceId,
) -> Result<ChatResume, StoreError> {
    Ok(ChatResume {
        received_up_to: max_seq(tx, chat, chat.peer())?,
        last_own_seq: max_seq(tx, chat, chat.me)?,
        unnumbered: count_waiting(tx, chat)?,
        delivered_up_to: delivered_up_to(tx, peer)?,
    })
}

/// The chat's delivery mark, 0 for an unknown chat.
pub(super) fn delivered_up_to(tx: &Connection, chat: DeviceId) -> Result<u64, StoreError> {
    let mark: Option<i64> = tx
        .prepare_cached("SELECT delivered_up_to FROM chats WHERE peer = ?1")?
        .query_row([chat.0], |row| row.get(0))
        .optional()?;
    from_db(mark.unwrap_or(0), "delivery mark")
}

pub(super) fn read_identity_device(tx: &Connection) -> Result<Option<DeviceId>, StoreError> {
    Ok(tx
        .query_row("SELECT device_id FROM identity WHERE id = 1", [], |row| {
            row.get(0).map(DeviceId)
        })
        .optional()?)
}

/// A message from the columns `seq, lamport, sent_at_ms, text` starting at `first`. The outer
/// result is SQLite's, the inner one a value check.
pub(super) fn read_message(
    row: &Row<'_>,
    first: usize,
) -> rusqlite::Result<Result<Message, StoreError>> {
    let seq: i64 = row.get(first)?;
    let lamport: i64 = row.get(first + 1)?;
    let sent_at_ms: i64 = row.get(first + 2)?;
    let text: String = row.get(first + 3)?;
    Ok((|| {
        Ok(Message {
            seq: from_db(seq, "sequence number")?,
            lamport: from_db(lamport, "Lamport counter")?,
            sent_at_ms,
            text,
        })
    })())
}

/// A protocol counter as SQLite stores it: refused above `i64::MAX`, never wrapped.
pub(super) fn to_db(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

/// A stored counter back as the protocol's `u64`; negative values are never written.
pub(super) fn from_db(value: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        path: None,
        detail: format!("negative {what} {value}"),
    })
}

/// A stored peer key back as 32 bytes (the schema's CHECK already guarantees the length).
pub(super) fn key_from_db(key: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, StoreError> {
    key.map(|bytes| {
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt {
            path: None,
            detail: format!("a peer key of {} bytes", bytes.len()),
        })
    })
    .transpose()
}

/// The 32 lowercase hexadecimal digits of a device id.
pub(super) fn hex(device: &DeviceId) -> String {
    device.0.iter().map(|b| format!("{b:02x}")).collect()
}
