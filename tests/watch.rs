//! The etcd Watch API through the Rust `etcd-client` crate against an
//! in-process tessera with 4 regions (split at b, m, t): every event once,
//! in revision order, across regions (DESIGN invariant 4), a cross-region
//! txn's events in one response, history replay, compaction, progress,
//! filters, ids, and a stalled watcher that catches up.

mod inproc;

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{
    CompactionOptions, EventType, Txn, TxnOp, WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};
use inproc::{bounded, InProc};
use rand::{Rng, SeedableRng};

const SPLITS: &[&str] = &["b", "m", "t"];

/// The next response, within 10 s.
async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("no watch response within 10 s")
        .expect("watch stream failed")
        .expect("watch stream ended")
}

/// What a write did to one key, as the writer saw it acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    key: String,
    /// `None` for a delete.
    value: Option<String>,
}

/// One seen event: (revision, key, value or None for DELETE, previous value).
type Seen = (i64, String, Option<String>, Option<String>);

/// Collects a watcher's events up to `last`; checks each response holds
/// whole revisions in increasing order.
async fn collect(stream: &mut WatchStream, last: i64) -> Vec<Seen> {
    let mut seen: Vec<Seen> = Vec::new();
    while seen.last().map_or(0, |s| s.0) < last {
        let resp = next(stream).await;
        assert!(!resp.canceled(), "canceled: {}", resp.cancel_reason());
        let mut revs: Vec<i64> = Vec::new();
        for ev in resp.events() {
            let kv = ev.kv().unwrap();
            let value = (ev.event_type() == EventType::Put).then(|| kv.value_str().unwrap().to_string());
            let prev = ev.prev_kv().map(|p| p.value_str().unwrap().to_string());
            seen.push((kv.mod_revision(), kv.key_str().unwrap().to_string(), value, prev));
            revs.push(kv.mod_revision());
        }
        assert!(revs.windows(2).all(|w| w[0] <= w[1]), "events out of order in one response: {revs:?}");
        if let (Some(first), Some(prev)) = (revs.first(), seen.len().checked_sub(revs.len() + 1)) {
            assert!(seen[prev].0 < *first, "a revision split across responses or out of order");
        }
    }
    seen
}

/// DESIGN invariant 4 under load: 16 clients make 10,000 writes (puts,
/// deletes and cross-region txns) over 4 regions while watchers on the whole
/// keyspace (with prev_kv) and on prefixes get every event exactly once, in
/// revision order, a txn's events together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_once_in_order_across_regions_under_concurrent_writes() {
    let seed: u64 = std::env::var("TESSERA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed: {seed}");
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let start = c.get("x", None).await.unwrap().header().unwrap().revision();
        let mut whole = c.watch("\0", Some(WatchOptions::new().with_from_key().with_prev_key())).await.unwrap();
        let mut one_region = c.watch("c", Some(WatchOptions::new().with_prefix())).await.unwrap();
        let mut two_regions = c.watch("a", Some(WatchOptions::new().with_range("c\u{ff}"))).await.unwrap();
        for w in [&mut whole, &mut one_region, &mut two_regions] {
            assert!(next(w).await.created());
        }

        let clients = 16u64;
        let per_client = 625; // 10,000 writes in all
        let mut tasks = Vec::new();
        for w in 0..clients {
            let mut c = node.client().await;
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ w);
                let mut acked: Vec<(i64, Vec<Change>)> = Vec::new();
                let mut live: Vec<String> = Vec::new();
                for i in 0..per_client {
                    let region = ['a', 'c', 'n', 'u'][rng.random_range(0..4)];
                    let key = format!("{region}/{w}/{i}");
                    let value = format!("{w}-{i}");
                    let roll = rng.random_range(0..10);
                    let (rev, changes) = if roll < 2 && !live.is_empty() {
                        let victim = live.swap_remove(rng.random_range(0..live.len()));
                        let r = c.delete(victim.clone(), None).await.unwrap();
                        assert_eq!(r.deleted(), 1);
                        (r.header().unwrap().revision(), vec![Change { key: victim, value: None }])
                    } else if roll < 4 {
                        // A txn over two regions.
                        let other = format!("{}/{w}/{i}t", ['a', 'c', 'n', 'u'][rng.random_range(0..4)]);
                        let txn = Txn::new().and_then([
                            TxnOp::put(key.clone(), value.clone(), None),
                            TxnOp::put(other.clone(), "t", None),
                        ]);
                        let r = c.txn(txn).await.unwrap();
                        live.push(key.clone());
                        live.push(other.clone());
                        let changes =
                            vec![Change { key, value: Some(value) }, Change { key: other, value: Some("t".into()) }];
                        (r.header().unwrap().revision(), changes)
                    } else {
                        let r = c.put(key.clone(), value.clone(), None).await.unwrap();
                        live.push(key.clone());
                        (r.header().unwrap().revision(), vec![Change { key, value: Some(value) }])
                    };
                    acked.push((rev, changes));
                }
                acked
            }));
        }
        let mut model: BTreeMap<i64, Vec<Change>> = BTreeMap::new();
        for t in tasks {
            for (rev, changes) in t.await.unwrap() {
                assert!(model.insert(rev, changes).is_none(), "revision {rev} acknowledged twice");
            }
        }
        let last = *model.keys().last().unwrap();
        assert_eq!(model.len() as i64, last - start, "one revision per write, no gaps");

        // The whole-keyspace watcher: exactly the model, in order, with prev_kv.
        let seen = collect(&mut whole, last).await;
        let mut expected: Vec<Seen> = Vec::new();
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        for (rev, changes) in &model {
            for ch in changes {
                let prev = match &ch.value {
                    Some(v) => values.insert(ch.key.clone(), v.clone()),
                    None => values.remove(&ch.key),
                };
                expected.push((*rev, ch.key.clone(), ch.value.clone(), prev));
            }
        }
        assert_eq!(seen.len(), expected.len(), "every event exactly once");
        assert_eq!(seen, expected, "events in revision order, txn events in op order, prev_kv right");

        // Prefix watchers: the model restricted to their keys.
        let restricted = |keep: &dyn Fn(&str) -> bool| -> Vec<Seen> {
            expected.iter().filter(|s| keep(&s.1)).map(|s| (s.0, s.1.clone(), s.2.clone(), None)).collect()
        };
        let want_c = restricted(&|k| k.starts_with('c'));
        let got_c = collect(&mut one_region, want_c.last().unwrap().0).await;
        assert_eq!(got_c, want_c);
        let want_ac = restricted(&|k| k >= "a" && k < "c\u{ff}");
        let got_ac = collect(&mut two_regions, want_ac.last().unwrap().0).await;
        assert_eq!(got_ac, want_ac);
        println!("{} writes, {} events seen by the whole-keyspace watcher", model.len(), seen.len());
        node.stop().await;
    })
    .await;
}

/// A cross-region txn and a delete over every region reach a watcher as one
/// revision's events in one response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_region_txn_is_one_response() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let mut w = c.watch("\0", Some(WatchOptions::new().with_from_key())).await.unwrap();
        assert!(next(&mut w).await.created());
        let txn = Txn::new().and_then(["u1", "a1", "n1", "c1"].map(|k| TxnOp::put(k, "v", None)).to_vec());
        let rev = c.txn(txn).await.unwrap().header().unwrap().revision();
        let resp = next(&mut w).await;
        let keys: Vec<&str> = resp.events().iter().map(|e| e.kv().unwrap().key_str().unwrap()).collect();
        assert_eq!(keys, ["u1", "a1", "n1", "c1"], "one response, in the txn's order");
        assert!(resp.events().iter().all(|e| e.kv().unwrap().mod_revision() == rev));
        c.delete("\0", Some(etcd_client::DeleteOptions::new().with_from_key())).await.unwrap();
        let resp = next(&mut w).await;
        let keys: Vec<&str> = resp.events().iter().map(|e| e.kv().unwrap().key_str().unwrap()).collect();
        assert_eq!(keys, ["a1", "c1", "n1", "u1"], "a delete's events in key order");
        assert!(resp.events().iter().all(|e| e.event_type() == EventType::Delete));
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_replay_compaction_progress_filters_and_ids() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let first = c.put("k", "1", None).await.unwrap().header().unwrap().revision();
        c.put("k", "2", None).await.unwrap();
        c.delete("k", None).await.unwrap();
        let last = c.put("k", "3", None).await.unwrap().header().unwrap().revision();

        // Replay from an old revision: the whole history, then live events.
        let mut w = c.watch("k", Some(WatchOptions::new().with_start_revision(first).with_prev_key())).await.unwrap();
        let created = next(&mut w).await;
        assert!(created.created());
        assert_eq!(created.watch_id(), 0, "server ids start at 0 per stream");
        assert_eq!(created.header().unwrap().revision(), last);
        let seen = collect(&mut w, last).await;
        let types: Vec<(i64, Option<String>, Option<String>)> = seen.into_iter().map(|s| (s.0, s.2, s.3)).collect();
        assert_eq!(
            types,
            vec![
                (first, Some("1".into()), None),
                (first + 1, Some("2".into()), Some("1".into())),
                (first + 2, None, Some("2".into())),
                (last, Some("3".into()), None),
            ]
        );
        // A second watcher on the same stream gets the next id; filters.
        w.watch("k", Some(WatchOptions::new().with_filters([WatchFilterType::NoPut]))).await.unwrap();
        let created = next(&mut w).await;
        assert_eq!((created.created(), created.watch_id()), (true, 1));
        w.watch("k", Some(WatchOptions::new().with_watch_id(7).with_filters([WatchFilterType::NoDelete])))
            .await
            .unwrap();
        assert_eq!(next(&mut w).await.watch_id(), 7, "a client-chosen id");
        w.watch("k", Some(WatchOptions::new().with_watch_id(7))).await.unwrap();
        let dup = next(&mut w).await;
        assert!(dup.created() && dup.canceled() && dup.watch_id() == -1, "{dup:?}");
        assert_eq!(dup.cancel_reason(), "mvcc: duplicate watch ID provided on the WatchStream");
        c.delete("k", None).await.unwrap();
        let mut by_id = BTreeMap::new();
        for _ in 0..2 {
            let r = next(&mut w).await;
            by_id.insert(r.watch_id(), r.events()[0].event_type());
        }
        assert_eq!(by_id, BTreeMap::from([(0, EventType::Delete), (1, EventType::Delete)]), "7 drops deletes");
        c.put("k", "4", None).await.unwrap();
        let mut by_id = BTreeMap::new();
        for _ in 0..2 {
            let r = next(&mut w).await;
            by_id.insert(r.watch_id(), r.events()[0].event_type());
        }
        assert_eq!(by_id, BTreeMap::from([(0, EventType::Put), (7, EventType::Put)]), "1 drops puts");
        w.cancel(7).await.unwrap();
        let canceled = next(&mut w).await;
        assert_eq!((canceled.canceled(), canceled.watch_id()), (true, 7));

        // Progress on request: watch id -1 with the current revision.
        let now = c.put("other", "x", None).await.unwrap().header().unwrap().revision();
        w.request_progress().await.unwrap();
        let progress = next(&mut w).await;
        assert_eq!((progress.watch_id(), progress.events().len()), (-1, 0));
        assert_eq!(progress.header().unwrap().revision(), now);

        // Compaction: a watch from below it is canceled with the compacted
        // revision; from it, the history is still there.
        c.compact(last, Some(CompactionOptions::new().with_physical())).await.unwrap();
        let mut old = c.watch("k", Some(WatchOptions::new().with_start_revision(first))).await.unwrap();
        assert!(next(&mut old).await.created());
        let gone = next(&mut old).await;
        assert!(gone.canceled());
        assert_eq!(gone.compact_revision(), last);
        assert_eq!(gone.header().unwrap().revision(), 0, "as etcd");
        let mut kept = c.watch("k", Some(WatchOptions::new().with_start_revision(last))).await.unwrap();
        assert!(next(&mut kept).await.created());
        let ev = next(&mut kept).await;
        assert_eq!(ev.events()[0].kv().unwrap().mod_revision(), last);

        // Progress notifications for a quiet watcher that asked for them.
        let mut quiet = c.watch("q", Some(WatchOptions::new().with_progress_notify())).await.unwrap();
        assert!(next(&mut quiet).await.created());
        let note = next(&mut quiet).await;
        assert!(note.events().is_empty() && !note.canceled());
        assert!(note.header().unwrap().revision() >= now);
        node.stop().await;
    })
    .await;
}

/// A watcher whose client stops reading does not slow writers down, and
/// gets every event once it reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_watcher_catches_up_without_blocking_writes() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let mut stalled = c.watch("\0", Some(WatchOptions::new().with_from_key())).await.unwrap();
        assert!(next(&mut stalled).await.created());
        let start = c.get("x", None).await.unwrap().header().unwrap().revision();
        // Big values fill the stream's buffers long before the end.
        let value = "v".repeat(4096);
        let mut writers = Vec::new();
        for w in 0..8 {
            let mut c = node.client().await;
            let value = value.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..500 {
                    c.put(format!("{}/{w}/{i}", ['a', 'c', 'n', 'u'][i % 4]), value.clone(), None).await.unwrap();
                }
            }));
        }
        for w in writers {
            tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("writes blocked by a stalled watcher")
                .unwrap();
        }
        let last = c.get("x", None).await.unwrap().header().unwrap().revision();
        assert_eq!(last - start, 4000);
        let seen = collect(&mut stalled, last).await;
        let revs: Vec<i64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(revs, (start + 1..=last).collect::<Vec<_>>(), "every event once, in order");
        node.stop().await;
    })
    .await;
}

/// What a Kubernetes reflector does: list at a revision, watch from the next
/// one while others write, apply the events to the listed state, and use
/// progress requests to learn how far it is; the state it builds equals a
/// fresh list at the same revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_then_watch_rebuilds_the_state_like_a_kubernetes_reflector() {
    use etcd_client::GetOptions;
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        for i in 0..100 {
            let region = ['a', 'c', 'n', 'u'][i % 4];
            c.put(format!("{region}/pods/{i}"), "v0", None).await.unwrap();
        }
        let mut writers = Vec::new();
        for w in 0..4usize {
            let mut c = node.client().await;
            writers.push(tokio::spawn(async move {
                for i in 0..200usize {
                    let key = format!("{}/pods/{}", ['a', 'c', 'n', 'u'][(i + w) % 4], (i * 7 + w) % 120);
                    if i % 5 == 0 {
                        c.delete(key, None).await.unwrap();
                    } else {
                        c.put(key, format!("v{w}-{i}"), None).await.unwrap();
                    }
                }
            }));
        }
        // The list, at its revision.
        let list = c.get("\0", Some(GetOptions::new().with_from_key())).await.unwrap();
        let listed_at = list.header().unwrap().revision();
        let mut state: BTreeMap<String, String> =
            list.kvs().iter().map(|kv| (kv.key_str().unwrap().into(), kv.value_str().unwrap().into())).collect();
        let opts = WatchOptions::new().with_from_key().with_start_revision(listed_at + 1).with_progress_notify();
        let mut w = c.watch("\0", Some(opts)).await.unwrap();
        assert!(next(&mut w).await.created());
        for t in writers {
            t.await.unwrap();
        }
        let last = c.get("x", None).await.unwrap().header().unwrap().revision();
        // Apply events until a progress response says everything up to
        // `last` was sent.
        let mut seen_up_to = listed_at;
        loop {
            if seen_up_to >= last {
                w.request_progress().await.unwrap();
            }
            let resp = next(&mut w).await;
            if resp.watch_id() == -1 {
                assert!(resp.header().unwrap().revision() >= last);
                break;
            }
            for ev in resp.events() {
                let kv = ev.kv().unwrap();
                assert!(kv.mod_revision() >= seen_up_to, "out of order");
                seen_up_to = kv.mod_revision();
                let key = kv.key_str().unwrap().to_string();
                match ev.event_type() {
                    EventType::Put => state.insert(key, kv.value_str().unwrap().into()),
                    EventType::Delete => state.remove(&key),
                };
            }
        }
        let fresh = c.get("\0", Some(GetOptions::new().with_from_key().with_revision(last))).await.unwrap();
        let want: BTreeMap<String, String> =
            fresh.kvs().iter().map(|kv| (kv.key_str().unwrap().into(), kv.value_str().unwrap().into())).collect();
        assert_eq!(state, want, "list + watch rebuilt the state at revision {last}");
        node.stop().await;
    })
    .await;
}
