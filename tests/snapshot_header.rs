//! DESIGN invariant 2 for writes that change nothing: a txn whose compare
//! fails, or a delete of a missing key, answers at a header revision R
//! where what it read is exactly the state at R, and R is at or above
//! every write acknowledged before it started (docs/cluster.md, "Writes
//! that change nothing"). Many clients do compare-and-set txns, puts and
//! deletes on a few keys (two regions, and a txn over both); every answer
//! is then checked against the history a watch from revision 1 rebuilds.
//! On one store, and on three stores whose region leaders are spread (the
//! leader store hands out the revisions, other stores lead regions).

mod inproc;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, EventType, Txn, TxnOp, TxnOpResponse, WatchOptions};
use inproc::cluster::InProcCluster;
use inproc::InProc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Two keys in each of the regions ["", "m") and ["m", ...).
const KEYS: [&str; 4] = ["a1", "a2", "n1", "n2"];
/// Few values, so that a compare on a value can turn true again.
const VALUES: [&str; 3] = ["x", "y", "z"];
const CLIENTS: usize = 16;
const OPS_PER_CLIENT: usize = 150;

/// What a compare of a failed txn asked.
#[derive(Debug, Clone)]
enum Cmp {
    ValueIs(String, String),
    Missing(String),
}

#[derive(Debug)]
enum Outcome {
    /// A write that changed something, at `header`.
    Changed,
    /// A txn whose compares failed; what its failure branch read (key,
    /// value and mod revision, `None` if absent).
    FailedCas { compares: Vec<Cmp>, read: Vec<(String, Option<(String, i64)>)> },
    /// A delete that found nothing.
    DeletedNothing(String),
}

#[derive(Debug)]
struct Op {
    client: usize,
    started: Instant,
    ended: Instant,
    header: i64,
    outcome: Outcome,
}

fn seed() -> u64 {
    let seed = std::env::var("TESSERA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed: {seed} (TESSERA_SEED={seed} repeats it)");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_cas_header_reflects_concurrent_writes() {
    let seed = seed();
    inproc::bounded(async {
        let node = InProc::start(&["m"]).await;
        let ops = workload(vec![node.endpoint.clone()], seed).await;
        check(&node.endpoint, ops).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_cas_header_reflects_concurrent_writes_on_a_cluster() {
    let seed = seed();
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &["m"]).await;
        let leader = cluster.leader().await;
        wait_for_a_region_led_elsewhere(&cluster, leader).await;
        let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint.clone()).collect();
        let ops = workload(endpoints, seed).await;
        check(&cluster.members[leader].endpoint, ops).await;
    })
    .await;
}

/// Waits (bounded) until leader balance moved a region's leadership away
/// from the leader store, whose revisions that leader then asks for.
async fn wait_for_a_region_led_elsewhere(cluster: &InProcCluster, leader: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let regions = cluster.members[leader].store.regions();
        let elsewhere = regions.iter().any(|r| {
            cluster.members.iter().enumerate().any(|(i, m)| {
                i != leader
                    && m.store.peer(r.id).is_ok_and(|p| p.shared.is_leader.load(std::sync::atomic::Ordering::Acquire))
            })
        });
        if elsewhere {
            return;
        }
        assert!(Instant::now() < deadline, "no region leader left the leader store within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the clients (each through one of `endpoints`) to the end; every
/// operation that answered.
async fn workload(endpoints: Vec<String>, seed: u64) -> Vec<Op> {
    let epoch = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (endpoint, epoch) = (endpoints[c % endpoints.len()].clone(), epoch.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ ((c as u64 + 1) << 32));
            let mut client = Client::connect([endpoint.as_str()], None).await.expect("connect");
            epoch.wait().await;
            let mut ops = Vec::new();
            for _ in 0..OPS_PER_CLIENT {
                let started = Instant::now();
                // An error is an unknown outcome: not checked.
                if let Some((header, outcome)) = one_op(&mut client, &mut rng).await {
                    ops.push(Op { client: c, started, ended: Instant::now(), header, outcome });
                }
            }
            ops
        }));
    }
    let mut ops = Vec::new();
    for t in tasks {
        ops.extend(t.await.expect("client task"));
    }
    ops
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

/// One random operation: its header revision and outcome.
async fn one_op(client: &mut Client, rng: &mut StdRng) -> Option<(i64, Outcome)> {
    let key = pick(rng, &KEYS);
    let roll = rng.random_range(0..100);
    if roll < 30 {
        let r = client.put(key, pick(rng, &VALUES), None).await.ok()?;
        return Some((r.header()?.revision(), Outcome::Changed));
    }
    if roll < 45 {
        let r = client.delete(key, None).await.ok()?;
        let outcome = if r.deleted() == 0 { Outcome::DeletedNothing(key.into()) } else { Outcome::Changed };
        return Some((r.header()?.revision(), outcome));
    }
    // A compare-and-set: on one key (by value, or "absent"), or on a key
    // in each region (a cross-region txn).
    let compares = if roll < 70 {
        vec![Cmp::ValueIs(key.into(), pick(rng, &VALUES).into())]
    } else if roll < 85 {
        vec![Cmp::Missing(key.into())]
    } else {
        let (a, n) = (pick(rng, &KEYS[..2]), pick(rng, &KEYS[2..]));
        vec![Cmp::ValueIs(a.into(), pick(rng, &VALUES).into()), Cmp::ValueIs(n.into(), pick(rng, &VALUES).into())]
    };
    let keys: Vec<String> = compares.iter().map(|c| cmp_key(c).to_string()).collect();
    let txn = Txn::new()
        .when(compares.iter().map(to_compare).collect::<Vec<_>>())
        .and_then(keys.iter().map(|k| TxnOp::put(k.as_str(), pick(rng, &VALUES), None)).collect::<Vec<_>>())
        .or_else(keys.iter().map(|k| TxnOp::get(k.as_str(), None)).collect::<Vec<_>>());
    let r = client.txn(txn).await.ok()?;
    let header = r.header()?.revision();
    if r.succeeded() {
        return Some((header, Outcome::Changed));
    }
    let mut read = Vec::new();
    for (k, op) in keys.iter().zip(r.op_responses()) {
        let TxnOpResponse::Get(g) = op else { panic!("the failure branch only reads") };
        let kv = g.kvs().first().map(|kv| (kv.value_str().unwrap().to_string(), kv.mod_revision()));
        read.push((k.clone(), kv));
    }
    Some((header, Outcome::FailedCas { compares, read }))
}

fn cmp_key(c: &Cmp) -> &str {
    match c {
        Cmp::ValueIs(k, _) | Cmp::Missing(k) => k,
    }
}

fn to_compare(c: &Cmp) -> Compare {
    match c {
        Cmp::ValueIs(k, v) => Compare::value(k.as_str(), CompareOp::Equal, v.as_str()),
        Cmp::Missing(k) => Compare::version(k.as_str(), CompareOp::Equal, 0),
    }
}

/// Every key's history: (revision, value and mod revision; `None` deleted).
type History = HashMap<String, Vec<(i64, Option<(String, i64)>)>>;

/// The history up to `last`, from a watch from revision 1 through `endpoint`.
async fn history(endpoint: &str, last: i64) -> History {
    let mut client = Client::connect([endpoint], None).await.expect("connect");
    let opts = WatchOptions::new().with_prefix().with_start_revision(1);
    let mut stream = client.watch("", Some(opts)).await.expect("watch");
    let mut history = History::new();
    let mut newest = 0;
    while newest < last {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("no watch response within 10 s")
            .expect("watch failed")
            .expect("watch ended");
        for ev in resp.events() {
            let kv = ev.kv().expect("an event has a kv");
            newest = kv.mod_revision();
            let value = (ev.event_type() == EventType::Put).then(|| (kv.value_str().unwrap().to_string(), newest));
            history.entry(kv.key_str().unwrap().to_string()).or_default().push((newest, value));
        }
    }
    history
}

/// `key` at revision `at`: its value and mod revision, `None` if absent.
fn state_at(history: &History, key: &str, at: i64) -> Option<(String, i64)> {
    let versions = history.get(key)?;
    versions.iter().take_while(|(rev, _)| *rev <= at).last().and_then(|(_, v)| v.clone())
}

fn holds(history: &History, c: &Cmp, at: i64) -> bool {
    match c {
        Cmp::ValueIs(k, v) => state_at(history, k, at).is_some_and(|(value, _)| &value == v),
        Cmp::Missing(k) => state_at(history, k, at).is_none(),
    }
}

/// Checks every answer that changed nothing against the history.
async fn check(endpoint: &str, ops: Vec<Op>) {
    let last = ops.iter().map(|o| o.header).max().expect("some operation answered");
    let history = history(endpoint, last).await;
    // Real-time order: the newest write acknowledged before each instant.
    let mut writes: Vec<(Instant, i64)> =
        ops.iter().filter(|o| matches!(o.outcome, Outcome::Changed)).map(|o| (o.ended, o.header)).collect();
    writes.sort();
    let acked_before = |t: Instant| writes.iter().take_while(|(end, _)| *end < t).map(|(_, r)| *r).max().unwrap_or(0);
    let (mut failed_cas, mut missing, mut wrong) = (0, 0, Vec::new());
    for op in &ops {
        let at = op.header;
        let problem = match &op.outcome {
            Outcome::Changed => continue,
            Outcome::FailedCas { compares, read } => {
                failed_cas += 1;
                if compares.iter().all(|c| holds(&history, c, at)) {
                    Some(format!("its compares {compares:?} hold at {at}"))
                } else {
                    read.iter()
                        .find(|(k, got)| *got != state_at(&history, k, at))
                        .map(|(k, got)| format!("it read {k} = {got:?}, at {at} it is {:?}", state_at(&history, k, at)))
                }
            }
            Outcome::DeletedNothing(k) => {
                missing += 1;
                state_at(&history, k, at).map(|kv| format!("{k} is {kv:?} at {at}"))
            }
        };
        let floor = acked_before(op.started);
        let problem = problem.or_else(|| (at < floor).then(|| format!("{floor} was acknowledged before it started")));
        if let Some(p) = problem {
            wrong.push(format!("client {}: {:?} answered at {at}: {p}", op.client, op.outcome));
        }
    }
    println!("{} operations, {failed_cas} failed CAS, {missing} deletes of nothing, {} wrong", ops.len(), wrong.len());
    assert!(failed_cas > 100 && missing > 20, "too few writes that changed nothing to check");
    assert!(
        wrong.is_empty(),
        "{} of {} answers that changed nothing are wrong:\n{}",
        wrong.len(),
        failed_cas + missing,
        wrong[..wrong.len().min(10)].join("\n")
    );
}
