//! Moving between etcd and tessera through etcd's snapshot format: data
//! written to a real etcd 3.4 (puts, txns of several keys, deletes, leases,
//! a revoke, a compaction) goes etcd -> `etcdctl snapshot save` -> `tessera
//! snapshot restore` -> tessera -> `etcdctl snapshot save` and `tessera
//! snapshot save` -> `etcdctl snapshot status` and `etcdctl snapshot
//! restore` -> etcd, and every stop answers what the first etcd answered:
//! every key's value, create and mod revision, version and lease, at every
//! revision since the compaction; the current revision; the compaction
//! point; the leases, their TTLs and keys; the revision the next write takes.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{etcdctl, Etcd, Tessera};
use etcd_client::{Client, Compare, GetOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp};
use rand::{Rng, SeedableRng};

#[derive(Debug, PartialEq)]
struct Kv {
    key: String,
    value: Vec<u8>,
    create: i64,
    modified: i64,
    version: i64,
    lease: i64,
}

/// What a server answers about its data.
#[derive(Debug, PartialEq)]
struct State {
    revision: i64,
    /// Every key at every revision from the compaction point up.
    history: Vec<(i64, Vec<Kv>)>,
    /// (id, granted TTL, keys).
    leases: Vec<(i64, i64, Vec<String>)>,
}

async fn all_at(c: &mut Client, revision: i64) -> Result<(i64, Vec<Kv>), etcd_client::Error> {
    let r = c.get("\0", Some(GetOptions::new().with_from_key().with_revision(revision))).await?;
    let kvs = r
        .kvs()
        .iter()
        .map(|kv| Kv {
            key: kv.key_str().unwrap().to_string(),
            value: kv.value().to_vec(),
            create: kv.create_revision(),
            modified: kv.mod_revision(),
            version: kv.version(),
            lease: kv.lease(),
        })
        .collect();
    Ok((r.header().unwrap().revision(), kvs))
}

async fn state(endpoint: &str, compacted: i64) -> State {
    let mut c = common::connect(endpoint).await;
    let (revision, _) = all_at(&mut c, 0).await.unwrap();
    let below = all_at(&mut c, compacted - 1).await.err().expect("history below the compaction is gone");
    assert!(below.to_string().contains("compacted"), "{endpoint}: {below}");
    let mut history = Vec::new();
    for rev in compacted..=revision {
        history.push((rev, all_at(&mut c, rev).await.unwrap().1));
    }
    let mut leases = Vec::new();
    for l in c.leases().await.unwrap().leases() {
        let t = c.lease_time_to_live(l.id(), Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
        let mut keys: Vec<String> = t.keys().iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        keys.sort();
        leases.push((l.id(), t.granted_ttl(), keys));
    }
    leases.sort();
    State { revision, history, leases }
}

/// A seeded history on etcd: leases, puts (some large, some leased), txns
/// of several keys, deletes, a revoke, a compaction. The compaction point.
async fn write_history(endpoint: &str, seed: u64) -> i64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = common::connect(endpoint).await;
    let leases = [7001i64, 7002, 7003];
    for (id, ttl) in leases.into_iter().zip([600, 900, 300]) {
        c.lease_grant(ttl, Some(etcd_client::LeaseGrantOptions::new().with_id(id))).await.unwrap();
    }
    let mut compacted = 0;
    for step in 0..60 {
        let key = format!("k{:02}", rng.random_range(0..14));
        match rng.random_range(0..10) {
            0..=4 => {
                let len = if rng.random_range(0..8) == 0 { 6000 } else { rng.random_range(0..40) };
                let value: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                // 7003 is revoked at step 40: later puts attach to the others.
                let live = if step > 40 { 2 } else { 3 };
                let opts = (rng.random_range(0..3) == 0)
                    .then(|| PutOptions::new().with_lease(leases[rng.random_range(0..live)]));
                c.put(key, value, opts).await.unwrap();
            }
            5..=6 => {
                c.delete(key, None).await.unwrap();
            }
            _ => {
                let base = rng.random_range(0..10);
                let ops: Vec<TxnOp> =
                    (0..3).map(|i| TxnOp::put(format!("t{}", base + i * 3), format!("s{step}-{i}"), None)).collect();
                let txn =
                    Txn::new().when([Compare::version("nonexistent", etcd_client::CompareOp::Equal, 0)]).and_then(ops);
                c.txn(txn).await.unwrap();
            }
        }
        if step == 40 {
            c.lease_revoke(7003).await.unwrap();
            let rev = c.get("x", None).await.unwrap().header().unwrap().revision();
            compacted = rev - 12;
            c.compact(compacted, None).await.unwrap();
        }
    }
    compacted
}

fn tessera(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tessera {args:?}: {text}");
    text
}

/// `etcdctl snapshot status -w json` and tessera's reading of the same file agree.
fn status_both(file: &Path) -> serde_json::Value {
    let f = file.to_str().unwrap();
    let (out, err, code) = etcdctl("127.0.0.1:1", &["snapshot", "status", f, "-w", "json"], None);
    assert_eq!(code, 0, "etcdctl snapshot status {f}: {out}{err}");
    let theirs: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let ours: serde_json::Value =
        serde_json::from_str(tessera(&["snapshot", "status", f, "-w", "json"]).trim()).unwrap();
    assert_eq!(ours, theirs, "{f}: tessera's status and etcdctl's");
    println!("snapshot status {f}: {theirs}");
    theirs
}

fn key_versions(file: &Path) -> u64 {
    let db = tessera::snapshot::open_checked(file, false).unwrap();
    tessera::snapshot::etcd::count(&db, tessera::snapshot::etcd::KEY).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_round_trips_etcd_to_tessera_to_etcd() {
    let seed: u64 = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed}");
    let (out, _, _) = etcdctl("127.0.0.1:1", &["version"], None);
    assert!(out.contains("3.4"), "the etcd this test knows: {out}");
    tokio::time::timeout(Duration::from_secs(240), round_trip(seed)).await.expect("the round trip took over 240 s");
}

async fn round_trip(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let compacted = write_history(etcd.endpoint(), seed).await;
    let from_etcd = state(etcd.endpoint(), compacted).await;
    assert!(from_etcd.history.len() > 10 && from_etcd.leases.len() == 2, "{from_etcd:?}");

    // etcd -> tessera
    let f1 = dir.path().join("etcd.db");
    let (out, err, code) = etcdctl(etcd.endpoint(), &["snapshot", "save", f1.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
    let s1 = status_both(&f1);
    assert_eq!(s1["revision"], from_etcd.revision);
    let data = dir.path().join("tessera-data");
    println!("{}", tessera(&["snapshot", "restore", f1.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]));
    let node = Tessera::start_in(&data, &[]);
    assert_eq!(state(node.endpoint(), compacted).await, from_etcd, "tessera restored from etcd's snapshot");

    // The next write takes the next revision on both.
    let mut on_etcd = common::connect(etcd.endpoint()).await;
    let mut on_tessera = common::connect(node.endpoint()).await;
    let a = on_etcd.put("after", "restore", Some(PutOptions::new().with_lease(7001))).await.unwrap();
    let b = on_tessera.put("after", "restore", Some(PutOptions::new().with_lease(7001))).await.unwrap();
    assert_eq!(a.header().unwrap().revision(), from_etcd.revision + 1);
    assert_eq!(b.header().unwrap().revision(), from_etcd.revision + 1);
    let from_etcd = state(etcd.endpoint(), compacted).await;
    assert_eq!(state(node.endpoint(), compacted).await, from_etcd);

    // tessera -> etcd's format, by etcdctl and by tessera.
    let f2 = dir.path().join("tessera-by-etcdctl.db");
    let (out, err, code) = etcdctl(node.endpoint(), &["snapshot", "save", f2.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
    let f3 = dir.path().join("tessera-by-tessera.db");
    tessera(&["snapshot", "save", f3.to_str().unwrap(), "--endpoints", node.endpoint()]);
    assert!(std::fs::read(&f2).unwrap() == std::fs::read(&f3).unwrap(), "one revision, one file");
    let s2 = status_both(&f2);
    assert_eq!(s2["revision"], from_etcd.revision);
    let versions = key_versions(&f2);
    assert_eq!(versions, key_versions(&f1) + 1, "every version etcd kept, and the one written since");
    // key versions + consistent index and two compaction marks + two leases
    assert_eq!(s2["totalKey"], versions + 3 + 2);

    // -> etcd again
    let peer = format!("http://127.0.0.1:{}", common::free_ports(1)[0]);
    let etcd_dir = dir.path().join("etcd-restored");
    let (out, err, code) = etcdctl(
        "127.0.0.1:1",
        &[
            "snapshot",
            "restore",
            f2.to_str().unwrap(),
            "--name",
            "back",
            "--data-dir",
            etcd_dir.to_str().unwrap(),
            "--initial-cluster",
            &format!("back={peer}"),
            "--initial-advertise-peer-urls",
            &peer,
        ],
        None,
    );
    assert_eq!(code, 0, "etcdctl snapshot restore: {out}{err}");
    let back = Etcd::start_restored(&etcd_dir, "back", &peer);
    assert_eq!(state(back.endpoint(), compacted).await, from_etcd, "etcd restored from tessera's snapshot");
    let mut on_back = common::connect(back.endpoint()).await;
    let c = on_back.put("again", "x", None).await.unwrap();
    assert_eq!(c.header().unwrap().revision(), from_etcd.revision + 1);
    drop(node);
}
