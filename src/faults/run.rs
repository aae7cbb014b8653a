//! One fault run: start the members, drive the workload and the watchers,
//! inject faults on a seeded schedule, heal, read back the history and
//! every member's state, and check it all.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use super::checker::{self, CheckConfig, Report};
use super::client::{self, Client};
use super::cluster::{Cluster, Target};
use super::history::{History, KeyRange, MemberState, Op, Outcome, Reply, WatchLog};
use super::inject::{self, Injected, Kind};
use super::watcher::{self, Watcher};
use super::workload::{self, Recorder};
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::{HashKvRequest, RangeRequest};

/// What one run does.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub target: Target,
    pub members: usize,
    pub seed: u64,
    /// How long the workload runs (faults stop 5 s before its end).
    pub duration: Duration,
    /// The fault kinds to draw from (those that apply to the target).
    pub faults: Vec<Kind>,
    pub clients: usize,
    /// Operations per second, all clients together.
    pub rate: f64,
    pub keys: usize,
}

/// What one run found.
pub struct RunResult {
    pub injected: Vec<Injected>,
    pub report: Report,
    /// Seconds until writes were back after each fault (None: never, or no rate before).
    pub recoveries: Vec<(Kind, Option<f64>)>,
    pub ops: [usize; 3],
    /// Successful operations in each second of the run.
    pub per_second: Vec<usize>,
    /// A failure of the run itself (a member crashed, the cluster never
    /// recovered): the run fails whatever the checker says.
    pub error: Option<String>,
    /// The data dirs, logs and history of a failed run.
    pub kept: Option<PathBuf>,
}

impl RunResult {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.report.ok()
    }
}

const SECOND: Duration = Duration::from_secs(1);

pub async fn run(cfg: &RunConfig) -> Result<RunResult> {
    let mut cluster = Cluster::start(cfg.target.clone(), cfg.members).await?;
    let rec = Recorder::new();
    let endpoints = cluster.endpoints();
    let channels = client::channels(&endpoints);
    let clients: Vec<Client> = (0..cfg.clients).map(|i| Client::new(channels.clone(), i)).collect();
    let ranges = [KeyRange { key: vec![0], range_end: vec![0] }, KeyRange::prefix(b"k1")];
    let watchers: Vec<Watcher> =
        ranges.iter().enumerate().map(|(i, r)| watcher::start(&rec, i as u32, r.clone(), channels.clone())).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = workload::start(&rec, clients, cfg.seed, cfg.keys, cfg.rate, stop.clone());

    let kinds: Vec<Kind> = cfg.faults.iter().copied().filter(|k| k.applies(&cfg.target, cfg.members)).collect();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut injected = Vec::new();
    let mut error = schedule(&mut cluster, &rec, &kinds, &mut rng, cfg.duration, &mut injected)
        .await
        .err()
        .map(|e| format!("{e:#}"));
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = tokio::time::timeout(2 * client::REQUEST_TIMEOUT, t).await;
    }
    if error.is_none() {
        error = cluster.crashed();
    }
    cluster.heal_all()?;
    let mut history = History::default();
    if error.is_none() {
        match read_back(&cluster, &rec, &channels, watchers).await {
            Ok(h) => history = h,
            Err(e) => error = Some(format!("after healing: {e:#}")),
        }
    }
    if error.is_none() {
        error = cluster.crashed();
    }
    history.records = std::mem::take(&mut *rec.records.lock());
    history.end = rec.now();
    history.faults = injected.iter().map(|f| (f.start, f.healed)).collect();
    let report = checker::check(&history, &CheckConfig::default());
    let times = super::avail::write_times(&history.records);
    let recoveries = injected.iter().map(|f| (f.kind, super::avail::recovery(&times, f, history.end))).collect();
    let mut ops = [0; 3];
    for r in &history.records {
        ops[match r.outcome {
            Outcome::Ok(_) => 0,
            Outcome::Unknown(_) => 1,
            Outcome::Failed(_) => 2,
        }] += 1;
    }
    let per_second = super::avail::per_second(&history.records, history.end);
    let mut result = RunResult { injected, report, recoveries, ops, per_second, error, kept: None };
    if !result.ok() {
        let dir = cluster.keep();
        let _ = std::fs::write(dir.join("history.txt"), format!("{history:#?}"));
        let _ = std::fs::write(dir.join("anomalies.txt"), format!("{:#?}\n{:#?}", result.error, result.report));
        result.kept = Some(dir);
    }
    Ok(result)
}

/// Injects faults one at a time until `duration` less five seconds has
/// passed: a warm-up, then each fault held 1-4 s, healed, and 5-7 s of
/// quiet (the recovery is measured there).
async fn schedule(
    cluster: &mut Cluster,
    rec: &Recorder,
    kinds: &[Kind],
    rng: &mut StdRng,
    duration: Duration,
    injected: &mut Vec<Injected>,
) -> Result<()> {
    let start = Instant::now();
    let until = start + duration.saturating_sub(5 * SECOND);
    tokio::time::sleep(3 * SECOND).await;
    while Instant::now() < until {
        if let Some(crash) = cluster.crashed() {
            bail!(crash);
        }
        let Some(&kind) = kinds.choose(rng) else {
            tokio::time::sleep(SECOND).await;
            continue;
        };
        let hold = Duration::from_millis(rng.random_range(1000..4000));
        let begun = rec.now();
        let (active, detail) = inject::begin(cluster, kind, rng, hold).await?;
        if !matches!(active, inject::Active::Done) {
            tokio::time::sleep(hold).await;
        }
        inject::heal(cluster, active)?;
        eprintln!("faults: {:6.1}s {detail}", begun as f64 / 1e9);
        injected.push(Injected { kind, detail, start: begun, healed: rec.now() });
        tokio::time::sleep(Duration::from_millis(rng.random_range(5000..7000))).await;
    }
    Ok(())
}

/// After the run healed: a last write (its revision E ends the run), the
/// watchers once they delivered the newest event of their range up to E,
/// every member's state at E or later, and then the history from revision 1
/// up to a write made after all that (so it holds whatever happened while
/// the members were read, lease expiries included).
async fn read_back(cluster: &Cluster, rec: &Recorder, channels: &[Channel], watchers: Vec<Watcher>) -> Result<History> {
    cluster.wait_writable(Duration::from_secs(60)).await?;
    let last = last_write(rec, channels).await?;
    let events = read_history(channels, last).await?;
    let watches = finish_watchers(watchers, &events).await;
    let mut members = Vec::new();
    for (i, ch) in channels.iter().enumerate() {
        members.push(member_state(&cluster.members[i].name, ch.clone(), last).await?);
    }
    let after = last_write(rec, channels).await?;
    let events = read_history(channels, after).await?;
    Ok(History { watches, events, final_revision: after, members, ..Default::default() })
}

/// Every event up to `until` through the first member that gives them.
async fn read_history(channels: &[Channel], until: i64) -> Result<Vec<super::history::Event>> {
    for ch in channels {
        match watcher::history(ch.clone(), until, Duration::from_secs(30)).await {
            Ok(e) => return Ok(e),
            Err(e) => eprintln!("faults: history read failed: {e:#}"),
        }
    }
    bail!("no member gave the history up to revision {until}")
}

/// Puts the run's last key (retried for 30 s); its revision.
async fn last_write(rec: &Recorder, channels: &[Channel]) -> Result<i64> {
    let mut client = Client::new(channels.to_vec(), 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    while Instant::now() < deadline {
        attempt += 1;
        let value = format!("end-{}-{attempt}", rec.now()).into_bytes();
        let op = Op::Put { key: b"zz/end".to_vec(), value, lease: 0 };
        if let Outcome::Ok(Reply::Put { revision }) = rec.run(&mut client, u32::MAX, op).await {
            return Ok(revision);
        }
    }
    bail!("the last write did not succeed within 30 s")
}

/// Waits (at most 20 s) until each watcher delivered the newest event of
/// its range, then stops them.
async fn finish_watchers(watchers: Vec<Watcher>, events: &[super::history::Event]) -> Vec<WatchLog> {
    let deadline = Instant::now() + Duration::from_secs(20);
    for w in &watchers {
        let range = w.log.lock().range.clone();
        let newest = events.iter().rev().find(|e| range.contains(&e.kv.key)).map_or(0, |e| e.kv.mod_revision);
        while w.last.load(Ordering::SeqCst) < newest && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    watchers.into_iter().map(Watcher::finish).collect()
}

/// A member's serializable view of every key once it reached `last`, and
/// its HashKV at `last` (each retried for 20 s).
async fn member_state(name: &str, ch: Channel, last: i64) -> Result<MemberState> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut kv = KvClient::new(ch.clone());
    let mut state = None;
    while state.is_none() && Instant::now() < deadline {
        let req = RangeRequest { key: vec![0], range_end: vec![0], serializable: true, ..Default::default() };
        if let Ok(Ok(resp)) = tokio::time::timeout(SECOND * 3, kv.range(req)).await {
            let resp = resp.into_inner();
            let revision = resp.header.map_or(0, |h| h.revision);
            if revision >= last {
                state = Some((revision, resp.kvs.into_iter().map(client::kv_of).collect()));
            }
        }
        if state.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let Some((revision, kvs)) = state else { bail!("member {name} did not reach revision {last} within 20 s") };
    let mut m = MaintenanceClient::new(ch);
    let mut hash_kv = None;
    while hash_kv.is_none() && Instant::now() < deadline {
        if let Ok(Ok(resp)) = tokio::time::timeout(SECOND * 3, m.hash_kv(HashKvRequest { revision: last })).await {
            hash_kv = Some((last, resp.into_inner().hash));
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(MemberState { member: name.to_string(), revision, kvs, hash_kv })
}
