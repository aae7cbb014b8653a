//! Cross-region txns are all-or-nothing across crashes: the real binary
//! aborts (like kill -9) at each step of two-phase commit while 8 clients
//! run cross-region txns; after a restart every txn, acknowledged or not,
//! is in all four regions or in none, every acknowledged one is there with
//! its revision, and no lock is left behind.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Tessera;
use etcd_client::{Client, GetOptions, Txn, TxnOp};

/// One prefix per region (split at b, m, t).
const REGIONS: [&str; 4] = ["a", "c", "n", "u"];
const CLIENTS: u64 = 8;

fn key(region: &str, client: u64, i: u64) -> String {
    format!("{region}/w{client}/{i:05}")
}

/// Client `w`'s txn `i`: writes its four keys and deletes txn `i-1`'s, so
/// the state holds exactly the keys of the client's last committed txn.
fn step(w: u64, i: u64) -> Txn {
    let mut ops: Vec<TxnOp> = REGIONS.iter().map(|r| TxnOp::put(key(r, w, i), format!("{w}-{i}"), None)).collect();
    if i > 0 {
        ops.extend(REGIONS.iter().map(|r| TxnOp::delete(key(r, w, i - 1), None)));
    }
    Txn::new().and_then(ops)
}

async fn crash_at(failpoint: &str) {
    let spec = format!("{failpoint}:40");
    let mut node = tokio::task::spawn_blocking(move || Tessera::start(&["--failpoint", &spec])).await.unwrap();
    let endpoint = node.endpoint().to_string();
    let mut clients = Vec::new();
    for w in 0..CLIENTS {
        let endpoint = endpoint.clone();
        clients.push(tokio::spawn(async move {
            // (last acknowledged txn and its revision, last txn sent)
            let mut acked: Option<(u64, i64)> = None;
            let Ok(mut c) = Client::connect([endpoint.as_str()], None).await else { return (acked, None) };
            for i in 0..10_000 {
                match c.txn(step(w, i)).await {
                    Ok(resp) => acked = Some((i, resp.header().unwrap().revision())),
                    Err(_) => return (acked, Some(i)), // the process died under us
                }
            }
            (acked, None)
        }));
    }
    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.push(c.await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.is_running() {
        assert!(Instant::now() < deadline, "the failpoint {failpoint} never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(node.log_tail(4096).contains("failpoint"), "died for another reason:\n{}", node.log_tail(8192));

    let node = tokio::task::spawn_blocking(move || node.restart(&[])).await.unwrap();
    let mut c = Client::connect([node.endpoint()], None).await.unwrap();
    let all = c.get("\0", Some(GetOptions::new().with_from_key())).await.unwrap();
    // client -> txn index -> (region prefix, mod revision) of its keys present
    let mut present: BTreeMap<u64, BTreeMap<u64, Vec<(String, i64)>>> = BTreeMap::new();
    for kv in all.kvs() {
        let k = kv.key_str().unwrap();
        let parts: Vec<&str> = k.split('/').collect();
        let (w, i): (u64, u64) = (parts[1][1..].parse().unwrap(), parts[2].parse().unwrap());
        assert_eq!(kv.value_str().unwrap(), format!("{w}-{i}"));
        present.entry(w).or_default().entry(i).or_default().push((parts[0].to_string(), kv.mod_revision()));
    }
    let mut max_acked = 0;
    for (w, (acked, died_at)) in outcomes.iter().enumerate() {
        let w = w as u64;
        let txns = present.remove(&w).unwrap_or_default();
        assert!(txns.len() <= 1, "[{failpoint}] client {w}: keys of several txns {:?} (half a delete)", txns.keys());
        if let Some((i, keys)) = txns.into_iter().next() {
            let regions: Vec<&str> = keys.iter().map(|(r, _)| r.as_str()).collect();
            assert_eq!(regions, REGIONS, "[{failpoint}] client {w} txn {i} is in some regions only");
            assert!(keys.iter().all(|(_, r)| *r == keys[0].1), "[{failpoint}] one revision: {keys:?}");
            if let Some((a, rev)) = acked {
                assert!(i >= *a, "[{failpoint}] client {w}: acknowledged txn {a} lost, state at {i}");
                if i == *a {
                    assert_eq!(keys[0].1, *rev, "[{failpoint}] came back with another revision");
                }
            }
            assert!(died_at.is_none_or(|d| i <= d), "[{failpoint}] a txn never sent is there");
        } else {
            assert!(acked.is_none(), "[{failpoint}] client {w}: acknowledged txn {acked:?} lost");
        }
        max_acked = max_acked.max(acked.map_or(0, |(_, r)| r));
    }
    // No lock survives: every region takes writes at once, one revision on.
    let all_regions =
        Txn::new().and_then(REGIONS.iter().map(|r| TxnOp::put(key(r, 99, 0), "x", None)).collect::<Vec<_>>());
    let next =
        tokio::time::timeout(Duration::from_secs(5), c.txn(all_regions)).await.expect("a lock was left").unwrap();
    let next = next.header().unwrap().revision();
    assert!(next > max_acked, "[{failpoint}] revision {next} reused (acknowledged up to {max_acked})");
    // Crashing there leaves the crashing txn's own locks behind (after its
    // last secondary, or before forgetting, it may leave none).
    if ["txn-after-lock", "txn-after-primary"].contains(&failpoint) {
        let log = node.log_tail(1 << 20);
        assert!(log.contains("recovered a cross-region txn lock"), "[{failpoint}] no lock to recover?\n{log}");
    }
    let acked = outcomes.iter().filter(|(a, _)| a.is_some()).count();
    println!("[{failpoint}] crash survived: {acked} clients had acknowledged txns, all state whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cross_region_txns_are_all_or_nothing_across_crashes_at_every_step() {
    tokio::time::timeout(Duration::from_secs(240), async {
        for failpoint in ["txn-after-lock", "txn-after-primary", "txn-after-secondary", "txn-before-forget"] {
            crash_at(failpoint).await;
        }
    })
    .await
    .expect("crash test timed out");
}

/// A revoke interrupted between its two steps (the lease gone, its keys not
/// yet deleted) is finished at restart: the keys go, at one revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_interrupted_by_a_crash_is_finished_at_restart() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut node =
            tokio::task::spawn_blocking(|| Tessera::start(&["--failpoint", "lease-after-revoke"])).await.unwrap();
        let mut c = Client::connect([node.endpoint()], None).await.unwrap();
        let lease = c.lease_grant(600, None).await.unwrap().id();
        for r in REGIONS {
            c.put(format!("{r}/leased"), "v", Some(etcd_client::PutOptions::new().with_lease(lease))).await.unwrap();
        }
        c.put("c/other", "v", None).await.unwrap();
        let before = c.get("x", None).await.unwrap().header().unwrap().revision();
        assert!(c.lease_revoke(lease).await.is_err(), "the process dies in the middle of the revoke");
        let deadline = Instant::now() + Duration::from_secs(20);
        while node.is_running() {
            assert!(Instant::now() < deadline, "the failpoint never fired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let node = tokio::task::spawn_blocking(move || node.restart(&[])).await.unwrap();
        let mut c = Client::connect([node.endpoint()], None).await.unwrap();
        let all = c.get("\0", Some(GetOptions::new().with_from_key())).await.unwrap();
        let keys: Vec<&str> = all.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
        assert_eq!(keys, ["c/other"], "the revoked lease's keys are deleted at restart");
        assert_eq!(all.header().unwrap().revision(), before + 1, "at one revision");
        assert_eq!(c.lease_time_to_live(lease, None).await.unwrap().ttl(), -1);
    })
    .await
    .expect("timed out");
}
