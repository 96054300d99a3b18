//! Percentiles of recorded durations, and the machine's load at the time of a run.

use std::time::Duration;

/// p50, p99, p99.9 and the maximum of a set of durations.
#[derive(Clone, Copy, Debug)]
pub struct Percentiles {
    /// How many durations.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Percentiles {
    /// The percentiles of `samples` (nearest rank); `None` if there are none.
    pub fn of(samples: &[Duration]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = |q: f64| {
            let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[i - 1]
        };
        Some(Percentiles {
            count: sorted.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            p999: rank(0.999),
            max: sorted[sorted.len() - 1],
        })
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        write!(
            f,
            "n={} p50={:.1} µs p99={:.1} µs p99.9={:.1} µs max={:.1} µs",
            self.count,
            us(self.p50),
            us(self.p99),
            us(self.p999),
            us(self.max)
        )
    }
}

/// The 1, 5 and 15-minute load averages, where the system tells them (Linux).
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

/// Prints one line to stderr with the load, so that every bench's output says how busy
/// the machine was while it ran.
pub fn print_load(bench: &str) {
    match load_average() {
        Some(load) => eprintln!("[{bench}] load average (1/5/15 min): {load}"),
        None => eprintln!("[{bench}] load average: unknown on this system"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        let p = Percentiles::of(&samples).unwrap();
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, Duration::from_micros(500));
        assert_eq!(p.p99, Duration::from_micros(990));
        assert_eq!(p.p999, Duration::from_micros(999));
        assert_eq!(p.max, Duration::from_micros(1000));
        assert!(Percentiles::of(&[]).is_none());
    }
}
