//! Each write against the events attributed to it: LostWrite,
//! WrongRevision, DuplicateApply, TxnSplit, FailedApplied, NoopAhead,
//! CasMismatch, and the write counters of the report.

use std::collections::BTreeSet;

use super::model::Model;
use super::{describe, show, AnomalyClass, Ctx, Report, Sink};
use crate::faults::history::{Compare, Op, Outcome, Record, Reply};

/// What one operation did, as the ordering checks need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Acknowledged and changed the store; its header revision.
    Write(i64),
    /// An acknowledged write that changed nothing; its header revision.
    Noop(i64),
    /// An acknowledged Range: header revision, linearizable.
    Read(i64, bool),
    /// Outcome unknown and its effect is in the history at this revision.
    UnknownApplied(i64),
    /// Anything else (failed, unknown and not applied, lease grants, ...).
    None,
}

pub(crate) fn check(ctx: &Ctx, sink: &mut Sink, report: &mut Report) -> Vec<Effect> {
    let h = ctx.h;
    let mut effects = Vec::with_capacity(h.records.len());
    for (i, r) in h.records.iter().enumerate() {
        let hits = &ctx.attr.hits[i];
        let applied = hits.iter().map(|&(rev, _)| rev).min();
        let effect = match &r.outcome {
            Outcome::Ok(reply) => acked(ctx, i, r, reply, sink, report),
            Outcome::Failed(_) => {
                if !hits.is_empty() {
                    sink.add(AnomalyClass::FailedApplied, || {
                        format!("{} has an effect at revision {}", describe(i, r), applied.unwrap_or(0))
                    });
                }
                Effect::None
            }
            Outcome::Unknown(_) if matches!(r.op, Op::Range { .. } | Op::LeaseGrant { .. }) => Effect::None,
            Outcome::Unknown(_) => {
                report.unknown_writes += 1;
                match applied {
                    Some(rev) => {
                        report.unknown_applied += 1;
                        applied_once(ctx, i, r, sink);
                        Effect::UnknownApplied(rev)
                    }
                    None => Effect::None,
                }
            }
        };
        effects.push(effect);
    }
    effects
}

fn acked(ctx: &Ctx, i: usize, r: &Record, reply: &Reply, sink: &mut Sink, report: &mut Report) -> Effect {
    let m = &ctx.model;
    let hits = &ctx.attr.hits[i];
    if r.op.is_write() && !matches!(r.op, Op::LeaseGrant { .. }) {
        report.acked_writes += 1;
    }
    let mut lost = |what: &str| {
        report.lost_writes += 1;
        sink.add(AnomalyClass::LostWrite, || format!("{}: {what}", describe(i, r)));
    };
    match (&r.op, reply) {
        (Op::Put { .. }, Reply::Put { revision }) => {
            if hits.is_empty() {
                lost("its value is not in the history");
            } else {
                applied_once(ctx, i, r, sink);
                at_header(ctx, i, r, *revision, sink);
            }
            Effect::Write(*revision)
        }
        (Op::Cas { puts, .. }, Reply::Cas { revision, succeeded: true }) if !puts.is_empty() => {
            if hits.len() < puts.len() && !hits.is_empty() {
                lost("only some of its puts are in the history");
            } else if hits.is_empty() {
                lost("its puts are not in the history");
            }
            if !hits.is_empty() {
                applied_once(ctx, i, r, sink);
                at_header(ctx, i, r, *revision, sink);
            }
            Effect::Write(*revision)
        }
        (Op::Cas { compares, .. }, Reply::Cas { revision, succeeded }) => {
            if !hits.is_empty() {
                sink.add(AnomalyClass::FailedApplied, || {
                    format!("{} answered succeeded={succeeded} has an effect at revision {}", describe(i, r), hits[0].0)
                });
            } else if !*succeeded && first_false(m, compares, *revision).is_none() {
                sink.add(AnomalyClass::NoopAhead, || {
                    format!("{} failed, but every compare holds at its header revision {revision}", describe(i, r))
                });
            }
            Effect::Noop(*revision)
        }
        (Op::Delete { range }, Reply::Delete { revision, deleted }) if *deleted > 0 => {
            if hits.is_empty() {
                lost(&format!("deleted {deleted}, but no deletion in its range is attributed to it"));
            } else {
                applied_once(ctx, i, r, sink);
                at_header(ctx, i, r, *revision, sink);
                let at = hits[0].0;
                let n = hits.iter().filter(|&&(rev, e)| rev == at && range.contains(&m.events[e].kv.key)).count();
                if n as i64 != *deleted {
                    sink.add(AnomalyClass::WrongRevision, || {
                        format!("{} answered deleted={deleted}, but revision {at} deletes {n} keys", describe(i, r))
                    });
                }
            }
            Effect::Write(*revision)
        }
        (Op::Delete { range }, Reply::Delete { revision, deleted }) => {
            let present = m.range(range, *revision);
            if *deleted < 0 {
                sink.add(AnomalyClass::BadHistory, || format!("{} answered deleted={deleted}", describe(i, r)));
            } else if !present.is_empty() {
                sink.add(AnomalyClass::NoopAhead, || {
                    format!(
                        "{} deleted nothing, but {} exists at its header revision {revision}",
                        describe(i, r),
                        show(&present[0].key)
                    )
                });
            }
            Effect::Noop(*revision)
        }
        (Op::LeaseRevoke { id }, Reply::LeaseRevoke { revision }) => {
            if !hits.is_empty() {
                applied_once(ctx, i, r, sink);
                at_header(ctx, i, r, *revision, sink);
                return Effect::Write(*revision);
            }
            let kept = m.keys_with_lease(*id, *revision);
            if !kept.is_empty() {
                sink.add(AnomalyClass::NoopAhead, || {
                    format!(
                        "{} deleted nothing, but {} carries lease {id} at its header revision {revision}",
                        describe(i, r),
                        show(kept[0])
                    )
                });
            }
            Effect::Noop(*revision)
        }
        (Op::LeaseGrant { .. }, Reply::LeaseGrant { .. }) => Effect::None,
        (Op::Range { serializable, .. }, Reply::Range { revision, .. }) => Effect::Read(*revision, !serializable),
        _ => {
            sink.add(AnomalyClass::BadHistory, || format!("{} has a reply of another kind: {reply:?}", describe(i, r)));
            Effect::None
        }
    }
}

/// An applied write's events: one revision, once; whole (a Cas's every
/// put, a delete range's every key, a revoke's every key of the lease);
/// with the lease asked; and a Cas's compares true just before.
fn applied_once(ctx: &Ctx, i: usize, r: &Record, sink: &mut Sink) {
    let m = &ctx.model;
    let hits = &ctx.attr.hits[i];
    let revs: BTreeSet<i64> = hits.iter().map(|&(rev, _)| rev).collect();
    let at = *revs.first().expect("applied");
    let keys: Vec<&[u8]> = hits.iter().map(|&(_, e)| m.events[e].kv.key.as_slice()).collect();
    let distinct: BTreeSet<&[u8]> = keys.iter().copied().collect();
    if distinct.len() < keys.len() || (revs.len() > 1 && !matches!(r.op, Op::Cas { .. })) {
        let list: Vec<String> = revs.iter().map(i64::to_string).collect();
        sink.add(AnomalyClass::DuplicateApply, || {
            format!("{} applied at revisions {}", describe(i, r), list.join(", "))
        });
        return;
    }
    let missing: Vec<&[u8]> = match &r.op {
        Op::Cas { puts, .. } => puts.iter().map(|(k, _)| k.as_slice()).filter(|k| !distinct.contains(k)).collect(),
        Op::Delete { range } => m.range(range, at - 1).iter().map(|kv| kv.key.as_slice()).collect(),
        Op::LeaseRevoke { id } => m.keys_with_lease(*id, at - 1),
        _ => Vec::new(),
    };
    let missing: Vec<String> = missing.into_iter().filter(|k| !distinct.contains(k)).map(show).collect();
    // An acknowledged Cas missing puts is already a LostWrite.
    let acked_cas = matches!(r.op, Op::Cas { .. }) && matches!(r.outcome, Outcome::Ok(_));
    if revs.len() > 1 || (!missing.is_empty() && !acked_cas) {
        let list: Vec<String> = revs.iter().map(i64::to_string).collect();
        sink.add(AnomalyClass::TxnSplit, || {
            format!(
                "{} applied at revisions {} without {}",
                describe(i, r),
                list.join(", "),
                if missing.is_empty() { "-".to_string() } else { missing.join(", ") }
            )
        });
    }
    let want_lease = match &r.op {
        Op::Put { lease, .. } => Some(*lease),
        Op::Cas { .. } => Some(0),
        _ => None,
    };
    if let Some(lease) = want_lease {
        if let Some(&(rev, e)) = hits.iter().find(|&&(_, e)| m.events[e].kv.lease != lease) {
            sink.add(AnomalyClass::WrongRevision, || {
                format!("{} has lease {} at revision {rev}, asked {lease}", describe(i, r), m.events[e].kv.lease)
            });
        }
    }
    if let Op::Cas { compares, .. } = &r.op {
        if let Some(c) = first_false(m, compares, at - 1) {
            sink.add(AnomalyClass::CasMismatch, || {
                format!(
                    "{} applied at revision {at}, but at {} {} is {}",
                    describe(i, r),
                    at - 1,
                    show(&c.key),
                    m.get(&c.key, at - 1).map_or("absent".to_string(), |kv| show(&kv.value))
                )
            });
        }
    }
}

/// An acknowledged write's events sit at its header revision.
fn at_header(ctx: &Ctx, i: usize, r: &Record, header: i64, sink: &mut Sink) {
    let at = ctx.attr.hits[i].iter().map(|&(rev, _)| rev).min().expect("applied");
    if at != header {
        sink.add(AnomalyClass::WrongRevision, || format!("{} has its effect at revision {at}", describe(i, r)));
    }
}

/// The first compare that does not hold at revision `rev`.
pub(crate) fn first_false<'c>(m: &Model, compares: &'c [Compare], rev: i64) -> Option<&'c Compare> {
    compares.iter().find(|c| {
        let kv = m.get(&c.key, rev);
        match &c.value {
            None => kv.is_some(),
            Some(v) => kv.is_none_or(|kv| kv.value != *v),
        }
    })
}
