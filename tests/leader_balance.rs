//! Leader balance with real processes (issue [cluster], docs/cluster.md
//! "Leader balance"): region leaders spread over the three stores at
//! start, leave a store killed with kill -9 and come back to it once it
//! restarts, and `tessera admin transfer-leader` moves one; writers
//! through every member meanwhile lose no acknowledged write and never
//! read one stale, and the stores end with the same data.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::metric;
use common::load::{check_acked, start_writers, wait_acks, wait_same_hash, Acked, Stale, StopOnDrop};
use common::spread::{balanced, leaders, spread_with_failpoint, wait_leaders};
use common::{admin, connect, make_leader_store, Cluster};

#[test]
fn leaders_spread_leave_a_killed_store_and_come_back_to_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start(3);
    // n1 is the leader store (its router serves every request); the test
    // kills n3, a store that only leads regions.
    rt.block_on(make_leader_store(&cluster.endpoint(0)));
    let entry = cluster.endpoint(0);
    for key in ["d", "h", "p", "w", "y"] {
        admin(&entry, &["split", "--at", key]);
    }
    let regions = leaders(&entry).values().map(Vec::len).sum::<usize>();
    assert_eq!(regions, 9, "4 regions at start, 5 splits");

    let (led, took) = wait_leaders(&entry, "spread at start", |l| balanced(l, &[1, 2, 3], regions));
    println!("leaders spread at start ({} ms): {led:?}", took.as_millis());

    let (acked, stale): (Acked, Stale) = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    start_writers(&rt, cluster.endpoints(), acked.clone(), stale.clone(), stop.clone());
    wait_acks(&acked, 200, "with leaders spread");

    // n3 dies: its regions get leaders on n1 and n2, writes go on.
    cluster.kill9(2);
    let killed = Instant::now();
    let (led, took) = wait_leaders(&entry, "after n3 was killed", |l| balanced(l, &[1, 2], regions));
    println!("all {regions} regions led by n1 and n2 {} ms after kill -9 of n3: {led:?}", took.as_millis());
    let before = acked.lock().unwrap().len();
    wait_acks(&acked, before + 200, "after n3 was killed");

    // n3 back: it gets its share of leaders again.
    cluster.restart(2);
    let (led, took) = wait_leaders(&entry, "after n3 came back", |l| balanced(l, &[1, 2, 3], regions));
    println!("n3 leads its share again {} ms after restart: {led:?}", took.as_millis());
    println!("({} ms after the kill)", killed.elapsed().as_millis());

    // One leadership moved by hand (waits until moved).
    let (region, to) = {
        let from_n2 = &led[&2];
        (from_n2[0], 3u64)
    };
    admin(&entry, &["transfer-leader", "--region", &region.to_string(), "--to", &to.to_string()]);
    assert!(leaders(&entry)[&to].contains(&region), "region {region} is led by store {to} after transfer-leader");

    let before = acked.lock().unwrap().len();
    wait_acks(&acked, before + 200, "after the transfers");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    let stale = stale.lock().unwrap().clone();
    assert!(stale.is_empty(), "stale linearizable reads: {stale:?}");
    let acked = acked.lock().unwrap().clone();
    for i in 0..3 {
        rt.block_on(check_acked(&cluster.endpoint(i), &acked));
    }
    let revision = rt.block_on(async { connect(&entry).await.put("end", "", None).await.unwrap() });
    let revision = revision.header().unwrap().revision();
    let same = rt.block_on(wait_same_hash(&cluster.endpoints(), revision));
    assert!(same.is_ok(), "the stores' data differ at revision {revision}: {same:?}");
    println!("{} acknowledged writes, all read back; HashKV alike at revision {revision}", acked.len());
}

/// A region leader's ask for a revision whose answer is lost (failpoint
/// `ask-answer-lost` on n2, its 5th answer): the write is retried inside
/// tessera, the lost revision is asked for again, given back and never
/// used; so every put succeeds, exactly one revision is voided, and a read
/// right after the last put is not held up by the lost one.
#[test]
fn a_lost_answer_to_an_ask_voids_its_revision_and_nothing_waits_for_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = spread_with_failpoint(&rt, 1, "ask-answer-lost:5");
    let entry = cluster.endpoint(0);
    rt.block_on(async {
        let mut c = connect(&entry).await;
        let mut revisions = vec![c.put("start", "", None).await.unwrap().header().unwrap().revision()];
        let mut last_key = String::new();
        for i in 0..200u32 {
            // Keys over every region (split at b, m and t).
            last_key = format!("{}/{i:03}", (b'a' + (i % 26) as u8) as char);
            let put = tokio::time::timeout(Duration::from_secs(15), c.put(last_key.as_str(), "v", None)).await;
            let put = put.expect("a put answered within 15 s").expect("every put succeeds");
            revisions.push(put.header().unwrap().revision());
        }
        assert!(revisions.windows(2).all(|w| w[1] > w[0]), "revisions increase: {revisions:?}");
        let voided: i64 = revisions.windows(2).map(|w| w[1] - w[0] - 1).sum();
        assert_eq!(voided, 1, "one revision voided (the lost answer's): {revisions:?}");
        let read = tokio::time::timeout(Duration::from_secs(2), c.get(last_key.as_str(), None)).await;
        let read = read.expect("a read is not held up by the lost revision").unwrap();
        assert_eq!(read.header().unwrap().revision(), *revisions.last().unwrap());
        println!("200 puts, revisions {}..={}, one voided", revisions[0], revisions.last().unwrap());
    });
    let logs = cluster.logs(1 << 20);
    assert!(logs.contains("failpoint ask-answer-lost reached"), "the failpoint was not reached:\n{logs}");
}

/// Concurrent puts to regions led by stores other than the leader store,
/// whose answers to requests for revisions come late (failpoint
/// `allocate-slow` on n1): each store keeps one request in flight,
/// carrying every region's asks, each ask a range for the region's queued
/// puts; so far fewer requests than puts, and, with no failure, the
/// revisions the puts got are one dense sequence (nothing taken and left
/// unused).
#[test]
fn concurrent_puts_share_revision_requests_and_leave_no_gap() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = spread_with_failpoint(&rt, 0, "allocate-slow");
    let entry = cluster.endpoint(0);
    let requests = || -> u64 {
        let counter = |i| metric(&cluster.endpoint(i), "tessera_revision_requests_total").expect("the counter");
        counter(1) + counter(2)
    };
    let (writers, each) = (16u32, 25u32);
    let before = requests();
    let mut revisions = rt.block_on(async {
        let first = connect(&entry).await.put("start", "", None).await.unwrap().header().unwrap().revision();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let mut c = connect(&entry).await;
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..each {
                    // Keys over every region (split at b, m and t).
                    let key = format!("{}/{w}/{i}", (b'a' + ((w + i) % 26) as u8) as char);
                    got.push(c.put(key, "v", None).await.expect("every put succeeds").header().unwrap().revision());
                }
                got
            }));
        }
        let mut all = vec![first];
        for t in tasks {
            all.extend(tokio::time::timeout(Duration::from_secs(60), t).await.expect("puts within 60 s").unwrap());
        }
        all
    });
    let sent = requests() - before;
    revisions.sort_unstable();
    let puts = (writers * each) as usize;
    let (lo, hi) = (revisions[0], *revisions.last().unwrap());
    assert_eq!(hi - lo, puts as i64, "{} puts after revision {lo}, one revision each, no gap: {revisions:?}", puts);
    assert!(revisions.windows(2).all(|w| w[1] == w[0] + 1), "no revision twice: {revisions:?}");
    println!("{puts} puts at revisions {lo}..={hi}; {sent} revision requests from n2 and n3");
    assert!(sent > 0, "n2 and n3 lead regions: they asked for revisions");
    assert!((sent as usize) < puts / 3, "{sent} revision requests for {puts} puts: not batched");
}
