//! Random seeds: the default budget (2,000 seeds; `SIM_SEEDS=n` for more, `SIM_SEED_START`
//! to start elsewhere) must hold every invariant. A failure prints the seed, the shrunk trace
//! and the replay command.

use socketfalco_sim::{
    check_seed, run, run_seed, seeds_from_env, Options, Scenario, Stats, DEFAULT_SEEDS,
};

#[test]
fn random_seeds_hold_every_invariant() {
    let count = seeds_from_env(DEFAULT_SEEDS);
    let first: u64 = std::env::var("SIM_SEED_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let started = std::time::Instant::now();
    let mut total = Stats::default();
    for seed in first..first + count {
        match check_seed(seed, Options::default()) {
            Ok(stats) => total.add(&stats),
            Err(report) => panic!("\n{report}"),
        }
    }
    eprintln!(
        "{count} seeds from {first}: {} faults injected, {} events, {} crashes, {} restores, {} messages, {:.1} s",
        total.faults,
        total.events,
        total.crashes,
        total.restores,
        total.messages,
        started.elapsed().as_secs_f64()
    );
    // The budget must actually inject faults of every kind, or it proves little.
    assert!(
        total.faults >= count * 5,
        "too few faults: {}",
        total.faults
    );
    for (what, n) in [
        ("crashes", total.crashes),
        ("cuts in a handshake", total.cuts_in_handshake),
        ("cuts after it", total.cuts_established),
        ("ends of stream mid-frame", total.eof_mid_frame),
        (
            "crashes with input not persisted",
            total.crashes_unpersisted,
        ),
        (
            "crashes with an ack not yet written",
            total.crashes_ack_unsent,
        ),
        ("crashes between two commits", total.crashes_mid_call),
        ("connections dialed by b", total.connections_b_dials),
        ("temporary sessions", total.temporary_sessions),
        ("timeouts", total.timeouts),
        ("storage failures", total.storage_failures),
        ("short reads", total.short_reads),
        ("short writes", total.short_writes),
        ("restores", total.restores),
        ("restores during a recovery", total.restores_mid_recovery),
        ("own messages recovered after a restore", total.recovered),
        (
            "waiting writes that came back numbered",
            total.returned_waiting,
        ),
        ("marks set down by a sync", total.marks_set_down),
        ("writes lost by both devices", total.writes_lost_to_restores),
        ("completions delayed", total.storage.delayed),
        (
            "delivery marks held for a later group",
            total.storage.marks_held,
        ),
        (
            "crashes with storage requests in flight",
            total.storage.crashes_in_flight,
        ),
        (
            "requests durable at a crash",
            total.storage.in_flight_durable,
        ),
        (
            "delivery marks lost in a crash",
            total.storage.marks_dropped,
        ),
        (
            "marks set right by the next sync after a crash lost some",
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
        (
            "… while the peer held some of the lines",
            total.storage.written_early_lost_held,
        ),
    ] {
        assert!(count < 500 || n > 0, "{count} seeds never produced {what}");
    }
}

/// The same with unencrypted links (frames straight on the wire), on a smaller budget.
#[test]
fn random_seeds_with_plain_links_hold_every_invariant() {
    let options = Options {
        plain_links: true,
        ..Options::default()
    };
    for seed in 0..seeds_from_env(DEFAULT_SEEDS) / 4 {
        if let Err(report) = check_seed(seed, options) {
            panic!("\n{report}");
        }
    }
}

#[test]
fn a_seed_replays_exactly_from_its_printed_trace() {
    for seed in [0, 1, 7, 42, 1234, 99_999] {
        let (trace, outcome) = run_seed(seed, Options::default());
        let (again, outcome_again) = run_seed(seed, Options::default());
        assert_eq!(trace, again, "seed {seed}: same trace");
        assert_eq!(outcome, outcome_again, "seed {seed}: same outcome");
        // The printed trace is a scenario: parsed back, it replays to the same run.
        let parsed = Scenario::parse(&trace.to_string()).expect("the trace parses");
        assert_eq!(parsed, trace);
        assert_eq!(
            run(&parsed),
            outcome,
            "seed {seed}: the trace replays the run"
        );
    }
}

#[test]
fn different_seeds_make_different_runs() {
    let traces: std::collections::BTreeSet<String> = (0..50)
        .map(|seed| run_seed(seed, Options::default()).0.to_string())
        .collect();
    assert_eq!(traces.len(), 50);
}
