//! The frames two peers exchange, and their CBOR bodies.
//!
//! A frame's payload is one kind byte followed by one CBOR array holding that kind's fields in
//! a fixed order (see `docs/PROTOCOL.md`). This module turns a payload into a [`Frame`] and
//! back, and checks every field against [`crate::limits`]; the length prefix and the byte
//! stream belong to [`crate::codec`].

use crate::ids::DeviceId;
use crate::limits::{MAX_CLOSE_DETAIL_BYTES, MAX_COUNTER, MAX_RECOVER_BATCH, PROTOCOL_VERSION};
use crate::message::{check_name, check_text, Message, NameError, TextError};
use serde_bytes::ByteArray;
use std::fmt;

/// Kind byte of a [`Frame::Hello`].
pub(crate) const KIND_HELLO: u8 = 1;
/// Kind byte of a [`Frame::Sync`].
pub(crate) const KIND_SYNC: u8 = 2;
/// Kind byte of a [`Frame::Message`].
pub(crate) const KIND_MESSAGE: u8 = 3;
/// Kind byte of a [`Frame::Ack`].
pub(crate) const KIND_ACK: u8 = 4;
/// Kind byte of a [`Frame::Ping`].
pub(crate) const KIND_PING: u8 = 5;
/// Kind byte of a [`Frame::Close`].
pub(crate) const KIND_CLOSE: u8 = 6;
/// Kind byte of a [`Frame::Recover`].
pub(crate) const KIND_RECOVER: u8 = 7;
/// Kind byte of a [`Frame::Returned`].
pub(crate) const KIND_RETURNED: u8 = 8;

/// One protocol frame.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Frame {
    /// First frame on a connection, from both sides: who we are.
    Hello(Hello),
    /// Second frame, once the peer is accepted: how far each side has got in this chat.
    Sync(SyncPoint),
    /// A message written by the sender.
    Message(Message),
    /// Cumulative ack: the sender holds, durably, every message of ours up to this sequence
    /// number.
    Ack {
        /// Highest sequence number held, all lower ones included.
        up_to: u64,
    },
    /// Keepalive; carries nothing and needs no answer.
    Ping,
    /// Last frame of a connection, with its reason.
    Close(Close),
    /// The sender's store went back in time (restored from an older copy): it asks for its
    /// own messages `from..=to`, which the receiver holds, to be sent back.
    Recover {
        /// First sequence number wanted (at least 1).
        from: u64,
        /// Last sequence number wanted; at most [`MAX_RECOVER_BATCH`] numbers in all.
        to: u64,
    },
    /// One of the *receiver's* own messages, sent back in answer to a [`Frame::Recover`].
    Returned(Message),
}

/// What a device announces about itself when a connection opens.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Hello {
    /// Protocol version; see [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The sender's device id.
    pub device: DeviceId,
    /// The sender's display name (2–15 characters).
    pub name: String,
    /// The sender wants a temporary session: nothing of it is stored on either side.
    pub temporary: bool,
}

/// How far a device has got in the chat with its peer, sent once the peer is accepted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SyncPoint {
    /// The sender durably holds every message of the receiver's up to this sequence number.
    pub received_up_to: u64,
    /// The sender's own last sequence number in this chat, counting the messages it will
    /// number at this sync (for progress display, and to know when a re-sync is complete).
    pub last_seq: u64,
}

/// Why a connection ends. Carried by [`Frame::Close`] and reported by both sides.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Close {
    /// The reason, for programs.
    pub code: CloseCode,
    /// The reason, for people; at most [`MAX_CLOSE_DETAIL_BYTES`] bytes.
    pub detail: String,
}

impl Close {
    /// A close with the given code and detail; a detail over the limit is cut at a character
    /// boundary.
    pub fn new(code: CloseCode, detail: impl Into<String>) -> Close {
        let mut detail = detail.into();
        if detail.len() > MAX_CLOSE_DETAIL_BYTES {
            let mut end = MAX_CLOSE_DETAIL_BYTES;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        Close { code, detail }
    }
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.detail)
        }
    }
}

/// The reason a connection closed, as a number on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// The user ended the session.
    Normal,
    /// The listener serves as many peers as it allows (or, before version 2, was in a chat
    /// with another peer).
    Busy,
    /// The peers speak different protocol versions.
    VersionMismatch,
    /// The peer presented this device's own identity (see `docs/PROTOCOL.md`, self-chat).
    SelfConnection,
    /// The peer sent bytes that are not a valid frame.
    MalformedFrame,
    /// The peer sent a valid frame that breaks the protocol's rules.
    ProtocolViolation,
    /// Nothing arrived from the peer for too long, or the handshake did not finish in time.
    Timeout,
    /// This device could not store what it received; the peer will re-send it next time.
    StorageFailure,
    /// The peer was refused for a reason given in the detail.
    Refused,
    /// The connection ended without a close frame.
    ConnectionLost,
    /// The peer's key is not the one pinned for its device id (trust on first use).
    IdentityMismatch,
    /// The encrypted stream failed: handshake or integrity check.
    IntegrityFailure,
    /// The same device connected again, and the newer connection took over (most likely the
    /// same device after a network change).
    Replaced,
    /// A code this build does not know (from a newer peer).
    Other(u16),
}

impl CloseCode {
    /// The code's number on the wire.
    pub fn to_wire(self) -> u16 {
        match self {
            CloseCode::Normal => 0,
            CloseCode::Busy => 1,
            CloseCode::VersionMismatch => 2,
            CloseCode::SelfConnection => 3,
            CloseCode::MalformedFrame => 4,
            CloseCode::ProtocolViolation => 5,
            CloseCode::Timeout => 6,
            CloseCode::StorageFailure => 7,
            CloseCode::Refused => 8,
            CloseCode::ConnectionLost => 9,
            CloseCode::IdentityMismatch => 10,
            CloseCode::IntegrityFailure => 11,
            CloseCode::Replaced => 12,
            CloseCode::Other(n) => n,
        }
    }

    /// The code for a number from the wire; unknown numbers are kept as [`CloseCode::Other`].
    pub fn from_wire(n: u16) -> CloseCode {
        match n {
            0 => CloseCode::Normal,
            1 => CloseCode::Busy,
            2 => CloseCode::VersionMismatch,
            3 => CloseCode::SelfConnection,
            4 => CloseCode::MalformedFrame,
            5 => CloseCode::ProtocolViolation,
            6 => CloseCode::Timeout,
            7 => CloseCode::StorageFailure,
            8 => CloseCode::Refused,
            9 => CloseCode::ConnectionLost,
            10 => CloseCode::IdentityMismatch,
            11 => CloseCode::IntegrityFailure,
            12 => CloseCode::Replaced,
            n => CloseCode::Other(n),
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCode::Normal => write!(f, "session ended"),
            CloseCode::Busy => write!(f, "the listener is busy"),
            CloseCode::VersionMismatch => write!(f, "protocol version mismatch"),
            CloseCode::SelfConnection => write!(f, "connected to this device itself"),
            CloseCode::MalformedFrame => write!(f, "malformed frame"),
            CloseCode::ProtocolViolation => write!(f, "protocol violation"),
            CloseCode::Timeout => write!(f, "timed out"),
            CloseCode::StorageFailure => write!(f, "storage failure"),
            CloseCode::Refused => write!(f, "refused"),
            CloseCode::ConnectionLost => write!(f, "connection lost"),
            CloseCode::IdentityMismatch => write!(f, "identity key mismatch"),
            CloseCode::IntegrityFailure => write!(f, "encrypted stream failed"),
            CloseCode::Replaced => write!(f, "replaced by a newer connection"),
            CloseCode::Other(n) => write!(f, "closed (code {n})"),
        }
    }
}

/// A payload that is not a valid frame. Every malformed input maps to one of these; none
/// panics and none allocates beyond the frame size limit.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than [`crate::limits::MAX_FRAME_BYTES`].
    TooLarge {
        /// The announced payload length.
        len: u64,
    },
    /// The length prefix announces an empty payload (no kind byte).
    Empty,
    /// The kind byte names no frame this build knows.
    UnknownKind(u8),
    /// The CBOR body ends before it is complete.
    Truncated,
    /// The body is not well-formed CBOR.
    InvalidCbor {
        /// Byte offset of the error within the body.
        offset: usize,
    },
    /// Well-formed CBOR of the wrong shape: wrong types, wrong number of fields.
    WrongShape(String),
    /// Bytes left over after the body's CBOR item.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A hello announcing a protocol version this build does not speak, in a shape it cannot
    /// read.
    UnsupportedVersion(u64),
    /// A message text outside the limits.
    Text(TextError),
    /// A display name outside the limits.
    Name(NameError),
    /// A close detail over [`MAX_CLOSE_DETAIL_BYTES`].
    CloseDetailTooLong,
    /// A sequence number or Lamport counter outside the range its field allows (at most
    /// [`MAX_COUNTER`]; from 1 where 0 means nothing; a `Recover`'s `to` within one batch
    /// from its `from`).
    CounterOutOfRange {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The smallest value allowed.
        min: u64,
        /// The largest value allowed.
        max: u64,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len } => write!(
                f,
                "frame of {len} bytes exceeds the limit of {} bytes",
                crate::limits::MAX_FRAME_BYTES
            ),
            FrameError::Empty => write!(f, "empty frame"),
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::Truncated => write!(f, "frame body ends early"),
            FrameError::InvalidCbor { offset } => write!(f, "invalid CBOR at byte {offset}"),
            FrameError::WrongShape(d) => write!(f, "frame body has the wrong shape: {d}"),
            FrameError::TrailingBytes { extra } => {
                write!(f, "{extra} unexpected bytes after the frame body")
            }
            FrameError::UnsupportedVersion(v) => write!(
                f,
                "peer speaks protocol version {v}, this device speaks {PROTOCOL_VERSION}"
            ),
            FrameError::Text(e) => write!(f, "invalid message: {e}"),
            FrameError::Name(e) => write!(f, "invalid name: {e}"),
            FrameError::CloseDetailTooLong => write!(f, "close detail too long"),
            FrameError::CounterOutOfRange {
                field,
                value,
                min,
                max,
            } => write!(f, "{field} {value} is outside {min}..={max}"),
        }
    }
}

impl std::error::Error for FrameError {}

type HelloBody = (u16, ByteArray<16>, String, bool);
type MessageBody = (u64, u64, i64, String);

impl Frame {
    /// The kind byte this frame is sent with.
    pub(crate) fn kind(&self) -> u8 {
        match self {
            Frame::Hello(_) => KIND_HELLO,
            Frame::Sync(_) => KIND_SYNC,
            Frame::Message(_) => KIND_MESSAGE,
            Frame::Ack { .. } => KIND_ACK,
            Frame::Ping => KIND_PING,
            Frame::Close(_) => KIND_CLOSE,
            Frame::Recover { .. } => KIND_RECOVER,
            Frame::Returned(_) => KIND_RETURNED,
        }
    }

    /// Appends this frame's payload (kind byte and CBOR body, no length prefix) to `out`.
    pub(crate) fn write_payload(&self, out: &mut Vec<u8>) {
        out.push(self.kind());
        match self {
            Frame::Hello(h) => write_cbor(
                &(
                    h.version,
                    ByteArray::new(h.device.0),
                    h.name.as_str(),
                    h.temporary,
                ),
                out,
            ),
            Frame::Sync(s) => write_cbor(&(s.received_up_to, s.last_seq), out),
            Frame::Message(m) => write_message_body(m, out),
            Frame::Ack { up_to } => write_cbor(&(*up_to,), out),
            Frame::Ping => write_cbor(&[0u8; 0], out),
            Frame::Close(c) => write_cbor(&(c.code.to_wire(), c.detail.as_str()), out),
            Frame::Recover { from, to } => write_cbor(&(*from, *to), out),
            Frame::Returned(m) => write_message_body(m, out),
        }
    }

    /// Parses one payload (kind byte and CBOR body) and checks its fields against the limits.
    pub(crate) fn parse_payload(payload: &[u8]) -> Result<Frame, FrameError> {
        let (&kind, body) = payload.split_first().ok_or(FrameError::Empty)?;
        let frame = match kind {
            KIND_HELLO => {
                let (version, device, name, temporary): HelloBody =
                    read_cbor(body, 4).map_err(|e| match peek_version(body) {
                        Some(v) if v != u64::from(PROTOCOL_VERSION) => {
                            FrameError::UnsupportedVersion(v)
                        }
                        _ => e,
                    })?;
                // A newer version's hello that happens to have our shape is still refused,
                // by the session, with a version-mismatch close.
                if version == PROTOCOL_VERSION {
                    check_name(&name).map_err(FrameError::Name)?;
                }
                Frame::Hello(Hello {
                    version,
                    device: DeviceId(device.into_array()),
                    name,
                    temporary,
                })
            }
            KIND_SYNC => {
                let (received_up_to, last_seq) = read_cbor(body, 2)?;
                check_counter("received_up_to", received_up_to, 0)?;
                check_counter("last_seq", last_seq, 0)?;
                Frame::Sync(SyncPoint {
                    received_up_to,
                    last_seq,
                })
            }
            KIND_MESSAGE => Frame::Message(parse_message(body)?),
            KIND_RETURNED => Frame::Returned(parse_message(body)?),
            KIND_RECOVER => {
                let (from, to): (u64, u64) = read_cbor(body, 2)?;
                check_counter("from", from, 1)?;
                // One batch at most, from `from`, within the counters' range.
                let max = (from + MAX_RECOVER_BATCH - 1).min(MAX_COUNTER);
                if !(from..=max).contains(&to) {
                    return Err(FrameError::CounterOutOfRange {
                        field: "to",
                        value: to,
                        min: from,
                        max,
                    });
                }
                Frame::Recover { from, to }
            }
            KIND_ACK => {
                let (up_to,): (u64,) = match fast::ack_body(body) {
                    Some(up_to) => (up_to,),
                    None => read_cbor(body, 1)?,
                };
                check_counter("up_to", up_to, 0)?;
                Frame::Ack { up_to }
            }
            KIND_PING => {
                let _: [u8; 0] = read_cbor(body, 0)?;
                Frame::Ping
            }
            KIND_CLOSE => {
                let (code, detail): (u16, String) = read_cbor(body, 2)?;
                if detail.len() > MAX_CLOSE_DETAIL_BYTES {
                    return Err(FrameError::CloseDetailTooLong);
                }
                Frame::Close(Close {
                    code: CloseCode::from_wire(code),
                    detail,
                })
            }
            other => return Err(FrameError::UnknownKind(other)),
        };
        Ok(frame)
    }
}

/// A message body (of a [`Frame::Message`] or a [`Frame::Returned`]), checked.
fn parse_message(body: &[u8]) -> Result<Message, FrameError> {
    let (seq, lamport, sent_at_ms, text): MessageBody = match fast::message_body(body) {
        Some(fields) => fields,
        None => read_cbor(body, 4)?,
    };
    check_counter("seq", seq, 1)?;
    check_counter("lamport", lamport, 1)?;
    check_text(&text).map_err(FrameError::Text)?;
    Ok(Message {
        seq,
        lamport,
        sent_at_ms,
        text,
    })
}

fn check_counter(field: &'static str, value: u64, min: u64) -> Result<(), FrameError> {
    if (min..=MAX_COUNTER).contains(&value) {
        Ok(())
    } else {
        Err(FrameError::CounterOutOfRange {
            field,
            value,
            min,
            max: MAX_COUNTER,
        })
    }
}

/// Appends a message frame's CBOR body to `out` without copying the text.
pub(crate) fn write_message_body(m: &Message, out: &mut Vec<u8>) {
    write_cbor(&(m.seq, m.lamport, m.sent_at_ms, m.text.as_str()), out);
}

fn write_cbor<T: serde::Serialize>(value: &T, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail, and our bodies are plain tuples that always serialize.
    if let Err(e) = ciborium::into_writer(value, out) {
        unreachable!("serializing a frame body into memory failed: {e}");
    }
}

/// Decodes a body that must be one definite-length CBOR array of exactly `fields` items, with
/// nothing after it.
fn read_cbor<T: serde::de::DeserializeOwned>(body: &[u8], fields: usize) -> Result<T, FrameError> {
    use ciborium_ll::{Decoder, Header};
    match Decoder::from(body).pull() {
        Ok(Header::Array(Some(n))) if n == fields => {}
        Ok(Header::Array(n)) => {
            return Err(FrameError::WrongShape(format!(
                "expected an array of {fields} fields, found {}",
                n.map_or("an indefinite-length array".to_string(), |n| format!("{n}"))
            )))
        }
        Ok(other) => {
            return Err(FrameError::WrongShape(format!(
                "expected an array of {fields} fields, found {other:?}"
            )))
        }
        Err(ciborium_ll::Error::Io(_)) => return Err(FrameError::Truncated),
        Err(ciborium_ll::Error::Syntax(offset)) => return Err(FrameError::InvalidCbor { offset }),
    }
    let mut rest = body;
    let value = ciborium::from_reader(&mut rest).map_err(|e| match e {
        ciborium::de::Error::Io(_) => FrameError::Truncated,
        ciborium::de::Error::Syntax(offset) => FrameError::InvalidCbor { offset },
        ciborium::de::Error::Semantic(_, detail) => FrameError::WrongShape(detail),
        ciborium::de::Error::RecursionLimitExceeded => {
            FrameError::WrongShape("nested too deeply".into())
        }
    })?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes { extra: rest.len() });
    }
    Ok(value)
}

/// Reads the first field of a hello body (the version) without decoding the rest, so that a
/// hello from a future version with another shape still yields a clear version error.
fn peek_version(body: &[u8]) -> Option<u64> {
    use ciborium_ll::{Decoder, Header};
    let mut decoder = Decoder::from(body);
    match decoder.pull().ok()? {
        Header::Array(_) => {}
        _ => return None,
    }
    match decoder.pull().ok()? {
        Header::Positive(v) => Some(v),
        _ => None,
    }
}

/// A fast path for the two frames that carry the traffic, messages and acks, in the shape
/// this build writes them (any definite-length encoding of the fields, no tags). It returns
/// `None` for anything else — another valid encoding or an invalid body alike — which then
/// goes through [`read_cbor`] and gets exactly its verdict; so what is accepted, and every
/// error, is unchanged. The general serde path costs most of a message's decode time
/// (ciborium's header parsing and visitor calls; see docs/PERFORMANCE.md).
mod fast {
    /// `[seq, lamport, sent_at_ms, text]`.
    pub(super) fn message_body(body: &[u8]) -> Option<(u64, u64, i64, String)> {
        let (&first, mut rest) = body.split_first()?;
        if first != 0x84 {
            return None;
        }
        let seq = argument(&mut rest, 0)?;
        let lamport = argument(&mut rest, 0)?;
        let sent_at_ms = match rest.first()? >> 5 {
            0 => i64::try_from(argument(&mut rest, 0)?).ok()?,
            1 => -1 - i64::try_from(argument(&mut rest, 1)?).ok()?,
            _ => return None,
        };
        let len = argument(&mut rest, 3)?;
        if u64::try_from(rest.len()).ok()? != len {
            return None;
        }
        Some((
            seq,
            lamport,
            sent_at_ms,
            std::str::from_utf8(rest).ok()?.to_owned(),
        ))
    }

    /// `[up_to]`.
    pub(super) fn ack_body(body: &[u8]) -> Option<u64> {
        let (&first, mut rest) = body.split_first()?;
        if first != 0x81 {
            return None;
        }
        let up_to = argument(&mut rest, 0)?;
        rest.is_empty().then_some(up_to)
    }

    /// The argument of a data item of major type `major` at the front of `rest` (definite
    /// lengths only), consuming its header.
    fn argument(rest: &mut &[u8], major: u8) -> Option<u64> {
        let (&initial, tail) = rest.split_first()?;
        if initial >> 5 != major {
            return None;
        }
        let (value, used) = match initial & 0x1f {
            n @ 0..=23 => (u64::from(n), 0),
            24 => (u64::from(*tail.first()?), 1),
            25 => (
                u64::from(u16::from_be_bytes(tail.get(..2)?.try_into().ok()?)),
                2,
            ),
            26 => (
                u64::from(u32::from_be_bytes(tail.get(..4)?.try_into().ok()?)),
                4,
            ),
            27 => (u64::from_be_bytes(tail.get(..8)?.try_into().ok()?), 8),
            _ => return None,
        };
        *rest = &tail[used..];
        Some(value)
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    /// Random bodies, valid and mutated (bit flips, bytes replaced, cut, extended): whenever
    /// the fast path answers, the general decoder gives the same fields.
    #[test]
    fn the_fast_path_agrees_with_the_general_decoder() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut answered = 0u32;
        for i in 0..100_000u32 {
            let v = |r: u64| match r % 5 {
                0 => r % 24,
                1 => r % 256,
                2 => r % 65_536,
                3 => r % (1 << 40),
                _ => r,
            };
            let text: String = "héllo wörld ✓ 🎉"
                .chars()
                .take((rnd() % 17) as usize)
                .collect();
            let sent = if rnd() % 2 == 0 {
                v(rnd()) as i64
            } else {
                -(v(rnd()) as i64)
            };
            let mut body = Vec::new();
            write_cbor(&(v(rnd()), v(rnd()), sent, text.as_str()), &mut body);
            for _ in 0..rnd() % 3 {
                if body.is_empty() {
                    break;
                }
                let at = (rnd() as usize) % body.len();
                match rnd() % 4 {
                    0 => body[at] ^= 1 << (rnd() % 8),
                    1 => body[at] = rnd() as u8,
                    2 => body.truncate(at),
                    _ => body.push(rnd() as u8),
                }
            }
            if let Some(fast) = fast::message_body(&body) {
                let general: Option<MessageBody> = read_cbor(&body, 4).ok();
                assert_eq!(Some(fast), general, "body {body:02x?} (case {i})");
                answered += 1;
            }
            let mut ack = Vec::new();
            write_cbor(&(v(rnd()),), &mut ack);
            if rnd() % 2 == 0 {
                let at = (rnd() as usize) % ack.len();
                ack[at] = rnd() as u8;
            }
            if let Some(fast) = fast::ack_body(&ack) {
                let general: Option<(u64,)> = read_cbor(&ack, 1).ok();
                assert_eq!(Some((fast,)), general, "ack {ack:02x?}");
            }
        }
        assert!(
            answered > 25_000,
            "the fast path answered only {answered} times"
        );
    }
}
