//! The `socketfalco` binary's library: everything but `main`, so that benches and tests can
//! reach the SQLite store and the commands.
//!
//! # Layout
//! - [`args`]: the command line (clap), legacy single-dash flags included.
//! - [`paths`]: where the data directory is on each platform.
//! - [`store`]: the SQLite database (identity, chats, messages) implementing the core's
//!   durability contract.
//! - [`commands`]: one module per command (`chat` for `-l`/`-c`, `edit_chat`, `edit_name`,
//!   `list`); start there to add a command.
//! - [`ui`]: how events are shown (terminal, plain lines, JSON) and the line editor.
//!
//! The protocol lives in the `socketfalco-core` crate, the sockets in
//! `socketfalco-transport`; this crate only wires them to the user and the disk.

pub mod args;
pub mod commands;
pub mod paths;
pub mod store;
pub mod ui;
