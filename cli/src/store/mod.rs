//! The CLI's durable storage: one SQLite database, `socketfalco.db` in the data folder, that
//! owns everything SocketFalco keeps on disk — this device's identity, one chat per peer
//! device, and every message of every chat, both authors. [`Database`] implements the core's
//! durability contract ([`Store`], with exactly the semantics of the core's in-memory twin
//! `socketfalco_testkit::MemoryStore`, pinned peer keys included) and adds what the CLI shows and edits:
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
//!
//! [`Store`]: socketfalco_core::Store
//! [`Store::open_chat`]: socketfalco_core::Store::open_chat
//!
//! # Layout
//! - `errors`: [`StoreError`], why a call failed, and how it reads.
//! - `schema`: the database file — its name, its settings, its versioned schema and the
//!   migrations that bring an older file up to date.
//! - `database`: [`Database`] itself — opening, the transaction helpers every call runs in,
//!   this device's identity, the chat list and a chat's settings.
//! - `history`: reading a chat back — all of it, streamed, or a page at a time by
//!   [`DisplayKey`].
//! - `durability`: `impl Store for Database`, the core's durability contract, group commits
//!   included.
//! - `log_file`: the write-ahead log's file, grown to its full size for a handle that
//!   commits lines one by one, so that those commits overwrite it instead of growing it.
//! - `queries`: the row-level SQL helpers the others share, and the conversions between
//!   protocol values and stored ones.

mod database;
mod durability;
mod errors;
mod history;
mod log_file;
mod queries;
mod schema;
#[cfg(test)]
mod tests;

pub use database::{ChatSummary, Database, Identity, KeyExpectation};
pub use errors::{ChatCandidate, StoreError};
pub use history::{DisplayKey, PageSide, StoredMessage};
pub use schema::{BUSY_TIMEOUT, DB_FILE_NAME};
