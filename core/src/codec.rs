//! The byte stream ↔ frame layer: length prefixes, and a streaming decoder.
//!
//! On the wire every frame is a 4-byte big-endian payload length followed by the payload
//! ([`crate::frame`]). [`FrameDecoder`] accepts bytes in pieces of any size, one byte at a
//! time included, and yields whole frames. It is check-then-parse: it reads the length prefix
//! first and refuses a length over [`MAX_FRAME_BYTES`] before buffering any of the payload,
//! so its memory never exceeds one frame. This layer knows nothing of sessions: an encryption
//! layer can sit between the socket and this decoder without the session noticing.

use crate::frame::{Frame, FrameError};
use crate::limits::{LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES};
use crate::message::Message;

/// Appends `frame`, length prefix included, to `out`.
pub fn encode_frame(frame: &Frame, out: &mut Vec<u8>) {
    with_length_prefix(out, |out| frame.write_payload(out));
}

/// Appends a message frame to `out` without building a [`Frame`] (no copy of the text).
pub fn encode_message_frame(message: &Message, out: &mut Vec<u8>) {
    with_length_prefix(out, |out| {
        out.push(crate::frame::KIND_MESSAGE);
        crate::frame::write_message_body(message, out);
    });
}

fn with_length_prefix(out: &mut Vec<u8>, write_payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX_BYTES]);
    write_payload(out);
    let len = out.len() - start - LENGTH_PREFIX_BYTES;
    debug_assert!(len <= MAX_FRAME_BYTES, "encoded a frame over the limit");
    let prefix = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    out[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&prefix);
}

/// Turns a byte stream, fed in arbitrary pieces, into frames.
///
/// Errors are sticky: after the first error every call returns it again and consumes
/// nothing, since the stream can no longer be trusted to be aligned on frame boundaries.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Bytes of the frame being assembled: the length prefix while it is incomplete, then the
    /// payload. Never more than [`MAX_FRAME_BYTES`].
    partial: Vec<u8>,
    /// The announced payload length, once the prefix is complete.
    payload_len: Option<usize>,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Takes bytes from the front of `input` until one frame is complete, and returns it.
    /// Returns `Ok(None)` once `input` is used up without completing a frame (read more and
    /// call again). Call in a loop until it returns `Ok(None)` or an error.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.decode_inner(input);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.partial = Vec::new();
        }
        result
    }

    /// How many bytes of an incomplete frame are buffered.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    fn decode_inner(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        let len = match self.payload_len {
            Some(len) => len,
            None => {
                let Some(prefix) = self.take_prefix(input) else {
                    return Ok(None);
                };
                let len = u64::from(u32::from_be_bytes(prefix));
                if len == 0 {
                    return Err(FrameError::Empty);
                }
                if len > MAX_FRAME_BYTES as u64 {
                    return Err(FrameError::TooLarge { len });
                }
                let len = len as usize;
                self.payload_len = Some(len);
                len
            }
        };
        // Fast path: the whole payload is in `input`; parse it in place, no copy.
        if self.partial.is_empty() && input.len() >= len {
            let (payload, rest) = input.split_at(len);
            *input = rest;
            self.payload_len = None;
            return Frame::parse_payload(payload).map(Some);
        }
        let take = (len - self.partial.len()).min(input.len());
        self.partial.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.partial.len() < len {
            return Ok(None);
        }
        self.payload_len = None;
        let frame = Frame::parse_payload(&self.partial);
        self.partial.clear();
        frame.map(Some)
    }

    fn take_prefix(&mut self, input: &mut &[u8]) -> Option<[u8; LENGTH_PREFIX_BYTES]> {
        if self.partial.is_empty() && input.len() >= LENGTH_PREFIX_BYTES {
            let (prefix, rest) = input.split_at(LENGTH_PREFIX_BYTES);
            *input = rest;
            return prefix.try_into().ok();
        }
        let take = (LENGTH_PREFIX_BYTES - self.partial.len()).min(input.len());
        self.partial.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.partial.len() < LENGTH_PREFIX_BYTES {
            return None;
        }
        let prefix = self.partial[..].try_into().ok();
        self.partial.clear();
        prefix
    }
}
