//! Reads (ReadMismatch): an acknowledged Range, linearizable or
//! serializable, returns exactly the history's state of its range at its
//! header revision. (Their order is judged in `order`: StaleRevision and
//! FutureRead.)

use super::{describe, show, AnomalyClass, Ctx, Report, Sink};
use crate::faults::history::{Kv, Op, Outcome, Reply};

pub(crate) fn check(ctx: &Ctx, sink: &mut Sink, report: &mut Report) {
    for (i, r) in ctx.h.records.iter().enumerate() {
        let (Op::Range { range, .. }, Outcome::Ok(Reply::Range { revision, kvs })) = (&r.op, &r.outcome) else {
            continue;
        };
        report.reads_checked += 1;
        let want = ctx.model.range(range, *revision);
        if let Some(diff) = difference(&want, kvs) {
            sink.add(AnomalyClass::ReadMismatch, || format!("{}: {diff}", describe(i, r)));
        }
    }
}

/// The first difference between the model's kvs and a reply's, if any.
pub(crate) fn difference(want: &[&Kv], got: &[Kv]) -> Option<String> {
    for (n, (w, g)) in want.iter().zip(got).enumerate() {
        if *w != g {
            return Some(if w.key != g.key {
                format!("kv {n} is {} where the history has {}", show(&g.key), show(&w.key))
            } else {
                format!("{} is {} where the history has {}", show(&g.key), brief(g), brief(w))
            });
        }
    }
    match want.len().cmp(&got.len()) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Less => Some(format!(
            "{} kvs where the history has {}; extra {}",
            got.len(),
            want.len(),
            show(&got[want.len()].key)
        )),
        std::cmp::Ordering::Greater => Some(format!(
            "{} kvs where the history has {}; missing {}",
            got.len(),
            want.len(),
            show(&want[got.len()].key)
        )),
    }
}

/// A kv's fields without its key.
pub(crate) fn brief(kv: &Kv) -> String {
    format!(
        "{} (create {} mod {} version {} lease {})",
        show(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease
    )
}
