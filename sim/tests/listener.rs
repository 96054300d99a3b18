//! The listener world: one device serving two or three peers at once, several links on one
//! store. Random seeds (500 by default; `SIM_LISTENER_SEEDS=n` for more,
//! `SIM_LISTENER_SEED_START` to start elsewhere) must hold every per-chat invariant and reach
//! the moments the listener is about; a seed replays exactly; the self-test is caught; and
//! the listener's story, step by step.

use socketfalco_sim::listener::{listener_seeds_from_env, Step, DEFAULT_LISTENER_SEEDS};
use socketfalco_sim::{
    run_listener_seed, run_listener_seed_with, ListenerScenario, ListenerStats, ListenerWorld,
};
use std::path::PathBuf;

#[test]
fn listener_seeds_hold_every_invariant() {
    let count = listener_seeds_from_env(DEFAULT_LISTENER_SEEDS);
    let first: u64 = std::env::var("SIM_LISTENER_SEED_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let started = std::time::Instant::now();
    let mut total = ListenerStats::default();
    for seed in first..first + count {
        match run_listener_seed(seed) {
            Ok(stats) => total.add(&stats),
            Err(failure) => panic!("\n{failure}"),
        }
    }
    eprintln!(
        "{count} listener seeds from {first}: {total:?}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if count < 100 {
        return;
    }
    for (what, n) in [
        ("sessions established", total.established),
        ("messages", total.messages),
        (
            "pumps of a link of a beside another of the same chat",
            total.pumps_two_links_one_chat,
        ),
        ("older connections replaced", total.replaced),
        ("crashes of a", total.listener_crashes),
        (
            "crashes of a with an ack not yet written",
            total.listener_crashes_ack_unsent,
        ),
        (
            "… while another chat streams",
            total.listener_crashes_ack_unsent_other_streaming,
        ),
        ("crashes between two commits", total.crashes_mid_call),
        ("peer crashes", total.peer_crashes),
        ("cuts", total.cuts),
        ("storage failures", total.storage_failures),
        ("timeouts", total.timeouts),
        ("completions delayed", total.storage.delayed),
        (
            "requests committed before another connection's",
            total.storage.reordered,
        ),
        (
            "crashes with storage requests in flight",
            total.storage.crashes_in_flight,
        ),
        (
            "delivery marks lost in a crash",
            total.storage.marks_dropped,
        ),
        (
            "marks set right after a crash lost some",
            total.marks_resynced,
        ),
        (
            "composes reported written before their commit",
            total.storage.written_early,
        ),
        (
            "groups of lines sent before their commit, lost with it in a crash",
            total.storage.written_early_lost,
        ),
    ] {
        assert!(n > 0, "the budget never reached: {what}");
    }
}

#[test]
fn a_listener_seed_replays_exactly() {
    for seed in [3, 77, 1234] {
        assert_eq!(run_listener_seed(seed).ok(), run_listener_seed(seed).ok());
    }
    let seed = (0..20)
        .find(|&seed| run_listener_seed_with(seed, true).is_err())
        .expect("the self-test fails within 20 seeds");
    let one = run_listener_seed_with(seed, true).expect_err("the self-test fails");
    let two = run_listener_seed_with(seed, true).expect_err("the self-test fails");
    assert_eq!(one.trace, two.trace);
    assert_eq!(one.violation, two.violation);
    assert_ne!(
        run_listener_seed(1).ok(),
        run_listener_seed(2).ok(),
        "different seeds differ"
    );
}

#[test]
fn the_self_test_is_caught_with_a_replay_command() {
    // Every link acks before it stores: the oracle of some chat must see an ack of a
    // message its receiver does not hold.
    let failure = (0..20)
        .find_map(|seed| run_listener_seed_with(seed, true).err())
        .expect("broken durability is caught within 20 seeds");
    assert_eq!(failure.violation.kind, "acked-lost", "{failure}");
    let report = failure.to_string();
    assert!(
        report.contains(&format!("seed {}", failure.seed)),
        "{report}"
    );
    assert!(
        report.contains(&format!("-- listener {} --break-durability", failure.seed)),
        "{report}"
    );
    // The trace in the report is a scenario file that fails the same way.
    let text = report
        .split("---\n")
        .nth(1)
        .expect("the report holds the trace between two --- lines");
    let scenario = ListenerScenario::parse(text).expect("the printed trace parses");
    assert_eq!(scenario.steps, failure.trace);
    let (_, again) = scenario.run().expect_err("the trace fails again");
    assert_eq!(again, failure.violation);
    scenario.check().expect("it fails as it says it does");
}

fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/sim/listener")
}

/// Each scenario file, and the counters that prove it reached what it is about.
#[test]
fn every_listener_scenario_holds_and_reaches_its_moment() {
    type Probe = fn(&ListenerStats) -> u64;
    let table: &[(&str, &str, Probe)] = &[
        (
            "crash-between-persist-and-ack-while-another-streams.sim",
            "crashes of a with an ack not yet written while another chat streams",
            |s| s.listener_crashes_ack_unsent_other_streaming,
        ),
        (
            "crash-between-persist-and-ack-while-another-streams.sim",
            "crashes between two commits",
            |s| s.crashes_mid_call,
        ),
        (
            "reconnect-while-old-open.sim",
            "pumps of two links of a for one chat",
            |s| s.pumps_two_links_one_chat,
        ),
        (
            "reconnect-while-old-open.sim",
            "older connections replaced",
            |s| s.replaced,
        ),
        ("reconnect-while-old-open.sim", "cuts", |s| s.cuts),
        (
            "old-handshake-ends-late.sim",
            "pumps of two links of a for one chat",
            |s| s.pumps_two_links_one_chat,
        ),
        ("old-handshake-ends-late.sim", "timeouts", |s| s.timeouts),
        (
            "newer-wins-after-slow-open.sim",
            "an older connection established late, closed for the newer",
            |s| s.replaced,
        ),
        (
            "crash-while-lines-sent-before-commit.sim",
            "a group lost in a crash while a peer held the lines sent before its commit",
            |s| s.storage.written_early_lost_held,
        ),
    ];
    let mut names: Vec<String> = std::fs::read_dir(scenario_dir())
        .expect("testdata/sim/listener exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sim"))
        .collect();
    names.sort();
    assert!(names.len() >= 2, "{names:?}");
    for name in &names {
        let text = std::fs::read_to_string(scenario_dir().join(name)).expect("readable");
        let scenario = ListenerScenario::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = ListenerScenario::parse(&scenario.to_string()).expect("parses again");
        assert_eq!(scenario, again, "{name} round-trips through the text form");
        let stats = scenario.check().unwrap_or_else(|e| {
            panic!(
                "{name}: {e}\nreplay: cargo run -p socketfalco-sim --release -- listener-scenario testdata/sim/listener/{name}"
            )
        });
        for (file, what, probe) in table {
            if file == name {
                assert!(probe(&stats) > 0, "{name} no longer reaches: {what}");
            }
        }
        assert!(
            table.iter().any(|(file, ..)| file == name),
            "{name} has no probe in the table"
        );
    }
}

fn run(world: &mut ListenerWorld, steps: &[Step]) {
    for (i, step) in steps.iter().enumerate() {
        if let Err(v) = world.apply(step) {
            panic!("step {} ({step}): {v}", i + 1);
        }
    }
}

/// `peer` dials `a`.
fn connect(peer: usize) -> Step {
    Step::Connect {
        peer,
        silent: false,
    }
}

/// `peer` dials `a` anew while its old socket vanishes without a word (a route change).
fn connect_silently(peer: usize) -> Step {
    Step::Connect { peer, silent: true }
}

/// `peer`'s user writes `count` lines to `a`.
fn peer_writes(peer: usize, count: u32) -> Step {
    Step::Send {
        peer,
        by_listener: false,
        count,
    }
}

/// `a`'s user writes `count` lines to `peer`.
fn a_writes(peer: usize, count: u32) -> Step {
    Step::Send {
        peer,
        by_listener: true,
        count,
    }
}

/// The story: peers interleaved, `a` crashing between persist and ack in one chat
/// while another chat streams, a peer reconnecting while its old connection is still open.
#[test]
fn the_listener_story_holds_step_by_step() {
    let mut world = ListenerWorld::new(2);
    let (b, c) = (1, 2);
    run(
        &mut world,
        &[
            connect(b),
            connect(c),
            Step::Settle,
            // b streams while c and a chat, the two connections interleaved.
            peer_writes(b, 40),
            peer_writes(c, 3),
            a_writes(c, 3),
        ],
    );
    // Rounds of the two connections interleaved until a has persisted a batch of b's and
    // not written its ack yet; then a dies, all its links at once.
    for _ in 0..10 {
        run(
            &mut world,
            &[Step::Round { conn: 2 }, Step::Round { conn: 1 }],
        );
        if world.ack_unsent() {
            break;
        }
    }
    assert!(world.ack_unsent(), "a persisted without acking yet");
    run(
        &mut world,
        &[
            Step::Crash {
                device: 0,
                after_commits: None,
            },
            Step::Restart { device: 0 },
            connect(b),
            connect(c),
            Step::Settle,
            peer_writes(c, 2),
            Step::Round { conn: 4 },
            // c's route changes: its old socket vanishes without a word, a's old link stays
            // open beside the new one until the new one is established and replaces it.
            connect_silently(c),
            a_writes(c, 2),
            Step::Round { conn: 4 },
            Step::Round { conn: 5 },
            Step::Round { conn: 4 },
            Step::Round { conn: 5 },
            Step::Round { conn: 3 },
            Step::Settle,
            Step::Heal,
        ],
    );
    assert!(world.stats.listener_crashes_ack_unsent >= 1);
    assert!(world.stats.pumps_two_links_one_chat >= 1);
    assert!(world.stats.replaced >= 1, "{:?}", world.stats);
}
