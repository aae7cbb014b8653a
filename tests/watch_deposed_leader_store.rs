//! A watch gap on a deposed leader store (found by the fault harness, seed
//! 13016: a watch missed the first revision the new leader store handed
//! out after `move-leader`).
//!
//! A store that stopped being the leader store takes revisions for its
//! region leaders from the new one; its own resolved revision can then
//! pass revisions its replicas have not applied. A watch stream there in
//! the middle of a long delivery (its client reading slowly) checked that
//! the store still served only between deliveries, so its next batch went
//! up to that resolved revision: it sent an event it had applied and
//! skipped one it had not, and its client resumed past the skipped one.
//! Every delivery now checks first (`Feed::frontier`). The test makes the
//! old leader store's resolved revision pass a write it has not applied,
//! and checks that its feed offers nothing to deliver and that a watch
//! opened there before the move resumes through the new one without a
//! gap. (The watch stream's own buffers hold more than a test can write,
//! so the test does not catch the stream mid-delivery: the feed check
//! is the guard.)

mod inproc;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, WatchOptions};
use inproc::cluster::InProcCluster;
use tessera::proto::etcdserverpb::watch_client::WatchClient;
use tessera::proto::etcdserverpb::watch_request::RequestUnion;
use tessera::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use tessera::raftstore::transport::Filter;
use tessera::raftstore::RegionClient;

/// Txns of this many puts each: history for the watch to deliver.
const TXNS: usize = 20;
const PUTS_PER_TXN: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_on_a_deposed_leader_store_skips_nothing() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &["m"]).await;
        let old = cluster.leader().await;
        let new = (old + 1) % 3;
        let (old_id, new_id) = (cluster.members[old].store.store_id, cluster.members[new].store.store_id);
        let endpoint = |i: usize| cluster.members[i].endpoint.clone();
        let mut c = Client::connect([endpoint(old)], None).await.unwrap();
        let value = "v".repeat(100);
        let mut first = 0;
        for t in 0..TXNS {
            let puts: Vec<TxnOp> =
                (0..PUTS_PER_TXN).map(|p| TxnOp::put(format!("a/{t:03}/{p:03}"), value.as_str(), None)).collect();
            let txn = Txn::new().when([Compare::version("none", CompareOp::Equal, 0)]).and_then(puts);
            let r = c.txn(txn).await.unwrap().header().unwrap().revision();
            first = if first == 0 { r } else { first };
        }
        // A watch on the leader store from the first txn, not read yet.
        let (requests, rx) = tokio::sync::mpsc::channel(1);
        let create =
            WatchCreateRequest { key: vec![0], range_end: vec![0], start_revision: first, ..Default::default() };
        requests.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
        let mut raw = WatchClient::connect(endpoint(old)).await.unwrap();
        let stream = raw.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
        tokio::time::sleep(Duration::from_millis(300)).await;

        cluster.members[old].store.move_leader_store(new_id).await.expect("move the leader store");
        assert_eq!(cluster.leader_other_than(old).await, new);
        // Region "a".."m" stops reaching the old leader store (its leader
        // on the new one); region "m".. goes on.
        let regions = cluster.members[new].store.regions();
        let cut = regions.iter().find(|r| !r.meta && r.start_key.is_empty()).unwrap().id;
        let other = regions.iter().find(|r| !r.meta && !r.start_key.is_empty()).unwrap().id;
        RegionClient::new(cluster.members[new].store.clone())
            .move_leader(cut, new_id, Duration::from_secs(20))
            .await
            .expect("move region a's leader");
        for m in &cluster.members {
            let me = m.store.store_id;
            let filter: Filter = Arc::new(move |to, r, _msg| r != cut || (me != old_id && to != old_id));
            m.store.transport().unwrap().set_filter(Some(filter));
        }
        let mut n = Client::connect([endpoint(new)], None).await.unwrap();
        let skipped = n.put("a/x", "cut off", None).await.unwrap().header().unwrap().revision();
        let applied = n.put("z/y", "applied", None).await.unwrap().header().unwrap().revision();
        let old_store = cluster.members[old].store.clone();
        let peer = old_store.peer(other).unwrap().shared.clone();
        inproc::wait_for("z/y to apply on the old leader store", || {
            peer.max_revision.load(std::sync::atomic::Ordering::Acquire) >= applied as u64
        })
        .await;
        // The old leader store's resolved revision passes what it took
        // from the new one (as when its region leaders ask there and its
        // own last writes finish).
        let seq = &old_store.sequencer;
        seq.observe(applied as u64);
        let r = seq.next();
        seq.finish(r);
        assert!(seq.resolved() >= applied as u64);
        assert_eq!(cluster.members[old].router.feed().frontier(), None, "a deposed leader store delivers nothing");
        println!("a/x at {skipped} cut off from the old leader store, z/y at {applied} applied there");

        let seen = read_until(stream, &mut n, applied).await;
        assert!(seen.contains(&(skipped, "a/x".into())), "the watch skipped a/x at {skipped}");
        assert_eq!(seen.iter().filter(|(rev, _)| *rev < skipped).count(), TXNS * PUTS_PER_TXN);
        drop(requests);
    })
    .await;
}

/// Every event `stream` delivers until one at `last`, then (once it ends)
/// through `other` from after the last event seen; (revision, key).
async fn read_until(mut stream: tonic::Streaming<WatchResponse>, other: &mut Client, last: i64) -> Vec<(i64, String)> {
    let mut seen: Vec<(i64, String)> = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
        match next.unwrap_or_else(|_| panic!("the watch was silent after {:?}", seen.last())) {
            Ok(Some(resp)) => seen.extend(resp.events.iter().map(|e| {
                let kv = e.kv.as_ref().unwrap();
                (kv.mod_revision, String::from_utf8_lossy(&kv.key).to_string())
            })),
            ended => {
                println!("watch ended ({ended:?}) after {} events", seen.len());
                break;
            }
        }
        if seen.last().is_some_and(|(r, _)| *r >= last) {
            return seen;
        }
    }
    let from = seen.last().map_or(1, |(r, _)| r + 1);
    let mut resumed =
        other.watch("", Some(WatchOptions::new().with_all_keys().with_start_revision(from))).await.unwrap();
    while seen.last().is_none_or(|(r, _)| *r < last) {
        let resp = tokio::time::timeout(Duration::from_secs(10), resumed.message())
            .await
            .unwrap_or_else(|_| panic!("the resumed watch was silent after {:?}", seen.last()))
            .expect("watch")
            .expect("watch ended");
        seen.extend(resp.events().iter().map(|e| {
            let kv = e.kv().unwrap();
            (kv.mod_revision(), kv.key_str().unwrap().to_string())
        }));
    }
    seen
}
