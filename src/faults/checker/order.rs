//! Real-time order (StaleRevision): an operation that began after an
//! effectful write was acknowledged must be at or above that write's
//! revision (strictly above when it is itself effectful), and nothing the
//! run acknowledged may be above the final revision. An unknown-outcome
//! write whose effect is in the history is held to the same rule with the
//! revision it applied at (it began after those writes were acknowledged).
//! And FutureRead: a read
//! (or a no-op write) must not cover a write invoked after it completed.
//! Both O(n log n): completions sorted and swept, per-revision prefix maxima.

use super::attribute::Owner;
use super::writes::Effect;
use super::{describe, secs, AnomalyClass, Ctx, Sink};
use crate::faults::history::{Nanos, Outcome};

pub(crate) fn check(ctx: &Ctx, sink: &mut Sink) {
    stale(ctx, sink);
    future(ctx, sink);
}

fn stale(ctx: &Ctx, sink: &mut Sink) {
    let h = ctx.h;
    // Acknowledged effectful writes by completion, with the running maximum
    // revision (and whose it is).
    let mut done: Vec<(Nanos, i64, usize)> = ctx
        .effects
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match *e {
            Effect::Write(rev) => Some((h.records[i].complete, rev, i)),
            _ => None,
        })
        .collect();
    done.sort_unstable();
    let mut best = (i64::MIN, usize::MAX);
    let running: Vec<(i64, usize)> = done
        .iter()
        .map(|&(_, rev, i)| {
            if rev > best.0 {
                best = (rev, i);
            }
            best
        })
        .collect();
    for (b, e) in ctx.effects.iter().enumerate() {
        let r = &h.records[b];
        if let Effect::Write(rev) | Effect::Noop(rev) | Effect::Read(rev, _) = *e {
            if rev > h.final_revision {
                sink.add(AnomalyClass::StaleRevision, || {
                    format!("{} was acknowledged above the final revision {}", describe(b, r), h.final_revision)
                });
            }
        }
        let (rev, strict, what) = match *e {
            Effect::Write(rev) => (rev, true, "header"),
            Effect::UnknownApplied(rev) => (rev, true, "revision"),
            Effect::Noop(rev) | Effect::Read(rev, true) => (rev, false, "header"),
            Effect::Read(_, false) | Effect::None => continue,
        };
        let k = done.partition_point(|&(complete, _, _)| complete < r.invoke);
        if k == 0 {
            continue;
        }
        let (max, a) = running[k - 1];
        if rev < max || (strict && rev == max) {
            sink.add(AnomalyClass::StaleRevision, || {
                format!(
                    "{} has {what} {rev}, but {} was acknowledged at {max} before it began",
                    describe(b, r),
                    describe(a, &h.records[a])
                )
            });
        }
    }
}

fn future(ctx: &Ctx, sink: &mut Sink) {
    let (h, m) = (ctx.h, &ctx.model);
    // Per group: the latest-invoked known operation at or below it.
    let mut best: Option<(Nanos, usize, i64)> = None;
    let latest: Vec<Option<(Nanos, usize, i64)>> = ctx
        .attr
        .owners
        .iter()
        .enumerate()
        .map(|(g, owners)| {
            for owner in owners {
                let Owner::Op(op) = *owner else { continue };
                let r = &h.records[op];
                if matches!(r.outcome, Outcome::Failed(_)) {
                    continue;
                }
                if best.is_none_or(|(t, _, _)| r.invoke > t) {
                    best = Some((r.invoke, op, m.groups[g].rev));
                }
            }
            best
        })
        .collect();
    for (x, e) in ctx.effects.iter().enumerate() {
        let (Effect::Noop(rev) | Effect::Read(rev, _)) = *e else { continue };
        let r = &h.records[x];
        let k = m.groups_upto(rev);
        let Some((invoke, op, at)) = (k > 0).then(|| latest[k - 1]).flatten() else { continue };
        if invoke > r.complete {
            sink.add(AnomalyClass::FutureRead, || {
                format!(
                    "{} completed at {} with header {rev}, but revision {at} holds {}, invoked at {}",
                    describe(x, r),
                    secs(r.complete),
                    describe(op, &h.records[op]),
                    secs(invoke)
                )
            });
        }
    }
}
