//! Tor's control protocol (`control-spec.txt`), without any I/O: the commands this program
//! sends to a running tor, as text, and the parsing of what tor answers. It owns the reply
//! grammar (status lines `250 OK`, `250-…`, data blocks `250+…` ending in `.`, CRLF or bare
//! LF), the limits on what a reply may cost (a line at most [`MAX_LINE`] bytes, a reply at
//! most [`MAX_REPLY`]), `PROTOCOLINFO` and the choice of an authentication method, the
//! quoting of a password, the SAFECOOKIE proofs, and `ADD_ONION` with its reply. Reading and
//! writing the socket, files and randomness belong to the caller, which hands in bytes and
//! gets back bytes, values or a [`ControlError`].
//!
//! Nothing here panics on any input: a reply that does not follow the grammar is a
//! [`ControlError::Malformed`], never a crash.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;

/// The longest reply line accepted, CRLF included.
pub const MAX_LINE: usize = 16 * 1024;

/// The most bytes one reply (all its lines and data) may take.
pub const MAX_REPLY: usize = 64 * 1024;

/// The length of tor's authentication cookie, in bytes.
pub const COOKIE_LEN: usize = 32;

/// The length of a SAFECOOKIE nonce (ours and tor's), in bytes.
pub const NONCE_LEN: usize = 32;

/// The length of a v3 onion service id: 56 base32 characters before `.onion`.
pub const SERVICE_ID_LEN: usize = 56;

/// The HMAC key of the hash tor sends to prove it knows the cookie.
const SERVER_TO_CONTROLLER: &[u8] = b"Tor safe cookie authentication server-to-controller hash";

/// The HMAC key of the hash this program sends to prove it knows the cookie.
const CONTROLLER_TO_SERVER: &[u8] = b"Tor safe cookie authentication controller-to-server hash";

/// What went wrong in the conversation with tor, as far as the protocol can tell. The
/// caller adds where (the control port's address) and during which step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// A reply line longer than [`MAX_LINE`].
    LineTooLong,
    /// A reply longer than [`MAX_REPLY`].
    ReplyTooLong,
    /// A reply that does not follow the grammar, or lacks what the command must return.
    Malformed(String),
    /// Tor answered with an error status (4xx, 5xx): its code and text.
    Refused {
        /// The status code, for instance 515 or 550.
        code: u16,
        /// Tor's text after the code.
        text: String,
    },
    /// Tor offers only password authentication and no password was given.
    NeedPassword,
    /// The password cannot be sent (a line break or NUL would end or cut the command).
    UnsendablePassword,
    /// Tor offers no authentication method this program knows.
    NoMethod(String),
    /// Cookie authentication is offered but tor named no cookie file.
    NoCookieFile,
    /// SAFECOOKIE: tor's hash does not prove that it knows the cookie.
    ServerHashMismatch,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::LineTooLong => {
                write!(f, "a reply line longer than {} KiB", MAX_LINE / 1024)
            }
            ControlError::ReplyTooLong => {
                write!(f, "a reply longer than {} KiB", MAX_REPLY / 1024)
            }
            ControlError::Malformed(detail) => write!(f, "a malformed reply ({detail})"),
            ControlError::Refused { code, text } => write!(f, "{code} {text}"),
            ControlError::NeedPassword => f.write_str("tor asks for a password"),
            ControlError::UnsendablePassword => {
                f.write_str("the password contains a line break or a NUL character")
            }
            ControlError::NoMethod(methods) => write!(
                f,
                "tor offers no authentication method this program knows (METHODS={methods})"
            ),
            ControlError::NoCookieFile => {
                f.write_str("tor offers cookie authentication but names no cookie file")
            }
            ControlError::ServerHashMismatch => f.write_str(
                "the SAFECOOKIE answer does not prove knowledge of tor's cookie (is another \
                 program listening on the control port?)",
            ),
        }
    }
}

impl std::error::Error for ControlError {}

// --- Replies ------------------------------------------------------------------------------

/// One line of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyLine {
    /// The line's status code.
    pub code: u16,
    /// The text after the code and its separator, without the line ending.
    pub text: String,
    /// For a data line (`250+…`): the data block's lines, dot-unstuffed, without the final
    /// `.`; empty otherwise.
    pub data: Vec<String>,
}

/// A complete reply: every line up to and including the end line (`NNN text`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The end line's status code: the reply's.
    pub code: u16,
    /// Every line, the end line last.
    pub lines: Vec<ReplyLine>,
}

impl Reply {
    /// Whether tor accepted the command (2xx).
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Whether this is an asynchronous event (6xx), not the answer to a command.
    pub fn is_event(&self) -> bool {
        (600..700).contains(&self.code)
    }

    /// The reply's text on one line (its lines' texts joined by `; `).
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|line| line.text.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `Ok(self)` for a 2xx reply, otherwise [`ControlError::Refused`] with tor's text.
    pub fn ok(self) -> Result<Reply, ControlError> {
        if self.is_ok() {
            Ok(self)
        } else {
            Err(ControlError::Refused {
                code: self.code,
                text: self.text(),
            })
        }
    }
}

/// A data block being read (after a `NNN+` line).
#[derive(Debug)]
struct DataBlock {
    code: u16,
    text: String,
    lines: Vec<String>,
}

/// Turns the bytes tor sends into [`Reply`]s, whatever the chunks they arrive in. Feed
/// every byte read with [`ReplyReader::feed`], then take the completed replies with
/// [`ReplyReader::next_reply`]. After an error the reader is unusable: the connection
/// should be closed.
#[derive(Debug, Default)]
pub struct ReplyReader {
    /// Bytes of a line not ended yet.
    partial: Vec<u8>,
    /// The lines of the reply in progress.
    lines: Vec<ReplyLine>,
    /// The data block in progress, if any.
    data: Option<DataBlock>,
    /// Bytes taken by the reply in progress.
    size: usize,
    /// Completed replies not taken yet.
    done: VecDeque<Reply>,
    /// The first error, kept: everything after it is refused.
    failed: Option<ControlError>,
}

impl ReplyReader {
    /// A reader at the start of a conversation.
    pub fn new() -> ReplyReader {
        ReplyReader::default()
    }

    /// Takes bytes received from tor. Fails on a line or reply over its limit or a line that
    /// breaks the grammar.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), ControlError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !bytes.is_empty() {
            let (chunk, rest, complete) = match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => (&bytes[..at], &bytes[at + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            // The line with its LF (read now or still to come) must fit.
            if self.partial.len() + chunk.len() + 1 > MAX_LINE {
                return Err(self.fail(ControlError::LineTooLong));
            }
            self.partial.extend_from_slice(chunk);
            if complete {
                let mut line = std::mem::take(&mut self.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.size += line.len() + 2;
                if self.size > MAX_REPLY {
                    return Err(self.fail(ControlError::ReplyTooLong));
                }
                if let Err(e) = self.line(&line) {
                    return Err(self.fail(e));
                }
            }
        }
        Ok(())
    }

    /// The next completed reply, if any.
    pub fn next_reply(&mut self) -> Option<Reply> {
        self.done.pop_front()
    }

    fn fail(&mut self, e: ControlError) -> ControlError {
        self.failed = Some(e.clone());
        e
    }

    /// One line, without its line ending.
    fn line(&mut self, line: &[u8]) -> Result<(), ControlError> {
        let text = String::from_utf8_lossy(line).into_owned();
        if let Some(block) = &mut self.data {
            if text == "." {
                if let Some(block) = self.data.take() {
                    self.lines.push(ReplyLine {
                        code: block.code,
                        text: block.text,
                        data: block.lines,
                    });
                }
            } else {
                // Dot-stuffing: a data line starting with "." was sent with one more.
                let unstuffed = text.strip_prefix('.').unwrap_or(&text);
                block.lines.push(unstuffed.to_owned());
            }
            return Ok(());
        }
        let (code, separator, rest) = split_status(&text)?;
        match separator {
            '-' => self.lines.push(ReplyLine {
                code,
                text: rest.to_owned(),
                data: Vec::new(),
            }),
            '+' => {
                self.data = Some(DataBlock {
                    code,
                    text: rest.to_owned(),
                    lines: Vec::new(),
                })
            }
            _ => {
                let mut lines = std::mem::take(&mut self.lines);
                lines.push(ReplyLine {
                    code,
                    text: rest.to_owned(),
                    data: Vec::new(),
                });
                self.done.push_back(Reply { code, lines });
                self.size = 0;
            }
        }
        Ok(())
    }
}

/// Splits `NNN<sep>text` into the code, the separator (` `, `-` or `+`) and the text.
fn split_status(line: &str) -> Result<(u16, char, &str), ControlError> {
    let malformed = || {
        let shown: String = line.chars().take(60).collect();
        ControlError::Malformed(format!("not a status line: {shown:?}"))
    };
    let (Some(digits), Some(rest)) = (line.get(..3), line.get(3..)) else {
        return Err(malformed());
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let code: u16 = digits.parse().map_err(|_| malformed())?;
    let mut chars = rest.chars();
    match chars.next() {
        Some(separator @ (' ' | '-' | '+')) => Ok((code, separator, chars.as_str())),
        // "250" alone: an end line with no text.
        None => Ok((code, ' ', "")),
        Some(_) => Err(malformed()),
    }
}

// --- Quoted strings and keywords ----------------------------------------------------------

/// Reads a quoted string at the start of `text` (which starts with `"`), undoing tor's C
/// escapes (`\\`, `\"`, `\'`, `\n`, `\r`, `\t`, and `\NNN` octal for any other byte).
/// Returns the bytes and what follows the closing quote.
pub fn unquote(text: &str) -> Result<(Vec<u8>, &str), ControlError> {
    let malformed = |what: &str| ControlError::Malformed(what.to_owned());
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'"') {
        return Err(malformed("a quoted string expected"));
    }
    let mut out = Vec::new();
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => return Ok((out, text.get(i + 1..).unwrap_or(""))),
            b'\\' => {
                let Some(&next) = bytes.get(i + 1) else {
                    break;
                };
                match next {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'0'..=b'7' => {
                        let digits = bytes.get(i + 1..i + 4).unwrap_or_default();
                        if digits.len() != 3 || !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                            return Err(malformed("a bad octal escape in a quoted string"));
                        }
                        let value = digits
                            .iter()
                            .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                        let byte = u8::try_from(value)
                            .map_err(|_| malformed("an octal escape above \\377"))?;
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                    // `\\`, `\"`, `\'`, and any other escaped character stands for itself.
                    other => out.push(other),
                }
                i += 2;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Err(malformed("a quoted string without its closing quote"))
}

/// `KEY=VALUE` pairs separated by spaces, a value either bare (up to the next space) or a
/// quoted string. A word without `=` is a key with an empty value.
fn keywords(text: &str) -> Result<Vec<(String, Vec<u8>)>, ControlError> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start_matches(' ');
    while !rest.is_empty() {
        let key_end = rest.find(['=', ' ']).unwrap_or(rest.len());
        let key = rest.get(..key_end).unwrap_or("").to_owned();
        rest = rest.get(key_end..).unwrap_or("");
        let value = if let Some(after) = rest.strip_prefix('=') {
            if after.starts_with('"') {
                let (value, after) = unquote(after)?;
                if !(after.is_empty() || after.starts_with(' ')) {
                    return Err(ControlError::Malformed(
                        "text right after a quoted string".to_owned(),
                    ));
                }
                rest = after;
                value
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                rest = after.get(end..).unwrap_or("");
                after.get(..end).unwrap_or("").as_bytes().to_vec()
            }
        } else {
            Vec::new()
        };
        pairs.push((key, value));
        rest = rest.trim_start_matches(' ');
    }
    Ok(pairs)
}

/// The `AUTHENTICATE` argument for `password`: a quoted string (control-spec's
/// QuotedString: `\` and `"` escaped by a backslash, every other byte as it is). A line
/// break or NUL cannot be sent: tor would end (or cut) the command there.
pub fn quote_password(password: &str) -> Result<String, ControlError> {
    if password.contains(['\r', '\n', '\0']) {
        return Err(ControlError::UnsendablePassword);
    }
    let mut quoted = String::with_capacity(password.len() + 2);
    quoted.push('"');
    for c in password.chars() {
        if matches!(c, '\\' | '"') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Ok(quoted)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let digit = |b: u8| (b as char).to_digit(16);
        let (Some(high), Some(low)) = (
            pair.first().copied().and_then(digit),
            pair.get(1).copied().and_then(digit),
        ) else {
            return None;
        };
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

// --- PROTOCOLINFO and authentication ------------------------------------------------------

/// The first command: which authentication methods tor accepts, and where its cookie is.
pub const PROTOCOLINFO: &str = "PROTOCOLINFO 1\r\n";

/// An authentication method named in `PROTOCOLINFO`'s `AUTH METHODS=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// No authentication (`NULL`).
    Null,
    /// A password (`HASHEDPASSWORD`).
    HashedPassword,
    /// The cookie file's 32 bytes, sent as they are (`COOKIE`).
    Cookie,
    /// A challenge and response proving knowledge of the cookie (`SAFECOOKIE`).
    SafeCookie,
    /// A method this program does not know.
    Other(String),
}

/// What `PROTOCOLINFO 1` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolInfo {
    /// The methods tor accepts, in its order.
    pub methods: Vec<AuthMethod>,
    /// `COOKIEFILE`, unescaped: the path of the cookie, if tor uses one. Raw bytes (tor
    /// escapes a non-ASCII path in octal); the caller makes it a path.
    pub cookie_file: Option<Vec<u8>>,
    /// `VERSION Tor=`, if given.
    pub tor_version: Option<String>,
}

/// Reads the reply to [`PROTOCOLINFO`].
pub fn parse_protocolinfo(reply: &Reply) -> Result<ProtocolInfo, ControlError> {
    let reply = reply.clone().ok()?;
    let mut auth = None;
    let mut tor_version = None;
    for line in &reply.lines {
        if let Some(rest) = line.text.strip_prefix("AUTH ") {
            auth = Some(keywords(rest)?);
        } else if let Some(rest) = line.text.strip_prefix("VERSION ") {
            tor_version = keywords(rest)?
                .into_iter()
                .find(|(key, _)| key == "Tor")
                .map(|(_, value)| String::from_utf8_lossy(&value).into_owned());
        }
    }
    let Some(auth) = auth else {
        return Err(ControlError::Malformed(
            "PROTOCOLINFO without an AUTH line".to_owned(),
        ));
    };
    let mut methods = None;
    let mut cookie_file = None;
    for (key, value) in auth {
        match key.as_str() {
            "METHODS" => {
                let text = String::from_utf8_lossy(&value).into_owned();
                methods = Some(
                    text.split(',')
                        .filter(|m| !m.is_empty())
                        .map(|m| match m {
                            "NULL" => AuthMethod::Null,
                            "HASHEDPASSWORD" => AuthMethod::HashedPassword,
                            "COOKIE" => AuthMethod::Cookie,
                            "SAFECOOKIE" => AuthMethod::SafeCookie,
                            other => AuthMethod::Other(other.to_owned()),
                        })
                        .collect(),
                );
            }
            "COOKIEFILE" => cookie_file = Some(value),
            _ => {}
        }
    }
    let Some(methods) = methods else {
        return Err(ControlError::Malformed(
            "PROTOCOLINFO's AUTH line has no METHODS".to_owned(),
        ));
    };
    Ok(ProtocolInfo {
        methods,
        cookie_file,
        tor_version,
    })
}

/// How to authenticate, chosen from what tor offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthPlan {
    /// `AUTHENTICATE` with nothing.
    Null,
    /// The password (the caller has it).
    Password,
    /// SAFECOOKIE with the cookie at this path (raw bytes, see [`ProtocolInfo`]).
    SafeCookie(Vec<u8>),
    /// COOKIE with the cookie at this path.
    Cookie(Vec<u8>),
}

/// Chooses how to authenticate: the password when one is given and tor takes passwords;
/// otherwise none if tor needs none, SAFECOOKIE over COOKIE (it does not hand the cookie
/// to whoever listens on the port), and the password last.
pub fn choose_auth(info: &ProtocolInfo, have_password: bool) -> Result<AuthPlan, ControlError> {
    let offers = |method: AuthMethod| info.methods.contains(&method);
    if have_password && offers(AuthMethod::HashedPassword) {
        return Ok(AuthPlan::Password);
    }
    if offers(AuthMethod::Null) {
        return Ok(AuthPlan::Null);
    }
    if offers(AuthMethod::SafeCookie) || offers(AuthMethod::Cookie) {
        let Some(path) = info.cookie_file.clone() else {
            return Err(ControlError::NoCookieFile);
        };
        return Ok(if offers(AuthMethod::SafeCookie) {
            AuthPlan::SafeCookie(path)
        } else {
            AuthPlan::Cookie(path)
        });
    }
    if offers(AuthMethod::HashedPassword) {
        return Err(ControlError::NeedPassword);
    }
    let named: Vec<String> = info
        .methods
        .iter()
        .map(|m| match m {
            AuthMethod::Other(name) => name.clone(),
            known => format!("{known:?}").to_uppercase(),
        })
        .collect();
    Err(ControlError::NoMethod(named.join(",")))
}

/// `AUTHENTICATE` with no secret (tor needs none).
pub const AUTHENTICATE_NULL: &str = "AUTHENTICATE\r\n";

/// `AUTHENTICATE` with a password.
pub fn authenticate_password(password: &str) -> Result<String, ControlError> {
    Ok(format!("AUTHENTICATE {}\r\n", quote_password(password)?))
}

/// `AUTHENTICATE` with bytes in hex (the cookie, or the SAFECOOKIE client hash).
pub fn authenticate_bytes(secret: &[u8]) -> String {
    format!("AUTHENTICATE {}\r\n", hex(secret))
}

/// `AUTHCHALLENGE SAFECOOKIE` with this program's nonce.
pub fn authchallenge(client_nonce: &[u8; NONCE_LEN]) -> String {
    format!("AUTHCHALLENGE SAFECOOKIE {}\r\n", hex(client_nonce))
}

/// Tor's answer to `AUTHCHALLENGE`: its hash and its nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// HMAC-SHA256 proving tor knows the cookie.
    pub server_hash: [u8; 32],
    /// Tor's nonce.
    pub server_nonce: [u8; NONCE_LEN],
}

/// Reads `250 AUTHCHALLENGE SERVERHASH=… SERVERNONCE=…`.
pub fn parse_authchallenge(reply: &Reply) -> Result<Challenge, ControlError> {
    let reply = reply.clone().ok()?;
    let line = reply
        .lines
        .iter()
        .find_map(|line| line.text.strip_prefix("AUTHCHALLENGE "))
        .ok_or_else(|| ControlError::Malformed("no AUTHCHALLENGE line".to_owned()))?;
    let pairs = keywords(line)?;
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
            .and_then(unhex::<32>)
            .ok_or_else(|| ControlError::Malformed(format!("no valid {name} in AUTHCHALLENGE")))
    };
    Ok(Challenge {
        server_hash: field("SERVERHASH")?,
        server_nonce: field("SERVERNONCE")?,
    })
}

/// The longest HMAC key taken as it is: SHA-256's block (64 bytes).
const HMAC_BLOCK: usize = 64;

// Both keys fit in one block (56 bytes each), which `hmac_key` relies on.
const _: () = assert!(SERVER_TO_CONTROLLER.len() <= HMAC_BLOCK);
const _: () = assert!(CONTROLLER_TO_SERVER.len() <= HMAC_BLOCK);

/// `key` as a full HMAC block. HMAC pads a key shorter than the block with zeros, so this is
/// the same key; unlike `new_from_slice`, building it cannot fail (the known-answer test
/// below checks the result against Python's `hmac`).
fn hmac_key(key: &[u8]) -> hmac::digest::Key<Hmac<Sha256>> {
    let mut block = hmac::digest::Key::<Hmac<Sha256>>::default();
    for (slot, byte) in block.iter_mut().zip(key) {
        *slot = *byte;
    }
    block
}

/// HMAC-SHA256 under `key` of cookie ‖ client nonce ‖ server nonce.
fn safecookie_mac(
    key: &[u8],
    cookie: &[u8; COOKIE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new(&hmac_key(key));
    mac.update(cookie);
    mac.update(client_nonce);
    mac.update(server_nonce);
    mac
}

/// The hash tor must send in its `AUTHCHALLENGE` answer.
pub fn safecookie_server_hash(
    cookie: &[u8; COOKIE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
) -> [u8; 32] {
    safecookie_mac(SERVER_TO_CONTROLLER, cookie, client_nonce, server_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// The hash this program sends in `AUTHENTICATE` after SAFECOOKIE.
pub fn safecookie_client_hash(
    cookie: &[u8; COOKIE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
) -> [u8; 32] {
    safecookie_mac(CONTROLLER_TO_SERVER, cookie, client_nonce, server_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks tor's SAFECOOKIE hash (in constant time) and returns the `AUTHENTICATE` command
/// that answers it.
pub fn safecookie_response(
    cookie: &[u8; COOKIE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    challenge: &Challenge,
) -> Result<String, ControlError> {
    safecookie_mac(
        SERVER_TO_CONTROLLER,
        cookie,
        client_nonce,
        &challenge.server_nonce,
    )
    .verify_slice(&challenge.server_hash)
    .map_err(|_| ControlError::ServerHashMismatch)?;
    Ok(authenticate_bytes(&safecookie_client_hash(
        cookie,
        client_nonce,
        &challenge.server_nonce,
    )))
}

// --- ADD_ONION ----------------------------------------------------------------------------

/// Which key an `ADD_ONION` publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnionKey<'a> {
    /// A new ed25519 key, which tor returns.
    New,
    /// A key returned earlier: the base64 blob after `ED25519-V3:`.
    Existing(&'a str),
}

/// Whether `blob` can be an `ED25519-V3` private key as tor writes it: base64 (64 bytes,
/// 88 characters), nothing that could end or extend the command.
pub fn is_key_blob(blob: &str) -> bool {
    blob.len() == 88
        && blob
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// Whether `id` is a v3 onion service id: 56 characters of lower-case base32.
pub fn is_service_id(id: &str) -> bool {
    id.len() == SERVICE_ID_LEN && id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
}

/// `ADD_ONION` for a service whose port `virtual_port` forwards to `target`. A new key is
/// returned by tor; an existing one is not returned again (`DiscardPK`). Without `Detach`,
/// the service lives as long as this control connection.
pub fn add_onion(
    key: OnionKey<'_>,
    virtual_port: u16,
    target: SocketAddr,
) -> Result<String, ControlError> {
    let target = format!("Port={virtual_port},{target}");
    match key {
        OnionKey::New => Ok(format!("ADD_ONION NEW:ED25519-V3 {target}\r\n")),
        OnionKey::Existing(blob) if is_key_blob(blob) => Ok(format!(
            "ADD_ONION ED25519-V3:{blob} Flags=DiscardPK {target}\r\n"
        )),
        OnionKey::Existing(_) => Err(ControlError::Malformed(
            "the stored onion service key is not an ED25519-V3 key".to_owned(),
        )),
    }
}

/// What `ADD_ONION` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedOnion {
    /// The service id (the address without `.onion`).
    pub service_id: String,
    /// The new key's base64 blob (after `ED25519-V3:`), when tor made the key.
    pub private_key: Option<String>,
}

/// Reads the reply to [`add_onion`]: `250-ServiceID=…`, for a new key
/// `250-PrivateKey=ED25519-V3:…`, then `250 OK`.
pub fn parse_add_onion(reply: &Reply) -> Result<AddedOnion, ControlError> {
    let reply = reply.clone().ok()?;
    let mut service_id = None;
    let mut private_key = None;
    for line in &reply.lines {
        if let Some(id) = line.text.strip_prefix("ServiceID=") {
            if !is_service_id(id) {
                return Err(ControlError::Malformed(format!(
                    "ServiceID {:?} is not a v3 onion service id",
                    id.chars().take(80).collect::<String>()
                )));
            }
            service_id = Some(id.to_owned());
        } else if let Some(key) = line.text.strip_prefix("PrivateKey=") {
            let blob = key.strip_prefix("ED25519-V3:").filter(|b| is_key_blob(b));
            let Some(blob) = blob else {
                return Err(ControlError::Malformed(
                    "PrivateKey is not an ED25519-V3 key".to_owned(),
                ));
            };
            private_key = Some(blob.to_owned());
        }
    }
    let Some(service_id) = service_id else {
        return Err(ControlError::Malformed(
            "ADD_ONION answered without a ServiceID".to_owned(),
        ));
    };
    Ok(AddedOnion {
        service_id,
        private_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reply in `bytes`, fed at once.
    fn replies(bytes: &[u8]) -> Result<Vec<Reply>, ControlError> {
        let mut reader = ReplyReader::new();
        reader.feed(bytes)?;
        Ok(std::iter::from_fn(|| reader.next_reply()).collect())
    }

    fn one(bytes: &[u8]) -> Reply {
        let mut all = replies(bytes).unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn line(code: u16, text: &str) -> ReplyLine {
        ReplyLine {
            code,
            text: text.to_owned(),
            data: Vec::new(),
        }
    }

    #[test]
    fn a_single_line_reply() {
        let reply = one(b"250 OK\r\n");
        assert_eq!(
            reply,
            Reply {
                code: 250,
                lines: vec![line(250, "OK")]
            }
        );
        assert!(reply.is_ok());
        assert!(reply.ok().is_ok());
    }

    #[test]
    fn a_multi_line_reply() {
        let reply = one(b"250-ServiceID=abc\r\n250-PrivateKey=x\r\n250 OK\r\n");
        assert_eq!(reply.code, 250);
        assert_eq!(
            reply.lines,
            [
                line(250, "ServiceID=abc"),
                line(250, "PrivateKey=x"),
                line(250, "OK")
            ]
        );
    }

    #[test]
    fn a_data_reply_is_unstuffed() {
        let reply =
            one(b"250+config-text=\r\nControlPort 9051\r\n..hidden dot\r\n\r\n.\r\n250 OK\r\n");
        assert_eq!(reply.lines.len(), 2);
        assert_eq!(reply.lines[0].text, "config-text=");
        assert_eq!(reply.lines[0].data, ["ControlPort 9051", ".hidden dot", ""]);
        assert_eq!(reply.lines[1], line(250, "OK"));
    }

    #[test]
    fn errors_keep_their_code_and_text() {
        let reply = one(b"515 Authentication failed: Password did not match\r\n");
        assert!(!reply.is_ok());
        assert_eq!(
            reply.ok(),
            Err(ControlError::Refused {
                code: 515,
                text: "Authentication failed: Password did not match".to_owned()
            })
        );
        let reply = one(b"550 Onion address collision\r\n");
        assert_eq!(
            reply.ok().unwrap_err().to_string(),
            "550 Onion address collision"
        );
    }

    #[test]
    fn bare_lf_and_split_chunks_read_the_same() {
        let crlf = b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250 OK\r\n";
        let lf = b"250-PROTOCOLINFO 1\n250-AUTH METHODS=NULL\n250 OK\n";
        assert_eq!(one(crlf), one(lf));
        // Byte by byte: nothing until the end line, then the same reply.
        let mut reader = ReplyReader::new();
        for (i, byte) in crlf.iter().enumerate() {
            reader.feed(std::slice::from_ref(byte)).unwrap();
            if i + 1 < crlf.len() {
                assert_eq!(reader.next_reply(), None, "after {i} bytes");
            }
        }
        assert_eq!(reader.next_reply(), Some(one(crlf)));
        // Two replies in one read come out in order.
        let both = replies(b"250 OK\r\n650 BW 1 2\r\n").unwrap();
        assert_eq!(both.len(), 2);
        assert!(both[1].is_event());
        // An end line with no text at all.
        assert_eq!(one(b"250\r\n").lines, [line(250, "")]);
    }

    #[test]
    fn malformed_lines_are_refused_for_good() {
        for bad in [
            &b"OK\r\n"[..],
            b"25 OK\r\n",
            b"2x0 OK\r\n",
            b"250*OK\r\n",
            b"\r\n",
            b"\xff\xfe\xfd OK\r\n",
        ] {
            let mut reader = ReplyReader::new();
            let e = reader.feed(bad).unwrap_err();
            assert!(matches!(e, ControlError::Malformed(_)), "{bad:?}: {e:?}");
            // The reader stays failed.
            assert_eq!(reader.feed(b"250 OK\r\n"), Err(e));
        }
    }

    #[test]
    fn oversize_lines_and_replies_are_refused() {
        let mut reader = ReplyReader::new();
        let long = vec![b'a'; MAX_LINE];
        assert_eq!(reader.feed(&long), Err(ControlError::LineTooLong));
        // Just under the limit is fine, even in pieces.
        let mut reader = ReplyReader::new();
        let mut fits = b"250 ".to_vec();
        fits.resize(MAX_LINE - 2, b'a');
        fits.extend_from_slice(b"\r\n");
        for piece in fits.chunks(1000) {
            reader.feed(piece).unwrap();
        }
        assert_eq!(
            reader.next_reply().unwrap().lines[0].text.len(),
            MAX_LINE - 6
        );
        // Many short lines of one reply.
        let mut reader = ReplyReader::new();
        let line = b"250-0123456789012345678901234567890123456789\r\n";
        let mut e = Ok(());
        for _ in 0..=(MAX_REPLY / line.len()) {
            e = reader.feed(line);
            if e.is_err() {
                break;
            }
        }
        assert_eq!(e, Err(ControlError::ReplyTooLong));
        // A data block counts too.
        let mut reader = ReplyReader::new();
        reader.feed(b"250+data=\r\n").unwrap();
        let mut e = Ok(());
        for _ in 0..=(MAX_REPLY / line.len()) {
            e = reader.feed(line);
            if e.is_err() {
                break;
            }
        }
        assert_eq!(e, Err(ControlError::ReplyTooLong));
    }

    #[test]
    fn protocolinfo_is_read() {
        let reply = one(
            b"250-PROTOCOLINFO 1\r\n\
              250-AUTH METHODS=COOKIE,SAFECOOKIE,HASHEDPASSWORD COOKIEFILE=\"/var/run/tor/control.authcookie\"\r\n\
              250-VERSION Tor=\"0.4.9.11\"\r\n\
              250 OK\r\n",
        );
        let info = parse_protocolinfo(&reply).unwrap();
        assert_eq!(
            info,
            ProtocolInfo {
                methods: vec![
                    AuthMethod::Cookie,
                    AuthMethod::SafeCookie,
                    AuthMethod::HashedPassword
                ],
                cookie_file: Some(b"/var/run/tor/control.authcookie".to_vec()),
                tor_version: Some("0.4.9.11".to_owned()),
            }
        );
        let info = parse_protocolinfo(&one(b"250-AUTH METHODS=NULL\r\n250 OK\r\n")).unwrap();
        assert_eq!(info.methods, [AuthMethod::Null]);
        assert_eq!(info.cookie_file, None);
        let info = parse_protocolinfo(&one(b"250-AUTH METHODS=FUTURE,NULL\r\n250 OK\r\n")).unwrap();
        assert_eq!(
            info.methods,
            [AuthMethod::Other("FUTURE".to_owned()), AuthMethod::Null]
        );
    }

    #[test]
    fn the_cookie_file_is_unescaped() {
        // tor escapes with C escapes: quotes, backslashes, and octal for other bytes (here
        // "é" in UTF-8, and a tab).
        let reply = one(
            b"250-AUTH METHODS=SAFECOOKIE COOKIEFILE=\"/home/a \\\"b\\\"\\\\c/\\303\\251\\tx\"\r\n250 OK\r\n",
        );
        let info = parse_protocolinfo(&reply).unwrap();
        assert_eq!(
            info.cookie_file.as_deref(),
            Some("/home/a \"b\"\\c/é\tx".as_bytes())
        );
        assert_eq!(
            unquote("\"a\\'b\" rest").unwrap(),
            (b"a'b".to_vec(), " rest")
        );
        for bad in [
            "\"no end",
            "\"bad octal \\19\"",
            "\"\\400\"",
            "no quote",
            "\"ends in \\",
        ] {
            assert!(
                matches!(unquote(bad), Err(ControlError::Malformed(_))),
                "{bad}"
            );
        }
        let reply = one(b"250-AUTH METHODS=COOKIE COOKIEFILE=\"/a\"b\r\n250 OK\r\n");
        assert!(parse_protocolinfo(&reply).is_err());
    }

    #[test]
    fn protocolinfo_without_auth_or_methods_is_malformed() {
        for bad in [
            &b"250-PROTOCOLINFO 1\r\n250 OK\r\n"[..],
            b"250-AUTH COOKIEFILE=\"/x\"\r\n250 OK\r\n",
        ] {
            assert!(matches!(
                parse_protocolinfo(&one(bad)),
                Err(ControlError::Malformed(_))
            ));
        }
        assert!(matches!(
            parse_protocolinfo(&one(b"514 Authentication required.\r\n")),
            Err(ControlError::Refused { code: 514, .. })
        ));
    }

    fn info(methods: &[AuthMethod], cookie: bool) -> ProtocolInfo {
        ProtocolInfo {
            methods: methods.to_vec(),
            cookie_file: cookie.then(|| b"/c".to_vec()),
            tor_version: None,
        }
    }

    #[test]
    fn the_method_is_chosen_as_documented() {
        use AuthMethod::*;
        let all = [Cookie, SafeCookie, HashedPassword];
        assert_eq!(
            choose_auth(&info(&all, true), false),
            Ok(AuthPlan::SafeCookie(b"/c".to_vec()))
        );
        assert_eq!(choose_auth(&info(&all, true), true), Ok(AuthPlan::Password));
        assert_eq!(
            choose_auth(&info(&[Cookie], true), true),
            Ok(AuthPlan::Cookie(b"/c".to_vec()))
        );
        assert_eq!(
            choose_auth(&info(&[Null, HashedPassword], false), false),
            Ok(AuthPlan::Null)
        );
        assert_eq!(
            choose_auth(&info(&[HashedPassword], false), false),
            Err(ControlError::NeedPassword)
        );
        assert_eq!(
            choose_auth(&info(&[SafeCookie], false), false),
            Err(ControlError::NoCookieFile)
        );
        assert_eq!(
            choose_auth(&info(&[Other("X".into())], false), true),
            Err(ControlError::NoMethod("X".into()))
        );
    }

    #[test]
    fn passwords_are_quoted() {
        assert_eq!(quote_password("secret").unwrap(), "\"secret\"");
        assert_eq!(quote_password(r#"a"b\c d"#).unwrap(), r#""a\"b\\c d""#);
        assert_eq!(quote_password("").unwrap(), "\"\"");
        assert_eq!(quote_password("pässwörd").unwrap(), "\"pässwörd\"");
        assert_eq!(
            authenticate_password("x\"").unwrap(),
            "AUTHENTICATE \"x\\\"\"\r\n"
        );
        for bad in ["a\nb", "a\rb", "a\0b"] {
            assert_eq!(
                quote_password(bad),
                Err(ControlError::UnsendablePassword),
                "{bad:?}"
            );
        }
        // What tor reads back (backslash takes the next character as it is) is the password.
        let quoted = quote_password(r#"\"\\"#).unwrap();
        let (back, rest) = unquote(&quoted).unwrap();
        assert_eq!((back.as_slice(), rest), (&br#"\"\\"#[..], ""));
    }

    #[test]
    fn safecookie_known_answer() {
        // Computed with Python's hmac module:
        // hmac.new(KEY, bytes(range(32)) + b"\xaa" * 32 + b"\x55" * 32, hashlib.sha256)
        let cookie: [u8; 32] = std::array::from_fn(|i| i as u8);
        let client = [0xaa; 32];
        let server = [0x55; 32];
        assert_eq!(
            hex(&safecookie_server_hash(&cookie, &client, &server)),
            "5F7CB5569957C99373E329258545940F029AF175DA225F4A3125EEBF30C24BBA"
        );
        assert_eq!(
            hex(&safecookie_client_hash(&cookie, &client, &server)),
            "9F99F2C4B75C91123CA5C6C6E3F76A9EF7FBD9471053CBE34454A4269CC39F7C"
        );
        let challenge = parse_authchallenge(&one(
            b"250 AUTHCHALLENGE SERVERHASH=5F7CB5569957C99373E329258545940F029AF175DA225F4A3125EEBF30C24BBA \
              SERVERNONCE=5555555555555555555555555555555555555555555555555555555555555555\r\n",
        ))
        .unwrap();
        assert_eq!(challenge.server_nonce, server);
        assert_eq!(
            safecookie_response(&cookie, &client, &challenge).unwrap(),
            "AUTHENTICATE 9F99F2C4B75C91123CA5C6C6E3F76A9EF7FBD9471053CBE34454A4269CC39F7C\r\n"
        );
        // A tor that does not know the cookie is not answered.
        let mut wrong = challenge.clone();
        wrong.server_hash[0] ^= 1;
        assert_eq!(
            safecookie_response(&cookie, &client, &wrong),
            Err(ControlError::ServerHashMismatch)
        );
        assert_eq!(
            authchallenge(&client),
            format!("AUTHCHALLENGE SAFECOOKIE {}\r\n", "AA".repeat(32))
        );
    }

    #[test]
    fn a_bad_authchallenge_answer_is_malformed() {
        for bad in [
            &b"250 AUTHCHALLENGE SERVERHASH=00\r\n"[..],
            b"250 OK\r\n",
            b"250 AUTHCHALLENGE SERVERHASH=zz SERVERNONCE=00\r\n",
        ] {
            assert!(
                matches!(
                    parse_authchallenge(&one(bad)),
                    Err(ControlError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    const ID: &str = "ndpq7tncthqml2wrrcjj2rl3i4mtbtbbgvdgxdcvnwskblll33aqrkid";
    const KEY: &str =
        "eLAKh4l1luZ6AVrhnvnYqbezrDVzaK4wh26vdRHgv3quMukqYC7KXoSZdrrwq4+Vl+DYBLOT6P4BlPn/keon4w==";

    #[test]
    fn add_onion_commands() {
        let target: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        assert_eq!(
            add_onion(OnionKey::New, 30000, target).unwrap(),
            "ADD_ONION NEW:ED25519-V3 Port=30000,127.0.0.1:41234\r\n"
        );
        assert_eq!(
            add_onion(OnionKey::Existing(KEY), 4000, target).unwrap(),
            format!("ADD_ONION ED25519-V3:{KEY} Flags=DiscardPK Port=4000,127.0.0.1:41234\r\n")
        );
        // A key that could smuggle anything into the command is refused.
        for bad in [
            "short",
            &format!("{} Flags=Detach", &KEY[..70]),
            &format!("{}\r\nDEL_ONION", &KEY[..77]),
        ] {
            assert!(
                add_onion(OnionKey::Existing(bad), 1, target).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn add_onion_replies() {
        let new = one(format!(
            "250-ServiceID={ID}\r\n250-PrivateKey=ED25519-V3:{KEY}\r\n250 OK\r\n"
        )
        .as_bytes());
        assert_eq!(
            parse_add_onion(&new).unwrap(),
            AddedOnion {
                service_id: ID.to_owned(),
                private_key: Some(KEY.to_owned())
            }
        );
        let again = one(format!("250-ServiceID={ID}\r\n250 OK\r\n").as_bytes());
        assert_eq!(parse_add_onion(&again).unwrap().private_key, None);
        assert_eq!(
            parse_add_onion(&one(b"550 Onion address collision\r\n")),
            Err(ControlError::Refused {
                code: 550,
                text: "Onion address collision".to_owned()
            })
        );
        for bad in [
            "250 OK\r\n".to_owned(),
            "250-ServiceID=tooshort\r\n250 OK\r\n".to_owned(),
            format!("250-ServiceID={}\r\n250 OK\r\n", ID.to_uppercase()),
            format!("250-ServiceID={ID}\r\n250-PrivateKey=RSA1024:{KEY}\r\n250 OK\r\n"),
        ] {
            assert!(
                matches!(
                    parse_add_onion(&one(bad.as_bytes())),
                    Err(ControlError::Malformed(_))
                ),
                "{bad}"
            );
        }
        assert!(is_service_id(ID));
        assert!(is_key_blob(KEY));
    }
}
