//! [`Database`], the handle on one data folder's database: opening it (creating the folder
//! and bringing the schema up to date), the transaction helpers every call runs in (one
//! `BEGIN IMMEDIATE` transaction a write, or a savepoint inside a group commit), and the
//! public API the CLI uses beside the core's contract: this device's identity, the chat
//! list, finding a chat by a prefix of its id, a chat's last address and its peer's key.

use super::queries::{chat_keys, from_db, hex, key_from_db};
use super::{ChatCandidate, StoreError, BUSY_TIMEOUT, DB_FILE_NAME};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use socketfalco_core::{check_name, DeviceId, PublicKey};
use socketfalco_transport::clock::wall_clock_ms;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What [`Database::expect_key`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyExpectation {
    /// The key is expected now; `old` is the key pinned until it connects (refused from now
    /// on).
    Expected {
        /// The key pinned so far.
        old: [u8; 32],
    },
    /// The pinned key already has that fingerprint: it is kept, nothing to wait for.
    AlreadyPinned {
        /// The fingerprint expected before, no longer awaited (the pinned key was set aside
        /// for it, and is accepted again).
        withdrawn: Option<[u8; 16]>,
    },
    /// No key is pinned for the chat: the next connection pins whatever key it proves, so
    /// nothing was changed.
    NothingPinned,
}

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

/// The SocketFalco database of one data folder. See the module doc.
#[derive(Debug)]
pub struct Database {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    /// This device's id, once known (it never changes once created).
    pub(super) me: Option<DeviceId>,
    /// A group commit is open ([`Store::begin_group`]): calls run in savepoints.
    ///
    /// [`Store::begin_group`]: socketfalco_core::Store::begin_group
    pub(super) in_group: bool,
    /// The wall clock for bookkeeping times (`stored_at_ms`, `last_activity_ms`,
    /// `created_at_ms`); [`wall_clock_ms`] except in tests.
    pub(super) clock: fn() -> i64,
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
        make_private(&path);
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

    /// This device's id, or [`StoreError::NoIdentity`].
    pub(super) fn me(&mut self) -> Result<DeviceId, StoreError> {
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
    pub(super) fn write<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = (|| {
            if self.in_group {
                // Inside a group commit: a savepoint, so that a failing call leaves no trace
                // and the others stand; the group's COMMIT makes it durable. The savepoint
                // statements are prepared once (cached), not parsed again for every call.
                self.control("SAVEPOINT request")?;
                return match f(&self.conn) {
                    Ok(value) => {
                        self.control("RELEASE request")?;
                        Ok(value)
                    }
                    Err(e) => {
                        let _ = self.control("ROLLBACK TO request");
                        let _ = self.control("RELEASE request");
                        Err(e)
                    }
                };
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

    /// Runs a transaction-control statement (`BEGIN IMMEDIATE`, `COMMIT`, a savepoint's),
    /// prepared once and kept in the statement cache.
    pub(super) fn control(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    /// Runs `f` in one read transaction: a consistent snapshot even while another process
    /// writes. Never upgraded to a write, so it cannot deadlock with one.
    pub(super) fn read<T>(
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
            let me = self.me_if_any_in(tx)?.map(|d| d.0);
            let mut stmt = tx.prepare_cached(
                "SELECT c.peer, c.peer_name, c.last_address, c.last_activity_ms,
                        c.message_count,
                        (SELECT COUNT(*) FROM messages m
                          WHERE m.chat = c.id AND m.author = (?1 > c.peer)
                            AND m.seq > c.delivered_up_to)
                          + (SELECT COUNT(*) FROM waiting w WHERE w.chat = c.id),
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
        let as_id = !wanted.is_empty()
            && wanted.len() <= 32
            && wanted.chars().all(|c| c.is_ascii_hexdigit());
        let name = prefix.trim().to_lowercase();
        if !as_id && name.is_empty() {
            return Err(StoreError::InvalidPrefix {
                prefix: prefix.to_owned(),
            });
        }
        // Few chats per device: compare in Rust rather than teach SQL the uuid text form.
        let all: Vec<ChatCandidate> = self.read(|tx| {
            let mut stmt = tx.prepare_cached("SELECT peer, peer_name FROM chats ORDER BY peer")?;
            let rows = stmt.query_map([], |row| {
                Ok(ChatCandidate {
                    peer: DeviceId(row.get(0)?),
                    peer_name: row.get(1)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        // The id first; else the peer's name, whole (in any case), else its start.
        let pick = |keep: &dyn Fn(&ChatCandidate) -> bool| -> Vec<ChatCandidate> {
            all.iter().filter(|c| keep(c)).cloned().collect()
        };
        let mut candidates = Vec::new();
        if as_id {
            candidates = pick(&|c| hex(&c.peer).starts_with(&wanted));
        }
        if candidates.is_empty() && !name.is_empty() {
            candidates = pick(&|c| c.peer_name.to_lowercase() == name);
            if candidates.is_empty() {
                candidates = pick(&|c| c.peer_name.to_lowercase().starts_with(&name));
            }
        }
        match candidates.len() {
            0 if !as_id => Err(StoreError::InvalidPrefix {
                prefix: prefix.to_owned(),
            }),
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
    ///
    /// [`Store::open_chat`]: socketfalco_core::Store::open_chat
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

    /// Forgets the chat with `peer`, and the key pinned with it, if it was created at or
    /// after `since_ms` by the one connection that ever opened it, and holds no line either
    /// way: a chat its first connection opened (pinning the key) but never established, and
    /// that no other connection — of any process — opened since. Returns whether it was
    /// forgotten.
    pub fn forget_unopened_chat(
        &mut self,
        peer: DeviceId,
        since_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let forgotten = tx.execute(
                "DELETE FROM chats WHERE peer = ?1 AND created_at_ms >= ?2 AND openings = 1
                    AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.chat = chats.id)
                    AND NOT EXISTS (SELECT 1 FROM waiting w WHERE w.chat = chats.id)",
                params![peer.0, since_ms],
            )?;
            Ok(forgotten > 0)
        })
    }

    /// Accepts, for the chat with `peer`, the key whose fingerprint is `fingerprint` (what
    /// the peer's `--fingerprint` shows, compared out of band): from now on only a key with
    /// that fingerprint is accepted for the peer's device id, and the first connection that
    /// presents it pins it ([`Store::open_chat`]). The key pinned until then is refused from
    /// now on. In one transaction; the chat must exist and have a pinned key (without one the
    /// next connection pins whatever key it proves, and this changes nothing).
    ///
    /// [`Store::open_chat`]: socketfalco_core::Store::open_chat
    pub fn expect_key(
        &mut self,
        peer: DeviceId,
        fingerprint: [u8; 16],
    ) -> Result<KeyExpectation, StoreError> {
        self.write(|tx| {
            let (pinned, expected) =
                chat_keys(tx, peer)?.ok_or_else(|| StoreError::NoSuchChat {
                    prefix: peer.to_string(),
                })?;
            let Some(pinned) = pinned else {
                return Ok(KeyExpectation::NothingPinned);
            };
            if PublicKey(pinned).fingerprint_bytes() == fingerprint {
                // The pinned key is the one: nothing to wait for.
                tx.prepare_cached("UPDATE chats SET expected_fingerprint = NULL WHERE peer = ?1")?
                    .execute([peer.0])?;
                return Ok(KeyExpectation::AlreadyPinned {
                    withdrawn: expected,
                });
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

    /// The user's contacts: each peer this device has written to (a line of its own in the
    /// chat, sent or waiting), with the key pinned for it. A listener at its limit lets them
    /// in before strangers (the transport's `admission`); a chat with no pinned key is none.
    pub fn contacts(&self) -> Result<Vec<(DeviceId, PublicKey)>, StoreError> {
        self.read(|tx| {
            let Some(me) = self.me_if_any_in(tx)? else {
                return Ok(Vec::new());
            };
            let mut stmt = tx.prepare_cached(
                "SELECT c.peer, c.peer_key FROM chats c
                  WHERE c.peer_key IS NOT NULL
                    AND (EXISTS (SELECT 1 FROM messages m
                                  WHERE m.chat = c.id AND m.author = (?1 > c.peer))
                         OR EXISTS (SELECT 1 FROM waiting w WHERE w.chat = c.id))",
            )?;
            let rows = stmt.query_map([me.0], |row| {
                Ok((DeviceId(row.get(0)?), row.get::<_, Option<Vec<u8>>>(1)?))
            })?;
            let mut contacts = Vec::new();
            for row in rows {
                let (peer, key) = row?;
                if let Some(key) = key_from_db(key)? {
                    contacts.push((peer, PublicKey(key)));
                }
            }
            Ok(contacts)
        })
    }

    /// Whether there is a chat with `peer`.
    pub fn chat_exists(&self, peer: DeviceId) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM chats WHERE peer = ?1", [peer.0], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| StoreError::from(e).at(&self.path))
    }

    /// The name the peer of a chat last gave itself (empty if it never did); `None` when
    /// there is no such chat.
    pub fn peer_name(&self, peer: DeviceId) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT peer_name FROM chats WHERE peer = ?1",
                [peer.0],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| StoreError::from(e).at(&self.path))
    }
}

/// On Unix, makes the database readable by its owner alone, whatever the folder it is in (a
/// folder made by the user, open to others): a new one is created empty with 0600 before
/// SQLite opens it (SQLite gives its log and shared-memory files the database's permissions),
/// and an existing one open to others — with its log files — is narrowed to 0600.
fn make_private(db: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(db);
        let mut paths = vec![db.to_owned()];
        for suffix in ["-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            paths.push(name.into());
        }
        for path in paths {
            if let Ok(Some(mode)) = crate::private_file::open_to_others(&path) {
                match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
                    Ok(()) => log::info!(
                        "{} was open to others ({mode:o}): now readable by its owner alone",
                        path.display()
                    ),
                    Err(e) => log::warn!(
                        "{} is open to others ({mode:o}) and could not be narrowed: {e}",
                        path.display()
                    ),
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = db;
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
