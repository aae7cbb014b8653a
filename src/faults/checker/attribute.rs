//! Which operation made each revision of the history: a put event by its
//! unique value; a revision's deletes first by a Delete or LeaseRevoke
//! acknowledged at that revision, else by an unknown-outcome Delete (whose
//! range held exactly those keys) or LeaseRevoke, else by an acknowledged
//! one answered with another revision (WrongRevision later), else by a lease
//! expiry (every deleted key had the same lease, and every key of that
//! lease is deleted). Flags PhantomWrite and SharedRevision.

use std::collections::HashMap;

use super::model::Model;
use super::{describe, show, AnomalyClass, Sink};
use crate::faults::history::{EventKind, History, Op, Outcome, Reply};

/// Who made a revision's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Op(usize),
    /// The expiry of this lease.
    Expiry(i64),
}

pub(crate) struct Attribution {
    /// Per group of the model: who made its events (more than one is a
    /// SharedRevision).
    pub owners: Vec<Vec<Owner>>,
    /// Per record: (revision, index in `model.events`) of every event
    /// attributed to it.
    pub hits: Vec<Vec<(i64, usize)>>,
}

/// Candidates for explaining deletes.
struct Index<'a> {
    /// Put values: (key, value) -> record.
    values: HashMap<(&'a [u8], &'a [u8]), usize>,
    /// Acknowledged effectful Deletes and LeaseRevokes by header revision.
    by_header: HashMap<i64, Vec<usize>>,
    /// Deletes (acknowledged with deleted > 0, or unknown) of one key.
    single_deletes: HashMap<&'a [u8], Vec<usize>>,
    /// Such Deletes of a range.
    range_deletes: Vec<usize>,
    /// LeaseRevokes (acknowledged or unknown) by lease.
    revokes: HashMap<i64, Vec<usize>>,
}

fn index<'a>(h: &'a History, sink: &mut Sink) -> Index<'a> {
    let mut ix = Index {
        values: HashMap::new(),
        by_header: HashMap::new(),
        single_deletes: HashMap::new(),
        range_deletes: Vec::new(),
        revokes: HashMap::new(),
    };
    for (i, r) in h.records.iter().enumerate() {
        let mut value = |key: &'a [u8], value: &'a [u8]| {
            if let Some(other) = ix.values.insert((key, value), i) {
                sink.add(AnomalyClass::BadHistory, || {
                    format!("value {}={} is written by #{other} and {}", show(key), show(value), describe(i, r))
                });
            }
        };
        match &r.op {
            Op::Put { key, value: v, .. } => value(key, v),
            Op::Cas { puts, .. } => puts.iter().for_each(|(k, v)| value(k, v)),
            Op::Delete { range } => {
                let candidate = match &r.outcome {
                    Outcome::Ok(Reply::Delete { revision, deleted }) if *deleted > 0 => {
                        ix.by_header.entry(*revision).or_default().push(i);
                        true
                    }
                    Outcome::Unknown(_) => true,
                    _ => false,
                };
                if candidate && range.range_end.is_empty() {
                    ix.single_deletes.entry(range.key.as_slice()).or_default().push(i);
                } else if candidate {
                    ix.range_deletes.push(i);
                }
            }
            Op::LeaseRevoke { id } => match &r.outcome {
                Outcome::Ok(Reply::LeaseRevoke { revision }) => {
                    ix.by_header.entry(*revision).or_default().push(i);
                    ix.revokes.entry(*id).or_default().push(i);
                }
                Outcome::Unknown(_) => ix.revokes.entry(*id).or_default().push(i),
                _ => {}
            },
            Op::Range { .. } | Op::LeaseGrant { .. } => {}
        }
    }
    ix
}

pub(crate) fn attribute(h: &History, m: &Model, sink: &mut Sink) -> Attribution {
    let ix = index(h, sink);
    let mut attr = Attribution { owners: vec![Vec::new(); m.groups.len()], hits: vec![Vec::new(); h.records.len()] };
    let mut pending = Vec::new();
    for (g, group) in m.groups.iter().enumerate() {
        let rev = group.rev;
        let mut deletes = Vec::new();
        for i in group.start..group.end {
            let e = m.events[i];
            if e.kind == EventKind::Delete {
                deletes.push(i);
                continue;
            }
            match ix.values.get(&(e.kv.key.as_slice(), e.kv.value.as_slice())) {
                Some(&op) => attr.own(g, rev, Owner::Op(op), &[i]),
                None => sink.add(AnomalyClass::PhantomWrite, || {
                    format!(
                        "put {}={} at revision {rev} was written by no operation",
                        show(&e.kv.key),
                        show(&e.kv.value)
                    )
                }),
            }
        }
        if deletes.is_empty() {
            continue;
        }
        // Acknowledged at this revision: the delete's range, or the revoked lease.
        let exact = ix.by_header.get(&rev).into_iter().flatten().find_map(|&op| {
            let covered: Vec<usize> = deletes
                .iter()
                .copied()
                .filter(|&i| {
                    let key = &m.events[i].kv.key;
                    match &h.records[op].op {
                        Op::Delete { range } => range.contains(key),
                        Op::LeaseRevoke { id } => m.get(key, rev - 1).is_some_and(|kv| kv.lease == *id),
                        _ => false,
                    }
                })
                .collect();
            (!covered.is_empty()).then_some((op, covered))
        });
        match exact {
            Some((op, covered)) => {
                attr.own(g, rev, Owner::Op(op), &covered);
                let rest: Vec<String> =
                    deletes.iter().filter(|i| !covered.contains(i)).map(|&i| show(&m.events[i].kv.key)).collect();
                if !rest.is_empty() {
                    sink.add(AnomalyClass::PhantomWrite, || {
                        format!(
                            "deletes of {} at revision {rev} are not explained by {}",
                            rest.join(", "),
                            describe(op, &h.records[op])
                        )
                    });
                }
            }
            None => pending.push((g, deletes)),
        }
    }
    // The rest, once every exact attribution has claimed its operation.
    for (g, deletes) in pending {
        let rev = m.groups[g].rev;
        match explain(h, m, &ix, &attr, rev, &deletes) {
            Some(owner) => attr.own(g, rev, owner, &deletes),
            None => sink.add(AnomalyClass::PhantomWrite, || {
                let keys: Vec<String> = deletes.iter().map(|&i| show(&m.events[i].kv.key)).collect();
                format!(
                    "deletes of {} at revision {rev} are explained by no operation nor lease expiry",
                    keys.join(", ")
                )
            }),
        }
    }
    for (g, owners) in attr.owners.iter().enumerate() {
        if owners.len() > 1 {
            sink.add(AnomalyClass::SharedRevision, || {
                let names: Vec<String> = owners
                    .iter()
                    .map(|o| match *o {
                        Owner::Op(op) => describe(op, &h.records[op]),
                        Owner::Expiry(lease) => format!("the expiry of lease {lease}"),
                    })
                    .collect();
                format!("revision {} holds events of {}", m.groups[g].rev, names.join(" and "))
            });
        }
    }
    attr
}

impl Attribution {
    fn own(&mut self, g: usize, rev: i64, owner: Owner, events: &[usize]) {
        if !self.owners[g].contains(&owner) {
            self.owners[g].push(owner);
        }
        if let Owner::Op(op) = owner {
            self.hits[op].extend(events.iter().map(|&i| (rev, i)));
        }
    }
}

/// Explains the deletes of one revision not acknowledged at it.
fn explain(h: &History, m: &Model, ix: &Index, attr: &Attribution, rev: i64, deletes: &[usize]) -> Option<Owner> {
    let keys: Vec<&[u8]> = deletes.iter().map(|&i| m.events[i].kv.key.as_slice()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    // The lease every deleted key carried, if all of that lease's keys go.
    let lease = m.get(keys[0], rev - 1).map_or(0, |kv| kv.lease);
    let lease_match = lease != 0 && m.keys_with_lease(lease, rev - 1) == sorted;
    let unknown = |op: usize| matches!(h.records[op].outcome, Outcome::Unknown(_));
    let used = |op: usize| !attr.hits[op].is_empty();
    // Lower rank wins: an unused unknown-outcome Delete (0), an unused
    // acknowledged Delete or LeaseRevoke answered with another revision (2,
    // 3), a lease expiry (4), an unknown-outcome LeaseRevoke or one already
    // applied elsewhere (5, 6: DuplicateApply).
    let rank = |op: usize, base: u8| {
        if used(op) {
            5 + base
        } else if unknown(op) {
            base
        } else {
            2 + base
        }
    };
    let mut best: Option<(u8, Owner)> = None;
    let singles = if keys.len() == 1 { ix.single_deletes.get(keys[0]).map(Vec::as_slice) } else { None };
    for &op in singles.unwrap_or_default().iter().chain(&ix.range_deletes) {
        if best.is_some_and(|(r, _)| r == 0) {
            break;
        }
        let Op::Delete { range } = &h.records[op].op else { continue };
        if !keys.iter().all(|k| range.contains(k)) {
            continue;
        }
        let before: Vec<&[u8]> = m.range(range, rev - 1).iter().map(|kv| kv.key.as_slice()).collect();
        if before != sorted {
            continue;
        }
        consider(&mut best, rank(op, 0), Owner::Op(op));
    }
    if lease_match {
        // An expiry deletes exactly what a revoke would: an unknown-outcome
        // revoke is not credited over it (the lease may have expired long
        // before that revoke was even sent).
        consider(&mut best, 4, Owner::Expiry(lease));
        for &op in ix.revokes.get(&lease).into_iter().flatten() {
            let r = if unknown(op) && !used(op) { 5 } else { rank(op, 1) };
            consider(&mut best, r, Owner::Op(op));
        }
    }
    best.map(|(_, owner)| owner)
}

fn consider(best: &mut Option<(u8, Owner)>, rank: u8, owner: Owner) {
    if best.is_none_or(|(r, _)| rank < r) {
        *best = Some((rank, owner));
    }
}
