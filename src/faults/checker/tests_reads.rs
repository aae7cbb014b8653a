//! Real-time order, reads and members' final state.

use super::testkit::*;
use super::AnomalyClass::*;
use crate::faults::history::*;

#[test]
fn stale_linearizable_read_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1"); // 2, completes before the read begins
    let read = Op::Range { range: all(), serializable: false };
    t.record(2, read, Outcome::Ok(Reply::Range { revision: 1, kvs: Vec::new() }));
    assert_classes(&run(&t.finish(0)), &[StaleRevision]);
}

#[test]
fn stale_serializable_read_is_allowed() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.put(1, "a", "a2");
    t.get_at(2, all(), 2);
    t.get_at(2, all(), 1);
    assert_ok(&run(&t.finish(0)));
}

#[test]
fn stale_write_revision_is_flagged() {
    let mut t = Builder::new();
    t.ev_put("b", "b1", 0); // 2
    t.ev_put("a", "a1", 0); // 3
    let put = |key: &str, value: &str| Op::Put { key: b(key), value: b(value), lease: 0 };
    t.record_at(1, put("a", "a1"), MS, 2 * MS, Outcome::Ok(Reply::Put { revision: 3 }));
    t.record_at(2, put("b", "b1"), 3 * MS, 4 * MS, Outcome::Ok(Reply::Put { revision: 2 }));
    t.now = 5 * MS;
    assert_classes(&run(&t.finish(0)), &[StaleRevision]);
}

#[test]
fn stale_noop_and_unknown_writes_are_flagged() {
    // A delete of nothing answered below a write acknowledged before it.
    let mut t = Builder::new();
    t.put(1, "a", "a1"); // 2
    let del = Op::Delete { range: KeyRange::single(b"zz") };
    t.record(2, del, Outcome::Ok(Reply::Delete { revision: 1, deleted: 0 }));
    assert_classes(&run(&t.finish(0)), &[StaleRevision]);
    // An unknown-outcome put applied below a write acknowledged before it began.
    let mut t = Builder::new();
    t.ev_put("u", "u1", 0); // 2
    t.put(1, "a", "a1"); // 3
    t.put_unknown(2, "u", "u1", false); // its effect is the event at 2
    assert_classes(&run(&t.finish(0)), &[StaleRevision]);
}

#[test]
fn acknowledged_above_final_revision_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1"); // 2
    let kvs = t.state(&all());
    let read = Op::Range { range: all(), serializable: true };
    t.record(2, read, Outcome::Ok(Reply::Range { revision: 7, kvs }));
    let h = t.finish(0);
    assert_eq!(h.final_revision, 2);
    assert_classes(&run(&h), &[StaleRevision]);
}

#[test]
fn read_mismatch_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.put(1, "b", "b1");
    let lin = t.get(2, all(), false);
    let ser = t.get(2, all(), true);
    let clean = t.finish(0);
    for (op, edit) in [(lin, 0), (ser, 1), (lin, 2), (ser, 3)] {
        let mut h = clean.clone();
        let Outcome::Ok(Reply::Range { kvs, .. }) = &mut h.records[op].outcome else { unreachable!() };
        match edit {
            0 => kvs[0].value = b("stale"),
            1 => kvs[1].version = 2,
            2 => {
                kvs.pop();
            }
            _ => {
                kvs.push(Kv { key: b("c"), value: b("c1"), create_revision: 3, mod_revision: 3, version: 1, lease: 0 })
            }
        }
        assert_classes(&run(&h), &[ReadMismatch]);
    }
}

#[test]
fn future_read_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1"); // 2
    t.ev_put("b", "b1", 0); // 3, by a put invoked after the read completed
    let kvs = t.state(&all());
    let read = Op::Range { range: all(), serializable: false };
    t.record(2, read, Outcome::Ok(Reply::Range { revision: 3, kvs }));
    t.record(3, Op::Put { key: b("b"), value: b("b1"), lease: 0 }, Outcome::Ok(Reply::Put { revision: 3 }));
    assert_classes(&run(&t.finish(0)), &[FutureRead]);
}

#[test]
fn final_state_mismatch_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    t.put(1, "b", "b1");
    let mut h = t.finish(3);
    h.members[1].kvs[0].value = b("old");
    assert_classes(&run(&h), &[FinalStateMismatch]);
    let mut h2 = h.clone();
    h2.members[1].kvs.pop();
    h2.members[1].kvs[0].value = b("a1");
    assert_classes(&run(&h2), &[FinalStateMismatch]);
    // A member behind at its own revision is consistent.
    h.members[1].revision = 2;
    h.members[1].kvs = vec![h.events[0].kv.clone()];
    assert_ok(&run(&h));
}

#[test]
fn hash_mismatch_is_flagged() {
    let mut t = Builder::new();
    t.put(1, "a", "a1");
    let mut h = t.finish(3);
    h.members[2].hash_kv = Some((2, 0xbad));
    assert_classes(&run(&h), &[HashMismatch]);
    // Hashes at different revisions are not compared.
    h.members[2].hash_kv = Some((1, 0xbad));
    assert_ok(&run(&h));
}
