//! Authenticated encryption between the byte stream and the frame codec: Noise XX.
//!
//! Every connection runs a Noise `XX` handshake (X25519, ChaCha20-Poly1305, BLAKE2s) before
//! any frame: each side proves its long-term static key, and everything after — the hello
//! included — travels encrypted and authenticated. On the wire each Noise message carries a
//! 2-byte big-endian length (at most 65,535 bytes, as Noise allows); the plaintext inside is
//! simply the next piece of the frame stream, so a frame larger than one Noise message spans
//! several and the codec and session above do not change.
//!
//! [`SecureChannel`] is sans-IO like the rest of the core: ciphertext in, plaintext out,
//! plaintext in, ciphertext out. Randomness (for the ephemeral keys) comes from a 32-byte
//! seed the driver supplies per connection, so the simulator can replay a handshake exactly.
//! A message that fails to decrypt — tampered, replayed, reordered, cut — fails the channel
//! for reading for good: nothing after it is trusted.

use crate::send_buffer::SendBuffer;
use snow::params::{DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use std::fmt;

/// The Noise protocol name: pattern XX, X25519, ChaCha20-Poly1305, BLAKE2s.
pub(crate) const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// Bound into the handshake: a peer of another protocol or version fails the handshake.
pub(crate) const PROLOGUE: &[u8] = b"SocketFalco protocol 1";

/// Largest Noise message (length prefix excluded), as the Noise specification sets it.
pub const MAX_NOISE_MESSAGE: usize = 65_535;

/// Bytes of authentication tag in each transport message.
pub const TAG_BYTES: usize = 16;

/// Most plaintext bytes carried by one transport message.
pub(crate) const MAX_PLAINTEXT_PER_MESSAGE: usize = MAX_NOISE_MESSAGE - TAG_BYTES;

const LENGTH_BYTES: usize = 2;

/// An X25519 public key: a device's long-term identity on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// A short, readable form to compare out of band: the first 16 bytes of BLAKE2s of the
    /// key ([`PublicKey::fingerprint_bytes`]), as eight groups of four hex digits.
    pub fn fingerprint(&self) -> String {
        format_fingerprint(&self.fingerprint_bytes())
    }

    /// The fingerprint's 16 bytes: the first half of BLAKE2s of a fixed label and the key.
    /// The key cannot be recovered from it; a store keeps it to recognise a key the user
    /// compared out of band before it was ever presented.
    pub fn fingerprint_bytes(&self) -> [u8; 16] {
        let mut digest = [0u8; 32];
        let mut hash = blake2s();
        hash.input(b"SocketFalco fingerprint v1");
        hash.input(&self.0);
        hash.result(&mut digest);
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(&digest[..16]);
        fingerprint
    }
}

/// A fingerprint's readable form: eight groups of four lowercase hex digits, space-separated
/// (what [`PublicKey::fingerprint`] shows).
pub fn format_fingerprint(fingerprint: &[u8; 16]) -> String {
    fingerprint
        .chunks(2)
        .map(|pair| format!("{:02x}{:02x}", pair[0], pair[1]))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fingerprint typed by a user: 32 hex digits in any case, with or without the spaces of
/// the readable form (any spaces, anywhere). `None` for anything else.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 16]> {
    let digits: Vec<u8> = text.bytes().filter(|&b| b != b' ').collect();
    if digits.len() != 32 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut fingerprint = [0u8; 16];
    for (byte, pair) in fingerprint.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(fingerprint)
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// A device's long-term static key pair. The secret never leaves the device.
#[derive(Clone)]
pub struct StaticKeypair {
    secret: [u8; 32],
    public: PublicKey,
}

impl StaticKeypair {
    /// The key pair of a 32-byte X25519 secret (any 32 bytes are a valid secret; the caller
    /// draws them from a secure random source once, at first start-up).
    pub fn from_secret(secret: [u8; 32]) -> StaticKeypair {
        let mut dh = curve25519();
        dh.set(&secret);
        let mut public = [0u8; 32];
        public.copy_from_slice(dh.pubkey());
        StaticKeypair {
            secret,
            public: PublicKey(public),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The secret half, for storing it.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticKeypair({:?}, secret hidden)", self.public)
    }
}

/// Which side starts the handshake: the side that dialled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Sends the first handshake message.
    Initiator,
    /// Answers it.
    Responder,
}

/// Why the encrypted channel failed.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub(crate) enum SecureError {
    /// The handshake failed: not a SocketFalco peer, another protocol version, or a
    /// handshake message altered on the way.
    Handshake(String),
    /// A transport message failed authentication: tampered, replayed, reordered or cut.
    Integrity,
    /// A Noise message shorter than its authentication tag.
    TooShort,
    /// The peer proved another key than the one this side expects (an invite names the
    /// listener's key): the handshake stops before this side proves its own.
    UnexpectedKey {
        /// The key this side expects.
        expected: PublicKey,
        /// The key the peer proved.
        presented: PublicKey,
    },
}

impl fmt::Display for SecureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecureError::Handshake(e) => write!(f, "the encrypted handshake failed: {e}"),
            SecureError::Integrity => write!(
                f,
                "encrypted data failed its integrity check (tampered, replayed, reordered or cut)"
            ),
            SecureError::TooShort => write!(f, "an encrypted message is shorter than its tag"),
            SecureError::UnexpectedKey {
                expected,
                presented,
            } => write!(
                f,
                "the peer is not the expected device: it proved the key with fingerprint {}, \
                 the invite names {}",
                presented.fingerprint(),
                expected.fingerprint()
            ),
        }
    }
}

impl std::error::Error for SecureError {}

enum State {
    Handshake(Box<snow::HandshakeState>),
    Transport(Box<snow::TransportState>),
}

/// The Noise layer of one connection. See the [module docs](self).
pub(crate) struct SecureChannel {
    state: State,
    /// An incomplete Noise message (length prefix included); at most 2 + 65,535 bytes.
    partial: Vec<u8>,
    out: SendBuffer,
    scratch: Box<[u8]>,
    remote: Option<PublicKey>,
    /// Only this key is accepted from the peer ([`SecureChannel::expect_remote`]).
    expected_remote: Option<PublicKey>,
    read_failed: Option<SecureError>,
}

impl fmt::Debug for SecureChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureChannel")
            .field("established", &self.is_established())
            .field("remote", &self.remote)
            .field("buffered", &self.partial.len())
            .field("pending_output", &self.out.pending().len())
            .finish()
    }
}

impl SecureChannel {
    /// A channel for one connection, proving `keypair`, with ephemeral keys drawn from
    /// `seed`. An initiator has its first handshake message queued already.
    pub(crate) fn new(role: Role, keypair: &StaticKeypair, seed: [u8; 32]) -> SecureChannel {
        let handshake = build_handshake(role, &keypair.secret, seed);
        let mut channel = SecureChannel {
            state: State::Handshake(Box::new(handshake)),
            partial: Vec::new(),
            out: SendBuffer::default(),
            scratch: vec![0; MAX_NOISE_MESSAGE].into_boxed_slice(),
            remote: None,
            expected_remote: None,
            read_failed: None,
        };
        if role == Role::Initiator {
            // Cannot fail: the first message of XX carries only an ephemeral key.
            let _ = channel.write_handshake();
        }
        channel
    }

    /// Whether the handshake is done and application data flows.
    pub(crate) fn is_established(&self) -> bool {
        matches!(self.state, State::Transport(_))
    }

    /// The peer's static key, once the handshake has proved it.
    pub(crate) fn remote_static(&self) -> Option<PublicKey> {
        self.remote
    }

    /// Accepts only `key` from the peer: any other fails the handshake with
    /// [`SecureError::UnexpectedKey`] as soon as the peer has proved it — for an initiator, in
    /// the second handshake message, before the third one proves (and so reveals) this
    /// side's own static key.
    pub(crate) fn expect_remote(&mut self, key: PublicKey) {
        self.expected_remote = Some(key);
    }

    /// Whether reading has failed (for good).
    pub(crate) fn has_failed(&self) -> bool {
        self.read_failed.is_some()
    }

    /// Bytes buffered of an incomplete Noise message.
    pub(crate) fn buffered_input(&self) -> usize {
        self.partial.len()
    }

    /// Takes ciphertext from the peer and appends the plaintext it carries to `plain`.
    /// Handshake messages are answered (the answer is queued for output). Errors are sticky.
    pub(crate) fn read(&mut self, bytes: &[u8], plain: &mut Vec<u8>) -> Result<(), SecureError> {
        if let Some(e) = &self.read_failed {
            return Err(e.clone());
        }
        let result = self.read_inner(bytes, plain);
        if let Err(e) = &result {
            self.read_failed = Some(e.clone());
            self.partial = Vec::new();
        }
        result
    }

    fn read_inner(&mut self, mut bytes: &[u8], plain: &mut Vec<u8>) -> Result<(), SecureError> {
        while !bytes.is_empty() {
            // Fast path: a whole message in `bytes`, nothing buffered.
            if self.partial.is_empty() && bytes.len() >= LENGTH_BYTES {
                let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
                if bytes.len() >= LENGTH_BYTES + len {
                    let (message, rest) = bytes[LENGTH_BYTES..].split_at(len);
                    bytes = rest;
                    self.handle_message_from(message, plain)?;
                    continue;
                }
            }
            let need = if self.partial.len() < LENGTH_BYTES {
                LENGTH_BYTES - self.partial.len()
            } else {
                let len = usize::from(u16::from_be_bytes([self.partial[0], self.partial[1]]));
                LENGTH_BYTES + len - self.partial.len()
            };
            let take = need.min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() >= LENGTH_BYTES {
                let len = usize::from(u16::from_be_bytes([self.partial[0], self.partial[1]]));
                if self.partial.len() == LENGTH_BYTES + len {
                    let message = std::mem::take(&mut self.partial);
                    self.handle_message_from(&message[LENGTH_BYTES..], plain)?;
                    // Keep the allocation for the next partial message.
                    self.partial = message;
                    self.partial.clear();
                }
            }
        }
        Ok(())
    }

    /// Encrypts `plain` into transport messages queued for output. Before the handshake is
    /// done nothing is accepted (returns false); the caller keeps its bytes until then.
    pub(crate) fn write(&mut self, mut plain: &[u8]) -> bool {
        let State::Transport(transport) = &mut self.state else {
            return false;
        };
        while !plain.is_empty() {
            let take = plain.len().min(MAX_PLAINTEXT_PER_MESSAGE);
            let out = self.out.tail();
            let start = out.len();
            out.resize(start + LENGTH_BYTES + take + TAG_BYTES, 0);
            let body = &mut out[start + LENGTH_BYTES..];
            match transport.write_message(&plain[..take], body) {
                Ok(n) => {
                    let len = u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes();
                    out[start..start + LENGTH_BYTES].copy_from_slice(&len);
                    out.truncate(start + LENGTH_BYTES + n);
                }
                Err(e) => unreachable!("encrypting at most {MAX_PLAINTEXT_PER_MESSAGE} bytes: {e}"),
            }
            plain = &plain[take..];
        }
        true
    }

    /// Ciphertext waiting to be written to the socket.
    pub(crate) fn pending_output(&self) -> &[u8] {
        self.out.pending()
    }

    /// `n` bytes of [`pending_output`](Self::pending_output) were written.
    pub(crate) fn advance_output(&mut self, n: usize) {
        self.out.advance(n);
    }

    fn handle_message_from(
        &mut self,
        message: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<(), SecureError> {
        match &mut self.state {
            State::Handshake(handshake) => {
                handshake
                    .read_message(message, &mut self.scratch)
                    .map_err(|e| SecureError::Handshake(e.to_string()))?;
                if let Some(remote) = handshake.get_remote_static() {
                    let mut key = [0u8; 32];
                    key.copy_from_slice(remote);
                    let presented = PublicKey(key);
                    self.remote = Some(presented);
                    if let Some(expected) = self.expected_remote {
                        if expected != presented {
                            return Err(SecureError::UnexpectedKey {
                                expected,
                                presented,
                            });
                        }
                    }
                }
                if !handshake.is_handshake_finished() && handshake.is_my_turn() {
                    self.write_handshake()?;
                }
                self.finish_handshake_if_done()
            }
            State::Transport(transport) => {
                if message.len() < TAG_BYTES {
                    return Err(SecureError::TooShort);
                }
                let n = transport
                    .read_message(message, &mut self.scratch)
                    .map_err(|_| SecureError::Integrity)?;
                plain.extend_from_slice(&self.scratch[..n]);
                Ok(())
            }
        }
    }

    fn write_handshake(&mut self) -> Result<(), SecureError> {
        let State::Handshake(handshake) = &mut self.state else {
            return Ok(());
        };
        let n = handshake
            .write_message(&[], &mut self.scratch)
            .map_err(|e| SecureError::Handshake(e.to_string()))?;
        let len = u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes();
        self.out.tail().extend_from_slice(&len);
        self.out.tail().extend_from_slice(&self.scratch[..n]);
        self.finish_handshake_if_done()
    }

    fn finish_handshake_if_done(&mut self) -> Result<(), SecureError> {
        let done = matches!(&self.state, State::Handshake(h) if h.is_handshake_finished());
        if !done {
            return Ok(());
        }
        let placeholder = State::Handshake(Box::new(placeholder_handshake()));
        let State::Handshake(handshake) = std::mem::replace(&mut self.state, placeholder) else {
            return Ok(());
        };
        let transport = handshake
            .into_transport_mode()
            .map_err(|e| SecureError::Handshake(e.to_string()))?;
        self.state = State::Transport(Box::new(transport));
        Ok(())
    }
}

/// A Noise handshake with our fixed parameters; building one cannot fail.
fn build_handshake(role: Role, secret: &[u8; 32], seed: [u8; 32]) -> snow::HandshakeState {
    let params: NoiseParams = match NOISE_PARAMS.parse() {
        Ok(params) => params,
        Err(e) => unreachable!("the Noise protocol name is a constant: {e}"),
    };
    let built = snow::Builder::with_resolver(params, Box::new(SeededResolver { seed }))
        .local_private_key(secret)
        .and_then(|b| b.prologue(PROLOGUE))
        .and_then(|b| match role {
            Role::Initiator => b.build_initiator(),
            Role::Responder => b.build_responder(),
        });
    match built {
        Ok(handshake) => handshake,
        Err(e) => unreachable!("a Noise handshake with fixed parameters builds: {e}"),
    }
}

/// A throwaway handshake state used only while moving the real one into transport mode.
fn placeholder_handshake() -> snow::HandshakeState {
    build_handshake(Role::Responder, &[0; 32], [0; 32])
}

fn curve25519() -> Box<dyn Dh> {
    match DefaultResolver.resolve_dh(&DHChoice::Curve25519) {
        Some(dh) => dh,
        None => unreachable!("snow's default resolver is built with curve25519"),
    }
}

fn blake2s() -> Box<dyn Hash> {
    match DefaultResolver.resolve_hash(&HashChoice::Blake2s) {
        Some(hash) => hash,
        None => unreachable!("snow's default resolver is built with BLAKE2s"),
    }
}

/// snow's default primitives, with randomness from the driver's seed instead of the OS.
struct SeededResolver {
    seed: [u8; 32],
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom {
            seed: self.seed,
            counter: 0,
        }))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// HMAC-BLAKE2s of a counter under the seed: a deterministic generator that is as
/// unpredictable as the seed is.
struct SeededRandom {
    seed: [u8; 32],
    counter: u64,
}

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        let mut hash = blake2s();
        for chunk in dest.chunks_mut(32) {
            let mut block = [0u8; 32];
            hash.hmac(&self.seed, &self.counter.to_le_bytes(), &mut block);
            self.counter += 1;
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (SecureChannel, SecureChannel) {
        let a = StaticKeypair::from_secret([1; 32]);
        let b = StaticKeypair::from_secret([2; 32]);
        (
            SecureChannel::new(Role::Initiator, &a, [3; 32]),
            SecureChannel::new(Role::Responder, &b, [4; 32]),
        )
    }

    /// Moves every pending byte both ways until nothing moves; returns the plaintexts.
    fn pump(a: &mut SecureChannel, b: &mut SecureChannel) -> (Vec<u8>, Vec<u8>) {
        let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
        loop {
            let out_a = a.pending_output().to_vec();
            a.advance_output(out_a.len());
            let out_b = b.pending_output().to_vec();
            b.advance_output(out_b.len());
            if out_a.is_empty() && out_b.is_empty() {
                return (to_a, to_b);
            }
            // One byte at a time: the framing must not care.
            for byte in out_a {
                b.read(&[byte], &mut to_b).unwrap();
            }
            a.read(&out_b, &mut to_a).unwrap();
        }
    }

    #[test]
    fn an_initiator_expecting_the_responders_key_completes_the_handshake() {
        let (mut a, mut b) = pair();
        a.expect_remote(StaticKeypair::from_secret([2; 32]).public());
        pump(&mut a, &mut b);
        assert!(a.is_established() && b.is_established());
    }

    #[test]
    fn an_initiator_expecting_another_key_stops_before_proving_its_own() {
        let (mut a, mut b) = pair();
        let invited = StaticKeypair::from_secret([9; 32]).public();
        a.expect_remote(invited);
        // Message 1 (ephemeral only) to the responder, message 2 back.
        let m1 = a.pending_output().to_vec();
        a.advance_output(m1.len());
        b.read(&m1, &mut Vec::new()).unwrap();
        let m2 = b.pending_output().to_vec();
        b.advance_output(m2.len());
        let err = a.read(&m2, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            SecureError::UnexpectedKey {
                expected: invited,
                presented: StaticKeypair::from_secret([2; 32]).public(),
            }
        );
        assert!(err.to_string().contains(&invited.fingerprint()));
        // Message 3, which would carry the initiator's static key, is never written.
        assert!(a.pending_output().is_empty());
        assert!(!a.is_established());
        assert_eq!(b.remote_static(), None);
    }

    #[test]
    fn the_handshake_proves_both_keys_and_data_flows_both_ways() {
        let (mut a, mut b) = pair();
        pump(&mut a, &mut b);
        assert!(a.is_established() && b.is_established());
        assert_eq!(
            a.remote_static(),
            Some(StaticKeypair::from_secret([2; 32]).public())
        );
        assert_eq!(
            b.remote_static(),
            Some(StaticKeypair::from_secret([1; 32]).public())
        );
        let big = vec![7u8; 200_000];
        assert!(a.write(b"hello"));
        assert!(a.write(&big));
        assert!(b.write(b"hi"));
        let (to_a, to_b) = pump(&mut a, &mut b);
        assert_eq!(to_a, b"hi");
        assert_eq!(to_b.len(), 5 + big.len());
    }

    #[test]
    fn a_flipped_bit_fails_the_channel_for_good() {
        let (mut a, mut b) = pair();
        pump(&mut a, &mut b);
        assert!(a.write(b"secret"));
        let mut wire = a.pending_output().to_vec();
        assert!(
            !wire.windows(6).any(|w| w == b"secret"),
            "plaintext on the wire"
        );
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let mut plain = Vec::new();
        assert_eq!(b.read(&wire, &mut plain), Err(SecureError::Integrity));
        assert!(plain.is_empty());
        assert_eq!(
            b.read(b"", &mut plain),
            Err(SecureError::Integrity),
            "sticky"
        );
    }

    /// A fresh established pair's receiving side and two transport messages to it, unread.
    fn two_messages() -> (SecureChannel, Vec<u8>, Vec<u8>) {
        let (mut a, mut b) = pair();
        pump(&mut a, &mut b);
        assert!(a.write(b"one"));
        let first = a.pending_output().to_vec();
        a.advance_output(first.len());
        assert!(a.write(b"two"));
        let second = a.pending_output().to_vec();
        (b, first, second)
    }

    #[test]
    fn a_replayed_or_reordered_message_is_refused() {
        let mut plain = Vec::new();
        let (mut b, first, _) = two_messages();
        b.read(&first, &mut plain).unwrap();
        assert_eq!(
            b.read(&first, &mut plain),
            Err(SecureError::Integrity),
            "replay"
        );
        let (mut b, _, second) = two_messages();
        assert_eq!(
            b.read(&second, &mut plain),
            Err(SecureError::Integrity),
            "reorder"
        );
    }

    #[test]
    fn garbage_fails_the_handshake() {
        let (_, mut b) = pair();
        let mut plain = Vec::new();
        assert!(matches!(
            b.read(b"\x00\x05hello", &mut plain),
            Err(SecureError::Handshake(_))
        ));
    }

    #[test]
    fn the_same_seeds_give_the_same_bytes() {
        let run = || {
            let (mut a, mut b) = pair();
            let first = a.pending_output().to_vec();
            pump(&mut a, &mut b);
            first
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn fingerprints_are_short_and_stable() {
        let key = StaticKeypair::from_secret([9; 32]).public();
        let fp = key.fingerprint();
        assert_eq!(fp.len(), 8 * 4 + 7);
        assert_eq!(fp, key.fingerprint());
        assert_ne!(
            fp,
            StaticKeypair::from_secret([8; 32]).public().fingerprint()
        );
    }

    #[test]
    fn a_typed_fingerprint_parses_with_or_without_spaces_in_any_case() {
        let key = StaticKeypair::from_secret([9; 32]).public();
        let fp = key.fingerprint();
        let bytes = key.fingerprint_bytes();
        assert_eq!(format_fingerprint(&bytes), fp);
        assert_eq!(parse_fingerprint(&fp), Some(bytes));
        assert_eq!(parse_fingerprint(&fp.replace(' ', "")), Some(bytes));
        assert_eq!(parse_fingerprint(&fp.to_uppercase()), Some(bytes));
        for bad in [
            "",
            "abcd",
            &fp[..fp.len() - 1],
            &format!("{fp}0"),
            &fp.replace('a', "g"),
        ] {
            if bad != fp {
                assert_eq!(parse_fingerprint(bad), None, "{bad:?}");
            }
        }
        assert_eq!(parse_fingerprint(&"é".repeat(16)), None);
    }
}
