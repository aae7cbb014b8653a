//! Availability of a run: successful operations per second, and how long
//! writes took to come back after each fault healed.

use super::history::{Nanos, Outcome, Record};
use super::inject::Injected;

const SECOND: Nanos = 1_000_000_000;
/// How long before a fault its write rate is measured.
const BEFORE: Nanos = 5 * SECOND;
/// Writes are back once a one-second window reaches this share of the rate before.
const BACK: f64 = 0.8;

/// Completion times of acknowledged writes, sorted.
pub fn write_times(records: &[Record]) -> Vec<Nanos> {
    let mut t: Vec<Nanos> =
        records.iter().filter(|r| r.op.is_write() && matches!(r.outcome, Outcome::Ok(_))).map(|r| r.complete).collect();
    t.sort_unstable();
    t
}

fn count(times: &[Nanos], from: Nanos, to: Nanos) -> usize {
    times.partition_point(|&t| t < to) - times.partition_point(|&t| t < from)
}

/// Seconds from `fault.healed` until a one-second window holds 80% of the
/// writes per second of the five seconds (or the run so far) before the
/// fault began; None if
/// that never happened before `end` (or there was no rate to return to).
pub fn recovery(times: &[Nanos], fault: &Injected, end: Nanos) -> Option<f64> {
    // The warm-up before the first fault may be shorter than five seconds.
    let from = fault.start.saturating_sub(BEFORE);
    let span = (fault.start - from) as f64 / SECOND as f64;
    let before = count(times, from, fault.start) as f64 / span.max(1.0);
    if span < 1.0 || before < 1.0 {
        return None;
    }
    let step = SECOND / 10;
    let mut t = fault.healed;
    while t + SECOND <= end {
        if count(times, t, t + SECOND) as f64 >= BACK * before {
            return Some((t - fault.healed) as f64 / SECOND as f64);
        }
        t += step;
    }
    None
}

/// Successful operations in each second of the run.
pub fn per_second(records: &[Record], end: Nanos) -> Vec<usize> {
    let mut v = vec![0; (end / SECOND + 1) as usize];
    for r in records.iter().filter(|r| matches!(r.outcome, Outcome::Ok(_))) {
        if let Some(slot) = v.get_mut((r.complete / SECOND) as usize) {
            *slot += 1;
        }
    }
    v
}

/// p50, p90 and max of `v` (None when empty).
pub fn spread(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    Some((at(0.5), at(0.9), s[s.len() - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::inject::Kind;

    #[test]
    fn recovery_is_the_first_window_back_at_the_rate_before() {
        // 10 writes a second for 10 s, none for 2 s of fault, none 1 s after, then 10/s again.
        let mut times = Vec::new();
        for ms in (0..20_000u64).step_by(100) {
            if !(10_000..13_000).contains(&ms) {
                times.push(ms * 1_000_000);
            }
        }
        let fault = Injected { kind: Kind::Pause, detail: String::new(), start: 10 * SECOND, healed: 12 * SECOND };
        let r = recovery(&times, &fault, 20 * SECOND).unwrap();
        assert!((0.7..=1.0).contains(&r), "{r}");
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((2.0, 3.0, 3.0)));
    }
}
