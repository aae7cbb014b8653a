//! Durability (DESIGN invariant 5): kill -9 the real binary while 32 clients
//! write over 4 regions, restart it on the same data dir, and find every
//! acknowledged write with the revision it was acknowledged with.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Tessera;
use etcd_client::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let seed: u64 = std::env::var("TESSERA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed: {seed}");
    let outcome = tokio::time::timeout(Duration::from_secs(180), async move {
        for round in 0..2u64 {
            run_round(seed.wrapping_add(round)).await;
        }
    })
    .await;
    outcome.expect("crash test timed out");
}

async fn run_round(seed: u64) {
    let mut node = tokio::task::spawn_blocking(|| Tessera::start(&[])).await.unwrap();
    let endpoint = node.endpoint().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..32u64 {
        let endpoint = endpoint.clone();
        let stop = stop.clone();
        let acks = acks.clone();
        writers.push(tokio::spawn(async move {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (w << 32));
            let mut acked = Vec::new();
            let Ok(mut c) = Client::connect([endpoint.as_str()], None).await else { return acked };
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let region_char = b"abmtz"[rng.random_range(0..5)] as char;
                let key = format!("{region_char}/w{w}/{i}");
                let value = format!("{seed}-{w}-{i}");
                match c.put(key.clone(), value.clone(), None).await {
                    Ok(resp) => {
                        acked.push((key, value, resp.header().unwrap().revision()));
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break, // the process died under us: unacknowledged
                }
                i += 1;
            }
            acked
        }));
    }
    // Let the load run until 2000 writes were acknowledged (counted by the
    // clients: the server's count may include applied writes whose answers
    // are still on their way), then kill -9 in the middle of it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acks.load(Ordering::Relaxed) < 2000 {
        assert!(tokio::time::Instant::now() < deadline, "load did not reach 2000 acknowledged writes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() >= 2000, "only {} writes acknowledged", acked.len());
    let max_acked = acked.iter().map(|(_, _, r)| *r).max().unwrap();

    let node = tokio::task::spawn_blocking(move || node.restart_same()).await.unwrap();
    let mut c = Client::connect([node.endpoint()], None).await.unwrap();
    for (key, value, rev) in &acked {
        let r = c.get(key.as_str(), None).await.unwrap();
        let kv = r.kvs().first().unwrap_or_else(|| panic!("acknowledged write of {key} at {rev} lost (seed {seed})"));
        assert_eq!(kv.value_str().unwrap(), value, "{key}");
        assert_eq!(kv.mod_revision(), *rev, "{key} came back with another revision");
    }
    // Revisions go on after the highest acknowledged one, never reused.
    let next = c.put("after-restart", "x", None).await.unwrap().header().unwrap().revision();
    assert!(next > max_acked, "revision {next} after restart is not above {max_acked}");
    println!("round with seed {seed}: {} acknowledged writes all found after kill -9", acked.len());
}

/// SIGTERM stops the server cleanly (exit 0) and a restart finds the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_keeps_data() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut node = tokio::task::spawn_blocking(|| Tessera::start(&[])).await.unwrap();
        let mut c = Client::connect([node.endpoint()], None).await.unwrap();
        let rev = c.put("kept", "v", None).await.unwrap().header().unwrap().revision();
        let (node, status) = tokio::task::spawn_blocking(move || {
            let status = node.terminate();
            (node, status)
        })
        .await
        .unwrap();
        assert!(status.is_some_and(|s| s.success()), "graceful exit, got {status:?}");
        let node = tokio::task::spawn_blocking(move || node.restart_same()).await.unwrap();
        let mut c = Client::connect([node.endpoint()], None).await.unwrap();
        let kv = c.get("kept", None).await.unwrap().kvs()[0].clone();
        assert_eq!((kv.value_str().unwrap(), kv.mod_revision()), ("v", rev));
    })
    .await
    .expect("timed out");
}
