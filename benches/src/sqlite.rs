//! The real SQLite store in a temporary folder, and a plain SQLite table beside it as the
//! storage ceiling.
//!
//! Databases go in a temporary folder under `base` — the benches pass cargo's
//! `CARGO_TARGET_TMPDIR`, on the same disk as the build — or under `SOCKETFALCO_BENCH_DIR`
//! if set. Never on a tmpfs such as some systems' `/tmp`: an fsync there costs nothing and
//! the durability figures would be meaningless.

use rusqlite::{params, Connection};
use socketfalco::store::Database;
use socketfalco_core::{DeviceId, Message, PeerHello, Store};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// Where the benches put their databases: `SOCKETFALCO_BENCH_DIR` if set, else `base`.
pub fn bench_root(base: &str) -> PathBuf {
    std::env::var_os("SOCKETFALCO_BENCH_DIR").map_or_else(|| PathBuf::from(base), PathBuf::from)
}

/// A new empty temporary folder under [`bench_root`], removed when dropped.
pub fn temp_dir(base: &str) -> TempDir {
    temp_dir_under(&bench_root(base))
}

/// A new empty temporary folder under `root` (created if missing), removed when dropped.
pub fn temp_dir_under(root: &Path) -> TempDir {
    if let Err(e) = std::fs::create_dir_all(root) {
        panic!("cannot create {}: {e}", root.display());
    }
    match tempfile::Builder::new()
        .prefix("socketfalco-bench-")
        .tempdir_in(root)
    {
        Ok(dir) => dir,
        Err(e) => panic!(
            "cannot create a temporary folder in {}: {e}",
            root.display()
        ),
    }
}

/// The chat's real database in `dir`, with the identity `device`/`name`, exactly as the
/// binary opens it for a session (WAL, `synchronous = FULL`, foreign keys on, the log grown).
pub fn open_database(dir: &Path, device: DeviceId, name: &str) -> Database {
    let mut db = match Database::open(dir) {
        Ok(db) => db,
        Err(e) => panic!("open the database: {e}"),
    };
    db.reserve_log();
    if let Err(e) = db.create_identity(device, name) {
        panic!("create the identity: {e}");
    }
    db
}

/// Opens (creates) the chat with `peer` in `db`, as a hello would.
pub fn open_chat(db: &mut Database, peer: DeviceId, name: &str) {
    let hello = PeerHello {
        device: peer,
        name: name.to_owned(),
        peer_temporary: false,
        temporary: false,
    };
    if let Err(e) = db.open_chat(&hello, None) {
        panic!("open the chat: {e}");
    }
}

/// The storage ceiling: a plain table with the store's message key and index (since schema
/// version 6 small integers: chat id, author number, sequence number), written with prepared
/// inserts and the same durability settings, with none of the store's checks, chat
/// bookkeeping or lookups.
#[derive(Debug)]
pub struct PlainTable {
    conn: Connection,
}

impl PlainTable {
    /// A new table in `dir`, with `synchronous` = `FULL` or `NORMAL`.
    pub fn create(dir: &Path, synchronous: &str) -> PlainTable {
        let run = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(dir.join("plain.db"))?;
            let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            conn.execute_batch(&format!(
                "PRAGMA synchronous = {synchronous};
                 CREATE TABLE messages (
                     chat INTEGER NOT NULL, author INTEGER NOT NULL, seq INTEGER NOT NULL,
                     lamport INTEGER NOT NULL, sent_at_ms INTEGER NOT NULL, text TEXT NOT NULL,
                     stored_at_ms INTEGER NOT NULL,
                     PRIMARY KEY (chat, author, seq)
                 ) STRICT, WITHOUT ROWID;
                 CREATE INDEX messages_display ON messages (chat, lamport, author, seq);"
            ))?;
            Ok(conn)
        };
        match run() {
            Ok(conn) => PlainTable { conn },
            Err(e) => panic!("create the plain table: {e}"),
        }
    }

    /// Copies the log into the database (`PRAGMA wal_checkpoint(PASSIVE)`), so that the next
    /// commit writes the log again from its start, overwriting it instead of growing it.
    pub fn checkpoint(&mut self) {
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            panic!("checkpoint: {e}");
        }
    }

    /// Inserts `batch` in one transaction, as one peer's messages in one chat.
    pub fn insert(&mut self, batch: &[Message]) {
        self.insert_then(batch, || ());
    }

    /// Inserts `batch` in one transaction and runs `before_commit` after the inserts and
    /// before the `COMMIT`: what a sender that puts a line on the wire while its commit
    /// runs does between the two.
    pub fn insert_then(&mut self, batch: &[Message], before_commit: impl FnOnce()) {
        let run = || -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO messages (chat, author, seq, lamport, sent_at_ms, text, stored_at_ms)
                     VALUES (1, 1, ?1, ?2, ?3, ?4, ?3)",
                )?;
                for m in batch {
                    stmt.execute(params![
                        m.seq as i64,
                        m.lamport as i64,
                        m.sent_at_ms,
                        m.text
                    ])?;
                }
            }
            before_commit();
            tx.commit()
        };
        if let Err(e) = run() {
            panic!("insert: {e}");
        }
    }
}
