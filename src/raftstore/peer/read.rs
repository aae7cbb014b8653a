//! A region leader's reads at a revision (docs/serve-anywhere.md, "Reads
//! at region leaders"): a read that took its revision X from the sequencer
//! is served from this region's applied state once nothing of the region
//! at or below X can still appear. The peer only says when that is; the
//! store reads (`store/read.rs`), off the poller thread.
//!
//! When a read arrives, X was taken before it was sent, so every revision
//! the sequencer hands out from then on is above X. What may still be at
//! or below X: the ask in flight (its answer may be), proposals not yet
//! applied, and cross-region txns holding a lock on the read's span (a
//! txn takes its revision after its locks applied, so only locks present
//! now can be below X). The read waits for those, and for an entry of the
//! leader's term to have applied (everything earlier terms committed).

use super::{PeerFsm, PendingKind};
use crate::error::{Error, Result};
use crate::proto::tesserapb::Span;
use crate::raftstore::msg::DoneCallback;
use crate::region::span;

/// A read waiting for its region's state at its revision to be complete.
pub(super) struct ReadAt {
    revision: u64,
    epoch_version: u64,
    /// The ask in flight when the read arrived.
    ask: Option<u64>,
    /// Cross-region txns holding a lock on the read's span when it arrived.
    locks: Vec<u64>,
    cb: DoneCallback,
}

impl PeerFsm {
    pub(super) fn on_read_at(&mut self, revision: u64, epoch_version: u64, read: Span, cb: DoneCallback) {
        if let Err(e) = self.check_reader(revision, epoch_version) {
            let _ = cb.send(Err(e));
            return;
        }
        let locks = self
            .locks
            .iter()
            .filter(|(_, spans)| spans.iter().any(|l| span::overlaps(l, &read)))
            .map(|(txn, _)| *txn)
            .collect();
        let ask = self.asks.in_flight();
        self.reads_at.push(ReadAt { revision, epoch_version, ask, locks, cb });
        self.serve_reads_at(&mut |cb| drop(cb.send(Ok(()))));
    }

    /// Whether this peer may serve a read at `revision` routed by region
    /// version `epoch_version`.
    fn check_reader(&self, revision: u64, epoch_version: u64) -> Result<()> {
        let region = self.region.id;
        if !self.can_evaluate() {
            return Err(Error::NotLeader { region });
        }
        if epoch_version != self.epoch_version() {
            return Err(Error::EpochNotMatch { region });
        }
        if revision < self.apply_state.compacted_revision {
            return Err(Error::Compacted);
        }
        Ok(())
    }

    /// Answers (through `answer`) every waiting read whose region state is
    /// complete, and refuses those this peer may no longer serve.
    pub(super) fn serve_reads_at(&mut self, answer: &mut dyn FnMut(DoneCallback)) {
        if self.reads_at.is_empty() {
            return;
        }
        let unapplied = self
            .pending
            .iter()
            .filter_map(|p| match p.kind {
                PendingKind::Write { revision, .. } => revision,
                _ => None,
            })
            .min();
        let asking = self.asks.in_flight();
        for read in std::mem::take(&mut self.reads_at) {
            if let Err(e) = self.check_reader(read.revision, read.epoch_version) {
                let _ = read.cb.send(Err(e));
                continue;
            }
            let complete = read_complete(&read, asking, unapplied, |txn| self.locks.contains_key(&txn));
            if complete {
                answer(read.cb);
            } else {
                self.reads_at.push(read);
            }
        }
    }

    /// No longer leader (or gone): waiting reads are refused.
    pub(super) fn drop_reads_at(&mut self, err: impl Fn() -> Error) {
        for read in self.reads_at.drain(..) {
            let _ = read.cb.send(Err(err()));
        }
    }
}

/// Whether the region's state at `read.revision` is complete: the ask in
/// flight when it arrived was answered (asks of a term are numbered in
/// order, one in flight at a time), no proposal at or below it is
/// unapplied (`unapplied`: the lowest revision of one), and every txn that
/// held a lock on its span has let go (`locked`).
fn read_complete(read: &ReadAt, asking: Option<u64>, unapplied: Option<u64>, locked: impl Fn(u64) -> bool) -> bool {
    let ask_answered = match (read.ask, asking) {
        (Some(then), Some(now)) => now > then,
        _ => true,
    };
    ask_answered && unapplied.is_none_or(|r| r > read.revision) && !read.locks.iter().any(|t| locked(*t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(revision: u64, ask: Option<u64>, locks: Vec<u64>) -> ReadAt {
        let (cb, _) = tokio::sync::oneshot::channel();
        ReadAt { revision, epoch_version: 1, ask, locks, cb }
    }

    #[test]
    fn a_read_waits_for_the_ask_in_flight_when_it_arrived() {
        let r = read(10, Some(4), vec![]);
        assert!(!read_complete(&r, Some(4), None, |_| false), "its answer may be at or below 10");
        assert!(read_complete(&r, Some(5), None, |_| false), "a later ask was sent after the read point");
        assert!(read_complete(&r, None, None, |_| false));
        assert!(read_complete(&read(10, None, vec![]), Some(9), None, |_| false), "sent after it arrived");
    }

    #[test]
    fn a_read_waits_for_proposals_at_or_below_its_revision() {
        let r = read(10, None, vec![]);
        assert!(!read_complete(&r, None, Some(10), |_| false));
        assert!(!read_complete(&r, None, Some(3), |_| false));
        assert!(read_complete(&r, None, Some(11), |_| false), "above it: not part of the state at 10");
    }

    #[test]
    fn a_read_waits_for_txns_locking_its_span_when_it_arrived() {
        let r = read(10, None, vec![7]);
        assert!(!read_complete(&r, None, None, |t| t == 7));
        assert!(read_complete(&r, None, None, |t| t == 8), "a lock taken later commits above 10");
    }
}
