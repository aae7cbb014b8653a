//! Regions split by themselves as they grow (issue [split-merge], docs/design.md
//! "Auto-split"): the real binary with a small key threshold, writers and a
//! watcher working through the splits, no error, no lost write, no missed
//! or repeated event.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{admin, Tessera};
use etcd_client::{Client, EventType, GetOptions, WatchOptions};

const MAX_KEYS: usize = 40;

/// (regions, the most live keys in one) from `tessera admin regions --json`.
fn regions(endpoint: &str) -> (usize, usize) {
    let json = admin(endpoint, &["regions", "--json"]);
    let keys: Vec<usize> = json
        .split("\"keys\":")
        .skip(1)
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap())
        .collect();
    (keys.len(), keys.iter().copied().max().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regions_split_by_themselves_under_writes_and_a_watch() {
    let max_keys = MAX_KEYS.to_string();
    let node = Tessera::start(&["--region-max-keys", &max_keys, "--split-check-interval", "100ms"]);
    let endpoint = node.endpoint().to_string();
    let run = async {
        let mut client = Client::connect([endpoint.as_str()], None).await.unwrap();
        let (regions_before, _) = regions(&endpoint);
        let start = client.put("start", "", None).await.unwrap().header().unwrap().revision();
        let mut events =
            client.watch("k/", Some(WatchOptions::new().with_prefix().with_start_revision(start + 1))).await.unwrap();

        // Writers cycle over their own keys until the keyspace has split a
        // few times (or a bound passes); every put must succeed.
        let enough = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..3 {
            let (enough, endpoint) = (enough.clone(), endpoint.clone());
            writers.push(tokio::spawn(async move {
                let mut c = Client::connect([endpoint.as_str()], None).await.unwrap();
                let mut acked = Vec::new();
                let mut n = 0usize;
                while !enough.load(Ordering::Relaxed) || n < 200 {
                    let key = format!("k/{:03}/{w}", n % 150);
                    let value = format!("{w}-{n}");
                    let r = c.put(key.as_str(), value.as_str(), None).await;
                    let r = r.unwrap_or_else(|e| panic!("writer {w}: put {key}: {e}"));
                    acked.push((r.header().unwrap().revision(), key, value));
                    n += 1;
                }
                acked
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while regions(&endpoint).0 < regions_before + 6 {
            assert!(Instant::now() < deadline, "the keyspace did not split by itself: {:?}", regions(&endpoint));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        enough.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        for w in writers {
            acked.extend(w.await.unwrap());
        }
        acked.sort();
        println!("{} puts acknowledged", acked.len());

        // Splitting goes on until no region is over the threshold.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (n, most) = regions(&endpoint);
            if most <= MAX_KEYS {
                println!("{n} regions (started with {regions_before}), at most {most} keys each");
                break;
            }
            assert!(Instant::now() < deadline, "a region stays over {MAX_KEYS} keys: {most} ({n} regions)");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The data is the model: the last acknowledged value of every key.
        let mut model = BTreeMap::new();
        for (_, key, value) in &acked {
            model.insert(key.clone(), value.clone());
        }
        let got = client.get("k/", Some(GetOptions::new().with_prefix())).await.unwrap();
        let have: BTreeMap<String, String> = got
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string()))
            .collect();
        assert_eq!(have, model);

        // The watch saw every acknowledged put once, in revision order.
        let mut seen = Vec::new();
        while seen.len() < acked.len() {
            let resp = tokio::time::timeout(Duration::from_secs(10), events.message())
                .await
                .unwrap_or_else(|_| panic!("watch stalled after {} of {} events", seen.len(), acked.len()))
                .unwrap()
                .expect("watch stream open");
            for e in resp.events() {
                assert_eq!(e.event_type(), EventType::Put);
                let kv = e.kv().unwrap();
                seen.push((kv.mod_revision(), kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string()));
            }
        }
        assert_eq!(seen, acked, "the watch's events differ from the acknowledged puts");
    };
    tokio::time::timeout(Duration::from_secs(180), run).await.expect("auto-split test timed out");
}

/// With --auto-merge, neighbours that hold little merge back (one pair per
/// look) and the data stays; a keyspace that grows splits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn small_neighbours_merge_back_when_asked() {
    let max_keys = MAX_KEYS.to_string();
    let node =
        Tessera::start(&["--region-max-keys", &max_keys, "--split-check-interval", "100ms", "--auto-merge", "true"]);
    let endpoint = node.endpoint().to_string();
    let run = async {
        let mut client = Client::connect([endpoint.as_str()], None).await.unwrap();
        let keys = ["a", "c", "n", "u", "z"];
        for k in keys {
            client.put(k, k, None).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while regions(&endpoint).0 > 1 {
            assert!(Instant::now() < deadline, "small regions did not merge: {:?}", regions(&endpoint));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let got = client.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
        let have: Vec<&str> = got.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
        assert_eq!(have, keys);

        for i in 0..3 * MAX_KEYS {
            client.put(format!("g/{i:03}"), "v", None).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (n, most) = regions(&endpoint);
            if n >= 3 && most <= MAX_KEYS {
                println!("{n} regions after growing, at most {most} keys each");
                break;
            }
            assert!(Instant::now() < deadline, "the grown keyspace did not split: {n} regions, {most} keys at most");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let count = client.get("", Some(GetOptions::new().with_all_keys().with_count_only())).await.unwrap().count();
        assert_eq!(count as usize, keys.len() + 3 * MAX_KEYS);
    };
    tokio::time::timeout(Duration::from_secs(180), run).await.expect("auto-merge test timed out");
}
