//! The etcd Lease API through the Rust `etcd-client` crate against an
//! in-process tessera with 4 regions (split at b, m, t): grant, revoke,
//! keep-alive, time-to-live, list, etcd's errors, expiry deleting keys in
//! several regions at one revision, and leases surviving a restart.

mod inproc;

use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, WatchOptions};
use inproc::{bounded, code_of, InProc};
use tonic::Code;

const SPLITS: &[&str] = &["b", "m", "t"];
/// One key per region.
const KEYS: [&str; 4] = ["a/l", "c/l", "n/l", "u/l"];

async fn attach(c: &mut Client, lease: i64) {
    for k in KEYS {
        c.put(k, "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    }
}

async fn count(c: &mut Client) -> i64 {
    c.get("\0", Some(GetOptions::new().with_from_key().with_count_only())).await.unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_revoke_keep_alive_time_to_live_and_errors() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let g = c.lease_grant(60, None).await.unwrap();
        assert!(g.id() > 0);
        assert_eq!(g.ttl(), 60);
        let short = c.lease_grant(1, Some(LeaseGrantOptions::new().with_id(77))).await.unwrap();
        assert_eq!((short.id(), short.ttl()), (77, 2), "client id; TTL raised to etcd's minimum");
        let (code, msg) = code_of(c.lease_grant(5, Some(LeaseGrantOptions::new().with_id(77))).await.unwrap_err());
        assert_eq!((code, msg.as_str()), (Code::FailedPrecondition, "etcdserver: lease already exists"));
        let (code, msg) = code_of(c.lease_grant(9_000_000_001, None).await.unwrap_err());
        assert_eq!((code, msg.as_str()), (Code::OutOfRange, "etcdserver: too large lease TTL"));
        let (code, msg) = code_of(c.lease_revoke(12345).await.unwrap_err());
        assert_eq!((code, msg.as_str()), (Code::NotFound, "etcdserver: requested lease not found"));
        let (code, _) = code_of(c.put("k", "v", Some(PutOptions::new().with_lease(12345))).await.unwrap_err());
        assert_eq!(code, Code::NotFound);

        let mut ids: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
        ids.sort();
        let mut want = vec![g.id(), 77];
        want.sort();
        assert_eq!(ids, want);

        attach(&mut c, g.id()).await;
        let ttl = c.lease_time_to_live(g.id(), Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
        assert_eq!(ttl.granted_ttl(), 60);
        assert!(ttl.ttl() > 55 && ttl.ttl() <= 60);
        let keys: Vec<&[u8]> = ttl.keys().iter().map(|k| k.as_slice()).collect();
        assert_eq!(keys, KEYS.map(str::as_bytes));
        let unknown = c.lease_time_to_live(999, None).await.unwrap();
        assert_eq!(unknown.ttl(), -1, "etcd answers an unknown lease with TTL -1");

        let (mut keeper, mut responses) = c.lease_keep_alive(g.id()).await.unwrap();
        keeper.keep_alive().await.unwrap();
        let r = responses.message().await.unwrap().unwrap();
        assert_eq!((r.id(), r.ttl()), (g.id(), 60));
        // The server answers TTL 0 (no error); the crate's first round trip
        // turns that into its own error.
        match c.lease_keep_alive(999).await {
            Err(etcd_client::Error::LeaseKeepAliveError(m)) => assert_eq!(m, "lease not found"),
            other => panic!("expected TTL 0 for an unknown lease, got {:?}", other.map(|_| ())),
        }

        // Revoking deletes every attached key (4 regions) at one revision.
        let before = c.get("x", None).await.unwrap().header().unwrap().revision();
        c.lease_revoke(g.id()).await.unwrap();
        assert_eq!(count(&mut c).await, 0);
        let after = c.get("x", None).await.unwrap().header().unwrap().revision();
        assert_eq!(after, before + 1, "one revision for all the deletes");
        let (code, _) = code_of(c.put("k", "v", Some(PutOptions::new().with_lease(g.id()))).await.unwrap_err());
        assert_eq!(code, Code::NotFound, "a revoked lease takes no keys");
        node.stop().await;
    })
    .await;
}

/// An expired lease deletes its keys in every region at one revision (one
/// watch response of DELETEs); a kept-alive one keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deletes_keys_in_every_region_at_one_revision_and_keep_alive_keeps_them() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let doomed = c.lease_grant(2, None).await.unwrap().id();
        let kept = c.lease_grant(2, None).await.unwrap().id();
        attach(&mut c, doomed).await;
        c.put("c/kept", "v", Some(PutOptions::new().with_lease(kept))).await.unwrap();
        let mut w = c.watch("\0", Some(WatchOptions::new().with_from_key())).await.unwrap();
        assert!(w.message().await.unwrap().unwrap().created());
        let (mut keeper, mut acks) = c.lease_keep_alive(kept).await.unwrap();
        let granted = Instant::now();
        let resp = loop {
            keeper.keep_alive().await.unwrap();
            acks.message().await.unwrap().unwrap();
            let got = tokio::time::timeout(Duration::from_millis(500), w.message()).await;
            if let Ok(resp) = got {
                break resp.unwrap().unwrap();
            }
            assert!(granted.elapsed() < Duration::from_secs(10), "the lease never expired");
        };
        assert!(granted.elapsed() >= Duration::from_millis(1500), "expired too early");
        let events = resp.events();
        assert_eq!(events.len(), 4, "every key of the lease in one response");
        assert!(events.iter().all(|e| e.event_type() == EventType::Delete));
        let rev = events[0].kv().unwrap().mod_revision();
        assert!(events.iter().all(|e| e.kv().unwrap().mod_revision() == rev), "one revision");
        let keys: Vec<&str> = events.iter().map(|e| e.kv().unwrap().key_str().unwrap()).collect();
        assert_eq!(keys, KEYS);
        assert_eq!(c.lease_time_to_live(doomed, None).await.unwrap().ttl(), -1);
        let left = c.get("\0", Some(GetOptions::new().with_from_key())).await.unwrap();
        assert_eq!(left.kvs().len(), 1);
        assert_eq!(left.kvs()[0].key_str().unwrap(), "c/kept", "the kept-alive lease's key stays");
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_their_keys_survive_a_restart() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = InProc::start_in(dir.path(), SPLITS, |_| {}).await;
        let mut c = node.client().await;
        let id = c.lease_grant(300, None).await.unwrap().id();
        attach(&mut c, id).await;
        node.stop().await;

        let node = InProc::start_in(dir.path(), SPLITS, |_| {}).await;
        let mut c = node.client().await;
        let ttl = c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
        assert_eq!(ttl.granted_ttl(), 300);
        assert_eq!(ttl.keys().len(), 4, "the key index is rebuilt from the data");
        c.lease_revoke(id).await.unwrap();
        assert_eq!(count(&mut c).await, 0);
        node.stop().await;
    })
    .await;
}

/// A revoke answers at the revision of its deletes, as etcd does, not at
/// the newest revision handed out when it answers (found by the fault
/// harness: with writes going on, the header named a later write's
/// revision).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_revoke_answers_at_its_deletes_revision() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let mut writer = node.client().await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let busy = tokio::spawn(async move {
            let mut i = 0u64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                writer.put(format!("o/{}", i % 7), i.to_string(), None).await.unwrap();
            }
        });
        for _ in 0..40 {
            let id = c.lease_grant(60, None).await.unwrap().id();
            attach(&mut c, id).await;
            let header = c.lease_revoke(id).await.unwrap().header().unwrap().revision();
            let after = c.get(KEYS[0], Some(GetOptions::new().with_revision(header))).await.unwrap();
            assert_eq!(after.count(), 0, "the keys are gone at the revoke's header {header}");
            let before = c.get(KEYS[0], Some(GetOptions::new().with_revision(header - 1))).await.unwrap();
            assert_eq!(before.count(), 1, "the keys were there just before the revoke's header {header}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        busy.await.unwrap();
    })
    .await;
}
