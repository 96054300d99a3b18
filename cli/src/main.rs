//! The `socketfalco` binary: a terminal chat between two devices that never loses a message.
//!
//! # Layout
//! - `args`: the command line (clap), legacy single-dash flags included.
//! - `paths`: where the data directory is on each platform.
//! - `store`: the SQLite database (identity, chats, messages) implementing the core's
//!   durability contract.
//! - `commands`: one module per command (`chat` for `-l`/`-c`, `edit_chat`, `edit_name`,
//!   `list`); start there to add a command.
//! - `ui`: how events are shown (terminal, plain lines, JSON) and the line editor.
//!
//! The protocol lives in the `socketfalco-core` crate, the sockets in
//! `socketfalco-transport`; this crate only wires them to the user and the disk.

mod args;
mod commands;
mod paths;
mod store;
mod ui;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match args::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.verbose);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// `-v` shows info, `-vv` debug, `-vvv` trace on stderr; `RUST_LOG` overrides.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
}
