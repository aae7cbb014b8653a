//! Client load for the cluster tests: writers that put their own keys
//! over every region through given members and read each acknowledged
//! key back through another member, and the checks after.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::GetOptions;

use super::{connect, CLUSTER_READY};

/// Acknowledged puts: key -> value (every key is written once).
pub type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Linearizable reads that did not see an acknowledged write.
pub type Stale = Arc<Mutex<Vec<String>>>;

/// Writers through `endpoints` until `stop`: each puts its own keys in
/// turn over every region (keys start with every letter), and reads each
/// acknowledged key back through another member (a linearizable read
/// must see it, leader store moves and membership changes included).
pub fn start_writers(
    rt: &tokio::runtime::Runtime,
    endpoints: Vec<String>,
    acked: Acked,
    stale: Stale,
    stop: Arc<AtomicBool>,
) {
    for w in 0..4 {
        let (acked, stale, stop) = (acked.clone(), stale.clone(), stop.clone());
        let (write_to, read_from) =
            (endpoints[w % endpoints.len()].clone(), endpoints[(w + 1) % endpoints.len()].clone());
        rt.spawn(async move {
            let (mut c, mut r) = (connect(&write_to).await, connect(&read_from).await);
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let letter = (b'a' + (i % 26) as u8) as char;
                let (key, value) = (format!("{letter}/w{w}/{i:06}"), format!("v{w}.{i}"));
                i += 1;
                let within = Duration::from_secs(5);
                // An error leaves the outcome unknown: such a key is not checked.
                let Ok(Ok(_)) = tokio::time::timeout(within, c.put(key.clone(), value.clone(), None)).await else {
                    continue;
                };
                acked.lock().unwrap().insert(key.clone(), value.clone());
                if let Ok(Ok(read)) = tokio::time::timeout(within, r.get(key.clone(), None)).await {
                    let seen = read.kvs().first().map(|kv| kv.value_str().unwrap().to_string());
                    if seen.as_deref() != Some(value.as_str()) {
                        stale.lock().unwrap().push(format!("{key}: acknowledged {value}, read {seen:?}"));
                    }
                }
            }
        });
    }
}

pub fn wait_acks(acked: &Acked, at_least: usize, what: &str) {
    let deadline = Instant::now() + CLUSTER_READY;
    while acked.lock().unwrap().len() < at_least {
        assert!(Instant::now() < deadline, "writes stalled {what}: {} acknowledged", acked.lock().unwrap().len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every key `acked` holds, read through `endpoint`, has its value.
pub async fn check_acked(endpoint: &str, acked: &BTreeMap<String, String>) {
    let mut c = connect(endpoint).await;
    let resp = c.get("", Some(GetOptions::new().with_from_key())).await.expect("read everything");
    let have: BTreeMap<String, String> =
        resp.kvs().iter().map(|kv| (kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string())).collect();
    for (k, v) in acked {
        assert_eq!(have.get(k), Some(v), "acknowledged write {k} through {endpoint}");
    }
}

/// Waits until the members at `endpoints` hash alike at `revision`;
/// the hashes seen last if they never do.
pub async fn wait_same_hash(endpoints: &[String], revision: i64) -> Result<(), Vec<Option<u32>>> {
    let deadline = Instant::now() + CLUSTER_READY;
    loop {
        let mut hashes = Vec::new();
        for e in endpoints {
            hashes.push(connect(e).await.hash_kv(revision).await.map(|h| h.hash()).ok());
        }
        if hashes[0].is_some() && hashes.iter().all(|h| *h == hashes[0]) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(hashes);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the writers however the test ends.
pub struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
