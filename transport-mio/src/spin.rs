//! Waiting for an answer that is due within microseconds without letting the CPU halt.
//!
//! A durable line's round trip is a chain of answers: the storage thread's report that the
//! line is written, the peer's ack, the commit's completion. Between them the event loop has
//! nothing to do, and if it sleeps its CPU may halt; the answer then waits for the machine to
//! wake that CPU — tens of µs on a virtual machine whose idle CPUs do not poll, as long or
//! longer on hardware in a deep idle state — and a round trip has several such waits. So
//! while an answer is due (an own message not yet acked, a storage request not yet
//! completed) the loop polls without sleeping, giving its CPU to any other thread that
//! wants it at every turn (the storage thread and the user interface share it:
//! [`crate::affinity`]), for at most [`SPIN_FOR`] after its last event. That is what Linux's
//! own `haltpoll` does for a whole guest, here only where an answer is known to be near.
//!
//! An answer that is far (a peer over Tor, a disk that takes milliseconds) must not cost a
//! spinning CPU each time, so the policy learns: a spin that ends without an event turns
//! spinning off, and it is turned on again only by an answer that came, while the loop
//! slept, within [`SPIN_FOR`] of its going to sleep — as an adaptive mutex spins only while
//! spinning pays. Nor does the loop spin beside a stream (a burst, a re-sync: more than
//! [`SPIN_AT_MOST`] messages waiting or moving), which wakes it often enough by itself. The
//! decision is [`Spin`], pure and tested without threads; the loop in [`crate::endpoint`]
//! carries it out, and tells it whether an answer is due.

use std::time::{Duration, Instant};

/// Longest the loop polls without sleeping after its last event while an answer is due: a
/// few hand-offs between threads, a loopback or LAN round trip, a commit on a quick disk —
/// well under a millisecond (docs/PERFORMANCE.md measures what it buys and costs).
pub const SPIN_FOR: Duration = Duration::from_micros(500);

/// Most messages a connection may wait for (its own unacked, or the peer's not yet durable),
/// and most messages the connections may have received or had acked since the loop's last
/// wait, for the loop to spin: one line typed and its ack, or a few, are a wait for an
/// answer; a burst or a re-sync is a stream that wakes the loop by itself, and a loop that
/// spins beside it holds a CPU the threads doing its work could use (docs/PERFORMANCE.md:
/// without the limit on what moved since the last wait, 4 KiB lines were slower than with
/// sleeping loops).
pub const SPIN_AT_MOST: u64 = 4;

/// What the loop's connections wait for, asked at a turn where the loop may sleep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Waiting {
    /// A connection waits for an answer soon due (an ack of its own messages, a peer's
    /// message's commit, a storage request's completion), and none has more than
    /// [`SPIN_AT_MOST`] messages waiting.
    pub answer_due: bool,
    /// Messages the connections have received and had acked so far, all together: only how
    /// much it grew since the last such turn counts.
    pub messages_seen: u64,
}

/// Whether the loop's next wait polls (returns at once) or sleeps.
#[derive(Debug)]
pub struct Spin {
    /// How long a wait may spin; zero: never.
    spin_for: Duration,
    /// Spinning pays: the last answer came within `spin_for`.
    enabled: bool,
    /// When the present spin began: the first turn, since the last event, that polled.
    spinning_since: Option<Instant>,
    /// When the loop went to sleep with an answer due and spinning off.
    asleep_since: Option<Instant>,
    /// [`Waiting::messages_seen`] at the last turn the loop could sleep.
    seen: u64,
}

impl Spin {
    /// A policy that spins for at most `spin_for` (zero: it never spins).
    pub fn new(spin_for: Duration) -> Spin {
        Spin {
            spin_for,
            enabled: !spin_for.is_zero(),
            spinning_since: None,
            asleep_since: None,
            seen: 0,
        }
    }

    /// Before a wait that could sleep: `true` if it should poll without sleeping (the caller
    /// yields its CPU first), `false` if it may sleep. `waiting` says what the connections
    /// wait for; it is asked only while the policy may spin at all. More than
    /// [`SPIN_AT_MOST`] messages seen since the last such wait is a stream: no answer is
    /// then counted as due.
    pub fn poll_now(&mut self, now: Instant, waiting: impl FnOnce() -> Waiting) -> bool {
        if self.spin_for.is_zero() {
            return false;
        }
        let waiting = waiting();
        let streaming = waiting.messages_seen.saturating_sub(self.seen) > SPIN_AT_MOST;
        self.seen = waiting.messages_seen;
        if !waiting.answer_due || streaming {
            self.spinning_since = None;
            self.asleep_since = None;
            return false;
        }
        if self.enabled {
            let since = *self.spinning_since.get_or_insert(now);
            if now.saturating_duration_since(since) < self.spin_for {
                return true;
            }
            // No answer within the spin: it does not pay here now.
            self.enabled = false;
            self.spinning_since = None;
        }
        self.asleep_since.get_or_insert(now);
        false
    }

    /// After a wait that returned `events` (any readiness, a waker included).
    pub fn waited(&mut self, now: Instant, events: bool) {
        if !events {
            return;
        }
        self.spinning_since = None;
        if let Some(asleep) = self.asleep_since.take() {
            if now.saturating_duration_since(asleep) < self.spin_for {
                // The answer came soon after all: spinning would have caught it.
                self.enabled = true;
            }
        }
    }

    /// Whether the next wait with an answer due would spin.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// The connections of a quiet chat: an answer due or not, nothing streaming.
    fn due(answer_due: bool) -> impl FnOnce() -> Waiting {
        move || Waiting {
            answer_due,
            messages_seen: 0,
        }
    }

    #[test]
    fn nothing_due_never_spins() {
        let mut spin = Spin::new(SPIN_FOR);
        let t = Instant::now();
        assert!(!spin.poll_now(t, due(false)));
        assert!(!spin.poll_now(t + us(1), due(false)));
        assert!(spin.is_enabled());
    }

    #[test]
    fn an_answer_due_spins_until_the_window_ends_after_the_last_event() {
        let mut spin = Spin::new(us(500));
        let t = Instant::now();
        assert!(spin.poll_now(t, due(true)));
        spin.waited(t + us(1), false);
        assert!(spin.poll_now(t + us(400), due(true)));
        // An event starts the window again.
        spin.waited(t + us(450), true);
        assert!(spin.poll_now(t + us(800), due(true)));
        assert!(spin.poll_now(t + us(949), due(true)));
        // 500 µs after the spin began with no event: sleep, and stop spinning.
        assert!(!spin.poll_now(t + us(1_300), due(true)));
        assert!(!spin.is_enabled());
        assert!(!spin.poll_now(t + us(1_301), due(true)));
    }

    #[test]
    fn a_far_answer_keeps_spinning_off_and_a_near_one_turns_it_on_again() {
        let mut spin = Spin::new(us(500));
        let t = Instant::now();
        assert!(spin.poll_now(t, due(true)));
        assert!(!spin.poll_now(t + us(600), due(true))); // off, asleep from here
        spin.waited(t + us(50_000), true); // a peer far away: 49 ms later
        assert!(!spin.is_enabled());
        assert!(!spin.poll_now(t + us(50_001), due(true))); // asleep again
        spin.waited(t + us(50_201), true); // this answer came within 200 µs
        assert!(spin.is_enabled());
        assert!(spin.poll_now(t + us(50_202), due(true)));
    }

    #[test]
    fn a_wait_that_timed_out_is_not_an_answer() {
        let mut spin = Spin::new(us(500));
        let t = Instant::now();
        assert!(spin.poll_now(t, due(true)));
        assert!(!spin.poll_now(t + us(501), due(true)));
        // A timer's wake, not an answer: spinning stays off.
        spin.waited(t + us(502), false);
        assert!(!spin.is_enabled());
    }

    #[test]
    fn nothing_due_forgets_a_sleep_begun_while_something_was() {
        let mut spin = Spin::new(us(500));
        let t = Instant::now();
        assert!(spin.poll_now(t, due(true)));
        assert!(!spin.poll_now(t + us(600), due(true)));
        // The answer came and was handled; the loop then slept with nothing due, and
        // a user's line woke it: no measure of an answer's delay.
        assert!(!spin.poll_now(t + us(700), due(false)));
        spin.waited(t + us(710), true);
        assert!(!spin.is_enabled());
    }

    #[test]
    fn a_stream_is_no_answer_due() {
        let mut spin = Spin::new(us(500));
        let t = Instant::now();
        let seen = |messages_seen| {
            move || Waiting {
                answer_due: true,
                messages_seen,
            }
        };
        assert!(spin.poll_now(t, seen(SPIN_AT_MOST)));
        // More than SPIN_AT_MOST moved since the last wait: a stream, sleep.
        assert!(!spin.poll_now(t + us(1), seen(2 * SPIN_AT_MOST + 1)));
        // A few more: an answer due again; spinning was not turned off.
        assert!(spin.is_enabled());
        assert!(spin.poll_now(t + us(2), seen(3 * SPIN_AT_MOST + 1)));
    }

    #[test]
    fn a_zero_window_never_spins() {
        let mut spin = Spin::new(Duration::ZERO);
        let t = Instant::now();
        assert!(!spin.poll_now(t, due(true)));
        spin.waited(t + us(1), true);
        assert!(!spin.poll_now(t + us(2), due(true)));
    }
}
