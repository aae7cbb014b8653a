//! The fault harness (`tessera faults`): real `tessera serve` (or etcd)
//! processes on loopback, a seeded workload and a seeded fault schedule, a
//! recorded history, and a checker of that whole history. docs/faults.md
//! tells what it checks and how to run it.
//!
//! - [`history`]: what a run records; [`checker`]: judges it (pure).
//! - [`cluster`] and [`proxy`]: the member processes and their peer links.
//! - [`workload`], [`client`], [`watcher`]: the clients.
//! - [`inject`]: the faults; [`avail`]: throughput and recovery.
//! - [`run`]: one run; this module: the command and its ledger.

pub mod avail;
pub mod checker;
pub mod client;
pub mod cluster;
pub mod history;
pub mod inject;
pub mod proxy;
pub mod run;
pub mod watcher;
pub mod workload;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use cluster::Target;
use inject::Kind;
use run::{RunConfig, RunResult};

/// `tessera faults`: seeded runs under faults, each checked and appended to a ledger.
#[derive(Debug, Clone, clap::Args)]
pub struct FaultArgs {
    /// Members of each run's cluster.
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// The first run's seed (run i uses seed + i); default: drawn and printed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How many runs (seeds seed, seed+1, ...).
    #[arg(long, default_value_t = 1)]
    pub runs: u64,
    /// How long each run's workload lasts.
    #[arg(long, default_value = "30s", value_parser = crate::bench::parse_duration)]
    pub duration: Duration,
    /// Fault kinds to draw from (kill, pause, cut, partition, move-leader,
    /// transfer-leader, split-merge; `none`: no faults); those that do not
    /// apply are skipped.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kill,pause,cut,partition,move-leader,transfer-leader,split-merge"
    )]
    pub faults: Vec<String>,
    /// Workload clients.
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Operations per second, all clients together.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Keys of the workload (tessera splits them over --regions regions).
    #[arg(long, default_value_t = 30)]
    pub keys: usize,
    #[arg(long, default_value_t = 8)]
    pub regions: usize,
    /// Run etcd at this path instead of tessera (e.g. /usr/bin/etcd).
    #[arg(long)]
    pub etcd: Option<PathBuf>,
    /// Append one line per run to this file (tab-separated; a header if new).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Stop at the first failed run.
    #[arg(long)]
    pub stop_on_failure: bool,
}

const LEDGER_HEADER: &str = "date\tcommit\ttarget\tmembers\tseed\tduration_s\tfaults\tops_ok\tops_unknown\tops_failed\tacked_writes\tlost_writes\tanomalies\tresult\trecovery_p50_s\trecovery_max_s\tnot_recovered\tdetail\n";

/// Runs the runs; the number that failed.
pub async fn main(args: FaultArgs) -> Result<u64> {
    let seed = args.seed.unwrap_or_else(|| rand::random::<u32>() as u64);
    let target = match &args.etcd {
        Some(bin) => Target::Etcd(bin.clone()),
        None => Target::Tessera { split_keys: workload::split_keys(args.keys, args.regions) },
    };
    let faults = args.faults.iter().filter(|f| *f != "none").map(|f| Kind::parse(f)).collect::<Result<Vec<_>>>()?;
    let mut failed = 0;
    for i in 0..args.runs {
        let cfg = RunConfig {
            target: target.clone(),
            members: args.members,
            seed: seed + i,
            duration: args.duration,
            faults: faults.clone(),
            clients: args.clients,
            rate: args.rate,
            keys: args.keys,
        };
        eprintln!("faults: run {}/{} {} x{} seed {}", i + 1, args.runs, target.name(), cfg.members, cfg.seed);
        let result = run::run(&cfg).await.with_context(|| format!("run with seed {}", cfg.seed))?;
        println!("{}", summary(&cfg, &result));
        if let Some(path) = &args.ledger {
            append_ledger(path, &cfg, &result)?;
        }
        if !result.ok() {
            failed += 1;
            if args.stop_on_failure {
                break;
            }
        }
    }
    Ok(failed)
}

fn fault_counts(r: &RunResult) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for f in &r.injected {
        *counts.entry(f.kind.name()).or_insert(0) += 1;
    }
    let v: Vec<String> = counts.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

fn recovery_stats(r: &RunResult) -> (String, String, usize) {
    let back: Vec<f64> = r.recoveries.iter().filter_map(|(_, s)| *s).collect();
    let never = r.recoveries.len() - back.len();
    match avail::spread(&back) {
        Some((p50, _, max)) => (format!("{p50:.1}"), format!("{max:.1}"), never),
        None => ("-".into(), "-".into(), never),
    }
}

/// A human summary of one run.
pub fn summary(cfg: &RunConfig, r: &RunResult) -> String {
    let (p50, max, never) = recovery_stats(r);
    let mut s = format!(
        "{} {} x{} seed {}: {} | faults {} | ops ok {} unknown {} failed {} | {} | recovery p50 {p50} s max {max} s, {never} not back\n",
        if r.ok() { "PASS" } else { "FAIL" },
        cfg.target.name(),
        cfg.members,
        cfg.seed,
        r.report.summary(),
        fault_counts(r),
        r.ops[0],
        r.ops[1],
        r.ops[2],
        r.report.acked_writes,
    );
    for (f, (_, back)) in r.injected.iter().zip(&r.recoveries) {
        let back = back.map_or("writes not back".into(), |s| format!("writes back in {s:.1} s"));
        s += &format!("  {:6.1}s-{:6.1}s {} ({back})\n", f.start as f64 / 1e9, f.healed as f64 / 1e9, f.detail);
    }
    s += &format!("  ok ops per second: {:?}\n", r.per_second);
    if let Some(e) = &r.error {
        s += &format!("  error: {e}\n");
    }
    for a in r.report.anomalies.iter().take(10) {
        s += &format!("  {}: {}\n", a.class, a.detail);
    }
    if let Some(dir) = &r.kept {
        s += &format!("  kept: {}\n", dir.display());
    }
    s
}

fn commit() -> String {
    let out = std::process::Command::new("git").args(["describe", "--always", "--dirty"]).output();
    out.ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().into())
}

fn append_ledger(path: &PathBuf, cfg: &RunConfig, r: &RunResult) -> Result<()> {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    if new {
        f.write_all(LEDGER_HEADER.as_bytes())?;
    }
    let (p50, max, never) = recovery_stats(r);
    let detail = r.error.clone().unwrap_or_else(|| r.report.summary()).replace(['\t', '\n'], " ");
    let line = format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{p50}\t{max}\t{never}\t{}\n",
        crate::bench::compare::utc_now(),
        commit(),
        cfg.target.name(),
        cfg.members,
        cfg.seed,
        cfg.duration.as_secs(),
        fault_counts(r),
        r.ops[0],
        r.ops[1],
        r.ops[2],
        r.report.acked_writes,
        r.report.lost_writes,
        r.report.anomaly_count(),
        if r.ok() { "pass" } else { "FAIL" },
        detail.chars().take(300).collect::<String>(),
    );
    f.write_all(line.as_bytes())?;
    Ok(())
}
