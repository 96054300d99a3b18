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
//! Every handshake type has the same shape: `pending_output` / `advance_output` for the bytes
//! to write, `handle_input` for the bytes read (in any split), `is_done`, and `take_leftover`
//! for bytes read past the handshake, which belong to the tunnelled stream. Errors are sticky
//! and their messages describe the remote side's answer in one line.

pub mod invite;
pub mod onion;
mod outbox;
pub mod proxy;
pub mod socks5;
pub mod transit;
