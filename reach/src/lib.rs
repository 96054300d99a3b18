//! Reaching a peer through other networks, as pure state machines and parsers: no sockets,
//! no files, no clocks and no randomness. A driver moves the bytes; this crate says which
//! bytes to send and what the bytes that came back mean.
//!
//! # Layout
//! - [`socks5`]: the client side of a SOCKS5 CONNECT (RFC 1928), with username and
//!   password authentication (RFC 1929), as a byte-in, byte-out state machine.
//! - [`proxy`]: the `--proxy` URL (`socks5h://[USER:PASS@]HOST:PORT`) and which SOCKS target
//!   a host name becomes.
//! - [`onion`]: Tor v3 onion names: recognising them, checking their checksum, and making one
//!   from a public key.
//! - [`transit`]: the magic-wormhole transit relay handshake, and the token and sides derived
//!   from the listener's static key that pair a caller with the right listener.
//! - [`invite`]: the one-line invite (`sf1…`) that carries the listener's key and the routes
//!   to it, so that the first contact is already authenticated.
//!
//! Every handshake ([`socks5::Socks5Client`], [`transit::TransitClient`]) is a [`Handshake`]:
//! the bytes to write, the bytes read (in any split), whether it is through, and the bytes
//! read past it, which belong to the tunnelled stream. Errors are sticky and their messages
//! describe the remote side's answer in one line.

pub mod invite;
pub mod onion;
mod outbox;
pub mod proxy;
pub mod socks5;
pub mod transit;

/// A negotiation run on a fresh stream before the tunnelled one begins, as a byte-in,
/// byte-out state machine: the driver writes [`pending_output`](Handshake::pending_output)
/// and reports it with [`advance_output`](Handshake::advance_output), feeds what it reads to
/// [`handle_input`](Handshake::handle_input) until [`is_done`](Handshake::is_done), then takes
/// the bytes that came after it with [`take_leftover`](Handshake::take_leftover).
pub trait Handshake {
    /// Why the negotiation failed: one line about the other side's answer.
    type Error: std::error::Error + Clone + PartialEq;

    /// The bytes to write now.
    fn pending_output(&self) -> &[u8];

    /// `n` bytes of [`Handshake::pending_output`] were written (more than pending is taken
    /// as all of them).
    fn advance_output(&mut self, n: usize);

    /// Feeds bytes read from the other side (any split, byte by byte included). Once it has
    /// failed, every later call returns the same error; once it is through, bytes are kept
    /// for [`Handshake::take_leftover`].
    fn handle_input(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Whether the negotiation is through.
    fn is_done(&self) -> bool;

    /// The bytes that arrived after the negotiation: the tunnelled stream's first.
    fn take_leftover(&mut self) -> Vec<u8>;
}
