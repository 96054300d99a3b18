//! The shrinker: the shortest trace that still fails the same way.
//!
//! "The same way" means the same invariant kind, so shrinking never slides from one bug to
//! another. Three passes, repeated until none helps, within a replay budget:
//! 1. delta debugging (Zeller's ddmin): drop ever smaller chunks of events;
//! 2. drop single events, last first;
//! 3. simplify single events ([`Event::simpler`]): smaller counts, sizes, byte offsets,
//!    commit counts, no jitter, whole reads and writes.

use crate::event::{Event, Scenario};
use crate::replay::run;

/// Replays the shrinker may run for one failure.
const MAX_REPLAYS: usize = 4_000;

struct Shrinker<'a> {
    base: &'a Scenario,
    kind: &'a str,
    replays: usize,
}

impl Shrinker<'_> {
    fn fails(&mut self, events: &[Event]) -> bool {
        if self.replays >= MAX_REPLAYS {
            return false;
        }
        self.replays += 1;
        let scenario = Scenario {
            options: self.base.options,
            events: events.to_vec(),
            expect_violation: None,
        };
        run(&scenario)
            .failure
            .is_some_and(|f| f.violation.kind == self.kind)
    }

    fn ddmin(&mut self, mut events: Vec<Event>) -> Vec<Event> {
        let mut chunks = 2usize;
        while events.len() >= 2 {
            let size = events.len().div_ceil(chunks);
            let mut reduced = false;
            let mut start = 0;
            while start < events.len() {
                let end = (start + size).min(events.len());
                let mut candidate = events[..start].to_vec();
                candidate.extend_from_slice(&events[end..]);
                if self.fails(&candidate) {
                    events = candidate;
                    chunks = (chunks - 1).max(2);
                    reduced = true;
                    break;
                }
                start = end;
            }
            if !reduced {
                if chunks >= events.len() {
                    break;
                }
                chunks = (chunks * 2).min(events.len());
            }
            if self.replays >= MAX_REPLAYS {
                break;
            }
        }
        events
    }

    fn drop_singles(&mut self, mut events: Vec<Event>) -> (Vec<Event>, bool) {
        let mut changed = false;
        let mut i = events.len();
        while i > 0 {
            i -= 1;
            let mut candidate = events.clone();
            candidate.remove(i);
            if self.fails(&candidate) {
                events = candidate;
                changed = true;
            }
        }
        (events, changed)
    }

    fn simplify(&mut self, mut events: Vec<Event>) -> (Vec<Event>, bool) {
        let mut changed = false;
        for i in 0..events.len() {
            for simpler in events[i].simpler() {
                let mut candidate = events.clone();
                candidate[i] = simpler;
                if self.fails(&candidate) {
                    events = candidate;
                    changed = true;
                    break;
                }
            }
        }
        (events, changed)
    }
}

/// The shortest trace found that still fails with `kind`, and the replays it took. The
/// input must fail with `kind`.
pub fn shrink(scenario: &Scenario, kind: &str) -> (Scenario, usize) {
    let mut shrinker = Shrinker {
        base: scenario,
        kind,
        replays: 0,
    };
    let mut events = scenario.events.clone();
    // Nothing after the failing event matters.
    if let Some(failure) = run(scenario).failure {
        if let Some(at) = failure.at {
            events.truncate(at + 1);
        }
    }
    loop {
        events = shrinker.ddmin(events);
        let (dropped, a) = shrinker.drop_singles(events);
        let (simpler, b) = shrinker.simplify(dropped);
        events = simpler;
        if !(a || b) || shrinker.replays >= MAX_REPLAYS {
            break;
        }
    }
    let shrunk = Scenario {
        options: scenario.options,
        events,
        expect_violation: None,
    };
    (shrunk, shrinker.replays)
}
