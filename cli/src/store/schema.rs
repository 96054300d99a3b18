//! The database file: its name in the data folder, the settings every connection runs with
//! (WAL, full fsync, a busy timeout, foreign keys), and its versioned schema — the
//! migrations, each a step of `PRAGMA user_version`, and the check that refuses another
//! program's file or a newer SocketFalco's.

use super::{Database, StoreError};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::time::Duration;

/// The database's file name inside the data folder.
pub const DB_FILE_NAME: &str = "socketfalco.db";

/// How long a call waits for another process's write transaction before giving up. Writes
/// are short (one message, one batch), so reaching this means the other process is stuck.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// `PRAGMA application_id` of a SocketFalco database ("SFc1"), so that opening some other
/// SQLite file by mistake is refused instead of gaining our tables.
pub(super) const APPLICATION_ID: i32 = 0x5346_6331;

/// The schema, as an ordered list of migrations: entry `i` takes `user_version` from `i` to
/// `i + 1`, in a transaction of its own. To change the schema, append an entry; never edit
/// one that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    SCHEMA_V1,
    SCHEMA_V2,
    SCHEMA_V3,
    SCHEMA_V4_WAITING,
    SCHEMA_V5_COUNTS,
    SCHEMA_V6_INTEGER_KEYS,
    SCHEMA_V7_OPENINGS,
];

/// Version 1.
///
/// - All three tables are `STRICT`: a value of the wrong type (a text seq, a 15-byte id) is an
///   error instead of being stored; ids are additionally checked to be 16 bytes.
/// - `chats` and `messages` are `WITHOUT ROWID`: their natural keys (the peer's id; chat,
///   author, seq) are the primary keys, so no hidden rowid and no second b-tree for the key.
///   For `messages` this suits chat traffic (rows are mostly well under a few hundred
///   bytes); a long text (up to 64 KiB) spills into overflow pages as it would in a rowid
///   table.
/// - `(chat, author, seq)` is the message id within a chat: inserting a message twice is a
///   conflict, never a double. The same key answers "highest own / peer seq" and "own
///   messages from seq N" with an index seek.
/// - `messages_display` is the display order, `(lamport, author, seq)` = the core's
///   `order_key` (blobs compare bytewise like `[u8; 16]`; integers are never negative, so
///   they compare like `u64`); it also answers "highest Lamport in the chat" with one seek.
/// - `chats.delivered_up_to` is the peer's confirmed hold of our messages: the next own
///   sequence number is above it even if our own rows were lost (the core's `ChatHead`).
/// - Times are milliseconds since the Unix epoch: `sent_at_ms` is the author's clock (shown),
///   `stored_at_ms`, `created_at_ms`, `last_activity_ms` are this device's (bookkeeping).
const SCHEMA_V1: &str = "
CREATE TABLE identity (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    device_id     BLOB    NOT NULL CHECK (length(device_id) = 16),
    name          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE chats (
    peer             BLOB    NOT NULL PRIMARY KEY CHECK (length(peer) = 16),
    peer_name        TEXT    NOT NULL,
    last_address     TEXT,
    delivered_up_to  INTEGER NOT NULL DEFAULT 0 CHECK (delivered_up_to >= 0),
    created_at_ms    INTEGER NOT NULL,
    last_activity_ms INTEGER
) STRICT, WITHOUT ROWID;

CREATE TABLE messages (
    chat         BLOB    NOT NULL REFERENCES chats (peer),
    author       BLOB    NOT NULL CHECK (length(author) = 16),
    seq          INTEGER NOT NULL CHECK (seq >= 1),
    lamport      INTEGER NOT NULL CHECK (lamport >= 0),
    sent_at_ms   INTEGER NOT NULL,
    text         TEXT    NOT NULL,
    stored_at_ms INTEGER NOT NULL,
    PRIMARY KEY (chat, author, seq)
) STRICT, WITHOUT ROWID;

CREATE INDEX messages_display ON messages (chat, lamport, author, seq);
";

/// Version 2: the peer's static public key (X25519, 32 bytes), pinned to its device id on
/// the first encrypted connection (trust on first use) and checked at every later one.
/// `NULL` until then. Chats of a version-1 database start without a key and pin one at their
/// next connection.
const SCHEMA_V2: &str = "
ALTER TABLE chats ADD COLUMN peer_key BLOB CHECK (peer_key IS NULL OR length(peer_key) = 32);
";

/// Version 3: the fingerprint (16 bytes, see the core's `PublicKey::fingerprint_bytes`) of the
/// key the user accepted to replace `peer_key` ([`Database::expect_key`]: the peer
/// reinstalled and showed its fingerprint out of band). Only a key with this fingerprint is
/// accepted for the chat then; the first connection that presents it pins it and clears
/// this column (the core's `key_verdict`). `NULL`: no change expected.
const SCHEMA_V3: &str = "
ALTER TABLE chats ADD COLUMN expected_fingerprint BLOB
    CHECK (expected_fingerprint IS NULL OR length(expected_fingerprint) = 16);
";

/// Version 4: own messages written while no session with the peer was established wait
/// here, unnumbered, in the order written (`position`), until the next sync numbers them
/// and moves them to `messages` (docs/PROTOCOL.md §2: a device restored from an older copy
/// must not reuse numbers its peer holds, and only the peer's sync says how far that is).
/// `chats.delivered_up_to` is from now on exactly the peer's word (set at every sync), and
/// no longer a floor for numbering. Own messages of an older database keep their numbers.
const SCHEMA_V4_WAITING: &str = "
CREATE TABLE waiting (
    position     INTEGER PRIMARY KEY,
    chat         BLOB    NOT NULL REFERENCES chats (peer),
    lamport      INTEGER NOT NULL CHECK (lamport >= 1),
    sent_at_ms   INTEGER NOT NULL,
    text         TEXT    NOT NULL,
    stored_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX waiting_chat ON waiting (chat, position);
";

/// Version 5: per-chat counters kept in the transaction that changes them, so that `-ls`
/// never counts a history: `message_count` (messages of both authors, waiting ones
/// included) and `unread` (the peer's messages stored since a chat view of this chat was
/// last open on a terminal, [`Database::mark_read`]). A database of an earlier version counts
/// its messages once here; its messages start as read.
const SCHEMA_V5_COUNTS: &str = "
ALTER TABLE chats ADD COLUMN message_count INTEGER NOT NULL DEFAULT 0
    CHECK (message_count >= 0);
ALTER TABLE chats ADD COLUMN unread INTEGER NOT NULL DEFAULT 0 CHECK (unread >= 0);
UPDATE chats SET message_count =
    (SELECT count(*) FROM messages m WHERE m.chat = chats.peer)
  + (SELECT count(*) FROM waiting w WHERE w.chat = chats.peer);
";

/// Version 6: messages keyed by small integers instead of two 16-byte ids. `chats` gets an
/// integer `id` (its rowid; `peer` stays unique and is how every lookup starts); `messages`
/// and `waiting` name their chat by that id, and a message's `author` is 1 for the greater of
/// the chat's two device ids (bytewise) and 0 for the other, so `(lamport, author, seq)` still
/// sorts exactly as the core's `order_key` and both devices show one order. Every message
/// row and every entry of `messages_display` shrinks from about 45 bytes of key to a few, and
/// an insert costs a quarter less (docs/PERFORMANCE.md). The tables are rebuilt (SQLite
/// cannot change a primary key in place) in this migration's one transaction; the old
/// `chats` ids are handed out in creation order. `waiting_lamport` answers "highest Lamport
/// counter waiting in the chat" with one seek: without it every line written offline read all
/// the lines waiting before it (`storage/per_transaction/compose/1`, about 10,000 lines
/// written offline: 1.3k composes/s instead of 6.1k). `waiting_sent` finds the waiting twin
/// of a message the peer sends back after a restore by its time of writing, instead of reading
/// every line waiting once per message returned.
const SCHEMA_V6_INTEGER_KEYS: &str = "
CREATE TABLE chats_v6 (
    id                   INTEGER PRIMARY KEY,
    peer                 BLOB    NOT NULL UNIQUE CHECK (length(peer) = 16),
    peer_name            TEXT    NOT NULL,
    last_address         TEXT,
    delivered_up_to      INTEGER NOT NULL DEFAULT 0 CHECK (delivered_up_to >= 0),
    created_at_ms        INTEGER NOT NULL,
    last_activity_ms     INTEGER,
    peer_key             BLOB    CHECK (peer_key IS NULL OR length(peer_key) = 32),
    expected_fingerprint BLOB
        CHECK (expected_fingerprint IS NULL OR length(expected_fingerprint) = 16),
    message_count        INTEGER NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    unread               INTEGER NOT NULL DEFAULT 0 CHECK (unread >= 0)
) STRICT;

INSERT INTO chats_v6 (peer, peer_name, last_address, delivered_up_to, created_at_ms,
                      last_activity_ms, peer_key, expected_fingerprint, message_count, unread)
    SELECT peer, peer_name, last_address, delivered_up_to, created_at_ms, last_activity_ms,
           peer_key, expected_fingerprint, message_count, unread
      FROM chats ORDER BY created_at_ms, peer;

CREATE TABLE messages_v6 (
    chat         INTEGER NOT NULL REFERENCES chats_v6 (id),
    author       INTEGER NOT NULL CHECK (author IN (0, 1)),
    seq          INTEGER NOT NULL CHECK (seq >= 1),
    lamport      INTEGER NOT NULL CHECK (lamport >= 0),
    sent_at_ms   INTEGER NOT NULL,
    text         TEXT    NOT NULL,
    stored_at_ms INTEGER NOT NULL,
    PRIMARY KEY (chat, author, seq)
) STRICT, WITHOUT ROWID;

-- The author number: 1 if the author's id is the greater of the chat's two ids. A message
-- is the peer's (its author is the chat's peer) or this device's.
INSERT INTO messages_v6 (chat, author, seq, lamport, sent_at_ms, text, stored_at_ms)
    SELECT c.id,
           CASE WHEN m.author = m.chat
                THEN m.chat > (SELECT device_id FROM identity WHERE id = 1)
                ELSE m.author > m.chat END,
           m.seq, m.lamport, m.sent_at_ms, m.text, m.stored_at_ms
      FROM messages m JOIN chats_v6 c ON c.peer = m.chat;

CREATE TABLE waiting_v6 (
    position     INTEGER PRIMARY KEY,
    chat         INTEGER NOT NULL REFERENCES chats_v6 (id),
    lamport      INTEGER NOT NULL CHECK (lamport >= 1),
    sent_at_ms   INTEGER NOT NULL,
    text         TEXT    NOT NULL,
    stored_at_ms INTEGER NOT NULL
) STRICT;

INSERT INTO waiting_v6 (position, chat, lamport, sent_at_ms, text, stored_at_ms)
    SELECT w.position, c.id, w.lamport, w.sent_at_ms, w.text, w.stored_at_ms
      FROM waiting w JOIN chats_v6 c ON c.peer = w.chat;

DROP TABLE messages;
DROP TABLE waiting;
DROP TABLE chats;
ALTER TABLE chats_v6 RENAME TO chats;
ALTER TABLE messages_v6 RENAME TO messages;
ALTER TABLE waiting_v6 RENAME TO waiting;
CREATE INDEX messages_display ON messages (chat, lamport, author, seq);
CREATE INDEX waiting_chat ON waiting (chat, position);
CREATE INDEX waiting_lamport ON waiting (chat, lamport);
CREATE INDEX waiting_sent ON waiting (chat, sent_at_ms);
";

/// Version 7: how many connections opened each chat (`Store::open_chat`), so that a chat that
/// a listener's connection created for a first contact and that never became a chat (the
/// stranger left before its sync) is forgotten with its pin only if no other connection —
/// of another process on the same data folder too — opened it meanwhile. Chats from before
/// count 0: never forgotten.
const SCHEMA_V7_OPENINGS: &str = "
ALTER TABLE chats ADD COLUMN openings INTEGER NOT NULL DEFAULT 0 CHECK (openings >= 0);
";

/// Prepared statements kept per connection: more than the store uses, so none is evicted.
const STATEMENT_CACHE_CAPACITY: usize = 64;

impl Database {
    /// Per-connection settings. Order matters: the busy timeout first, so that even the
    /// journal-mode switch waits for another process instead of failing.
    pub(super) fn configure(&mut self) -> Result<(), StoreError> {
        // Two processes on one data folder must both work: wait for the other's write.
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer nor the other way round, and a commit is one
        // write + fsync of the log (grown for a session: `log_file`). Persistent in the file; a
        // no-op when already set. A file system that cannot do WAL keeps the rollback
        // journal, which is just as durable (with FULL below) and, with the busy timeout,
        // just as correct, only less concurrent: so the answer is not checked.
        let _mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        // FULL: fsync the log at every commit, so a committed message survives power loss
        // (NORMAL in WAL mode could lose the last commits). A message is shown as sent, and
        // a received one acked, only after its commit.
        // foreign_keys: a message always belongs to an existing chat.
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        // A stable query plan: without it SQLite re-prepares (re-compiles) a cached statement
        // whenever a parameter it may plan around is bound to a new value — here the
        // `SELECT max(seq) … WHERE chat = ?1 AND author = ?2` of every persisted batch,
        // about a tenth of the storage thread's time. Our queries have one good plan each.
        self.conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        // Room for every statement the store prepares (about 40) and the transaction
        // controls: rusqlite's default of 16 let a group evict and re-parse its own.
        self.conn
            .set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        Ok(())
    }

    /// Applies the migrations this database lacks, one transaction each, or refuses a
    /// database newer than this build.
    pub(super) fn migrate(&mut self) -> Result<(), StoreError> {
        let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        // Cheap path: a read, no write lock, when the schema is current (every open but the
        // first).
        if self.schema_version(supported)? == supported {
            return Ok(());
        }
        loop {
            let path = &self.path;
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| StoreError::from(e).at(path))?;
            // Read again under the write lock: another process may have migrated meanwhile.
            let version = check_version(&tx, path, supported)?;
            if version == supported {
                return Ok(());
            }
            let index = usize::try_from(version).map_err(|_| StoreError::Corrupt {
                path: Some(path.clone()),
                detail: format!("schema version {version}"),
            })?;
            let step = (|| -> rusqlite::Result<()> {
                tx.execute_batch(MIGRATIONS[index])?;
                tx.pragma_update(None, "user_version", version + 1)?;
                tx.pragma_update(None, "application_id", APPLICATION_ID)?;
                tx.commit()
            })();
            step.map_err(|e| StoreError::from(e).at(path))?;
        }
    }

    fn schema_version(&self, supported: i64) -> Result<i64, StoreError> {
        check_version(&self.conn, &self.path, supported)
    }
}

/// The schema version, checked: this build knows it, and the file is ours.
fn check_version(conn: &Connection, path: &Path, supported: i64) -> Result<i64, StoreError> {
    let read = || -> rusqlite::Result<(i32, i64)> {
        Ok((
            conn.pragma_query_value(None, "application_id", |row| row.get(0))?,
            conn.pragma_query_value(None, "user_version", |row| row.get(0))?,
        ))
    };
    let (application_id, version) = read().map_err(|e| StoreError::from(e).at(path))?;
    if application_id != 0 && application_id != APPLICATION_ID {
        return Err(StoreError::NotSocketFalco {
            path: path.to_owned(),
            application_id,
        });
    }
    if version > supported {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found: version,
            supported,
        });
    }
    if version < 0 {
        return Err(StoreError::Corrupt {
            path: Some(path.to_owned()),
            detail: format!("schema version {version}"),
        });
    }
    Ok(version)
}
