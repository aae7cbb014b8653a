//! Revision fencing (docs/cluster.md): once a new leader store serves, no
//! region applies a write, txn lock or txn commit whose revision a former
//! leader store handed out. Found by the fault harness: a leader store
//! paused for seconds woke up still believing it led, and a cross-region
//! delete it coordinated committed at a revision below writes the new
//! leader store had already acknowledged.

mod inproc;

use std::sync::Arc;

use etcd_client::Client;
use inproc::cluster::InProcCluster;
use tessera::error::Error;
use tessera::proto::mvccpb::KeyValue;
use tessera::proto::tesserapb::merge_command::Step;
use tessera::proto::tesserapb::raft_command::Txn;
use tessera::proto::tesserapb::{Effect, MergeCommand, RaftCommand, Span, TxnLock};
use tessera::raftstore::{RegionClient, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_leader_store_cannot_write_at_an_old_revision() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &["m"]).await;
        let old = cluster.leader().await;
        let mut c = Client::connect([cluster.members[old].endpoint.as_str()], None).await.unwrap();
        let first = c.put("a", "1", None).await.unwrap().header().unwrap().revision();
        let stale_term = cluster.members[old].store.sequencer.term();
        assert!(stale_term > 0, "a leader store of a cluster has a term");

        cluster.isolate(old);
        let new = cluster.leader_other_than(old).await;
        cluster.heal();
        let mut c = Client::connect([cluster.members[new].endpoint.as_str()], None).await.unwrap();
        let newer = c.put("a", "2", None).await.unwrap().header().unwrap().revision();
        assert!(cluster.members[new].store.sequencer.term() > stale_term);

        // What the former leader store would send if it had not noticed: a
        // write at a revision from its window, and a txn lock, both of its term.
        let store = &cluster.members[old].store;
        let region = store.regions().into_iter().find(|r| r.start_key.is_empty()).unwrap();
        let write = stale_write(b"a", first, stale_term);
        let lock = TxnLock { txn_id: 77, primary: region.id, spans: vec![Span { start: b"a".to_vec(), end: vec![] }] };
        let lock = RaftCommand { txn: Some(Txn::Lock(lock)), leader_store_term: stale_term, ..Default::default() };
        for cmd in [write, lock] {
            assert_fenced(store, region.id, cmd).await;
        }

        // Nothing changed: "a" is still the new leader store's write, and
        // a write to it is not held up by a lock.
        let got = c.get("a", None).await.unwrap();
        assert_eq!((got.kvs()[0].value(), got.kvs()[0].mod_revision()), (&b"2"[..], newer));
        c.put("a", "3", None).await.unwrap();
    })
    .await;
}

/// A merge's source, prepared by the old leader store, was left out of the
/// new leader store's fence (it took no command while merging); rolled back,
/// it served again with the old fence, and a write of the old leader store
/// would have applied there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merge_source_rolled_back_after_a_leader_store_change_is_fenced() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &["m"]).await;
        let old = cluster.leader().await;
        let mut c = Client::connect([cluster.members[old].endpoint.as_str()], None).await.unwrap();
        let first = c.put("x", "1", None).await.unwrap().header().unwrap().revision();
        let stale_term = cluster.members[old].store.sequencer.term();
        let store = &cluster.members[old].store;
        let find = |s: &Store, start: &[u8]| s.regions().into_iter().find(|r| r.start_key == start).unwrap();
        let (left, right) = (find(store, b"").id, find(store, b"m").id);
        let merge = |step| RaftCommand { merge: Some(MergeCommand { step: Some(step) }), ..Default::default() };
        assert!(propose(store, right, merge(Step::Prepare(left))).await.unwrap(), "the prepare took effect");

        cluster.isolate(old);
        let new = cluster.leader_other_than(old).await;
        cluster.heal();
        let new_store = &cluster.members[new].store;
        if find(new_store, b"m").merging_into != 0 {
            propose(new_store, right, merge(Step::Rollback(true))).await.unwrap();
        }
        assert_eq!(find(new_store, b"m").merging_into, 0, "the merge rolled back");

        let write = stale_write(b"x", first, stale_term);
        assert_fenced(store, right, write).await;
    })
    .await;
}

/// What a former leader store of `term` would propose if it had not
/// noticed: a write of `key` at the revision after `first`, from its window.
fn stale_write(key: &[u8], first: i64, term: u64) -> RaftCommand {
    let kv = KeyValue {
        key: key.to_vec(),
        value: b"stale".to_vec(),
        create_revision: first,
        mod_revision: first + 1,
        version: 2,
        lease: 0,
    };
    RaftCommand {
        revision: first as u64 + 1,
        effects: vec![Effect { key: key.to_vec(), kv: Some(kv), sub: 0, prev_lease: 0 }],
        leader_store_term: term,
        ..Default::default()
    }
}

/// Proposes `cmd` in `region` through `store` at the region's current
/// epoch, again on routing errors (as a router would), bounded.
async fn propose(store: &Arc<Store>, region: u64, cmd: RaftCommand) -> Result<bool, Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let epoch = store.peer(region)?.region.epoch.map_or(0, |e| e.version);
        match RegionClient::new(store.clone()).propose(region, epoch, cmd.clone()).await {
            Err(e) if e.is_retryable() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            other => return other,
        }
    }
}

/// `cmd`, a former leader store's, is refused with the fence's error.
async fn assert_fenced(store: &Arc<Store>, region: u64, cmd: RaftCommand) {
    let refused = propose(store, region, cmd).await;
    let fenced = match &refused {
        Err(Error::Fenced) => true,
        Err(Error::Remote { message, .. }) => message == "etcdserver: leader changed",
        _ => false,
    };
    assert!(fenced, "a former leader store's command was not refused: {refused:?}");
}
