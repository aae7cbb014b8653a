//! A read on the new leader store answered below a write a former leader
//! store acknowledged (found by the fault harness, seed 10054: a put
//! accepted by the leader store just before `move-leader` took its revision
//! from the new leader store and was acknowledged by the old one's router;
//! the client's next read, through the new leader store, answered at a
//! header below it).
//!
//! The new leader store's read point covered what its own router
//! acknowledged and what it had applied, not what another router would
//! acknowledge. A revision handed out for a write another store's router
//! sent now counts as acknowledged at once.

mod inproc;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use inproc::cluster::InProcCluster;
use tessera::proto::etcdserverpb::{PutRequest, RangeRequest};
use tessera::raftstore::transport::Filter;
use tessera::raftstore::RegionClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_on_the_new_leader_store_covers_a_write_the_former_one_acknowledged() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &[]).await;
        let old = cluster.leader().await;
        let new = (old + 1) % 3;
        let (old_id, new_id) = (cluster.members[old].store.store_id, cluster.members[new].store.store_id);
        cluster.members[old].store.move_leader_store(new_id).await.expect("move the leader store");
        assert_eq!(cluster.leader_other_than(old).await, new);
        println!("leader store moved from store {old_id} to store {new_id}");

        // The one region is led by the former leader store, whose router
        // sends it a write: its revision comes from the new leader store.
        let region = cluster.members[new].store.regions()[0].id;
        let client = RegionClient::new(cluster.members[new].store.clone());
        client.move_leader(region, old_id, Duration::from_secs(20)).await.expect("move the region's leader");
        let peer = cluster.members[old].store.peer(region).unwrap();
        inproc::wait_for("the former leader store's peer to lead", || peer.shared.leading.load(Ordering::Acquire))
            .await;

        // The new leader store does not apply the region's entries for now.
        for m in &cluster.members {
            let filter: Filter = Arc::new(move |to, r, _msg| !(r == region && to == new_id));
            m.store.transport().unwrap().set_filter(Some(filter));
        }
        let put = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() };
        let put = tokio::time::timeout(Duration::from_secs(20), cluster.members[old].router.put(put));
        let acked = put.await.expect("the put hung").expect("put").header.unwrap().revision;

        let reader = cluster.members[new].router.clone();
        let mut read = tokio::spawn(async move {
            let req = RangeRequest { key: b"k".to_vec(), ..Default::default() };
            reader.range(&req).await
        });
        // Answered now, it must be at or above the put; else it waits for
        // the put to apply on the new leader store, which it does once healed.
        let answered = match tokio::time::timeout(Duration::from_secs(1), &mut read).await {
            Ok(answered) => answered,
            Err(_) => {
                cluster.heal();
                tokio::time::timeout(Duration::from_secs(20), read).await.expect("the read hung")
            }
        };
        cluster.heal();
        let resp = answered.unwrap().expect("range");
        let header = resp.header.unwrap().revision;
        assert!(header >= acked, "the read answered at {header}, below the put acknowledged at {acked} before it");
        assert_eq!(resp.kvs.len(), 1, "the read did not see the acknowledged put");
    })
    .await;
}
