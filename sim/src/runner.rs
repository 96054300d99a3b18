//! Running seeds, and what happens when one fails: shrink, report, save, soak. Replaying a
//! scenario itself is [`crate::replay`]'s.

use crate::event::{Options, Scenario};
use crate::gen::Generator;
use crate::replay::{replay, run, Failure, Outcome};
use crate::shrink::shrink;
use crate::world::{Stats, World};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seeds the test suite runs when `SIM_SEEDS` is not set.
pub const DEFAULT_SEEDS: u64 = 2_000;

/// Generates and runs the trace of `seed`. The returned scenario replays it exactly (up to
/// the failure, if there is one).
pub fn run_seed(seed: u64, options: Options) -> (Scenario, Outcome) {
    let mut world = World::new(options);
    let mut generator = Generator::new(seed);
    let mut events = Vec::new();
    let failure = replay(&mut world, |world| {
        let event = generator.next(world)?;
        events.push(event.clone());
        Some(event)
    });
    let scenario = Scenario {
        options,
        events,
        expect_violation: None,
    };
    let outcome = Outcome {
        stats: world.stats,
        failure,
    };
    (scenario, outcome)
}

/// A failing run, shrunk: everything needed to see it and replay it.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed, for a random run.
    pub seed: Option<u64>,
    /// The run's options.
    pub options: Options,
    /// Events in the original trace.
    pub original_events: usize,
    /// The original failure.
    pub failure: Failure,
    /// The shortest trace found that fails the same way; it ends with
    /// `expect violation <kind>`.
    pub shrunk: Scenario,
    /// Replays the shrinker ran.
    pub replays: usize,
    /// Where the shrunk trace was saved, if it could be.
    pub saved: Option<PathBuf>,
}

impl Report {
    /// Shrinks the failing `scenario` and saves the result under
    /// `target/sim-failures/`.
    pub fn new(seed: Option<u64>, scenario: &Scenario, failure: Failure) -> Report {
        let (mut shrunk, replays) = shrink(scenario, failure.violation.kind);
        shrunk.expect_violation = Some(failure.violation.kind.to_owned());
        let name = match seed {
            Some(seed) => format!("seed-{seed}.sim"),
            None => "trace.sim".to_owned(),
        };
        let saved = save_failure(&name, &shrunk);
        Report {
            seed,
            options: scenario.options,
            original_events: scenario.events.len(),
            failure,
            shrunk,
            replays,
            saved,
        }
    }

    /// The command that replays the shrunk trace, on one line.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run -p socketfalco-sim --release -- trace '{}'",
            self.shrunk.one_line()
        )
    }

    /// The command that replays the original seed.
    pub fn seed_command(&self) -> Option<String> {
        let mut flag = String::new();
        if self.options.break_durability {
            flag.push_str(" --break-durability");
        }
        if self.options.plain_links {
            flag.push_str(" --plain-links");
        }
        if self.options.tolerate_compose_error {
            flag.push_str(" --tolerate-compose-error");
        }
        if self.options.restore_any {
            flag.push_str(" --restore-any-state");
        }
        if self.options.tolerate_mark_failure {
            flag.push_str(" --tolerate-mark-failure");
        }
        self.seed
            .map(|seed| format!("cargo run -p socketfalco-sim --release -- seed {seed}{flag}"))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seed {
            Some(seed) => writeln!(f, "SIMULATION FAILED: seed {seed}")?,
            None => writeln!(f, "SIMULATION FAILED")?,
        }
        writeln!(f, "violation: {}", self.failure.violation)?;
        match self.failure.at {
            Some(i) => writeln!(f, "at event {} of {}", i + 1, self.original_events)?,
            None => writeln!(
                f,
                "at the final heal, after {} events",
                self.original_events
            )?,
        }
        writeln!(
            f,
            "shortest trace found ({} events, {} replays while shrinking):",
            self.shrunk.events.len(),
            self.replays
        )?;
        writeln!(f, "---")?;
        write!(f, "{}", self.shrunk)?;
        writeln!(f, "---")?;
        writeln!(f, "replay: {}", self.replay_command())?;
        if let Some(seed) = self.seed_command() {
            writeln!(f, "replay the whole seed: {seed}")?;
        }
        if let Some(path) = &self.saved {
            writeln!(
                f,
                "saved: {} (replay: cargo run -p socketfalco-sim --release -- scenario {})",
                path.display(),
                path.display()
            )?;
        }
        Ok(())
    }
}

/// Writes a failing trace where the workspace keeps build output; best effort.
fn save_failure(name: &str, scenario: &Scenario) -> Option<PathBuf> {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let dir = target.join("sim-failures");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(name);
    std::fs::write(&path, scenario.to_string()).ok()?;
    Some(path)
}

/// Runs one seed; on failure, shrinks it and returns the report.
pub fn check_seed(seed: u64, options: Options) -> Result<Stats, Box<Report>> {
    let (scenario, outcome) = run_seed(seed, options);
    match outcome.failure {
        None => Ok(outcome.stats),
        Some(failure) => Err(Box::new(Report::new(Some(seed), &scenario, failure))),
    }
}

/// Runs a scenario file's story and checks its verdict: it must pass, or, with
/// `expect violation <kind>`, fail with that kind.
pub fn check_scenario(scenario: &Scenario) -> Result<Outcome, String> {
    let outcome = run(scenario);
    match (&scenario.expect_violation, &outcome.failure) {
        (None, None) => Ok(outcome),
        (Some(kind), Some(f)) if f.violation.kind == kind.as_str() => Ok(outcome),
        (Some(kind), None) => Err(format!(
            "expected the violation `{kind}`, but the run passed"
        )),
        (expected, Some(f)) => {
            let at = match f.at {
                Some(i) => format!("event {} `{}`", i + 1, scenario.events[i]),
                None => "the final heal".to_owned(),
            };
            let wanted = expected
                .as_ref()
                .map_or(String::new(), |k| format!(" (expected `{k}`)"));
            Err(format!("failed at {at}: {}{wanted}", f.violation))
        }
    }
}

/// How many seeds to run: `SIM_SEEDS` if set, otherwise `default`.
pub fn seeds_from_env(default: u64) -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// What a soak did.
#[derive(Debug)]
pub struct Soak {
    /// Seeds run to the end.
    pub seeds: u64,
    /// Counters summed over them.
    pub stats: Stats,
    /// Wall time.
    pub elapsed: Duration,
    /// The first failure found (the soak stops there).
    pub failure: Option<Box<Report>>,
}

impl fmt::Display for Soak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "seeds run: {}, faults injected: {}, wall time: {:.1} s",
            self.seeds,
            s.faults,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  events {}, rounds {}, connections {} ({} established, {} dialed by b, {} temporary), \
             crashes {}, timeouts {}, storage failures {}",
            s.events,
            s.rounds,
            s.connections,
            s.established,
            s.connections_b_dials,
            s.temporary_sessions,
            s.crashes,
            s.timeouts,
            s.storage_failures
        )?;
        writeln!(
            f,
            "  messages written {} (+{} temporary), shown {}, bytes carried {}, \
             short writes {}, short reads {}",
            s.messages, s.temporary_messages, s.shown, s.bytes, s.short_writes, s.short_reads
        )?;
        writeln!(
            f,
            "  coverage: cuts in a handshake {}, cuts after it {}, ends of stream mid-frame {}, \
             crashes with input not yet persisted {}, with an ack not yet written {}, \
             between two commits {}, pumps with a full window {}, connections refused after \
             tampering {}",
            s.cuts_in_handshake,
            s.cuts_established,
            s.eof_mid_frame,
            s.crashes_unpersisted,
            s.crashes_ack_unsent,
            s.crashes_mid_call,
            s.window_full,
            s.integrity_failures
        )?;
        writeln!(
            f,
            "  restores {} ({} during a recovery): own messages recovered from the peer {} (of them waiting writes kept once {}), \
             marks set down by a sync {}, ids or writes numbered again after both devices lost them {}, \
             writes lost by both devices {}",
            s.restores,
            s.restores_mid_recovery,
            s.recovered,
            s.returned_waiting,
            s.marks_set_down,
            s.ids_reused,
            s.writes_lost_to_restores
        )?;
        let st = &s.storage;
        writeln!(
            f,
            "  storage: commit events {}, completions delayed {}, reordered across connections {}, \
             marks held for a later group {}, crashes with requests in flight {} ({} requests durable, \
             {} lost; {} delivery marks dropped), marks set right by the next sync after a crash \
             lost some {}, writes durable but never shown {}, requests failed after an earlier \
             failure of their link {}, composes reported written before their commit {} ({} lost with it \
             in a crash, {} of them held by the peer)",
            s.commits,
            st.delayed,
            st.reordered,
            st.marks_held,
            st.crashes_in_flight,
            st.in_flight_durable,
            st.in_flight_lost,
            st.marks_dropped,
            s.marks_resynced,
            s.writes_durable_unshown,
            st.failed_after_failure,
            st.written_early,
            st.written_early_lost,
            st.written_early_lost_held
        )?;
        write!(f, "  tolerated known-bug hits: {}", s.tolerated)
    }
}

/// Runs seeds `first..first + count` on `jobs` threads, stopping at the first failure
/// (shrunk). `progress` is called now and then with the seeds done and the counters.
pub fn soak(
    first: u64,
    count: u64,
    options: Options,
    jobs: usize,
    progress: &(dyn Fn(u64, &Stats) + Sync),
) -> Soak {
    let started = Instant::now();
    let next = AtomicU64::new(first);
    let end = first.saturating_add(count);
    let stop = AtomicBool::new(false);
    let total = Mutex::new((0u64, Stats::default()));
    let failure: Mutex<Option<(u64, Scenario, Failure)>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                let mut local = Stats::default();
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let (scenario, outcome) = run_seed(seed, options);
                    if let Some(f) = outcome.failure {
                        stop.store(true, Ordering::Relaxed);
                        if let Ok(mut slot) = failure.lock() {
                            if slot.as_ref().is_none_or(|(s, _, _)| seed < *s) {
                                *slot = Some((seed, scenario, f));
                            }
                        }
                        break;
                    }
                    local.add(&outcome.stats);
                    done += 1;
                    if done == 1_000 {
                        if let Ok(mut t) = total.lock() {
                            t.0 += done;
                            t.1.add(&local);
                            progress(t.0, &t.1);
                        }
                        local = Stats::default();
                        done = 0;
                    }
                }
                if let Ok(mut t) = total.lock() {
                    t.0 += done;
                    t.1.add(&local);
                }
            });
        }
    });
    let (seeds, stats) = total.into_inner().unwrap_or_default();
    let failure = failure
        .into_inner()
        .ok()
        .flatten()
        .map(|(seed, scenario, f)| Box::new(Report::new(Some(seed), &scenario, f)));
    Soak {
        seeds,
        stats,
        elapsed: started.elapsed(),
        failure,
    }
}
