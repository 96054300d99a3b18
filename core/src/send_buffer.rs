//! Bytes queued for the socket, taken from the front as the driver writes them.
//!
//! Both the session (frames) and the secure channel (Noise messages) queue output here: the
//! driver reads [`SendBuffer::pending`] and reports how much it wrote with
//! [`SendBuffer::advance`]. Written bytes are dropped in bulk, not one write at a time, so a
//! long run of small writes costs no repeated moves.

/// Written bytes are moved out only once at least this many have gone (and half the buffer).
const COMPACT_AFTER: usize = 64 * 1024;

/// A queue of bytes to send. See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct SendBuffer {
    bytes: Vec<u8>,
    /// How many bytes at the front were already written.
    sent: usize,
}

impl SendBuffer {
    /// The bytes not written yet.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    /// Whether anything waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// Whether nothing of the queue was written yet.
    pub(crate) fn nothing_sent(&self) -> bool {
        self.sent == 0
    }

    /// The queue, to append to.
    pub(crate) fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Drops everything not written yet.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.sent = 0;
    }

    /// `n` more bytes were written.
    pub(crate) fn advance(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.bytes.len());
        if self.sent == self.bytes.len() {
            self.clear();
        } else if self.sent > COMPACT_AFTER && self.sent * 2 > self.bytes.len() {
            self.bytes.drain(..self.sent);
            self.sent = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_bytes_leave_the_front_in_order() {
        let mut buf = SendBuffer::default();
        buf.tail().extend_from_slice(b"hello world");
        buf.advance(6);
        assert_eq!(buf.pending(), b"world");
        buf.tail().extend_from_slice(b"!");
        buf.advance(5);
        assert_eq!(buf.pending(), b"!");
        buf.advance(100);
        assert!(buf.is_empty() && buf.nothing_sent());
    }

    #[test]
    fn a_long_queue_is_compacted_once_half_is_written() {
        let mut buf = SendBuffer::default();
        buf.tail().resize(3 * COMPACT_AFTER, 7);
        buf.advance(2 * COMPACT_AFTER);
        assert_eq!(buf.pending().len(), COMPACT_AFTER);
        assert!(buf.nothing_sent(), "compacted");
    }
}
