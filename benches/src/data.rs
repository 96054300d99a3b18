//! The typical payloads: a short chat line, a 4 KiB message, an ack, and long streams of
//! message frames exactly as a session writes them.

use socketfalco_core::{encode_frame, encode_message_frame, Frame, Message};

/// A short chat line (39 bytes), the common case.
pub const SHORT_LINE: &str = "on my way, see you at the station at 7?";

/// A wall-clock time in the 2020s, in Unix milliseconds (a full 8-byte CBOR integer, like
/// a real message's timestamp).
pub const SENT_AT_MS: i64 = 1_700_000_000_000;

/// A 4 KiB text: printable ASCII (a pasted log or a long message).
pub fn text_4k() -> String {
    let pattern = "the quick brown fox jumps over the lazy dog 0123456789 ";
    pattern.chars().cycle().take(4096).collect()
}

/// Message `seq` with `text`, numbered as a chat's `seq`-th message.
pub fn message(seq: u64, text: &str) -> Message {
    Message {
        seq,
        lamport: seq,
        sent_at_ms: SENT_AT_MS + seq as i64,
        text: text.to_owned(),
    }
}

/// The frame bytes (length prefix included) of message `seq` with `text`.
pub fn message_frame(seq: u64, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message_frame(&message(seq, text), &mut out);
    out
}

/// The frame bytes of a cumulative ack up to `up_to`.
pub fn ack_frame(up_to: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&Frame::Ack { up_to }, &mut out);
    out
}

/// The bytes a session writes for messages `first..first + count` with `text`, back to back.
pub fn message_stream(first: u64, count: u64, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut m = message(first, text);
    for seq in first..first + count {
        m.seq = seq;
        m.lamport = seq;
        encode_message_frame(&m, &mut out);
    }
    out
}
