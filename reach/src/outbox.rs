//! The bytes a handshake has queued for the other side and how far the driver has written
//! them: what every state machine here shares behind `pending_output` / `advance_output`.

/// Queued output; `bytes[written..]` is still to be written.
#[derive(Default)]
pub(crate) struct Outbox {
    bytes: Vec<u8>,
    written: usize,
}

/// Lengths only: the bytes may hold a password.
impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("pending", &self.pending().len())
            .finish()
    }
}

impl Outbox {
    /// An outbox holding `bytes`.
    pub(crate) fn new(bytes: Vec<u8>) -> Outbox {
        Outbox { bytes, written: 0 }
    }

    /// Queues `bytes` after what is pending.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// What is still to be written.
    pub(crate) fn pending(&self) -> &[u8] {
        self.bytes.get(self.written..).unwrap_or_default()
    }

    /// `n` more bytes were written (more than pending counts as all of them). Once all is
    /// written the buffer is emptied, so nothing sent (a password) stays in memory longer
    /// than needed.
    pub(crate) fn advance(&mut self, n: usize) {
        self.written = self.written.saturating_add(n).min(self.bytes.len());
        if self.written == self.bytes.len() {
            self.clear();
        }
    }

    /// Drops everything queued.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.written = 0;
    }
}
