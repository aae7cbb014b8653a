//! `tessera bench compare`: starts etcd and tessera side by side on this
//! machine (both fsync every write), runs each workload against both,
//! alternating which goes first, for several rounds, and writes a markdown
//! table of medians and ratios (tessera / etcd) with the exact command and
//! the machine, plus an SVG plot per workload.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::report::{parse_hgrm, Summary};
use super::workloads::Workload;
use super::{parse_duration, LoadOpts};

#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Rounds; each runs every workload against both servers.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Workloads: put, range-l, range-s, range-l-100, txn-put, txn-mixed,
    /// delete, mixed, watch-latency, lease-keepalive.
    #[arg(long, value_delimiter = ',', default_value = "put,range-l,range-s,txn-put,watch-latency")]
    pub workloads: Vec<String>,
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    #[arg(long, default_value_t = 10)]
    pub conns: usize,
    /// Length of each run.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// The etcd binary to compare with.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Regions of the tessera store (its --initial-split-keys); by default
    /// the key space is cut into 4 equal regions.
    #[arg(long)]
    pub split_keys: Option<String>,
    /// Where the report and plots go.
    #[arg(long, default_value = "docs/bench")]
    pub out_dir: PathBuf,
}

/// One workload spec by name, sized by the compare options.
fn workload(name: &str, base: &LoadOpts) -> anyhow::Result<Workload> {
    let o = base.clone();
    Ok(match name {
        "put" => Workload::Put(o),
        "range-l" | "range-s" => Workload::Range { opts: o, consistency: name[6..].to_string(), range_keys: 1 },
        "range-l-100" => Workload::Range { opts: o, consistency: "l".into(), range_keys: 100 },
        "txn-put" => Workload::TxnPut { opts: o, compare: "mod".into() },
        "txn-mixed" => Workload::TxnMixed { opts: o, txn_ops: 4, spread: false },
        "delete" => Workload::Delete(o),
        "mixed" => Workload::Mixed { opts: o, ratio: (9, 1), consistency: "l".into() },
        "watch-latency" => {
            Workload::WatchLatency { opts: LoadOpts { rate: Some(1000.0), clients: 10, ..o }, watchers: 10 }
        }
        "lease-keepalive" => Workload::LeaseKeepalive(o),
        _ => bail!("unknown workload {name:?}"),
    })
}

/// A server process killed on drop, with its data dir.
struct Server {
    name: &'static str,
    endpoint: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_etcd(bin: &Path) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let (client, peer) = (free_port()?, free_port()?);
    let endpoint = format!("http://127.0.0.1:{client}");
    let child = Command::new(bin)
        .args(["--name", "bench", "--data-dir"])
        .arg(dir.path())
        .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &format!("bench=http://127.0.0.1:{peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} (install Debian's etcd-server)", bin.display()))?;
    Ok(Server { name: "etcd", endpoint, child, _dir: dir })
}

fn start_tessera(split_keys: &str) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen-client-urls", "http://127.0.0.1:0", "--log-level", "warn"])
        .args(["--initial-split-keys", split_keys])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut endpoint = None;
    for line in BufReader::new(stdout).lines() {
        if let Some(url) = line?.strip_prefix("tessera: serving clients on ") {
            endpoint = Some(url.to_string());
            break;
        }
    }
    let Some(endpoint) = endpoint else { bail!("tessera exited before serving") };
    Ok(Server { name: "tessera", endpoint, child, _dir: dir })
}

/// Waits (bounded) until a Range succeeds.
async fn wait_serving(endpoint: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut kv) = crate::proto::etcdserverpb::kv_client::KvClient::connect(endpoint.to_string()).await {
            let req = crate::proto::etcdserverpb::RangeRequest { key: b"probe".to_vec(), ..Default::default() };
            if kv.range(req).await.is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{endpoint} did not start serving within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// What the report says about the machine.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0) / 1024 / 1024)
        })
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu}), {mem} GiB memory")
}

/// `YYYY-MM-DD` (UTC) from the system clock.
fn today() -> String {
    utc_now()[..10].to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC) from the system clock.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub async fn run(args: &CompareArgs, command_line: &str) -> anyhow::Result<PathBuf> {
    let etcd = start_etcd(&args.etcd)?;
    let split_keys =
        args.split_keys.clone().unwrap_or_else(|| default_split_keys(&crate::bench::workloads::default_opts()));
    let tessera = start_tessera(&split_keys)?;
    wait_serving(&etcd.endpoint).await?;
    wait_serving(&tessera.endpoint).await?;
    let seed: u64 = rand::random();
    eprintln!("compare: etcd at {}, tessera at {}, seed {seed}", etcd.endpoint, tessera.endpoint);
    let mut results: Vec<Row> = args
        .workloads
        .iter()
        .map(|w| Row { name: w.clone(), runs: [Vec::new(), Vec::new()], failed: [None, None] })
        .collect();
    for round in 0..args.rounds {
        for (wi, name) in args.workloads.iter().enumerate() {
            let order: [&Server; 2] = if round % 2 == 0 { [&etcd, &tessera] } else { [&tessera, &etcd] };
            for server in order {
                let opts = LoadOpts {
                    endpoints: vec![server.endpoint.clone()],
                    clients: args.clients,
                    conns: args.conns,
                    duration: Some(args.duration),
                    no_progress: true,
                    ..crate::bench::workloads::default_opts()
                };
                let w = workload(name, &opts)?;
                let side = usize::from(server.name == "tessera");
                match w.run(seed.wrapping_add(round as u64)).await {
                    Ok(summaries) => {
                        let s = summaries.into_iter().next().expect("a workload gives a summary");
                        eprintln!(
                            "round {round} {name} on {}: {:.0} ops/s, p99 {:.3} ms, errors {}",
                            server.name,
                            s.ops_per_sec(),
                            s.ms(99.0),
                            s.error_count()
                        );
                        results[wi].runs[side].push(s);
                    }
                    Err(e) => {
                        // E.g. a service the server does not have: reported, not fatal.
                        eprintln!("round {round} {name} on {}: could not run: {e:#}", server.name);
                        results[wi].failed[side] = Some(format!("{e:#}"));
                    }
                }
            }
        }
    }
    drop((etcd, tessera));
    write_report(args, &split_keys, command_line, &results)
}

/// Cuts the benchmark key space into 4 regions of equal size.
pub fn default_split_keys(opts: &LoadOpts) -> String {
    (1..4)
        .map(|j| {
            String::from_utf8_lossy(&super::keys::key_of(&opts.key_prefix, opts.key_space_size * j / 4, opts.key_size))
                .into_owned()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One workload's results, [etcd, tessera].
struct Row {
    name: String,
    runs: [Vec<Summary>; 2],
    /// Why a server could not run the workload at all.
    failed: [Option<String>; 2],
}

fn write_report(args: &CompareArgs, split_keys: &str, command_line: &str, results: &[Row]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&args.out_dir)?;
    let date = today();
    let etcd_version = Command::new(&args.etcd)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default();
    let mut md = format!(
        "# tessera vs etcd, {date}\n\nMachine: {}. Both servers on this machine, loopback, each with its default fsync per write \
         (etcd's WAL; tessera's one fsync per raft poll round). tessera with 4 regions (split at {}). {}, tessera {}.\n\n\
         Command: `{command_line}`\n\n{} rounds of {:?} per workload and server, alternating which server goes first; \
         {} clients on {} connections (watch-latency: 10 putters at 1000 puts/s open loop, 10 watchers). Medians over rounds.\n\n\
         | workload | etcd ops/s | tessera ops/s | ratio | etcd p99 ms | tessera p99 ms | p99 ratio | tessera errors |\n|---|---|---|---|---|---|---|---|\n",
        machine(),
        split_keys,
        etcd_version,
        env!("CARGO_PKG_VERSION"),
        args.rounds,
        args.duration,
        args.clients,
        args.conns
    );
    let mut plots = String::from("\n## Latency by percentile (last round)\n");
    for Row { name, runs: [etcd, tessera], failed } in results {
        if let Some(why) = failed.iter().flatten().next() {
            let who = if failed[0].is_some() { "etcd" } else { "tessera" };
            md.push_str(&format!("| {name} | | | | | | | {who} could not run it: {} |\n", why.replace('|', "/")));
            continue;
        }
        let ops = |v: &Vec<Summary>| median(v.iter().map(Summary::ops_per_sec).collect());
        let p99 = |v: &Vec<Summary>| median(v.iter().map(|s| s.ms(99.0)).collect());
        let errors: u64 = tessera.iter().map(Summary::error_count).sum();
        let codes: Vec<String> = tessera
            .iter()
            .flat_map(|s| s.errors.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        md.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {:.2} | {:.3} | {:.3} | {:.2} | {}{} |\n",
            ops(etcd),
            ops(tessera),
            ops(tessera) / ops(etcd),
            p99(etcd),
            p99(tessera),
            p99(tessera) / p99(etcd),
            errors,
            if codes.is_empty() { String::new() } else { format!(" ({})", codes.join(", ")) }
        ));
        // A plot of the last round of each.
        if let (Some(e), Some(t)) = (etcd.last(), tessera.last()) {
            let runs =
                vec![("etcd".to_string(), parse_hgrm(&e.hgrm())), ("tessera".to_string(), parse_hgrm(&t.hgrm()))];
            let file = format!("compare-{date}-{}.svg", name.replace(':', "_"));
            std::fs::write(
                args.out_dir.join(&file),
                super::plot::svg(&format!("{name}: latency by percentile"), &runs),
            )?;
            plots.push_str(&format!("\n### {name}\n\n![{name}]({file})\n"));
        }
    }
    md.push_str(&plots);
    let path = args.out_dir.join(format!("compare-{date}.md"));
    std::fs::write(&path, md)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_dates() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert!(median(vec![]).is_nan());
        let d = today();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"));
    }

    #[test]
    fn every_listed_workload_exists() {
        let o = crate::bench::workloads::default_opts();
        for w in [
            "put",
            "range-l",
            "range-s",
            "range-l-100",
            "txn-put",
            "txn-mixed",
            "delete",
            "mixed",
            "watch-latency",
            "lease-keepalive",
        ] {
            workload(w, &o).unwrap();
        }
        assert!(workload("nope", &o).is_err());
    }
}
