//! The client side of the magic-wormhole transit relay handshake, and the token and sides a
//! SocketFalco caller and listener meet under.
//!
//! A transit relay pairs two TCP connections that send the same token from different sides:
//! each sends `please relay TOKEN for side SIDE\n` (TOKEN 64 lowercase hex digits, SIDE 16),
//! and once a second connection with the same token and another side arrives, the relay
//! answers `ok\n` to both and from then on copies bytes between them. Before that it may
//! answer `impatient\n` (we sent data too early) or `bad handshake\n`, or just close.
//!
//! Both token and sides are derived from the listener's static public key, which the caller
//! knows from an invite, so no other party learns where to meet. Connections with the same
//! side never pair: every caller sends the caller side and the listener the listener side,
//! so two callers cannot be paired with each other.

use crate::outbox::Outbox;
use crate::Handshake;
use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;

/// The HKDF info of the relay token.
pub const TOKEN_LABEL: &[u8] = b"socketfalco transit relay token v1";
/// The HKDF info of the listener's side.
const LISTENER_SIDE_LABEL: &[u8] = b"socketfalco transit relay side v1 listener";
/// The HKDF info of the callers' side.
const CALLER_SIDE_LABEL: &[u8] = b"socketfalco transit relay side v1 caller";
/// The most bytes of the relay's answer read without a newline: its real answers are short.
pub const MAX_LINE_LEN: usize = 64;
/// The most characters of an unexpected answer shown in an error.
const SHOWN_LINE_LEN: usize = 60;

/// Which end of a SocketFalco connection a relay connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelaySide {
    Listener,
    Caller,
}

/// The relay token of the listener with static public key `listener_key`: HKDF-SHA256 with
/// no salt, the key as input keying material and [`TOKEN_LABEL`] as info, 32 bytes.
pub fn relay_token(listener_key: &[u8; 32]) -> [u8; 32] {
    hkdf_sha256(listener_key, TOKEN_LABEL)
}

/// The relay side of `side` for the listener with static public key `listener_key`: 8 bytes
/// of HKDF-SHA256 like [`relay_token`], with info "socketfalco transit relay side v1
/// listener" or "… caller".
pub fn relay_side(listener_key: &[u8; 32], side: RelaySide) -> [u8; 8] {
    let label = match side {
        RelaySide::Listener => LISTENER_SIDE_LABEL,
        RelaySide::Caller => CALLER_SIDE_LABEL,
    };
    hkdf_sha256(listener_key, label)
}

/// `N` bytes of HKDF-SHA256 (RFC 5869) without salt.
fn hkdf_sha256<const N: usize>(ikm: &[u8], info: &[u8]) -> [u8; N] {
    // Expansion fails only past 255 hash lengths; this refuses such an N when compiling.
    const { assert!(N <= 255 * 32) };
    let mut okm = [0u8; N];
    Hkdf::<Sha256>::new(None, ikm)
        .expand(info, &mut okm)
        .expect("HKDF-SHA256 gives up to 8160 bytes, and N is at most that");
    okm
}

/// Why a relay handshake failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransitError {
    /// The relay answered `impatient`: we sent data before it paired us.
    Impatient,
    /// The relay answered `bad handshake`.
    BadHandshake,
    /// Another line: printable ASCII only (others shown as `?`), at most 60 characters.
    Unexpected(String),
    /// More than 64 bytes without a newline.
    TooLong,
}

impl fmt::Display for TransitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitError::Impatient => {
                write!(f, "the relay says data was sent before the other side arrived (\"impatient\")")
            }
            TransitError::BadHandshake => write!(
                f,
                "the relay did not accept the handshake (\"bad handshake\"); is it a magic-wormhole transit relay?"
            ),
            TransitError::Unexpected(line) => write!(
                f,
                "the relay answered {line:?} instead of \"ok\"; is it a magic-wormhole transit relay?"
            ),
            TransitError::TooLong => write!(
                f,
                "the relay sent more than {MAX_LINE_LEN} bytes without a line break; is it a magic-wormhole transit relay?"
            ),
        }
    }
}

impl std::error::Error for TransitError {}

/// One relay handshake: the request line out, the relay's answer line in.
#[derive(Debug)]
pub struct TransitClient {
    /// The request, as far as it is not written yet.
    output: Outbox,
    /// The relay's answer line so far, without its newline.
    line: Vec<u8>,
    /// Whether `ok\n` was read.
    done: bool,
    /// Bytes read after `ok\n`.
    leftover: Vec<u8>,
    /// The first error, returned again by every later `handle_input`.
    error: Option<TransitError>,
}

impl TransitClient {
    /// Queues `please relay TOKEN for side SIDE\n`.
    pub fn new(token: [u8; 32], side: [u8; 8]) -> TransitClient {
        let request = format!("please relay {} for side {}\n", hex(&token), hex(&side));
        TransitClient {
            output: Outbox::new(request.into_bytes()),
            line: Vec::new(),
            done: false,
            leftover: Vec::new(),
            error: None,
        }
    }
}

impl Handshake for TransitClient {
    type Error = TransitError;

    /// The bytes to write to the relay now.
    fn pending_output(&self) -> &[u8] {
        self.output.pending()
    }

    /// `n` bytes of [`Handshake::pending_output`] were written (more than pending is
    /// taken as all of them).
    fn advance_output(&mut self, n: usize) {
        self.output.advance(n);
    }

    /// Feeds bytes read from the relay (any split). Once it has failed, every later call
    /// returns the same error. After `ok\n`, bytes are kept for
    /// [`Handshake::take_leftover`].
    fn handle_input(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if self.done {
            self.leftover.extend_from_slice(bytes);
            return Ok(());
        }
        let result = self.read_line(bytes);
        if let Err(error) = &result {
            self.error = Some(error.clone());
            self.line.clear();
        }
        result
    }

    /// Whether the relay answered `ok\n`: the other side is connected.
    fn is_done(&self) -> bool {
        self.done
    }

    /// The bytes that arrived after `ok\n`: the other side's first bytes.
    fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.leftover)
    }
}

impl TransitClient {
    fn read_line(&mut self, bytes: &[u8]) -> Result<(), TransitError> {
        let Some(newline) = bytes.iter().position(|&byte| byte == b'\n') else {
            self.line.extend_from_slice(bytes);
            if self.line.len() > MAX_LINE_LEN {
                return Err(TransitError::TooLong);
            }
            return Ok(());
        };
        self.line
            .extend_from_slice(bytes.get(..newline).unwrap_or_default());
        if self.line.len() > MAX_LINE_LEN {
            return Err(TransitError::TooLong);
        }
        match self.line.as_slice() {
            b"ok" => {
                self.done = true;
                self.line.clear();
                self.leftover = bytes.get(newline + 1..).unwrap_or_default().to_vec();
                Ok(())
            }
            b"impatient" => Err(TransitError::Impatient),
            b"bad handshake" => Err(TransitError::BadHandshake),
            other => Err(TransitError::Unexpected(sanitize(other))),
        }
    }
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A line from the relay made safe to show: printable ASCII, others as `?`, at most
/// [`SHOWN_LINE_LEN`] characters (the last three `...` when cut).
fn sanitize(line: &[u8]) -> String {
    let printable = |byte: &u8| match byte {
        0x20..=0x7E => char::from(*byte),
        _ => '?',
    };
    if line.len() <= SHOWN_LINE_LEN {
        line.iter().map(printable).collect()
    } else {
        let mut shown: String = line
            .iter()
            .take(SHOWN_LINE_LEN - 3)
            .map(printable)
            .collect();
        shown.push_str("...");
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key 00 01 02 … 1f.
    fn counting_key() -> [u8; 32] {
        std::array::from_fn(|index| index as u8)
    }

    fn client() -> TransitClient {
        TransitClient::new([0xAB; 32], [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF])
    }

    fn hex_to_bytes<const N: usize>(text: &str) -> [u8; N] {
        std::array::from_fn(|index| {
            u8::from_str_radix(&text[2 * index..2 * index + 2], 16).unwrap()
        })
    }

    #[test]
    fn known_answers() {
        // Computed once with Python's hmac and hashlib: HKDF-SHA256 extract (salt of 32 zero
        // bytes, RFC 5869's default) and expand, written out by hand.
        let key = counting_key();
        assert_eq!(
            relay_token(&key),
            hex_to_bytes::<32>("6860c65d32e66aea38d5cae3579bf993f74a3aa9e352bd09f6e15dc17f0ce072")
        );
        assert_eq!(
            relay_side(&key, RelaySide::Listener),
            hex_to_bytes::<8>("e022ce65a5ed357a")
        );
        assert_eq!(
            relay_side(&key, RelaySide::Caller),
            hex_to_bytes::<8>("327381adc6caa970")
        );
    }

    #[test]
    fn sides_differ_and_keys_matter() {
        for seed in 0..=255u8 {
            let key = [seed; 32];
            assert_ne!(
                relay_side(&key, RelaySide::Listener),
                relay_side(&key, RelaySide::Caller)
            );
        }
        assert_ne!(relay_token(&[1; 32]), relay_token(&[2; 32]));
        assert_ne!(
            relay_side(&[1; 32], RelaySide::Caller),
            relay_side(&[2; 32], RelaySide::Caller)
        );
    }

    #[test]
    fn request_bytes() {
        let mut client = client();
        let expected =
            "please relay abababababababababababababababababababababababababababababababab \
                        for side 0123456789abcdef\n";
        assert_eq!(client.pending_output(), expected.as_bytes());
        client.advance_output(7);
        assert_eq!(client.pending_output(), &expected.as_bytes()[7..]);
        client.advance_output(1000);
        assert!(client.pending_output().is_empty());
    }

    #[test]
    fn ok_byte_by_byte() {
        let mut client = client();
        client.handle_input(b"o").unwrap();
        client.handle_input(b"k").unwrap();
        assert!(!client.is_done());
        client.handle_input(b"\n").unwrap();
        assert!(client.is_done());
        assert!(client.take_leftover().is_empty());
    }

    #[test]
    fn ok_with_leftover() {
        let mut client = client();
        client.handle_input(b"o").unwrap();
        client.handle_input(b"k\nhello").unwrap();
        assert!(client.is_done());
        client.handle_input(b"\n world").unwrap();
        assert_eq!(client.take_leftover(), b"hello\n world");
        assert!(client.take_leftover().is_empty());
    }

    #[test]
    fn each_error() {
        let cases: &[(&[u8], TransitError)] = &[
            (b"impatient\n", TransitError::Impatient),
            (b"bad handshake\n", TransitError::BadHandshake),
            (b"ok \n", TransitError::Unexpected("ok ".into())),
            (b"OK\n", TransitError::Unexpected("OK".into())),
            (b"ok\r\n", TransitError::Unexpected("ok?".into())),
            (b"\n", TransitError::Unexpected(String::new())),
            (
                b"HTTP/1.1 400 Bad Request\r\n",
                TransitError::Unexpected("HTTP/1.1 400 Bad Request?".into()),
            ),
            (
                b"\x00\xffno\x1b[2J\n",
                TransitError::Unexpected("??no?[2J".into()),
            ),
        ];
        for (answer, error) in cases {
            let mut whole = client();
            assert_eq!(whole.handle_input(answer).as_ref(), Err(error));
            assert!(!whole.is_done());
            // The same, byte by byte: no error before the newline.
            let mut split = client();
            let (last, head) = answer.split_last().unwrap();
            for byte in head {
                split.handle_input(&[*byte]).unwrap();
            }
            assert_eq!(split.handle_input(&[*last]).as_ref(), Err(error));
        }
    }

    #[test]
    fn long_lines() {
        // 64 bytes and a newline: judged as a line, shown cut to 60 characters.
        let mut client64 = client();
        let error = client64
            .handle_input(&[b'x'; 65][..64])
            .and(client64.handle_input(b"\n"));
        let shown = format!("{}...", "x".repeat(57));
        assert_eq!(error, Err(TransitError::Unexpected(shown.clone())));
        assert_eq!(shown.len(), 60);
        // 65 bytes without a newline: too long, whether or not a newline follows.
        let mut client65 = client();
        assert_eq!(
            client65.handle_input(&[b'x'; 65]),
            Err(TransitError::TooLong)
        );
        let mut client65 = client();
        let mut line = vec![b'x'; 65];
        line.push(b'\n');
        assert_eq!(client65.handle_input(&line), Err(TransitError::TooLong));
        let mut bytewise = client();
        for _ in 0..64 {
            bytewise.handle_input(b"x").unwrap();
        }
        assert_eq!(bytewise.handle_input(b"x"), Err(TransitError::TooLong));
    }

    #[test]
    fn errors_are_sticky_and_messages_one_line() {
        let mut client = client();
        assert_eq!(
            client.handle_input(b"impatient\n"),
            Err(TransitError::Impatient)
        );
        assert_eq!(client.handle_input(b"ok\n"), Err(TransitError::Impatient));
        assert!(!client.is_done());
        for error in [
            TransitError::Impatient,
            TransitError::BadHandshake,
            TransitError::Unexpected("what".into()),
            TransitError::TooLong,
        ] {
            assert!(!error.to_string().contains('\n'));
        }
    }
}
