//! The `socketfalco` binary: a terminal chat between two devices that never loses a message.
//! Everything but parsing the arguments and the exit status lives in the library (`lib.rs`).

use socketfalco::{args, commands, ui};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match args::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    ui::logs::init(cli.verbose);
    let json = cli.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A script reading `--json` events learns why the program ended from them too.
            // Not println!: with the terminal gone, a failed write must not panic.
            if json {
                let _ = writeln!(std::io::stdout(), "{}", ui::fatal_event(&e.message));
            }
            let _ = writeln!(std::io::stderr(), "error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
