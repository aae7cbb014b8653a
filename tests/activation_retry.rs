//! Revisions counted resolved before they applied, after a new leader
//! store's activation failed once and started again (found by the fault
//! harness, seeds 13007 and 13017 and the suite's seed 301: after kill -9
//! of the leader store, watches skipped one of the first revisions the new
//! one handed out, and a read on it at that header lacked the write).
//!
//! Activation restarted the sequencer on every attempt. An attempt whose
//! recovery failed (a merge rollback timing out under load) had already
//! let writes take revisions; the next attempt restarted after the high
//! mark the first one committed, dropping those revisions from the
//! in-flight set while their writes were still on the way: the resolved
//! revision passed them, and so did every watch. The sequencer now
//! restarts once per meta-group term. The failpoint
//! `activation-recover-fails`, armed once the cluster serves, fails the
//! activation this test causes 100 ms after its sequencer restarted, with
//! writes going on through every member.

mod inproc;

use inproc::cluster::InProcCluster;
use inproc::watched_writes::{skipped, Watching, Writers};
use tessera::router::HIGH_MARK_WINDOW;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_activation_keeps_the_revisions_it_handed_out_in_flight() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &["h", "p"]).await;
        let old = cluster.leader().await;
        let (new, other) = ((old + 1) % 3, (old + 2) % 3);
        let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint.clone()).collect();
        let mut c = etcd_client::Client::connect([endpoints[other].clone()], None).await.unwrap();
        let first = c.put("start", "", None).await.unwrap().header().unwrap().revision();
        // Through a member that is never the leader store.
        let watching = Watching::start(&endpoints[other..=other], first + 1).await;

        let writers = Writers::start(&endpoints, 6);
        inproc::wait_for("100 puts before the move", || writers.acks() >= 100).await;

        // Armed now (all members share this process): the activation the
        // move causes is the next to reach it.
        tessera::failpoint::arm("activation-recover-fails");
        let new_id = cluster.members[new].store.store_id;
        cluster.members[old].store.move_leader_store(new_id).await.expect("move the leader store");
        assert_eq!(cluster.leader_other_than(old).await, new);
        assert!(tessera::failpoint::spent("activation-recover-fails"), "the activation did not fail once");
        let moved = writers.acks();
        inproc::wait_for("200 puts after the move", || writers.acks() >= moved + 200).await;
        let acked = writers.stop().await;
        let last = c.put("end", "", None).await.unwrap().header().unwrap().revision();

        let seen = watching.until(last).await;
        let skipped = skipped(&acked, &seen);
        assert!(skipped.is_empty(), "the watch skipped acknowledged puts at {skipped:?}");
        // One failover voids at most a window of revisions (what the old
        // leader store may have handed out); the retried activation must
        // not void another window. Failed puts void a few more.
        let voided = (last - first) as usize - seen.len();
        let gaps: Vec<(i64, i64)> = seen.windows(2).filter(|w| w[1] - w[0] > 10).map(|w| (w[0], w[1])).collect();
        println!("gaps over 10 revisions: {gaps:?}");
        assert!(voided < HIGH_MARK_WINDOW as usize + 100, "{voided} revisions voided in {first}..={last}");
        println!("{} acknowledged puts, all watched; revisions {first}..={last}, {voided} voided", acked.len());
    })
    .await;
}
