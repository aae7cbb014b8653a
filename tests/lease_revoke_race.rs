//! A put attached a key to a lease already revoked (found by the fault
//! harness, seed 20056: a lease's expiry deleted one of its two keys; the
//! other, put a few milliseconds earlier through a region leader on another
//! store, stayed attached to a lease that no longer existed until a later
//! leader store cleaned it up).
//!
//! A region leader checks a put's lease against its own store's lessor,
//! which applies a revoke after the leader store's. The leader store now
//! refuses a revision for a write whose leases it no longer has.

mod inproc;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions};
use inproc::cluster::InProcCluster;
use tessera::raftstore::transport::Filter;
use tessera::raftstore::RegionClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_through_a_region_leader_elsewhere_cannot_attach_to_a_revoked_lease() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &[]).await;
        let serving = cluster.leader().await;
        let store = cluster.members[serving].store.clone();
        let other = cluster.members[(serving + 1) % 3].store.store_id;
        let region = store.regions()[0].id;
        RegionClient::new(store.clone()).move_leader(region, other, Duration::from_secs(20)).await.expect("move");
        println!("leader store {}, region {region} led by store {other}", store.store_id);

        let mut c = Client::connect([cluster.members[serving].endpoint.as_str()], None).await.unwrap();
        let lease = c.lease_grant(60, None).await.unwrap().id();
        c.put("l/a", "1", Some(PutOptions::new().with_lease(lease))).await.unwrap();

        // The region leader's store does not hear of the revoke for now.
        let meta = store.meta_region;
        let filter: Filter = Arc::new(move |to, r, _msg| !(r == meta && to == other));
        store.transport().unwrap().set_filter(Some(filter));
        c.lease_revoke(lease).await.expect("revoke");

        let put = c.put("l/b", "2", Some(PutOptions::new().with_lease(lease))).await;
        cluster.heal();
        let refused = put.expect_err("a put attached a key to a revoked lease");
        assert_eq!(inproc::code_of(refused), (tonic::Code::NotFound, "etcdserver: requested lease not found".into()));
        let left = c.get("l/", Some(GetOptions::new().with_prefix())).await.unwrap();
        assert!(left.kvs().is_empty(), "keys of the revoked lease are left: {:?}", left.kvs());
    })
    .await;
}
