//! The clock loop both worlds run ([`World`](crate::World) and
//! [`ListenerWorld`](crate::ListenerWorld)): rounds until nothing moves, the clock moved on
//! to the next delivery in between, and timers fired one at a time up to the end of an
//! `advance-clock`. Each world says what a round is and where its deliveries and timers
//! stand; the loop and its livelock limits are written once.

use crate::oracle::Violation;

/// A world that runs in rounds on one global clock.
pub(crate) trait Rounds {
    /// Rounds one `settle` may take before it is called a livelock.
    const MAX_SETTLE_ROUNDS: u64;
    /// Timer firings one `advance-clock` may take before it is called a livelock.
    const MAX_TIMER_FIRINGS: u64;

    /// One round of every connection (transmit, receive, pump); whether anything moved.
    fn round_all(&mut self) -> Result<bool, Violation>;

    /// The global time of the next pending accept or of the next byte due on a wire whose
    /// receiving device has a link.
    fn next_delivery(&self) -> Option<u64>;

    /// The global time of the next link timer.
    fn next_timer(&self) -> Option<u64>;

    /// The global clock.
    fn clock(&mut self) -> &mut u64;

    /// Moves the clock to the next delivery or accept, if one is pending. Timers do not
    /// count: only `advance-clock` lets them fire.
    fn advance_to_next_delivery(&mut self) -> bool {
        match self.next_delivery() {
            Some(at) if at > *self.clock() => {
                *self.clock() = at;
                true
            }
            _ => false,
        }
    }

    /// Rounds until nothing moves.
    fn settle(&mut self) -> Result<(), Violation> {
        for _ in 0..Self::MAX_SETTLE_ROUNDS {
            if !self.round_all()? && !self.advance_to_next_delivery() {
                return Ok(());
            }
        }
        Err(Violation::new(
            "livelock",
            format!("still moving after {} rounds", Self::MAX_SETTLE_ROUNDS),
        ))
    }

    /// Time passes: settle, then fire each timer due before the end, then settle at the end.
    fn advance(&mut self, ms: u64) -> Result<(), Violation> {
        let end = self.clock().saturating_add(ms);
        for _ in 0..Self::MAX_TIMER_FIRINGS {
            self.settle()?;
            match self.next_timer() {
                Some(at) if at <= end => {
                    let now = self.clock();
                    *now = (*now).max(at);
                    self.round_all()?;
                }
                _ => {
                    let now = self.clock();
                    *now = (*now).max(end);
                    return self.settle();
                }
            }
        }
        Err(Violation::new(
            "livelock",
            format!(
                "more than {} timer firings in {ms} ms",
                Self::MAX_TIMER_FIRINGS
            ),
        ))
    }
}
