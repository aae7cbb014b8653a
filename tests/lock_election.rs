//! The v3lock and v3election services through the Rust `etcd-client` crate
//! (which calls them directly), against an in-process tessera.

mod inproc;

use std::time::Duration;

use etcd_client::{Client, LockOptions, ProclaimOptions, ResignOptions};
use inproc::{bounded, code_of, InProc};
use tonic::Code;

async fn lease(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.unwrap().id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_is_held_by_one_owner_at_a_time_and_passes_on_unlock_or_expiry() {
    bounded(async {
        let node = InProc::start(&["b", "m", "t"]).await;
        let mut c = node.client().await;
        let (l1, l2, l3) = (lease(&mut c, 60).await, lease(&mut c, 60).await, lease(&mut c, 2).await);
        let first = c.lock("job", Some(LockOptions::new().with_lease(l1))).await.unwrap();
        assert_eq!(first.key(), format!("job/{l1:x}").as_bytes(), "etcd's key: name/lease in hex");

        // A second owner waits while the first holds the lock.
        let mut c2 = node.client().await;
        let second = tokio::spawn(async move { c2.lock("job", Some(LockOptions::new().with_lease(l2))).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "two owners at once");
        c.unlock(first.key()).await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), second).await.unwrap().unwrap().unwrap();
        assert_eq!(second.key(), format!("job/{l2:x}").as_bytes());

        // A third waits; the second's lease is revoked: the lock passes on.
        let mut c3 = node.client().await;
        let third = tokio::spawn(async move { c3.lock("job", Some(LockOptions::new().with_lease(l3))).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!third.is_finished());
        c.lease_revoke(l2).await.unwrap();
        let third = tokio::time::timeout(Duration::from_secs(10), third).await.unwrap().unwrap().unwrap();
        assert_eq!(third.key(), format!("job/{l3:x}").as_bytes());
        // Its own 2 s lease then expires and takes the lock key with it.
        let gone = async {
            while c.get(third.key(), None).await.unwrap().count() > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone).await.expect("the lock key outlived its lease");

        let (code, msg) = code_of(c.lock("job", Some(LockOptions::new().with_lease(999))).await.unwrap_err());
        // etcd's lock server passes its client's error on: code Unknown.
        assert_eq!((code, msg.as_str()), (Code::Unknown, "etcdserver: requested lease not found"));
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn election_campaign_leader_proclaim_observe_resign() {
    bounded(async {
        let node = InProc::start(&["b", "m", "t"]).await;
        let mut c = node.client().await;
        let (code, msg) = code_of(c.leader("vote").await.unwrap_err());
        assert_eq!((code, msg.as_str()), (Code::Unknown, "election: no leader"));
        let (l1, l2) = (lease(&mut c, 60).await, lease(&mut c, 60).await);
        let won = c.campaign("vote", "alice", l1).await.unwrap();
        let alice = won.leader().unwrap().clone();
        assert_eq!(alice.key(), format!("vote/{l1:x}").as_bytes());
        assert_eq!(alice.lease(), l1);
        let leader = c.leader("vote").await.unwrap();
        assert_eq!(leader.kv().unwrap().value(), b"alice");

        let mut observe = c.observe("vote").await.unwrap();
        let seen = observe.message().await.unwrap().unwrap();
        assert_eq!(seen.kv().unwrap().value(), b"alice");

        // Bob waits behind alice.
        let mut c2 = node.client().await;
        let bob = tokio::spawn(async move { c2.campaign("vote", "bob", l2).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!bob.is_finished(), "two leaders at once");

        c.proclaim("alice-2", Some(ProclaimOptions::new().with_leader(alice.clone()))).await.unwrap();
        let seen = observe.message().await.unwrap().unwrap();
        assert_eq!(seen.kv().unwrap().value(), b"alice-2", "observers see a proclaimed value");

        c.resign(Some(ResignOptions::new().with_leader(alice.clone()))).await.unwrap();
        let bob = tokio::time::timeout(Duration::from_secs(10), bob).await.unwrap().unwrap().unwrap();
        let bob = bob.leader().unwrap().clone();
        assert_eq!(bob.key(), format!("vote/{l2:x}").as_bytes());
        let seen = observe.message().await.unwrap().unwrap();
        assert_eq!(seen.kv().unwrap().value(), b"bob", "observers see the new leader");

        // Alice resigned: her proclaims are refused.
        let err = c.proclaim("again", Some(ProclaimOptions::new().with_leader(alice))).await.unwrap_err();
        assert_eq!(code_of(err), (Code::Unknown, "election: not leader".into()));
        node.stop().await;
    })
    .await;
}
