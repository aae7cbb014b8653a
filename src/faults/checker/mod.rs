//! The checker of a fault run: judges a recorded [`History`] against etcd
//! v3's guarantees and DESIGN's invariants (docs/design.md "Invariants":
//! 1 one global revision in real-time order, 2 consistent snapshot header,
//! 3 linearizable reads, 4 gapless ordered watches, 5 durability, 6 lease
//! safety). A pure function: no I/O, no threads.
//!
//! The authoritative history is `h.events` (a watch from revision 1 read
//! after the run healed). From it [`model`] answers "the kvs of a range at
//! revision R"; [`attribute`] names the operation behind each revision's
//! events; then [`writes`], [`order`], [`reads`], [`watches`] and
//! [`members`] each judge their part and report [`Anomaly`]s.
//!
//! Choices worth knowing:
//! - A linearizable read below an earlier acknowledged write is reported
//!   as [`AnomalyClass::StaleRevision`] (no separate StaleRead class).
//! - Revision gaps in `h.events` are allowed (voided revisions).
//! - An acknowledged LeaseGrant is not ordered (its header is not checked);
//!   LeaseRevoke is, as a write when it deleted keys, else as a no-op.
//! - Watches may stall around `h.faults` windows: a write's delivery
//!   deadline (completion + bound) is pushed to a fault's end + bound when
//!   that fault overlaps the wait.

mod attribute;
mod members;
mod model;
mod order;
mod reads;
mod watches;
mod writes;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests_clean;
#[cfg(test)]
mod tests_reads;
#[cfg(test)]
mod tests_watches;
#[cfg(test)]
mod tests_writes;

use std::collections::BTreeMap;
use std::fmt;

use super::history::{History, Nanos, Op, Outcome, Record};

/// How strict the checker is.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// How long after a write's acknowledgement every watcher of its range
    /// must have delivered its revision (outside fault windows).
    pub watch_silence_bound: Nanos,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig { watch_silence_bound: 15_000_000_000 }
    }
}

/// What went wrong, one class per check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyClass {
    /// The recorded history is not a consistent MVCC history (or the harness recorded nonsense); guards 4 (and the checker's own basis).
    BadHistory,
    /// An acknowledged write (or an acknowledged revision) is missing from the final history; guards 5 (durability).
    LostWrite,
    /// An acknowledged write's events sit at a revision other than its header (or disagree with its reply); guards 2 (snapshot header).
    WrongRevision,
    /// One revision holds events of two operations; guards 1 (one global revision).
    SharedRevision,
    /// A txn, delete range or lease revoke did not apply atomically at one revision; guards 1.
    TxnSplit,
    /// A change no operation (and no lease expiry) explains; guards 5 and 6 (lease safety).
    PhantomWrite,
    /// A write answered as failed (or a Cas answered succeeded=false) has an effect; guards 5.
    FailedApplied,
    /// One operation's effect appears at two revisions; guards 1.
    DuplicateApply,
    /// A revision (or header) below one acknowledged before the operation began, including stale linearizable reads; guards 1 and 3.
    StaleRevision,
    /// A read's kvs differ from the history's state at its header revision; guards 2.
    ReadMismatch,
    /// A read or no-op write whose header covers a write invoked only after it completed; guards 2.
    FutureRead,
    /// A write answered as a no-op whose header revision's state says it would have changed something; guards 2.
    NoopAhead,
    /// A Cas applied although a compare was false just before its revision; guards 2.
    CasMismatch,
    /// A watcher's revisions go backwards (or below its start); guards 4 (ordered watches).
    WatchOrder,
    /// One revision's events split over two watch responses; guards 4.
    WatchSplitRevision,
    /// A watcher got one revision twice; guards 4.
    WatchDuplicate,
    /// A watcher missed events of its range; guards 4 (gapless watches).
    WatchGap,
    /// A watch event differs from the history's (or is not in it); guards 4.
    WatchMismatch,
    /// A watcher did not deliver an acknowledged write within the bound; guards 4.
    WatchSilent,
    /// A member's final kvs differ from the history's state at its revision; guards 5.
    FinalStateMismatch,
    /// Members report different HashKV at one revision; guards 5.
    HashMismatch,
}

impl fmt::Display for AnomalyClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One finding: its class and a human-readable account naming the
/// operations (`#index` into `h.records`) and revisions involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub class: AnomalyClass,
    pub detail: String,
}

/// The verdict on one run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// At most [`MAX_PER_CLASS`] per class, then one "... and N more".
    pub anomalies: Vec<Anomaly>,
    pub lost_writes: usize,
    pub acked_writes: usize,
    pub unknown_writes: usize,
    /// Unknown-outcome writes whose effect is in the history.
    pub unknown_applied: usize,
    pub reads_checked: usize,
    pub watch_events_checked: usize,
    /// Every anomaly found per class (including those not stored).
    pub counts: BTreeMap<AnomalyClass, usize>,
    /// The longest time from a write's acknowledgement until a watcher of
    /// its range delivered its revision.
    pub worst_watch_delay: Nanos,
}

/// Anomalies stored per class; the rest are only counted.
pub const MAX_PER_CLASS: usize = 20;

impl Report {
    pub fn ok(&self) -> bool {
        self.counts.values().all(|&n| n == 0)
    }

    /// Every anomaly found, including those not stored in `anomalies`.
    pub fn anomaly_count(&self) -> usize {
        self.counts.values().sum()
    }

    /// One line: the count per anomaly class, then the counters.
    pub fn summary(&self) -> String {
        let classes = if self.ok() {
            "ok".to_string()
        } else {
            let list: Vec<String> = self.counts.iter().map(|(c, n)| format!("{c}={n}")).collect();
            format!("ANOMALIES {}", list.join(" "))
        };
        format!(
            "{classes} | acked_writes={} unknown_writes={} unknown_applied={} lost_writes={} reads_checked={} \
             watch_events_checked={} worst_watch_delay={}",
            self.acked_writes,
            self.unknown_writes,
            self.unknown_applied,
            self.lost_writes,
            self.reads_checked,
            self.watch_events_checked,
            secs(self.worst_watch_delay)
        )
    }
}

/// Collects anomalies, storing the first [`MAX_PER_CLASS`] of each class.
#[derive(Default)]
pub(crate) struct Sink {
    stored: Vec<Anomaly>,
    counts: BTreeMap<AnomalyClass, usize>,
}

impl Sink {
    pub fn add(&mut self, class: AnomalyClass, detail: impl FnOnce() -> String) {
        let n = self.counts.entry(class).or_insert(0);
        *n += 1;
        if *n <= MAX_PER_CLASS {
            self.stored.push(Anomaly { class, detail: detail() });
        }
    }

    fn finish(mut self, report: &mut Report) {
        self.stored.sort_by_key(|a| a.class);
        for (&class, &n) in &self.counts {
            if n > MAX_PER_CLASS {
                let detail = format!("... and {} more {class} anomalies", n - MAX_PER_CLASS);
                let at = self.stored.partition_point(|a| a.class <= class);
                self.stored.insert(at, Anomaly { class, detail });
            }
        }
        report.anomalies = self.stored;
        report.counts = self.counts;
    }
}

/// What the checks share: the history, the model built from its events,
/// which operation made each revision, and each operation's verdict.
pub(crate) struct Ctx<'a> {
    pub h: &'a History,
    pub cfg: &'a CheckConfig,
    pub model: model::Model<'a>,
    pub attr: attribute::Attribution,
    pub effects: Vec<writes::Effect>,
}

/// Judges a whole run.
pub fn check(h: &History, cfg: &CheckConfig) -> Report {
    let mut sink = Sink::default();
    let mut report = Report::default();
    for (i, r) in h.records.iter().enumerate() {
        if r.complete < r.invoke {
            sink.add(AnomalyClass::BadHistory, || format!("{} completes before it is invoked", describe(i, r)));
        }
    }
    let model = model::Model::build(h, &mut sink);
    let attr = attribute::attribute(h, &model, &mut sink);
    let mut ctx = Ctx { h, cfg, model, attr, effects: Vec::new() };
    ctx.effects = writes::check(&ctx, &mut sink, &mut report);
    order::check(&ctx, &mut sink);
    reads::check(&ctx, &mut sink, &mut report);
    watches::check(&ctx, &mut sink, &mut report);
    members::check(&ctx, &mut sink);
    sink.finish(&mut report);
    report
}

/// Bytes for a human: printable ASCII as is, the rest escaped.
pub(crate) fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Nanoseconds as seconds with microsecond precision.
pub(crate) fn secs(n: Nanos) -> String {
    format!("{}.{:06}s", n / 1_000_000_000, n % 1_000_000_000 / 1_000)
}

/// `#i` with its client, what it asked, when, and how it ended.
pub(crate) fn describe(i: usize, r: &Record) -> String {
    let op = match &r.op {
        Op::Put { key, value, lease: 0 } => format!("put {}={}", show(key), show(value)),
        Op::Put { key, value, lease } => format!("put {}={} lease {lease}", show(key), show(value)),
        Op::Range { range, serializable } => {
            format!("{} range {}", if *serializable { "serializable" } else { "linearizable" }, show_range(range))
        }
        Op::Delete { range } => format!("delete {}", show_range(range)),
        Op::Cas { compares, puts } => {
            let ifs: Vec<String> = compares
                .iter()
                .map(|c| match &c.value {
                    Some(v) => format!("{}=={}", show(&c.key), show(v)),
                    None => format!("{} absent", show(&c.key)),
                })
                .collect();
            let thens: Vec<String> = puts.iter().map(|(k, v)| format!("{}={}", show(k), show(v))).collect();
            format!("cas if {} then put {}", ifs.join(" && "), thens.join(", "))
        }
        Op::LeaseGrant { id, ttl } => format!("lease grant {id} ttl {ttl}"),
        Op::LeaseRevoke { id } => format!("lease revoke {id}"),
    };
    let outcome = match &r.outcome {
        Outcome::Ok(reply) => format!("ok header {}", reply.revision()),
        Outcome::Failed(e) => format!("failed ({e})"),
        Outcome::Unknown(e) => format!("unknown ({e})"),
    };
    format!("#{i} [client {} {op}, {}..{}, {outcome}]", r.client, secs(r.invoke), secs(r.complete))
}

pub(crate) fn show_range(r: &super::history::KeyRange) -> String {
    if r.range_end.is_empty() {
        show(&r.key)
    } else if r.range_end == [0] && r.key.is_empty() {
        "all keys".to_string()
    } else if r.range_end == [0] {
        format!("[{}, end)", show(&r.key))
    } else {
        format!("[{}, {})", show(&r.key), show(&r.range_end))
    }
}
