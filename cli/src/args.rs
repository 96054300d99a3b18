//! Command-line parsing for the `socketfalco` binary.
//!
//! This module owns everything between the raw process arguments and a typed
//! [`Cli`] value: the option definitions and the help text, the compatibility
//! layer for the single-dash long flags of the original C++ SocketFalco
//! (`-listen`, `-ls`, `-eN`, …), the consistency rules between options
//! (exactly one command, `-t` only with a session, …) and the syntax of the
//! `-c` address ([`parse_address`]) and of a key fingerprint. It does not validate user names, resolve
//! host names or touch the data directory: other modules do that.
//!
//! # Legacy single-dash long flags
//!
//! clap, like every getopt-style parser, reads `-ls` as the cluster `-l -s`
//! and `-eN` as `-e N`. So before clap sees the arguments, [`parse_from`]
//! rewrites every argument that is *exactly* one of the legacy flags into its
//! GNU long form:
//!
//! | legacy                 | rewritten to  |
//! |------------------------|---------------|
//! | `-listen`              | `--listen`    |
//! | `-ls`, `-list`         | `--list`      |
//! | `-connect`             | `--connect`   |
//! | `-eN`, `-editName`     | `--edit-name` |
//! | `-eC`, `-editChat`     | `--edit-chat` |
//! | `-help`                | `--help`      |
//!
//! A legacy flag directly followed by `=` (`-eN=Bob`, `-connect=::1`) is
//! rewritten the same way, the part after `=` being kept byte for byte.
//! Nothing else is touched: not `argv[0]`, not anything after a `--`
//! argument, not arguments that only *contain* a legacy flag (`-lsx`,
//! `--edit-name=-ls`), not arguments that are not valid UTF-8. The short
//! flags `-l`, `-c`, `-t`, `-h` are ordinary clap short flags and need no
//! rewriting. An argument that starts with one of the longer legacy flags and
//! goes on (`-listenx`, `-connectx`) is refused as a misspelling of it,
//! rather than read as a cluster of short flags or as `-c` with the value
//! `onnectx`.
//!
//! Values are never rewritten. The rewriter does not need to know which
//! options take a value because, as with any GNU-style parser, a *detached*
//! value that starts with `-` is refused by clap ("a value is required …"):
//! `-eN -ls` is an error, neither a list command nor a user called `--list`.
//! A value starting with `-` must be attached with `=`: `--edit-name=-ls`
//! or `-eN=-ls` both give the name `-ls`.
//!
//! The commands added since the original (`--fingerprint`, `--trust-new-key`)
//! exist in their GNU form only: there is no legacy spelling to keep.
//!
//! # `-c` and `-t`
//!
//! The original accepts `-c -t ADDRESS` as well as `-c ADDRESS -t`. To allow
//! the first form, `--connect` takes an *optional* value and a hidden
//! positional argument receives an address that is not attached to `-c`
//! (`-c -t 192.168.1.1`, `-c -v ::1`). Giving two addresses, an address
//! without `-c`, or `-c` without an address is an error.
//!
//! # Ports
//!
//! `-p/--port` (default [`DEFAULT_PORT`]) is the port to listen on (`0` picks
//! a free port) or to connect to. An explicit `:PORT` in the `-c` address
//! wins over `-p`, the way an explicit part of a URL wins over a default:
//! `-c host:5000 -p 4000` connects to port 5000. Connecting to port 0 is an
//! error.
//!
//! # Keys: `--fingerprint` and `--trust-new-key`
//!
//! Every connection proves each device's long-term key, and the first
//! connection with a peer pins the peer's key to its device id (trust on
//! first use). `--fingerprint` shows this device's id, name and key
//! fingerprint (an object with `--json`), to compare out of band with what
//! the peer's `-ls` shows. `--trust-new-key CHAT FINGERPRINT` (a unique
//! prefix of the peer's uuid, as for `-eC`, and the fingerprint the peer's own
//! `--fingerprint` shows, compared out of band) accepts exactly the key with
//! that fingerprint for that peer: the deliberate way to accept a peer's new
//! key after a reinstall. The fingerprint is 32 hex digits in any case, with
//! or without the spaces of `xxxx xxxx xxxx xxxx xxxx xxxx xxxx xxxx`, as one
//! argument (in quotes when it has spaces); anything else is a usage error.
//! The one-argument form of earlier versions (which let the next connection
//! pin whatever key it proved) is refused with a usage error that says what to
//! compare and how.
//!
//! # `--onion`
//!
//! `-l --onion` publishes the listener as a Tor onion service through a
//! running tor's control port (`--tor-control HOST[:PORT]`, default
//! `127.0.0.1:9051`; a password with `--tor-password`, or the environment
//! variable the command reads). The listener then binds 127.0.0.1 only, where
//! tor forwards to it: `--bind` with any other address is a usage error that
//! says why. `--onion` goes only with `-l`, `--tor-control` and
//! `--tor-password` only with `--onion`.
//!
//! # Other rules
//!
//! Exactly one of listen, list, connect, edit-name, edit-chat, fingerprint and
//! trust-new-key is given. `-t` is only accepted with listen or connect, `-p`
//! likewise, `--bind` only with listen; `--data-dir`, `--json` and `-v` go
//! with any command.
//! Because clap sees the rewritten arguments, its messages name the GNU form
//! (`--list`) even when the user typed the legacy one (`-ls`). The help text
//! and examples name the installed binary, `socketfalco`, where the original
//! said `SocketFalco`; the arguments of every original example are unchanged.
//!
//! # Errors and exit codes
//!
//! Every problem is returned as a [`clap::Error`], so `main` only has to call
//! [`clap::Error::exit`]: `--help` and `--version` print to stdout and exit
//! with status 0; a missing command prints the full help to stderr and exits
//! with status 2; any unknown, malformed or conflicting argument prints
//! clap's message and usage to stderr and exits with status 2.

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{value_parser, Arg, ArgAction, ArgGroup, ArgMatches};
use clap_complete::Shell;

use crate::ui::alert::Notify;
use socketfalco_reach::invite::Invite;
use socketfalco_reach::onion::{check_onion_v3, is_onion_host};
use socketfalco_reach::proxy::ProxySpec;

/// The port used when neither `-p` nor the `-c` address gives one.
pub const DEFAULT_PORT: u16 = 30000;

/// [`DEFAULT_PORT`] as text, for clap's `default_value` (checked by a test).
const DEFAULT_PORT_TEXT: &str = "30000";

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// What to do; exactly one command is given on every valid command line.
    pub command: Command,
    /// `--data-dir DIR`: use `DIR` instead of the platform's data directory.
    pub data_dir: Option<PathBuf>,
    /// How many times `-v/--verbose` was given (0 when absent).
    pub verbose: u8,
    /// `--json`: machine-readable output for `-ls`, `--fingerprint`,
    /// `--trust-new-key` and sessions.
    pub json: bool,
    /// `--bell`: ring the terminal bell on a line that comes in where the user is not
    /// looking (sessions only).
    pub bell: bool,
    /// `--notify[=name|text]`: desktop notifications (sessions only).
    pub notify: Notify,
    /// `--proxy`, `--tor`, `--relay`: how to reach a peer beyond the local network.
    pub reach: Reach,
}

/// How to reach a peer beyond the local network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reach {
    /// `--proxy URL` or `--tor`: a caller's connections go through this SOCKS5 proxy.
    pub proxy: Option<ProxySpec>,
    /// `--relay HOST:PORT`: a magic-wormhole transit relay. A listener waits for callers
    /// there; a caller meets the listener there by its key (from an invite or pinned); an
    /// invite names it.
    pub relay: Option<(String, u16)>,
}

/// Which part of a chat's history `-eC` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryView {
    /// `--last N`: only the newest N messages.
    pub last: Option<u64>,
    /// `--since WHEN`: only messages written (by the author's clock) since then.
    pub since: Option<Since>,
}

/// `--since DATE|DURATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// A moment, in ms since the Unix epoch (a date or date and time, local time).
    At(i64),
    /// This long before now, in ms (`90s`, `30m`, `2h`, `7d`, `2w`).
    Ago(i64),
}

impl Since {
    /// The moment, in ms since the Unix epoch, given the wall clock `now_ms`.
    pub fn resolve(self, now_ms: i64) -> i64 {
        match self {
            Since::At(ms) => ms,
            Since::Ago(ms) => now_ms.saturating_sub(ms),
        }
    }
}

/// Reads `--since`: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM` (or with a `T`), in local time, or a
/// duration: a number and one of `s`, `m`, `h`, `d`, `w`.
pub fn parse_since(text: &str) -> Result<Since, String> {
    let text = text.trim();
    let units: [(char, i64); 5] = [
        ('s', 1_000),
        ('m', 60_000),
        ('h', 3_600_000),
        ('d', 86_400_000),
        ('w', 604_800_000),
    ];
    if let Some(&(_, unit)) = units.iter().find(|(u, _)| text.ends_with(*u)) {
        if let Ok(n) = text[..text.len() - 1].parse::<i64>() {
            if n >= 0 {
                return Ok(Since::Ago(n.saturating_mul(unit)));
            }
        }
    }
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    let local = |naive: NaiveDateTime| {
        Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| Since::At(t.timestamp_millis()))
    };
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(since) = date.and_hms_opt(0, 0, 0).and_then(local) {
            return Ok(since);
        }
    }
    for format in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            if let Some(since) = local(naive) {
                return Ok(since);
            }
        }
    }
    Err(format!(
        "'{text}' is not a date (2026-11-30, 2026-11-30 14:00) nor a duration (90s, 30m, 2h, 7d, 2w)"
    ))
}

/// The one thing the program was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `-l`, `-listen`, `--listen`: start the server and wait for the peer.
    Listen {
        /// `-t`: a temporary session that is not stored.
        temporary: bool,
        /// The port to listen on; 0 asks the system for a free port.
        port: u16,
        /// `--bind ADDR`: the local IP address to listen on. `None` means
        /// all interfaces (dual-stack `[::]`, or `0.0.0.0` without IPv6).
        bind: Option<IpAddr>,
        /// `--serve`: headless, for an always-on device: no terminal, standard input not
        /// read, one line (or JSON object) per event, until SIGTERM or Ctrl-C.
        serve: bool,
        /// `--max-peers N`: chat with at most this many devices at once.
        max_peers: usize,
        /// `--onion`: publish the listener as a Tor onion service (`bind` is then
        /// 127.0.0.1 or `None`, and the listener binds 127.0.0.1).
        onion: Option<OnionOptions>,
    },
    /// `-c`, `-connect`, `--connect ADDRESS`: connect to a listening peer.
    Connect {
        /// Host name or IP address, without brackets and not resolved yet
        /// (for instance `"example.org"`, `"192.168.1.1"`, `"::1"`).
        host: String,
        /// The port to connect to, never 0.
        port: u16,
        /// `-t`: a temporary session that is not stored.
        temporary: bool,
    },
    /// `-ls`, `-list`, `--list`: list the stored chat sessions.
    List,
    /// `-eN`, `-editName`, `--edit-name NAME`: change the current user name.
    EditName {
        /// The new name exactly as given; it is validated elsewhere.
        name: String,
    },
    /// `-eC`, `-editChat`, `--edit-chat UUID`: open one stored chat.
    EditChat {
        /// The chat identifier exactly as given; it is validated elsewhere.
        chat: String,
        /// `--last N` and `--since WHEN`: which part of the history to show.
        view: HistoryView,
    },
    /// `--fingerprint`: show this device's id, name and key fingerprint.
    Fingerprint,
    /// `--chat-ids` (hidden, for the completion scripts): the stored chats' ids, one per
    /// line; nothing on a data folder with no database, which it never creates.
    ChatIds,
    /// `--trust-new-key UUID FINGERPRINT`: accept the peer key with this
    /// fingerprint for a peer, replacing the pinned one when it connects.
    TrustNewKey {
        /// The chat identifier exactly as given; it is validated elsewhere.
        chat: String,
        /// The fingerprint's 16 bytes, parsed and checked here.
        fingerprint: [u8; 16],
    },
    /// `-c INVITE`: connect the way an invite says, to the device whose key it names only.
    ConnectInvite {
        /// The decoded invite.
        invite: Invite,
        /// `-t`: a temporary session that is not stored.
        temporary: bool,
    },
    /// `--relay HOST:PORT -c CHAT`: meet a known peer at a relay, by its pinned key.
    ConnectChat {
        /// The chat identifier exactly as given (a unique prefix of the peer's uuid, or the
        /// peer's name, whole or its start).
        chat: String,
        /// `-t`: a temporary session that is not stored.
        temporary: bool,
    },
    /// `--invite [ADDRESS]`: print an invite to this device (with its onion address when it
    /// has one, `--relay` when given, and ADDRESS when given).
    Invite {
        /// The address callers reach this device at, if given.
        address: Option<(String, u16)>,
        /// `-p`: the port of the onion address (as the listener's), and of ADDRESS without one.
        port: u16,
    },
    /// `--completions SHELL`: print the shell's completion script.
    Completions(Shell),
    /// `--man`: print the manual page (roff).
    Man,
}

/// `--onion`: how to reach tor's control port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionOptions {
    /// `--tor-control`'s host (default 127.0.0.1), without brackets.
    pub control_host: String,
    /// `--tor-control`'s port (default 9051).
    pub control_port: u16,
    /// `--tor-password PASS`, if given.
    pub password: Option<Password>,
}

/// A password from the command line; its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

/// Parses the process arguments (including `argv[0]`); on error or
/// help/version, returns the `clap::Error` so `main` can call `.exit()`.
///
/// Legacy single-dash long flags are rewritten first (see the module
/// documentation), then clap parses the result and the cross-option rules
/// are checked.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = rewrite_legacy_flags(args);
    let mut cmd = build_command();
    if let Some((typed, meant)) = misspelled_legacy_flag(&args) {
        return Err(cmd.error(
            ErrorKind::UnknownArgument,
            format!("unknown option '{typed}' (did you mean '{meant}'?)"),
        ));
    }
    let matches = cmd.try_get_matches_from_mut(args)?;
    cli_from_matches(&mut cmd, &matches)
}

/// Why a `-c` address could not be parsed by [`parse_address`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// The address is the empty string.
    Empty,
    /// A port or brackets are given but no host (`":4000"`, `"[]:4000"`).
    MissingHost,
    /// A `[` is not closed by `]` (`"[::1"`); holds the whole input.
    UnclosedBracket(String),
    /// Something other than `:PORT` follows `]` (`"[::1]4000"`); holds that
    /// text.
    TrailingCharacters(String),
    /// Not a valid IPv6 address: the text inside brackets, or a bare text
    /// with two or more colons; holds that text.
    InvalidIpv6(String),
    /// Only digits and dots, but not a valid IPv4 address (`"192.168.1"`,
    /// `"1.2.3.256"`); holds that text.
    InvalidIpv4(String),
    /// A host name with characters a host name cannot have; holds it.
    InvalidHost(String),
    /// The port is not a decimal number from 1 to 65535; holds its text.
    InvalidPort(String),
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the address is empty"),
            Self::MissingHost => f.write_str("no host is given before the port"),
            Self::UnclosedBracket(s) => write!(f, "'[' is not closed by ']' in '{s}'"),
            Self::TrailingCharacters(s) => {
                write!(
                    f,
                    "unexpected '{s}' after ']' (expected nothing or ':PORT')"
                )
            }
            Self::InvalidIpv6(s) => write!(
                f,
                "'{s}' is not a valid IPv6 address (to give a port, write [IPv6]:PORT)"
            ),
            Self::InvalidIpv4(s) => write!(f, "'{s}' is not a valid IPv4 address"),
            Self::InvalidHost(s) => write!(f, "'{s}' is not a valid host name"),
            Self::InvalidPort(s) => {
                write!(f, "invalid port '{s}' (expected a number from 1 to 65535)")
            }
        }
    }
}

impl std::error::Error for AddressError {}

/// Splits a `-c` address into a host and a port, without any DNS lookup.
///
/// Accepted forms (`default_port` is used when no port is written):
///
/// | input                  | result                 |
/// |------------------------|------------------------|
/// | `localhost`            | `("localhost", default)` |
/// | `localhost:4000`       | `("localhost", 4000)`  |
/// | `192.168.1.1`          | `("192.168.1.1", default)` |
/// | `192.168.1.1:4000`     | `("192.168.1.1", 4000)` |
/// | `::1`, `fe80::1%eth0`  | bare IPv6, `default` (a bare IPv6 never carries a port) |
/// | `[::1]`                | `("::1", default)`     |
/// | `[::1]:4000`           | `("::1", 4000)`        |
///
/// The returned host has no brackets, so `(host.as_str(), port)` can be given
/// to [`std::net::ToSocketAddrs`]. An IPv6 zone (`%eth0`) is kept in the host.
/// An explicit port must be 1–65535; `default_port` is returned as given.
pub fn parse_address(input: &str, default_port: u16) -> Result<(String, u16), AddressError> {
    if input.is_empty() {
        return Err(AddressError::Empty);
    }
    if let Some(rest) = input.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err(AddressError::UnclosedBracket(input.to_owned()));
        };
        if inner.is_empty() {
            return Err(AddressError::MissingHost);
        }
        check_ipv6(inner)?;
        let port = if after.is_empty() {
            default_port
        } else if let Some(port) = after.strip_prefix(':') {
            parse_port(port)?
        } else {
            return Err(AddressError::TrailingCharacters(after.to_owned()));
        };
        return Ok((inner.to_owned(), port));
    }
    match input.split_once(':') {
        None => {
            check_host(input)?;
            Ok((input.to_owned(), default_port))
        }
        Some((host, port)) if !port.contains(':') => {
            if host.is_empty() {
                return Err(AddressError::MissingHost);
            }
            check_host(host)?;
            Ok((host.to_owned(), parse_port(port)?))
        }
        Some(_) => {
            check_ipv6(input)?;
            Ok((input.to_owned(), default_port))
        }
    }
}

/// Checks an IPv6 address with an optional `%zone` suffix.
fn check_ipv6(text: &str) -> Result<(), AddressError> {
    let (addr, zone_ok) = match text.split_once('%') {
        Some((addr, zone)) => (
            addr,
            !zone.is_empty()
                && zone
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
        ),
        None => (text, true),
    };
    if zone_ok && addr.parse::<Ipv6Addr>().is_ok() {
        Ok(())
    } else {
        Err(AddressError::InvalidIpv6(text.to_owned()))
    }
}

/// Checks a host that is not in brackets and has no colon: an IPv4 address
/// or a syntactically plausible host name (resolution happens elsewhere).
fn check_host(host: &str) -> Result<(), AddressError> {
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(AddressError::InvalidIpv4(host.to_owned())),
        };
    }
    let plausible = host.len() <= 253
        && !host.starts_with(['-', '.'])
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if plausible {
        Ok(())
    } else {
        Err(AddressError::InvalidHost(host.to_owned()))
    }
}

/// Parses an explicit port: decimal digits only (no sign), 1 to 65535.
fn parse_port(text: &str) -> Result<u16, AddressError> {
    let invalid = || AddressError::InvalidPort(text.to_owned());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid()),
        Ok(port) => Ok(port),
    }
}

/// The legacy single-dash long flags and their GNU replacements.
const LEGACY_FLAGS: &[(&str, &str)] = &[
    ("-listen", "--listen"),
    ("-ls", "--list"),
    ("-list", "--list"),
    ("-connect", "--connect"),
    ("-eN", "--edit-name"),
    ("-editName", "--edit-name"),
    ("-eC", "--edit-chat"),
    ("-editChat", "--edit-chat"),
    ("-help", "--help"),
];

/// Rewrites whole legacy-flag arguments into GNU long options (see the
/// module documentation); `argv[0]` and everything after `--` are kept.
fn rewrite_legacy_flags<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut escaped = false;
    args.into_iter()
        .enumerate()
        .map(|(index, arg)| {
            let arg: OsString = arg.into();
            if index == 0 || escaped {
                arg
            } else if arg == "--" {
                escaped = true;
                arg
            } else {
                rewrite_legacy_flag(arg)
            }
        })
        .collect()
}

/// An argument (after the rewriting, before any `--`) that starts with a legacy long flag
/// and goes on with more of a word (`-listenx`, `-list2`, `-connectx`): a misspelled flag,
/// which clap would read as a cluster of short flags (`-l -i …`) or as `-c` with a value
/// (`onnectx`) and report confusingly. Returns it with the flag it starts with (the
/// longest). The two-letter spellings (`-ls`, `-eN`, `-eC`) are left to clap: as clusters of
/// short flags they cannot be told from typos.
fn misspelled_legacy_flag(args: &[OsString]) -> Option<(String, &'static str)> {
    args.iter()
        .skip(1)
        .take_while(|arg| *arg != "--")
        .filter_map(|arg| arg.to_str())
        .filter(|arg| !arg.starts_with("--"))
        .find_map(|arg| {
            let meant = LEGACY_FLAGS
                .iter()
                .map(|(legacy, _)| *legacy)
                .filter(|legacy| legacy.len() > 3 && arg.len() > legacy.len())
                .filter(|legacy| arg.starts_with(legacy) && !arg[legacy.len()..].starts_with('='))
                .max_by_key(|legacy| legacy.len())?;
            Some((arg.to_owned(), meant))
        })
}

/// Rewrites one argument if it is a legacy flag, alone or followed by `=`.
fn rewrite_legacy_flag(arg: OsString) -> OsString {
    let Some(text) = arg.to_str() else {
        return arg;
    };
    for (legacy, gnu) in LEGACY_FLAGS {
        if let Some(rest) = text.strip_prefix(legacy) {
            if rest.is_empty() || rest.starts_with('=') {
                return format!("{gnu}{rest}").into();
            }
        }
    }
    arg
}

/// Argument ids.
const LISTEN: &str = "listen";
const LIST: &str = "list";
const CONNECT: &str = "connect";
const EDIT_NAME: &str = "edit_name";
const EDIT_CHAT: &str = "edit_chat";
const FINGERPRINT: &str = "fingerprint";
const TRUST_NEW_KEY: &str = "trust_new_key";
const INVITE: &str = "invite";
const PROXY: &str = "proxy";
const TOR: &str = "tor";
const RELAY: &str = "relay";
const ADDRESS: &str = "address";
const TEMPORARY: &str = "temporary";
const PORT: &str = "port";
const BIND: &str = "bind";
const SERVE: &str = "serve";
const MAX_PEERS: &str = "max_peers";
const ONION: &str = "onion";
const TOR_CONTROL: &str = "tor_control";
const TOR_PASSWORD: &str = "tor_password";
const LAST: &str = "last";
const SINCE: &str = "since";
const DATA_DIR: &str = "data_dir";
const BELL: &str = "bell";
const NOTIFY: &str = "notify";
const COMPLETIONS: &str = "completions";
const MAN: &str = "man";
const CHAT_IDS: &str = "chat_ids";
const JSON: &str = "json";
const VERBOSE: &str = "verbose";

/// The name used in the usage lines and examples: the installed binary.
const BIN: &str = "socketfalco";

const USAGE: &str = "\
socketfalco [OPTIONS] -l | -listen [-t] [--serve] [--max-peers N] [--onion] [--relay HOST:PORT]
       socketfalco [OPTIONS] -c | -connect [-t] [--tor | --proxy URL] <ADDRESS | INVITE>
       socketfalco [OPTIONS] --relay HOST:PORT -c <INVITE | CHAT_UUID>
       socketfalco [OPTIONS] --invite [ADDRESS] [--relay HOST:PORT]
       socketfalco [OPTIONS] -ls | -list
       socketfalco [OPTIONS] -eN | -editName <NAME>
       socketfalco [OPTIONS] -eC | -editChat <CHAT_UUID>
       socketfalco [OPTIONS] --fingerprint
       socketfalco [OPTIONS] --trust-new-key <CHAT_UUID> <FINGERPRINT>
       socketfalco --completions <SHELL> | --man";

const EXAMPLES: &str = "\
Legacy single-dash forms (-listen, -ls, -list, -connect, -eN, -editName, -eC, -editChat, -help)
work exactly like the GNU forms shown above.

Examples:
  socketfalco -listen ; socketfalco -listen -t ; socketfalco -connect 192.168.0.1 ; socketfalco -connect -t 192.168.0.1 ; socketfalco -list ; socketfalco -editName Alice ; socketfalco -editChat 97b8b...
  socketfalco -l -p 0 --bind 127.0.0.1 ; socketfalco -c [::1]:30001 ; socketfalco --json -ls
  socketfalco --fingerprint ; socketfalco --trust-new-key 97b8b... '1a2b 3c4d 5e6f 7a8b 9c0d 1e2f 3a4b 5c6d'
  socketfalco -l --onion ; socketfalco -l --serve --onion --tor-control 127.0.0.1:9151

Every connection is encrypted and proves each device's key. The first connection with a peer
pins its key; a peer that later presents the same id with another key is refused, with a
warning that shows the fingerprint it presented. If that peer really reinstalled, ask them to
run --fingerprint on their device and read it to you over another channel (in person, by
phone); only if it equals the presented one, accept exactly that key with
--trust-new-key CHAT 'FINGERPRINT'.

-l --onion publishes the listener as a Tor onion service through a running tor (torrc:
ControlPort 9051 and CookieAuthentication 1, or HashedControlPassword with --tor-password or
SOCKETFALCO_TOR_PASSWORD, which keeps it out of the process list). It prints the .onion
address to give the peer, the same at every start: its key is kept in the data directory.

A listener serves several peers at once. In a session, lines go to the current chat (the
peer who connected first, or the one /to chose; peers coming or going never change it),
shown in the prompt as you→peer when several are live:
  /to NAME         write to NAME from now on (a name, or a unique prefix of it or of the
                   peer's id; Tab completes)
  /to NAME TEXT    send one line to NAME
  /chats           list the live chats
  //TEXT           send a line that starts with /
  quit             leave (so do Ctrl-C, Ctrl-D and closing the terminal)
Scripts may also write {\"to\": \"NAME\", \"text\": \"...\"} lines.

-eC on a terminal opens on the chat's last screenful, with a marker above the first unread
line. There, and in a session for the current chat:
  PgUp, Shift+Up   read back a page (the chat is never loaded whole)
  PgDn, Shift+Down a page forward; past the last page, back to the live view
  End              back to the live view (while reading back)
While you read back, new lines do not move the page: the status row counts them (\"2 new
lines below\"). --bell rings the terminal bell, and --notify shows a desktop notification,
for a line that comes in while you read back or for another chat than the current one.

Completions and manual page:
  socketfalco --completions bash > ~/.local/share/bash-completion/completions/socketfalco
  socketfalco --man > ~/.local/share/man/man1/socketfalco.1";

/// The commands that are not a session: `-t`, `-p` and `--bind` conflict with them.
const NOT_SESSIONS: [&str; 8] = [
    LIST,
    EDIT_NAME,
    EDIT_CHAT,
    FINGERPRINT,
    TRUST_NEW_KEY,
    COMPLETIONS,
    MAN,
    CHAT_IDS,
];

/// The clap definition of the command line, as `--completions` and `--man` describe it. The
/// legacy single-dash spellings are not clap options (see the module documentation): the
/// help of each command and the text after the options name them, so the manual page shows
/// them; the completion scripts get them as extra words ([`completion_script`]).
pub fn command() -> clap::Command {
    build_command()
}

/// The legacy single-dash spellings, for the completion scripts.
pub fn legacy_flags() -> impl Iterator<Item = &'static str> {
    LEGACY_FLAGS.iter().map(|(legacy, _)| *legacy)
}

/// The completion script for `shell`: clap_complete's, with the legacy single-dash
/// spellings added as candidates where the shell's script has a plain word list (bash,
/// fish's old-style options, zsh's option specs). PowerShell and elvish complete the GNU
/// forms only (their scripts list options per command in a form that has no place for
/// them; the legacy forms still work when typed).
pub fn completion_script(shell: Shell) -> String {
    let mut cmd = build_command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    let legacy: Vec<&str> = legacy_flags().collect();
    match shell {
        Shell::Bash => {
            // The top-level word list: `opts="-l -c … --man"` for the binary itself.
            let words = legacy.join(" ");
            let mut done = false;
            script
                .lines()
                .map(|line| {
                    let trimmed = line.trim_start();
                    if !done && trimmed.starts_with("opts=\"") && trimmed.contains("--listen") {
                        done = true;
                        line.replacen("opts=\"", &format!("opts=\"{words} "), 1)
                    } else {
                        line.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                .replace(
                    "complete -F _socketfalco ",
                    "complete -F _socketfalco_with_chats ",
                )
                + "\n"
                + BASH_CHAT_IDS
        }
        Shell::Fish => {
            let mut script = script;
            script.push_str(FISH_CHAT_IDS);
            script.push_str("# The legacy single-dash spellings of the original SocketFalco.\n");
            for (legacy, gnu) in LEGACY_FLAGS {
                let needs_value = matches!(*gnu, "--connect" | "--edit-name" | "--edit-chat");
                script.push_str(&format!(
                    "complete -c {BIN} -o {}{} -d 'same as {gnu}'\n",
                    &legacy[1..],
                    if needs_value { " -r" } else { "" }
                ));
            }
            script
        }
        Shell::Zsh => {
            // Each option is one spec line of the `_arguments` call; the legacy ones go
            // before the first.
            let specs: String = LEGACY_FLAGS
                .iter()
                .map(|(legacy, gnu)| {
                    let value = match *gnu {
                        "--connect" => ":address: ",
                        "--edit-name" => ":name: ",
                        "--edit-chat" => ":chat:_socketfalco_chat_ids",
                        _ => "",
                    };
                    format!("'{legacy}[same as {gnu}]{value}' \\\n")
                })
                .collect();
            // The chats' ids after --edit-chat, -eC, -editChat and --trust-new-key.
            let script =
                script.replace(":CHAT_UUID:_default'", ":CHAT_UUID:_socketfalco_chat_ids'");
            let script = match script.find("'-l[") {
                Some(at) => format!("{}{specs}{}", &script[..at], &script[at..]),
                None => script,
            };
            // Defined before the script's last lines call `_socketfalco`.
            match script.find('\n') {
                Some(at) => format!("{}{ZSH_CHAT_IDS}{}", &script[..=at], &script[at + 1..]),
                None => script,
            }
        }
        _ => script,
    }
}

/// Bash: the argument of `-eC`, `-editChat` and `--edit-chat` completes to the ids of the
/// chats stored in the data folder the command line names (`--data-dir DIR`, else the
/// default one), from the hidden `--chat-ids`, which creates nothing; every other word as
/// clap's script completes it.
const BASH_CHAT_IDS: &str = r#"
# The chats' ids after -eC, -editChat or --edit-chat, from the data folder on the line.
_socketfalco_chat_ids() {
    local i word
    local -a dir=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word == --data-dir ]]; then
            dir=(--data-dir "${COMP_WORDS[i+1]/#\~/$HOME}")
        elif [[ $word == --data-dir=* ]]; then
            dir=(--data-dir "${word#--data-dir=}")
        fi
    done
    "${COMP_WORDS[0]}" "${dir[@]}" --chat-ids 2>/dev/null
}
_socketfalco_with_chats() {
    case "${COMP_WORDS[COMP_CWORD-1]}" in
        -eC | -editChat | --edit-chat)
            COMPREPLY=($(compgen -W "$(_socketfalco_chat_ids)" -- "${COMP_WORDS[COMP_CWORD]}"))
            return 0
            ;;
    esac
    _socketfalco "$@"
}
"#;

/// Zsh: the same candidates, from the data folder the command line names, for the argument
/// of `--edit-chat`, `-eC`, `-editChat` and `--trust-new-key`.
const ZSH_CHAT_IDS: &str = r#"
# The chats' ids, from the data folder on the line (--data-dir DIR), else the default one.
_socketfalco_chat_ids() {
    local i
    local -a dir ids
    for ((i = 2; i < CURRENT; i++)); do
        case $words[i] in
            --data-dir) dir=(--data-dir "${words[i+1]/#\~/$HOME}") ;;
            --data-dir=*) dir=(--data-dir "${${words[i]#--data-dir=}/#\~/$HOME}") ;;
        esac
    done
    ids=(${(f)"$("${words[1]/#\~/$HOME}" "${dir[@]}" --chat-ids 2>/dev/null)"})
    compadd -- "${ids[@]}"
}
"#;

/// Fish: the same candidates for the argument of `--edit-chat`, `-eC` and `-editChat` (from
/// the default data folder).
const FISH_CHAT_IDS: &str = "# The chats' ids after --edit-chat, -eC and -editChat.
complete -c socketfalco -l edit-chat -x -a '(socketfalco --chat-ids 2>/dev/null)'
complete -c socketfalco -o eC -x -a '(socketfalco --chat-ids 2>/dev/null)'
complete -c socketfalco -o editChat -x -a '(socketfalco --chat-ids 2>/dev/null)'
";

/// Builds the clap definition of the command line (after legacy rewriting).
fn build_command() -> clap::Command {
    // Every argument has an explicit heading so that the commands come
    // first in the help, as in the original usage text.
    const COMMANDS: &str = "Commands (exactly one)";
    const OPTIONS: &str = "Options";
    clap::Command::new(BIN)
        .version(env!("CARGO_PKG_VERSION"))
        .about("SocketFalco: a terminal chat between two devices that never loses a message.")
        .override_usage(USAGE)
        .after_help(EXAMPLES)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg_required_else_help(true)
        .arg(
            Arg::new(LISTEN)
                .short('l')
                .long("listen")
                .action(ArgAction::SetTrue)
                .help_heading(COMMANDS)
                .help(
                    "Start the server. Use -t for temporary session.\n\
                     [legacy: -l, -listen]  e.g. socketfalco -l ; socketfalco -l -t",
                ),
        )
        .arg(
            Arg::new(LIST)
                .long("list")
                .action(ArgAction::SetTrue)
                .help_heading(COMMANDS)
                .help(
                    "List available chat sessions.\n\
                     [legacy: -ls, -list]  e.g. socketfalco -ls",
                ),
        )
        .arg(
            Arg::new(CONNECT)
                .short('c')
                .long("connect")
                .value_name("ADDRESS")
                .num_args(0..=1)
                .action(ArgAction::Set)
                .help_heading(COMMANDS)
                .help(
                    "Connect to a specified server address. Use -t for temporary session.\n\
                     ADDRESS: HOST[:PORT], IPv4[:PORT], IPv6, [IPv6][:PORT]; its :PORT wins over -p\n\
                     [legacy: -c, -connect]  \
                     e.g. socketfalco -c 192.168.1.1 ; socketfalco -c -t 192.168.1.1",
                ),
        )
        .arg(
            Arg::new(EDIT_NAME)
                .long("edit-name")
                .value_name("NAME")
                .action(ArgAction::Set)
                .help_heading(COMMANDS)
                .help(
                    "Edit the current user name.\n\
                     [legacy: -eN, -editName]  e.g. socketfalco -eN NewName",
                ),
        )
        .arg(
            Arg::new(EDIT_CHAT)
                .long("edit-chat")
                .value_name("CHAT_UUID")
                .action(ArgAction::Set)
                .help_heading(COMMANDS)
                .help(
                    "Open the specific chat.\n\
                     [legacy: -eC, -editChat]  e.g. socketfalco -eC chatUUID",
                ),
        )
        .arg(
            Arg::new(FINGERPRINT)
                .long("fingerprint")
                .action(ArgAction::SetTrue)
                .help_heading(COMMANDS)
                .help(
                    "Show this device's id, name and key fingerprint, to compare with\n\
                     what the peer's -ls shows for you.  e.g. socketfalco --fingerprint",
                ),
        )
        .arg(
            Arg::new(TRUST_NEW_KEY)
                .long("trust-new-key")
                .value_names(["CHAT_UUID", "FINGERPRINT"])
                // Any number, so that a fingerprint typed without quotes (eight arguments)
                // gets an error that says to quote it.
                .num_args(1..)
                .action(ArgAction::Set)
                .help_heading(COMMANDS)
                .help(
                    "Accept a peer's new key (after a reinstall): exactly the key with this\n\
                     fingerprint, as the peer's own --fingerprint shows it. Compare fingerprints\n\
                     first, out of band. e.g. socketfalco --trust-new-key chatUUID 'xxxx xxxx ...'",
                ),
        )
        .arg(
            Arg::new(ADDRESS)
                .value_name("ADDRESS")
                .action(ArgAction::Set)
                .hide(true),
        )
        .arg(
            Arg::new(TEMPORARY)
                .help_heading(OPTIONS)
                .short('t')
                .long("temporary")
                .action(ArgAction::SetTrue)
                .conflicts_with_all(NOT_SESSIONS)
                .conflicts_with(INVITE)
                .help("Temporary session (only with -l or -c), before or after the address"),
        )
        .arg(
            Arg::new(PORT)
                .help_heading(OPTIONS)
                .short('p')
                .long("port")
                .value_name("PORT")
                .value_parser(value_parser!(u16))
                .default_value(DEFAULT_PORT_TEXT)
                .conflicts_with_all(NOT_SESSIONS)
                .help("Port to listen on (0 = pick a free one) or to connect to"),
        )
        .arg(
            Arg::new(BIND)
                .help_heading(OPTIONS)
                .long("bind")
                .value_name("IP")
                .value_parser(value_parser!(IpAddr))
                .conflicts_with_all([
                    CONNECT,
                    LIST,
                    EDIT_NAME,
                    EDIT_CHAT,
                    FINGERPRINT,
                    TRUST_NEW_KEY,
                ])
                .help("IP address to listen on (only with -l) [default: all interfaces]"),
        )
        .arg(
            Arg::new(SERVE)
                .help_heading(OPTIONS)
                .long("serve")
                .action(ArgAction::SetTrue)
                .help(
                    "With -l: run headless (an always-on device, a service): standard input is \
                     not read, one line (or JSON object) per event, until SIGTERM or Ctrl-C",
                ),
        )
        .arg(
            Arg::new(MAX_PEERS)
                .help_heading(OPTIONS)
                .long("max-peers")
                .value_name("N")
                .value_parser(value_parser!(u16).range(1..))
                .help(format!(
                    "With -l: chat with at most N devices at once; one more is told the \
                     listener is busy and retries later, unless it is a contact (a device you \
                     wrote to) and a stranger holds a place, which it then takes [default: {}]",
                    socketfalco_transport::endpoint::DEFAULT_MAX_PEERS
                )),
        )
        .arg(
            Arg::new(ONION)
                .help_heading(OPTIONS)
                .long("onion")
                .action(ArgAction::SetTrue)
                .help(
                    "With -l: publish the listener as a Tor onion service through a running \
                     tor's control port, and listen on 127.0.0.1 only. Prints the .onion \
                     address for the peer (socketfalco --tor -c ADDRESS), the same at every \
                     start; its port is -p's (30000 with -p 0)",
                ),
        )
        .arg(
            Arg::new(TOR_CONTROL)
                .help_heading(OPTIONS)
                .long("tor-control")
                .value_name("ADDR")
                .help(
                    "With --onion: tor's control port, HOST[:PORT] [default: 127.0.0.1:9051]",
                ),
        )
        .arg(
            Arg::new(TOR_PASSWORD)
                .help_heading(OPTIONS)
                .long("tor-password")
                .value_name("PASS")
                .help(
                    "With --onion: the control port's password (tor's HashedControlPassword). \
                     The environment variable SOCKETFALCO_TOR_PASSWORD does the same and keeps \
                     the password out of the process list",
                ),
        )
        .arg(
            Arg::new(LAST)
                .help_heading(OPTIONS)
                .long("last")
                .value_name("N")
                .value_parser(value_parser!(u64).range(1..))
                .help("With -eC: show only the newest N messages"),
        )
        .arg(
            Arg::new(SINCE)
                .help_heading(OPTIONS)
                .long("since")
                .value_name("WHEN")
                .value_parser(|text: &str| parse_since(text))
                .help(
                    "With -eC: show only messages written since WHEN: a date (2026-11-30), a \
                     date and time (2026-11-30 14:00), or a duration ago (90s, 30m, 2h, 7d, 2w)",
                ),
        )
        .arg(
            Arg::new(BELL)
                .help_heading(OPTIONS)
                .long("bell")
                .action(ArgAction::SetTrue)
                .help(
                    "With -l or -c: ring the terminal bell on a line that comes in while you \
                     read back or for another chat than the current one (with --serve: on every \
                     line, when standard error is a terminal)",
                ),
        )
        .arg(
            Arg::new(NOTIFY)
                .help_heading(OPTIONS)
                .long("notify")
                .value_name("WHAT")
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("name")
                .value_parser(["name", "text"])
                .help(
                    "With -l or -c: a desktop notification for a line that comes in while you \
                     read back, for another chat, or while the terminal is in the background \
                     (with --serve: every line). It names the peer only; --notify=text adds \
                     the message text",
                ),
        )
        .arg(
            Arg::new(COMPLETIONS)
                .long("completions")
                .value_name("SHELL")
                .value_parser(value_parser!(Shell))
                .help_heading(COMMANDS)
                .help(
                    "Print the completion script for SHELL (bash, zsh, fish, powershell, \
                     elvish); see the README for where to put it",
                ),
        )
        .arg(
            Arg::new(INVITE)
                .long("invite")
                .value_name("ADDRESS")
                .num_args(0..=1)
                .action(ArgAction::Set)
                .help_heading(COMMANDS)
                .help(
                    "Print an invite to this device: one line to give the peer, who connects\n\
                     with -c INVITE and refuses anyone but this device. It names this device's\n\
                     key, its onion address (after -l --onion), --relay and ADDRESS if given.\n\
                     e.g. socketfalco --invite --relay relay.example.org:4001",
                ),
        )
        .arg(
            Arg::new(MAN)
                .long("man")
                .action(ArgAction::SetTrue)
                .help_heading(COMMANDS)
                .help("Print the manual page (roff), e.g. socketfalco --man | man -l -"),
        )
        .arg(
            Arg::new(CHAT_IDS)
                .long("chat-ids")
                .action(ArgAction::SetTrue)
                .hide(true)
                .help("Print the stored chats' ids, one per line (for shell completion)"),
        )
        .arg(
            Arg::new(PROXY)
                .help_heading(OPTIONS)
                .long("proxy")
                .value_name("URL")
                .value_parser(|text: &str| text.parse::<ProxySpec>().map_err(|e| e.to_string()))
                .help(
                    "With -c: connect through this SOCKS5 proxy: socks5h://[USER:PASS@]HOST:PORT \
                     (the proxy resolves the name; never looked up here) or socks5://… (resolved \
                     here)",
                ),
        )
        .arg(
            Arg::new(TOR)
                .help_heading(OPTIONS)
                .long("tor")
                .action(ArgAction::SetTrue)
                .conflicts_with(PROXY)
                .help(
                    "With -c: connect through the tor running on this device; short for \
                     --proxy socks5h://127.0.0.1:9050. Needed for .onion addresses",
                ),
        )
        .arg(
            Arg::new(RELAY)
                .help_heading(OPTIONS)
                .long("relay")
                .value_name("HOST:PORT")
                .help(
                    "A magic-wormhole transit relay, for when neither side can be reached: with \
                     -l wait for callers there too; with -c INVITE or -c CHAT_UUID meet the \
                     listener there; with --invite name it in the invite",
                ),
        )
        .arg(
            Arg::new(DATA_DIR)
                .help_heading(OPTIONS)
                .long("data-dir")
                .value_name("DIR")
                .value_parser(value_parser!(PathBuf))
                .help(
                    "Keep the user name, the device key and the chats in DIR instead of the \
                     default data directory",
                ),
        )
        .arg(
            Arg::new(JSON)
                .help_heading(OPTIONS)
                .long("json")
                .action(ArgAction::SetTrue)
                .help("Machine-readable JSON output (for -ls, --fingerprint, --trust-new-key, sessions)"),
        )
        .arg(
            Arg::new(VERBOSE)
                .help_heading(OPTIONS)
                .short('v')
                .long("verbose")
                .action(ArgAction::Count)
                .help("More diagnostic output; repeat for more (-vv)"),
        )
        .arg(
            Arg::new("help")
                .help_heading(OPTIONS)
                .short('h')
                .long("help")
                .action(ArgAction::Help)
                .help("Show this help message and exit. [legacy: -h, -help]"),
        )
        .arg(
            Arg::new("version")
                .help_heading(OPTIONS)
                .short('V')
                .long("version")
                .action(ArgAction::Version)
                .help("Print the version and exit"),
        )
        .group(
            ArgGroup::new("command")
                .args([
                    LISTEN,
                    LIST,
                    CONNECT,
                    EDIT_NAME,
                    EDIT_CHAT,
                    FINGERPRINT,
                    TRUST_NEW_KEY,
                    INVITE,
                    COMPLETIONS,
                    MAN,
                    CHAT_IDS,
                ])
                .multiple(false),
        )
}

/// Turns clap's matches into a [`Cli`], enforcing the rules clap cannot
/// express (a command is required, where the `-c` address comes from).
fn cli_from_matches(cmd: &mut clap::Command, m: &ArgMatches) -> Result<Cli, clap::Error> {
    let temporary = m.get_flag(TEMPORARY);
    let port = m.get_one::<u16>(PORT).copied().unwrap_or(DEFAULT_PORT);
    let stray_address = m.get_one::<String>(ADDRESS);
    let connecting = m.contains_id(CONNECT);
    if let (Some(address), false) = (stray_address, connecting) {
        return Err(cmd.error(
            ErrorKind::UnknownArgument,
            format!(
                "unexpected argument '{address}' found\n\n  \
                 tip: to connect to it, use '-c {address}'"
            ),
        ));
    }

    let proxy = if m.get_flag(TOR) {
        Some(ProxySpec::tor())
    } else {
        m.get_one::<ProxySpec>(PROXY).cloned()
    };
    let relay = match m.get_one::<String>(RELAY) {
        Some(text) => Some(parse_relay(cmd, text)?),
        None => None,
    };
    let command = if m.get_flag(LISTEN) {
        let bind = m.get_one::<IpAddr>(BIND).copied();
        let onion = if m.get_flag(ONION) {
            Some(onion_options(cmd, m, bind)?)
        } else {
            None
        };
        Command::Listen {
            temporary,
            port,
            bind,
            onion,
            serve: m.get_flag(SERVE),
            max_peers: m
                .get_one::<u16>(MAX_PEERS)
                .map_or(socketfalco_transport::endpoint::DEFAULT_MAX_PEERS, |n| {
                    usize::from(*n)
                }),
        }
    } else if m.get_flag(LIST) {
        Command::List
    } else if connecting {
        let address = match (m.get_one::<String>(CONNECT), stray_address) {
            (Some(address), None) | (None, Some(address)) => address,
            (Some(_), Some(extra)) => {
                return Err(cmd.error(
                    ErrorKind::UnknownArgument,
                    format!("unexpected argument '{extra}' found: -c takes one address"),
                ));
            }
            (None, None) => {
                return Err(cmd.error(
                    ErrorKind::InvalidValue,
                    "a value is required for '--connect <ADDRESS>' but none was supplied",
                ));
            }
        };
        if Invite::looks_like_invite(address) {
            let invite = Invite::decode(address).map_err(|err| {
                cmd.error(
                    ErrorKind::ValueValidation,
                    format!("invalid invite for '--connect <INVITE>': {err}"),
                )
            })?;
            if relay.is_some() {
                return Err(cmd.error(
                    ErrorKind::ArgumentConflict,
                    "--relay goes with -c CHAT_UUID, not with an invite: an invite names its \
                     relay itself",
                ));
            }
            connect_invite(cmd, invite, proxy.is_some(), temporary)?
        } else if relay.is_some() {
            Command::ConnectChat {
                chat: address.clone(),
                temporary,
            }
        } else {
            connect_address(cmd, address, port, proxy.is_some(), temporary)?
        }
    } else if m.contains_id(INVITE) {
        let address = match m.get_one::<String>(INVITE) {
            Some(text) => Some(parse_address(text, port).map_err(|err| {
                cmd.error(
                    ErrorKind::ValueValidation,
                    format!("invalid value '{text}' for '--invite <ADDRESS>': {err}"),
                )
            })?),
            None => None,
        };
        Command::Invite { address, port }
    } else if let Some(name) = m.get_one::<String>(EDIT_NAME) {
        Command::EditName { name: name.clone() }
    } else if let Some(chat) = m.get_one::<String>(EDIT_CHAT) {
        Command::EditChat {
            chat: chat.clone(),
            view: HistoryView {
                last: m.get_one::<u64>(LAST).copied(),
                since: m.get_one::<Since>(SINCE).copied(),
            },
        }
    } else if m.get_flag(FINGERPRINT) {
        Command::Fingerprint
    } else if let Some(values) = m.get_many::<String>(TRUST_NEW_KEY) {
        trust_new_key(cmd, &values.collect::<Vec<_>>())?
    } else if let Some(shell) = m.get_one::<Shell>(COMPLETIONS) {
        Command::Completions(*shell)
    } else if m.get_flag(MAN) {
        Command::Man
    } else if m.get_flag(CHAT_IDS) {
        Command::ChatIds
    } else {
        return Err(missing_command_error(cmd));
    };
    check_reach_options(cmd, &command, m)?;

    // Options that belong to one command (clap's `requires` does not see a missing flag,
    // whose default is `false`).
    let given = |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    for (option, flag, owner) in [
        (SERVE, "--serve", "-l"),
        (MAX_PEERS, "--max-peers", "-l"),
        (ONION, "--onion", "-l"),
        (LAST, "--last", "-eC"),
        (SINCE, "--since", "-eC"),
        (BELL, "--bell", "-l or -c"),
        (NOTIFY, "--notify", "-l or -c"),
    ] {
        let fits = match &command {
            Command::Listen { .. } => owner.starts_with("-l"),
            Command::Connect { .. } => owner == "-l or -c",
            Command::EditChat { .. } => owner == "-eC",
            _ => false,
        };
        if given(option) && !fits {
            return Err(cmd.error(
                ErrorKind::ArgumentConflict,
                format!("{flag} goes only with {owner}"),
            ));
        }
    }
    if !m.get_flag(ONION) {
        for (option, flag) in [
            (TOR_CONTROL, "--tor-control"),
            (TOR_PASSWORD, "--tor-password"),
        ] {
            if given(option) {
                return Err(cmd.error(
                    ErrorKind::ArgumentConflict,
                    format!("{flag} goes only with -l --onion"),
                ));
            }
        }
    }

    Ok(Cli {
        command,
        data_dir: m.get_one::<PathBuf>(DATA_DIR).cloned(),
        verbose: m.get_count(VERBOSE),
        json: m.get_flag(JSON),
        bell: m.get_flag(BELL),
        notify: match m.get_one::<String>(NOTIFY).map(String::as_str) {
            None => Notify::Off,
            Some("text") => Notify::Text,
            Some(_) => Notify::Name,
        },
        reach: Reach { proxy, relay },
    })
}

/// `--relay HOST:PORT`: the port is required (a relay has no default port).
fn parse_relay(cmd: &mut clap::Command, text: &str) -> Result<(String, u16), clap::Error> {
    let invalid = |cmd: &mut clap::Command, why: String| {
        cmd.error(
            ErrorKind::ValueValidation,
            format!("invalid value '{text}' for '--relay <HOST:PORT>': {why}"),
        )
    };
    match parse_address(text, 0) {
        Ok((_, 0)) => Err(invalid(
            cmd,
            "give the relay's port too (HOST:PORT; Debian's transit relay often listens on 4001)"
                .into(),
        )),
        Ok((host, port)) => Ok((host, port)),
        Err(err) => Err(invalid(cmd, err.to_string())),
    }
}

/// `-c ADDRESS`: the host and port, with an onion name checked and refused without a proxy
/// (it is never looked up in DNS).
fn connect_address(
    cmd: &mut clap::Command,
    address: &str,
    port: u16,
    proxied: bool,
    temporary: bool,
) -> Result<Command, clap::Error> {
    let (host, port) = parse_address(address, port).map_err(|err| {
        cmd.error(
            ErrorKind::ValueValidation,
            format!("invalid value '{address}' for '--connect <ADDRESS>': {err}"),
        )
    })?;
    if port == 0 {
        return Err(cmd.error(
            ErrorKind::ValueValidation,
            "cannot connect to port 0 (port 0 only means 'any free port' with --listen); \
             give ADDRESS:PORT or -p PORT",
        ));
    }
    if is_onion_host(&host) {
        if let Err(err) = check_onion_v3(&host) {
            return Err(cmd.error(
                ErrorKind::ValueValidation,
                format!("invalid onion address '{host}': {err}"),
            ));
        }
        if !proxied {
            return Err(cmd.error(
                ErrorKind::MissingRequiredArgument,
                format!(
                    "{host} is an onion address, reachable only through Tor: add --tor (a tor \
                     running on this device) or --proxy socks5h://HOST:PORT; it is never looked \
                     up in DNS"
                ),
            ));
        }
    }
    Ok(Command::Connect {
        host,
        port,
        temporary,
    })
}

/// `-c INVITE`: an invite that offers a way this caller can take.
fn connect_invite(
    cmd: &mut clap::Command,
    invite: Invite,
    proxied: bool,
    temporary: bool,
) -> Result<Command, clap::Error> {
    let usable =
        invite.address.is_some() || invite.relay.is_some() || (proxied && invite.onion.is_some());
    if !usable {
        let why = match &invite.onion {
            Some(onion) => format!(
                "the invite offers only the onion address {onion}: add --tor (a tor running on \
                 this device) or --proxy socks5h://HOST:PORT"
            ),
            None => "the invite names no way to reach the device (no address, onion address or \
                     relay): ask for one made with --invite ADDRESS or --relay HOST:PORT"
                .to_owned(),
        };
        return Err(cmd.error(ErrorKind::ValueValidation, why));
    }
    Ok(Command::ConnectInvite { invite, temporary })
}

/// `--proxy`/`--tor` go with a caller; `--relay` with a listener, a caller meeting a chat
/// there, and `--invite`.
fn check_reach_options(
    cmd: &mut clap::Command,
    command: &Command,
    m: &ArgMatches,
) -> Result<(), clap::Error> {
    let given = |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let caller = matches!(
        command,
        Command::Connect { .. } | Command::ConnectInvite { .. } | Command::ConnectChat { .. }
    );
    for (id, flag) in [(PROXY, "--proxy"), (TOR, "--tor")] {
        if given(id) && !caller {
            return Err(cmd.error(
                ErrorKind::ArgumentConflict,
                format!("{flag} goes only with -c (a proxy carries outgoing connections)"),
            ));
        }
    }
    let relays = matches!(
        command,
        Command::Listen { .. } | Command::ConnectChat { .. } | Command::Invite { .. }
    );
    if given(RELAY) && !relays {
        return Err(cmd.error(
            ErrorKind::ArgumentConflict,
            "--relay goes only with -l, -c CHAT_UUID and --invite",
        ));
    }
    Ok(())
}

/// `--onion`'s options: the control port's address and the password. A `--bind` other than
/// 127.0.0.1 is refused: the onion service forwards to 127.0.0.1, and listening elsewhere too
/// would take connections that do not come through Tor.
fn onion_options(
    cmd: &mut clap::Command,
    m: &ArgMatches,
    bind: Option<IpAddr>,
) -> Result<OnionOptions, clap::Error> {
    if let Some(ip) = bind.filter(|ip| *ip != IpAddr::V4(Ipv4Addr::LOCALHOST)) {
        return Err(cmd.error(
            ErrorKind::ArgumentConflict,
            format!(
                "--onion listens on 127.0.0.1 only, where tor forwards the onion service's \
                 connections; --bind {ip} would also take connections that do not come through \
                 Tor. Drop --bind (or give --bind 127.0.0.1)"
            ),
        ));
    }
    let control = m
        .get_one::<String>(TOR_CONTROL)
        .map_or(crate::tor::DEFAULT_CONTROL_ADDR, String::as_str);
    let (control_host, control_port) = parse_address(control, crate::tor::DEFAULT_CONTROL_PORT)
        .map_err(|err| {
            cmd.error(
                ErrorKind::ValueValidation,
                format!("invalid value '{control}' for '--tor-control <ADDR>': {err}"),
            )
        })?;
    Ok(OnionOptions {
        control_host,
        control_port,
        password: m.get_one::<String>(TOR_PASSWORD).cloned().map(Password),
    })
}

/// How a fingerprint looks, as `--fingerprint` prints it.
const FINGERPRINT_FORMAT: &str = "xxxx xxxx xxxx xxxx xxxx xxxx xxxx xxxx";

/// `--trust-new-key CHAT FINGERPRINT` from its values; the one-argument form of earlier
/// versions and a malformed fingerprint are usage errors that say what to give.
fn trust_new_key(cmd: &mut clap::Command, values: &[&String]) -> Result<Command, clap::Error> {
    if values.len() > 2 {
        return Err(cmd.error(
            ErrorKind::TooManyValues,
            format!(
                "--trust-new-key takes two values, the chat and the fingerprint\n\n  \
                 tip: give the fingerprint as one argument, in quotes: \
                 {BIN} --trust-new-key CHAT '{FINGERPRINT_FORMAT}'"
            ),
        ));
    }
    let [chat, fingerprint] = values else {
        return Err(cmd.error(
            ErrorKind::WrongNumberOfValues,
            format!(
                "--trust-new-key needs the peer's key fingerprint after the chat; nothing was \
                 changed.\n\n  \
                 Ask the peer to run `{BIN} --fingerprint` on their device and to read you the \
                 fingerprint over another channel (in person, by phone). Compare it with the \
                 presented fingerprint of the key-mismatch warning; only if they are equal, run:\n    \
                 {BIN} --trust-new-key CHAT 'FINGERPRINT'"
            ),
        ));
    };
    let Some(fingerprint) = socketfalco_core::parse_fingerprint(fingerprint) else {
        return Err(cmd.error(
            ErrorKind::ValueValidation,
            format!(
                "invalid fingerprint '{fingerprint}' for '--trust-new-key <CHAT_UUID> \
                 <FINGERPRINT>': expected 32 hexadecimal digits as `{BIN} --fingerprint` \
                 prints them, '{FINGERPRINT_FORMAT}' (with or without the spaces, as one \
                 argument: in quotes)"
            ),
        ));
    };
    Ok(Command::TrustNewKey {
        chat: (*chat).clone(),
        fingerprint,
    })
}

/// The error for a command line without a command: the full help on
/// stderr, exit status 2 (clap's `DisplayHelpOnMissingArgumentOrSubcommand`).
fn missing_command_error(cmd: &mut clap::Command) -> clap::Error {
    // Parsing an empty command line makes clap build exactly this error
    // (thanks to `arg_required_else_help`), with the same help text.
    match build_command().try_get_matches_from([BIN]) {
        Err(err) => err,
        Ok(_) => cmd.error(
            ErrorKind::MissingRequiredArgument,
            "one of -l, -ls, -c, -eN, -eC, --fingerprint, --trust-new-key is required",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        parse_from(std::iter::once("SocketFalco").chain(line.split_whitespace()))
    }

    fn ok(line: &str) -> Cli {
        match parse(line) {
            Ok(cli) => cli,
            Err(err) => panic!("`{line}` should parse, got:\n{err}"),
        }
    }

    fn err(line: &str) -> clap::Error {
        match parse(line) {
            Ok(cli) => panic!("`{line}` should fail, got {cli:?}"),
            Err(err) => err,
        }
    }

    fn cli(command: Command) -> Cli {
        Cli {
            command,
            data_dir: None,
            verbose: 0,
            json: false,
            bell: false,
            notify: Notify::Off,
            reach: Reach::default(),
        }
    }

    fn listen(temporary: bool) -> Cli {
        cli(Command::Listen {
            temporary,
            port: DEFAULT_PORT,
            bind: None,
            serve: false,
            max_peers: socketfalco_transport::endpoint::DEFAULT_MAX_PEERS,
            onion: None,
        })
    }

    fn connect(host: &str, port: u16, temporary: bool) -> Cli {
        cli(Command::Connect {
            host: host.to_owned(),
            port,
            temporary,
        })
    }

    fn edit_name(name: &str) -> Cli {
        cli(Command::EditName {
            name: name.to_owned(),
        })
    }

    fn edit_chat(chat: &str) -> Cli {
        cli(Command::EditChat {
            chat: chat.to_owned(),
            view: HistoryView::default(),
        })
    }

    /// A fingerprint as `--fingerprint` prints it, and its bytes.
    const FP: &str = "0123 4567 89ab cdef 0011 2233 4455 6677";
    const FP_BYTES: [u8; 16] = [
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
        0x77,
    ];

    fn trust_new_key(chat: &str) -> Cli {
        cli(Command::TrustNewKey {
            chat: chat.to_owned(),
            fingerprint: FP_BYTES,
        })
    }

    /// Parses exactly these arguments (a fingerprint with spaces stays one argument).
    fn parse_args(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_from(std::iter::once("SocketFalco").chain(args.iter().copied()))
    }

    #[test]
    fn trust_new_key_takes_the_chat_and_the_fingerprint() {
        let compact = FP.replace(' ', "");
        let upper = FP.to_uppercase();
        for fingerprint in [FP, compact.as_str(), upper.as_str()] {
            let parsed = parse_args(&["--trust-new-key", "97b8b", fingerprint]).unwrap();
            assert_eq!(parsed, trust_new_key("97b8b"), "{fingerprint}");
        }
        // The one-argument form of earlier versions: refused, saying what to compare and how.
        let e = err("--trust-new-key 97b8b");
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        for needed in [
            "socketfalco --fingerprint",
            "FINGERPRINT",
            "another channel",
        ] {
            assert!(text.contains(needed), "{needed}: {text}");
        }
        // A malformed fingerprint: the expected format is named.
        let too_short = &compact[..31];
        let not_hex = FP.replace('0', "o");
        for bad in [too_short, not_hex.as_str(), "a-b-c", ""] {
            let e = parse_args(&["--trust-new-key", "97b8b", bad]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{bad:?}");
            assert_eq!(e.exit_code(), 2, "{bad:?}");
            assert!(
                e.to_string().contains("xxxx xxxx xxxx xxxx"),
                "{bad:?}: {e}"
            );
        }
        // The fingerprint typed without quotes is eight arguments: the tip says to quote it.
        let mut unquoted = vec!["--trust-new-key", "97b8b"];
        unquoted.extend(FP.split(' '));
        let e = parse_args(&unquoted).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("in quotes"), "{e}");
    }

    #[test]
    fn key_commands_take_their_values_like_the_others() {
        // An attached value is the chat alone: the one-argument form, refused.
        let e = err("--trust-new-key=97b8b");
        assert_eq!(e.kind(), ErrorKind::WrongNumberOfValues);
        assert_eq!(e.exit_code(), 2);
        for line in ["--trust-new-key", "--trust-new-key -ls"] {
            let e = err(line);
            assert_eq!(e.kind(), ErrorKind::InvalidValue, "{line}");
            assert_eq!(e.exit_code(), 2, "{line}");
        }
        assert_eq!(err("--fingerprint=x").kind(), ErrorKind::TooManyValues);
        assert_eq!(err("--fingerprint x").kind(), ErrorKind::UnknownArgument);
        assert_eq!(
            err("--trust-new-key a b").kind(),
            ErrorKind::ValueValidation
        );
        // Nothing rewrites them: there is no legacy spelling, and a single dash is a
        // (refused) cluster of short flags.
        assert_eq!(err("-fingerprint").kind(), ErrorKind::UnknownArgument);
        let rewritten = rewrite_legacy_flags(["x", "--fingerprint", "--trust-new-key"]);
        assert_eq!(rewritten, ["x", "--fingerprint", "--trust-new-key"]);
    }

    /// The usage text of the C++ SocketFalco, verbatim.
    const ORIGINAL_USAGE: &str = "\
Usage: SocketFalco [options] <arguments>
-l, -listen                   Start the server. Use -t for temporary session.   e.g. SocketFalco -l ; SocketFalco -l -t
-ls, -list                    List available chat sessions.                     e.g. SocketFalco -ls
-c, -connect <address>        Connect to a specified server address. Use -t for temporary session.  e.g. SocketFalco -c 192.168.1.1 ; SocketFalco -c -t 192.168.1.1
-eN, -editName <name>         Edit the current user name.   e.g. SocketFalco -eN NewName
-eC, -editChat <ChatUUID>     Open the specific chat        e.g. SocketFalco -eC chatUUID
-h, -help                     Show this help message and exit.
Examples:
SocketFalco -listen ; SocketFalco -listen -t ; SocketFalco -connect 192.168.0.1 ; SocketFalco -connect -t 192.168.0.1 ; SocketFalco -list ; SocketFalco -editName Alice ; SocketFalco -editChat 97b8b...";

    /// Every example command line of [`ORIGINAL_USAGE`], without the
    /// program name.
    fn original_examples() -> Vec<&'static str> {
        ORIGINAL_USAGE
            .lines()
            .filter_map(|line| match line.split_once("e.g.") {
                Some((_, examples)) => Some(examples),
                None => line.starts_with("SocketFalco ").then_some(line),
            })
            .flat_map(|examples| examples.split(';'))
            .map(|example| {
                example
                    .trim()
                    .strip_prefix("SocketFalco ")
                    .unwrap_or_else(|| panic!("not an example: {example:?}"))
            })
            .collect()
    }

    /// The expected result of every original example (`None`: help).
    fn expected_original_examples() -> Vec<(&'static str, Option<Cli>)> {
        vec![
            ("-l", Some(listen(false))),
            ("-l -t", Some(listen(true))),
            ("-ls", Some(cli(Command::List))),
            (
                "-c 192.168.1.1",
                Some(connect("192.168.1.1", DEFAULT_PORT, false)),
            ),
            (
                "-c -t 192.168.1.1",
                Some(connect("192.168.1.1", DEFAULT_PORT, true)),
            ),
            ("-eN NewName", Some(edit_name("NewName"))),
            ("-eC chatUUID", Some(edit_chat("chatUUID"))),
            ("-listen", Some(listen(false))),
            ("-listen -t", Some(listen(true))),
            (
                "-connect 192.168.0.1",
                Some(connect("192.168.0.1", DEFAULT_PORT, false)),
            ),
            (
                "-connect -t 192.168.0.1",
                Some(connect("192.168.0.1", DEFAULT_PORT, true)),
            ),
            ("-list", Some(cli(Command::List))),
            ("-editName Alice", Some(edit_name("Alice"))),
            ("-editChat 97b8b...", Some(edit_chat("97b8b..."))),
            ("-h", None),
            ("-help", None),
        ]
    }

    #[test]
    fn every_original_example_is_covered() {
        let expected: Vec<&str> = expected_original_examples()
            .iter()
            .map(|(line, _)| *line)
            .filter(|line| !line.starts_with("-h"))
            .collect();
        assert_eq!(original_examples(), expected);
    }

    #[test]
    fn original_examples_parse_as_documented() {
        for (line, expected) in expected_original_examples() {
            match expected {
                Some(expected) => assert_eq!(ok(line), expected, "{line}"),
                None => assert_eq!(err(line).kind(), ErrorKind::DisplayHelp, "{line}"),
            }
        }
    }

    #[test]
    fn original_option_names_parse() {
        assert_eq!(ok("-l"), listen(false));
        assert_eq!(ok("-listen"), listen(false));
        assert_eq!(ok("-ls"), cli(Command::List));
        assert_eq!(ok("-list"), cli(Command::List));
        assert_eq!(ok("-c h"), connect("h", DEFAULT_PORT, false));
        assert_eq!(ok("-connect h"), connect("h", DEFAULT_PORT, false));
        assert_eq!(ok("-eN n"), edit_name("n"));
        assert_eq!(ok("-editName n"), edit_name("n"));
        assert_eq!(ok("-eC u"), edit_chat("u"));
        assert_eq!(ok("-editChat u"), edit_chat("u"));
        for help in ["-h", "-help", "--help"] {
            let e = err(help);
            assert_eq!(e.kind(), ErrorKind::DisplayHelp, "{help}");
            assert_eq!(e.exit_code(), 0, "{help}");
        }
    }

    #[test]
    fn gnu_forms_parse() {
        assert_eq!(ok("--listen"), listen(false));
        assert_eq!(ok("--listen --temporary"), listen(true));
        assert_eq!(ok("--list"), cli(Command::List));
        assert_eq!(
            ok("--connect 1.2.3.4"),
            connect("1.2.3.4", DEFAULT_PORT, false)
        );
        assert_eq!(
            ok("--connect=1.2.3.4"),
            connect("1.2.3.4", DEFAULT_PORT, false)
        );
        assert_eq!(ok("-c=1.2.3.4"), connect("1.2.3.4", DEFAULT_PORT, false));
        assert_eq!(
            ok("--connect 1.2.3.4 --temporary"),
            connect("1.2.3.4", DEFAULT_PORT, true)
        );
        assert_eq!(ok("--edit-name Alice"), edit_name("Alice"));
        assert_eq!(ok("--edit-name=Alice"), edit_name("Alice"));
        assert_eq!(ok("--edit-chat 97b8b"), edit_chat("97b8b"));
        assert_eq!(ok("--edit-chat=97b8b"), edit_chat("97b8b"));
        assert_eq!(ok("--fingerprint"), cli(Command::Fingerprint));
        assert_eq!(
            ok("--json --fingerprint"),
            Cli {
                json: true,
                ..cli(Command::Fingerprint)
            }
        );
        let compact = FP.replace(' ', "");
        assert_eq!(
            ok(&format!("--trust-new-key 97b8b {compact}")),
            trust_new_key("97b8b")
        );
        assert_eq!(
            ok(&format!("--data-dir d --trust-new-key 97b8b {compact}")).data_dir,
            Some(PathBuf::from("d"))
        );
        assert_eq!(ok("-l -p 4000").command, listen_on(4000, None));
        assert_eq!(ok("-l --port 4000").command, listen_on(4000, None));
        assert_eq!(ok("-l --port=4000").command, listen_on(4000, None));
        assert_eq!(ok("-l -p 0").command, listen_on(0, None));
        assert_eq!(
            ok("-l --bind ::").command,
            listen_on(DEFAULT_PORT, Some("::".parse().unwrap()))
        );
        assert_eq!(
            ok("--bind 127.0.0.1 -listen").command,
            listen_on(DEFAULT_PORT, Some("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            ok("-ls --data-dir /tmp/sf").data_dir,
            Some(PathBuf::from("/tmp/sf"))
        );
        assert_eq!(
            ok("--data-dir=/tmp/sf -ls").data_dir,
            Some(PathBuf::from("/tmp/sf"))
        );
        assert!(ok("--json -ls").json);
        assert!(ok("-l --json").json);
        assert!(!ok("-ls").json);
        assert_eq!(ok("-ls").verbose, 0);
        assert_eq!(ok("-ls -v").verbose, 1);
        assert_eq!(ok("-ls --verbose").verbose, 1);
        assert_eq!(ok("-ls -vv").verbose, 2);
        assert_eq!(ok("-v -ls -v --verbose").verbose, 3);
        assert_eq!(
            ok("-vv --json --data-dir d -c h -t"),
            Cli {
                command: Command::Connect {
                    host: "h".into(),
                    port: DEFAULT_PORT,
                    temporary: true
                },
                data_dir: Some(PathBuf::from("d")),
                verbose: 2,
                json: true,
                bell: false,
                notify: Notify::Off,
                reach: Reach::default(),
            }
        );
    }

    fn listen_on(port: u16, bind: Option<IpAddr>) -> Command {
        Command::Listen {
            temporary: false,
            port,
            bind,
            serve: false,
            max_peers: socketfalco_transport::endpoint::DEFAULT_MAX_PEERS,
            onion: None,
        }
    }

    #[test]
    fn temporary_can_be_anywhere() {
        let want = connect("192.168.1.1", DEFAULT_PORT, true);
        for line in [
            "-c -t 192.168.1.1",
            "-c 192.168.1.1 -t",
            "-t -c 192.168.1.1",
            "-connect -t 192.168.1.1",
            "-connect 192.168.1.1 -t",
            "-t -connect 192.168.1.1",
            "--connect=192.168.1.1 -t",
            "-t --connect=192.168.1.1",
            "--temporary --connect 192.168.1.1",
            "-c --temporary 192.168.1.1",
            "-tc 192.168.1.1",
            "-c -t -- 192.168.1.1",
        ] {
            assert_eq!(ok(line), want, "{line}");
        }
        for line in ["-l -t", "-t -l", "-lt", "-listen --temporary", "-t -listen"] {
            assert_eq!(ok(line), listen(true), "{line}");
        }
        assert_eq!(
            ok("-c -v -t [::1]:4000"),
            Cli {
                verbose: 1,
                ..connect("::1", 4000, true)
            }
        );
    }

    #[test]
    fn ls_is_not_split_into_short_flags() {
        // If `-ls` were the cluster `-l -s`, this would be listen or an
        // unknown `-s`.
        assert_eq!(ok("-ls"), cli(Command::List));
        assert_eq!(
            ok("-v -ls"),
            Cli {
                verbose: 1,
                ..cli(Command::List)
            }
        );
        // Only whole arguments are legacy flags.
        assert_eq!(err("-lsx").kind(), ErrorKind::UnknownArgument);
        // One that starts with a long legacy flag is a typo of it, said so — not `-l -i …`
        // nor `-c` with the value `onnectx`.
        for (typed, meant) in [
            ("-listenx", "-listen"),
            ("-list2", "-list"),
            ("-connectx 10.0.0.1", "-connect"),
            ("-editChatt abc", "-editChat"),
            ("-helpme", "-help"),
        ] {
            let e = err(typed);
            assert_eq!(e.kind(), ErrorKind::UnknownArgument, "{typed}");
            let text = e.to_string();
            assert!(text.contains(&format!("did you mean '{meant}'")), "{text}");
        }
        // Values attached with `=`, and anything after `--`, are values.
        assert_eq!(
            ok("-eN=-listenx"),
            cli(Command::EditName {
                name: "-listenx".into()
            })
        );
        // After `--` nothing is rewritten: `-ls` is then a (bad) address.
        assert_eq!(err("-c -- -ls").kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn rewriting_touches_only_whole_legacy_flags() {
        let rewrite = |line: &str| -> Vec<String> {
            rewrite_legacy_flags(line.split_whitespace())
                .into_iter()
                .map(|arg| arg.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            rewrite("-ls -ls -list -listen -connect -eN -editName -eC -editChat -help"),
            [
                "-ls",
                "--list",
                "--list",
                "--listen",
                "--connect",
                "--edit-name",
                "--edit-name",
                "--edit-chat",
                "--edit-chat",
                "--help"
            ]
        );
        assert_eq!(
            rewrite("x -eN=-ls -connect=::1 --edit-name=-ls -lsx -l -c -t -h -Listen"),
            [
                "x",
                "--edit-name=-ls",
                "--connect=::1",
                "--edit-name=-ls",
                "-lsx",
                "-l",
                "-c",
                "-t",
                "-h",
                "-Listen"
            ]
        );
        assert_eq!(
            rewrite("x -ls -- -ls -eN --"),
            ["x", "--list", "--", "-ls", "-eN", "--"]
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_arguments_are_kept_and_reported() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'-', b'l', b's', 0xff]);
        assert_eq!(rewrite_legacy_flags(["x".into(), bad.clone()])[1], bad);
        let bad_name = OsString::from_vec(vec![b'A', 0xff]);
        let e = parse_from([OsString::from("x"), "-eN".into(), bad_name]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidUtf8);
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn edit_name_keeps_the_name_as_given() {
        assert_eq!(ok("-eN Alice"), edit_name("Alice"));
        assert_eq!(ok("-eN Ünïcødé_名前"), edit_name("Ünïcødé_名前"));
        assert_eq!(
            parse_from(["x", "-eN", "Bob Smith"]).unwrap(),
            edit_name("Bob Smith")
        );
        assert_eq!(parse_from(["x", "-eN", ""]).unwrap(), edit_name(""));
        // Names that look like flags must be attached with `=`.
        assert_eq!(ok("--edit-name=-ls"), edit_name("-ls"));
        assert_eq!(ok("-eN=-ls"), edit_name("-ls"));
        assert_eq!(ok("-editName=-l"), edit_name("-l"));
        assert_eq!(ok("-eN=a=b"), edit_name("a=b"));
        // ... and are refused when detached, instead of becoming a command.
        for line in ["-eN -ls", "-eN -l", "--edit-name -t", "-eN"] {
            let e = err(line);
            assert_eq!(e.kind(), ErrorKind::InvalidValue, "{line}");
            assert_eq!(e.exit_code(), 2, "{line}");
        }
        assert_eq!(err("-eN Bob extra").kind(), ErrorKind::UnknownArgument);
        assert_eq!(ok("-eC=-x"), edit_chat("-x"));
        assert_eq!(err("-eC").kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn unknown_or_malformed_arguments_exit_2() {
        for line in [
            "-x",
            "--frobnicate",
            "-ls -s",
            "-listenx",
            "-l -s",
            "-l extra",
            "192.168.1.1",
            "-ls=x",
        ] {
            let e = err(line);
            assert_eq!(e.exit_code(), 2, "{line}: {e}");
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::UnknownArgument | ErrorKind::TooManyValues
                ),
                "{line}: {:?}",
                e.kind()
            );
        }
        assert_eq!(err("-x").kind(), ErrorKind::UnknownArgument);
        assert!(err("192.168.1.1").to_string().contains("-c 192.168.1.1"));
        for line in [
            "-l -p 70000",
            "-l -p=-1",
            "-l -p x",
            "-l --bind nowhere",
            "-l --bind [::1]",
        ] {
            let e = err(line);
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{line}");
            assert_eq!(e.exit_code(), 2, "{line}");
        }
        // Options that need a value.
        for line in ["-l -p", "-l --bind", "-ls --data-dir", "-c"] {
            let e = err(line);
            assert_eq!(e.kind(), ErrorKind::InvalidValue, "{line}");
            assert_eq!(e.exit_code(), 2, "{line}");
        }
        // Repeated commands.
        assert_eq!(err("-l -listen").kind(), ErrorKind::ArgumentConflict);
        assert_eq!(err("-c a -c b").kind(), ErrorKind::ArgumentConflict);
        let e = err("-c a b");
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn exactly_one_command() {
        for line in [
            "-l -ls",
            "-listen -list",
            "-l -c 1.2.3.4",
            "-c 1.2.3.4 -ls",
            "-eN a -eC b",
            "-ls -eN a",
            "-l -eC b",
            "-c -ls",
            "--fingerprint -ls",
            "-l --fingerprint",
            "--fingerprint --trust-new-key u",
            "--trust-new-key u -eC u",
            "-c h --trust-new-key u",
            "--fingerprint --fingerprint",
        ] {
            let e = err(line);
            assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{line}");
            assert_eq!(e.exit_code(), 2, "{line}");
        }
    }

    #[test]
    fn no_command_prints_help_and_exits_2() {
        for line in ["", "-v", "-t", "--json", "--data-dir d", "-p 4000"] {
            let e = err(line);
            assert_eq!(
                e.kind(),
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
                "{line:?}"
            );
            assert_eq!(e.exit_code(), 2, "{line:?}");
            let text = e.to_string();
            assert!(text.contains("Usage:"), "{text}");
            assert!(text.contains("-editChat"), "{text}");
            assert!(text.contains("Examples:"), "{text}");
        }
        assert_eq!(err("").to_string(), help_text());
    }

    // ----- reaching a peer: --proxy, --tor, --relay, invites -----

    const ONION: &str = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";

    fn an_invite(relay: Option<&str>, address: Option<&str>) -> String {
        Invite {
            key: [7; 32],
            onion: None,
            relay: relay.map(str::to_owned),
            address: address.map(str::to_owned),
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn a_proxy_goes_with_a_caller_and_keeps_its_credentials() {
        let cli = ok("--proxy socks5h://alice:pw@127.0.0.1:1080 -c example.org");
        let proxy = cli.reach.proxy.expect("a proxy");
        assert_eq!((proxy.host.as_str(), proxy.port), ("127.0.0.1", 1080));
        assert!(proxy.remote_dns);
        assert_eq!(proxy.credentials.unwrap().password, "pw");
        assert_eq!(
            ok("--tor -c example.org").reach.proxy,
            Some(ProxySpec::tor())
        );
        assert_eq!(ok("-c example.org").reach.proxy, None);
        for line in [
            "-l --tor",
            "-ls --proxy socks5://127.0.0.1:1080",
            "--invite --tor",
        ] {
            let e = err(line).to_string();
            assert!(e.contains("goes only with -c"), "{line}: {e}");
        }
        let e = err("--tor --proxy socks5h://h:1 -c x").to_string();
        assert!(e.contains("cannot be used with"), "{e}");
        let e = err("--proxy http://h:1 -c x").to_string();
        assert!(e.contains("socks5h://"), "{e}");
    }

    #[test]
    fn an_onion_address_needs_a_proxy_and_a_valid_name() {
        assert_eq!(
            ok(&format!("--tor -c {ONION}")).command,
            Command::Connect {
                host: ONION.into(),
                port: DEFAULT_PORT,
                temporary: false
            }
        );
        let e = err(&format!("-c {ONION}:4000"));
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--tor"), "{e}");
        assert!(e.to_string().contains("never looked up in DNS"), "{e}");
        let typo = ONION.replacen('d', "e", 1);
        let e = err(&format!("--tor -c {typo}")).to_string();
        assert!(e.contains("invalid onion address"), "{e}");
        let e = err("--tor -c expyuzz4wqqyqhjn.onion").to_string();
        assert!(e.contains("invalid onion address"), "{e}");
    }

    #[test]
    fn a_relay_needs_a_port_and_goes_with_a_listener_a_chat_or_an_invite() {
        assert_eq!(
            ok("-l --relay relay.example.org:4001").reach.relay,
            Some(("relay.example.org".into(), 4001))
        );
        assert_eq!(
            ok("--relay 127.0.0.1:4001 -c 97b8b").command,
            Command::ConnectChat {
                chat: "97b8b".into(),
                temporary: false
            }
        );
        assert_eq!(
            ok("--invite --relay [::1]:4001").reach.relay,
            Some(("::1".into(), 4001))
        );
        let e = err("-l --relay relay.example.org").to_string();
        assert!(e.contains("port"), "{e}");
        let e = err("-ls --relay h:1").to_string();
        assert!(e.contains("--relay goes only with"), "{e}");
        // A relay through the proxy: nothing goes around it.
        let cli = ok("--relay h:1 --tor -c 97b8b");
        assert!(matches!(cli.command, Command::ConnectChat { .. }));
        assert_eq!(cli.reach.proxy, Some(ProxySpec::tor()));
    }

    #[test]
    fn connect_reads_an_invite_and_refuses_a_damaged_one() {
        let invite = an_invite(Some("relay.example.org:4001"), None);
        match ok(&format!("-c {invite} -t")).command {
            Command::ConnectInvite {
                invite: i,
                temporary,
            } => {
                assert!(temporary);
                assert_eq!(i.key, [7; 32]);
                assert_eq!(i.relay.as_deref(), Some("relay.example.org:4001"));
            }
            other => panic!("{other:?}"),
        }
        // One character changed: the checksum catches it before anything connects.
        let mut damaged: Vec<char> = invite.chars().collect();
        damaged[20] = if damaged[20] == 'a' { 'b' } else { 'a' };
        let damaged: String = damaged.into_iter().collect();
        let e = err(&format!("-c {damaged}")).to_string();
        assert!(e.contains("invalid invite"), "{e}");
        // An invite names its relay itself.
        let e = err(&format!("--relay h:1 -c {invite}")).to_string();
        assert!(e.contains("names its relay itself"), "{e}");
        // Only a relay, and a proxy given: the relay is reached through the proxy.
        assert!(matches!(
            ok(&format!("--tor -c {invite}")).command,
            Command::ConnectInvite { .. }
        ));
        // No route at all.
        let bare = an_invite(None, None);
        let e = err(&format!("-c {bare}")).to_string();
        assert!(e.contains("names no way to reach"), "{e}");
        // An address that only looks a little like an invite is an address.
        assert!(matches!(
            ok("-c sf1.example.org").command,
            Command::Connect { .. }
        ));
    }

    #[test]
    fn invite_takes_an_optional_address() {
        assert_eq!(
            ok("--invite").command,
            Command::Invite {
                address: None,
                port: DEFAULT_PORT
            }
        );
        assert_eq!(
            ok("--invite 203.0.113.5 -p 4000").command,
            Command::Invite {
                address: Some(("203.0.113.5".into(), 4000)),
                port: 4000
            }
        );
        assert_eq!(
            ok("--invite [2001:db8::1]:4000").command,
            Command::Invite {
                address: Some(("2001:db8::1".into(), 4000)),
                port: DEFAULT_PORT
            }
        );
        let e = err("--invite -t").to_string();
        assert!(e.contains("cannot be used with"), "{e}");
    }

    #[test]
    fn temporary_only_with_a_session() {
        for line in [
            "-t -ls",
            "-ls -t",
            "-list --temporary",
            "-eN a -t",
            "-t -eC u",
            "--fingerprint -t",
            "-t --trust-new-key u",
        ] {
            let e = err(line);
            assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{line}");
            assert_eq!(e.exit_code(), 2, "{line}");
            assert!(e.to_string().contains("--temporary"), "{e}");
        }
    }

    #[test]
    fn session_options_only_with_a_session() {
        for line in [
            "-ls -p 4000",
            "-eN a --port 1",
            "-ls --bind ::",
            "-c h --bind ::1",
            "-eC u --bind 0.0.0.0",
            "--fingerprint -p 4000",
            "--trust-new-key u --bind ::1",
        ] {
            let e = err(line);
            assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{line}");
            assert_eq!(e.exit_code(), 2, "{line}");
        }
    }

    #[test]
    fn connect_ports() {
        assert_eq!(ok("-c h"), connect("h", DEFAULT_PORT, false));
        assert_eq!(ok("-c h -p 4000"), connect("h", 4000, false));
        assert_eq!(ok("-p 4000 -c h"), connect("h", 4000, false));
        assert_eq!(ok("-c h:5000"), connect("h", 5000, false));
        // An explicit :PORT in the address wins over -p.
        assert_eq!(ok("-c h:5000 -p 4000"), connect("h", 5000, false));
        assert_eq!(ok("-c [::1]:5000 -p 4000"), connect("::1", 5000, false));
        assert_eq!(ok("-c [::1] -p 4000"), connect("::1", 4000, false));
        assert_eq!(ok("-c ::1 -p 4000"), connect("::1", 4000, false));
        assert_eq!(ok("-c h:5000 -p 0"), connect("h", 5000, false));
        for line in [
            "-c h -p 0",
            "-c h:0",
            "-c h:",
            "-c [::1",
            "-c :80",
            "--connect=",
        ] {
            let e = err(line);
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{line}");
            assert_eq!(e.exit_code(), 2, "{line}");
        }
        assert!(err("-c [::1").to_string().contains("not closed"));
    }

    #[test]
    fn default_port_text_matches() {
        assert_eq!(DEFAULT_PORT_TEXT, DEFAULT_PORT.to_string());
        assert_eq!(ok("-l"), listen(false));
    }

    #[test]
    fn address_table() {
        let good: &[(&str, &str, u16)] = &[
            ("localhost", "localhost", 7),
            ("localhost:4000", "localhost", 4000),
            ("example.org", "example.org", 7),
            ("my-host.example.org.", "my-host.example.org.", 7),
            ("under_score:1", "under_score", 1),
            ("192.168.1.1", "192.168.1.1", 7),
            ("192.168.1.1:65535", "192.168.1.1", 65535),
            ("0.0.0.0:80", "0.0.0.0", 80),
            ("::1", "::1", 7),
            ("::", "::", 7),
            ("fe80::1", "fe80::1", 7),
            ("fe80::1%eth0", "fe80::1%eth0", 7),
            ("2001:db8::8a2e:370:7334", "2001:db8::8a2e:370:7334", 7),
            ("::ffff:192.168.1.1", "::ffff:192.168.1.1", 7),
            ("[::1]", "::1", 7),
            ("[::1]:4000", "::1", 4000),
            ("[fe80::1%2]:4000", "fe80::1%2", 4000),
            ("[2001:db8::1]:00080", "2001:db8::1", 80),
        ];
        for (input, host, port) in good {
            assert_eq!(
                parse_address(input, 7),
                Ok((host.to_string(), *port)),
                "{input}"
            );
        }
        let s = |text: &str| text.to_owned();
        let bad: Vec<(&str, AddressError)> = vec![
            ("", AddressError::Empty),
            (":4000", AddressError::MissingHost),
            ("[]", AddressError::MissingHost),
            ("[]:4000", AddressError::MissingHost),
            ("[::1", AddressError::UnclosedBracket(s("[::1"))),
            ("[::1:4000", AddressError::UnclosedBracket(s("[::1:4000"))),
            ("[::1]4000", AddressError::TrailingCharacters(s("4000"))),
            ("[::1]:", AddressError::InvalidPort(s(""))),
            ("[::1]:x", AddressError::InvalidPort(s("x"))),
            ("[1.2.3.4]:80", AddressError::InvalidIpv6(s("1.2.3.4"))),
            ("[host]", AddressError::InvalidIpv6(s("host"))),
            ("::1::2", AddressError::InvalidIpv6(s("::1::2"))),
            ("host:80:90", AddressError::InvalidIpv6(s("host:80:90"))),
            ("fe80::1%", AddressError::InvalidIpv6(s("fe80::1%"))),
            ("::1]", AddressError::InvalidIpv6(s("::1]"))),
            ("192.168.1", AddressError::InvalidIpv4(s("192.168.1"))),
            ("1.2.3.256", AddressError::InvalidIpv4(s("1.2.3.256"))),
            ("1.2.3.4.5:80", AddressError::InvalidIpv4(s("1.2.3.4.5"))),
            ("-ls", AddressError::InvalidHost(s("-ls"))),
            ("bad host", AddressError::InvalidHost(s("bad host"))),
            (" localhost", AddressError::InvalidHost(s(" localhost"))),
            ("a/b", AddressError::InvalidHost(s("a/b"))),
            ("host]:80", AddressError::InvalidHost(s("host]"))),
            ("host:", AddressError::InvalidPort(s(""))),
            ("host:0", AddressError::InvalidPort(s("0"))),
            ("host:65536", AddressError::InvalidPort(s("65536"))),
            ("host:+80", AddressError::InvalidPort(s("+80"))),
            ("host:-1", AddressError::InvalidPort(s("-1"))),
            ("host:8o", AddressError::InvalidPort(s("8o"))),
            ("1.2.3.4: 80", AddressError::InvalidPort(s(" 80"))),
        ];
        for (input, want) in bad {
            assert_eq!(parse_address(input, 7), Err(want), "{input}");
        }
        // The default port is returned as given, even 0.
        assert_eq!(parse_address("h", 0), Ok((s("h"), 0)));
    }

    #[test]
    fn address_errors_read_well() {
        let e = parse_address("[::1", 1).unwrap_err();
        assert_eq!(e.to_string(), "'[' is not closed by ']' in '[::1'");
        let e = parse_address("h:99999", 1).unwrap_err();
        assert!(e.to_string().contains("1 to 65535"), "{e}");
        let e = parse_address("::1::", 1).unwrap_err();
        assert!(e.to_string().contains("[IPv6]:PORT"), "{e}");
        let _: &dyn std::error::Error = &e;
    }

    #[test]
    fn parsed_hosts_resolve_with_std() {
        use std::net::{SocketAddr, ToSocketAddrs};
        for (input, want) in [
            ("[::1]:4000", "[::1]:4000"),
            ("::1", "[::1]:30000"),
            ("127.0.0.1:9", "127.0.0.1:9"),
        ] {
            let (host, port) = parse_address(input, DEFAULT_PORT).unwrap();
            let addrs: Vec<SocketAddr> = (host.as_str(), port).to_socket_addrs().unwrap().collect();
            assert_eq!(addrs, [want.parse().unwrap()], "{input}");
        }
    }

    #[test]
    fn version_flag() {
        for line in ["--version", "-V", "-ls --version"] {
            let e = err(line);
            assert_eq!(e.kind(), ErrorKind::DisplayVersion, "{line}");
            assert_eq!(e.exit_code(), 0, "{line}");
            assert!(
                e.to_string().contains(env!("CARGO_PKG_VERSION")),
                "{line}: {e}"
            );
        }
    }

    fn help_text() -> String {
        let e = err("--help");
        assert_eq!(e.kind(), ErrorKind::DisplayHelp);
        e.to_string()
    }

    /// Whether `word` appears in `text` as a whole word (flags are split on
    /// whitespace and `,;|[]()`, then trailing `.` and `:` are ignored).
    fn has_word(text: &str, word: &str) -> bool {
        text.split(|c: char| c.is_whitespace() || ",;|[]()".contains(c))
            .any(|w| w.trim_end_matches(['.', ':']) == word)
    }

    #[test]
    fn help_shows_legacy_and_gnu_forms() {
        let help = help_text();
        for word in [
            // The original option names.
            "-l",
            "-listen",
            "-ls",
            "-list",
            "-c",
            "-connect",
            "-eN",
            "-editName",
            "-eC",
            "-editChat",
            "-h",
            "-help",
            "-t",
            // The GNU forms and the new options.
            "--listen",
            "--list",
            "--connect",
            "--edit-name",
            "--edit-chat",
            "--temporary",
            "--help",
            "--version",
            "-v",
            "--verbose",
            "-p",
            "--port",
            "--bind",
            "--data-dir",
            "--json",
            "--fingerprint",
            "--trust-new-key",
            "--onion",
            "--tor-control",
            "--tor-password",
            "SOCKETFALCO_TOR_PASSWORD",
        ] {
            assert!(has_word(&help, word), "help lacks {word}:\n{help}");
        }
        for description in [
            "Start the server. Use -t for temporary session.",
            "List available chat sessions.",
            "Connect to a specified server address. Use -t for temporary session.",
            "Edit the current user name.",
            "Open the specific chat",
            "Show this help message and exit.",
            "[default: 30000]",
            "key fingerprint",
            "Compare fingerprints",
            "socketfalco --trust-new-key 97b8b... '",
        ] {
            assert!(
                help.contains(description),
                "help lacks {description}:\n{help}"
            );
        }
        for example in original_examples() {
            let example = format!("socketfalco {example}");
            assert!(help.contains(&example), "help lacks {example}:\n{help}");
        }
        assert_eq!(help, err("-h").to_string());
        assert_eq!(help, err("-help").to_string());
        assert_eq!(help, err("-l -help").to_string());
    }

    #[test]
    fn since_takes_dates_times_and_durations() {
        assert_eq!(parse_since("90s"), Ok(Since::Ago(90_000)));
        assert_eq!(parse_since("2h"), Ok(Since::Ago(7_200_000)));
        assert_eq!(parse_since("7d"), Ok(Since::Ago(604_800_000)));
        assert!(matches!(parse_since("2026-11-30"), Ok(Since::At(_))));
        assert!(matches!(parse_since("2026-11-30 14:00"), Ok(Since::At(_))));
        assert!(matches!(
            parse_since("2026-11-30T14:00:05"),
            Ok(Since::At(_))
        ));
        let (Ok(Since::At(day)), Ok(Since::At(later))) =
            (parse_since("2026-11-30"), parse_since("2026-11-30 14:00"))
        else {
            unreachable!()
        };
        assert_eq!(later - day, 14 * 3_600_000);
        for bad in ["yesterday", "-5m", "2026-13-01", "5y", ""] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
        assert_eq!(Since::Ago(1_000).resolve(5_000), 4_000);
        let cli =
            parse_from(["socketfalco", "-eC", "ab", "--last", "20", "--since", "1h"]).unwrap();
        assert_eq!(
            cli.command,
            Command::EditChat {
                chat: "ab".into(),
                view: HistoryView {
                    last: Some(20),
                    since: Some(Since::Ago(3_600_000)),
                },
            }
        );
        assert!(parse_from(["socketfalco", "-ls", "--last", "5"]).is_err());
        assert!(parse_from(["socketfalco", "-ls", "--serve"]).is_err());
        assert!(parse_from(["socketfalco", "-c", "h", "--max-peers", "3"]).is_err());
        assert!(parse_from(["socketfalco", "-l", "--serve", "--max-peers", "3"]).is_ok());
        assert!(parse_from(["socketfalco", "-eC", "ab", "--last", "0"]).is_err());
    }

    #[test]
    fn onion_goes_with_listen_and_its_options_with_onion() {
        let onion = |line: &str| match ok(line).command {
            Command::Listen { onion, bind, .. } => (onion, bind),
            other => panic!("`{line}` is not a listener: {other:?}"),
        };
        let default = OnionOptions {
            control_host: "127.0.0.1".into(),
            control_port: crate::tor::DEFAULT_CONTROL_PORT,
            password: None,
        };
        assert_eq!(onion("-l --onion"), (Some(default.clone()), None));
        assert_eq!(onion("-l"), (None, None));
        assert_eq!(
            onion("-l --onion --bind 127.0.0.1 -p 0"),
            (Some(default), Some("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            onion("-listen --onion --tor-control localhost:9151 --tor-password s3cret"),
            (
                Some(OnionOptions {
                    control_host: "localhost".into(),
                    control_port: 9151,
                    password: Some(Password("s3cret".into())),
                }),
                None
            )
        );
        assert_eq!(
            onion("-l --onion --tor-control [::1]")
                .0
                .map(|o| (o.control_host, o.control_port)),
            Some(("::1".into(), 9051))
        );
        // The password never shows in debug output.
        let cli = ok("-l --onion --tor-password s3cret");
        assert!(!format!("{cli:?}").contains("s3cret"));
        for (line, says) in [
            ("-c h --onion", "--onion goes only with -l"),
            ("-ls --onion", ""),
            ("-eC u --onion", "--onion goes only with -l"),
            (
                "-l --tor-control 127.0.0.1:9151",
                "--tor-control goes only with -l --onion",
            ),
            (
                "-l --tor-password x",
                "--tor-password goes only with -l --onion",
            ),
            (
                "-c h --tor-control h",
                "--tor-control goes only with -l --onion",
            ),
            (
                "-l --onion --bind 0.0.0.0",
                "--onion listens on 127.0.0.1 only",
            ),
            ("-l --bind ::1 --onion", "not come through Tor"),
        ] {
            let e = err(line);
            assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{line}");
            assert_eq!(e.exit_code(), 2, "{line}");
            assert!(e.to_string().contains(says), "{line}: {e}");
        }
        for line in [
            "-l --onion --tor-control h:0",
            "-l --onion --tor-control a/b",
        ] {
            let e = err(line);
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{line}");
            assert!(e.to_string().contains("--tor-control"), "{line}: {e}");
        }
    }

    #[test]
    fn bell_and_notify_go_with_sessions_only() {
        assert!(ok("-l --bell").bell);
        assert_eq!(ok("-c h --notify").notify, Notify::Name);
        assert_eq!(ok("-l --serve --notify=text --bell").notify, Notify::Text);
        assert_eq!(ok("-l --notify=name").notify, Notify::Name);
        assert_eq!(ok("-l").notify, Notify::Off);
        assert_eq!(err("-ls --bell").kind(), ErrorKind::ArgumentConflict);
        assert_eq!(err("-eC ab --notify").kind(), ErrorKind::ArgumentConflict);
        assert_eq!(err("-l --notify=loud").kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn completions_and_the_manual_page_are_commands() {
        assert_eq!(
            ok("--completions bash").command,
            Command::Completions(Shell::Bash)
        );
        assert_eq!(
            ok("--completions zsh").command,
            Command::Completions(Shell::Zsh)
        );
        assert_eq!(ok("--man").command, Command::Man);
        assert_eq!(err("--man -ls").kind(), ErrorKind::ArgumentConflict);
        assert_eq!(err("--completions tcsh").kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn the_completion_scripts_offer_the_legacy_spellings() {
        let bash = completion_script(Shell::Bash);
        let top = bash
            .lines()
            .find(|l| l.contains("opts=\"") && l.contains("--listen"))
            .unwrap();
        for legacy in legacy_flags() {
            assert!(
                top.split(['"', ' ']).any(|w| w == legacy),
                "{legacy}: {top}"
            );
        }
        let fish = completion_script(Shell::Fish);
        assert!(
            fish.contains("complete -c socketfalco -o editChat -r"),
            "{fish}"
        );
        let zsh = completion_script(Shell::Zsh);
        assert!(
            zsh.contains("'-eC[same as --edit-chat]:chat:_socketfalco_chat_ids'"),
            "{zsh}"
        );
        assert!(
            zsh.contains(":CHAT_UUID:_socketfalco_chat_ids'")
                && !zsh.contains(":CHAT_UUID:_default"),
            "{zsh}"
        );
        // The function is defined before the script's last lines call `_socketfalco`.
        let defined = zsh.find("_socketfalco_chat_ids() {").unwrap();
        assert!(defined < zsh.find("_socketfalco() {").unwrap(), "{zsh}");
        // The others are clap_complete's as they are.
        assert!(completion_script(Shell::PowerShell).contains("--edit-chat"));
        assert!(completion_script(Shell::Elvish).contains("--edit-chat"));
    }

    #[test]
    fn the_manual_page_names_the_legacy_spellings_and_the_keys() {
        let mut page = Vec::new();
        clap_mangen::Man::new(command()).render(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        for legacy in [
            "\\-listen",
            "\\-ls",
            "\\-list",
            "\\-connect",
            "\\-eN",
            "\\-editName",
            "\\-eC",
            "\\-editChat",
            "\\-help",
        ] {
            assert!(page.contains(legacy), "{legacy} not in the manual page");
        }
        assert!(page.contains("PgUp"));
    }
}
