//! Leader-lease safety on a three-store cluster in this process (DESIGN
//! invariant 6; docs/cluster.md "Store heartbeats", "Region leaders on
//! every store"): the leader store is cut off while a client keeps
//! reading through it; the lease its reads rest on (its meta group peer's)
//! ends before any other store's peer leads the meta group, and no
//! linearizable read returns a value older than an acknowledged write,
//! also across a leader move.

mod inproc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::Client;
use inproc::cluster::InProcCluster;
use tessera::raftstore::peer::PeerShared;

/// One read through the old leader: when it started and what it saw.
struct Read {
    started: Instant,
    value: Option<String>,
}

async fn get(client: &mut Client, key: &str) -> Option<String> {
    let read = tokio::time::timeout(Duration::from_millis(500), client.get(key, None)).await;
    let resp = read.ok()?.ok()?;
    Some(resp.kvs().first().map(|kv| kv.value_str().unwrap().to_string()).unwrap_or_default())
}

/// Puts through `client` until acknowledged (bounded); the ack time.
async fn put_acked(client: &mut Client, key: &str, value: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), client.put(key, value, None)).await {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "put {key}={value} not acknowledged within 30 s");
    }
}

/// Watches, every millisecond until `stop`, when `lease` ends and when
/// one of `others` (peers of the same group on other stores) first leads.
fn watch_leadership(
    stop: Arc<AtomicBool>,
    lease: Arc<PeerShared>,
    others: Vec<Arc<PeerShared>>,
) -> std::thread::JoinHandle<(Option<Instant>, Option<Instant>)> {
    std::thread::spawn(move || {
        let (mut lease_end, mut new_leader) = (None, None);
        while !stop.load(Ordering::Relaxed) && (lease_end.is_none() || new_leader.is_none()) {
            let now = Instant::now();
            if lease_end.is_none() && !lease.lease.is_valid() {
                lease_end = Some(now);
            }
            if new_leader.is_none() && others.iter().any(|p| p.is_leader.load(Ordering::Acquire)) {
                new_leader = Some(now);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (lease_end, new_leader)
    })
}

/// No read that started after v2 was acknowledged returned v1.
fn assert_none_stale(reads: &[Read], acked: Instant) {
    for r in reads {
        if r.value.as_deref() == Some("v1") {
            assert!(r.started < acked, "a read started after v2 was acknowledged returned v1");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_leader_stops_serving_reads_before_another_is_elected() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &[]).await;
        let old = cluster.leader().await;
        // Reads rest on the leader store's lease: its meta group's.
        let region = cluster.members[old].store.meta_region;
        let mut client = Client::connect([cluster.members[old].endpoint.as_str()], None).await.unwrap();
        put_acked(&mut client, "k", "v1").await;

        // The lease is renewed from quorum acknowledgements: reads take the
        // fast path.
        let lease = cluster.members[old].store.peer(region).unwrap().shared.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lease.lease.is_valid() {
            assert!(Instant::now() < deadline, "the leader store never got a lease");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // Watch, every millisecond, when the old lease ends and when a peer
        // on another store first leads the region.
        let stop = Arc::new(AtomicBool::new(false));
        let others: Vec<_> = (0..3)
            .filter(|&i| i != old)
            .map(|i| cluster.members[i].store.peer(region).unwrap().shared.clone())
            .collect();
        let monitor = watch_leadership(stop.clone(), lease.clone(), others);

        let isolated = Instant::now();
        cluster.isolate(old);
        let reads = Arc::new(Mutex::new(Vec::new()));
        let reader = tokio::spawn({
            let (stop, reads) = (stop.clone(), reads.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let value = get(&mut client, "k").await;
                    reads.lock().unwrap().push(Read { started, value });
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });

        // Reads go on under the lease after the cut (a write taking its
        // revision from the cut-off store would hold them up: its read
        // point counts a revision handed out to another store's router).
        inproc::wait_for("a read served under the lease after the cut", || {
            reads.lock().unwrap().iter().any(|r| r.value.is_some())
        })
        .await;
        // A write through another store, acknowledged by the new leader store.
        let other = (old + 1) % 3;
        let mut writer = Client::connect([cluster.members[other].endpoint.as_str()], None).await.unwrap();
        let acked = put_acked(&mut writer, "k", "v2").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, Ordering::Relaxed);
        reader.await.unwrap();
        let (lease_end, new_leader) = monitor.join().unwrap();
        let (lease_end, new_leader) = (lease_end.expect("the lease ended"), new_leader.expect("a new leader"));
        println!(
            "isolated at 0 ms: lease ended at {} ms, another store led at {} ms, v2 acknowledged at {} ms",
            (lease_end - isolated).as_millis(),
            (new_leader - isolated).as_millis(),
            (acked - isolated).as_millis()
        );
        assert!(lease_end < new_leader, "the old lease outlived the election of another leader");

        let reads = reads.lock().unwrap();
        let served = reads.iter().filter(|r| r.value.is_some()).count();
        assert!(served > 0, "no read was served from the lease after the cut");
        assert_none_stale(&reads, acked);
        println!("{} reads through the isolated store, {served} served", reads.len());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_stay_linearizable_across_leader_moves() {
    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &["m"]).await;
        let first = cluster.leader().await;
        let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint.clone()).collect();
        let mut writer = Client::connect([endpoints[first].as_str()], None).await.unwrap();
        let mut readers = Vec::new();
        for e in &endpoints {
            readers.push(Client::connect([e.as_str()], None).await.unwrap());
        }
        // Each round: write a new value, move the leader store, and read it
        // back through every member: never older than the acknowledged one.
        let mut moves = 0;
        for round in 0..6u32 {
            let value = format!("v{round}");
            for key in ["a", "z"] {
                put_acked(&mut writer, key, &value).await;
            }
            let leader = cluster.leader().await;
            let to = (leader + 1) % 3;
            let target = cluster.members[to].store.member_id_of(cluster.members[to].store.store_id);
            let mut m = writer.maintenance_client();
            if m.move_leader(target).await.is_ok() {
                moves += 1;
            }
            for r in readers.iter_mut() {
                for key in ["a", "z"] {
                    let deadline = Instant::now() + Duration::from_secs(20);
                    let got = loop {
                        if let Some(v) = get(r, key).await {
                            break v;
                        }
                        assert!(Instant::now() < deadline, "no read of {key} succeeded");
                    };
                    assert_eq!(got, value, "{key} after round {round}");
                }
            }
        }
        assert!(moves >= 3, "only {moves} of 6 leader moves succeeded");
        println!("{moves} leader moves");
    })
    .await;
}

/// DESIGN 6 per region, where reads at region leaders rest on it
/// (docs/serve-anywhere.md, "Reads at region leaders"): a data region's
/// leader on a store other than the leader store is cut off from its
/// region's other peers (the meta group untouched). It serves pieces under
/// its lease until the lease ends, then only after a ReadIndex round,
/// which it cannot pass; the lease ends before another peer leads the
/// region, and no piece read there returns a value older than one
/// acknowledged by the new leader before the read started.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_region_leader_stops_serving_pieces_before_another_is_elected() {
    use tessera::proto::etcdserverpb::RangeRequest;
    use tessera::raftstore::transport::Filter;
    use tessera::raftstore::PieceRead;

    inproc::bounded(async {
        let cluster = InProcCluster::start(3, &["m"]).await;
        let serving = cluster.leader().await;
        // A data region led by a store other than the leader store (leader
        // balance spreads them at start).
        let led_elsewhere = || {
            let regions = cluster.members[serving].store.regions();
            regions.into_iter().filter(|r| !r.meta).find_map(|r| {
                let i = (0..3).find(|&i| {
                    i != serving
                        && cluster.members[i].store.peer(r.id).is_ok_and(|p| p.shared.leading.load(Ordering::Acquire))
                })?;
                Some((r, i))
            })
        };
        inproc::wait_for("a region led off the leader store", || led_elsewhere().is_some()).await;
        let (region, old) = led_elsewhere().unwrap();
        let other = 3 - serving - old;
        let (old_id, epoch_version) = (cluster.members[old].store.store_id, region.epoch.map_or(0, |e| e.version));
        let key = if region.start_key.is_empty() { "a" } else { "z" };
        let mut writer = Client::connect([cluster.members[other].endpoint.as_str()], None).await.unwrap();
        put_acked(&mut writer, key, "v1").await;
        let lease = cluster.members[old].store.peer(region.id).unwrap().shared.clone();
        inproc::wait_for("the region leader's lease", || lease.lease.is_valid()).await;

        let stop = Arc::new(AtomicBool::new(false));
        let others: Vec<_> = [serving, other]
            .iter()
            .map(|&i| cluster.members[i].store.peer(region.id).unwrap().shared.clone())
            .collect();
        let monitor = watch_leadership(stop.clone(), lease.clone(), others);

        // Only the region's traffic to and from the old leader is cut.
        let isolated = Instant::now();
        for m in &cluster.members {
            let me = m.store.store_id;
            let filter: Filter = Arc::new(move |to, r, _msg| r != region.id || (me != old_id && to != old_id));
            m.store.transport().unwrap().set_filter(Some(filter));
        }
        // Pieces read at the old leader, each at a read point taken as it
        // starts (as a router does).
        let reads = Arc::new(Mutex::new(Vec::new()));
        let reader = tokio::spawn({
            let (stop, reads) = (stop.clone(), reads.clone());
            let (router, store) = (cluster.members[other].router.clone(), cluster.members[old].store.clone());
            async move {
                let req = RangeRequest { key: key.as_bytes().to_vec(), ..Default::default() };
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let value = match router.read_point().await {
                        Ok((revision, _)) => {
                            let (start, end) = (key.as_bytes(), None);
                            let piece = PieceRead { region: region.id, epoch_version, revision, req: &req, start, end };
                            let read = tokio::time::timeout(Duration::from_millis(300), store.read_here(&piece)).await;
                            read.ok().and_then(|r| r.ok()).map(|(kvs, _)| {
                                kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).to_string()).unwrap_or_default()
                            })
                        }
                        Err(_) => None,
                    };
                    reads.lock().unwrap().push(Read { started, value });
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });

        // v2 once another peer leads (a put the old leader took would hold
        // every read there until it commits or fails).
        let new_peers: Vec<_> = [serving, other]
            .iter()
            .map(|&i| cluster.members[i].store.peer(region.id).unwrap().shared.clone())
            .collect();
        inproc::wait_for("another leader", || new_peers.iter().any(|p| p.leading.load(Ordering::Acquire))).await;
        let acked = put_acked(&mut writer, key, "v2").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        reader.await.unwrap();
        let (lease_end, new_leader) = monitor.join().unwrap();
        let (lease_end, new_leader) = (lease_end.expect("the lease ended"), new_leader.expect("a new leader"));
        println!(
            "cut at 0 ms: region lease ended at {} ms, another peer led at {} ms, v2 acknowledged at {} ms",
            (lease_end - isolated).as_millis(),
            (new_leader - isolated).as_millis(),
            (acked - isolated).as_millis()
        );
        assert!(lease_end < new_leader, "the old region lease outlived the election of another leader");
        let reads = reads.lock().unwrap();
        let served_after_cut = reads.iter().filter(|r| r.value.is_some()).count();
        assert!(served_after_cut > 0, "no piece was served under the lease after the cut");
        assert_none_stale(&reads, acked);
        println!("{} piece reads at the cut-off leader, {served_after_cut} served", reads.len());
    })
    .await;
}
