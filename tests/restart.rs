//! Restarts on the same data dir: regions, data, revisions and the raft log
//! (truncated or not) come back.

mod inproc;

use std::time::Duration;

use etcd_client::GetOptions;
use inproc::InProc;

/// Regression: truncating the whole applied log emptied raft-rs's
/// MemStorage, which then forgot its last index and panicked the poller.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_truncation_keeps_serving_and_survives_restart() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let dir = tempfile::tempdir().unwrap();
        let small_log = |cfg: &mut tessera::raftstore::StoreConfig| cfg.raft.log_gc_threshold = 4;
        let node = InProc::start_in(dir.path(), &["m"], small_log).await;
        let mut c = node.client().await;
        let mut last = 0;
        for i in 0..60 {
            let key = if i % 2 == 0 { format!("a{i:02}") } else { format!("z{i:02}") };
            last = c.put(key, format!("{i}"), None).await.unwrap().header().unwrap().revision();
        }
        c.compact(last - 10, None).await.unwrap();
        node.stop().await;

        let node = InProc::start_in(dir.path(), &["ignored", "split", "keys"], small_log).await;
        assert_eq!(node.store.regions().len(), 2, "regions come back from disk");
        let mut c = node.client().await;
        let all = c.get("\0", Some(GetOptions::new().with_from_key())).await.unwrap();
        assert_eq!(all.count(), 60);
        assert_eq!(all.header().unwrap().revision(), last);
        let err = c.get("a00", Some(GetOptions::new().with_revision(last - 20))).await.unwrap_err();
        assert!(err.to_string().contains("compacted"), "{err}");
        let next = c.put("b", "after", None).await.unwrap().header().unwrap().revision();
        assert_eq!(next, last + 1, "revisions continue without a gap");
        node.stop().await;
    })
    .await
    .expect("timed out");
}
