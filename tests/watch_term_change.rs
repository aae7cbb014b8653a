//! A watch gap when a region's leader changed with a write still
//! uncommitted (found by the fault harness, seed 20 `--faults cut`: an
//! unknown-outcome put was applied at a revision a live watch skipped).
//!
//! The new leader commits the old term's entry together with its own first
//! entry, and a store applies both in one round. Applying the new term's
//! first entry voids the revisions older terms took and did not commit; it
//! used to do so at once, mid-round, so the old term's write, applied
//! earlier in the same round but not yet written, left the in-flight set
//! and the resolved revision passed it: a watcher woken then read past a
//! revision whose event was not there yet. The sequencer now hears of the
//! new term after the round is written. The failpoint `apply-before-write`
//! holds every round 20 ms between apply and write, so the window is wide
//! enough that a watcher always falls in it if it is open.

mod inproc;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, WatchOptions};
use inproc::cluster::InProcCluster;
use raft::prelude::MessageType;
use tessera::raftstore::transport::Filter;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_keeps_an_old_terms_write_committed_by_a_new_leader() {
    tessera::failpoint::arm("apply-before-write");
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &[]).await;
        let serving = cluster.leader().await;
        let endpoint = cluster.members[serving].endpoint.clone();
        let mut c = Client::connect([endpoint.as_str()], None).await.unwrap();
        let first = c.put("before", "1", None).await.unwrap().header().unwrap().revision();
        let region = cluster.members[serving].store.regions().into_iter().find(|r| r.start_key.is_empty()).unwrap().id;
        let leader = region_leader(&cluster, region).await;
        let old = cluster.members[leader].store.store_id;
        println!("leader store {}, region {region} led by store {old}", serving + 1);

        // Every event from the first put on, through the member that serves.
        let mut events =
            c.watch("", Some(WatchOptions::new().with_all_keys().with_start_revision(first + 1))).await.unwrap();

        // The followers take the old leader's appends but their answers
        // never reach it: its write stays uncommitted in its term.
        let answered: Arc<Mutex<HashSet<u64>>> = Default::default();
        let cut_off = Arc::new(AtomicBool::new(false));
        for m in &cluster.members {
            let me = m.store.store_id;
            let (answered, cut_off) = (answered.clone(), cut_off.clone());
            let filter: Filter = Arc::new(move |to, r, msg| {
                if r != region {
                    return true;
                }
                if me == old {
                    return !cut_off.load(Ordering::Acquire);
                }
                if to == old && msg.get_msg_type() == MessageType::MsgAppendResponse && !msg.reject {
                    answered.lock().unwrap().insert(me);
                }
                to != old
            });
            m.store.transport().unwrap().set_filter(Some(filter));
        }
        let mut writer = Client::connect([endpoint.as_str()], None).await.unwrap();
        let put = tokio::spawn(async move { writer.put("a", "old-term", None).await });
        inproc::wait_for("both followers to take the write", || answered.lock().unwrap().len() == 2).await;

        // Now the old leader is cut off entirely: the others elect a leader,
        // which commits the write with its own first entry.
        cut_off.store(true, Ordering::Release);
        let new = wait_for_other_leader(&cluster, region, leader).await;
        println!("region {region} now led by store {}", cluster.members[new].store.store_id);
        cluster.heal();
        let acked = tokio::time::timeout(Duration::from_secs(30), put).await.expect("the put hung").unwrap();
        let acked = acked.expect("the old term's put was committed by the new leader").header().unwrap().revision();
        let last = put_until_acked(&endpoint, "after").await;

        let live = take_until(&mut events, last).await;
        let mut stored =
            c.watch("", Some(WatchOptions::new().with_all_keys().with_start_revision(first + 1))).await.unwrap();
        let history = take_until(&mut stored, last).await;
        assert!(history.contains(&acked), "the acknowledged put at {acked} is not in the history {history:?}");
        assert_eq!(live, history, "the live watch skipped a revision (the old term's put is at {acked})");
    })
    .await;
}

/// Revisions of the events `stream` delivers, up to and including `last`.
async fn take_until(stream: &mut etcd_client::WatchStream, last: i64) -> Vec<i64> {
    let mut seen: Vec<i64> = Vec::new();
    while seen.last().is_none_or(|r| *r < last) {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap_or_else(|_| panic!("the watch was silent; it saw {seen:?}, waiting for {last}"))
            .expect("watch")
            .expect("watch ended");
        seen.extend(resp.events().iter().map(|e| e.kv().unwrap().mod_revision()));
    }
    seen
}

/// The member whose peer leads `region` (bounded wait).
async fn region_leader(cluster: &InProcCluster, region: u64) -> usize {
    wait_for_other_leader(cluster, region, usize::MAX).await
}

async fn wait_for_other_leader(cluster: &InProcCluster, region: u64, old: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leading = (0..cluster.members.len()).find(|&i| {
            i != old && cluster.members[i].store.peer(region).is_ok_and(|p| p.shared.leading.load(Ordering::Acquire))
        });
        if let Some(i) = leading {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader for region {region} within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Puts `key` through `endpoint` until acknowledged (bounded); its revision.
async fn put_until_acked(endpoint: &str, key: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = Client::connect([endpoint], None).await.unwrap();
        match c.put(key, "v", None).await {
            Ok(r) => return r.header().unwrap().revision(),
            Err(e) => {
                assert!(Instant::now() < deadline, "no put through {endpoint} within 30 s: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
