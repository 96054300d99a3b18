//! Every limit of the protocol, as named constants next to one another.
//!
//! A limit is part of the wire contract: both peers enforce the same numbers, and each one is
//! checked where input enters (the frame decoder, the hello, a composed message) so that a
//! hostile peer can never make us buffer, allocate or display more than these.

/// The protocol version this build speaks. A peer announcing another version is refused with
/// [`CloseCode::VersionMismatch`](crate::CloseCode::VersionMismatch).
/// Version 2 added own-history recovery after a restore (`Recover`, `Returned`) and the rule
/// that messages written offline are numbered at the next sync.
pub const PROTOCOL_VERSION: u16 = 2;

/// Size of the big-endian length prefix in front of every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Largest frame payload (kind byte + CBOR body) a peer may send, in bytes. A length prefix
/// above this is rejected before a single byte of the payload is buffered.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

/// Largest message text, in bytes of UTF-8. Longer text is refused, never truncated.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Fewest characters (Unicode scalar values) in a display name, as the original.
pub const MIN_NAME_CHARS: usize = 2;

/// Most characters (Unicode scalar values) in a display name, as the original.
pub const MAX_NAME_CHARS: usize = 15;

/// Longest detail text in a close frame, in bytes. Longer details are cut at a char boundary
/// when sent and refused when received.
pub const MAX_CLOSE_DETAIL_BYTES: usize = 256;

/// Most messages a sender may have in flight (sent, not yet acked) on one connection. The
/// receiver enforces it too: a peer that sends more without waiting for acks is cut off.
pub const MAX_IN_FLIGHT_MESSAGES: u64 = 4096;

/// Most text bytes a sender may configure in flight on one connection
/// ([`SessionConfig::window_bytes`](crate::SessionConfig::window_bytes)). The receiver holds
/// a peer to it too ([`MAX_UNACKED_BYTES`]).
pub const MAX_IN_FLIGHT_BYTES: usize = 16 * 1024 * 1024;

/// Most text bytes a receiver takes from a peer without having acked them: a sender keeps
/// under [`MAX_IN_FLIGHT_BYTES`] before its last message, which is at most
/// [`MAX_TEXT_BYTES`]. A peer that sends more is cut off
/// (`ProtocolViolation`), so a connection holds at most this much of a peer's text in memory.
pub const MAX_UNACKED_BYTES: usize = MAX_IN_FLIGHT_BYTES + MAX_TEXT_BYTES;

/// The default bytes-in-flight window of [`SessionConfig::new`](crate::SessionConfig::new): 2 MiB, 512 messages of 4 KiB.
pub(crate) const DEFAULT_WINDOW_BYTES: usize = 2 * 1024 * 1024;

/// Largest sequence number or Lamport counter a message may carry: 2^53, so that every
/// counter fits SQLite's signed 64-bit integers and JSON numbers exactly, and a peer cannot
/// push a chat's counters to the end of their range (they grow by one per message).
pub const MAX_COUNTER: u64 = 1 << 53;

/// Most sequence numbers one [`Frame::Recover`](crate::Frame::Recover) asks for. A device
/// recovering its own history asks batch by batch, one batch at a time, so neither side
/// buffers more than this many returned messages.
pub const MAX_RECOVER_BATCH: u64 = 256;

// The Noise layer's own limits, which bound what a link buffers beside the frame limit.
pub use crate::secure::{MAX_NOISE_MESSAGE, TAG_BYTES};
