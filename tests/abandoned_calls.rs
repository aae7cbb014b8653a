//! Calls their clients gave up on still finish (issue [faults] bug 5:
//! writes to some regions hung after split-merge storms and cuts, and
//! merges failed with "region is busy"). A client that times out drops its
//! gRPC call, and the server dropped the call's future with it: a write
//! across regions abandoned between its locks and its commits left the
//! locks (every later write to those keys hung) and its revision in flight
//! (the resolved revision stopped: watches and linearizable reads stalled);
//! a merge abandoned after its prepare left the source refusing writes.
//! Each test gives up on many calls at spread-out moments, then checks
//! nothing is left behind.

mod inproc;

use std::time::Duration;

use inproc::InProc;
use tessera::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use tessera::proto::etcdserverpb::request_op::Request;
use tessera::proto::etcdserverpb::{Compare, PutRequest, RequestOp, TxnRequest};

fn put(key: &str, value: &str) -> RequestOp {
    let req = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
    RequestOp { request: Some(Request::RequestPut(req)) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_txn_across_regions_its_client_gave_up_on_leaves_no_lock() {
    inproc::bounded(async {
        let node = InProc::start(&["m"]).await;
        for i in 0..200u64 {
            // "a" and "z" lie in different regions: a two-phase commit.
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Less as i32,
                    target: CompareTarget::Version as i32,
                    key: b"a".to_vec(),
                    target_union: Some(TargetUnion::Version(1_000_000)),
                    ..Default::default()
                }],
                success: vec![put("a", &i.to_string()), put("z", &i.to_string())],
                failure: vec![],
            };
            // Given up after 0 to 4 ms: before, between and after its steps.
            let patience = Duration::from_micros(i * 20);
            let _ = tokio::time::timeout(patience, node.router.txn(txn)).await;
        }
        inproc::wait_for("every lock of the abandoned txns to be released", || {
            node.store.txn_state().is_ok_and(|(locks, records)| locks.is_empty() && records.is_empty())
        })
        .await;
        let last = node.store.sequencer.last();
        inproc::wait_for("the resolved revision to reach the last handed out", || {
            node.store.sequencer.resolved() >= last
        })
        .await;
        let mut c = node.client().await;
        for key in ["a", "z"] {
            let done = tokio::time::timeout(Duration::from_secs(5), c.put(key, "after", None)).await;
            assert!(matches!(done, Ok(Ok(_))), "a write to {key} hangs: {done:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merge_its_caller_gave_up_on_does_not_leave_its_source_merging() {
    inproc::bounded(async {
        let node = InProc::start(&[]).await;
        for i in 0..60u64 {
            let (left, right) = node.router.split(Some(b"m".to_vec()), None).await.expect("split");
            let patience = Duration::from_micros(i * 50);
            let _ = tokio::time::timeout(patience, node.router.merge(left.id, right.id)).await;
            // Nothing refuses the merge: it ends merged, never half-way.
            let merged = || {
                let regions = node.store.regions();
                regions.iter().all(|r| r.merging_into == 0) && regions.iter().filter(|r| !r.meta).count() == 1
            };
            inproc::wait_for("the abandoned merge to complete", merged).await;
        }
        let mut c = node.client().await;
        let done = tokio::time::timeout(Duration::from_secs(5), c.put("z", "after", None)).await;
        assert!(matches!(done, Ok(Ok(_))), "a write to the merged region hangs: {done:?}");
    })
    .await;
}
