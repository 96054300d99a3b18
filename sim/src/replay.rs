//! Replaying a scenario: its events applied to a fresh [`World`], one by one, then the final
//! heal (which checks convergence). A panic in the code under test is caught and reported as
//! the `panic` invariant, so it is shrunk like any other failure. The runner (seeds, soaks,
//! reports) and the shrinker both replay through here.

use crate::event::{Event, Scenario};
use crate::oracle::Violation;
use crate::world::{Stats, World};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A broken invariant and where the run was when it broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What broke.
    pub violation: Violation,
    /// Index of the event being applied, or `None` for the final heal.
    pub at: Option<usize>,
}

/// The result of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Counters, up to the failure if there was one.
    pub stats: Stats,
    /// The first broken invariant, if any.
    pub failure: Option<Failure>,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `f` on the world, turning a panic of the code under test into a violation.
fn guarded(
    world: &mut World,
    f: impl FnOnce(&mut World) -> Result<(), Violation>,
) -> Result<(), Violation> {
    match catch_unwind(AssertUnwindSafe(|| f(world))) {
        Ok(result) => result,
        Err(payload) => Err(Violation::new(
            "panic",
            format!("the code under test panicked: {}", panic_message(&*payload)),
        )),
    }
}

/// Applies the events `next` hands out (it sees the world as it is, as a generator does),
/// then the final heal; stops at the first broken invariant.
pub(crate) fn replay(
    world: &mut World,
    mut next: impl FnMut(&World) -> Option<Event>,
) -> Option<Failure> {
    let mut at = 0;
    while let Some(event) = next(world) {
        if let Err(violation) = guarded(world, |w| w.apply(&event)) {
            return Some(Failure {
                violation,
                at: Some(at),
            });
        }
        at += 1;
    }
    guarded(world, World::finish)
        .err()
        .map(|violation| Failure {
            violation,
            at: None,
        })
}

/// Replays a scenario's events, then the final heal.
pub fn run(scenario: &Scenario) -> Outcome {
    let mut world = World::new(scenario.options);
    let mut events = scenario.events.iter().cloned();
    let failure = replay(&mut world, |_| events.next());
    Outcome {
        stats: world.stats,
        failure,
    }
}

/// Replays a scenario like [`run`], recording what happened line by line: each event, each
/// write and read on the wires with its byte offsets, each notice.
pub fn run_logged(scenario: &Scenario) -> (Outcome, Vec<String>) {
    let mut world = World::new(scenario.options);
    world.enable_log();
    let mut events = scenario.events.iter().cloned();
    let failure = replay(&mut world, |_| events.next());
    let log = world.take_log();
    let outcome = Outcome {
        stats: world.stats,
        failure,
    };
    (outcome, log)
}
