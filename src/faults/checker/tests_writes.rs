//! Each write anomaly class on a hand-made history, and historical bugs
//! (a) and (d).

use super::testkit::*;
use super::AnomalyClass::*;
use crate::faults::history::*;

fn set_reply(h: &mut History, op: usize, reply: Reply) {
    h.records[op].outcome = Outcome::Ok(reply);
}

#[test]
fn bad_history_wrong_version_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.put(1, "a", "a2");
    let mut h = t.finish(0);
    h.events[1].kv.version = 5;
    assert_classes(&run(&h), &[BadHistory]);
    h.events[1].kv.version = 2;
    h.events[1].kv.create_revision = 3;
    assert_classes(&run(&h), &[BadHistory]);
}

#[test]
fn bad_history_order_final_revision_and_double_touch_are_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.put(1, "b", "b1");
    t.put_unknown(2, "c", "c1", true);
    let clean = t.finish(0);
    let mut h = clean.clone();
    h.events.swap(0, 1);
    assert_classes(&run(&h), &[BadHistory]);
    let mut h = clean.clone();
    h.final_revision = 3;
    assert_classes(&run(&h), &[BadHistory]);
    // One revision putting "a" twice.
    let mut t = Builder::new();
    t.rev = 2;
    t.put_at(2, "a", "a1", 0);
    t.put_at(2, "a", "a2", 0);
    let compares = vec![Compare { key: b("a"), value: None }];
    let op = Op::Cas { compares, puts: vec![(b("a"), b("a1")), (b("a"), b("a2"))] };
    t.record(1, op, Outcome::Ok(Reply::Cas { revision: 2, succeeded: true }));
    assert_has(&run(&t.finish(0)), &[BadHistory]);
}

#[test]
fn bad_history_delete_of_absent_key_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.ev_delete(&[b("zz")]);
    t.record(2, Op::Delete { range: KeyRange::single(b"zz") }, Outcome::Unknown("timeout".into()));
    assert_has(&run(&t.finish(0)), &[BadHistory]);
}

#[test]
fn lost_acknowledged_put_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.put(2, "b", "b1");
    let mut h = t.finish(0);
    h.events.pop();
    h.final_revision = 3;
    let r = run(&h);
    assert_classes(&r, &[LostWrite]);
    assert_eq!(r.lost_writes, 1);
}

#[test]
fn lost_cas_put_is_flagged() {
    let mut t = Builder::new();
    t.cas(1, &[("a", None)], &[("a", "a1"), ("b", "b1")]);
    let mut h = t.finish(0);
    h.events.pop();
    assert_classes(&run(&h), &[LostWrite]);
    let mut t = Builder::new();
    t.cas(1, &[("a", None)], &[("a", "a1"), ("b", "b1")]);
    let mut h = t.finish(0);
    h.events.clear();
    assert_classes(&run(&h), &[LostWrite]);
}

#[test]
fn lost_acknowledged_delete_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.delete(1, KeyRange::single(b"a"));
    let mut h = t.finish(0);
    h.events.pop();
    assert_classes(&run(&h), &[LostWrite]);
}

#[test]
fn wrong_revision_put_header_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1"); // 2
    t.skip(1); // 3 voided
    let put = t.put(2, "b", "b1"); // 4
    let mut h = t.finish(0);
    set_reply(&mut h, put, Reply::Put { revision: 3 });
    assert_classes(&run(&h), &[WrongRevision]);
}

#[test]
fn wrong_revision_delete_count_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "p/1", "1");
    t.put(1, "p/2", "2");
    let del = t.delete(2, KeyRange::prefix(b"p/"));
    let mut h = t.finish(0);
    set_reply(&mut h, del, Reply::Delete { revision: 4, deleted: 3 });
    assert_classes(&run(&h), &[WrongRevision]);
}

#[test]
fn wrong_revision_lease_is_flagged() {
    let mut t = Builder::new();
    t.grant(1, 5);
    t.put_lease(1, "a", "a1", 5);
    let mut h = t.finish(0);
    h.events[0].kv.lease = 0;
    assert_classes(&run(&h), &[WrongRevision]);
}

#[test]
fn wrong_revision_revoke_header_is_flagged() {
    let mut t = Builder::new();
    t.grant(1, 5);
    t.put_lease(1, "a", "a1", 5); // 2
    let revoke = t.revoke(1, 5); // 3
    t.put(2, "b", "b1"); // 4, concurrent with the revoke's answer
    let mut h = t.finish(0);
    set_reply(&mut h, revoke, Reply::LeaseRevoke { revision: 4 });
    h.records[revoke].complete = h.records[revoke + 1].complete;
    assert_classes(&run(&h), &[WrongRevision]);
}

#[test]
fn shared_revision_is_flagged() {
    let mut t = Builder::new();
    t.rev = 2;
    t.put_at(2, "a", "a1", 0);
    t.put_at(2, "b", "b1", 0);
    let put = |key: &str, value: &str| Op::Put { key: b(key), value: b(value), lease: 0 };
    t.record_at(1, put("a", "a1"), MS, 3 * MS, Outcome::Ok(Reply::Put { revision: 2 }));
    t.record_at(2, put("b", "b1"), 2 * MS, 4 * MS, Outcome::Ok(Reply::Put { revision: 2 }));
    assert_classes(&run(&t.finish(0)), &[SharedRevision]);
}

#[test]
fn txn_split_cas_is_flagged() {
    let mut t = Builder::new();
    t.ev_put("a", "a1", 0);
    t.ev_put("b", "b1", 0);
    let compares = vec![Compare { key: b("a"), value: None }];
    let op = Op::Cas { compares, puts: vec![(b("a"), b("a1")), (b("b"), b("b1"))] };
    t.record(1, op, Outcome::Ok(Reply::Cas { revision: 2, succeeded: true }));
    assert_classes(&run(&t.finish(0)), &[TxnSplit]);
}

#[test]
fn txn_split_partial_revoke_is_flagged() {
    let mut t = Builder::new();
    t.grant(1, 7);
    t.put_lease(1, "l/1", "1", 7);
    t.put_lease(1, "l/2", "2", 7);
    let rev = t.ev_delete(&[b("l/1")]);
    t.record(2, Op::LeaseRevoke { id: 7 }, Outcome::Ok(Reply::LeaseRevoke { revision: rev }));
    assert_classes(&run(&t.finish(0)), &[TxnSplit]);
}

#[test]
fn phantom_put_and_delete_are_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.ev_put("b", "nobody", 0);
    assert_classes(&run(&t.finish(0)), &[PhantomWrite]);
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.ev_delete(&[b("a")]);
    assert_classes(&run(&t.finish(0)), &[PhantomWrite]);
}

#[test]
fn phantom_partial_lease_expiry_is_flagged() {
    let mut t = Builder::new();
    t.grant(1, 8);
    t.put_lease(1, "e/1", "1", 8);
    t.put_lease(1, "e/2", "2", 8);
    t.ev_delete(&[b("e/1")]);
    assert_classes(&run(&t.finish(0)), &[PhantomWrite]);
}

#[test]
fn failed_write_applied_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.ev_put("b", "b1", 0);
    t.put_failed(2, "b", "b1", 0);
    assert_classes(&run(&t.finish(0)), &[FailedApplied]);
    // A Cas answered succeeded=false whose put appears.
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    let rev = t.ev_put("a", "a2", 0);
    let compares = vec![Compare { key: b("a"), value: Some(b("a0")) }];
    let op = Op::Cas { compares, puts: vec![(b("a"), b("a2"))] };
    t.record(2, op, Outcome::Ok(Reply::Cas { revision: rev, succeeded: false }));
    assert_classes(&run(&t.finish(0)), &[FailedApplied]);
}

#[test]
fn duplicate_apply_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1"); // 2
    t.put_at(3, "a", "a1", 0);
    t.rev = 3;
    assert_classes(&run(&t.finish(0)), &[DuplicateApply]);
    // An unknown-outcome put may apply at most once too.
    let mut t = Builder::new();
    t.put_unknown(1, "a", "a1", true);
    t.put_at(3, "a", "a1", 0);
    t.rev = 3;
    let r = run(&t.finish(0));
    assert_classes(&r, &[DuplicateApply]);
    assert_eq!((r.unknown_writes, r.unknown_applied), (1, 1));
}

#[test]
fn noop_ahead_is_flagged() {
    // A delete of nothing while the key exists at its header.
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.record(2, Op::Delete { range: KeyRange::single(b"a") }, Outcome::Ok(Reply::Delete { revision: 2, deleted: 0 }));
    assert_classes(&run(&t.finish(0)), &[NoopAhead]);
    // A failed Cas whose compares hold at its header.
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    let compares = vec![Compare { key: b("a"), value: Some(b("a1")) }];
    let op = Op::Cas { compares, puts: vec![(b("a"), b("a2"))] };
    t.record(2, op, Outcome::Ok(Reply::Cas { revision: 2, succeeded: false }));
    assert_classes(&run(&t.finish(0)), &[NoopAhead]);
    // A revoke that deleted nothing while a key carries the lease.
    let mut t = Builder::new();
    t.put_lease(1, "l", "l1", 7);
    t.record(2, Op::LeaseRevoke { id: 7 }, Outcome::Ok(Reply::LeaseRevoke { revision: 2 }));
    assert_classes(&run(&t.finish(0)), &[NoopAhead]);
}

#[test]
fn cas_mismatch_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    let rev = t.ev_put("a", "a2", 0);
    let compares = vec![Compare { key: b("a"), value: Some(b("a0")) }];
    let op = Op::Cas { compares, puts: vec![(b("a"), b("a2"))] };
    t.record(2, op, Outcome::Ok(Reply::Cas { revision: rev, succeeded: true }));
    assert_classes(&run(&t.finish(0)), &[CasMismatch]);
}

/// Historical bug (a): a delete acknowledged at an old revision (1030)
/// after another write was acknowledged at 2170.
#[test]
fn bug_a_delete_acknowledged_at_old_revision() {
    let mut t = Builder::new();
    t.skip(1028);
    t.put(1, "x", "x1"); // 1030
    t.skip(1139);
    t.put(2, "y", "y1"); // 2170
    let del = t.delete(3, KeyRange::single(b"x")); // really 2171
    t.get(1, all(), false);
    let mut h = t.finish(0);
    set_reply(&mut h, del, Reply::Delete { revision: 1030, deleted: 1 });
    let r = run(&h);
    assert_has(&r, &[StaleRevision, WrongRevision]);
    let stale = r.anomalies.iter().find(|a| a.class == StaleRevision).unwrap();
    assert!(stale.detail.contains("1030") && stale.detail.contains("2170"), "{}", stale.detail);
}

/// Historical bug (d): a failed Cas answered with a header revision above a
/// concurrent write that makes its compare true.
#[test]
fn bug_d_failed_cas_header_above_contradicting_write() {
    let mut t = Builder::new();
    t.put(1, "k", "v0"); // 2
    let compares = vec![Compare { key: b("k"), value: Some(b("v1")) }];
    let cas = Op::Cas { compares, puts: vec![(b("k"), b("v9"))] };
    let (t0, t1) = (t.now, t.now + 10 * MS);
    t.record_at(1, cas, t0, t1, Outcome::Ok(Reply::Cas { revision: 3, succeeded: false }));
    t.now = t0 + MS;
    t.put(2, "k", "v1"); // 3, inside the Cas's window
    t.now = t1 + MS;
    assert_classes(&run(&t.finish(0)), &[NoopAhead]);
}

/// Found on a real run: a lease expired (its keys deleted at 3), and much
/// later a client's revoke of it timed out; crediting the deletes to that
/// revoke made every read in between a FutureRead.
#[test]
fn a_lease_expiry_is_not_credited_to_a_later_unknown_revoke() {
    let mut t = Builder::new();
    t.grant(1, 8);
    t.put_lease(1, "e/1", "1", 8); // 2
    t.expire(8); // 3
    t.put(2, "x", "x1"); // 4
    t.get(2, KeyRange::single(b"e/1"), false);
    t.record(1, Op::LeaseRevoke { id: 8 }, Outcome::Unknown("timed out".into()));
    assert_classes(&run(&t.finish(1)), &[]);
}
