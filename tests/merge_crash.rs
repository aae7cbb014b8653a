//! Issue [split-merge]: the leader store killed (a real process aborting
//! as abruptly as kill -9) in the middle of a merge, under the seeded
//! workload of puts, deletes, cross-region txns, linearizable reads and a
//! watch. The merge ends the same way on every store (rolled back when the
//! commit was not proposed, finished when it had committed), no
//! acknowledged write is lost, every read and the final state match the
//! history the watcher saw, and the restarted store catches up.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{connect, make_leader_store, Cluster, CLUSTER_READY as READY};
use etcd_client::{Client, EventType, GetOptions, Txn, TxnOp, WatchOptions};
use rand::{Rng, SeedableRng};
use tessera::proto::tesserapb::admin_client::AdminClient;
use tessera::proto::tesserapb::{MergeRequest, RegionsRequest, SplitRequest};

/// What a write did to which keys (`None`: deleted).
type Changes = Vec<(String, Option<String>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_store_killed_after_the_prepare_rolls_the_merge_back() {
    crash_mid_merge("merge-after-prepare", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_store_killed_applying_the_commit_finishes_the_merge() {
    crash_mid_merge("merge-commit-apply", true).await;
}

fn key(i: usize) -> String {
    format!("k/{i:03}")
}

/// Retries `f` (a call through `endpoint`) until it succeeds within READY.
macro_rules! eventually {
    ($what:expr, $f:expr) => {{
        let deadline = Instant::now() + READY;
        loop {
            match $f.await {
                Ok(v) => break v,
                Err(e) => assert!(Instant::now() < deadline, "{}: {e:?}", $what),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

/// The user regions through `endpoint` as (id, start, end, merging_into).
async fn regions(endpoint: &str) -> Vec<(u64, Vec<u8>, Vec<u8>, u64)> {
    let mut admin = eventually!("admin client", AdminClient::connect(endpoint.to_string()));
    let resp = eventually!("admin regions", admin.regions(RegionsRequest {})).into_inner();
    let mut out: Vec<_> = resp
        .regions
        .into_iter()
        .map(|i| i.region.unwrap())
        .map(|r| (r.id, r.start_key, r.end_key, r.merging_into))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// The regions left and right of `key` (the right one starts there).
async fn neighbours_at(endpoint: &str, key: &str) -> (u64, u64) {
    let now = regions(endpoint).await;
    let right = now.iter().position(|r| r.1 == key.as_bytes()).expect("a region starts at the key");
    (now[right - 1].0, now[right].0)
}

/// The leader store the member serving `endpoint` sees.
async fn leader_seen(endpoint: &str) -> u64 {
    let mut c = connect(endpoint).await;
    eventually!("status", c.status()).leader()
}

async fn crash_mid_merge(failpoint: &'static str, finishes: bool) {
    let seed: u64 = std::env::var("TESSERA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed: {seed}; n1 aborts at {failpoint}");
    let run = tokio::time::timeout(Duration::from_secs(240), run(seed, failpoint, finishes));
    run.await.expect("merge crash test timed out");
}

async fn run(seed: u64, failpoint: &'static str, finishes: bool) {
    let armed = move |i: usize| if i == 0 { vec!["--failpoint".to_string(), failpoint.to_string()] } else { vec![] };
    let mut cluster = tokio::task::spawn_blocking(move || Cluster::start_with(3, armed)).await.unwrap();
    let (n1, n2, n3) = (cluster.endpoint(0), cluster.endpoint(1), cluster.endpoint(2));

    // n1 (armed) becomes the leader store: it runs the merge.
    let n1_id = make_leader_store(&n1).await;
    let mut c = connect(&n2).await;
    let start = eventually!("first put", c.put("k/000", "start", None)).header().unwrap().revision();
    let mut admin = AdminClient::connect(n2.clone()).await.unwrap();
    eventually!("split", admin.split(SplitRequest { key: b"k/100".to_vec(), region_id: 0, ..Default::default() }));
    let (left, right) = neighbours_at(&n2, "k/100").await;

    // The watcher (through n3, reconnecting from where it left off) and
    // six seeded clients through the two members that stay up.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_all(n3.clone(), start, stop.clone()));
    let failed: Arc<Mutex<Vec<Changes>>> = Arc::default();
    let mut clients = Vec::new();
    for w in 0..6u64 {
        let endpoints = [n2.clone(), n3.clone()];
        let (stop, failed) = (stop.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (w + 1));
            let mut at = w as usize % 2;
            let mut c = connect(&endpoints[at]).await;
            let (mut acked, mut reads) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let k = key(rng.random_range(0..200));
                let value = format!("{w}-{i}");
                let other = key(rng.random_range(0..200));
                let op = rng.random_range(0..10);
                let is_txn = matches!(op, 1 | 2) && other != k;
                let result: Result<Option<(i64, Changes)>, etcd_client::Error> = match op {
                    0 => c
                        .delete(k.clone(), None)
                        .await
                        .map(|r| (r.deleted() > 0).then(|| (r.header().unwrap().revision(), vec![(k.clone(), None)]))),
                    _ if is_txn => {
                        let txn = Txn::new().and_then([
                            TxnOp::put(k.clone(), value.clone(), None),
                            TxnOp::put(other.clone(), value.clone(), None),
                        ]);
                        let changes = vec![(k.clone(), Some(value.clone())), (other.clone(), Some(value.clone()))];
                        c.txn(txn).await.map(|r| Some((r.header().unwrap().revision(), changes)))
                    }
                    3 => {
                        let own = acked.last().map_or(start, |a: &(i64, Changes)| a.0);
                        match c.get("k/", Some(GetOptions::new().with_prefix())).await {
                            Ok(r) => {
                                let rev = r.header().unwrap().revision();
                                assert!(rev >= own, "read at {rev} after this client's write at {own}");
                                let kvs = r.kvs().iter();
                                let kvs = kvs.map(|kv| (kv.key_str().unwrap().into(), kv.value_str().unwrap().into()));
                                reads.push((rev, kvs.collect::<BTreeMap<String, String>>()));
                                Ok(None)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    _ => c
                        .put(k.clone(), value.clone(), None)
                        .await
                        .map(|r| Some((r.header().unwrap().revision(), vec![(k.clone(), Some(value.clone()))]))),
                };
                match result {
                    Ok(Some(write)) => acked.push(write),
                    Ok(None) => {}
                    Err(_) => {
                        // Outcome unknown: it may show up in the history.
                        let changes = match op {
                            0 => vec![(k, None)],
                            _ if is_txn => vec![(k, Some(value.clone())), (other, Some(value))],
                            3 => vec![],
                            _ => vec![(k, Some(value))],
                        };
                        failed.lock().unwrap().push(changes);
                        at = (at + 1) % 2;
                        c = connect(&endpoints[at]).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (acked, reads)
        }));
    }

    // The merge: n1 aborts in its middle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let merged = admin.merge(MergeRequest { left, right }).await;
    assert!(merged.is_err(), "the merge finished although n1 should have aborted in it");
    let deadline = Instant::now() + READY;
    while cluster.nodes[0].as_mut().unwrap().is_running() {
        assert!(Instant::now() < deadline, "n1 did not abort at {failpoint}: {merged:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("n1 aborted mid-merge; the merge call answered {:?}", merged.unwrap_err().code());

    // The new leader store settles the merge: no region stays prepared.
    let deadline = Instant::now() + READY;
    let after = loop {
        let now = regions(&n2).await;
        if now.iter().all(|r| r.3 == 0) && leader_seen(&n2).await != n1_id {
            break now;
        }
        assert!(Instant::now() < deadline, "a region stays prepared: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let right_exists = after.iter().any(|r| r.0 == right);
    assert_eq!(!right_exists, finishes, "merge finished: {}, expected {finishes}: {after:?}", !right_exists);

    // n1 comes back (unarmed) and catches up; the merge is tried again if
    // it rolled back, now that every store is up.
    let restarted = tokio::task::spawn_blocking(move || {
        cluster.restart(0);
        cluster
    });
    let cluster = restarted.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    if right_exists {
        let deadline = Instant::now() + READY;
        while let Err(e) = admin.merge(MergeRequest { left, right }).await {
            assert!(Instant::now() < deadline, "merging again after n1 returned: {e:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);

    let mut acked: BTreeMap<i64, Changes> = BTreeMap::new();
    let mut reads = Vec::new();
    for client in clients {
        let (a, r) = client.await.unwrap();
        for (rev, changes) in a {
            assert!(acked.insert(rev, changes).is_none(), "revision {rev} acknowledged twice");
        }
        reads.extend(r);
    }
    let last = eventually!("final put", c.put("k/999", "end", None)).header().unwrap().revision();
    let history = watcher.await.unwrap();
    let failed = failed.lock().unwrap().clone();
    println!(
        "{} writes acknowledged, {} with an unknown outcome, {} reads, history of {} revisions",
        acked.len(),
        failed.len(),
        reads.len(),
        history.len()
    );
    assert!(history.keys().last() >= Some(&last), "the watcher stopped early");

    // Every acknowledged write is in the history at its revision; every
    // other revision there is one whole write whose answer was lost.
    for (rev, changes) in &acked {
        assert_eq!(history.get(rev), Some(changes), "acknowledged write at {rev} vs the history");
    }
    let unknown: HashSet<Changes> = failed.into_iter().collect();
    for (rev, changes) in &history {
        let expected = acked.contains_key(rev) || unknown.contains(changes) || [start, last].contains(rev);
        assert!(expected, "revision {rev} in the history is no write a client made: {changes:?}");
    }

    // Every linearizable read, and the final state through every member,
    // equal the history replayed up to their revision.
    reads.sort_by_key(|r| r.0);
    let mut state: BTreeMap<String, String> = BTreeMap::new();
    let mut pending = reads.iter().peekable();
    for (rev, changes) in &history {
        while let Some((at, got)) = pending.next_if(|r| r.0 < *rev) {
            assert_eq!(got, &state, "a read at revision {at} is not the history's state there");
        }
        for (k, v) in changes {
            match v {
                Some(v) => state.insert(k.clone(), v.clone()),
                None => state.remove(k),
            };
        }
    }
    for (at, got) in pending {
        assert_eq!(got, &state, "a read at revision {at} is not the history's state there");
    }
    for endpoint in cluster.endpoints() {
        let mut c = connect(&endpoint).await;
        let got =
            eventually!(format!("final read through {endpoint}"), c.get("k/", Some(GetOptions::new().with_prefix())));
        let got: BTreeMap<String, String> =
            got.kvs().iter().map(|kv| (kv.key_str().unwrap().into(), kv.value_str().unwrap().into())).collect();
        assert_eq!(got, state, "the state through {endpoint} is not the history's");
    }

    // Every store holds the same data and the same regions.
    let deadline = Instant::now() + READY;
    loop {
        let mut views = Vec::new();
        for endpoint in cluster.endpoints() {
            let hash = connect(&endpoint).await.hash_kv(last).await.map(|h| h.hash()).ok();
            views.push(hash);
        }
        if views.iter().all(|v| v.is_some() && *v == views[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "members differ at {last}: {views:?}\n{}", cluster.logs(4096));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!regions(&cluster.endpoint(1)).await.iter().any(|r| r.0 == right), "the merge did not happen");
}

/// Watches `k/` from `start` through `endpoint`, resuming after the
/// last revision seen whenever the stream breaks, until `stop` is set and
/// the final write (`k/999`) was seen. Returns the history by revision.
async fn watch_all(endpoint: String, start: i64, stop: Arc<AtomicBool>) -> BTreeMap<i64, Changes> {
    let mut history: BTreeMap<i64, Changes> = BTreeMap::new();
    let mut next = start;
    let deadline = Instant::now() + Duration::from_secs(200);
    'outer: loop {
        assert!(Instant::now() < deadline, "watcher: no end");
        let Ok(mut c) = Client::connect([endpoint.as_str()], None).await else { continue };
        let opts = WatchOptions::new().with_prefix().with_start_revision(next);
        let Ok(mut stream) = c.watch("k/", Some(opts)).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
            let Ok(Ok(Some(resp))) = msg else { continue 'outer };
            assert!(!resp.canceled(), "watch canceled: {}", resp.cancel_reason());
            for ev in resp.events() {
                let kv = ev.kv().unwrap();
                let rev = kv.mod_revision();
                assert!(rev >= next || history.contains_key(&rev), "event at {rev} after {next}");
                let value = (ev.event_type() == EventType::Put).then(|| kv.value_str().unwrap().to_string());
                let done = kv.key_str().unwrap() == "k/999" && stop.load(Ordering::Relaxed);
                history.entry(rev).or_default().push((kv.key_str().unwrap().to_string(), value));
                next = rev + 1;
                if done {
                    break 'outer;
                }
            }
        }
    }
    history
}
