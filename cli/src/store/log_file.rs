//! The write-ahead log's file, grown to its full size by a handle that will commit lines one
//! by one, so that a commit overwrites it instead of growing it.
//!
//! A commit in WAL mode writes its pages at the end of the log and syncs it. While the file
//! grows, the sync must also make its new size durable, a second write the disk does before
//! the commit can end; once the log has been checkpointed, SQLite starts again at its
//! beginning and a commit only overwrites blocks the file already has. Measured on one disk
//! (docs/PERFORMANCE.md, "The log file grown before the first commit"), an overwriting
//! commit takes about a third less time than a growing one.
//!
//! SQLite by itself lets the log grow in every session: the last connection to close
//! deletes the file, so each process starts from an empty log, and reuses it only after
//! the 1,000 pages of a checkpoint cycle, more than most chat sessions write. So a handle
//! opened to commit lines one by one (a session, lines written offline; not `-ls` or a
//! rename, which commit once if at all) grows a log shorter than one cycle
//! ([`Database::reserve_log`]): a transaction writes that many pages with a page cache so
//! small that SQLite spills nearly all of them into the log, and is rolled back. A rolled-back transaction's pages are not
//! part of the database: they are never copied into it, recovery ignores them, and the next
//! commits overwrite them. It costs a few milliseconds and no sync; the file is made
//! durable by the first commit's.
//!
//! The log is still deleted on the last close, as SQLite does: so a database file copied
//! or put back alone, while no program runs, is whole. (Keeping the file across closes,
//! `SQLITE_FCNTL_PERSIST_WAL`, was tried first and not kept: it leaves a log of valid
//! frames beside the database at rest, and a database put back alone from an older copy
//! beside it then opens as a mix of the two.)
//!
//! Only speed depends on this: a log that could not be grown (a full disk, a file system
//! without WAL, another process's write lock held for the busy timeout) grows as it
//! always would.

use super::Database;
use rusqlite::TransactionBehavior;
use std::ffi::OsString;
use std::path::PathBuf;

/// The table the reserve is written to, in a transaction that is rolled back.
const RESERVE_TABLE: &str = "log_reserve";

/// Pages beyond one checkpoint cycle in the reserve: the commit that crosses the cycle's
/// limit writes its own pages before the checkpoint that follows it.
const SLACK_PAGES: u64 = 64;

/// Bytes of a log frame's header, before each page (the file itself has a 32-byte header).
const FRAME_HEADER_BYTES: u64 = 24;

/// The page cache while the reserve is written: so small that SQLite spills nearly every
/// page of the transaction into the log.
const SPILL_CACHE_PAGES: i64 = 16;

impl Database {
    /// The log's file: the database's path with `-wal` appended.
    pub(super) fn log_path(&self) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push("-wal");
        PathBuf::from(name)
    }

    /// The bytes of a log that holds one checkpoint cycle, with its slack.
    fn log_reserve_bytes(&self) -> rusqlite::Result<u64> {
        let read = |pragma: &str| -> rusqlite::Result<u64> {
            let value: i64 = self
                .conn
                .pragma_query_value(None, pragma, |row| row.get(0))?;
            Ok(u64::try_from(value).unwrap_or(0))
        };
        let (page, cycle) = (read("page_size")?, read("wal_autocheckpoint")?);
        Ok(32 + (cycle + SLACK_PAGES) * (page + FRAME_HEADER_BYTES))
    }

    /// Grows a log shorter than one checkpoint cycle to that size (see the module's text);
    /// does nothing, at the cost of a `stat`, when it is that long already (another process
    /// has the database open). A failure is not an error: only speed depends on it.
    ///
    /// For a handle that will commit lines one by one (a chat session, lines written
    /// offline); a command that reads, or writes once, has nothing to gain from it and
    /// leaves the log alone.
    pub fn reserve_log(&mut self) {
        let _ = self.try_reserve_log();
    }

    fn try_reserve_log(&mut self) -> rusqlite::Result<()> {
        let mode: String = self
            .conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(());
        }
        let want = self.log_reserve_bytes()?;
        if std::fs::metadata(self.log_path()).map_or(0, |m| m.len()) >= want {
            return Ok(());
        }
        let cache: i64 = self
            .conn
            .pragma_query_value(None, "cache_size", |row| row.get(0))?;
        self.conn
            .pragma_update(None, "cache_size", SPILL_CACHE_PAGES)?;
        let written = (|| -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(&format!(
                "CREATE TABLE {RESERVE_TABLE} (pages BLOB NOT NULL);
                 INSERT INTO {RESERVE_TABLE} VALUES (zeroblob({want}));"
            ))?;
            tx.rollback()
        })();
        self.conn.pragma_update(None, "cache_size", cache)?;
        written
    }
}
