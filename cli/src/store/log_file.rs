//! The write-ahead log's file, kept at its full size so that a commit overwrites it instead
//! of growing it.
//!
//! A commit in WAL mode writes its pages at the end of the log and syncs it. While the log
//! grows, every sync must also make the file's new size durable, a second write the disk
//! does before the commit can end; once the log has been checkpointed, SQLite starts again
//! at its beginning and a commit only overwrites blocks the file already has. Measured on
//! one disk (docs/PERFORMANCE.md, "The log file kept at its size"), an overwriting commit
//! takes about a third less time than a growing one.
//!
//! SQLite by itself lets the log grow in every session: the last connection to close
//! deletes the file, so the next process starts from an empty log, and a chat's session
//! rarely writes the 1,000 pages after which the log is reused. So every connection
//! asks SQLite to keep the file when it closes ([`keep_log_file`], `SQLITE_FCNTL_PERSIST_WAL`,
//! on Linux and Windows alike), and a database whose log is shorter than one checkpoint
//! cycle has it grown once, on opening ([`Database::reserve_log`]): a table of that many
//! pages is written and dropped, and the log checkpointed. The pages it took in the database
//! file stay on its free list, so the first messages fill them instead of growing that file
//! either. It costs about 20 ms and 4 MiB in each of the two files, once per data folder.
//!
//! Only speed depends on this: a log that could not be grown or kept (a full disk, a file
//! system without WAL, another program that deleted the log) grows as it always would.

use super::Database;
use rusqlite::{Connection, TransactionBehavior};
use std::ffi::{c_int, OsString};
use std::path::PathBuf;

/// The table the reserve is written to and dropped from, in two transactions. One left
/// behind (the process died between the two) is dropped on the next opening.
const RESERVE_TABLE: &str = "log_reserve";

/// Pages beyond one checkpoint cycle in the reserve: the commit that crosses the cycle's
/// limit writes its own pages before the checkpoint that follows it.
const SLACK_PAGES: u64 = 64;

/// Bytes of a log frame's header, before each page (the file itself has a 32-byte header).
const FRAME_HEADER_BYTES: u64 = 24;

/// Asks SQLite to keep the connection's log file when it closes, instead of deleting it.
pub(super) fn keep_log_file(conn: &Connection) {
    let mut keep: c_int = 1;
    // SAFETY: `handle()` is this open connection's own pointer, used only for the duration
    // of the call while `conn` is borrowed; the schema name is a NUL-terminated literal; and
    // `SQLITE_FCNTL_PERSIST_WAL` takes a pointer to one `int`, which `keep` is and outlives
    // the call. The result is deliberately ignored: a VFS without the option answers
    // `SQLITE_NOTFOUND`, and then the log is simply deleted on close, as by default.
    unsafe {
        let _ = rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut keep as *mut c_int).cast(),
        );
    }
}

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

    /// Grows a short log to one checkpoint cycle (see the module's text), and drops a reserve
    /// table an interrupted earlier run left behind. Does nothing, at the cost of a `stat`
    /// and a read, when the log is already that long. A failure is not an error (only
    /// speed depends on it).
    pub(super) fn reserve_log(&mut self) {
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
        let have = std::fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let left_behind: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
            [RESERVE_TABLE],
            |row| row.get(0),
        )?;
        if have >= want && !left_behind {
            return Ok(());
        }
        if have < want {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {RESERVE_TABLE} (pages BLOB NOT NULL);
                 INSERT INTO {RESERVE_TABLE} VALUES (zeroblob({want}));"
            ))?;
            tx.commit()?;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {RESERVE_TABLE};"))?;
        tx.commit()?;
        // Copy the reserve's frames into the database now, so the next commit starts the
        // log again at its beginning instead of after them.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    }
}
