//! Many regions at once (issue [regions] 19): a store created from a keys
//! file (`--initial-split-keys-file`), a split at many keys in one admin
//! call (`tessera admin split --keys-file`, one raft command per region),
//! a restart; data written before every step is read back after it.

mod common;
mod inproc;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Tessera;
use etcd_client::{Client, GetOptions};
use inproc::cluster::InProcCluster;
use tessera::proto::tesserapb::admin_client::AdminClient;
use tessera::proto::tesserapb::{Region, RegionsRequest, SplitRequest};

/// Keys of the store's keys file: 1,999 text keys and one binary key.
fn initial_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (1..2000).map(|i| format!("bulk/{i:05}").into_bytes()).collect();
    keys.push(vec![0xff, 0x01]);
    keys
}

/// A keys file's text: one key per line, `hex:` for the binary ones.
fn keys_file(keys: &[Vec<u8>]) -> String {
    let line = |k: &Vec<u8>| match std::str::from_utf8(k) {
        Ok(s) => s.to_string(),
        Err(_) => format!("hex:{}", k.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    };
    // A blank line and a \r\n ending are allowed.
    keys.iter().map(line).collect::<Vec<_>>().join("\n").replacen('\n', "\r\n\n", 1) + "\n"
}

/// Every user region, in key order (checked to cover the keyspace).
async fn regions(endpoint: &str) -> Vec<Region> {
    let admin = AdminClient::connect(endpoint.to_string()).await.expect("admin client");
    let mut admin = admin.max_decoding_message_size(usize::MAX);
    let infos = admin.regions(RegionsRequest {}).await.expect("regions").into_inner().regions;
    let mut regions: Vec<Region> = infos.into_iter().filter_map(|i| i.region).filter(|r| !r.meta).collect();
    regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    assert!(regions.first().is_some_and(|r| r.start_key.is_empty()), "the first region starts the keyspace");
    assert!(regions.last().is_some_and(|r| r.end_key.is_empty()), "the last region ends it");
    for w in regions.windows(2) {
        assert_eq!(w[0].end_key, w[1].start_key, "regions {} and {} leave a hole or overlap", w[0].id, w[1].id);
    }
    regions
}

fn starts(regions: &[Region]) -> Vec<Vec<u8>> {
    regions.iter().skip(1).map(|r| r.start_key.clone()).collect()
}

/// Keys written in regions all over the keyspace, with their values.
fn probes() -> Vec<(Vec<u8>, String)> {
    let keys: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"bulk/00001".to_vec(),
        b"bulk/00010/x".to_vec(),
        b"bulk/01000".to_vec(),
        b"bulk/01999/z".to_vec(),
        vec![0xff, 0x01, 0x02],
    ];
    keys.into_iter().enumerate().map(|(i, k)| (k, format!("v{i}"))).collect()
}

async fn read_back(client: &mut Client, data: &[(Vec<u8>, String)]) {
    for (key, value) in data {
        let got = client.get(key.clone(), None).await.expect("get");
        let values: Vec<&[u8]> = got.kvs().iter().map(|kv| kv.value()).collect();
        assert_eq!(values, vec![value.as_bytes()], "key {key:?}");
    }
}

/// `tessera admin split --keys-file PATH` against `endpoint`: its stdout.
fn admin_split_file(endpoint: &str, path: &Path) -> String {
    let path = path.to_str().expect("a UTF-8 path");
    common::admin(endpoint, &["split", "--keys-file", path])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_a_keys_file_splits_in_bulk_and_restarts() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let files = tempfile::tempdir().unwrap();
        let path = files.path().join("initial-keys");
        std::fs::write(&path, keys_file(&initial_keys())).unwrap();
        let node = Tessera::start(&["--initial-split-keys-file", path.to_str().unwrap()]);
        let endpoint = node.endpoint().to_string();
        let before = regions(&endpoint).await;
        assert_eq!(before.len(), 2001);
        assert_eq!(starts(&before), initial_keys());

        let mut client = Client::connect([endpoint.as_str()], None).await.expect("connect");
        let data = probes();
        for (key, value) in &data {
            client.put(key.clone(), value.clone(), None).await.expect("put");
        }
        read_back(&mut client, &data).await;
        let prefix = client.get("bulk/0001", Some(GetOptions::new().with_prefix())).await.expect("range");
        assert_eq!(prefix.count(), 1, "bulk/00010/x, read over the 10 regions of bulk/0001*");

        // 250 keys in 250 regions, 250 keys in the first region, 3 keys
        // that start regions already: one call, one command per region.
        let mut more: Vec<Vec<u8>> = (1..=250).map(|i| format!("bulk/{:05}/m", i * 7).into_bytes()).collect();
        more.extend((0..250).map(|i| format!("a/{i:04}").into_bytes()));
        more.extend([b"bulk/00005".to_vec(), b"bulk/00006".to_vec(), vec![0xff, 0x01]]);
        more.sort();
        let more_path = files.path().join("more-keys");
        std::fs::write(&more_path, keys_file(&more)).unwrap();
        let out = admin_split_file(&endpoint, &more_path);
        assert!(
            out.contains("500 regions created, 3 keys skipped (already a region's start), 251 raft commands"),
            "{out}"
        );
        let after = regions(&endpoint).await;
        assert_eq!(after.len(), 2501);
        let mut want: Vec<Vec<u8>> = initial_keys().into_iter().chain(more.iter().cloned()).collect();
        want.sort();
        want.dedup();
        assert_eq!(starts(&after), want);
        read_back(&mut client, &data).await;
        let fresh = [(b"a/0100/q".to_vec(), "first region, cut".to_string()), (b"bulk/00014/m".to_vec(), "new".into())];
        for (key, value) in &fresh {
            client.put(key.clone(), value.clone(), None).await.expect("put in a new region");
        }

        let restarted = Instant::now();
        let node = node.restart_same();
        let took = restarted.elapsed();
        assert!(took < Duration::from_secs(20), "a restart with 2,501 regions took {took:?}");
        let endpoint = node.endpoint().to_string();
        assert_eq!(starts(&regions(&endpoint).await), want, "regions come back from disk");
        let mut client = Client::connect([endpoint.as_str()], None).await.expect("connect");
        read_back(&mut client, &data).await;
        read_back(&mut client, &fresh).await;
        let all = client.get(vec![0], Some(GetOptions::new().with_from_key())).await.expect("range");
        assert_eq!(all.count() as usize, data.len() + fresh.len());
    })
    .await
    .expect("timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsorted_or_repeated_split_keys_are_refused() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let files = tempfile::tempdir().unwrap();
        let unsorted = files.path().join("unsorted");
        std::fs::write(&unsorted, "k1\nk3\nk2\n").unwrap();
        let data = files.path().join("data");
        let bin = env!("CARGO_BIN_EXE_tessera");
        let serve = |flag: &str, value: &str| {
            let out = Command::new(bin)
                .args(["serve", "--data-dir", data.to_str().unwrap(), "--listen-client-urls", "http://127.0.0.1:0"])
                .args([flag, value])
                .output()
                .expect("run tessera serve");
            (out.status.code(), common::log_messages(&String::from_utf8_lossy(&out.stderr)).join("\n"))
        };
        let (code, err) = serve("--initial-split-keys-file", unsorted.to_str().unwrap());
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("line 3") && err.contains("\"k2\" is not after the key before it, \"k3\""), "{err}");
        let (code, err) = serve("--initial-split-keys", "b,m,m");
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("\"m\" is a duplicate of the key before it"), "{err}");
        assert!(!data.join("CURRENT").exists(), "nothing was created");

        // The admin call checks its keys too (the CLI reads the file first,
        // so the request is made by hand).
        let node = Tessera::start(&[]);
        let mut admin = AdminClient::connect(node.endpoint().to_string()).await.expect("admin client");
        let keys = vec![b"x".to_vec(), b"c".to_vec()];
        let err = admin.split(SplitRequest { keys, ..Default::default() }).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("\"c\" is not after"), "{err:?}");
        assert_eq!(regions(node.endpoint()).await.len(), 4, "nothing was split");
        let out = Command::new(bin)
            .args(["admin", "--endpoints", node.endpoint().trim_start_matches("http://")])
            .args(["split", "--keys-file", unsorted.to_str().unwrap()])
            .output()
            .expect("run tessera admin");
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));
    })
    .await
    .expect("timed out");
}

/// On three stores a split at 3,000 keys of one region is one command that
/// every store applies: each creates the 3,000 regions, the leader store's
/// new peers win their elections at once (their vote requests wait on
/// stores that have not applied the split yet), and every new region takes
/// writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_split_on_a_cluster_creates_the_regions_everywhere() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &[]).await;
        let l = cluster.leader().await;
        let keys: Vec<Vec<u8>> = (0..3000).map(|i| format!("c/{i:04}").into_bytes()).collect();
        let started = Instant::now();
        let done = cluster.members[l].router.split_at_keys(keys.clone()).await.expect("split");
        assert_eq!((done.created, done.skipped, done.commands), (3000, 0, 1));
        cluster.wait_agree(3001).await;
        let mut c = Client::connect([cluster.members[l].endpoint.as_str()], None).await.unwrap();
        for key in keys.iter().step_by(97) {
            c.put(key.clone(), "v", None).await.unwrap_or_else(|e| panic!("put {key:?}: {e}"));
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(20), "3,000 regions split and led after {took:?}");
        let counts = cluster.members.iter().map(|m| m.store.regions().len()).collect::<Vec<_>>();
        assert_eq!(counts, [3001; 3]);
    })
    .await;
}
