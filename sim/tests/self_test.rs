//! The simulator can fail: with the durability rule deliberately broken (links ack what they
//! receive before storing it), the default seed budget must find a violation, and its shrunk
//! trace must replay to the same failure.

use socketfalco_sim::{check_seed, run, Options, Scenario, DEFAULT_SEEDS};

#[test]
fn broken_durability_is_caught_within_the_default_budget() {
    let options = Options {
        break_durability: true,
        ..Options::default()
    };
    let report = (0..DEFAULT_SEEDS)
        .find_map(|seed| check_seed(seed, options).err())
        .expect("acking before persisting must be caught within the default seed budget");
    eprintln!("{report}");
    assert_eq!(report.failure.violation.kind, "acked-lost");
    let seed = report.seed.expect("a random run has a seed");

    // The report carries the seed, the shrunk trace as scenario text, and replay commands.
    let text = report.to_string();
    assert!(text.contains(&format!("seed {seed}")), "{text}");
    assert!(text.contains(&report.shrunk.to_string()), "{text}");
    assert!(
        text.contains("cargo run -p socketfalco-sim --release -- trace '"),
        "{text}"
    );
    assert!(
        text.contains(&format!("-- seed {seed} --break-durability")),
        "{text}"
    );

    // The shrunk trace, read back from its text, fails the same way, and is no longer than
    // the original.
    assert!(report.shrunk.events.len() <= report.original_events);
    let replayed = Scenario::parse(&report.shrunk.to_string()).expect("the trace parses");
    assert_eq!(replayed.expect_violation.as_deref(), Some("acked-lost"));
    let failure = run(&replayed).failure.expect("the shrunk trace fails");
    assert_eq!(failure.violation.kind, "acked-lost");
    // The one-line form replays too.
    let one_line = Scenario::parse(&report.shrunk.one_line()).expect("one line parses");
    assert_eq!(
        run(&one_line).failure.map(|f| f.violation.kind),
        Some("acked-lost")
    );
    // And without the broken rule, the same trace passes.
    let mut fixed = replayed;
    fixed.options.break_durability = false;
    assert!(
        run(&fixed).failure.is_none(),
        "the real rule passes the same trace"
    );
}
