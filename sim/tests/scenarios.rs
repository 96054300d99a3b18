//! Every hand-written scenario in `testdata/sim/` replays to its expected final state, and
//! exercises the fault it is about.

use socketfalco_sim::{check_scenario, Outcome, Scenario, Stats};
use std::path::PathBuf;

fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/sim")
}

fn load(name: &str) -> Scenario {
    let path = scenario_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Scenario::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn replay(name: &str) -> Outcome {
    check_scenario(&load(name)).unwrap_or_else(|e| {
        panic!(
            "{name}: {e}\nreplay: cargo run -p socketfalco-sim --release -- scenario testdata/sim/{name}"
        )
    })
}

#[test]
fn every_scenario_file_replays_to_its_expected_state() {
    let mut names: Vec<String> = std::fs::read_dir(scenario_dir())
        .expect("testdata/sim exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sim"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 10,
        "expected at least 10 scenarios, found {names:?}"
    );
    let failures: Vec<String> = names
        .iter()
        .filter_map(|name| {
            check_scenario(&load(name))
                .err()
                .map(|e| format!("{name}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "scenarios failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_scenario_file_round_trips_through_the_text_format() {
    for entry in std::fs::read_dir(scenario_dir()).expect("testdata/sim exists") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "sim") {
            let text = std::fs::read_to_string(&path).expect("readable");
            let scenario = Scenario::parse(&text).expect("parses");
            let again = Scenario::parse(&scenario.to_string()).expect("parses again");
            assert_eq!(scenario, again, "{}", path.display());
        }
    }
}

/// Each scenario, and the counter that proves it hit its fault (a scenario that silently
/// stopped exercising its fault would still "pass").
#[test]
fn each_scenario_exercises_the_fault_it_is_about() {
    type Probe = fn(&Stats) -> u64;
    let table: &[(&str, &str, Probe, u64)] = &[
        (
            "storage-crash-in-flight.sim",
            "crashes with storage requests in flight",
            |s| s.storage.crashes_in_flight,
            1,
        ),
        (
            "storage-crash-in-flight.sim",
            "writes durable at a crash, never shown",
            |s| s.writes_durable_unshown,
            1,
        ),
        (
            "storage-crash-in-flight.sim",
            "completions delayed",
            |s| s.storage.delayed,
            1,
        ),
        (
            "send-before-commit-crash.sim",
            "composes sent before their commit, lost with it in a crash",
            |s| s.storage.written_early_lost,
            1,
        ),
        (
            "send-before-commit-crash.sim",
            "own lines given back by the peer",
            |s| s.recovered,
            1,
        ),
        (
            "send-before-commit-behind-a-read.sim",
            "composes sent before their commit",
            |s| s.storage.written_early,
            1,
        ),
        (
            "send-before-commit-finishes.sim",
            "composes sent before their commit",
            |s| s.storage.written_early,
            2,
        ),
        (
            "drop-inside-handshake.sim",
            "cuts in a handshake",
            |s| s.cuts_in_handshake,
            3,
        ),
        // The 4th cut: a's session was established (b's sync had arrived), b's was not.
        (
            "drop-inside-handshake.sim",
            "cuts after it",
            |s| s.cuts_established,
            1,
        ),
        (
            "drop-inside-handshake.sim",
            "ends of stream mid-message",
            |s| s.eof_mid_frame,
            4,
        ),
        (
            "drop-inside-noise-length.sim",
            "cuts after the handshake",
            |s| s.cuts_established,
            2,
        ),
        (
            "drop-inside-noise-length.sim",
            "ends of stream mid-message",
            |s| s.eof_mid_frame,
            1,
        ),
        (
            "drop-inside-body.sim",
            "ends of stream mid-message",
            |s| s.eof_mid_frame,
            2,
        ),
        ("drop-inside-body.sim", "short reads", |s| s.short_reads, 1),
        (
            "plain-drop-inside-frame-prefix.sim",
            "ends of stream mid-frame",
            |s| s.eof_mid_frame,
            1,
        ),
        (
            "plain-drop-inside-frame-body.sim",
            "ends of stream mid-frame",
            |s| s.eof_mid_frame,
            2,
        ),
        (
            "crash-between-persist-and-ack.sim",
            "crashes with an ack not yet written",
            |s| s.crashes_ack_unsent,
            1,
        ),
        (
            "crash-before-persist.sim",
            "crashes with input not persisted",
            |s| s.crashes_unpersisted,
            1,
        ),
        (
            "crash-before-persist.sim",
            "crashes between two commits",
            |s| s.crashes_mid_call,
            2,
        ),
        ("crash-after-ack.sim", "crashes", |s| s.crashes, 1),
        (
            "offline-writes-both-sides.sim",
            "messages",
            |s| s.messages,
            13,
        ),
        (
            "roles-swapped.sim",
            "connections dialed by b",
            |s| s.connections_b_dials,
            2,
        ),
        (
            "temporary-amid-normal.sim",
            "temporary sessions",
            |s| s.temporary_sessions,
            1,
        ),
        (
            "temporary-amid-normal.sim",
            "temporary messages",
            |s| s.temporary_messages,
            5,
        ),
        (
            "large-backlog-small-window.sim",
            "pumps with a full window",
            |s| s.window_full,
            100,
        ),
        (
            "large-backlog-small-window.sim",
            "short writes",
            |s| s.short_writes,
            1000,
        ),
        ("clock-jump-backwards.sim", "timeouts", |s| s.timeouts, 1),
        (
            "store-failure.sim",
            "storage failures",
            |s| s.storage_failures,
            2,
        ),
        ("correct-durability-twin.sim", "crashes", |s| s.crashes, 1),
        (
            "restore-after-offline-write.sim",
            "waiting writes that came back numbered (kept once)",
            |s| s.returned_waiting,
            1,
        ),
        (
            "restore-after-offline-write.sim",
            "own messages recovered",
            |s| s.recovered,
            2,
        ),
        (
            "restore-other-side-then-write.sim",
            "marks set down by a sync",
            |s| s.marks_set_down,
            1,
        ),
        (
            "restore-other-side-then-write.sim",
            "own messages recovered",
            |s| s.recovered,
            1,
        ),
        (
            "restore-during-recovery.sim",
            "own messages recovered (the lost batch twice)",
            |s| s.recovered,
            856,
        ),
        ("restore-during-recovery.sim", "restores", |s| s.restores, 2),
        (
            "restore-both-sides-lose.sim",
            "writes lost by both devices",
            |s| s.writes_lost_to_restores,
            1,
        ),
        (
            "restore-both-sides-lose.sim",
            "numbers given again after both lost them",
            |s| s.ids_reused,
            1,
        ),
        (
            "tamper-is-refused.sim",
            "connections refused after tampering",
            |s| s.integrity_failures,
            3,
        ),
    ];
    for (name, what, probe, at_least) in table {
        let outcome = replay(name);
        let got = probe(&outcome.stats);
        assert!(
            got >= *at_least,
            "{name}: {what} = {got}, expected at least {at_least}"
        );
    }
}

#[test]
fn the_broken_durability_scenario_fails_and_its_correct_twin_passes() {
    let broken = replay("broken-durability-is-caught.sim");
    let failure = broken.failure.expect("the broken rule must be caught");
    assert_eq!(failure.violation.kind, "acked-lost");
    let twin = replay("correct-durability-twin.sim");
    assert!(twin.failure.is_none());
    // The two files tell the same story; only the option differs.
    let mut story = load("broken-durability-is-caught.sim");
    story.options.break_durability = false;
    story.expect_violation = None;
    let twin_story = load("correct-durability-twin.sim");
    assert_eq!(
        story.events[..],
        twin_story.events[..story.events.len()],
        "the twin starts with the same events"
    );
}
