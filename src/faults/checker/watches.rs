//! Watchers: each log's responses, concatenated across breaks and resumes,
//! must be in revision order (WatchOrder), never split a revision
//! (WatchSplitRevision) nor repeat one (WatchDuplicate), hold exactly the
//! history's events of the range from the start revision to the last one
//! delivered (WatchGap, WatchMismatch), and keep up: every acknowledged
//! write of the range delivered within the bound of its acknowledgement,
//! and by the end every event up to the last write acknowledged more than
//! the bound before the end (WatchSilent). A revision counts as delivered
//! once any later one is (a skipped one is a gap, not silence).

use std::collections::BTreeMap;

use super::model::overlap;
use super::writes::Effect;
use super::{describe, secs, show, show_range, AnomalyClass, Ctx, Report, Sink};
use crate::faults::history::{Event, EventKind, KeyRange, Nanos, Op, WatchItem, WatchLog};

/// An acknowledged write that changed the store.
struct Write {
    op: usize,
    /// Where its events are (its header when they are missing).
    rev: i64,
    invoke: Nanos,
    complete: Nanos,
}

pub(crate) fn check(ctx: &Ctx, sink: &mut Sink, report: &mut Report) {
    let h = ctx.h;
    let writes: Vec<Write> = ctx
        .effects
        .iter()
        .enumerate()
        .filter_map(|(op, e)| match *e {
            Effect::Write(header) => {
                let rev = ctx.attr.hits[op].iter().map(|&(rev, _)| rev).min().unwrap_or(header);
                let r = &h.records[op];
                Some(Write { op, rev, invoke: r.invoke, complete: r.complete })
            }
            _ => None,
        })
        .collect();
    for w in &h.watches {
        let stream = walk(w, sink, report);
        compare(ctx, w, &stream, sink);
        silence(ctx, w, &stream, &writes, sink, report);
    }
}

/// What one watcher delivered.
#[derive(Default)]
struct Stream<'a> {
    /// Per revision, its events (once each).
    delivered: BTreeMap<i64, Vec<&'a Event>>,
    /// (newest revision so far, when), increasing: when each was reached.
    reach: Vec<(i64, Nanos)>,
    /// When the watcher was first started (0 if the log does not say).
    created: Nanos,
}

impl Stream<'_> {
    /// The revision the checks start at.
    fn lo(&self, w: &WatchLog) -> Option<i64> {
        if w.start_revision > 0 {
            Some(w.start_revision)
        } else {
            self.delivered.keys().next().copied()
        }
    }

    fn last(&self) -> Option<i64> {
        self.delivered.keys().next_back().copied()
    }

    /// When revision `rev` (or a later one) was first delivered.
    fn reached(&self, rev: i64) -> Option<Nanos> {
        self.reach.get(self.reach.partition_point(|&(r, _)| r < rev)).map(|&(_, at)| at)
    }
}

fn walk<'a>(w: &'a WatchLog, sink: &mut Sink, report: &mut Report) -> Stream<'a> {
    let id = w.id;
    let mut s = Stream::default();
    let mut floor = (w.start_revision > 0).then_some(w.start_revision);
    let mut last: Option<i64> = None;
    // The last revision of the previous response of the same stream.
    let mut previous: Option<i64> = None;
    // Revisions the watcher itself asked for again (a bad resume).
    let mut asked_again: Option<i64> = None;
    let mut started = false;
    for item in &w.items {
        let (at, events) = match item {
            WatchItem::Started { at, from_revision } => {
                if !started {
                    s.created = *at;
                    started = true;
                }
                if let Some(l) = last.filter(|&l| *from_revision > 0 && *from_revision <= l) {
                    sink.add(AnomalyClass::BadHistory, || {
                        format!("watch {id} resumed from {from_revision} after it saw revision {l}")
                    });
                    asked_again = Some(l);
                }
                if *from_revision > 0 {
                    floor = Some(*from_revision);
                }
                previous = None;
                continue;
            }
            WatchItem::Broken { .. } => {
                previous = None;
                continue;
            }
            WatchItem::Events { at, events } => (*at, events),
        };
        started = true;
        report.watch_events_checked += events.len();
        let backwards = events.windows(2).any(|p| p[1].kv.mod_revision < p[0].kv.mod_revision);
        if backwards {
            sink.add(AnomalyClass::WatchOrder, || {
                format!("watch {id}: a response at {} goes back in revision", secs(at))
            });
        }
        for (n, run) in events.chunk_by(|a, b| a.kv.mod_revision == b.kv.mod_revision).enumerate() {
            let rev = run[0].kv.mod_revision;
            if last.is_some_and(|l| rev <= l) {
                if asked_again.is_some_and(|a| rev <= a) {
                    continue;
                }
                let contiguous = n == 0 && previous == Some(rev);
                let seen = s.delivered.entry(rev).or_default();
                let fresh: Vec<&Event> = run.iter().filter(|e| !seen.contains(e)).collect();
                let class = if seen.is_empty() {
                    AnomalyClass::WatchOrder
                } else if fresh.is_empty() {
                    AnomalyClass::WatchDuplicate
                } else {
                    AnomalyClass::WatchSplitRevision
                };
                seen.extend(fresh);
                if !backwards || class == AnomalyClass::WatchDuplicate {
                    let how = if contiguous { "the next response" } else { "a later response" };
                    let l = last.unwrap_or(0);
                    sink.add(class, || match class {
                        AnomalyClass::WatchOrder => {
                            format!("watch {id}: revision {rev} delivered at {} after revision {l}", secs(at))
                        }
                        AnomalyClass::WatchDuplicate => {
                            format!("watch {id}: revision {rev} delivered again in {how} at {}", secs(at))
                        }
                        _ => format!("watch {id}: revision {rev} split, more of its events in {how} at {}", secs(at)),
                    });
                }
                continue;
            }
            if let Some(f) = floor.filter(|&f| rev < f) {
                sink.add(AnomalyClass::WatchOrder, || {
                    format!("watch {id}: revision {rev} delivered below its start {f}")
                });
                continue;
            }
            s.delivered.insert(rev, run.iter().collect());
            s.reach.push((rev, at));
            last = Some(rev);
        }
        previous = events.last().map(|e| e.kv.mod_revision);
    }
    s
}

/// The delivered events against the history's, from the start revision to
/// the last one delivered.
fn compare(ctx: &Ctx, w: &WatchLog, s: &Stream, sink: &mut Sink) {
    let m = &ctx.model;
    let (Some(lo), Some(hi)) = (s.lo(w), s.last()) else { return };
    let mut want: BTreeMap<i64, Vec<&Event>> = BTreeMap::new();
    for g in m.groups_upto(lo - 1)..m.groups_upto(hi) {
        let events: Vec<&Event> = m.group_events(g).iter().copied().filter(|e| w.range.contains(&e.kv.key)).collect();
        if !events.is_empty() {
            want.insert(m.groups[g].rev, events);
        }
    }
    let mut missing: Vec<String> = Vec::new();
    let none = Vec::new();
    let mut revs: Vec<i64> = want.keys().chain(s.delivered.range(lo..=hi).map(|(r, _)| r)).copied().collect();
    revs.sort_unstable();
    revs.dedup();
    for rev in revs {
        let (want, got) = (want.get(&rev).unwrap_or(&none), s.delivered.get(&rev).unwrap_or(&none));
        if got.is_empty() {
            missing.push(rev.to_string());
            continue;
        }
        let mut order = Vec::new();
        for e in want {
            match got.iter().position(|g| g.kv.key == e.kv.key) {
                None => missing.push(format!("{rev} ({})", show(&e.kv.key))),
                Some(p) if same(e, got[p]) => order.push(p),
                Some(p) => sink.add(AnomalyClass::WatchMismatch, || {
                    format!(
                        "watch {}: at revision {rev} got {} where the history has {}",
                        w.id,
                        brief(got[p]),
                        brief(e)
                    )
                }),
            }
        }
        for g in got.iter().filter(|g| !want.iter().any(|e| e.kv.key == g.kv.key)) {
            sink.add(AnomalyClass::WatchMismatch, || {
                format!("watch {}: got {} which is not in the history", w.id, brief(g))
            });
        }
        if order.windows(2).any(|p| p[1] < p[0]) {
            sink.add(AnomalyClass::WatchOrder, || {
                format!("watch {}: revision {rev}'s events are not in the history's order", w.id)
            });
        }
    }
    if !missing.is_empty() {
        sink.add(AnomalyClass::WatchGap, || {
            let n = missing.len();
            missing.truncate(10);
            format!(
                "watch {} ({} from {lo}) missed {n} revisions of its range up to {hi}: {}",
                w.id,
                show_range(&w.range),
                missing.join(", ")
            )
        });
    }
}

fn same(a: &Event, b: &Event) -> bool {
    a.kind == b.kind
        && a.kv.key == b.kv.key
        && a.kv.mod_revision == b.kv.mod_revision
        && (a.kind == EventKind::Delete
            || (a.kv.value == b.kv.value
                && a.kv.create_revision == b.kv.create_revision
                && a.kv.version == b.kv.version))
}

fn brief(e: &Event) -> String {
    match e.kind {
        EventKind::Delete => format!("delete {} at {}", show(&e.kv.key), e.kv.mod_revision),
        EventKind::Put => format!("put {}={} at {}", show(&e.kv.key), super::reads::brief(&e.kv), e.kv.mod_revision),
    }
}

/// Acknowledged writes of the range delivered within the bound of their
/// acknowledgement (or of the watcher's creation, if later), and by the end
/// every event of the range up to the newest revision acknowledged (by any
/// write) more than the bound before the end.
fn silence(ctx: &Ctx, w: &WatchLog, s: &Stream, writes: &[Write], sink: &mut Sink, report: &mut Report) {
    let h = ctx.h;
    let lo = s.lo(w);
    let mut late: Vec<(&Write, Option<Nanos>)> = Vec::new();
    let mut worst: Nanos = 0;
    let mut due: Option<i64> = None;
    for wr in writes {
        // A watcher cannot deliver before it exists.
        let since = wr.complete.max(s.created);
        let limit = deadline(ctx, since);
        if limit <= h.end {
            due = due.max(Some(wr.rev));
        }
        let covered = if w.start_revision > 0 {
            wr.rev >= w.start_revision
        } else {
            wr.invoke > s.created || lo.is_some_and(|lo| wr.rev >= lo)
        };
        if !covered || !touches(ctx, wr, &w.range) {
            continue;
        }
        match s.reached(wr.rev) {
            Some(at) => {
                worst = worst.max(at.saturating_sub(since));
                if at > limit {
                    late.push((wr, Some(at)));
                }
            }
            None if limit <= h.end => late.push((wr, None)),
            None => {}
        }
    }
    report.worst_watch_delay = report.worst_watch_delay.max(worst);
    let delivered = s.last().map_or("nothing".to_string(), |l| format!("up to revision {l}"));
    if let Some(&(first, at)) = late.first() {
        sink.add(AnomalyClass::WatchSilent, || {
            format!(
                "watch {} ({}) delivered {} of its range's acknowledged writes late or never (bound {}): first {} at \
                 revision {}, delivered {}; worst delay seen {}; it delivered {delivered}",
                w.id,
                show_range(&w.range),
                late.len(),
                secs(ctx.cfg.watch_silence_bound),
                describe(first.op, &h.records[first.op]),
                first.rev,
                at.map_or("never".to_string(), secs),
                secs(worst)
            )
        });
        return;
    }
    // Every event of the range up to `due` (by any writer, or a lease expiry).
    let (Some(due), Some(lo)) = (due, lo) else { return };
    let m = &ctx.model;
    let newest = (m.groups_upto(lo - 1)..m.groups_upto(due))
        .rev()
        .find(|&g| m.group_events(g).iter().any(|e| w.range.contains(&e.kv.key)))
        .map(|g| m.groups[g].rev);
    if let Some(newest) = newest.filter(|&n| s.last().is_none_or(|l| l < n)) {
        sink.add(AnomalyClass::WatchSilent, || {
            format!(
                "watch {} ({}) delivered {delivered} by the end at {}, but its range changed at revision {newest}, \
                 at or below revision {due} acknowledged more than the bound before the end",
                w.id,
                show_range(&w.range),
                secs(h.end)
            )
        });
    }
}

/// Whether a write changed a key of `range`.
fn touches(ctx: &Ctx, wr: &Write, range: &KeyRange) -> bool {
    let hits = &ctx.attr.hits[wr.op];
    if !hits.is_empty() {
        return hits.iter().any(|&(_, e)| range.contains(&ctx.model.events[e].kv.key));
    }
    match &ctx.h.records[wr.op].op {
        Op::Put { key, .. } => range.contains(key),
        Op::Cas { puts, .. } => puts.iter().any(|(k, _)| range.contains(k)),
        Op::Delete { range: r } => overlap(r, range),
        Op::Range { .. } | Op::LeaseGrant { .. } | Op::LeaseRevoke { .. } => false,
    }
}

/// When a write acknowledged at `t` must have been delivered: `t` + the
/// bound, pushed to a fault's end + the bound while faults overlap the wait.
fn deadline(ctx: &Ctx, t: Nanos) -> Nanos {
    let bound = ctx.cfg.watch_silence_bound;
    let mut d = t.saturating_add(bound);
    loop {
        let mut grown = false;
        for &(start, end) in &ctx.h.faults {
            if start <= d && end >= t && end.saturating_add(bound) > d {
                d = end.saturating_add(bound);
                grown = true;
            }
        }
        if !grown {
            return d;
        }
    }
}
