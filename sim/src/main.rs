//! `sim`: replay a seed, a scenario file or a one-line trace, or soak many seeds.
//!
//! ```text
//! sim seed <n> [--break-durability] [--plain-links] [--tolerate-compose-error] [--tolerate-mark-failure] [--restore-any-state] [--quiet]     replay one seed, printing its trace
//! sim scenario <file.sim> [--log]                  replay a scenario file, check its verdict
//! sim trace '<event>; <event>; …' [--log]          replay a one-line trace
//!                                                  (--log: events, wire bytes, notices)
//! sim soak <count> [--from <seed>] [--jobs <n>] [--break-durability] [--plain-links] [--tolerate-compose-error] [--tolerate-mark-failure] [--restore-any-state]
//! sim listener <seed> [--break-durability]         replay one listener seed (a serving 2-3 peers)
//! sim listener-scenario <file.sim> [--log]         replay a listener scenario file
//! sim listener-soak <count> [--from <seed>] [--break-durability]   many listener seeds
//! ```

use socketfalco_sim::{
    check_scenario, check_seed, run_listener_seed_with, run_seed, soak, ListenerScenario,
    ListenerStats, Options, Report, Scenario,
};
use std::process::ExitCode;

const USAGE: &str = "usage:
  sim seed <n> [--break-durability] [--plain-links] [--tolerate-compose-error] [--tolerate-mark-failure] [--restore-any-state] [--quiet]
  sim scenario <file.sim> [--log]
  sim trace '<event>; <event>; ...' [--log]
  sim soak <count> [--from <seed>] [--jobs <n>] [--break-durability] [--plain-links] [--tolerate-compose-error] [--tolerate-mark-failure] [--restore-any-state]
  sim listener <seed> [--break-durability]
  sim listener-scenario <file.sim> [--log]
  sim listener-soak <count> [--from <seed>] [--break-durability]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn number(args: &[String], i: usize, what: &str) -> Result<u64, String> {
    args.get(i)
        .ok_or_else(|| format!("missing {what}"))?
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{what} must be a number"))
}

fn flag_value(args: &[String], flag: &str) -> Result<Option<u64>, String> {
    match args.iter().position(|a| a == flag) {
        Some(i) => number(args, i + 1, flag).map(Some),
        None => Ok(None),
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let options = Options {
        break_durability: args.iter().any(|a| a == "--break-durability"),
        plain_links: args.iter().any(|a| a == "--plain-links"),
        tolerate_compose_error: args.iter().any(|a| a == "--tolerate-compose-error"),
        restore_any: args.iter().any(|a| a == "--restore-any-state"),
        tolerate_mark_failure: args.iter().any(|a| a == "--tolerate-mark-failure"),
    };
    match args.first().map(String::as_str) {
        Some("seed") => {
            let seed = number(args, 1, "the seed")?;
            let (scenario, outcome) = run_seed(seed, options);
            if !args.iter().any(|a| a == "--quiet") {
                println!("# seed {seed}: {} events", scenario.events.len());
                print!("{scenario}");
            }
            println!("# {:?}", outcome.stats);
            match outcome.failure {
                None => {
                    println!("seed {seed}: ok");
                    Ok(ExitCode::SUCCESS)
                }
                Some(_) => match check_seed(seed, options) {
                    Ok(_) => {
                        Err("the seed failed once and passed on replay: not deterministic".into())
                    }
                    Err(report) => {
                        println!("{report}");
                        Ok(ExitCode::FAILURE)
                    }
                },
            }
        }
        Some("scenario") | Some("trace") => {
            let text = if args[0] == "scenario" {
                let path = args.get(1).ok_or("missing the scenario file")?;
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
            } else {
                args.get(1).ok_or("missing the trace")?.clone()
            };
            let scenario = Scenario::parse(&text)?;
            if args.iter().any(|a| a == "--log") {
                let (_, log) = socketfalco_sim::run_logged(&scenario);
                for line in log {
                    println!("{line}");
                }
            }
            let result = check_scenario(&scenario);
            let outcome = socketfalco_sim::run(&scenario);
            println!("# {:?}", outcome.stats);
            match (result, outcome.failure) {
                (Ok(_), None) => {
                    println!("ok: passed, converged");
                    Ok(ExitCode::SUCCESS)
                }
                (Ok(_), Some(f)) => {
                    println!("ok: failed as expected: {}", f.violation);
                    Ok(ExitCode::SUCCESS)
                }
                (Err(why), failure) => {
                    println!("FAILED: {why}");
                    // A scenario's own `expect` failing is not worth shrinking; an invariant is.
                    if let Some(f) = failure.filter(|f| f.violation.kind != "expectation") {
                        println!("{}", Report::new(None, &scenario, f));
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Some("soak") => {
            let count = number(args, 1, "the number of seeds")?;
            let first = flag_value(args, "--from")?.unwrap_or(0);
            let jobs = usize::try_from(flag_value(args, "--jobs")?.unwrap_or(1)).unwrap_or(1);
            println!(
                "soak: seeds {first}..{} on {jobs} thread(s){}",
                first + count,
                if options.break_durability {
                    ", durability deliberately broken"
                } else {
                    ""
                }
            );
            println!(
                "restores: {}",
                if options.restore_any {
                    "to any state ever committed (abandoned futures included)"
                } else {
                    "along each store's own past"
                }
            );
            let progress = |seeds: u64, stats: &socketfalco_sim::Stats| {
                if seeds % 10_000 < 1_000 * jobs as u64 {
                    eprintln!("  {seeds} seeds, {} faults", stats.faults);
                }
            };
            let result = soak(first, count, options, jobs, &progress);
            println!("{result}");
            match result.failure {
                None => Ok(ExitCode::SUCCESS),
                Some(report) => {
                    println!("{report}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Some("listener") => {
            let seed = number(args, 1, "the seed")?;
            let broken = args.iter().any(|a| a == "--break-durability");
            match run_listener_seed_with(seed, broken) {
                Ok(stats) => {
                    println!("# {stats:?}");
                    println!("listener seed {seed}: ok");
                    Ok(ExitCode::SUCCESS)
                }
                Err(failure) => {
                    println!("{failure}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Some("listener-scenario") => {
            let path = args.get(1).ok_or("missing the scenario file")?;
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let scenario = ListenerScenario::parse(&text)?;
            if args.iter().any(|a| a == "--log") {
                if let Err((at, v)) = scenario.run_logged() {
                    println!("at step {at}: {v}");
                }
            }
            match scenario.check() {
                Ok(stats) => {
                    println!("# {stats:?}");
                    println!("{path}: ok");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("{path}: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Some("listener-soak") => {
            let count = number(args, 1, "the number of seeds")?;
            let first = flag_value(args, "--from")?.unwrap_or(0);
            let broken = args.iter().any(|a| a == "--break-durability");
            let started = std::time::Instant::now();
            let mut total = ListenerStats::default();
            for seed in first..first + count {
                match run_listener_seed_with(seed, broken) {
                    Ok(stats) => total.add(&stats),
                    Err(failure) => {
                        println!("{failure}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            println!(
                "listener seeds {first}..{}: ok, {:.1} s\n{total:#?}",
                first + count,
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => Err("unknown command".into()),
    }
}
