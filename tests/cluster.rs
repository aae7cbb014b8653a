//! Three real `tessera serve` processes on loopback forming one cluster
//! (issue [cluster], docs/cluster.md): any member answers any request,
//! kill -9 of the leader store loses no acknowledged write and no read
//! through any member goes back in time, a restarted
//! member catches up, and etcdctl sees a three-member cluster.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{admin, connect, etcdctl, etcdctl_until, make_leader_store, Cluster};
use etcd_client::{Client, GetOptions};

const READY: Duration = common::CLUSTER_READY;

/// Waits until a put through `endpoint` succeeds; returns its revision.
async fn wait_writable(endpoint: &str, key: &str) -> i64 {
    let mut c = connect(endpoint).await;
    let deadline = Instant::now() + READY;
    loop {
        match c.put(key, "x", None).await {
            Ok(r) => return r.header().expect("header").revision(),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no write through {endpoint} succeeded within {READY:?}: {e}"),
        }
    }
}

/// The index of the member that is the leader store (by Maintenance Status).
async fn leader_index(cluster: &Cluster) -> usize {
    let deadline = Instant::now() + READY;
    loop {
        let mut ids = Vec::new();
        let mut leader = 0;
        for (i, node) in cluster.nodes.iter().enumerate() {
            let Some(node) = node else {
                ids.push(0);
                continue;
            };
            let mut c = connect(node.endpoint()).await;
            match c.status().await {
                Ok(s) => {
                    ids.push(s.header().expect("header").member_id());
                    leader = s.leader();
                    let _ = i;
                }
                Err(_) => ids.push(0),
            }
        }
        if let Some(i) = ids.iter().position(|id| *id == leader && leader != 0) {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader store within {READY:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug, Clone)]
struct Ack {
    key: String,
    value: String,
    revision: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_leader_store_loses_no_acknowledged_write() {
    let seed: u64 = std::env::var("TESSERA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed: {seed}");
    let run = tokio::time::timeout(Duration::from_secs(240), failover(seed));
    run.await.expect("cluster failover test timed out");
}

async fn failover(seed: u64) {
    let mut cluster = tokio::task::spawn_blocking(|| Cluster::start(3)).await.unwrap();
    let endpoints = cluster.endpoints();
    wait_writable(&endpoints[1], "warm-up").await;

    // Writers, each starting on its own member and moving to the next one
    // when a request fails. `acked` is the model readers check against: the
    // highest acknowledged revision of every key.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..6usize {
        let (stop, endpoints, acked) = (stop.clone(), endpoints.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (w as u64) << 32);
            let mut at = w % endpoints.len();
            let mut client = connect(&endpoints[at]).await;
            let mut acks: Vec<Ack> = Vec::new();
            let mut failures = 0usize;
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("w{w}/{:03}", rng.random_range(0..200));
                let value = format!("{w}-{n}");
                match client.put(key.as_str(), value.as_str(), None).await {
                    Ok(r) => {
                        let revision = r.header().expect("header").revision();
                        if let Some(prev) = acks.last() {
                            assert!(
                                revision > prev.revision,
                                "writer {w}: revision {revision} after {}",
                                prev.revision
                            );
                        }
                        let mut model = acked.lock().unwrap();
                        let newest = model.entry(key.clone()).or_default();
                        *newest = (*newest).max(revision);
                        drop(model);
                        acks.push(Ack { key, value, revision });
                    }
                    Err(_) => {
                        // Outcome unknown (the member may have died with it):
                        // the key is not checked unless a later write acks.
                        failures += 1;
                        at = (at + 1) % endpoints.len();
                        client = match Client::connect([endpoints[at].as_str()], None).await {
                            Ok(c) => c,
                            Err(_) => continue,
                        };
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (acks, failures)
        }));
    }

    // Readers on every member: a linearizable read never returns a key
    // older than a write acknowledged before the read started.
    let mut readers = Vec::new();
    for r in 0..3usize {
        let (stop, endpoints, acked) = (stop.clone(), endpoints.clone(), acked.clone());
        readers.push(tokio::spawn(async move {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xeade ^ (r as u64) << 40);
            let mut at = r;
            let mut client = connect(&endpoints[at]).await;
            let (mut checked, mut failures) = (0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{}/{:03}", rng.random_range(0..6), rng.random_range(0..200));
                let floor = acked.lock().unwrap().get(&key).copied().unwrap_or(0);
                match client.get(key.as_str(), None).await {
                    Ok(got) => {
                        let rev = got.kvs().first().map_or(0, |kv| kv.mod_revision());
                        assert!(
                            rev >= floor,
                            "reader {r} via {}: {key} at {rev}, acknowledged at {floor}",
                            endpoints[at]
                        );
                        checked += 1;
                    }
                    Err(_) => {
                        failures += 1;
                        at = (at + 1) % endpoints.len();
                        if let Ok(c) = Client::connect([endpoints[at].as_str()], None).await {
                            client = c;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (checked, failures)
        }));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = leader_index(&cluster).await;
    println!("killing n{} (the leader store)", leader + 1);
    cluster.kill9(leader);
    let killed = Instant::now();
    let survivor = cluster.endpoint((leader + 1) % 3);
    wait_writable(&survivor, "after-kill").await;
    println!("first write after kill -9 of the leader store: {} ms", killed.elapsed().as_millis());
    tokio::time::sleep(Duration::from_secs(2)).await;

    let restarted = tokio::task::spawn_blocking(move || {
        cluster.restart(leader);
        cluster
    });
    let cluster = restarted.await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for (r, h) in readers.into_iter().enumerate() {
        let (checked, failures) = h.await.unwrap();
        println!("reader {r}: {checked} reads checked, {failures} failed");
        assert!(checked > 20, "reader {r} made no progress");
    }
    let mut all: Vec<Ack> = Vec::new();
    for (w, h) in writers.into_iter().enumerate() {
        let (acks, failures) = h.await.unwrap();
        println!("writer {w}: {} acknowledged, {failures} failed", acks.len());
        assert!(acks.len() > 20, "writer {w} made no progress: {} acks", acks.len());
        all.extend(acks);
    }

    // One global revision: no two acknowledged writes share one.
    let mut revisions: Vec<i64> = all.iter().map(|a| a.revision).collect();
    revisions.sort();
    let before = revisions.len();
    revisions.dedup();
    assert_eq!(before, revisions.len(), "two acknowledged writes share a revision");

    // The newest acknowledged value of every key, read linearizably through
    // every member, the restarted one included.
    let mut newest: HashMap<String, Ack> = HashMap::new();
    for a in all {
        if newest.get(&a.key).is_none_or(|n| n.revision < a.revision) {
            newest.insert(a.key.clone(), a);
        }
    }
    for endpoint in cluster.endpoints() {
        let mut c = connect(&endpoint).await;
        let deadline = Instant::now() + READY;
        let got = loop {
            match c.get("w", Some(GetOptions::new().with_prefix())).await {
                Ok(r) => break r,
                Err(e) => {
                    assert!(Instant::now() < deadline, "reading through {endpoint}: {e}\n{}", cluster.logs(4096));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let have: HashMap<String, (String, i64)> = got
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap().to_string(), (kv.value_str().unwrap().to_string(), kv.mod_revision())))
            .collect();
        for (key, ack) in &newest {
            let (value, rev) = have.get(key).unwrap_or_else(|| panic!("{key} lost (acked at {})", ack.revision));
            // A later write with an unknown outcome may have landed on top.
            assert!(*rev >= ack.revision, "{key}: mod revision {rev} below the acknowledged {}", ack.revision);
            if *rev == ack.revision {
                assert_eq!(value, &ack.value, "{key} at {rev}");
            }
        }
    }

    // The restarted member caught up: its own data hashes like the others'.
    let revision = wait_writable(&cluster.endpoint(0), "final").await;
    let deadline = Instant::now() + READY;
    loop {
        let mut hashes = Vec::new();
        for endpoint in cluster.endpoints() {
            let mut c = connect(&endpoint).await;
            hashes.push(c.hash_kv(revision).await.map(|h| h.hash()).ok());
        }
        if hashes.iter().all(|h| h.is_some() && *h == hashes[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "members' data differ at {revision}: {hashes:?}\n{}", cluster.logs(4096));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn etcdctl_sees_one_cluster_of_three_members() {
    let cluster = Cluster::start(3);
    let all = cluster.endpoints().join(",");
    let (a, b, c) = (cluster.endpoint(0), cluster.endpoint(1), cluster.endpoint(2));
    tokio::runtime::Runtime::new().unwrap().block_on(wait_writable(&b, "warm-up"));

    // Every member lists all three with their client URLs (each learns the
    // others' URLs when their links connect).
    let deadline = Instant::now() + READY;
    for endpoint in [&a, &b, &c] {
        loop {
            let (out, err, code) = etcdctl(endpoint, &["member", "list"], None);
            assert_eq!(code, 0, "member list: {err}");
            let lines: Vec<&str> = out.lines().collect();
            if lines.len() == 3 && [&a, &b, &c].iter().all(|url| out.contains(url.as_str())) {
                for (i, line) in lines.iter().enumerate() {
                    assert!(line.contains(&format!(", started, n{}, http://127.0.0.1:", i + 1)), "{out}");
                }
                break;
            }
            assert!(Instant::now() < deadline, "member list through {endpoint}:\n{out}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // endpoint status --cluster: three rows, exactly one leader.
    let (out, err, code) = etcdctl(&a, &["endpoint", "status", "--cluster", "-w", "json"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("\"Endpoint\"").count(), 3, "{out}");
    let leader = out.split("\"leader\":").nth(1).and_then(|s| s.split(',').next()).expect("a leader field");
    assert_eq!(out.matches(&format!("\"member_id\":{leader},")).count(), 1, "one member is the leader: {out}");

    // put through one member, get and watch through the others.
    let (out, err, code) = etcdctl(&b, &["put", "greeting", "hello"], None);
    assert_eq!((out.trim(), code), ("OK", 0), "{err}");
    let (out, err, code) = etcdctl(&c, &["get", "greeting"], None);
    assert_eq!((out.as_str(), code), ("greeting\nhello\n", 0), "{err}");
    let (out, _, code) = etcdctl(&all, &["get", "greeting", "--print-value-only"], None);
    assert_eq!((out.as_str(), code), ("hello\n", 0));
    let watcher = std::thread::spawn({
        let a = a.clone();
        move || etcdctl_until(&a, &["watch", "greeting", "--rev", "1"], "bye")
    });
    let (_, err, code) = etcdctl(&c, &["put", "greeting", "bye"], None);
    assert_eq!(code, 0, "{err}");
    let (out, _, _) = watcher.join().unwrap();
    assert!(out.starts_with("PUT\ngreeting\nhello\nPUT\ngreeting\nbye"), "{out}");
}

/// Splits through one member while writers work through every member: no
/// writer sees an error, the new regions have peers on all three stores
/// and get a leader with a valid lease, and every member holds the same
/// data after. (Merges on a cluster: tests/cluster_merge.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn splits_on_a_cluster_are_invisible_to_clients() {
    let run = async {
        let cluster = tokio::task::spawn_blocking(|| Cluster::start(3)).await.unwrap();
        let endpoints = cluster.endpoints();
        wait_writable(&endpoints[0], "warm-up").await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..3usize {
            let (stop, endpoint) = (stop.clone(), endpoints[w].clone());
            writers.push(tokio::spawn(async move {
                let mut client = connect(&endpoint).await;
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Keys over the whole keyspace, so every split region is written.
                    let key = format!("{}{w}-{n}", (b'a' + (n % 26) as u8) as char);
                    let put = client.put(key.as_str(), "v", None).await;
                    put.unwrap_or_else(|e| panic!("writer {w} through {endpoint}: {key}: {e}"));
                    n += 1;
                }
                n
            }));
        }
        let regions_before = admin(&endpoints[1], &["regions", "--json"]).matches("\"start_key\"").count();
        for (i, key) in ["d", "k", "q", "w"].iter().enumerate() {
            admin(&endpoints[i % 3], &["split", "--at", key]);
        }
        // Every region led, with a valid lease, on all three stores' peers.
        let deadline = Instant::now() + READY;
        loop {
            let json = admin(&endpoints[2], &["regions", "--json"]);
            let regions = json.matches("\"start_key\"").count();
            if regions == regions_before + 4 && json.matches("\"lease_valid\":true").count() == regions {
                assert_eq!(json.matches("\"store_id\":").count(), 3 * regions, "a peer on every store: {json}");
                break;
            }
            assert!(Instant::now() < deadline, "regions not all led after the splits: {json}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        for (w, h) in writers.into_iter().enumerate() {
            let n = h.await.unwrap();
            println!("writer {w}: {n} puts, none failed");
            assert!(n > 10, "writer {w} made no progress");
        }
        let revision = wait_writable(&endpoints[0], "final").await;
        let deadline = Instant::now() + READY;
        loop {
            let mut hashes = Vec::new();
            for endpoint in &endpoints {
                hashes.push(connect(endpoint).await.hash_kv(revision).await.map(|h| h.hash()).ok());
            }
            if hashes.iter().all(|h| h.is_some() && *h == hashes[0]) {
                break;
            }
            assert!(Instant::now() < deadline, "members differ at {revision}: {hashes:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run).await.expect("cluster split test timed out");
}

/// Issue [cluster], "catch-up by snapshot": a member is down while the
/// others write, split a region, grant leases, and truncate their logs
/// past where it stopped (`--raft-log-gc-threshold 20`). Restarted, it
/// gets the regions it had as snapshots and the region the split created
/// from one too; its data then hashes like the others', and as the leader
/// store it serves every key and lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_down_while_logs_are_truncated_catches_up_by_snapshot() {
    let run = async {
        let short_logs = |_| vec!["--raft-log-gc-threshold".to_string(), "20".to_string()];
        let mut cluster = tokio::task::spawn_blocking(move || Cluster::start_with(3, short_logs)).await.unwrap();
        wait_writable(&cluster.endpoint(0), "warm-up").await;
        let leader = leader_index(&cluster).await;
        let down = (leader + 1) % 3;
        cluster.kill9(down);
        println!("n{} down; n{} leads", down + 1, leader + 1);

        let endpoint = cluster.endpoint(leader);
        let mut c = connect(&endpoint).await;
        let mut expected: HashMap<String, String> = HashMap::new();
        let mut compacted = 0;
        for round in 0..2 {
            if round == 1 {
                // History compacted while it is away: it learns that by
                // snapshot, and the events after it come by snapshots too.
                compacted = c.put("compact-here", "x", None).await.unwrap().header().unwrap().revision();
                expected.insert("compact-here".into(), "x".into());
                c.compact(compacted, None).await.unwrap();
                admin(&endpoint, &["split", "--at", "d"]);
            }
            // After the split, enough that the parent's log is truncated past it.
            for i in 0..200 + 300 * round {
                // Every region gets writes: a.., c.., e.. (the split's new region), n.., u...
                let key = format!("{}{round}-{i:03}", ["a", "c", "e", "n", "u"][i % 5]);
                c.put(key.as_str(), format!("v{i}"), None).await.unwrap();
                expected.insert(key, format!("v{i}"));
            }
        }
        for i in 0..100 {
            let key = format!("e1-{:03}", i * 2);
            c.delete(key.as_str(), None).await.unwrap();
            expected.remove(&key);
        }
        // Leases (the meta group's log) past its truncation point too.
        let mut leases = Vec::new();
        for _ in 0..100 {
            leases.push(c.lease_grant(600, None).await.unwrap().id());
        }
        let opts = etcd_client::PutOptions::new().with_lease(leases[7]);
        c.put("leased", "yes", Some(opts)).await.unwrap();
        expected.insert("leased".into(), "yes".into());
        let revision = wait_writable(&endpoint, "before-restart").await;
        expected.insert("before-restart".into(), "x".into());
        let events = history(&endpoint, compacted, revision).await;

        let restarted = tokio::task::spawn_blocking(move || {
            cluster.restart(down);
            cluster
        });
        let mut cluster = restarted.await.unwrap();
        let back_at = Instant::now();
        let deadline = Instant::now() + READY;
        loop {
            let mut hashes = Vec::new();
            for endpoint in cluster.endpoints() {
                hashes.push(connect(&endpoint).await.hash_kv(revision).await.map(|h| h.hash()).ok());
            }
            if hashes.iter().all(|h| h.is_some() && *h == hashes[0]) {
                println!("n{} caught up {} ms after it was serving again", down + 1, back_at.elapsed().as_millis());
                break;
            }
            assert!(Instant::now() < deadline, "n{} did not catch up: {hashes:?}\n{}", down + 1, cluster.logs(8192));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Its log says how (read until the lines arrive through the pipe).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = cluster.nodes[down].as_ref().unwrap().log_tail(1 << 20);
            if log.contains("restored from a snapshot") && log.contains("region created from a snapshot") {
                break;
            }
            assert!(Instant::now() < deadline, "no snapshot restored and created regions on n{}:\n{log}", down + 1);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The caught-up member leads and serves what the others wrote.
        let back = cluster.endpoint(down);
        make_leader_store(&back).await;
        let mut c = connect(&back).await;
        cluster.kill9(leader);
        wait_writable(&back, "after").await;
        expected.insert("after".into(), "x".into());
        let got = c.get("", Some(GetOptions::new().with_from_key())).await.unwrap();
        let got: HashMap<String, String> = got
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string()))
            .filter(|(k, _)| k != "warm-up" && k != "final")
            .collect();
        assert_eq!(got, expected, "the data through n{}", down + 1);
        // DESIGN invariant 4 on it: the same events, in the same order.
        assert_eq!(history(&back, compacted, revision).await, events, "the watch history through n{}", down + 1);
        let old = c.get("a0-000", Some(GetOptions::new().with_revision(compacted - 1))).await;
        assert!(format!("{old:?}").contains("compacted"), "a read below the compaction: {old:?}");
        let ttl = c.lease_time_to_live(leases[7], Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys())).await;
        let ttl = ttl.expect("the lease survives");
        assert!(ttl.ttl() > 0 && ttl.keys() == [b"leased".to_vec()], "lease through n{}: {ttl:?}", down + 1);
        assert!(c.lease_time_to_live(leases[99], None).await.unwrap().ttl() > 0);
    };
    tokio::time::timeout(Duration::from_secs(180), run).await.expect("snapshot catch-up test timed out");
}

/// Every event from revision `from` to `to` through `endpoint`, as
/// (revision, key, put or delete).
async fn history(endpoint: &str, from: i64, to: i64) -> Vec<(i64, String, bool)> {
    let mut c = connect(endpoint).await;
    let opts = etcd_client::WatchOptions::new().with_from_key().with_start_revision(from);
    let mut stream = c.watch("", Some(opts)).await.expect("watch");
    let mut seen = common::watch_events(&mut stream, to).await;
    seen.retain(|e| e.0 <= to);
    seen.into_iter().map(|(revision, key, value)| (revision, key, value.is_some())).collect()
}
