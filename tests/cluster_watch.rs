//! Watches across changes of the leader store (DESIGN invariant 4;
//! docs/cluster.md, "Watches when the leader store changes"): a watch
//! stream, through any member, either keeps delivering or ends with etcd's
//! "etcdserver: leader changed" (UNAVAILABLE), on which clients resume from
//! their last revision + 1 and get every event once. It never stays open
//! and silent. Checked with our own resuming client on an in-process
//! cluster, and with etcdctl (Go clientv3 resumes by itself) on three
//! `tessera serve` processes moved with `etcdctl move-leader`, and with the
//! leader store paused (SIGSTOP: it cannot end its streams itself; the
//! members that forwarded them to it end them).

mod common;
mod inproc;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, WatchOptions, WatchStream};
use inproc::cluster::InProcCluster;

/// Longest a watcher may hear nothing while it waits for a write.
const SILENCE: Duration = Duration::from_secs(10);

/// A watcher that resumes, as clientv3 does, from its last revision + 1
/// after an UNAVAILABLE error, through the same member.
struct Resuming {
    endpoint: String,
    stream: WatchStream,
    /// (revision, key) of every event, in order of arrival.
    seen: Vec<(i64, String)>,
    next: i64,
    resumed: usize,
}

impl Resuming {
    async fn open(endpoint: &str, from: i64) -> Resuming {
        let stream = watch_from(endpoint, from).await;
        Resuming { endpoint: endpoint.to_string(), stream, seen: Vec::new(), next: from, resumed: 0 }
    }

    /// Takes events until one at `last` or later arrived.
    async fn until(&mut self, last: i64) {
        while self.next <= last {
            let msg = tokio::time::timeout(SILENCE, self.stream.message()).await.unwrap_or_else(|_| {
                panic!(
                    "the watch through {} stayed open and silent for {SILENCE:?} (next {})",
                    self.endpoint, self.next
                )
            });
            match msg {
                Ok(Some(resp)) => {
                    assert!(!resp.canceled(), "watch canceled: {}", resp.cancel_reason());
                    for ev in resp.events() {
                        let kv = ev.kv().expect("kv");
                        assert!(kv.mod_revision() >= self.next, "event at {} after {}", kv.mod_revision(), self.next);
                        self.next = kv.mod_revision() + 1;
                        self.seen.push((kv.mod_revision(), kv.key_str().unwrap().to_string()));
                    }
                }
                Ok(None) => panic!("the watch through {} ended without an error (clients stop there)", self.endpoint),
                Err(etcd_client::Error::GRpcStatus(s)) => {
                    assert_eq!(s.code(), tonic::Code::Unavailable, "the watch through {} failed: {s:?}", self.endpoint);
                    assert_ne!(s.message(), "etcdserver: no leader", "clientv3 gives up a watch on this one");
                    self.resumed += 1;
                    self.stream = watch_from(&self.endpoint, self.next).await;
                }
                Err(e) => panic!("the watch through {} failed: {e}", self.endpoint),
            }
        }
    }
}

/// A watch of `w/` from revision `from` through `endpoint` (retried while
/// the member cannot take it, bounded).
async fn watch_from(endpoint: &str, from: i64) -> WatchStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let opts = WatchOptions::new().with_prefix().with_start_revision(from);
        let attempt = async { Client::connect([endpoint], None).await?.watch("w/", Some(opts)).await };
        match attempt.await {
            Ok(stream) => return stream,
            Err(e) => assert!(Instant::now() < deadline, "no watch through {endpoint} within 20 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Puts `key` through `endpoint` until acknowledged (bounded); its revision.
async fn put_acked(endpoint: &str, key: &str, value: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async { Client::connect([endpoint], None).await?.put(key, value, None).await };
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
            return r.header().expect("header").revision();
        }
        assert!(Instant::now() < deadline, "put {key} not acknowledged within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_survives_leader_store_move() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &["m"]).await;
        let mut leader = cluster.leader().await;
        let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint.clone()).collect();
        let first = put_acked(&endpoints[leader], "w/a0", "0").await;
        let mut acked = vec![(first, "w/a0".to_string())];
        // One watcher through each member: the leader store serves one
        // itself, the others forward theirs to it.
        let mut watchers = Vec::new();
        for e in &endpoints {
            let mut w = Resuming::open(e, first).await;
            w.until(first).await;
            watchers.push(w);
        }
        for round in 1..=4 {
            let to = (leader + 1) % 3;
            let target = cluster.members[to].store.member_id_of(cluster.members[to].store.store_id);
            let deadline = Instant::now() + Duration::from_secs(30);
            while !cluster.members[to].store.is_serving() {
                let mut c = Client::connect([endpoints[to].as_str()], None).await.expect("connect");
                let _ = c.move_leader(target).await;
                assert!(Instant::now() < deadline, "the leader store did not move to n{}", to + 1);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!("round {round}: the leader store moved from n{} to n{}", leader + 1, to + 1);
            leader = to;
            for key in [format!("w/a{round}"), format!("w/z{round}")] {
                acked.push((put_acked(&endpoints[(leader + round) % 3], &key, "v").await, key));
            }
            let last = acked.last().expect("acked").0;
            for w in watchers.iter_mut() {
                w.until(last).await;
            }
        }
        for (i, w) in watchers.iter().enumerate() {
            println!("watcher through n{}: {} events, resumed {} times", i + 1, w.seen.len(), w.resumed);
            assert!(w.seen.windows(2).all(|p| p[0].0 < p[1].0), "n{}: revisions out of order or repeated", i + 1);
            for a in &acked {
                assert!(w.seen.contains(a), "the watch through n{} missed {a:?}", i + 1);
            }
            assert_eq!(w.seen, watchers[0].seen, "watchers through n1 and n{} saw different histories", i + 1);
        }
    })
    .await;
}

/// A running `etcdctl watch`, its stdout collected as it comes; killed on drop.
struct EtcdctlWatch {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl EtcdctlWatch {
    fn start(endpoint: &str, args: &[&str]) -> EtcdctlWatch {
        common::require_bin(common::ETCDCTL_BIN);
        let mut cmd = Command::new(common::ETCDCTL_BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("ETCD") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoint, "watch"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcdctl");
        let out = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stdout.take().expect("piped stdout");
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        EtcdctlWatch { child, out }
    }

    /// Waits (bounded by [`SILENCE`]) until the output holds `line`.
    async fn wait_for(&self, line: &str, what: &str) {
        let deadline = Instant::now() + SILENCE;
        while !self.output().lines().any(|l| l == line) {
            assert!(Instant::now() < deadline, "{what}: no {line:?} within {SILENCE:?}; output:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }
}

impl Drop for EtcdctlWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each member's id and which is the leader store, by Maintenance Status.
async fn members(endpoints: &[String]) -> (Vec<u64>, usize) {
    let deadline = Instant::now() + common::CLUSTER_READY;
    loop {
        let mut ids = Vec::new();
        let mut leader = 0;
        for e in endpoints {
            match common::connect(e).await.status().await {
                Ok(s) => {
                    ids.push(s.header().expect("header").member_id());
                    leader = s.leader();
                }
                Err(_) => ids.push(0),
            }
        }
        if let Some(i) = ids.iter().position(|id| *id == leader && leader != 0) {
            return (ids, i);
        }
        assert!(Instant::now() < deadline, "no leader store");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_watch_survives_leader_store_move() {
    let run = async {
        let cluster = tokio::task::spawn_blocking(|| common::Cluster::start(3)).await.unwrap();
        let endpoints = cluster.endpoints();
        let first = put_acked(&endpoints[0], "w/0", "v0").await;
        let from = first.to_string();
        let watchers: Vec<EtcdctlWatch> =
            endpoints.iter().map(|e| EtcdctlWatch::start(e, &["--prefix", "w/", "--rev", &from])).collect();
        for (i, w) in watchers.iter().enumerate() {
            w.wait_for("v0", &format!("etcdctl watch through n{}", i + 1)).await;
        }
        let all = endpoints.join(",");
        for round in 1..=3 {
            let (ids, leader) = members(&endpoints).await;
            let to = (leader + 1) % 3;
            let (out, err, code) = common::etcdctl(&all, &["move-leader", &format!("{:x}", ids[to])], None);
            assert_eq!(code, 0, "etcdctl move-leader: {out}{err}");
            println!("round {round}: {}", out.trim());
            let value = format!("v{round}");
            put_acked(&endpoints[to], &format!("w/{round}"), &value).await;
            for (i, w) in watchers.iter().enumerate() {
                w.wait_for(&value, &format!("round {round}, etcdctl watch through n{}", i + 1)).await;
            }
        }
        for (i, w) in watchers.iter().enumerate() {
            let values: Vec<String> = w.output().lines().filter(|l| l.starts_with('v')).map(String::from).collect();
            assert_eq!(values, ["v0", "v1", "v2", "v3"], "etcdctl watch through n{}", i + 1);
        }
        drop(cluster);
    };
    tokio::time::timeout(Duration::from_secs(180), run).await.expect("test timed out");
}

/// A member's process stopped (SIGSTOP) until this drops (SIGCONT).
struct Paused(u32);

impl Paused {
    fn new(node: &common::Tessera) -> Paused {
        let pid = node.pid().expect("the member runs");
        assert!(signal(pid, "STOP"), "kill -STOP {pid}");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

fn signal(pid: u32, signal: &str) -> bool {
    let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
    status.is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_through_a_member_survives_a_paused_leader_store() {
    let run = async {
        let cluster = tokio::task::spawn_blocking(|| common::Cluster::start(3)).await.unwrap();
        let endpoints = cluster.endpoints();
        let first = put_acked(&endpoints[0], "w/0", "v0").await;
        let (_, leader) = members(&endpoints).await;
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let from = first.to_string();
        let watchers: Vec<EtcdctlWatch> =
            others.iter().map(|i| EtcdctlWatch::start(&endpoints[*i], &["--prefix", "w/", "--rev", &from])).collect();
        for (w, i) in watchers.iter().zip(&others) {
            w.wait_for("v0", &format!("etcdctl watch through n{}", i + 1)).await;
        }
        let paused = Paused::new(cluster.nodes[leader].as_ref().expect("the leader store runs"));
        println!("n{} (the leader store) paused", leader + 1);
        // Acknowledged once another member is the leader store.
        put_acked(&endpoints[others[0]], "w/1", "v1").await;
        for (w, i) in watchers.iter().zip(&others) {
            w.wait_for("v1", &format!("etcdctl watch through n{}, n{} paused", i + 1, leader + 1)).await;
        }
        for (w, i) in watchers.iter().zip(&others) {
            let values: Vec<String> = w.output().lines().filter(|l| l.starts_with('v')).map(String::from).collect();
            assert_eq!(values, ["v0", "v1"], "etcdctl watch through n{}", i + 1);
        }
        drop(paused);
        drop(cluster);
    };
    tokio::time::timeout(Duration::from_secs(180), run).await.expect("test timed out");
}
