//! The CLI's durable storage: one SQLite database, `socketfalco.db` in the data folder, that
//! owns everything SocketFalco keeps on disk — this device's identity, one chat per peer
//! device, and every message of every chat, both authors. [`Database`] implements the core's
//! durability contract ([`Store`], with exactly the semantics of the core's in-memory twin
//! `harness::MemoryStore`, pinned peer keys included) and adds what the CLI shows and edits:
//! the identity, the chat list, a chat's history, prefix lookup of chats, a chat's last
//! address, and accepting a peer's new key by its fingerprint ([`Database::expect_key`]).
//! The peer's key is checked and pinned inside the transaction of [`Store::open_chat`], so
//! two processes racing on a first contact cannot both pin.
//!
//! This device's own secret key is not in the database but in a file of its own beside it
//! (see `keys`), so that copying the database does not copy the secret.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction, committed with a full fsync before the
//! call returns, so a message is durable before it is shown as sent or acked, even across a
//! power loss. Two processes may use one data folder at once (a listener running while the
//! user writes offline with another process): WAL lets readers run beside the writer,
//! `BEGIN IMMEDIATE` takes the write lock up front so two writers queue instead of
//! deadlocking on a read→write upgrade, and a busy timeout makes the later one wait.
//!
//! The schema is versioned with `PRAGMA user_version` and grows by appending to
//! `MIGRATIONS`; a database written by a newer build is refused, never downgraded.

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use rusqlite::{Row, TransactionBehavior};
use socketfalco_core::{
    check_name, check_text, key_verdict, ChatHead, ChatOpening, ChatResume, DeviceId, KeyVerdict,
    Message, NameError, PeerHello, PublicKey, Store, TextError,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The database's file name inside the data folder.
pub const DB_FILE_NAME: &str = "socketfalco.db";

/// How long a call waits for another process's write transaction before giving up. Writes
/// are short (one message, one batch), so reaching this means the other process is stuck.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// `PRAGMA application_id` of a SocketFalco database ("SFc1"), so that opening some other
/// SQLite file by mistake is refused instead of gaining our tables.
const APPLICATION_ID: i32 = 0x5346_6331;

/// The schema, as an ordered list of migrations: entry `i` takes `user_version` from `i` to
/// `i + 1`, in a transaction of its own. To change the schema, append an entry; never edit
/// one that has shipped.
const MIGRATIONS: &[&str] = &[
    SCHEMA_V1,
    SCHEMA_V2,
    SCHEMA_V3,
    SCHEMA_V4_WAITING,
    SCHEMA_V5_COUNTS,
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

/// What [`Database::expect_key`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyExpectation {
    /// The key is expected now; `old` is the key pinned until it connects (refused from now
    /// on).
    Expected {
        /// The key pinned so far.
        old: [u8; 32],
    },
    /// The pinned key already has that fingerprint: nothing to wait for (any earlier
    /// expectation is cleared).
    AlreadyPinned,
    /// No key is pinned for the chat: the next connection pins whatever key it proves, so
    /// nothing was changed.
    NothingPinned,
}

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

/// This device: its id (the key of every chat's own messages) and its display name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// This device's id, generated once.
    pub device: DeviceId,
    /// This device's display name, as sent in hellos.
    pub name: String,
}

/// One line of the chat list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatSummary {
    /// The peer device: the key of the chat.
    pub peer: DeviceId,
    /// The peer's name as of its last hello; empty if it never said hello yet.
    pub peer_name: String,
    /// Where the peer was last reached, if recorded with [`Database::set_last_address`].
    pub last_address: Option<String>,
    /// Messages in the chat, both authors.
    pub messages: u64,
    /// Own messages the peer is not known to hold yet.
    pub waiting: u64,
    /// The peer's messages stored since a chat view of this chat was last open on a
    /// terminal.
    pub unread: u64,
    /// When a message was last written or received here (this device's clock); `None` for a
    /// chat without messages.
    pub last_activity_ms: Option<i64>,
    /// The peer's static public key pinned on first contact; `None` before the first
    /// encrypted connection.
    pub peer_key: Option<[u8; 32]>,
}

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

/// A chat a prefix could mean, listed in [`StoreError::AmbiguousChat`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatCandidate {
    /// The peer device.
    pub peer: DeviceId,
    /// Its last known name.
    pub peer_name: String,
}

/// Why a storage call failed. Nothing of a failed call took effect.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The data folder could not be created.
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite failed (I/O error, full disk, corrupt file, …).
    Sqlite {
        /// The database file, when known.
        path: Option<PathBuf>,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Another process kept the database locked for longer than [`BUSY_TIMEOUT`].
    Locked {
        /// The database file, when known.
        path: Option<PathBuf>,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer SocketFalco with a schema this build does not
    /// know. It is left untouched.
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The file is some other program's SQLite database.
    NotSocketFalco {
        /// The database file.
        path: PathBuf,
        /// Its `PRAGMA application_id`.
        application_id: i32,
    },
    /// The call needs this device's identity, and none has been created yet.
    NoIdentity {
        /// The database file, when known.
        path: Option<PathBuf>,
    },
    /// [`Database::create_identity`] when this device already has one.
    IdentityExists {
        /// The existing identity's device id.
        device: DeviceId,
    },
    /// A display name breaks the name rules.
    InvalidName(NameError),
    /// A message text breaks the text rules.
    InvalidText(TextError),
    /// A sequence number, Lamport counter or delivery mark above `i64::MAX`, which SQLite
    /// cannot store as an integer (refused rather than wrapped).
    OutOfRange {
        /// What the value is.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// The database holds a value no SocketFalco writes.
    Corrupt {
        /// The database file, when known.
        path: Option<PathBuf>,
        /// What is wrong.
        detail: String,
    },
    /// A chat prefix with something other than hexadecimal digits and hyphens, or empty.
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
    },
    /// No chat's peer id starts with the prefix (or no chat with that peer, for calls that
    /// take a device id).
    NoSuchChat {
        /// The prefix or device id as given.
        prefix: String,
    },
    /// More than one chat's peer id starts with the prefix.
    AmbiguousChat {
        /// The prefix as given.
        prefix: String,
        /// Every chat it matches, in id order.
        candidates: Vec<ChatCandidate>,
    },
}

impl StoreError {
    /// Fills in the database path of errors that were made without it.
    fn at(mut self, db: &Path) -> StoreError {
        match &mut self {
            StoreError::Sqlite { path, .. }
            | StoreError::Locked { path, .. }
            | StoreError::NoIdentity { path }
            | StoreError::Corrupt { path, .. }
                if path.is_none() =>
            {
                *path = Some(db.to_owned());
            }
            _ => {}
        }
        self
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(source: rusqlite::Error) -> StoreError {
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Locked { path: None, source }
            }
            _ => StoreError::Sqlite { path: None, source },
        }
    }
}

/// ` in PATH` or nothing.
struct In<'a>(&'a Option<PathBuf>);

impl fmt::Display for In<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, " in {}", path.display()),
            None => Ok(()),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::CreateDir { path, source } => {
                write!(
                    f,
                    "cannot create the data folder {}: {source}",
                    path.display()
                )
            }
            StoreError::Sqlite { path, source } => {
                write!(f, "database error{}: {source}", In(path))
            }
            StoreError::Locked { path, .. } => write!(
                f,
                "the database{} stayed locked by another process for more than {} s; \
                 try again, or stop the other SocketFalco process",
                In(path),
                BUSY_TIMEOUT.as_secs()
            ),
            StoreError::NewerSchema {
                path,
                found,
                supported,
            } => write!(
                f,
                "the database {} has schema version {found}, but this SocketFalco only knows \
                 versions up to {supported}: it was written by a newer SocketFalco. Use that \
                 version; this one does not downgrade a database",
                path.display()
            ),
            StoreError::NotSocketFalco {
                path,
                application_id,
            } => write!(
                f,
                "{} is not a SocketFalco database (its application id is {application_id:#x})",
                path.display()
            ),
            StoreError::NoIdentity { path } => {
                write!(f, "this device has no identity yet{}", In(path))
            }
            StoreError::IdentityExists { device } => {
                write!(f, "this device already has an identity ({device})")
            }
            StoreError::InvalidName(e) => write!(f, "invalid name: {e}"),
            StoreError::InvalidText(e) => write!(f, "invalid message: {e}"),
            StoreError::OutOfRange { what, value } => write!(
                f,
                "{what} {value} is too large to store (the limit is {})",
                i64::MAX
            ),
            StoreError::Corrupt { path, detail } => {
                write!(
                    f,
                    "the database{} holds an invalid value: {detail}",
                    In(path)
                )
            }
            StoreError::InvalidPrefix { prefix } => write!(
                f,
                "{prefix:?} is not the start of a device id (hexadecimal digits, hyphens allowed)"
            ),
            StoreError::NoSuchChat { prefix } => {
                write!(f, "no chat with a device whose id starts with {prefix}")
            }
            StoreError::AmbiguousChat { prefix, candidates } => {
                write!(
                    f,
                    "{prefix} matches {} chats; give more of the device id:",
                    candidates.len()
                )?;
                for c in candidates {
                    if c.peer_name.is_empty() {
                        write!(f, " {}", c.peer)?;
                    } else {
                        write!(f, " {} ({})", c.peer, c.peer_name)?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::CreateDir { source, .. } => Some(source),
            StoreError::Sqlite { source, .. } | StoreError::Locked { source, .. } => Some(source),
            StoreError::InvalidName(e) => Some(e),
            StoreError::InvalidText(e) => Some(e),
            _ => None,
        }
    }
}

/// The SocketFalco database of one data folder. See the module doc.
#[derive(Debug)]
pub struct Database {
    conn: Connection,
    path: PathBuf,
    /// This device's id, once known (it never changes once created).
    me: Option<DeviceId>,
    /// A group commit is open ([`Store::begin_group`]): calls run in savepoints.
    in_group: bool,
    /// The wall clock for bookkeeping times (`stored_at_ms`, `last_activity_ms`,
    /// `created_at_ms`); [`wall_clock_ms`] except in tests.
    clock: fn() -> i64,
}

impl Database {
    /// Opens (creating if needed) the database in the data folder `dir`, creating the folder
    /// too, and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Database, StoreError> {
        create_private_dir(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DB_FILE_NAME);
        let conn = Connection::open(&path).map_err(|e| StoreError::from(e).at(&path))?;
        let mut db = Database {
            conn,
            path,
            me: None,
            in_group: false,
            clock: wall_clock_ms,
        };
        // Switching to WAL (and the first migration) can report "busy" at once, without
        // waiting out the busy timeout, when another process opens the same new database at
        // the same instant (SQLite does not wait where waiting could deadlock; seen on
        // Windows). Retry those with a short pause, within the same overall timeout.
        let started = std::time::Instant::now();
        loop {
            match db.configure().and_then(|()| db.migrate()) {
                Err(StoreError::Locked { .. }) if started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                result => {
                    result.map_err(|e| e.at(&db.path))?;
                    break;
                }
            }
        }
        db.me = db.identity()?.map(|i| i.device);
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Per-connection settings. Order matters: the busy timeout first, so that even the
    /// journal-mode switch waits for another process instead of failing.
    fn configure(&mut self) -> Result<(), StoreError> {
        // Two processes on one data folder must both work: wait for the other's write.
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer nor the other way round, and a commit is one
        // append + fsync of the log. Persistent in the file; a no-op when already set. A file
        // system that cannot do WAL keeps the rollback journal, which is just as durable
        // (with FULL below) and, with the busy timeout, just as correct, only less
        // concurrent: so the answer is not checked.
        let _mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        // FULL: fsync the log at every commit, so a committed message survives power loss
        // (NORMAL in WAL mode could lose the last commits). A message is shown as sent, and
        // a received one acked, only after its commit.
        // foreign_keys: a message always belongs to an existing chat.
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        Ok(())
    }

    /// Applies the migrations this database lacks, one transaction each, or refuses a
    /// database newer than this build.
    fn migrate(&mut self) -> Result<(), StoreError> {
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

    /// This device's id, or [`StoreError::NoIdentity`].
    fn me(&mut self) -> Result<DeviceId, StoreError> {
        if let Some(me) = self.me {
            return Ok(me);
        }
        // Another process may have created it since this one opened the database.
        let me = self
            .identity()?
            .map(|i| i.device)
            .ok_or(StoreError::NoIdentity {
                path: Some(self.path.clone()),
            })?;
        self.me = Some(me);
        Ok(me)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits it; on any error nothing
    /// of it is kept (the transaction rolls back when dropped).
    fn write<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = (|| {
            if self.in_group {
                // Inside a group commit: a savepoint, so that a failing call leaves no trace
                // and the others stand; the group's COMMIT makes it durable.
                let savepoint = self.conn.savepoint()?;
                let value = f(&savepoint)?;
                savepoint.commit()?;
                return Ok(value);
            }
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e: StoreError| e.at(&self.path))
    }

    /// Runs `f` in one read transaction: a consistent snapshot even while another process
    /// writes. Never upgraded to a write, so it cannot deadlock with one.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = (|| {
            if self.in_group {
                // Inside a group commit's transaction already.
                return f(&self.conn);
            }
            let tx = self.conn.unchecked_transaction()?;
            f(&tx)
            // Dropping `tx` ends the read transaction.
        })();
        result.map_err(|e: StoreError| e.at(&self.path))
    }

    /// This device's identity, if created yet.
    pub fn identity(&self) -> Result<Option<Identity>, StoreError> {
        let identity = self
            .conn
            .query_row(
                "SELECT device_id, name FROM identity WHERE id = 1",
                [],
                |row| {
                    Ok(Identity {
                        device: DeviceId(row.get(0)?),
                        name: row.get(1)?,
                    })
                },
            )
            .optional();
        identity.map_err(|e| StoreError::from(e).at(&self.path))
    }

    /// Creates this device's identity. Refused if it has one already (a device id never
    /// changes: it is the key of every chat on the peers' side) or if the name is invalid.
    pub fn create_identity(&mut self, device: DeviceId, name: &str) -> Result<(), StoreError> {
        check_name(name).map_err(StoreError::InvalidName)?;
        let now = (self.clock)();
        self.write(|tx| {
            if let Some(existing) = tx
                .query_row("SELECT device_id FROM identity WHERE id = 1", [], |row| {
                    row.get::<_, [u8; 16]>(0)
                })
                .optional()?
            {
                return Err(StoreError::IdentityExists {
                    device: DeviceId(existing),
                });
            }
            tx.execute(
                "INSERT INTO identity (id, device_id, name, created_at_ms) VALUES (1, ?1, ?2, ?3)",
                params![device.0, name, now],
            )?;
            Ok(())
        })?;
        self.me = Some(device);
        Ok(())
    }

    /// Renames this device; returns the old name.
    pub fn rename(&mut self, new_name: &str) -> Result<String, StoreError> {
        check_name(new_name).map_err(StoreError::InvalidName)?;
        self.write(|tx| {
            let old: String = tx
                .query_row("SELECT name FROM identity WHERE id = 1", [], |row| {
                    row.get(0)
                })
                .optional()?
                .ok_or(StoreError::NoIdentity { path: None })?;
            tx.execute("UPDATE identity SET name = ?1 WHERE id = 1", [new_name])?;
            Ok(old)
        })
    }

    /// Every chat, the most recently active first (chats without messages last, newest
    /// first).
    pub fn list_chats(&self) -> Result<Vec<ChatSummary>, StoreError> {
        self.read(|tx| {
            // Without an identity there are no own messages, so nothing waits.
            let me = match self.me {
                Some(me) => Some(me.0),
                None => read_identity_device(tx)?.map(|d| d.0),
            };
            let mut stmt = tx.prepare_cached(
                "SELECT c.peer, c.peer_name, c.last_address, c.last_activity_ms,
                        c.message_count,
                        (SELECT COUNT(*) FROM messages m
                          WHERE m.chat = c.peer AND m.author = ?1 AND m.seq > c.delivered_up_to)
                          + (SELECT COUNT(*) FROM waiting w WHERE w.chat = c.peer),
                        c.peer_key, c.unread
                   FROM chats c
                  ORDER BY c.last_activity_ms DESC NULLS LAST, c.created_at_ms DESC, c.peer",
            )?;
            let rows = stmt.query_map([me], |row| {
                Ok((
                    (
                        DeviceId(row.get(0)?),
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, Option<i64>>(3)?,
                    ),
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, Option<Vec<u8>>>(6)?,
                    row.get::<_, i64>(7)?,
                ))
            })?;
            let mut chats = Vec::new();
            for row in rows {
                let (
                    (peer, peer_name, last_address, last_activity_ms),
                    messages,
                    waiting,
                    key,
                    unread,
                ) = row?;
                chats.push(ChatSummary {
                    peer,
                    peer_name,
                    last_address,
                    messages: from_db(messages, "message count")?,
                    waiting: from_db(waiting, "waiting count")?,
                    unread: from_db(unread, "unread count")?,
                    last_activity_ms,
                    peer_key: key_from_db(key)?,
                });
            }
            Ok(chats)
        })
    }

    /// The chat whose peer id starts with `prefix`: hexadecimal digits in any case, with or
    /// without the hyphens of the usual uuid form.
    pub fn find_chat(&self, prefix: &str) -> Result<DeviceId, StoreError> {
        let wanted: String = prefix
            .trim()
            .chars()
            .filter(|&c| c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if wanted.is_empty() || wanted.len() > 32 || !wanted.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(StoreError::InvalidPrefix {
                prefix: prefix.to_owned(),
            });
        }
        // Few chats per device: compare in Rust rather than teach SQL the uuid text form.
        let mut candidates: Vec<ChatCandidate> = self.read(|tx| {
            let mut stmt = tx.prepare_cached("SELECT peer, peer_name FROM chats ORDER BY peer")?;
            let rows = stmt.query_map([], |row| {
                Ok(ChatCandidate {
                    peer: DeviceId(row.get(0)?),
                    peer_name: row.get(1)?,
                })
            })?;
            let mut matching = Vec::new();
            for row in rows {
                let candidate = row?;
                if hex(&candidate.peer).starts_with(&wanted) {
                    matching.push(candidate);
                }
            }
            Ok(matching)
        })?;
        match candidates.len() {
            0 => Err(StoreError::NoSuchChat {
                prefix: prefix.to_owned(),
            }),
            1 => Ok(candidates.remove(0).peer),
            _ => Err(StoreError::AmbiguousChat {
                prefix: prefix.to_owned(),
                candidates,
            }),
        }
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
            let me = match self.me {
                Some(me) => me,
                None => read_identity_device(tx)?.ok_or(StoreError::NoIdentity { path: None })?,
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
                stmt.query(params![peer.0, me.0, since, limit])?
            } else {
                stmt.query(params![peer.0, me.0, since])?
            };
            while let Some(row) = rows.next()? {
                let author = DeviceId(row.get(0)?);
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

    /// A chat view of the chat with `peer` is open on a terminal, showing its newest lines:
    /// everything in it is read now.
    pub fn mark_read(&mut self, peer: DeviceId) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.prepare_cached("UPDATE chats SET unread = 0 WHERE peer = ?1 AND unread != 0")?
                .execute([peer.0])?;
            Ok(())
        })
    }

    /// Records where `peer` was last reached (for reconnecting later). The chat must exist
    /// ([`Store::open_chat`] creates it); a temporary session must not call this.
    pub fn set_last_address(&mut self, peer: DeviceId, address: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE chats SET last_address = ?2 WHERE peer = ?1",
                params![peer.0, address],
            )?;
            if changed == 0 {
                return Err(StoreError::NoSuchChat {
                    prefix: peer.to_string(),
                });
            }
            Ok(())
        })
    }

    /// Accepts, for the chat with `peer`, the key whose fingerprint is `fingerprint` (what
    /// the peer's `--fingerprint` shows, compared out of band): from now on only a key with
    /// that fingerprint is accepted for the peer's device id, and the first connection that
    /// presents it pins it ([`Store::open_chat`]). The key pinned until then is refused from
    /// now on. In one transaction; the chat must exist and have a pinned key (without one the
    /// next connection pins whatever key it proves, and this changes nothing).
    pub fn expect_key(
        &mut self,
        peer: DeviceId,
        fingerprint: [u8; 16],
    ) -> Result<KeyExpectation, StoreError> {
        self.write(|tx| {
            let (pinned, _) = chat_keys(tx, peer)?.ok_or_else(|| StoreError::NoSuchChat {
                prefix: peer.to_string(),
            })?;
            let Some(pinned) = pinned else {
                return Ok(KeyExpectation::NothingPinned);
            };
            if PublicKey(pinned).fingerprint_bytes() == fingerprint {
                // The pinned key is the one: nothing to wait for.
                tx.prepare_cached("UPDATE chats SET expected_fingerprint = NULL WHERE peer = ?1")?
                    .execute([peer.0])?;
                return Ok(KeyExpectation::AlreadyPinned);
            }
            tx.prepare_cached("UPDATE chats SET expected_fingerprint = ?2 WHERE peer = ?1")?
                .execute(params![peer.0, fingerprint])?;
            Ok(KeyExpectation::Expected { old: pinned })
        })
    }

    /// The key pinned for `peer` and the fingerprint of the key expected to replace it
    /// ([`Database::expect_key`]); `None` for an unknown chat.
    #[allow(clippy::type_complexity)]
    pub fn key_state(
        &self,
        peer: DeviceId,
    ) -> Result<Option<(Option<[u8; 32]>, Option<[u8; 16]>)>, StoreError> {
        self.read(|tx| chat_keys(tx, peer))
    }

    /// Whether there is a chat with `peer`.
    pub fn chat_exists(&self, peer: DeviceId) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM chats WHERE peer = ?1", [peer.0], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| StoreError::from(e).at(&self.path))
    }
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
            let me = match self.me {
                Some(me) => me,
                None => read_identity_device(tx)?.ok_or(StoreError::NoIdentity { path: None })?,
            };
            let delivered_up_to = delivered_up_to(tx, peer)?;
            let mut page = Vec::new();
            let stored = format!(
                "SELECT author, seq, lamport, sent_at_ms, text FROM messages
                  WHERE chat = ?1 AND (lamport, author, seq) {op} (?2, ?3, ?4)
                  ORDER BY lamport {order}, author {order}, seq {order} LIMIT ?5"
            );
            let mut stmt = tx.prepare_cached(&stored)?;
            let mut rows = stmt.query(params![peer.0, lamport, bound.author.0, seq, limit])?;
            while let Some(row) = rows.next()? {
                page.push((DeviceId(row.get(0)?), read_message(row, 1)??));
            }
            // Own messages waiting for a number sort as (lamport, me, 0).
            let waiting = format!(
                "SELECT 0, lamport, sent_at_ms, text FROM waiting
                  WHERE chat = ?1 AND (lamport, ?6, 0) {op} (?2, ?3, ?4)
                  ORDER BY lamport {order}, position {order} LIMIT ?5"
            );
            let mut stmt = tx.prepare_cached(&waiting)?;
            let mut rows =
                stmt.query(params![peer.0, lamport, bound.author.0, seq, limit, me.0])?;
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
            Ok(page
                .into_iter()
                .map(|(author, message)| {
                    let mine = author == me;
                    StoredMessage {
                        author,
                        mine,
                        delivered: !mine || (message.seq != 0 && message.seq <= delivered_up_to),
                        message,
                    }
                })
                .collect())
        })
    }

    /// The chat with `peer`'s message and unread counts (see [`ChatSummary`]), read from its
    /// counters; `None` for an unknown chat.
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
            let unread: Option<i64> = tx
                .prepare_cached("SELECT unread FROM chats WHERE peer = ?1")?
                .query_row([peer.0], |row| row.get(0))
                .optional()?;
            let Some(unread) = unread.filter(|&n| n > 0) else {
                return Ok(None);
            };
            let row: Option<(i64, i64)> = tx
                .prepare_cached(
                    "SELECT lamport, seq FROM messages WHERE chat = ?1 AND author = ?1
                      ORDER BY seq DESC LIMIT 1 OFFSET ?2",
                )?
                .query_row(params![peer.0, unread - 1], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            // More unread than stored (a count from an older copy): everything is unread.
            let row = match row {
                Some(row) => Some(row),
                None => tx
                    .prepare_cached(
                        "SELECT lamport, seq FROM messages WHERE chat = ?1 AND author = ?1
                          ORDER BY seq LIMIT 1",
                    )?
                    .query_row([peer.0], |row| Ok((row.get(0)?, row.get(1)?)))
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
                "INSERT INTO chats (peer, peer_name, created_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (peer) DO UPDATE SET peer_name = excluded.peer_name",
            )?
            .execute(params![chat.0, peer.name, now])?;
            if let Some((key, KeyVerdict::Pin)) = verdict {
                tx.prepare_cached(
                    "UPDATE chats SET peer_key = ?2, expected_fingerprint = NULL WHERE peer = ?1",
                )?
                .execute(params![chat.0, key])?;
            }
            Ok(ChatOpening::Opened(ChatResume {
                received_up_to: max_seq(tx, chat, chat)?,
                last_own_seq: max_seq(tx, chat, me)?,
                unnumbered: count_waiting(tx, chat)?,
                delivered_up_to: delivered_up_to(tx, chat)?,
            }))
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
            ensure_chat(tx, peer, now)?;
            if let Some(after) = number_after {
                number_waiting(tx, peer, me, after)?;
            }
            let mut head = ChatHead {
                last_own_seq: max_seq(tx, peer, me)?.max(number_after.unwrap_or(0)),
                max_lamport: max_lamport(tx, peer)?,
            };
            let mut messages = Vec::with_capacity(texts.len());
            for text in texts {
                let mut message = head
                    .compose(text, sent_at_ms)
                    .map_err(StoreError::InvalidText)?;
                head.observe(&message, true);
                if number_after.is_some() {
                    // A plain INSERT: the sequence number is new by construction, and a
                    // conflict would be a bug to report, not to paper over.
                    insert_message(tx, INSERT, peer, me, &message, now)?;
                } else {
                    message.seq = 0;
                    tx.prepare_cached(
                        "INSERT INTO waiting (chat, lamport, sent_at_ms, text, stored_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        peer.0,
                        to_db(message.lamport, "Lamport counter")?,
                        message.sent_at_ms,
                        message.text,
                        now
                    ])?;
                }
                messages.push(message);
            }
            if !messages.is_empty() {
                touch(tx, peer, now)?;
                count_messages(tx, peer, messages.len(), false)?;
            }
            Ok(messages)
        })
    }

    fn number_waiting(&mut self, peer: DeviceId, after: u64) -> Result<u64, StoreError> {
        let me = self.me()?;
        // Cheap path, called whenever the send window has room: a read, no write lock.
        if self.read(|tx| count_waiting(tx, peer))? == 0 {
            return Ok(0);
        }
        self.write(|tx| number_waiting(tx, peer, me, after))
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
            let mut stmt = tx.prepare_cached(
                "SELECT seq, lamport, sent_at_ms, text FROM messages
                  WHERE chat = ?1 AND author = ?2 AND seq >= ?3
                  ORDER BY seq LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![peer.0, me.0, from, limit], |row| {
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
        let now = (self.clock)();
        self.write(|tx| {
            ensure_chat(tx, peer, now)?;
            // As the core's MemoryStore: the peer's messages are kept in sequence order, so
            // a message at or below the highest one stored is already here and is skipped.
            // INSERT OR IGNORE guards the same rule at the key level: never doubled.
            let mut last = max_seq(tx, peer, peer)?;
            let mut stored = 0;
            for message in batch {
                if message.seq > last {
                    stored += insert_message(tx, INSERT_OR_IGNORE, peer, peer, message, now)?;
                    last = message.seq;
                }
            }
            if stored > 0 {
                touch(tx, peer, now)?;
                count_messages(tx, peer, stored, true)?;
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
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, lamport, sent_at_ms, text FROM messages
                  WHERE chat = ?1 AND author = ?1 AND seq BETWEEN ?2 AND ?3
                  ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![peer.0, from, to], |row| read_message(row, 0))?;
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
            ensure_chat(tx, peer, now)?;
            let mut last = max_seq(tx, peer, me)?;
            for message in batch {
                if message.seq != last + 1 {
                    continue;
                }
                insert_message(tx, INSERT, peer, me, message, now)?;
                last = message.seq;
                // One more message in the chat, unless it replaces its waiting twin below.
                count_messages(tx, peer, 1, false)?;
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
                    .execute(params![peer.0, message.sent_at_ms, message.text])?;
                if twins > 0 {
                    tx.prepare_cached(
                        "UPDATE chats SET message_count = message_count - ?2 WHERE peer = ?1",
                    )?
                    .execute(params![peer.0, i64::try_from(twins).unwrap_or(0)])?;
                }
            }
            Ok(())
        })
    }

    fn set_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), StoreError> {
        let up_to = to_db(up_to, "delivery mark")?;
        let now = (self.clock)();
        self.write(|tx| {
            ensure_chat(tx, peer, now)?;
            tx.prepare_cached("UPDATE chats SET delivered_up_to = ?2 WHERE peer = ?1")?
                .execute(params![peer.0, up_to])?;
            Ok(())
        })
    }

    fn mark_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), StoreError> {
        let up_to = to_db(up_to, "delivery mark")?;
        let now = (self.clock)();
        self.write(|tx| {
            ensure_chat(tx, peer, now)?;
            tx.prepare_cached(
                "UPDATE chats SET delivered_up_to = max(delivered_up_to, ?2) WHERE peer = ?1",
            )?
            .execute(params![peer.0, up_to])?;
            Ok(())
        })
    }

    /// `BEGIN IMMEDIATE`: the write lock is taken at once, so a group never has to upgrade
    /// a read lock (which could deadlock with another process's writer).
    fn begin_group(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| StoreError::from(e).at(&self.path))?;
        self.in_group = true;
        Ok(())
    }

    /// `COMMIT`, with the full fsync of `synchronous = FULL`: the one durable commit of the
    /// group. On failure everything of the group is rolled back.
    fn commit_group(&mut self) -> Result<(), StoreError> {
        self.in_group = false;
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(StoreError::from(e).at(&self.path));
        }
        Ok(())
    }
}

const INSERT: &str = "INSERT INTO messages
    (chat, author, seq, lamport, sent_at_ms, text, stored_at_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

const INSERT_OR_IGNORE: &str = "INSERT OR IGNORE INTO messages
    (chat, author, seq, lamport, sent_at_ms, text, stored_at_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Inserts one message with `sql` ([`INSERT`] or [`INSERT_OR_IGNORE`]); returns the rows
/// inserted.
fn insert_message(
    tx: &Connection,
    sql: &str,
    chat: DeviceId,
    author: DeviceId,
    message: &Message,
    now: i64,
) -> Result<usize, StoreError> {
    let seq = to_db(message.seq, "sequence number")?;
    let lamport = to_db(message.lamport, "Lamport counter")?;
    Ok(tx.prepare_cached(sql)?.execute(params![
        chat.0,
        author.0,
        seq,
        lamport,
        message.sent_at_ms,
        message.text,
        now
    ])?)
}

/// The key pinned for the chat with `peer` and the fingerprint expected to replace it;
/// `None` if there is no such chat.
#[allow(clippy::type_complexity)]
fn chat_keys(
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

/// Creates the chat with `peer` if it does not exist, with an unknown (empty) name.
fn ensure_chat(tx: &Connection, peer: DeviceId, now: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO chats (peer, peer_name, created_at_ms) VALUES (?1, '', ?2)
         ON CONFLICT (peer) DO NOTHING",
    )?
    .execute(params![peer.0, now])?;
    Ok(())
}

/// `n` more messages in the chat with `peer` (`unread`: the peer's, stored now).
fn count_messages(
    tx: &Connection,
    peer: DeviceId,
    n: usize,
    unread: bool,
) -> Result<(), StoreError> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "UPDATE chats SET message_count = message_count + ?2,
                          unread = unread + CASE WHEN ?3 THEN ?2 ELSE 0 END
          WHERE peer = ?1",
    )?
    .execute(params![peer.0, n, unread])?;
    Ok(())
}

/// Records activity in the chat now.
fn touch(tx: &Connection, peer: DeviceId, now: i64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE chats SET last_activity_ms = ?2 WHERE peer = ?1")?
        .execute(params![peer.0, now])?;
    Ok(())
}

/// The highest sequence number of `author`'s messages in the chat with `chat`, 0 if none.
fn max_seq(tx: &Connection, chat: DeviceId, author: DeviceId) -> Result<u64, StoreError> {
    let max: Option<i64> = tx
        .prepare_cached("SELECT max(seq) FROM messages WHERE chat = ?1 AND author = ?2")?
        .query_row(params![chat.0, author.0], |row| row.get(0))?;
    from_db(max.unwrap_or(0), "sequence number")
}

/// The highest Lamport counter in the chat with `chat`, either author, numbered or
/// waiting, 0 if none.
fn max_lamport(tx: &Connection, chat: DeviceId) -> Result<u64, StoreError> {
    let max: Option<i64> = tx
        .prepare_cached(
            "SELECT max(coalesce((SELECT max(lamport) FROM messages WHERE chat = ?1), 0),
                        coalesce((SELECT max(lamport) FROM waiting WHERE chat = ?1), 0))",
        )?
        .query_row([chat.0], |row| row.get(0))?;
    from_db(max.unwrap_or(0), "Lamport counter")
}

/// Own messages waiting for a number in the chat with `chat`.
fn count_waiting(tx: &Connection, chat: DeviceId) -> Result<u64, StoreError> {
    let count: i64 = tx
        .prepare_cached("SELECT count(*) FROM waiting WHERE chat = ?1")?
        .query_row([chat.0], |row| row.get(0))?;
    from_db(count, "waiting count")
}

/// Numbers the own messages waiting in the chat with `chat`, in the order written, after
/// `max(after, last own seq)`, each with a Lamport counter above everything in the chat now
/// (saturating at the protocol's limit), and moves them to `messages`. Returns how many.
fn number_waiting(
    tx: &Connection,
    chat: DeviceId,
    me: DeviceId,
    after: u64,
) -> Result<u64, StoreError> {
    let last = to_db(max_seq(tx, chat, me)?.max(after), "sequence number")?;
    let lamport = to_db(max_lamport(tx, chat)?, "Lamport counter")?;
    let limit = to_db(socketfalco_core::limits::MAX_COUNTER, "Lamport counter")?;
    let moved = tx
        .prepare_cached(
            "INSERT INTO messages (chat, author, seq, lamport, sent_at_ms, text, stored_at_ms)
             SELECT chat, ?2, ?3 + row_number() OVER (ORDER BY position),
                    min(?4 + row_number() OVER (ORDER BY position), ?5), sent_at_ms, text,
                    stored_at_ms
               FROM waiting WHERE chat = ?1",
        )?
        .execute(params![chat.0, me.0, last, lamport, limit])?;
    tx.prepare_cached("DELETE FROM waiting WHERE chat = ?1")?
        .execute([chat.0])?;
    Ok(moved as u64)
}

/// The chat's delivery mark, 0 for an unknown chat.
fn delivered_up_to(tx: &Connection, chat: DeviceId) -> Result<u64, StoreError> {
    let mark: Option<i64> = tx
        .prepare_cached("SELECT delivered_up_to FROM chats WHERE peer = ?1")?
        .query_row([chat.0], |row| row.get(0))
        .optional()?;
    from_db(mark.unwrap_or(0), "delivery mark")
}

fn read_identity_device(tx: &Connection) -> Result<Option<DeviceId>, StoreError> {
    Ok(tx
        .query_row("SELECT device_id FROM identity WHERE id = 1", [], |row| {
            row.get(0).map(DeviceId)
        })
        .optional()?)
}

/// A message from the columns `seq, lamport, sent_at_ms, text` starting at `first`. The outer
/// result is SQLite's, the inner one a value check.
fn read_message(row: &Row<'_>, first: usize) -> rusqlite::Result<Result<Message, StoreError>> {
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

/// A protocol counter as SQLite stores it: refused above `i64::MAX`, never wrapped.
fn to_db(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

/// A stored counter back as the protocol's `u64`; negative values are never written.
fn from_db(value: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        path: None,
        detail: format!("negative {what} {value}"),
    })
}

/// A stored peer key back as 32 bytes (the schema's CHECK already guarantees the length).
fn key_from_db(key: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, StoreError> {
    key.map(|bytes| {
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt {
            path: None,
            detail: format!("a peer key of {} bytes", bytes.len()),
        })
    })
    .transpose()
}

/// The 32 lowercase hexadecimal digits of a device id.
fn hex(device: &DeviceId) -> String {
    device.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// This device's wall clock in milliseconds since the Unix epoch: the only place the store
/// reads the clock (for its own bookkeeping times, never for ordering).
fn wall_clock_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Creates the data folder (and its parents); on Unix a new folder is private to the user
/// (0700), since it holds private conversations.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketfalco_core::harness::MemoryStore;
    use std::sync::{Arc, Barrier};

    /// Composing during an established session that sent nothing yet: numbered at once.
    trait ComposeLive: Store {
        fn compose_live(
            &mut self,
            peer: DeviceId,
            text: &str,
            sent_at_ms: i64,
        ) -> Result<Message, Self::Error> {
            let mut messages = self.compose_batch(peer, &[text.to_owned()], sent_at_ms, Some(0))?;
            Ok(messages.remove(0))
        }
    }

    impl<S: Store> ComposeLive for S {}

    const ME: DeviceId = DeviceId([0xaa; 16]);

    fn hello(device: DeviceId, name: &str) -> PeerHello {
        PeerHello {
            device,
            name: name.to_owned(),
            peer_temporary: false,
            temporary: false,
        }
    }

    fn msg(seq: u64, lamport: u64, text: &str) -> Message {
        Message {
            seq,
            lamport,
            sent_at_ms: 1_000 + i64::try_from(seq % 1_000).unwrap(),
            text: text.to_owned(),
        }
    }

    /// A device id whose text form starts with the given bytes.
    fn id(prefix: &[u8]) -> DeviceId {
        let mut bytes = [0u8; 16];
        bytes[..prefix.len()].copy_from_slice(prefix);
        DeviceId(bytes)
    }

    /// A database in a fresh folder, with this device's identity.
    fn fresh() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(dir.path()).unwrap();
        db.create_identity(ME, "Me").unwrap();
        (dir, db)
    }

    fn seqs(messages: &[Message]) -> Vec<u64> {
        messages.iter().map(|m| m.seq).collect()
    }

    fn raw(dir: &Path) -> Connection {
        Connection::open(dir.join(DB_FILE_NAME)).unwrap()
    }

    #[test]
    fn round_trip_of_every_method() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(dir.path()).unwrap();
        assert_eq!(db.path(), dir.path().join("socketfalco.db"));
        assert_eq!(db.identity().unwrap(), None);
        db.create_identity(ME, "Me").unwrap();
        assert_eq!(
            db.identity().unwrap(),
            Some(Identity {
                device: ME,
                name: "Me".into()
            })
        );
        let other = DeviceId([0xbb; 16]);
        assert!(matches!(
            db.create_identity(other, "Other"),
            Err(StoreError::IdentityExists { device }) if device == ME
        ));

        let peer = id(&[0x42]);
        assert!(!db.chat_exists(peer).unwrap());
        assert_eq!(
            db.open_chat(&hello(peer, "Peer"), None)
                .map(opened)
                .unwrap(),
            ChatResume {
                received_up_to: 0,
                last_own_seq: 0,
                unnumbered: 0,
                delivered_up_to: 0
            }
        );
        assert!(db.chat_exists(peer).unwrap());

        let one = db.compose_live(peer, "one", 10).unwrap();
        assert_eq!(one, msg_at(1, 1, 10, "one"));
        let two = db.compose_live(peer, "two", 20).unwrap();
        assert_eq!(two, msg_at(2, 2, 20, "two"));
        // The peer wrote two messages, concurrently with ours (Lamport 1 and 3).
        db.persist_received(peer, &[msg_at(1, 1, 15, "hi"), msg_at(2, 3, 25, "yo")])
            .unwrap();
        let three = db.compose_live(peer, "three", 30).unwrap();
        assert_eq!(three, msg_at(3, 4, 30, "three"));

        assert_eq!(seqs(&db.own_messages(peer, 0, 100).unwrap()), [1, 2, 3]);
        assert_eq!(
            db.own_messages(peer, 2, 1).unwrap(),
            std::slice::from_ref(&two)
        );
        assert_eq!(db.own_messages(peer, 2, 0).unwrap(), []);
        assert_eq!(db.own_messages(peer, 4, 10).unwrap(), []);
        assert_eq!(db.own_messages(peer, u64::MAX, 10).unwrap(), []);
        assert_eq!(db.own_messages(id(&[0x99]), 1, 10).unwrap(), []);

        db.mark_delivered(peer, 2).unwrap();
        db.mark_delivered(peer, 1).unwrap(); // never goes back
        db.set_last_address(peer, "192.0.2.7:4000").unwrap();
        assert!(matches!(
            db.set_last_address(id(&[0x99]), "192.0.2.8:4000"),
            Err(StoreError::NoSuchChat { .. })
        ));
        assert!(!db.chat_exists(id(&[0x99])).unwrap());

        let chats = db.list_chats().unwrap();
        assert_eq!(chats.len(), 1);
        let chat = &chats[0];
        assert_eq!(chat.peer, peer);
        assert_eq!(chat.peer_name, "Peer");
        assert_eq!(chat.last_address.as_deref(), Some("192.0.2.7:4000"));
        assert_eq!((chat.messages, chat.waiting), (5, 1));
        assert!(chat.last_activity_ms.is_some());

        let history = db.history(peer).unwrap();
        let shown: Vec<(&str, bool, bool)> = history
            .iter()
            .map(|s| (s.message.text.as_str(), s.mine, s.delivered))
            .collect();
        // Lamport 1 twice: ME (0xaa…) sorts after the peer (0x42…).
        assert_eq!(
            shown,
            [
                ("hi", false, true),
                ("one", true, true),
                ("two", true, true),
                ("yo", false, true),
                ("three", true, false),
            ]
        );
        assert_eq!(history[0].author, peer);
        assert_eq!(history[1].author, ME);
        assert_eq!(db.history(id(&[0x99])).unwrap(), []);

        // Reopening the chat updates the name and resumes where both sides are.
        assert_eq!(
            db.open_chat(&hello(peer, "Peer Two"), None)
                .map(opened)
                .unwrap(),
            ChatResume {
                received_up_to: 2,
                last_own_seq: 3,
                unnumbered: 0,
                delivered_up_to: 2
            }
        );
        assert_eq!(db.list_chats().unwrap()[0].peer_name, "Peer Two");
        assert_eq!(db.find_chat("42").unwrap(), peer);
        assert_eq!(db.rename("Myself").unwrap(), "Me");
        assert_eq!(db.identity().unwrap().unwrap().name, "Myself");
    }

    fn msg_at(seq: u64, lamport: u64, sent_at_ms: i64, text: &str) -> Message {
        Message {
            seq,
            lamport,
            sent_at_ms,
            text: text.to_owned(),
        }
    }

    /// The schema version this build writes.
    fn current_version() -> i64 {
        i64::try_from(MIGRATIONS.len()).unwrap()
    }

    /// The resume of an opening that must have succeeded.
    #[track_caller]
    fn opened(opening: ChatOpening) -> ChatResume {
        match opening {
            ChatOpening::Opened(resume) => resume,
            other => panic!("not opened: {other:?}"),
        }
    }

    /// One call of the [`Store`] trait, run against both stores.
    #[derive(Clone, Debug)]
    enum Op {
        Open(DeviceId, &'static str),
        Compose(DeviceId, &'static str, i64),
        ComposeOffline(DeviceId, &'static str, i64),
        Number(DeviceId, u64),
        PeerMessages(DeviceId, u64, u64),
        Restore(DeviceId, Vec<Message>),
        SetDelivered(DeviceId, u64),
        Persist(DeviceId, Vec<Message>),
        Delivered(DeviceId, u64),
        Own(DeviceId, u64, usize),
        OpenWithKey(DeviceId, &'static str, [u8; 32]),
    }

    /// What a call returned, comparable across the two stores.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Resume(ChatResume),
        Composed(Message),
        Done,
        Own(Vec<Message>),
        Opening(ChatOpening),
        Numbered(u64),
    }

    fn apply<S: Store>(store: &mut S, op: &Op) -> Outcome
    where
        S::Error: fmt::Debug,
    {
        match op {
            Op::Open(peer, name) => {
                Outcome::Resume(opened(store.open_chat(&hello(*peer, name), None).unwrap()))
            }
            Op::Compose(peer, text, at) => {
                Outcome::Composed(store.compose_live(*peer, text, *at).unwrap())
            }
            Op::ComposeOffline(peer, text, at) => {
                Outcome::Composed(store.compose(*peer, text, *at).unwrap())
            }
            Op::Number(peer, after) => {
                Outcome::Numbered(store.number_waiting(*peer, *after).unwrap())
            }
            Op::PeerMessages(peer, from, to) => {
                Outcome::Own(store.peer_messages(*peer, *from, *to).unwrap())
            }
            Op::Restore(peer, batch) => {
                store.restore_own(*peer, batch).unwrap();
                Outcome::Done
            }
            Op::SetDelivered(peer, up_to) => {
                store.set_delivered(*peer, *up_to).unwrap();
                Outcome::Done
            }
            Op::Persist(peer, batch) => {
                store.persist_received(*peer, batch).unwrap();
                Outcome::Done
            }
            Op::Delivered(peer, up_to) => {
                store.mark_delivered(*peer, *up_to).unwrap();
                Outcome::Done
            }
            Op::Own(peer, from, max) => {
                Outcome::Own(store.own_messages(*peer, *from, *max).unwrap())
            }
            Op::OpenWithKey(peer, name, key) => {
                Outcome::Opening(store.open_chat(&hello(*peer, name), Some(*key)).unwrap())
            }
        }
    }

    #[test]
    fn the_same_story_gives_the_same_results_as_the_memory_store() {
        let a = id(&[0x10]);
        let b = id(&[0xc0]);
        let c = id(&[0xee]);
        let story = vec![
            Op::Open(a, "Alice"),
            // A plain open pinned nothing: the first key is pinned, another refused.
            Op::OpenWithKey(a, "Alice", [0xa1; 32]),
            Op::OpenWithKey(a, "Alice", [0xa9; 32]),
            Op::Compose(a, "one", 1),
            Op::Compose(a, "two", 2),
            Op::Persist(a, vec![msg(1, 1, "a1"), msg(2, 3, "a2")]),
            Op::Compose(a, "three", 3),
            // A re-sent message is skipped, the new one kept.
            Op::Persist(a, vec![msg(2, 3, "a2 again"), msg(3, 5, "a3")]),
            // A batch past a gap, then a message below the highest stored: skipped, as in
            // the memory store (a peer's messages are kept in sequence order).
            Op::Persist(a, vec![msg(5, 6, "a5")]),
            Op::Persist(a, vec![msg(4, 6, "a4 late")]),
            Op::Delivered(a, 2),
            Op::Delivered(a, 1),
            Op::Open(a, "Alicia"),
            // Written offline: waits unnumbered; numbered at the next sync after what the
            // peer holds (7: say, our rows were restored from an old backup).
            Op::ComposeOffline(b, "offline one", 4),
            Op::ComposeOffline(b, "offline two", 4),
            Op::Open(b, "Bob"),
            Op::SetDelivered(b, 7),
            Op::Number(b, 7),
            Op::Number(b, 9),
            Op::Compose(b, "after the floor", 4),
            // The peer sent back our own messages 1..=7, which we had lost; one is a write
            // still waiting here (same Lamport counter, time and text): kept once.
            Op::ComposeOffline(b, "lost and found", 5),
            Op::Restore(
                b,
                vec![
                    msg_at(1, 1, 1, "lost 1"),
                    msg_at(2, 2, 2, "lost 2"),
                    msg_at(3, 8, 5, "lost and found"),
                ],
            ),
            Op::SetDelivered(b, 2),
            Op::PeerMessages(a, 2, 4),
            Op::PeerMessages(a, 7, 9),
            Op::Persist(b, vec![]),
            Op::Open(b, "Bob"),
            // A compose for a chat never opened creates it.
            Op::Compose(c, "hello?", 5),
            Op::Own(a, 0, 100),
            Op::Own(a, 2, 1),
            Op::Own(a, 3, 10),
            Op::Own(a, 4, 10),
            Op::Own(a, u64::MAX, 5),
            Op::Own(b, 0, usize::MAX),
            Op::Own(id(&[0x77]), 1, 5),
            Op::Compose(a, "four", 6),
            Op::Persist(a, vec![msg(6, 1, "a6 with an old Lamport")]),
            Op::Compose(a, "five", 7),
            Op::Open(a, "Alice"),
            // A renamed peer keeps its key; a first contact creates the chat and pins.
            Op::OpenWithKey(a, "Alicia", [0xa1; 32]),
            Op::OpenWithKey(id(&[0x55]), "Five", [0x55; 32]),
            Op::OpenWithKey(a, "Alice", [0xa2; 32]),
        ];

        let (_dir, mut db) = fresh();
        let mut memory = MemoryStore::new();
        for (step, op) in story.iter().enumerate() {
            let from_db = apply(&mut db, op);
            let from_memory = apply(&mut memory, op);
            assert_eq!(from_db, from_memory, "step {step}: {op:?}");
            for peer in [a, b, c] {
                assert_eq!(
                    db.chat_exists(peer).unwrap(),
                    memory.chats.contains_key(&peer),
                    "step {step}"
                );
                assert_eq!(
                    db.own_messages(peer, 0, usize::MAX).unwrap(),
                    memory.own_messages(peer, 0, usize::MAX).unwrap(),
                    "step {step}"
                );
                let history: Vec<(DeviceId, Message)> = db
                    .history(peer)
                    .unwrap()
                    .into_iter()
                    .map(|s| (s.author, s.message))
                    .collect();
                assert_eq!(history, memory.history(ME, peer), "step {step}");
            }
            for chat in db.list_chats().unwrap() {
                let twin = &memory.chats[&chat.peer];
                assert_eq!(chat.peer_name, twin.peer_name, "step {step}");
                assert_eq!(chat.peer_key, twin.peer_key, "step {step}");
                assert_eq!(
                    chat.waiting,
                    u64::try_from(memory.waiting(chat.peer)).unwrap(),
                    "step {step}"
                );
                assert_eq!(
                    chat.messages,
                    u64::try_from(twin.own.len() + twin.unnumbered.len() + twin.received.len())
                        .unwrap(),
                    "step {step}"
                );
            }
        }
        // A few of the values the story must have produced, so it cannot pass vacuously.
        assert_eq!(
            seqs(&db.own_messages(b, 0, 10).unwrap()),
            [8, 9, 10],
            "numbered after what the peer holds"
        );
        // a, b, c, and the chat the first contact created.
        assert_eq!(db.list_chats().unwrap().len(), 4);
        assert_eq!(db.key_state(a).unwrap(), Some((Some([0xa1; 32]), None)));
        let resume = db.open_chat(&hello(a, "Alice"), None).map(opened).unwrap();
        assert_eq!((resume.received_up_to, resume.last_own_seq), (6, 5));
        let texts: Vec<String> = db
            .history(a)
            .unwrap()
            .into_iter()
            .map(|s| s.message.text)
            .collect();
        assert!(!texts.contains(&"a2 again".to_owned()));
        assert!(!texts.contains(&"a4 late".to_owned()));
        assert_eq!(texts.len(), 10, "{texts:?}");
    }

    #[test]
    fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let peer = id(&[0x42]);
        let (chats, history) = {
            let mut db = Database::open(dir.path()).unwrap();
            db.create_identity(ME, "Me").unwrap();
            db.open_chat(&hello(peer, "Peer"), None)
                .map(opened)
                .unwrap();
            db.compose_live(peer, "one", 1).unwrap();
            db.compose_live(peer, "two", 2).unwrap();
            db.persist_received(peer, &[msg(1, 1, "hi"), msg(2, 4, "yo")])
                .unwrap();
            db.mark_delivered(peer, 1).unwrap();
            db.set_last_address(peer, "[::1]:4000").unwrap();
            db.rename("Renamed").unwrap();
            (db.list_chats().unwrap(), db.history(peer).unwrap())
        };
        let mut db = Database::open(dir.path()).unwrap();
        assert_eq!(
            db.identity().unwrap(),
            Some(Identity {
                device: ME,
                name: "Renamed".into()
            })
        );
        assert_eq!(db.list_chats().unwrap(), chats);
        assert_eq!(chats[0].messages, 4);
        assert_eq!(chats[0].waiting, 1);
        assert_eq!(db.history(peer).unwrap(), history);
        assert_eq!(history.len(), 4);
        assert_eq!(
            db.open_chat(&hello(peer, "Peer"), None)
                .map(opened)
                .unwrap(),
            ChatResume {
                received_up_to: 2,
                last_own_seq: 2,
                unnumbered: 0,
                delivered_up_to: 1
            }
        );
        // Composing after the reopen continues the numbering (the identity was reloaded).
        assert_eq!(
            db.compose_live(peer, "three", 3).unwrap(),
            msg_at(3, 5, 3, "three")
        );
    }

    #[test]
    fn two_handles_on_two_threads_compose_concurrently() {
        const EACH: usize = 500;
        let dir = tempfile::tempdir().unwrap();
        let peer = id(&[0x42]);
        {
            let mut db = Database::open(dir.path()).unwrap();
            db.create_identity(ME, "Me").unwrap();
            db.open_chat(&hello(peer, "Peer"), None)
                .map(opened)
                .unwrap();
        }
        let barrier = Arc::new(Barrier::new(2));
        let writers: Vec<_> = (0..2)
            .map(|writer| {
                let dir = dir.path().to_owned();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || -> Result<Vec<u64>, String> {
                    let mut db = Database::open(&dir).map_err(|e| e.to_string())?;
                    barrier.wait();
                    let mut seqs = Vec::with_capacity(EACH);
                    for i in 0..EACH {
                        let text = format!("writer {writer} message {i}");
                        let sent = i64::try_from(i).unwrap_or(0);
                        let m = db
                            .compose_live(peer, &text, sent)
                            .map_err(|e| e.to_string())?;
                        seqs.push(m.seq);
                    }
                    Ok(seqs)
                })
            })
            .collect();
        let mut all = Vec::new();
        for writer in writers {
            let seqs = writer.join().unwrap().unwrap();
            assert_eq!(seqs.len(), EACH);
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
            all.extend(seqs);
        }
        all.sort_unstable();
        assert_eq!(all, (1..=2 * EACH as u64).collect::<Vec<_>>());

        let mut db = Database::open(dir.path()).unwrap();
        let stored = db.own_messages(peer, 0, usize::MAX).unwrap();
        assert_eq!(seqs(&stored), (1..=2 * EACH as u64).collect::<Vec<_>>());
        // Each compose saw every earlier one: Lamport counters are distinct and contiguous too.
        let lamports: Vec<u64> = stored.iter().map(|m| m.lamport).collect();
        assert_eq!(lamports, (1..=2 * EACH as u64).collect::<Vec<_>>());
        let mut texts: Vec<&str> = stored.iter().map(|m| m.text.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), 2 * EACH);
    }

    /// Two processes (this test binary run twice more) compose into one chat at once: what
    /// a listener and an offline writer on one data folder do. SQLite's locks between
    /// processes are file locks, unlike those between two connections of one process.
    #[test]
    fn two_processes_compose_concurrently() {
        const DIR: &str = "SOCKETFALCO_STORE_TEST_CHILD_DIR";
        const EACH: u64 = 300;
        let peer = id(&[0x42]);
        if let Some(dir) = std::env::var_os(DIR) {
            // The child: compose EACH messages as fast as it can.
            let mut db = Database::open(Path::new(&dir)).unwrap();
            for i in 0..EACH {
                db.compose_live(peer, &format!("{} {i}", std::process::id()), 0)
                    .unwrap();
            }
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        {
            let mut db = Database::open(dir.path()).unwrap();
            db.create_identity(ME, "Me").unwrap();
            db.open_chat(&hello(peer, "Peer"), None)
                .map(opened)
                .unwrap();
        }
        let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
        let name = format!("{module}::two_processes_compose_concurrently");
        let children: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", name.as_str(), "--test-threads=1"])
                    .env(DIR, dir.path())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut db = Database::open(dir.path()).unwrap();
        let stored = db.own_messages(peer, 0, usize::MAX).unwrap();
        assert_eq!(seqs(&stored), (1..=2 * EACH).collect::<Vec<_>>());
    }

    #[test]
    fn concurrent_first_opens_create_the_schema_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested").join("data");
        let barrier = Arc::new(Barrier::new(4));
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let data = data.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    Database::open(&data).map(|_| ()).map_err(|e| e.to_string())
                })
            })
            .collect();
        for opener in openers {
            opener.join().unwrap().unwrap();
        }
        let version: i64 = raw(&data)
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, current_version());
    }

    #[test]
    fn a_version_1_database_opens_as_the_current_version_with_its_data_intact() {
        let dir = tempfile::tempdir().unwrap();
        let peer = id(&[0x42]);
        // A data folder of the first release, written by hand with its schema.
        {
            let conn = raw(dir.path());
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.execute(
                "INSERT INTO identity VALUES (1, ?1, 'Me', 5)",
                params![ME.0],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO chats VALUES (?1, 'Peer', '10.0.0.2:30000', 1, 6, 7)",
                params![peer.0],
            )
            .unwrap();
            let rows = [
                (ME, 1, 1, "mine"),
                (peer, 1, 2, "theirs"),
                (ME, 2, 3, "waits"),
            ];
            for (author, seq, lamport, text) in rows {
                conn.execute(
                    "INSERT INTO messages VALUES (?1, ?2, ?3, ?4, 100, ?5, 8)",
                    params![peer.0, author.0, seq, lamport, text],
                )
                .unwrap();
            }
        }
        let mut db = Database::open(dir.path()).unwrap();
        let version: i64 = raw(dir.path())
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, current_version());
        assert_eq!(db.identity().unwrap().unwrap().device, ME);
        let chats = db.list_chats().unwrap();
        assert_eq!(
            chats,
            [ChatSummary {
                peer,
                peer_name: "Peer".into(),
                last_address: Some("10.0.0.2:30000".into()),
                messages: 3,
                waiting: 1,
                unread: 0,
                last_activity_ms: Some(7),
                peer_key: None,
            }]
        );
        let texts: Vec<String> = db
            .history(peer)
            .unwrap()
            .into_iter()
            .map(|m| m.message.text)
            .collect();
        assert_eq!(texts, ["mine", "theirs", "waits"]);
        // The old chat has no key yet: its next connection pins one.
        assert_eq!(db.key_state(peer).unwrap(), Some((None, None)));
        db.open_chat(&hello(peer, "Peer"), Some([7; 32]))
            .map(opened)
            .unwrap();
        drop(db);
        let mut db = Database::open(dir.path()).unwrap();
        assert_eq!(db.key_state(peer).unwrap(), Some((Some([7; 32]), None)));
        assert_eq!(db.compose_live(peer, "next", 0).unwrap().seq, 3);
    }

    #[test]
    fn a_key_is_pinned_at_first_contact_and_replaced_only_by_the_expected_fingerprint() {
        let (_dir, mut db) = fresh();
        let peer = id(&[0x42]);
        let (old, new, other) = ([9; 32], [10; 32], [11; 32]);
        let new_fp = PublicKey(new).fingerprint_bytes();
        assert!(matches!(
            db.expect_key(peer, new_fp),
            Err(StoreError::NoSuchChat { .. })
        ));
        // A temporary first contact writes nothing, pin included.
        let mut temporary = hello(peer, "Peer");
        temporary.temporary = true;
        assert_eq!(
            db.open_chat(&temporary, Some(old)).unwrap(),
            ChatOpening::Opened(ChatResume::default())
        );
        assert!(!db.chat_exists(peer).unwrap());
        // The first contact creates the chat and pins its key, in one call.
        db.open_chat(&hello(peer, "Peer"), Some(old))
            .map(opened)
            .unwrap();
        assert_eq!(db.list_chats().unwrap()[0].peer_key, Some(old));
        // A rename (the next hello) keeps the key; another key is refused and changes nothing,
        // the name included; a temporary session with another key is refused as well.
        db.open_chat(&hello(peer, "Pierre"), Some(old))
            .map(opened)
            .unwrap();
        let refused = ChatOpening::KeyMismatch { pinned: old };
        assert_eq!(
            db.open_chat(&hello(peer, "Mallory"), Some(new)).unwrap(),
            refused
        );
        assert_eq!(db.open_chat(&temporary, Some(new)).unwrap(), refused);
        assert_eq!(db.list_chats().unwrap()[0].peer_name, "Pierre");
        assert_eq!(db.key_state(peer).unwrap(), Some((Some(old), None)));

        // The user accepts the key with the fingerprint `new_fp`: from now on only that key.
        assert_eq!(
            db.expect_key(peer, new_fp).unwrap(),
            KeyExpectation::Expected { old }
        );
        assert_eq!(db.key_state(peer).unwrap(), Some((Some(old), Some(new_fp))));
        assert_eq!(
            db.open_chat(&hello(peer, "Pierre"), Some(old)).unwrap(),
            refused
        );
        assert_eq!(
            db.open_chat(&hello(peer, "Pierre"), Some(other)).unwrap(),
            refused
        );
        // A temporary session with the new key is let in but pins nothing.
        assert_eq!(
            db.open_chat(&temporary, Some(new)).unwrap(),
            ChatOpening::Opened(ChatResume::default())
        );
        assert_eq!(db.key_state(peer).unwrap(), Some((Some(old), Some(new_fp))));
        db.open_chat(&hello(peer, "Pierre"), Some(new))
            .map(opened)
            .unwrap();
        assert_eq!(db.key_state(peer).unwrap(), Some((Some(new), None)));
        assert_eq!(
            db.open_chat(&hello(peer, "Pierre"), Some(old)).unwrap(),
            ChatOpening::KeyMismatch { pinned: new }
        );
        // Naming the pinned key's own fingerprint changes nothing; a chat without a pin
        // takes no expectation (its next connection pins whatever it proves).
        assert_eq!(
            db.expect_key(peer, new_fp).unwrap(),
            KeyExpectation::AlreadyPinned
        );
        let unpinned = id(&[0x43]);
        db.open_chat(&hello(unpinned, "Plain"), None)
            .map(opened)
            .unwrap();
        assert_eq!(
            db.expect_key(unpinned, new_fp).unwrap(),
            KeyExpectation::NothingPinned
        );
        assert_eq!(db.key_state(unpinned).unwrap(), Some((None, None)));
        // A fingerprint of the wrong length cannot be stored.
        let short = db.conn.execute(
            "UPDATE chats SET expected_fingerprint = ?2 WHERE peer = ?1",
            params![peer.0, [1u8; 15]],
        );
        assert!(short.is_err());
        // A key of the wrong length cannot be stored.
        let short = db.conn.execute(
            "UPDATE chats SET peer_key = ?2 WHERE peer = ?1",
            params![peer.0, [1u8; 31]],
        );
        assert!(short.is_err());
    }

    /// Two handles (as two processes on one data folder) open a first contact with the same
    /// device id and two different keys at the same instant, many times: each time exactly
    /// one key is pinned and the other opening is refused, whichever commits first.
    #[test]
    fn two_first_contacts_racing_with_two_keys_pin_exactly_one() {
        const ROUNDS: u8 = 20;
        let dir = tempfile::tempdir().unwrap();
        {
            let mut db = Database::open(dir.path()).unwrap();
            db.create_identity(ME, "Me").unwrap();
        }
        let handles: Vec<Database> = (0..2)
            .map(|_| Database::open(dir.path()).unwrap())
            .collect();
        let handles: Vec<_> = handles
            .into_iter()
            .map(|db| Arc::new(std::sync::Mutex::new(db)))
            .collect();
        for round in 0..ROUNDS {
            let peer = id(&[0x60, round]);
            let barrier = Arc::new(Barrier::new(2));
            let racers: Vec<_> = handles
                .iter()
                .enumerate()
                .map(|(racer, db)| {
                    let db = Arc::clone(db);
                    let barrier = Arc::clone(&barrier);
                    let key = [u8::try_from(racer).unwrap() + 1; 32];
                    std::thread::spawn(move || {
                        let mut db = db.lock().unwrap();
                        barrier.wait();
                        let opening = db.open_chat(&hello(peer, "Peer"), Some(key)).unwrap();
                        (key, opening)
                    })
                })
                .collect();
            let results: Vec<([u8; 32], ChatOpening)> =
                racers.into_iter().map(|r| r.join().unwrap()).collect();
            let winners: Vec<[u8; 32]> = results
                .iter()
                .filter(|(_, o)| matches!(o, ChatOpening::Opened(_)))
                .map(|(key, _)| *key)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            let winner = winners[0];
            let loser = results.iter().find(|(key, _)| *key != winner).unwrap();
            assert_eq!(
                loser.1,
                ChatOpening::KeyMismatch { pinned: winner },
                "round {round}"
            );
            let db = handles[0].lock().unwrap();
            assert_eq!(
                db.key_state(peer).unwrap(),
                Some((Some(winner), None)),
                "round {round}"
            );
        }
    }

    #[test]
    fn persisting_the_same_batch_twice_stores_it_once() {
        let (_dir, mut db) = fresh();
        let peer = id(&[0x42]);
        db.open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap();
        let batch = [msg(1, 1, "a"), msg(2, 2, "b"), msg(3, 3, "c")];
        db.persist_received(peer, &batch).unwrap();
        db.persist_received(peer, &batch).unwrap();
        assert_eq!(db.history(peer).unwrap().len(), 3);
        assert_eq!(db.list_chats().unwrap()[0].messages, 3);
        // An overlapping batch adds only what is new.
        db.persist_received(peer, &[msg(3, 3, "c"), msg(4, 4, "d")])
            .unwrap();
        let received: Vec<u64> = db
            .history(peer)
            .unwrap()
            .iter()
            .map(|s| s.message.seq)
            .collect();
        assert_eq!(received, [1, 2, 3, 4]);
        assert_eq!(
            db.open_chat(&hello(peer, "Peer"), None)
                .map(opened)
                .unwrap()
                .received_up_to,
            4
        );
    }

    #[test]
    fn find_chat_takes_unique_prefixes_in_any_case_with_or_without_hyphens() {
        let (_dir, mut db) = fresh();
        let a = id(&[0x12, 0x34, 0x56, 0x78]);
        let b = id(&[0x12, 0x34, 0xab, 0xcd, 0xef]);
        let c = id(&[0xff, 0xff]);
        db.open_chat(&hello(a, "Ann"), None).map(opened).unwrap();
        db.open_chat(&hello(b, "Ben"), None).map(opened).unwrap();
        db.open_chat(&hello(c, "Cid"), None).map(opened).unwrap();

        assert_eq!(db.find_chat("12345").unwrap(), a);
        assert_eq!(db.find_chat("1234AB").unwrap(), b);
        assert_eq!(db.find_chat("1234abcd-ef").unwrap(), b);
        assert_eq!(db.find_chat("1234ABCDEF").unwrap(), b);
        assert_eq!(db.find_chat(" ff ").unwrap(), c);
        assert_eq!(db.find_chat(&a.to_string()).unwrap(), a);
        assert_eq!(
            db.find_chat(&a.to_string().replace('-', "").to_uppercase())
                .unwrap(),
            a
        );

        match db.find_chat("1234") {
            Err(StoreError::AmbiguousChat { prefix, candidates }) => {
                assert_eq!(prefix, "1234");
                assert_eq!(
                    candidates,
                    [
                        ChatCandidate {
                            peer: a,
                            peer_name: "Ann".into()
                        },
                        ChatCandidate {
                            peer: b,
                            peer_name: "Ben".into()
                        }
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        let text = db.find_chat("1234").unwrap_err().to_string();
        assert!(
            text.contains(&a.to_string()) && text.contains("(Ben)"),
            "{text}"
        );

        assert!(matches!(
            db.find_chat("9"),
            Err(StoreError::NoSuchChat { prefix }) if prefix == "9"
        ));
        for bad in ["", "-", "xyz", "12 34", &"1".repeat(33)] {
            assert!(
                matches!(db.find_chat(bad), Err(StoreError::InvalidPrefix { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        drop(Database::open(dir.path()).unwrap());
        raw(dir.path())
            .pragma_update(None, "user_version", current_version() + 1)
            .unwrap();
        match Database::open(dir.path()) {
            Err(e @ StoreError::NewerSchema { .. }) => {
                let text = e.to_string();
                assert!(text.contains("socketfalco.db"), "{text}");
                let newer = format!("version {}", current_version() + 1);
                assert!(text.contains(&newer), "{text}");
                let StoreError::NewerSchema {
                    found, supported, ..
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(
                    (found, supported),
                    (current_version() + 1, current_version())
                );
            }
            other => panic!("{other:?}"),
        }
        let version: i64 = raw(dir.path())
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, current_version() + 1);
    }

    #[test]
    fn another_programs_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        raw(dir.path())
            .pragma_update(None, "application_id", 42)
            .unwrap();
        assert!(matches!(
            Database::open(dir.path()),
            Err(StoreError::NotSocketFalco {
                application_id: 42,
                ..
            })
        ));
    }

    #[test]
    fn the_pragmas_are_in_force() {
        let (_dir, db) = fresh();
        let text = |pragma: &str| -> String {
            db.conn
                .pragma_query_value(None, pragma, |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| match v {
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap()
        };
        assert_eq!(text("journal_mode"), "wal");
        assert_eq!(text("synchronous"), "2"); // FULL
        assert_eq!(text("foreign_keys"), "1");
        assert_eq!(text("busy_timeout"), "10000");
        assert_eq!(text("user_version"), current_version().to_string());
        assert_eq!(text("application_id"), APPLICATION_ID.to_string());
        // The foreign key is enforced: no message without its chat.
        let orphan = db.conn.execute(
            "INSERT INTO messages VALUES (?1, ?2, 1, 1, 0, 'x', 0)",
            params![[1u8; 16], ME.0],
        );
        assert!(orphan.is_err());
        // STRICT and the length checks: a 15-byte id is refused.
        let short = db.conn.execute(
            "INSERT INTO chats (peer, peer_name, created_at_ms) VALUES (?1, '', 0)",
            params![[1u8; 15]],
        );
        assert!(short.is_err());
    }

    #[test]
    fn names_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(dir.path()).unwrap();
        assert!(matches!(
            db.rename("Bob"),
            Err(StoreError::NoIdentity { path: Some(_) })
        ));
        assert!(matches!(
            db.create_identity(ME, "A"),
            Err(StoreError::InvalidName(NameError::TooShort))
        ));
        assert_eq!(db.identity().unwrap(), None);
        db.create_identity(ME, "Alice").unwrap();
        let cases = [
            ("A", NameError::TooShort),
            ("ABCDEFGHIJKLMNOP", NameError::TooLong),
            ("Bo\nb", NameError::ControlCharacter),
            ("Bob\x1b[2J", NameError::ControlCharacter),
            (" Bob", NameError::SurroundingSpace),
        ];
        for (name, why) in cases {
            match db.rename(name) {
                Err(StoreError::InvalidName(e)) => assert_eq!(e, why, "{name:?}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert_eq!(db.identity().unwrap().unwrap().name, "Alice");
        assert_eq!(db.rename("ÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉ").unwrap(), "Alice"); // 15 characters
        assert_eq!(db.rename("Bob").unwrap(), "ÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉ");
        assert_eq!(db.identity().unwrap().unwrap().name, "Bob");
        // A peer's name is checked too before it is stored.
        let peer = id(&[0x42]);
        assert!(matches!(
            db.open_chat(&hello(peer, "x"), None).map(opened),
            Err(StoreError::InvalidName(NameError::TooShort))
        ));
        assert!(!db.chat_exists(peer).unwrap());
    }

    #[test]
    fn counters_above_i64_max_are_refused_not_wrapped() {
        let (_dir, mut db) = fresh();
        let peer = id(&[0x42]);
        db.open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap();
        let too_big = u64::try_from(i64::MAX).unwrap() + 1;

        assert!(matches!(
            db.mark_delivered(peer, u64::MAX),
            Err(StoreError::OutOfRange {
                value: u64::MAX,
                ..
            })
        ));
        // The whole batch is refused: its valid first message is not stored either.
        assert!(matches!(
            db.persist_received(peer, &[msg(1, 1, "ok"), msg(too_big, 2, "big")]),
            Err(StoreError::OutOfRange { what: "sequence number", value }) if value == too_big
        ));
        assert_eq!(db.history(peer).unwrap(), []);

        // i64::MAX itself is storable (the core's frames never carry more than 2^53); the
        // compose after it does not wrap: Lamport counters saturate at the protocol's limit.
        db.persist_received(peer, &[msg_at(1, too_big - 1, 0, "max")])
            .unwrap();
        let next = db.compose_live(peer, "next", 0).unwrap();
        assert_eq!(next.lamport, socketfalco_core::limits::MAX_COUNTER);
        assert_eq!(db.own_messages(peer, 0, 10).unwrap(), [next]);
        assert_eq!(db.own_messages(peer, u64::MAX, 10).unwrap(), []);
    }

    #[test]
    fn a_returned_message_replaces_its_waiting_twin_and_numbering_follows_the_peer() {
        let (_dir, mut db) = fresh();
        let peer = id(&[0x42]);
        let waiting = db.compose(peer, "written offline", 5).unwrap();
        let other = db.compose(peer, "another", 6).unwrap();
        assert_eq!(
            (waiting.seq, other.seq),
            (0, 0),
            "no sync yet: not numbered"
        );
        assert_eq!(db.list_chats().unwrap()[0].waiting, 2);
        let resume = db
            .open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap();
        assert_eq!((resume.last_own_seq, resume.unnumbered), (0, 2));
        // The peer sends back our message 1: the first waiting write, numbered before our
        // store went back in time.
        let returned = Message {
            seq: 1,
            ..waiting.clone()
        };
        db.restore_own(peer, std::slice::from_ref(&returned))
            .unwrap();
        db.restore_own(peer, std::slice::from_ref(&returned))
            .unwrap(); // idempotent
        assert_eq!(db.own_messages(peer, 1, 10).unwrap(), [returned]);
        // The peer holds up to 4 of ours (say): the other waiting write is numbered after.
        assert_eq!(db.number_waiting(peer, 4).unwrap(), 1);
        assert_eq!(db.number_waiting(peer, 4).unwrap(), 0);
        assert_eq!(seqs(&db.own_messages(peer, 1, 10).unwrap()), [1, 5]);
        db.set_delivered(peer, 5).unwrap();
        db.set_delivered(peer, 1).unwrap(); // the sync may lower it
        let chat = &db.list_chats().unwrap()[0];
        assert_eq!((chat.messages, chat.waiting), (2, 1));
        let delivered: Vec<bool> = db
            .history(peer)
            .unwrap()
            .iter()
            .map(|s| s.delivered)
            .collect();
        assert_eq!(delivered, [true, false]);
    }

    #[test]
    fn message_and_unread_counts_are_kept_with_the_messages() {
        let (_dir, mut db) = fresh();
        let peer = id(&[0x42]);
        db.open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap();
        let counts = |db: &Database| {
            let chats = db.list_chats().unwrap();
            let c = chats.iter().find(|c| c.peer == peer).unwrap();
            (c.messages, c.unread, c.waiting)
        };
        let waiting = db.compose(peer, "offline", 7).unwrap();
        db.compose_live(peer, "live", 8).unwrap();
        assert_eq!(counts(&db), (2, 0, 2));
        db.persist_received(peer, &[msg(1, 1, "a"), msg(2, 2, "b")])
            .unwrap();
        db.persist_received(peer, &[msg(2, 2, "b again"), msg(3, 3, "c")])
            .unwrap();
        assert_eq!(
            counts(&db),
            (5, 3, 2),
            "a re-sent message is not counted twice"
        );
        db.mark_read(peer).unwrap();
        assert_eq!(counts(&db), (5, 0, 2));
        db.number_waiting(peer, 1).unwrap();
        assert_eq!(counts(&db), (5, 0, 2), "numbering moves, never counts");
        db.set_delivered(peer, 3).unwrap();
        assert_eq!(counts(&db).2, 0);
        // Our own message 4 comes back from the peer while its twin still waits here.
        let other = id(&[0x43]);
        let twin = db.compose(other, "twin", 9).unwrap();
        let returned = Message { seq: 1, ..twin };
        db.restore_own(other, &[returned, msg_at(2, 5, 10, "lost")])
            .unwrap();
        let other_chat = db
            .list_chats()
            .unwrap()
            .into_iter()
            .find(|c| c.peer == other)
            .unwrap();
        assert_eq!(other_chat.messages, 2, "the twin counted once");
        let _ = waiting;
        // The counts are what counting the history gives.
        let history = db.history(peer).unwrap().len() as u64;
        assert_eq!(counts(&db).0, history);
    }

    #[test]
    fn compose_needs_an_identity_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(dir.path()).unwrap();
        let err = db.compose_live(id(&[0x42]), "hi", 0).unwrap_err();
        assert!(matches!(err, StoreError::NoIdentity { .. }), "{err:?}");
        assert!(err.to_string().contains("socketfalco.db"), "{err}");
        // An identity created by another process is picked up without reopening.
        Database::open(dir.path())
            .unwrap()
            .create_identity(ME, "Me")
            .unwrap();
        assert_eq!(db.compose_live(id(&[0x42]), "hi", 0).unwrap().seq, 1);
    }

    #[test]
    fn compose_creates_an_unknown_chat_with_an_empty_name() {
        let (_dir, mut db) = fresh();
        let peer = id(&[0x42]);
        assert!(matches!(
            db.compose_live(peer, "", 0),
            Err(StoreError::InvalidText(TextError::Empty))
        ));
        assert!(!db.chat_exists(peer).unwrap());
        db.compose_live(peer, "hi", 0).unwrap();
        let chats = db.list_chats().unwrap();
        assert_eq!(chats.len(), 1);
        assert_eq!(chats[0].peer_name, "");
        assert_eq!((chats[0].messages, chats[0].waiting), (1, 1));
    }

    #[test]
    fn the_chat_list_is_ordered_by_last_activity() {
        let (_dir, mut db) = fresh();
        let (a, b, c) = (id(&[0x0a]), id(&[0x0b]), id(&[0x0c]));
        db.clock = || 100;
        db.open_chat(&hello(a, "Ann"), None).map(opened).unwrap();
        db.open_chat(&hello(b, "Ben"), None).map(opened).unwrap();
        db.clock = || 150;
        db.open_chat(&hello(c, "Cid"), None).map(opened).unwrap(); // no message yet: last
        db.clock = || 200;
        db.compose_live(a, "to Ann", 0).unwrap();
        db.clock = || 300;
        db.persist_received(b, &[msg(1, 1, "from Ben")]).unwrap();
        db.clock = || 400;
        db.persist_received(b, &[msg(1, 1, "from Ben")]).unwrap(); // nothing new: no activity
        db.mark_delivered(a, 1).unwrap(); // not an activity either
        let order: Vec<(DeviceId, Option<i64>)> = db
            .list_chats()
            .unwrap()
            .iter()
            .map(|c| (c.peer, c.last_activity_ms))
            .collect();
        assert_eq!(order, [(b, Some(300)), (a, Some(200)), (c, None)]);
    }

    #[test]
    fn pages_in_both_directions_are_the_history_cut_at_a_key() {
        let (_dir, mut db) = fresh();
        let peer = id(&[0x42]);
        db.open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap();
        let batch: Vec<Message> = (1..=40).map(|i| msg(i, i * 2, "p")).collect();
        db.persist_received(peer, &batch).unwrap();
        db.compose_live(peer, "numbered", 5).unwrap();
        db.compose(peer, "waiting one", 6).unwrap();
        db.compose(peer, "waiting two", 7).unwrap();
        let all: Vec<DisplayKey> = db
            .history(peer)
            .unwrap()
            .iter()
            .map(StoredMessage::display_key)
            .collect();
        assert_eq!(all.len(), 43);
        let keys = |page: Vec<StoredMessage>| -> Vec<DisplayKey> {
            page.iter().map(StoredMessage::display_key).collect()
        };
        // The newest and the oldest pages.
        assert_eq!(
            keys(db.page(peer, None, PageSide::Older, 5).unwrap()),
            all[38..]
        );
        assert_eq!(
            keys(db.page(peer, None, PageSide::Newer, 5).unwrap()),
            all[..5]
        );
        // Walking back from the end, then forward from the start, gives every message once.
        let mut back = Vec::new();
        let mut from = None;
        loop {
            let page = keys(db.page(peer, from, PageSide::Older, 7).unwrap());
            let Some(&first) = page.first() else { break };
            back.splice(0..0, page);
            from = Some(first);
        }
        assert_eq!(back, all);
        let mut forth = Vec::new();
        let mut from = None;
        loop {
            let page = keys(db.page(peer, from, PageSide::Newer, 6).unwrap());
            let Some(&last) = page.last() else { break };
            forth.extend(page);
            from = Some(last);
        }
        assert_eq!(forth, all);
        // A page next to a waiting message, both ways.
        let waiting = all[42];
        assert_eq!(waiting.seq, 0);
        assert_eq!(
            keys(db.page(peer, Some(waiting), PageSide::Older, 2).unwrap()),
            all[40..42]
        );
        assert!(db
            .page(peer, Some(waiting), PageSide::Newer, 2)
            .unwrap()
            .is_empty());
        // The stored messages are read on the display index, never sorted.
        let plan: Vec<String> = db
            .conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT author, seq FROM messages
                  WHERE chat = ?1 AND (lamport, author, seq) < (?2, ?3, ?4)
                  ORDER BY lamport DESC, author DESC, seq DESC LIMIT 10",
            )
            .unwrap()
            .query_map(params![peer.0, 10, peer.0, 3], |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan.iter().any(|p| p.contains("messages_display")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
    }

    #[test]
    fn the_first_unread_line_is_the_oldest_of_the_newest_unread() {
        let (_dir, mut db) = fresh();
        let peer = id(&[0x42]);
        db.open_chat(&hello(peer, "Peer"), None)
            .map(opened)
            .unwrap();
        assert_eq!(db.first_unread(peer).unwrap(), None);
        db.persist_received(peer, &[msg(1, 1, "a"), msg(2, 2, "b")])
            .unwrap();
        db.mark_read(peer).unwrap();
        assert_eq!(db.first_unread(peer).unwrap(), None);
        db.compose_live(peer, "mine", 5).unwrap();
        db.persist_received(peer, &[msg(3, 4, "c"), msg(4, 5, "d")])
            .unwrap();
        assert_eq!(db.chat_counts(peer).unwrap(), Some((5, 2)));
        assert_eq!(
            db.first_unread(peer).unwrap(),
            Some(DisplayKey {
                lamport: 4,
                author: peer,
                seq: 3
            })
        );
        assert_eq!(db.chat_counts(id(&[0x99])).unwrap(), None);
    }
}
