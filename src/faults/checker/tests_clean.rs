//! Histories that must pass, and the report's shape.

use super::testkit::*;
use super::{AnomalyClass, MAX_PER_CLASS};
use crate::faults::history::*;

#[test]
fn clean_multi_client_history_passes() {
    let mut t = Builder::new();
    t.watch(all(), 1, &[]);
    t.watch(KeyRange::prefix(b"p/"), 2, &[5, 10]);
    t.watch(KeyRange::single(b"a"), 1, &[2]);
    t.put(1, "a", "a1"); // 2
    t.put(2, "b", "b1"); // 3
    t.put(1, "p/1", "p1"); // 4
    t.put(2, "p/2", "p2"); // 5
    t.put(3, "p/3", "p3"); // 6
    t.get(3, KeyRange::prefix(b"p/"), false);
    t.cas(1, &[("a", Some("a1")), ("b", Some("b1"))], &[("a", "a2"), ("b", "b2")]); // 7
    t.cas(2, &[("a", Some("a1"))], &[("a", "a3")]); // fails
    t.cas(3, &[("c", None)], &[("c", "c1")]); // 8
    t.cas(3, &[("c", None), ("a", Some("a2"))], &[("c", "c2")]); // fails
    t.delete(1, KeyRange::single(b"b")); // 9
    t.delete(2, KeyRange::single(b"zz")); // deletes nothing
    t.delete(3, KeyRange::prefix(b"p/")); // 10, three keys
    t.get(1, all(), false);
    t.get_at(2, all(), 5);
    t.get(2, all(), true);
    t.grant(1, 7);
    t.put_lease(1, "l/1", "l1", 7); // 11
    t.put_lease(2, "l/2", "l2", 7); // 12
    t.revoke(3, 7); // 13: both keys
    t.revoke(3, 7); // nothing left
    t.grant(1, 8);
    t.put_lease(1, "e/1", "e1", 8); // 14
    t.put_lease(2, "e/2", "e2", 8); // 15
    t.expire(8); // 16
    t.put_unknown(2, "u", "u1", true); // 17
    t.put_unknown(3, "u", "u2", false);
    t.put(1, "d/1", "d1"); // 18
    t.delete_unknown(2, KeyRange::prefix(b"d/"), true); // 19
    t.delete_unknown(2, KeyRange::prefix(b"d/"), false);
    t.put_failed(1, "f", "f1", 99);
    t.skip(3); // voided revisions 20..=22
    t.put(1, "p/4", "p4"); // 23
    t.get(3, all(), false);
    t.get(1, KeyRange::prefix(b"p/"), true);
    let h = t.finish(3);
    assert_eq!(h.final_revision, 23);
    let r = run(&h);
    assert_ok(&r);
    assert_eq!(r.acked_writes, 20);
    assert_eq!(r.unknown_writes, 4);
    assert_eq!(r.unknown_applied, 2);
    assert_eq!(r.lost_writes, 0);
    assert_eq!(r.reads_checked, 6);
    assert!(r.watch_events_checked > 25, "{}", r.watch_events_checked);
    assert!(r.summary().starts_with("ok |"), "{}", r.summary());
}

#[test]
fn concurrent_operations_may_take_either_order() {
    let mut t = Builder::new();
    t.watch(all(), 1, &[]);
    // "a" is invoked first but takes the later revision: they overlap.
    t.ev_put("b", "b1", 0); // 2
    t.ev_put("a", "a1", 0); // 3
    let put = |key: &str, value: &str| Op::Put { key: b(key), value: b(value), lease: 0 };
    t.record_at(1, put("a", "a1"), 10 * MS, 20 * MS, Outcome::Ok(Reply::Put { revision: 3 }));
    t.record_at(2, put("b", "b1"), 11 * MS, 15 * MS, Outcome::Ok(Reply::Put { revision: 2 }));
    // A linearizable read overlapping both may see either prefix.
    let kvs = t.state(&KeyRange::single(b"b"));
    let read = Op::Range { range: all(), serializable: false };
    t.record_at(3, read, 12 * MS, 13 * MS, Outcome::Ok(Reply::Range { revision: 2, kvs }));
    // One invoked after "b" completed must be at 2 or later.
    let kvs = t.state(&all());
    let read = Op::Range { range: all(), serializable: false };
    t.record_at(3, read, 16 * MS, 17 * MS, Outcome::Ok(Reply::Range { revision: 3, kvs }));
    t.now = 30 * MS;
    let h = t.finish(1);
    assert_ok(&run(&h));
}

#[test]
fn voided_revisions_and_a_watch_from_zero_pass() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.skip(5);
    t.put(1, "a", "a2");
    t.skip(1);
    t.delete(2, KeyRange::single(b"a"));
    let mut h = t.finish(2);
    // A watcher started "from now" (0) sees the rest.
    let events: Vec<Event> = h.events[1..].to_vec();
    let items = events.into_iter().map(|e| WatchItem::Events { at: e.kv.mod_revision as u64 * MS, events: vec![e] });
    let log = WatchLog { id: 9, range: all(), start_revision: 0, items: items.collect() };
    h.watches.push(log);
    assert_ok(&run(&h));
}

#[test]
fn anomalies_are_capped_per_class_and_summarized() {
    let mut t = Builder::new();
    for n in 0..30 {
        t.ev_put(&format!("k{n}"), &format!("nobody{n}"), 0);
    }
    let r = run(&t.finish(0));
    assert_classes(&r, &[AnomalyClass::PhantomWrite]);
    assert_eq!(r.counts[&AnomalyClass::PhantomWrite], 30);
    assert_eq!(r.anomalies.len(), MAX_PER_CLASS + 1);
    assert!(r.anomalies.last().unwrap().detail.contains("10 more"), "{:?}", r.anomalies.last());
    assert!(!r.ok());
    assert_eq!(r.anomaly_count(), 30);
    assert!(r.summary().starts_with("ANOMALIES PhantomWrite=30 |"), "{}", r.summary());
    assert_eq!(AnomalyClass::PhantomWrite.to_string(), "PhantomWrite");
}
