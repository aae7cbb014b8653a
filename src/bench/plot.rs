//! An SVG latency-by-percentile plot (HdrHistogram style: percentiles on a
//! log scale of 1/(1-p)), overlaying any number of runs.

use std::fmt::Write as _;

const W: f64 = 800.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// The x axis ends at 99.999%.
const NINES: f64 = 5.0;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

/// x position of a quantile: log10(1/(1-q)), capped at [`NINES`].
fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        NINES
    } else {
        (1.0 / (1.0 - q)).log10().min(NINES)
    }
}

/// Renders `runs` (label, points of (latency ms, quantile)) as an SVG document.
pub fn svg(title: &str, runs: &[(String, Vec<(f64, f64)>)]) -> String {
    let max_ms = runs.iter().flat_map(|(_, p)| p.iter().map(|(v, _)| *v)).fold(0.0f64, f64::max).max(0.001) * 1.05;
    let x = |q: f64| LEFT + nines(q) / NINES * (W - LEFT - RIGHT);
    let y = |v: f64| H - BOTTOM - v / max_ms * (H - TOP - BOTTOM);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
        W / 2.0,
        escape(title)
    );
    // Axes and grid.
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"].iter().enumerate() {
        let px = LEFT + i as f64 / NINES * (W - LEFT - RIGHT);
        let _ = writeln!(out, "<line x1=\"{px}\" y1=\"{TOP}\" x2=\"{px}\" y2=\"{}\" stroke=\"#ddd\"/>", H - BOTTOM);
        let _ = writeln!(out, "<text x=\"{px}\" y=\"{}\" text-anchor=\"middle\">{label}</text>", H - BOTTOM + 18.0);
    }
    for i in 0..=5 {
        let v = max_ms * i as f64 / 5.0;
        let py = y(v);
        let _ = writeln!(out, "<line x1=\"{LEFT}\" y1=\"{py}\" x2=\"{}\" y2=\"{py}\" stroke=\"#ddd\"/>", W - RIGHT);
        let _ = writeln!(out, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.2}</text>", LEFT - 6.0, py + 4.0);
    }
    let _ = writeln!(out, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>", W / 2.0, H - 12.0);
    let _ = writeln!(
        out,
        "<text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">latency (ms)</text>",
        H / 2.0,
        H / 2.0
    );
    // One line per run, with a legend.
    for (i, (label, points)) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = points.iter().map(|(v, q)| format!("{:.1},{:.1}", x(*q), y(*v))).collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        let ly = TOP + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"3\"/>",
            LEFT + 10.0,
            LEFT + 34.0
        );
        let _ = writeln!(out, "<text x=\"{}\" y=\"{}\">{}</text>", LEFT + 40.0, ly + 4.0, escape(label));
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_every_run_with_a_legend() {
        let a = vec![(1.0, 0.0), (2.0, 0.9), (5.0, 0.99), (9.0, 1.0)];
        let b = vec![(0.5, 0.0), (1.0, 0.999)];
        let s = svg("put <100 clients>", &[("etcd".into(), a), ("tessera".into(), b)]);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains(">etcd<") && s.contains(">tessera<") && s.contains("&lt;100 clients&gt;"));
    }

    #[test]
    fn percentiles_map_to_nines() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0), NINES);
    }
}
