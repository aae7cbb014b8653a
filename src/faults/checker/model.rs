//! The state-at-revision model built from the authoritative history
//! (`h.events`), and the history's own well-formedness (BadHistory).
//!
//! Per key a revision-sorted list of versions (`None`: deleted), so "the
//! kvs of a range at revision R" is one binary search per key of the range.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;

use super::{show, AnomalyClass, Sink};
use crate::faults::history::{Event, EventKind, History, KeyRange, Kv};

/// The events of one revision: `events[start..end]` of the model.
pub(crate) struct Group {
    pub rev: i64,
    pub start: usize,
    pub end: usize,
}

pub(crate) struct Model<'a> {
    /// Every event, stably sorted by revision.
    pub events: Vec<&'a Event>,
    /// One per revision that has events, in revision order.
    pub groups: Vec<Group>,
    keys: BTreeMap<&'a [u8], Vec<(i64, Option<&'a Kv>)>>,
    /// Every key that ever carried each lease.
    leases: HashMap<i64, BTreeSet<&'a [u8]>>,
}

impl<'a> Model<'a> {
    pub fn build(h: &'a History, sink: &mut Sink) -> Self {
        let disorder = h.events.windows(2).filter(|w| w[1].kv.mod_revision < w[0].kv.mod_revision).count();
        if disorder > 0 {
            sink.add(AnomalyClass::BadHistory, || format!("events go back in revision {disorder} times"));
        }
        let mut events: Vec<&'a Event> = h.events.iter().collect();
        events.sort_by_key(|e| e.kv.mod_revision);
        let mut m = Model { events: Vec::new(), groups: Vec::new(), keys: BTreeMap::new(), leases: HashMap::new() };
        let mut start = 0;
        while start < events.len() {
            let rev = events[start].kv.mod_revision;
            let end = start + events[start..].iter().take_while(|e| e.kv.mod_revision == rev).count();
            if rev <= 1 {
                sink.add(AnomalyClass::BadHistory, || format!("events at revision {rev} (the first write is 2)"));
            }
            if rev > h.final_revision {
                sink.add(AnomalyClass::BadHistory, || {
                    format!("events at revision {rev}, above the final revision {}", h.final_revision)
                });
            }
            let mut touched = HashSet::new();
            for &e in &events[start..end] {
                m.apply(rev, e, &mut touched, sink);
            }
            m.groups.push(Group { rev, start, end });
            start = end;
        }
        m.events = events;
        m
    }

    fn apply(&mut self, rev: i64, e: &'a Event, touched: &mut HashSet<&'a [u8]>, sink: &mut Sink) {
        let key = e.kv.key.as_slice();
        if !touched.insert(key) {
            sink.add(AnomalyClass::BadHistory, || format!("revision {rev} touches key {} twice", show(key)));
        }
        let versions = self.keys.entry(key).or_default();
        let prev = versions.last().and_then(|v| v.1);
        match e.kind {
            EventKind::Put => {
                let (create, version) = match prev {
                    None => (rev, 1),
                    Some(p) => (p.create_revision, p.version + 1),
                };
                if e.kv.create_revision != create || e.kv.version != version {
                    sink.add(AnomalyClass::BadHistory, || {
                        format!(
                            "put of {} at revision {rev}: create_revision {} version {}, expected {create} and {version}",
                            show(key),
                            e.kv.create_revision,
                            e.kv.version
                        )
                    });
                }
                versions.push((rev, Some(&e.kv)));
                if e.kv.lease != 0 {
                    self.leases.entry(e.kv.lease).or_default().insert(key);
                }
            }
            EventKind::Delete => {
                if prev.is_none() {
                    sink.add(AnomalyClass::BadHistory, || {
                        format!("delete of {} at revision {rev}, which does not exist", show(key))
                    });
                }
                versions.push((rev, None));
            }
        }
    }

    /// The key's kv at revision `rev` (None: absent).
    pub fn get(&self, key: &[u8], rev: i64) -> Option<&'a Kv> {
        let versions = self.keys.get(key)?;
        let i = versions.partition_point(|(r, _)| *r <= rev);
        if i == 0 {
            None
        } else {
            versions[i - 1].1
        }
    }

    /// The kvs of a range at revision `rev`, in key order.
    pub fn range(&self, r: &KeyRange, rev: i64) -> Vec<&'a Kv> {
        match bounds(r) {
            None => Vec::new(),
            Some(b) => self.keys.range::<[u8], _>(b).filter_map(|(k, _)| self.get(k, rev)).collect(),
        }
    }

    /// The keys carrying `lease` at revision `rev`, in key order.
    pub fn keys_with_lease(&self, lease: i64, rev: i64) -> Vec<&'a [u8]> {
        let Some(keys) = self.leases.get(&lease) else { return Vec::new() };
        keys.iter().copied().filter(|k| self.get(k, rev).is_some_and(|kv| kv.lease == lease)).collect()
    }

    /// The events of group `g`.
    pub fn group_events(&self, g: usize) -> &[&'a Event] {
        let g = &self.groups[g];
        &self.events[g.start..g.end]
    }

    /// How many groups are at or below revision `rev`.
    pub fn groups_upto(&self, rev: i64) -> usize {
        self.groups.partition_point(|g| g.rev <= rev)
    }
}

/// A range's (lower, upper) key bounds.
pub(crate) type Bounds<'k> = (Bound<&'k [u8]>, Bound<&'k [u8]>);

/// The key bounds of a range for a BTreeMap; None when it is empty.
pub(crate) fn bounds(r: &KeyRange) -> Option<Bounds<'_>> {
    let key = r.key.as_slice();
    if r.range_end.is_empty() {
        Some((Bound::Included(key), Bound::Included(key)))
    } else if r.range_end == [0] {
        Some((Bound::Included(key), Bound::Unbounded))
    } else if r.range_end.as_slice() <= key {
        None
    } else {
        Some((Bound::Included(key), Bound::Excluded(r.range_end.as_slice())))
    }
}

/// Whether two ranges share a key.
pub(crate) fn overlap(a: &KeyRange, b: &KeyRange) -> bool {
    let (Some(a), Some(b)) = (bounds(a), bounds(b)) else { return false };
    below(a.0, b.1) && below(b.0, a.1)
}

/// Whether some key at or after lower bound `lo` is below upper bound `hi`.
fn below(lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> bool {
    match (lo, hi) {
        (_, Bound::Unbounded) => true,
        (Bound::Included(l), Bound::Included(h)) => l <= h,
        (Bound::Included(l), Bound::Excluded(h)) => l < h,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::history::prefix_end;

    fn put(key: &str, value: &str, rev: i64, create: i64, version: i64) -> Event {
        let kv =
            Kv { key: key.into(), value: value.into(), create_revision: create, mod_revision: rev, version, lease: 0 };
        Event { kind: EventKind::Put, kv }
    }

    #[test]
    fn model_answers_state_at_revision() {
        let del = Event { kind: EventKind::Delete, kv: Kv { key: "a".into(), mod_revision: 5, ..Kv::default() } };
        let h = History {
            events: vec![put("a", "1", 2, 2, 1), put("b", "1", 3, 3, 1), put("a", "2", 4, 2, 2), del],
            final_revision: 5,
            ..History::default()
        };
        let mut sink = Sink::default();
        let m = Model::build(&h, &mut sink);
        assert!(sink.counts.is_empty());
        assert_eq!(m.get(b"a", 1), None);
        assert_eq!(m.get(b"a", 3).unwrap().value, b"1");
        assert_eq!(m.get(b"a", 4).unwrap().value, b"2");
        assert_eq!(m.get(b"a", 5), None);
        let all = KeyRange { key: Vec::new(), range_end: vec![0] };
        assert_eq!(m.range(&all, 4).len(), 2);
        assert_eq!(m.range(&all, 9).len(), 1);
        assert_eq!(m.range(&KeyRange::prefix(b"b"), 9)[0].key, b"b");
        assert_eq!(m.groups_upto(4), 3);
        assert_eq!(m.groups_upto(1), 0);
        assert!(overlap(&KeyRange::single(b"a"), &KeyRange::prefix(b"")));
        assert!(!overlap(&KeyRange::single(b"b"), &KeyRange::prefix(b"a")));
        assert!(overlap(&KeyRange::prefix(b"a"), &KeyRange { key: b"a1".to_vec(), range_end: b"c".to_vec() }));
        assert!(!overlap(&KeyRange::prefix(b"a"), &KeyRange { key: prefix_end(b"a"), range_end: vec![0] }));
    }
}
