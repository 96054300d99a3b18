//! One module per command of the command line; this one opens what every command shares:
//! the data directory, the database and this device's identity.
//!
//! To add a command: a variant in `args::Command`, a module here with a `run` function, and
//! a line in [`run`].

mod chat;
mod edit_chat;
mod edit_name;
mod list;

use crate::args::{Cli, Command};
use crate::paths::default_data_dir;
use crate::store::{Database, Identity};
use crate::ui::Style;
use socketfalco_core::limits::MAX_NAME_CHARS as MAX_NAME_CHARS_FOR_USERS;
use socketfalco_core::{check_name, DeviceId};
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;

/// A command's failure: what to tell the user, and the exit status.
#[derive(Debug)]
pub struct AppError {
    /// The message, printed after `error: `.
    pub message: String,
    /// The process exit status.
    pub code: u8,
}

impl AppError {
    /// A runtime failure (exit status 1).
    pub fn new(message: impl Into<String>) -> AppError {
        AppError {
            message: message.into(),
            code: 1,
        }
    }
}

impl<E: std::error::Error> From<E> for AppError {
    fn from(e: E) -> AppError {
        AppError::new(e.to_string())
    }
}

/// What every command gets.
pub struct Context {
    /// The data directory.
    pub data_dir: PathBuf,
    /// How output is shown.
    pub style: Style,
    /// Whether stdin is an interactive terminal.
    pub interactive: bool,
}

impl Context {
    /// Opens the database in the data directory.
    pub fn open_database(&self) -> Result<Database, AppError> {
        Ok(Database::open(&self.data_dir)?)
    }
}

/// Runs the command line's command.
pub fn run(cli: Cli) -> Result<(), AppError> {
    let data_dir = match &cli.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir().map_err(AppError::new)?,
    };
    let interactive = io::stdin().is_terminal() && io::stdout().is_terminal();
    let style = if cli.json {
        Style::Json
    } else if interactive {
        Style::Terminal
    } else {
        Style::Plain
    };
    let ctx = Context {
        data_dir,
        style,
        interactive,
    };
    log::debug!("data directory: {}", ctx.data_dir.display());
    match cli.command {
        Command::Listen {
            temporary,
            port,
            bind,
        } => chat::listen(&ctx, temporary, port, bind),
        Command::Connect {
            host,
            port,
            temporary,
        } => chat::connect(&ctx, &host, port, temporary),
        Command::List => list::run(&ctx),
        Command::EditName { name } => edit_name::run(&ctx, &name),
        Command::EditChat { chat } => edit_chat::run(&ctx, &chat),
    }
}

/// This device's identity, created at first start-up: a new uuid4, and a name asked for on
/// a terminal or taken from the OS user name otherwise.
pub fn ensure_identity(ctx: &Context, db: &mut Database) -> Result<Identity, AppError> {
    if let Some(identity) = db.identity()? {
        return Ok(identity);
    }
    let device = DeviceId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes());
    let name = if ctx.interactive {
        ask_name()?
    } else {
        let name = name_from_os_user();
        eprintln!(
            "first start-up: this device is {device}, named \"{name}\" after your user name; \
             change it with: socketfalco -eN NEWNAME"
        );
        name
    };
    db.create_identity(device, &name)?;
    Ok(Identity { device, name })
}

fn ask_name() -> Result<String, AppError> {
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!(
            "Welcome to SocketFalco. Choose your name (2–{MAX_NAME_CHARS_FOR_USERS} characters): "
        );
        io::stdout().flush()?;
        let Some(line) = lines.next() else {
            return Err(AppError::new("no name given"));
        };
        let name = line?.trim().to_owned();
        match check_name(&name) {
            Ok(()) => return Ok(name),
            Err(e) => println!("{e}; try again."),
        }
    }
}

/// The OS user name made into a valid display name: control characters dropped, cut to the
/// longest name allowed, "user" if too short.
pub fn name_from_os_user() -> String {
    let raw = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_default();
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS_FOR_USERS)
        .collect();
    let cleaned = cleaned.trim().to_owned();
    if check_name(&cleaned).is_ok() {
        cleaned
    } else {
        "user".to_owned()
    }
}
