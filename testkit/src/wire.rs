//! [`Wire`]: one direction of one simulated TCP connection, exact to the byte.
//!
//! [`Pipe`](super::Pipe) is the simple knob set for hand-written stories. A `Wire` is what
//! the deterministic simulator needs on top of it:
//! - a cut at any byte ([`Wire::cut_after`]): the bytes before the cut still arrive, in
//!   order, then the reader sees the end of the stream; the writer's write that reaches the
//!   cut fails ([`WireWrite::Broken`]), as a reset socket's would;
//! - short writes and short reads: each write call takes, and each read call returns, between
//!   1 and a maximum number of bytes, the exact size varied deterministically by the byte
//!   offset (so one run always splits the stream the same way);
//! - latency plus jitter that never reorders bytes (TCP keeps order);
//! - a flipped bit at any byte ([`Wire::tamper_after`]): an attacker on the path, or a
//!   broken middlebox, to check that encryption notices;
//! - an orderly end (a FIN after the queued bytes, [`Wire::close`]), a reset that loses
//!   everything in flight ([`Wire::reset`]), and a reader that vanished
//!   ([`Wire::drop_reader`]).
//!
//! A wire belongs to one connection: a new connection gets new wires, so stale bytes of an
//! old connection can never reach a new one.

use std::collections::VecDeque;

/// How one direction of a connection behaves. The default is an ideal wire: no delay, whole
/// writes, whole reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireKnobs {
    /// Delay between a write and its arrival, in milliseconds.
    pub latency_ms: u64,
    /// Extra delay per write of 0 to this many milliseconds, varied deterministically. Bytes
    /// still arrive in the order they were written.
    pub jitter_ms: u64,
    /// One write call takes 1 to this many bytes (varied); 0: everything it is given.
    pub max_write: usize,
    /// One read call returns 1 to this many bytes (varied); 0: everything that has arrived.
    pub max_read: usize,
}

/// What a [`Wire::write`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireWrite {
    /// This many bytes were taken: perhaps fewer than offered (a short write).
    Accepted(usize),
    /// The connection broke at its cut point after taking this many bytes (0 when it was
    /// broken already). The writer must treat the connection as lost.
    Broken(usize),
}

/// What a [`Wire::read`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireRead {
    /// Bytes that arrived, in order (perhaps fewer than have arrived: a short read).
    Data(Vec<u8>),
    /// Nothing has arrived yet.
    Nothing,
    /// The stream is over: everything the writer got through has been read.
    Eof,
}

/// One direction of a simulated connection. See the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Wire {
    /// The knobs; a change applies to the following writes and reads.
    pub knobs: WireKnobs,
    salt: u64,
    /// Segments in flight: (arrival time, bytes).
    queue: VecDeque<(u64, Vec<u8>)>,
    /// Bytes of the front segment already read.
    front_read: usize,
    last_due: u64,
    written: u64,
    read: u64,
    cut_at: Option<u64>,
    flip_at: Option<u64>,
    fin: bool,
    reader_gone: bool,
    /// Write calls that took fewer bytes than offered.
    pub short_writes: u64,
    /// Read calls that returned fewer bytes than had arrived.
    pub short_reads: u64,
}

impl Wire {
    /// An open, empty wire. `salt` varies the piece sizes between wires of one run.
    pub fn new(knobs: WireKnobs, salt: u64) -> Wire {
        Wire {
            knobs,
            salt,
            ..Wire::default()
        }
    }

    /// The connection breaks once `n` more bytes have been written through this direction.
    /// Replaces an earlier cut that has not happened yet.
    pub fn cut_after(&mut self, n: u64) {
        if !self.fin {
            self.cut_at = Some(self.written.saturating_add(n));
        }
    }

    /// The lowest bit of the byte written `n` bytes from now is flipped on its way.
    pub fn tamper_after(&mut self, n: u64) {
        self.flip_at = Some(self.written.saturating_add(n));
    }

    /// The writer offers `bytes` at `now_ms`; see [`WireWrite`]. Bytes written after the
    /// reader vanished are taken and lost, as a socket's are until the reset comes back.
    pub fn write(&mut self, bytes: &[u8], now_ms: u64) -> WireWrite {
        if self.fin {
            return WireWrite::Broken(0);
        }
        if bytes.is_empty() {
            return WireWrite::Accepted(0);
        }
        let mut n = bytes.len();
        if self.knobs.max_write > 0 {
            n = n.min(self.piece(self.written, self.knobs.max_write));
        }
        let mut broken = false;
        if let Some(cut) = self.cut_at {
            let allowed = usize::try_from(cut - self.written).unwrap_or(usize::MAX);
            if n > allowed {
                n = allowed;
                broken = true;
            }
        }
        if n < bytes.len() && !broken {
            self.short_writes += 1;
        }
        if n > 0 && !self.reader_gone {
            let jitter = if self.knobs.jitter_ms > 0 {
                mix(self.salt ^ 0x6a09_e667 ^ self.written) % (self.knobs.jitter_ms + 1)
            } else {
                0
            };
            let due = (now_ms + self.knobs.latency_ms + jitter).max(self.last_due);
            self.last_due = due;
            let mut segment = bytes[..n].to_vec();
            if let Some(at) = self.flip_at {
                if (self.written..self.written + n as u64).contains(&at) {
                    segment[usize::try_from(at - self.written).unwrap_or(0)] ^= 1;
                    self.flip_at = None;
                }
            }
            self.queue.push_back((due, segment));
        }
        self.written += n as u64;
        if broken {
            self.fin = true;
            WireWrite::Broken(n)
        } else {
            WireWrite::Accepted(n)
        }
    }

    /// One read call at `now_ms`; see [`WireRead`].
    pub fn read(&mut self, now_ms: u64) -> WireRead {
        if self.reader_gone {
            return WireRead::Nothing;
        }
        let limit = if self.knobs.max_read > 0 {
            self.piece(self.read ^ 0x5bd1_e995, self.knobs.max_read)
        } else {
            usize::MAX
        };
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((due, segment)) = self.queue.front() else {
                break;
            };
            if *due > now_ms {
                break;
            }
            let take = (segment.len() - self.front_read).min(limit - out.len());
            out.extend_from_slice(&segment[self.front_read..self.front_read + take]);
            self.front_read += take;
            if self.front_read == segment.len() {
                self.queue.pop_front();
                self.front_read = 0;
            }
        }
        if out.is_empty() {
            return if self.queue.is_empty() && self.fin {
                WireRead::Eof
            } else {
                WireRead::Nothing
            };
        }
        if self.queue.front().is_some_and(|(due, _)| *due <= now_ms) {
            self.short_reads += 1;
        }
        self.read += out.len() as u64;
        WireRead::Data(out)
    }

    /// The writer closes its side in order: the reader gets what is queued, then the end.
    pub fn close(&mut self) {
        self.fin = true;
    }

    /// The connection is reset: everything in flight is lost, the reader sees the end now.
    pub fn reset(&mut self) {
        self.queue.clear();
        self.front_read = 0;
        self.fin = true;
    }

    /// The reader is gone (its process died or closed the socket): what is in flight and
    /// whatever is written later is lost.
    pub fn drop_reader(&mut self) {
        self.reader_gone = true;
        self.queue.clear();
        self.front_read = 0;
    }

    /// When the next queued bytes arrive, if any are on their way.
    pub fn next_due(&self) -> Option<u64> {
        if self.reader_gone {
            return None;
        }
        self.queue.front().map(|(due, _)| *due)
    }

    /// Whether no bytes are on their way.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the writer's side is over (closed, or broken at the cut).
    pub fn is_closed(&self) -> bool {
        self.fin
    }

    /// Bytes written through this direction so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes read from this direction so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// A piece size in `1..=max`, fixed by the offset and the salt.
    fn piece(&self, offset: u64, max: usize) -> usize {
        let max = max as u64;
        usize::try_from(mix(self.salt ^ offset) % max + 1).unwrap_or(1)
    }
}

/// splitmix64's finalizer: a cheap, well-mixed hash of one word.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(wire: &mut Wire, now: u64) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        loop {
            match wire.read(now) {
                WireRead::Data(b) => got.extend(b),
                WireRead::Nothing => return (got, false),
                WireRead::Eof => return (got, true),
            }
        }
    }

    #[test]
    fn a_cut_delivers_the_bytes_before_it_then_the_end() {
        let mut wire = Wire::new(WireKnobs::default(), 1);
        wire.cut_after(5);
        assert_eq!(wire.write(b"abc", 0), WireWrite::Accepted(3));
        assert_eq!(wire.write(b"defg", 0), WireWrite::Broken(2));
        assert_eq!(wire.write(b"h", 0), WireWrite::Broken(0));
        assert_eq!(drain(&mut wire, 0), (b"abcde".to_vec(), true));
    }

    #[test]
    fn short_pieces_keep_order_and_content_under_jitter() {
        let knobs = WireKnobs {
            latency_ms: 10,
            jitter_ms: 30,
            max_write: 3,
            max_read: 2,
        };
        let mut wire = Wire::new(knobs, 7);
        let data: Vec<u8> = (0..200u8).collect();
        let mut sent = 0;
        let mut now = 0;
        while sent < data.len() {
            match wire.write(&data[sent..], now) {
                WireWrite::Accepted(n) => sent += n,
                WireWrite::Broken(_) => unreachable!(),
            }
            now += 1;
        }
        assert!(wire.short_writes > 0);
        assert_eq!(
            drain(&mut wire, 5),
            (Vec::new(), false),
            "nothing before the latency"
        );
        let (got, eof) = drain(&mut wire, 10_000);
        assert_eq!(got, data);
        assert!(!eof);
        assert!(wire.short_reads > 0);
    }

    #[test]
    fn tampering_flips_exactly_one_bit() {
        let mut wire = Wire::new(WireKnobs::default(), 1);
        wire.tamper_after(5);
        assert_eq!(wire.write(b"abc", 0), WireWrite::Accepted(3));
        assert_eq!(wire.write(b"defg", 0), WireWrite::Accepted(4));
        // Offset 5 is `f` (0x66); its lowest bit flipped is `g` (0x67).
        assert_eq!(drain(&mut wire, 0), (b"abcdegg".to_vec(), false));
    }

    #[test]
    fn a_reset_loses_what_is_in_flight() {
        let mut wire = Wire::new(WireKnobs::default(), 1);
        assert_eq!(wire.write(b"lost", 0), WireWrite::Accepted(4));
        wire.reset();
        assert_eq!(wire.read(0), WireRead::Eof);
    }
}
