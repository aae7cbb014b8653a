//! A tiny builder of hand-made histories for the checker's tests: a
//! sequential store (one client op per millisecond unless placed by hand)
//! that records both the clients' side and the authoritative events.

use std::collections::{BTreeMap, BTreeSet};

use super::{check, AnomalyClass, CheckConfig, Report};
use crate::faults::history::*;

pub(crate) const MS: Nanos = 1_000_000;
pub(crate) const SEC: Nanos = 1_000_000_000;

pub(crate) fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub(crate) fn all() -> KeyRange {
    KeyRange { key: Vec::new(), range_end: vec![0] }
}

pub(crate) struct Builder {
    pub h: History,
    /// The newest revision taken (1: empty store).
    pub rev: i64,
    /// The next operation's invocation time.
    pub now: Nanos,
    state: BTreeMap<Vec<u8>, Kv>,
    /// When each revision's events were made.
    made: BTreeMap<i64, Nanos>,
    /// (range, start revision, revisions after which it breaks and resumes).
    watchers: Vec<(KeyRange, i64, Vec<i64>)>,
}

impl Builder {
    pub fn new() -> Self {
        Builder {
            h: History::default(),
            rev: 1,
            now: MS,
            state: BTreeMap::new(),
            made: BTreeMap::new(),
            watchers: Vec::new(),
        }
    }

    // ---- The store's side: events at new revisions.

    /// Puts at a new revision.
    pub fn ev_put(&mut self, key: &str, value: &str, lease: i64) -> i64 {
        self.rev += 1;
        self.put_at(self.rev, key, value, lease);
        self.rev
    }

    /// A put event at revision `rev` (several for a txn).
    pub fn put_at(&mut self, rev: i64, key: &str, value: &str, lease: i64) {
        let (create_revision, version) =
            self.state.get(key.as_bytes()).map_or((rev, 1), |p| (p.create_revision, p.version + 1));
        let kv = Kv { key: b(key), value: b(value), create_revision, mod_revision: rev, version, lease };
        self.state.insert(b(key), kv.clone());
        self.h.events.push(Event { kind: EventKind::Put, kv });
        self.made.insert(rev, self.now + MS / 10);
    }

    /// Deletes `keys` (which exist) at one new revision.
    pub fn ev_delete(&mut self, keys: &[Vec<u8>]) -> i64 {
        self.rev += 1;
        for key in keys {
            self.state.remove(key);
            let kv = Kv { key: key.clone(), mod_revision: self.rev, ..Kv::default() };
            self.h.events.push(Event { kind: EventKind::Delete, kv });
        }
        self.made.insert(self.rev, self.now + MS / 10);
        self.rev
    }

    /// Revisions taken and voided.
    pub fn skip(&mut self, n: i64) {
        self.rev += n;
    }

    pub fn state(&self, range: &KeyRange) -> Vec<Kv> {
        self.state.values().filter(|kv| range.contains(&kv.key)).cloned().collect()
    }

    fn lease_keys(&self, lease: i64) -> Vec<Vec<u8>> {
        self.state.values().filter(|kv| kv.lease == lease).map(|kv| kv.key.clone()).collect()
    }

    // ---- The clients' side.

    /// Records an operation invoked now, completing half a millisecond later.
    pub fn record(&mut self, client: u32, op: Op, outcome: Outcome) -> usize {
        let (invoke, complete) = (self.now, self.now + MS / 2);
        self.now += MS;
        self.record_at(client, op, invoke, complete, outcome)
    }

    pub fn record_at(&mut self, client: u32, op: Op, invoke: Nanos, complete: Nanos, outcome: Outcome) -> usize {
        self.h.records.push(Record { client, op, invoke, complete, outcome });
        self.h.records.len() - 1
    }

    pub fn put(&mut self, client: u32, key: &str, value: &str) -> usize {
        self.put_lease(client, key, value, 0)
    }

    pub fn put_lease(&mut self, client: u32, key: &str, value: &str, lease: i64) -> usize {
        let revision = self.ev_put(key, value, lease);
        self.record(client, Op::Put { key: b(key), value: b(value), lease }, Outcome::Ok(Reply::Put { revision }))
    }

    /// A put whose client got no answer; `applied` says whether it happened.
    pub fn put_unknown(&mut self, client: u32, key: &str, value: &str, applied: bool) -> usize {
        if applied {
            self.ev_put(key, value, 0);
        }
        let op = Op::Put { key: b(key), value: b(value), lease: 0 };
        self.record(client, op, Outcome::Unknown("deadline exceeded".into()))
    }

    pub fn put_failed(&mut self, client: u32, key: &str, value: &str, lease: i64) -> usize {
        let op = Op::Put { key: b(key), value: b(value), lease };
        self.record(client, op, Outcome::Failed("lease not found".into()))
    }

    pub fn delete(&mut self, client: u32, range: KeyRange) -> usize {
        let keys: Vec<Vec<u8>> = self.state(&range).into_iter().map(|kv| kv.key).collect();
        let deleted = keys.len() as i64;
        let revision = if keys.is_empty() { self.rev } else { self.ev_delete(&keys) };
        self.record(client, Op::Delete { range }, Outcome::Ok(Reply::Delete { revision, deleted }))
    }

    /// A delete whose client got no answer; `applied` says whether it happened.
    pub fn delete_unknown(&mut self, client: u32, range: KeyRange, applied: bool) -> usize {
        let keys: Vec<Vec<u8>> = self.state(&range).into_iter().map(|kv| kv.key).collect();
        if applied && !keys.is_empty() {
            self.ev_delete(&keys);
        }
        self.record(client, Op::Delete { range }, Outcome::Unknown("unavailable".into()))
    }

    /// A compare-and-set: `(key, None)` compares absent.
    pub fn cas(&mut self, client: u32, compares: &[(&str, Option<&str>)], puts: &[(&str, &str)]) -> usize {
        let compares: Vec<Compare> = compares.iter().map(|(k, v)| Compare { key: b(k), value: v.map(b) }).collect();
        let succeeded = compares.iter().all(|c| self.state.get(&c.key).map(|kv| kv.value.clone()) == c.value);
        if succeeded {
            self.rev += 1;
            for (k, v) in puts {
                self.put_at(self.rev, k, v, 0);
            }
        }
        let puts = puts.iter().map(|(k, v)| (b(k), b(v))).collect();
        let reply = Reply::Cas { revision: self.rev, succeeded };
        self.record(client, Op::Cas { compares, puts }, Outcome::Ok(reply))
    }

    pub fn get(&mut self, client: u32, range: KeyRange, serializable: bool) -> usize {
        let kvs = self.state(&range);
        let reply = Reply::Range { revision: self.rev, kvs };
        self.record(client, Op::Range { range, serializable }, Outcome::Ok(reply))
    }

    /// A serializable read answered at an older revision, with that state.
    pub fn get_at(&mut self, client: u32, range: KeyRange, revision: i64) -> usize {
        let mut state: BTreeMap<Vec<u8>, Kv> = BTreeMap::new();
        for e in self.h.events.iter().filter(|e| e.kv.mod_revision <= revision) {
            match e.kind {
                EventKind::Put => state.insert(e.kv.key.clone(), e.kv.clone()),
                EventKind::Delete => state.remove(&e.kv.key),
            };
        }
        let kvs = state.into_values().filter(|kv| range.contains(&kv.key)).collect();
        let reply = Reply::Range { revision, kvs };
        self.record(client, Op::Range { range, serializable: true }, Outcome::Ok(reply))
    }

    pub fn grant(&mut self, client: u32, id: i64) -> usize {
        let reply = Reply::LeaseGrant { revision: self.rev };
        self.record(client, Op::LeaseGrant { id, ttl: 10 }, Outcome::Ok(reply))
    }

    pub fn revoke(&mut self, client: u32, id: i64) -> usize {
        let keys = self.lease_keys(id);
        if !keys.is_empty() {
            self.ev_delete(&keys);
        }
        self.record(client, Op::LeaseRevoke { id }, Outcome::Ok(Reply::LeaseRevoke { revision: self.rev }))
    }

    /// The lease's keys deleted by its expiry (no client operation).
    pub fn expire(&mut self, id: i64) -> i64 {
        let keys = self.lease_keys(id);
        self.ev_delete(&keys)
    }

    /// A watcher of `range` from `start` that sees every revision in its own
    /// response, and breaks and resumes after each revision of `breaks`.
    pub fn watch(&mut self, range: KeyRange, start: i64, breaks: &[i64]) {
        self.watchers.push((range, start, breaks.to_vec()));
    }

    /// The history: final revision the newest, end a second after the last
    /// operation, the watchers' logs, and `members` members that agree.
    pub fn finish(mut self, members: usize) -> History {
        self.h.final_revision = self.rev;
        self.h.end = self.now + SEC;
        for (id, (range, start, breaks)) in self.watchers.iter().enumerate() {
            let mut items = vec![WatchItem::Started { at: 0, from_revision: *start }];
            let mut revs: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
            for e in self.h.events.iter().filter(|e| e.kv.mod_revision >= *start && range.contains(&e.kv.key)) {
                revs.entry(e.kv.mod_revision).or_default().push(e.clone());
            }
            for (rev, events) in revs {
                let at = self.made[&rev] + MS / 5;
                items.push(WatchItem::Events { at, events });
                if breaks.contains(&rev) {
                    items.push(WatchItem::Broken { at: at + 1, error: "connection reset".into() });
                    items.push(WatchItem::Started { at: at + 2, from_revision: rev + 1 });
                }
            }
            self.h.watches.push(WatchLog { id: id as u32, range: range.clone(), start_revision: *start, items });
        }
        for n in 0..members {
            let kvs = self.state(&all());
            let hash_kv = Some((self.rev, 0xfeed));
            self.h.members.push(MemberState { member: format!("m{n}"), revision: self.rev, kvs, hash_kv });
        }
        self.h
    }
}

pub(crate) fn run(h: &History) -> Report {
    check(h, &CheckConfig::default())
}

pub(crate) fn classes(r: &Report) -> BTreeSet<AnomalyClass> {
    r.counts.keys().copied().collect()
}

/// Fails with the report when it is not clean.
pub(crate) fn assert_ok(r: &Report) {
    assert!(r.ok(), "{}\n{:#?}", r.summary(), r.anomalies);
}

/// Fails unless exactly these classes were found.
pub(crate) fn assert_classes(r: &Report, want: &[AnomalyClass]) {
    let want: BTreeSet<AnomalyClass> = want.iter().copied().collect();
    assert_eq!(classes(r), want, "{}\n{:#?}", r.summary(), r.anomalies);
}

/// Fails unless these classes (and maybe others) were found.
pub(crate) fn assert_has(r: &Report, want: &[AnomalyClass]) {
    for c in want {
        assert!(r.counts.contains_key(c), "{c} not found: {}\n{:#?}", r.summary(), r.anomalies);
    }
}
