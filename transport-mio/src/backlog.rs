//! [`OutputBacklog`]: how much of what the endpoint reported still waits for whoever shows
//! it, so that the endpoint stops taking in more than that reader can keep up with.
//!
//! The endpoint hands its [`Output`](crate::Output)s to a callback, which usually passes them
//! to another thread (the one that prints them). If that thread falls behind — a `--serve`
//! listener whose output goes to a pipe nobody reads, a script stuck on its own work — what
//! the peers send would pile up in memory without end. With a backlog in its configuration
//! ([`EndpointConfig::output_backlog`](crate::EndpointConfig::output_backlog)), the endpoint
//! stops reading from its peers' established sessions while more than [`PAUSE_ABOVE`] bytes
//! wait, and reads again once they are under [`RESUME_BELOW`]. Nothing is lost and nothing
//! times out meanwhile: what a peer sends waits in the network and in its send window,
//! unacked; keepalives still go both ways; the dead-peer timeout waits
//! ([`socketfalco_core::Link::pause_reading`]). Whoever moves outputs between the threads
//! counts them: [`OutputBacklog::queued`] when one is handed on, [`OutputBacklog::taken`]
//! when the reader took it.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The endpoint stops reading from its peers while more than this many bytes of output
/// wait for their reader: 4 MiB, some 20,000 short lines.
pub const PAUSE_ABOVE: usize = 4 << 20;

/// … and reads again once fewer than this wait: 1 MiB, so that it does not pause and resume
/// on every line.
pub const RESUME_BELOW: usize = 1 << 20;

/// Bytes of output handed on and not yet taken by their reader. Shared between the thread
/// that hands outputs on and the one that takes them, and read by the endpoint.
#[derive(Debug, Default)]
pub struct OutputBacklog {
    waiting: AtomicUsize,
}

impl OutputBacklog {
    /// An empty backlog.
    pub fn new() -> OutputBacklog {
        OutputBacklog::default()
    }

    /// An output of about `bytes` bytes (in memory, as it waits) was handed on.
    pub fn queued(&self, bytes: usize) {
        self.waiting.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The reader took an output that was [`queued`](Self::queued) with `bytes`.
    pub fn taken(&self, bytes: usize) {
        // Never below zero, whatever a caller counts: saturating, in one atomic step.
        let _ = self
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(w.saturating_sub(bytes))
            });
    }

    /// Bytes waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Whether the endpoint should read from its peers, given whether it does now: it stops
    /// above [`PAUSE_ABOVE`] and starts again below [`RESUME_BELOW`].
    pub fn allows_reading(&self, reading: bool) -> bool {
        let waiting = self.waiting();
        if reading {
            waiting <= PAUSE_ABOVE
        } else {
            waiting < RESUME_BELOW
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_stops_above_the_high_mark_and_starts_below_the_low_one() {
        let backlog = OutputBacklog::new();
        assert!(backlog.allows_reading(true));
        backlog.queued(PAUSE_ABOVE);
        assert!(backlog.allows_reading(true), "at the mark, still reading");
        backlog.queued(1);
        assert!(!backlog.allows_reading(true));
        backlog.taken(PAUSE_ABOVE - RESUME_BELOW);
        assert!(
            !backlog.allows_reading(false),
            "between the marks, still paused"
        );
        assert!(
            backlog.allows_reading(true),
            "between the marks, still reading"
        );
        backlog.taken(2);
        assert!(backlog.allows_reading(false));
        backlog.taken(usize::MAX);
        assert_eq!(backlog.waiting(), 0);
    }
}
