//! `tessera bench`: drives ANY etcd v3 endpoint (tessera or etcd itself)
//! with the workloads people judge etcd by, and reports throughput, errors
//! by gRPC code and an HdrHistogram latency distribution.
//!
//! - Closed loop (default): `--clients` tasks send back to back.
//! - Open loop (`--rate`): operation *i* is due at `start + i/rate`;
//!   latency is measured from when it was due, not when it was sent, so a
//!   stalled server is charged for the requests it delayed (no coordinated
//!   omission).
//!
//! Flag names follow etcd's `benchmark` tool where they exist.

pub mod compare;
pub mod keys;
pub mod plot;
pub mod report;
mod run;
pub mod workloads;

use std::path::PathBuf;
use std::time::Duration;

pub use report::Summary;
pub use run::{drive, Worker};

/// Options every workload shares.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadOpts {
    /// Comma-separated endpoints (http://host:port); connections are spread over them.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// For https:// endpoints.
    #[command(flatten)]
    pub tls: crate::tls::client::ClientTlsArgs,
    /// Concurrent clients (each has one request in flight at a time).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// gRPC connections shared by the clients.
    #[arg(long, default_value_t = 10)]
    pub conns: usize,
    /// Operations in all (ignored when --duration is given).
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Run for this long instead of --total operations (e.g. 10s, 2m, 500ms).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open loop: operations per second, latency corrected for coordinated omission.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub key_space_size: u64,
    /// Walk the key space in order instead of drawing keys.
    #[arg(long)]
    pub sequential_keys: bool,
    /// How keys are drawn.
    #[arg(long, value_enum, default_value = "uniform")]
    pub key_dist: keys::Distribution,
    /// Zipf exponent for --key-dist zipf.
    #[arg(long, default_value_t = 0.99)]
    pub zipf_s: f64,
    /// Prefix of every key the benchmark writes.
    #[arg(long, default_value = "")]
    pub key_prefix: String,
    /// Send requests to the leader's endpoint only. On tessera any node
    /// forwards to each region's leader, so this only matters for etcd.
    #[arg(long)]
    pub target_leader: bool,
    /// Seed for key choice (printed; random if not given).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the percentile distribution (.hgrm) here.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write an HdrHistogram interval log (one histogram per second) here.
    #[arg(long)]
    pub interval_log: Option<PathBuf>,
    /// Write an SVG latency-percentile plot here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    pub no_progress: bool,
}

/// Parses `10s`, `1.5m`, `250ms`, `2h` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number.parse().map_err(|_| format!("{s:?}: expected a duration such as 10s, 2m or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?}: must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `R:W` (e.g. `9:1`) into read and write weights.
pub fn parse_ratio(s: &str) -> Result<(u32, u32), String> {
    let (r, w) = s.split_once(':').ok_or_else(|| format!("{s:?}: expected R:W such as 9:1"))?;
    let r: u32 = r.trim().parse().map_err(|_| format!("{s:?}: R is not a number"))?;
    let w: u32 = w.trim().parse().map_err(|_| format!("{s:?}: W is not a number"))?;
    if r + w == 0 {
        return Err(format!("{s:?}: R + W must be positive"));
    }
    Ok((r, w))
}

impl LoadOpts {
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(rand::random)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("--endpoints: at least one endpoint".into());
        }
        if self.clients == 0 || self.conns == 0 {
            return Err("--clients and --conns must be positive".into());
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err("--rate must be positive".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: LoadOpts,
    }

    #[test]
    fn options_parse_with_etcd_names() {
        let cli = Cli::parse_from([
            "bench",
            "--endpoints",
            "http://a:1,http://b:2",
            "--clients",
            "7",
            "--key-size",
            "16",
            "--val-size",
            "256",
            "--key-space-size",
            "99",
            "--sequential-keys",
            "--duration",
            "1.5m",
            "--rate",
            "500",
            "--key-dist",
            "zipf",
        ]);
        let o = cli.opts;
        assert_eq!(o.endpoints, vec!["http://a:1", "http://b:2"]);
        assert_eq!((o.clients, o.key_size, o.val_size, o.key_space_size), (7, 16, 256, 99));
        assert!(o.sequential_keys);
        assert_eq!(o.duration, Some(Duration::from_secs(90)));
        assert_eq!(o.rate, Some(500.0));
        assert_eq!(o.key_dist, keys::Distribution::Zipf);
        assert!(o.validate().is_ok());
        let defaults = Cli::parse_from(["bench"]).opts;
        assert_eq!(
            (defaults.clients, defaults.total, defaults.endpoints[0].as_str()),
            (100, 10_000, "http://127.0.0.1:2379")
        );
    }

    #[test]
    fn durations_and_ratios() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_ratio("9:1"), Ok((9, 1)));
        assert!(parse_ratio("9").is_err());
        assert!(parse_ratio("0:0").is_err());
    }
}
