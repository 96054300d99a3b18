//! The `socketfalco` binary's library: everything but `main`, so that benches and tests can
//! reach the SQLite store and the commands.
//!
//! # Layout
//! - [`args`]: the command line (clap), legacy single-dash flags included.
//! - [`paths`]: where the data directory is on each platform.
//! - [`keys`]: this device's long-term static key (X25519) in `identity.key` beside the
//!   database: created at first start-up, proved in every connection's Noise handshake,
//!   pinned by the peers on first contact.
//! - `private_file`: files only this user may read (the device key, the onion service key):
//!   created 0600 and fsynced, and checked for access by others.
//! - [`store`]: the SQLite database (identity, chats, messages) implementing the core's
//!   durability contract.
//! - [`commands`]: one module per command (`chat` for `-l`/`-c`, `edit_chat`, `edit_name`,
//!   `invite` for `--invite`, `list`, `trust` for `--fingerprint` and `--trust-new-key`, `leave` for the signals and
//!   Windows console events that end a session, `view` for the chat view that `-eC` and
//!   sessions share: its opening screenful and reading back); start there to add a command.
//! - [`ui`]: how events are shown (terminal, plain lines, JSON), the line editor, the
//!   scrollback's paging, the bell and desktop notifications, and whether the terminal is
//!   still there (a terminal that hangs up ends the session like `quit`).
//! - [`tor`]: `-l --onion`, the listener published as a Tor onion service through a running
//!   tor's control port (the protocol without I/O in `tor::control`, the blocking client, and
//!   the service's key file in the data directory).
//!
//! The protocol lives in the `socketfalco-core` crate, the sockets in
//! `socketfalco-transport`; this crate only wires them to the user and the disk.

pub mod args;
pub mod commands;
pub mod keys;
pub mod paths;
mod private_file;
pub mod store;
pub mod tor;
pub mod ui;
