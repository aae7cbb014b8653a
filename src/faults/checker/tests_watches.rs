//! Watch anomaly classes, and historical bugs (b) and (c).

use super::testkit::*;
use super::AnomalyClass::*;
use super::CheckConfig;
use crate::faults::history::*;

/// Three puts (2, 3, 4) watched by one whole-keyspace watcher from 1.
fn three_puts() -> History {
    let mut t = Builder::new();
    t.watch(all(), 1, &[]);
    t.put(1, "a", "a1");
    t.put(2, "b", "b1");
    t.put(1, "c", "c1");
    t.finish(0)
}

/// The position in watcher 0's items of the response holding `rev`.
fn response(h: &History, rev: i64) -> usize {
    h.watches[0]
        .items
        .iter()
        .position(|i| matches!(i, WatchItem::Events { events, .. } if events[0].kv.mod_revision == rev))
        .unwrap()
}

#[test]
fn watch_order_is_flagged() {
    let mut h = three_puts();
    let (two, three) = (response(&h, 2), response(&h, 3));
    h.watches[0].items.swap(two, three);
    assert_classes(&run(&h), &[WatchOrder]);
    // Within one response.
    let mut h = three_puts();
    let three = response(&h, 3);
    let WatchItem::Events { events: moved, .. } = h.watches[0].items.remove(three) else { unreachable!() };
    let two = response(&h, 2);
    let WatchItem::Events { events, .. } = &mut h.watches[0].items[two] else { unreachable!() };
    events.splice(0..0, moved);
    assert_classes(&run(&h), &[WatchOrder]);
}

#[test]
fn watch_split_revision_is_flagged() {
    let mut t = Builder::new();
    t.watch(all(), 1, &[]);
    t.cas(1, &[("a", None)], &[("a", "a1"), ("b", "b1")]); // 2
    t.put(1, "c", "c1");
    let mut h = t.finish(0);
    let two = response(&h, 2);
    let WatchItem::Events { at, events } = &mut h.watches[0].items[two] else { unreachable!() };
    let second = WatchItem::Events { at: *at, events: vec![events.pop().unwrap()] };
    h.watches[0].items.insert(two + 1, second);
    assert_classes(&run(&h), &[WatchSplitRevision]);
}

#[test]
fn watch_duplicate_is_flagged() {
    let mut h = three_puts();
    let three = response(&h, 3);
    let again = h.watches[0].items[three].clone();
    h.watches[0].items.insert(three + 1, again);
    assert_classes(&run(&h), &[WatchDuplicate]);
    // Delivered again after a resume from the next revision.
    let mut t = Builder::new();
    t.watch(all(), 1, &[2]);
    t.put(1, "a", "a1");
    t.put(2, "b", "b1");
    let mut h = t.finish(0);
    let again = h.watches[0].items[response(&h, 2)].clone();
    let resumed = h.watches[0].items.iter().rposition(|i| matches!(i, WatchItem::Started { .. })).unwrap();
    h.watches[0].items.insert(resumed + 1, again);
    assert_classes(&run(&h), &[WatchDuplicate]);
}

#[test]
fn watch_gap_is_flagged() {
    let mut h = three_puts();
    let three = response(&h, 3);
    h.watches[0].items.remove(three);
    assert_classes(&run(&h), &[WatchGap]);
    // A resume past the next revision loses it.
    let mut t = Builder::new();
    t.watch(all(), 1, &[2]);
    t.put(1, "a", "a1");
    t.put(2, "b", "b1");
    t.put(2, "c", "c1");
    let mut h = t.finish(0);
    let three = response(&h, 3);
    h.watches[0].items.remove(three);
    let WatchItem::Started { from_revision, .. } = &mut h.watches[0].items[three - 1] else { unreachable!() };
    *from_revision = 4;
    assert_classes(&run(&h), &[WatchGap]);
}

#[test]
fn watch_mismatch_is_flagged() {
    let mut h = three_puts();
    let three = response(&h, 3);
    let WatchItem::Events { events, .. } = &mut h.watches[0].items[three] else { unreachable!() };
    events[0].kv.value = b("other");
    assert_classes(&run(&h), &[WatchMismatch]);
    // An event the history does not have.
    let mut h = three_puts();
    let WatchItem::Events { events, .. } = &mut h.watches[0].items[three] else { unreachable!() };
    let mut phantom = events[0].clone();
    phantom.kv.key = b("zz");
    events.push(phantom);
    assert_classes(&run(&h), &[WatchMismatch]);
}

#[test]
fn watch_resumed_from_a_seen_revision_is_bad_history() {
    let mut t = Builder::new();
    t.watch(all(), 1, &[2]);
    t.put(1, "a", "a1");
    t.put(2, "b", "b1");
    let mut h = t.finish(0);
    let again = h.watches[0].items[response(&h, 2)].clone();
    let resumed = h.watches[0].items.iter().rposition(|i| matches!(i, WatchItem::Started { .. })).unwrap();
    let WatchItem::Started { from_revision, .. } = &mut h.watches[0].items[resumed] else { unreachable!() };
    *from_revision = 2;
    h.watches[0].items.insert(resumed + 1, again);
    assert_classes(&run(&h), &[BadHistory]);
}

/// Historical bug (c): a watch goes silent after some point while writes
/// continue.
#[test]
fn bug_c_watch_goes_silent_while_writes_continue() {
    let mut t = Builder::new();
    t.watch(all(), 1, &[]);
    for n in 0..40 {
        t.now = (n + 1) * SEC;
        t.put(1 + n as u32 % 3, &format!("k{n}"), &format!("v{n}"));
    }
    let mut h = t.finish(0);
    h.watches[0].items.retain(|i| !matches!(i, WatchItem::Events { at, .. } if *at > 10 * SEC + SEC / 2));
    let r = run(&h);
    assert_classes(&r, &[WatchSilent]);
    let silent = &r.anomalies[0].detail;
    assert!(silent.contains("never") && silent.contains("up to revision 11"), "{silent}");
}

/// Historical bug (b): a revision that never resolves. Watches stop below
/// it while acknowledged writes above it exist, and the final history
/// (read by a watch) lacks them too.
#[test]
fn bug_b_revision_never_resolves() {
    let mut t = Builder::new();
    t.watch(all(), 1, &[]);
    t.watch(KeyRange::prefix(b"k"), 1, &[]);
    for n in 0..8 {
        t.put(1 + n % 2, &format!("k{n}"), &format!("v{n}")); // 2..=9
    }
    t.now += 20 * SEC;
    let mut h = t.finish(0);
    h.events.retain(|e| e.kv.mod_revision <= 6);
    for w in &mut h.watches {
        w.items.retain(|i| !matches!(i, WatchItem::Events { events, .. } if events[0].kv.mod_revision > 6));
    }
    let r = run(&h);
    assert_classes(&r, &[LostWrite, WatchSilent]);
    assert_eq!(r.lost_writes, 3);
    assert_eq!(r.counts[&WatchSilent], 2);
}

#[test]
fn watch_silent_at_end_for_a_lease_expiry() {
    let mut t = Builder::new();
    t.watch(KeyRange::prefix(b"e/"), 1, &[]);
    t.grant(1, 8);
    t.put_lease(1, "e/1", "1", 8); // 2
    t.expire(8); // 3
    t.put(2, "x", "x1"); // 4, acknowledged long before the end
    t.now += 20 * SEC;
    let mut h = t.finish(0);
    let three = response(&h, 3);
    h.watches[0].items.remove(three);
    let r = run(&h);
    assert_classes(&r, &[WatchSilent]);
    assert!(r.anomalies[0].detail.contains("revision 3"), "{}", r.anomalies[0].detail);
}

#[test]
fn watch_may_stall_during_faults() {
    let mut t = Builder::new();
    t.watch(all(), 1, &[]);
    t.now = SEC;
    t.put(1, "a", "a1"); // 2
    t.now = 5 * SEC;
    t.put(1, "b", "b1"); // 3, delivered only at 40 s
    t.now = 50 * SEC;
    t.put(1, "c", "c1"); // 4
    let mut h = t.finish(0);
    let three = response(&h, 3);
    let WatchItem::Events { at, .. } = &mut h.watches[0].items[three] else { unreachable!() };
    *at = 40 * SEC;
    assert_classes(&run(&h), &[WatchSilent]);
    h.faults = vec![(4 * SEC, 30 * SEC)];
    let r = run(&h);
    assert_ok(&r);
    assert!(r.worst_watch_delay > 34 * SEC && r.worst_watch_delay < 35 * SEC, "{}", r.summary());
    // A shorter bound than the stall after the fault is still too short.
    let r = super::check(&h, &CheckConfig { watch_silence_bound: 5 * SEC });
    assert_classes(&r, &[WatchSilent]);
}

#[test]
fn watcher_started_late_replays_without_being_silent() {
    let mut t = Builder::new();
    t.watch(all(), 1, &[]);
    t.put(1, "a", "a1"); // 2
    t.put(1, "b", "b1"); // 3
    t.now = 60 * SEC;
    t.put(1, "c", "c1"); // 4
    let mut h = t.finish(0);
    // Created at 40 s, it gets the old revisions at once and the new one in time.
    for item in &mut h.watches[0].items {
        match item {
            WatchItem::Started { at, .. } => *at = 40 * SEC,
            WatchItem::Events { at, .. } => *at = (*at).max(40 * SEC + MS),
            WatchItem::Broken { .. } => {}
        }
    }
    let r = run(&h);
    assert_ok(&r);
    assert!(r.worst_watch_delay <= MS, "{}", r.summary());
}
