//! The two clocks a driver hands to the core.
//!
//! The core never reads a clock: the transport passes `now` in. Timers (keepalive, dead
//! peer, handshake) run on a monotonic clock that never jumps; message timestamps use the
//! wall clock, which may.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since this clock was made, never going back.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock starting at zero now.
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Monotonic milliseconds since the clock was made.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Wall-clock time in milliseconds since the Unix epoch: [`wall_clock_ms`].
    pub fn wall_ms(&self) -> i64 {
        wall_clock_ms()
    }
}

/// Wall-clock time in milliseconds since the Unix epoch (negative before 1970): the one place
/// SocketFalco reads the wall clock, for message timestamps and the CLI's bookkeeping times
/// alike (never for ordering, which is the Lamport counter's).
pub fn wall_clock_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}
