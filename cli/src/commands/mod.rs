//! One module per command of the command line; this one opens what every command shares:
//! the data directory, the database and this device's identity (uuid, name and key pair).
//!
//! To add a command: a variant in `args::Command`, a module here with a `run` function, and
//! a line in [`run`].

/// `println!` for what a command prints: a standard output closed early (`socketfalco -ls |
/// head -1`) ends the printing quietly instead of panicking. Evaluates to
/// `Result<(), AppError>`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::commands::print(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod chat;
mod edit_chat;
mod edit_name;
mod invite;
mod leave;
mod list;
mod trust;
mod updates;
mod view;

use crate::args::{Cli, Command};
use crate::paths::default_data_dir;
use crate::store::{Database, Identity};
use crate::ui::Style;
use socketfalco_core::limits::MAX_NAME_CHARS as MAX_NAME_CHARS_FOR_USERS;
use socketfalco_core::{check_name, DeviceId, StaticKeypair};
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

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
    /// Whether the data directory was given with `--data-dir` (then the commands this
    /// program suggests repeat it).
    pub explicit_data_dir: bool,
    /// `--bell` (sessions).
    pub bell: bool,
    /// `--notify[=text]` (sessions).
    pub notify: crate::ui::alert::Notify,
    /// `--proxy`, `--tor`, `--relay`.
    pub reach: crate::args::Reach,
}

impl Context {
    /// Opens the database in the data directory.
    pub fn open_database(&self) -> Result<Database, AppError> {
        Ok(Database::open(&self.data_dir)?)
    }

    /// Opens the database to commit lines one by one (a session, lines written offline):
    /// its log is grown first, so that those commits overwrite it instead of growing it
    /// ([`Database::reserve_log`]).
    pub fn open_database_for_lines(&self) -> Result<Database, AppError> {
        let mut db = self.open_database()?;
        db.reserve_log();
        Ok(db)
    }

    /// How to run this program again on the same data directory, for commands the output
    /// suggests: `socketfalco`, plus `--data-dir DIR` if one was given (quoted for the shell
    /// when needed).
    pub fn invocation(&self) -> String {
        if self.explicit_data_dir {
            format!("socketfalco --data-dir {}", shell_quote(&self.data_dir))
        } else {
            "socketfalco".to_owned()
        }
    }
}

/// This device, as every command that needs it sees it.
#[derive(Clone, Debug)]
pub struct Me {
    /// The device id: the chat key the peers see.
    pub device: DeviceId,
    /// The display name.
    pub name: String,
    /// The long-term static key pair, proved in every connection.
    pub keypair: StaticKeypair,
}

impl Me {
    /// The short, readable form of this device's public key, to compare out of band.
    pub fn fingerprint(&self) -> String {
        self.keypair.public().fingerprint()
    }
}

/// Runs the command line's command.
pub fn run(cli: Cli) -> Result<(), AppError> {
    // What describes the program itself needs no data directory.
    match cli.command {
        Command::Completions(shell) => {
            return print(&crate::args::completion_script(shell));
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(crate::args::command()).render(&mut page)?;
            return print(&String::from_utf8_lossy(&page));
        }
        _ => {}
    }
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
        explicit_data_dir: cli.data_dir.is_some(),
        bell: cli.bell,
        notify: cli.notify,
        reach: cli.reach,
    };
    log::debug!("data directory: {}", ctx.data_dir.display());
    match cli.command {
        Command::Listen {
            temporary,
            port,
            bind,
            serve,
            max_peers,
            onion,
        } => chat::listen(
            &ctx,
            temporary,
            port,
            bind,
            chat::ListenOptions { serve, max_peers },
            onion.as_ref(),
        ),
        Command::Connect {
            host,
            port,
            temporary,
        } => chat::connect(&ctx, &host, port, temporary),
        Command::ConnectInvite { invite, temporary } => {
            chat::connect_invite(&ctx, &invite, temporary)
        }
        Command::ConnectChat { chat, temporary } => chat::connect_chat(&ctx, &chat, temporary),
        Command::Invite { address, port } => invite::run(&ctx, address, port),
        Command::List => list::run(&ctx),
        Command::EditName { name } => edit_name::run(&ctx, &name),
        Command::EditChat { chat, view } => edit_chat::run(&ctx, &chat, view),
        Command::Fingerprint => trust::fingerprint(&ctx),
        Command::ChatIds => list::chat_ids(&ctx),
        Command::TrustNewKey { chat, fingerprint } => {
            trust::trust_new_key(&ctx, &chat, fingerprint)
        }
        Command::Completions(_) | Command::Man => Ok(()),
    }
}

/// Prints `text` on standard output; a reader that stopped reading (`| head`) is not an
/// error.
fn print(text: &str) -> Result<(), AppError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// This device's identity, created at first start-up: a new uuid4, a name asked for on a
/// terminal or taken from the OS user name otherwise, and the static key pair in the data
/// directory (created too if missing: first start-up, or a data directory of a version
/// without keys — see [`crate::keys`]).
pub fn ensure_identity(ctx: &Context, db: &mut Database) -> Result<Me, AppError> {
    let Identity { device, name } = ensure_device(ctx, db)?;
    let keypair = crate::keys::load_or_create(&ctx.data_dir)?;
    Ok(Me {
        device,
        name,
        keypair,
    })
}

fn ensure_device(ctx: &Context, db: &mut Database) -> Result<Identity, AppError> {
    if let Some(identity) = db.identity()? {
        return Ok(identity);
    }
    refuse_a_key_without_its_device(ctx, db)?;
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

/// Before a first start-up makes a new device: a key already in the data folder with no
/// device in its database means the database was lost, emptied or not restored with the key
/// (a new database would silently start a new device, its chats gone, on the old key). That
/// is refused with what to do; starting anew is the user's choice. (The key is made after the
/// device, so a first start-up cut short leaves none.)
pub fn refuse_a_key_without_its_device(ctx: &Context, db: &Database) -> Result<(), AppError> {
    let key = ctx.data_dir.join(crate::keys::KEY_FILE_NAME);
    if !key.exists() {
        return Ok(());
    }
    Err(AppError::new(format!(
        "the data folder {} has this device's key ({}) but no device in its database {}: the \
         database was lost or not restored with the key. Restore the whole folder from a \
         backup; or, to start as a new device with no chats, move {} away first",
        ctx.data_dir.display(),
        crate::keys::KEY_FILE_NAME,
        db.path().display(),
        crate::keys::KEY_FILE_NAME,
    )))
}

/// One line of a script's input: `Ok(None)` at the end; `Ok(Some(Err(why)))` for a line that
/// is not UTF-8 — refused on its own, the lines after it read as usual (a `lines()` iterator
/// would end the input there).
pub fn next_input_line(
    input: &mut impl io::BufRead,
    buf: &mut Vec<u8>,
) -> io::Result<Option<Result<String, String>>> {
    buf.clear();
    if input.read_until(b'\n', buf)? == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(Some(String::from_utf8(std::mem::take(buf)).map_err(|e| {
        format!(
            "the line is not valid UTF-8 (byte {} is not)",
            e.utf8_error().valid_up_to() + 1
        )
    })))
}

/// Checks a name this device gives itself (`-eN`, or asked at first start-up): a valid name
/// ([`check_name`]) with no bidirectional override, which could make it read as another name
/// where it is shown. (A peer's name with one is shown with the override replaced.)
pub fn check_own_name(name: &str) -> Result<(), String> {
    check_name(name).map_err(|e| e.to_string())?;
    if name.chars().any(crate::ui::is_bidi_override) {
        return Err(
            "it contains a bidirectional override (U+202A–U+202E or U+2066–U+2069), \
                    which can make it read as another name"
                .to_owned(),
        );
    }
    Ok(())
}

/// Asks for this device's name on the terminal (cooked mode, line by line). A terminal that
/// goes away meanwhile ends the process: SIGHUP's default action (no handler is installed
/// yet), or, with SIGHUP ignored, the end of input or the error (never a loop); nothing is
/// stored then, so the next start asks again.
fn ask_name() -> Result<String, AppError> {
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    let mut stdout = io::stdout();
    loop {
        write!(
            stdout,
            "Welcome to SocketFalco. Choose your name (2–{MAX_NAME_CHARS_FOR_USERS} characters): "
        )?;
        stdout.flush()?;
        let Some(line) = lines.next() else {
            return Err(AppError::new("no name given"));
        };
        let name = line?.trim().to_owned();
        match check_own_name(&name) {
            Ok(()) => return Ok(name),
            Err(e) => writeln!(stdout, "{e}; try again.")?,
        }
    }
}

/// `path` as one shell word: as is when it only has characters no shell treats specially,
/// else quoted (single quotes on Unix, double quotes on Windows).
pub fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = !text.is_empty()
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric() || "/._-:+,@=".contains(c) || (cfg!(windows) && c == '\\')
        });
    if plain {
        text
    } else if cfg!(windows) {
        format!("\"{text}\"")
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_is_not_utf8_is_refused_alone_and_the_next_are_read() {
        let mut input: &[u8] = b"u1\n\xffoops\nu3\r\nlast";
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(line) = next_input_line(&mut input, &mut buf).unwrap() {
            got.push(line);
        }
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], Ok("u1".to_owned()));
        assert!(got[1].as_ref().unwrap_err().contains("byte 1"), "{got:?}");
        assert_eq!(got[2], Ok("u3\r".to_owned()));
        assert_eq!(got[3], Ok("last".to_owned()));
    }

    #[test]
    fn a_name_given_here_is_refused_with_an_override_whether_asked_or_set() {
        assert_eq!(check_own_name("Bob"), Ok(()));
        assert_eq!(
            check_own_name("שלום\u{200f}"),
            Ok(()),
            "right-to-left names are names"
        );
        for bad in ["Bob\u{202e}evil", "\u{2066}Bob\u{2069}"] {
            let e = check_own_name(bad).unwrap_err();
            assert!(e.contains("bidirectional override"), "{e}");
        }
        assert!(check_own_name("B").unwrap_err().contains("at least"));
    }

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(shell_quote(Path::new("/tmp/sf-1.data")), "/tmp/sf-1.data");
        if cfg!(windows) {
            assert_eq!(shell_quote(Path::new("C:\\a b")), "\"C:\\a b\"");
        } else {
            assert_eq!(shell_quote(Path::new("/my chats")), "'/my chats'");
            assert_eq!(shell_quote(Path::new("/it's")), "'/it'\\''s'");
            assert_eq!(shell_quote(Path::new("/a\\b")), "'/a\\b'");
            assert_eq!(shell_quote(Path::new("")), "''");
        }
    }
}
