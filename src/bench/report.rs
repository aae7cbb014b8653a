//! What a run measured, and its outputs: a text summary, one JSON line, a
//! percentile-distribution file (.hgrm) and an interval log.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The percentiles of the summary.
pub const PERCENTILES: [(f64, &str); 6] =
    [(50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9"), (99.99, "p99.99"), (100.0, "max")];

/// A new latency histogram: microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub workload: String,
    pub endpoint: String,
    pub ops: u64,
    /// Failed operations by gRPC code name.
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// Latency in microseconds (corrected for coordinated omission in open loop).
    pub latency_us: Histogram<u64>,
}

impl Summary {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at `percentile` (0..=100) in milliseconds.
    pub fn ms(&self, percentile: f64) -> f64 {
        if percentile >= 100.0 {
            return self.latency_us.max() as f64 / 1000.0;
        }
        self.latency_us.value_at_percentile(percentile) as f64 / 1000.0
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "workload {} against {}", self.workload, self.endpoint);
        let _ = writeln!(
            out,
            "  ops {}  elapsed {:.2} s  throughput {:.1} ops/s  errors {}",
            self.ops,
            self.elapsed.as_secs_f64(),
            self.ops_per_sec(),
            self.error_count()
        );
        for (code, n) in &self.errors {
            let _ = writeln!(out, "    error {code}: {n}");
        }
        let line: Vec<String> = PERCENTILES.iter().map(|(p, name)| format!("{name} {:.3}", self.ms(*p))).collect();
        let _ = writeln!(out, "  latency ms: {}", line.join("  "));
        out
    }

    /// One JSON object on one line.
    pub fn json(&self) -> String {
        // Durations and rates to 3 and 1 decimals, as the text report.
        let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
        let codes: serde_json::Map<String, serde_json::Value> =
            self.errors.iter().map(|(c, n)| (c.to_string(), (*n).into())).collect();
        let mut out = serde_json::json!({
            "workload": self.workload,
            "endpoint": self.endpoint,
            "ops": self.ops,
            "errors": self.error_count(),
            "elapsed_s": round(self.elapsed.as_secs_f64(), 3),
            "ops_per_sec": round(self.ops_per_sec(), 1),
            "errors_by_code": codes,
        });
        for (p, name) in PERCENTILES {
            out[format!("{}_ms", name.replace('.', "_"))] = round(self.ms(p), 3).into();
        }
        out.to_string()
    }

    /// HdrHistogram's percentile distribution format (what its plotters
    /// read), values in milliseconds.
    pub fn hgrm(&self) -> String {
        hgrm(&self.latency_us, 1000.0)
    }
}

/// The percentile distribution of `h` with values divided by `scale`.
pub fn hgrm(h: &Histogram<u64>, scale: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total = 0;
    for v in h.iter_quantiles(5) {
        total = v.count_since_last_iteration() + total;
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / scale;
        if q < 1.0 {
            let _ = writeln!(out, "{value:>12.3} {q:>14.12} {total:>10} {:>14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(out, "{value:>12.3} {q:>14.12} {total:>10}");
        }
    }
    let _ = writeln!(out, "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]", h.mean() / scale, h.stdev() / scale);
    let _ = writeln!(out, "#[Max     = {:>12.3}, Total count    = {:>12}]", h.max() as f64 / scale, h.len());
    let _ = writeln!(out, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", h.buckets(), h.distinct_values());
    out
}

/// Reads the (value, percentile) points of an .hgrm file, for plotting.
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let value: f64 = f.next()?.parse().ok()?;
            let q: f64 = f.next()?.parse().ok()?;
            Some((value, q))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 100).unwrap();
        }
        Summary {
            workload: "put".into(),
            endpoint: "http://127.0.0.1:2379".into(),
            ops: 1000,
            errors: BTreeMap::from([("Unavailable".to_string(), 2)]),
            elapsed: Duration::from_secs(2),
            latency_us: h,
        }
    }

    #[test]
    fn summary_numbers() {
        let s = sample();
        assert_eq!(s.ops_per_sec(), 500.0);
        assert!((s.ms(50.0) - 50.0).abs() < 0.1, "{}", s.ms(50.0));
        assert!((s.ms(100.0) - 100.0).abs() < 0.1);
        let text = s.text();
        assert!(text.contains("throughput 500.0 ops/s") && text.contains("error Unavailable: 2"), "{text}");
    }

    #[test]
    fn json_is_one_flat_object() {
        let j = sample().json();
        assert!(!j.contains('\n'));
        assert!(j.starts_with("{\"workload\":\"put\"") && j.ends_with('}'));
        assert!(j.contains("\"errors_by_code\":{\"Unavailable\":2}"), "{j}");
        assert!(j.contains("\"p99_9_ms\":") && j.contains("\"max_ms\":100."), "{j}");
    }

    #[test]
    fn hgrm_round_trips_through_the_parser() {
        let text = sample().hgrm();
        assert!(text.contains("Value") && text.contains("#[Max     ="));
        let points = parse_hgrm(&text);
        assert!(points.len() > 20);
        assert!(points.windows(2).all(|w| w[0].1 <= w[1].1), "percentiles ascend");
        let last = points.last().unwrap();
        assert_eq!(last.1, 1.0);
        assert!((last.0 - 100.0).abs() < 0.1);
    }
}
