//! MemberAdd and MemberRemove with real processes, driven by etcdctl
//! while clients write (issue [cluster], docs/cluster.md "Membership
//! changes"): a fourth store joins and gets every region by snapshot, the
//! leader store itself is removed and stops, no acknowledged write is
//! lost, and the new store is a real voter: with one of the three left
//! killed, the cluster still takes writes. And a MemberAdd whose leader
//! store dies halfway is finished by the next one.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::load::{check_acked, start_writers, wait_acks, wait_same_hash, Acked, Stale, StopOnDrop};
use common::{connect, etcdctl, free_ports, make_leader_store, Cluster, CLUSTER_READY};

/// `etcdctl member list` lines as (hex id, name).
fn member_list(endpoint: &str) -> Vec<(String, String)> {
    let (out, err, code) = etcdctl(endpoint, &["member", "list"], None);
    assert_eq!(code, 0, "member list: {err}");
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            (f[0].to_string(), f[2].to_string())
        })
        .collect()
}

#[test]
fn add_a_fourth_store_then_remove_the_leader_store_under_load() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start(3);
    rt.block_on(make_leader_store(&cluster.endpoint(0)));
    let (acked, stop): (Acked, _) = Default::default();
    let stop: Arc<AtomicBool> = stop;
    let _stop = StopOnDrop(stop.clone());
    let stale: Stale = Default::default();
    start_writers(&rt, vec![cluster.endpoint(1), cluster.endpoint(2)], acked.clone(), stale.clone(), stop.clone());
    wait_acks(&acked, 200, "before the change");

    // Bad changes get etcd's errors and change nothing.
    let n2_url = etcdctl(&cluster.endpoint(1), &["member", "list"], None)
        .0
        .lines()
        .nth(1)
        .unwrap()
        .split(", ")
        .nth(3)
        .unwrap()
        .to_string();
    for (args, error) in [
        (vec!["member", "add", "x", "--peer-urls", n2_url.as_str()], "etcdserver: Peer URLs already exists"),
        (vec!["member", "remove", "1234abcd"], "etcdserver: member not found"),
        (
            vec!["member", "add", "x", "--learner", "--peer-urls", "http://127.0.0.1:9"],
            "learner members are not supported",
        ),
    ] {
        let (_, err, code) = etcdctl(&cluster.endpoint(2), &args, None);
        assert!(code != 0 && err.contains(error), "{args:?}: {err}");
    }
    assert_eq!(member_list(&cluster.endpoint(0)).len(), 3);

    // Add n4 through a follower (forwarded to the leader store), start it.
    let peer_url = format!("http://127.0.0.1:{}", free_ports(1)[0]);
    let (out, err, code) = etcdctl(&cluster.endpoint(1), &["member", "add", "n4", "--peer-urls", &peer_url], None);
    assert_eq!(code, 0, "member add: {err}\n{}", cluster.logs(4096));
    assert!(out.contains("added to cluster") && out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{out}");
    let started = Instant::now();
    let n4 = cluster.join(&peer_url);
    let revision = rt.block_on(async {
        let mut c = connect(&cluster.endpoint(1)).await;
        c.put("joined", "1", None).await.expect("put").header().unwrap().revision()
    });
    let endpoints = [cluster.endpoint(1), cluster.endpoint(n4)];
    let same = rt.block_on(wait_same_hash(&endpoints, revision));
    assert!(same.is_ok(), "n4 differs at {revision}: {same:?}\n{}", cluster.logs(16 << 10));
    println!("n4 holds every region {} ms after it started", started.elapsed().as_millis());
    let log = cluster.node(n4).unwrap().log_tail(1 << 20);
    assert!(log.contains("region created from a snapshot"), "{log}");
    let names: Vec<String> = member_list(&cluster.endpoint(n4)).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["n1", "n2", "n3", "n4"]);

    // Remove n1, the leader store, while the writers go on.
    let before = acked.lock().unwrap().len();
    let n1 = member_list(&cluster.endpoint(1)).into_iter().find(|(_, n)| n == "n1").unwrap().0;
    let (_, err, code) = etcdctl(&cluster.endpoint(2), &["member", "remove", &n1], None);
    assert_eq!(code, 0, "member remove: {err}\n{}", cluster.logs(4096));
    let deadline = Instant::now() + CLUSTER_READY;
    while cluster.node(0).unwrap().is_running() {
        assert!(Instant::now() < deadline, "the removed member still runs\n{}", cluster.logs(4096));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cluster.nodes[0].as_ref().unwrap().log_tail(4096).contains("removed from the cluster"));
    // Started again on its data dir, it stops again: at once if it applied
    // its removal, else when a member refuses its messages.
    let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cluster.restart(0)));
    let said = match restarted {
        Err(panic) => panic.downcast_ref::<String>().cloned().unwrap_or_default(),
        Ok(()) => {
            let deadline = Instant::now() + CLUSTER_READY;
            while cluster.node(0).unwrap().is_running() {
                assert!(Instant::now() < deadline, "the removed member runs again\n{}", cluster.logs(4096));
                std::thread::sleep(Duration::from_millis(50));
            }
            cluster.nodes[0].as_ref().unwrap().log_tail(1 << 16)
        }
    };
    assert!(said.contains("removed from the cluster"), "{said}");
    let names: Vec<String> = member_list(&cluster.endpoint(n4)).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["n2", "n3", "n4"]);
    wait_acks(&acked, before + 200, "after the removal");
    stop.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let acked = acked.lock().unwrap().clone();
    println!("{} writes acknowledged", acked.len());
    assert!(stale.lock().unwrap().is_empty(), "stale linearizable reads: {:?}", stale.lock().unwrap());

    let revision = rt.block_on(async {
        let mut c = connect(&cluster.endpoint(n4)).await;
        c.put("settled", "1", None).await.expect("put").header().unwrap().revision()
    });
    let endpoints = [cluster.endpoint(1), cluster.endpoint(2), cluster.endpoint(n4)];
    let same = rt.block_on(wait_same_hash(&endpoints, revision));
    if same.is_err() {
        let n4_log = cluster.node(n4).unwrap().log_tail(64 << 10);
        panic!("members differ at {revision}: {same:?}\n--- n4 ---\n{n4_log}");
    }
    rt.block_on(check_acked(&cluster.endpoint(n4), &acked));

    // n4 is a voter of every group: with n2 gone, n3 and n4 are a quorum.
    rt.block_on(make_leader_store(&cluster.endpoint(n4)));
    cluster.kill9(1);
    rt.block_on(async {
        let mut c = connect(&cluster.endpoint(2)).await;
        let deadline = Instant::now() + CLUSTER_READY;
        while c.put("after", "n2 killed", None).await.is_err() {
            assert!(Instant::now() < deadline, "no quorum without n2");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        check_acked(&cluster.endpoint(2), &acked).await;
    });
}

/// The leader store aborts once the meta group added the member and no
/// region has; restarted, the cluster's leader store gives every region
/// the new voter (the member set is what regions follow), and the new
/// store gets them.
#[test]
fn a_member_add_cut_short_by_a_crash_is_finished_by_the_next_leader_store() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let failpoint = |i: usize| if i == 0 { vec!["--failpoint".into(), "member-add-after-meta".into()] } else { vec![] };
    let mut cluster = Cluster::start_with(3, failpoint);
    rt.block_on(make_leader_store(&cluster.endpoint(0)));
    rt.block_on(async {
        let mut c = connect(&cluster.endpoint(1)).await;
        for k in ["a", "f", "m", "t"] {
            c.put(k, "before", None).await.expect("put");
        }
    });
    let peer_url = format!("http://127.0.0.1:{}", free_ports(1)[0]);
    let (_, _, code) = etcdctl(&cluster.endpoint(1), &["member", "add", "n4", "--peer-urls", &peer_url], None);
    assert_ne!(code, 0, "the leader store aborted halfway");
    let deadline = Instant::now() + CLUSTER_READY;
    while cluster.node(0).unwrap().is_running() {
        assert!(Instant::now() < deadline, "the failpoint did not abort n1");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The meta group now has four voters, one of them not started: with
    // n1 down, n2 and n3 alone are no quorum of it (as in etcd without
    // learners), so n1 comes back, as after any crash.
    cluster.restart(0);
    let n4 = cluster.join(&peer_url);
    // Every group (the split keys' regions and the meta group) arrives: a
    // leader sends its group to voters only.
    let groups = common::SPLIT_KEYS.split(',').count() + 2;
    let deadline = Instant::now() + CLUSTER_READY;
    loop {
        let log = cluster.node(n4).unwrap().log_tail(1 << 20);
        if log.matches("region created from a snapshot").count() >= groups {
            break;
        }
        assert!(Instant::now() < deadline, "n4 did not get every region\n{}", cluster.logs(16 << 10));
        std::thread::sleep(Duration::from_millis(50));
    }
    let revision = rt.block_on(async {
        let mut c = connect(&cluster.endpoint(n4)).await;
        c.put("after", "crash", None).await.expect("put through n4").header().unwrap().revision()
    });
    let same = rt.block_on(wait_same_hash(&[cluster.endpoint(1), cluster.endpoint(2), cluster.endpoint(n4)], revision));
    assert!(same.is_ok(), "members differ at {revision}: {same:?}");
    assert!(cluster.logs(1 << 20).contains("finishing a membership change"), "the regions were changed by whom?");
    let names: Vec<String> = member_list(&cluster.endpoint(n4)).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["n1", "n2", "n3", "n4"]);
}
