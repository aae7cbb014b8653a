//! Splits and merges on a three-store cluster in this process (issue [split-merge],
//! docs/design.md "Split and merge"): with every store up a merge commits
//! on every store; with a follower cut off it rolls back, both regions
//! serve on, and after the follower is back it commits; a split made while
//! a follower is cut off reaches it when it is back. Writers see no error,
//! and every store ends with the same regions and the same data.

mod inproc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use inproc::cluster::InProcCluster;
use tessera::error::Error;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merges_commit_on_every_store_or_roll_back() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &["m"]).await;
        let l = cluster.leader().await;
        let router = cluster.members[l].router.clone();
        let follower = (l + 1) % 3;

        // Writers through the leader store and through a follower (which
        // forwards), on both sides of "m".
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for (w, member) in [l, (l + 2) % 3].into_iter().enumerate() {
            let (stop, endpoint) = (stop.clone(), cluster.members[member].endpoint.clone());
            writers.push(tokio::spawn(async move {
                let mut c = Client::connect([endpoint.as_str()], None).await.unwrap();
                let mut last = Vec::new();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{}{w}", ["a", "f", "p", "x"][n % 4]);
                    let value = format!("{n}");
                    let put = c.put(key.as_str(), value.as_str(), None).await;
                    put.unwrap_or_else(|e| panic!("writer {w}: put {key}: {e}"));
                    last.push((key, value));
                    n += 1;
                }
                last
            }));
        }

        let ids = |c: &InProcCluster| c.members[l].store.regions().iter().map(|r| r.id).collect::<Vec<_>>();
        // 1. Every store up: the merge commits everywhere.
        let (left, right) = (ids(&cluster)[0], ids(&cluster)[1]);
        let merged = router.merge(left, right).await.expect("merge with every store up");
        assert!(merged.end_key.is_empty() && merged.start_key.is_empty(), "{merged:?}");
        cluster.wait_agree(1).await;

        // 2. A follower cut off: the merge rolls back, both regions serve.
        let (_, right) = router.split(Some(b"m".to_vec()), None).await.expect("split");
        cluster.wait_agree(2).await;
        cluster.isolate(follower);
        let started = Instant::now();
        match router.merge(left, right.id).await {
            Err(Error::MergeCatchUp { region }) => assert_eq!(region, right.id),
            other => panic!("a merge with a follower cut off: {other:?}"),
        }
        println!("merge rolled back after {} ms", started.elapsed().as_millis());
        assert_eq!(ids(&cluster), vec![left, right.id]);
        let right_now = router.store().peer(right.id).expect("the source serves again").region.clone();
        assert_eq!(right_now.merging_into, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;

        // 3. The follower back: the merge commits everywhere.
        cluster.heal();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match router.merge(left, right.id).await {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "merge after heal: {e}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut newest = std::collections::BTreeMap::new();
        for w in writers {
            let puts = w.await.unwrap();
            assert!(puts.len() > 10, "a writer made no progress");
            for (k, v) in puts {
                newest.insert(k, v);
            }
        }
        cluster.wait_agree(1).await;
        let mut c = Client::connect([cluster.members[follower].endpoint.as_str()], None).await.unwrap();
        let got = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
        for (k, v) in &newest {
            let kv = got.kvs().iter().find(|kv| kv.key_str().unwrap() == k).unwrap_or_else(|| panic!("{k} lost"));
            assert_eq!(kv.value_str().unwrap(), v, "{k}");
        }
    })
    .await;
}

/// The leader store cut off between a merge's prepare and its commit: the
/// new leader store settles the merge when it activates (rolls it back, or
/// finds it committed), writes go on through it, and once the old leader
/// is back every store has the same regions and data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_store_lost_mid_merge_leaves_one_outcome_everywhere() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &["m"]).await;
        let old = cluster.leader().await;
        let mut c = Client::connect([cluster.members[old].endpoint.as_str()], None).await.unwrap();
        for k in ["a", "f", "p", "x"] {
            c.put(k, "before", None).await.unwrap();
        }
        let regions = cluster.members[old].store.regions();
        let (left, right) = (regions[0].id, regions[1].id);
        let merging = tokio::spawn({
            let router = cluster.members[old].router.clone();
            async move { router.merge(left, right).await }
        });
        // Cut the leader store off once the source is prepared there.
        let deadline = Instant::now() + Duration::from_secs(10);
        while cluster.members[old].store.peer(right).map_or(0, |p| p.region.merging_into) == 0 {
            assert!(Instant::now() < deadline, "the merge never prepared");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        cluster.isolate(old);
        let new = cluster.leader_other_than(old).await;
        // The prepared source does not stay prepared on the new leader store.
        let deadline = Instant::now() + Duration::from_secs(30);
        while cluster.members[new].store.peer(right).is_ok_and(|p| p.region.merging_into != 0) {
            assert!(Instant::now() < deadline, "the merge was left prepared");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let outcome = cluster.members[new].store.regions().len();
        println!("new leader store n{}: {} region(s) after the lost merge", new + 1, outcome);
        let mut c = Client::connect([cluster.members[new].endpoint.as_str()], None).await.unwrap();
        for k in ["a", "f", "p", "x"] {
            c.put(k, "after", None).await.unwrap_or_else(|e| panic!("put {k} after the failover: {e}"));
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), merging).await.expect("the old merge call returns");
        cluster.heal();
        cluster.wait_agree(outcome).await;
        let got = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
        let values: Vec<&str> =
            got.kvs().iter().filter(|kv| kv.key() != b"sync").map(|kv| kv.value_str().unwrap()).collect();
        assert_eq!(values, ["after"; 4]);
    })
    .await;
}

/// A follower cut off during a split: the split commits on the other two,
/// both parts serve, and the follower, back, applies it from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_with_a_follower_cut_off_reaches_it_when_it_is_back() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &[]).await;
        let l = cluster.leader().await;
        let follower = (l + 1) % 3;
        let mut c = Client::connect([cluster.members[l].endpoint.as_str()], None).await.unwrap();
        for k in ["a", "f", "p", "x"] {
            c.put(k, "before", None).await.unwrap();
        }
        cluster.isolate(follower);
        let (left, right) = cluster.members[l].router.split(Some(b"m".to_vec()), None).await.expect("split");
        assert_eq!((left.end_key.as_slice(), right.start_key.as_slice()), (&b"m"[..], &b"m"[..]));
        for k in ["a", "f", "p", "x"] {
            c.put(k, "after", None).await.unwrap_or_else(|e| panic!("put {k} after the split: {e}"));
        }
        assert_eq!(cluster.members[follower].store.regions().len(), 1, "the cut-off follower applied nothing");
        cluster.heal();
        cluster.wait_agree(2).await;
        let mut f = Client::connect([cluster.members[follower].endpoint.as_str()], None).await.unwrap();
        let got = f.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
        let values: Vec<&str> =
            got.kvs().iter().filter(|kv| kv.key() != b"sync").map(|kv| kv.value_str().unwrap()).collect();
        assert_eq!(values, ["after"; 4]);
    })
    .await;
}
