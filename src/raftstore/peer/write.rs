//! A region leader's writes: evaluation, the revision, the proposal
//! (docs/cluster.md, "Region leaders on every store").
//!
//! On the leader store a write takes its revision from the store's own
//! sequencer while it is evaluated. A leader on another store asks the
//! leader store's sequencer for them: its writes wait in a queue, the first
//! is evaluated once to learn whether it changes anything, and if it does
//! the leader asks for a range of revisions for it and the plain puts
//! queued right after it (each needs one whatever the state), and
//! evaluates them again with the range when the answer comes (nothing else
//! changes the region's state meanwhile: only this leader proposes). One
//! ask at a time per region, in order, so a region's revisions increase
//! along its log; the store's revision client carries every region's asks
//! in one request (raftstore/revisions.rs).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use prost::Message as _;

use super::{PeerFsm, PeerView, Pending, PendingKind};
use crate::error::{Error, Result};
use crate::metrics::METRICS;
use crate::proto::tesserapb::{RaftCommand, RevisionAsk};
use crate::raftstore::msg::{WriteCallback, WriteOutcome};
use crate::raftstore::revisions::{Grant, SEVERAL_ROUTERS};
use crate::region::eval::{self, Evaluation, WriteRequest};
use crate::region::mvcc::MvccReader;
use crate::region::span;

struct Queued {
    req: WriteRequest,
    epoch_version: u64,
    /// The store whose router sent the write.
    router: u64,
    cb: WriteCallback,
}

/// A leader's asks for revisions from the leader store.
#[derive(Default)]
pub(super) struct Asks {
    /// Writes waiting for a revision, oldest first.
    queue: VecDeque<Queued>,
    /// The ask in flight: its number, and how many writes at the head of
    /// the queue it is for (only writes queued before it was sent may use
    /// its revisions: they were taken after every write acknowledged before
    /// those writes started).
    asking: Option<(u64, usize)>,
    /// The last ask number used in this term.
    seq: u64,
    /// An ask whose answer never came: its number is asked again before a
    /// new one (the leader store answers it with the same range), and the
    /// revisions are given back, never used: they were taken before writes
    /// acknowledged since, which a write now must come after.
    unanswered: Option<u64>,
    /// The ask in flight asks again for an unanswered one.
    reclaiming: bool,
    /// An ask for several writes was refused for a lease gone: the next
    /// asks for one write, so that only a write attaching to it fails.
    single: bool,
}

impl Asks {
    /// The number of the ask in flight.
    pub(super) fn in_flight(&self) -> Option<u64> {
        self.asking.map(|(seq, _)| seq)
    }
}

/// The most writes one ask is for.
const MAX_WRITES_PER_ASK: usize = 128;

impl PeerFsm {
    pub(super) fn on_write(&mut self, req: WriteRequest, epoch_version: u64, router: u64, cb: WriteCallback) {
        if let Err(e) = self.check_write(&req, epoch_version) {
            let _ = cb.send(Err(e));
            return;
        }
        if self.asks.queue.is_empty() && self.store.evaluating.load(Ordering::Acquire) {
            self.write_here(req, router, cb);
            return;
        }
        self.asks.queue.push_back(Queued { req, epoch_version, router, cb });
        self.drain_asks();
    }

    /// Whether this peer may take `req` now.
    fn check_write(&self, req: &WriteRequest, epoch_version: u64) -> Result<()> {
        let region = self.region.id;
        self.check_proposer(epoch_version)?;
        if !self.locks.is_empty() && span::write_spans(req).iter().any(|s| self.locked(s, None)) {
            return Err(Error::Locked { region });
        }
        Ok(())
    }

    /// Evaluates and proposes a write with a revision from this (the
    /// leader) store's own sequencer. A write another store's router sent
    /// (a former leader store finishing a write it accepted) will be
    /// acknowledged there: its revision counts as acknowledged here at
    /// once, so that no read here answers below it.
    fn write_here(&mut self, req: WriteRequest, router: u64, cb: WriteCallback) {
        let (region, term, seq) = (self.region.id, self.raft.raft.term, self.sequencer.clone());
        // The sequencer's term the revision is handed out in (if none is
        // taken, nothing carries it).
        let mut store_term = seq.term();
        let (mut result, taken) = self.evaluate(&req, || {
            seq.take(region, term).map(|(r, t)| {
                store_term = t;
                r
            })
        });
        if let Some(r) = taken.filter(|_| router != self.store.store_id) {
            self.sequencer.acknowledge(r);
        }
        if result.as_ref().is_ok_and(|ev| !self.store.lessor.all_exist(&ev.leases())) {
            // Revoked since the evaluation checked it (see Lessor::all_exist).
            result = Err(Error::LeaseNotFound);
        }
        self.propose_write(result, taken, store_term, cb);
    }

    /// Evaluates `req` against the applied state plus the overlay; `take`
    /// gives the revision if it changes anything. Returns the revision
    /// taken too, even if the evaluation then failed: the caller gives
    /// back a real one it does not use (never a dry run's guess).
    fn evaluate(&self, req: &WriteRequest, take: impl FnOnce() -> Result<u64>) -> (Result<Evaluation>, Option<u64>) {
        let mut take = Some(take);
        let (mut taken, mut refused) = (None, None);
        let result = {
            let view = PeerView {
                reader: MvccReader::new(&self.engine.db, self.engine.mvcc(), None),
                overlay: &self.overlay,
                sequencer: &self.sequencer,
                lessor: &self.store.lessor,
            };
            eval::evaluate(req, &view, &mut || match take.take().map(|f| f()) {
                Some(Ok(r)) => {
                    taken = Some(r);
                    r
                }
                Some(Err(e)) => {
                    refused = Some(e);
                    0
                }
                None => unreachable!("a write takes one revision"),
            })
        };
        match refused {
            Some(e) => (Err(e), None),
            None => (result, taken),
        }
    }

    /// Proposes an evaluated write (or answers one that changed nothing);
    /// its revision was handed out by the leader store of `leader_store_term`.
    fn propose_write(
        &mut self,
        result: Result<Evaluation>,
        taken: Option<u64>,
        leader_store_term: u64,
        cb: WriteCallback,
    ) {
        let region = self.region.id;
        let ev = match result {
            Ok(ev) => ev,
            Err(e) => {
                if let Some(r) = taken {
                    self.store.void(r, leader_store_term);
                }
                let _ = cb.send(Err(e));
                return;
            }
        };
        let term = self.raft.raft.term;
        if ev.effects.is_empty() {
            if let Some(r) = taken {
                self.store.void(r, leader_store_term);
            }
            if self.pending.is_empty() {
                let _ = cb.send(Ok(WriteOutcome { revision: None, response: ev.response }));
            } else {
                let index = self.raft.raft.raft_log.last_index();
                self.pending.push_back(Pending { index, term, kind: PendingKind::Wait { response: ev.response, cb } });
            }
            return;
        }
        let revision = taken.expect("effects take a revision");
        if leader_store_term < self.fence_proposed.max(self.apply_state.fence_term) {
            // Fenced at apply for sure, and the writes proposed after it
            // would have been evaluated on top of it (a version counted
            // that never was: the fault harness, seed 30036).
            self.store.void(revision, leader_store_term);
            let _ = cb.send(Err(Error::Fenced));
            return;
        }
        self.fence_proposed = leader_store_term;
        let cmd = RaftCommand {
            region_id: region,
            epoch: self.region.epoch,
            revision,
            effects: ev.effects,
            leader_store_term,
            ..Default::default()
        };
        let data = cmd.encode_to_vec();
        if let Err(e) = self.raft.propose(vec![], data) {
            tracing::debug!(region, "proposal dropped: {e}");
            self.store.void(revision, leader_store_term);
            crate::metrics::etcd::ETCD.proposals_failed.inc();
            let _ = cb.send(Err(Error::ProposalDropped { region }));
            return;
        }
        METRICS.proposals.inc();
        let index = self.raft.raft.raft_log.last_index();
        let mut keys = Vec::with_capacity(cmd.effects.len());
        for e in cmd.effects {
            self.overlay.insert(e.key.clone(), (revision, e.kv));
            keys.push(e.key);
        }
        self.pending.push_back(Pending {
            index,
            term,
            kind: PendingKind::Write { revision: Some(revision), keys, response: ev.response, cb },
        });
    }

    /// Works through the queue until a write needs a revision (then asks
    /// for it and the writes after it that surely need one) or the queue
    /// is empty.
    fn drain_asks(&mut self) {
        while self.asks.asking.is_none() {
            let Some(q) = self.asks.queue.pop_front() else { return };
            if let Err(e) = self.check_write(&q.req, q.epoch_version) {
                let _ = q.cb.send(Err(e));
                continue;
            }
            if self.store.evaluating.load(Ordering::Acquire) {
                // This store became the leader store meanwhile.
                self.write_here(q.req, q.router, q.cb);
                continue;
            }
            // A dry run: its guess is no revision anyone handed out.
            let guess = self.sequencer.last() + 1;
            let (result, _) = self.evaluate(&q.req, || Ok(guess));
            match result {
                Ok(ev) if ev.revision.is_some() => {
                    self.asks.queue.push_front(q);
                    let (count, router, leases) = self.writes_to_ask_for(ev.leases());
                    self.ask(router, leases, count);
                }
                other => self.propose_write(other, None, 0, q.cb),
            }
        }
    }

    /// How many writes at the head of the queue to ask revisions for (the
    /// first needs one; the plain puts right after it need one each
    /// whatever the state), the router they came from
    /// ([`SEVERAL_ROUTERS`] if not all from one) and the leases they
    /// attach to.
    fn writes_to_ask_for(&self, leases: Vec<i64>) -> (usize, u64, Vec<i64>) {
        let queued = self.asks.queue.iter().map(|q| (&q.req, q.router));
        ask_batch(queued, if self.asks.single { 1 } else { MAX_WRITES_PER_ASK }, leases)
    }

    /// Asks for `count` revisions for writes `router` sent (0: for no
    /// write), attaching keys to `leases`; or, if an ask went unanswered,
    /// asks it again for nothing (its range, if it was taken, comes back to
    /// be given back).
    fn ask(&mut self, router: u64, leases: Vec<i64>, count: usize) {
        let (seq, reclaiming) = match self.asks.unanswered.take() {
            Some(seq) => (seq, true),
            None => {
                self.asks.seq += 1;
                (self.asks.seq, false)
            }
        };
        let count = if reclaiming { 0 } else { count };
        self.asks.asking = Some((seq, count));
        self.asks.reclaiming = reclaiming;
        self.store.ask_revisions(RevisionAsk {
            region_id: self.region.id,
            term: self.raft.raft.term,
            seq,
            count: count as u32,
            router_store: router,
            leases,
        });
    }

    /// The leader store's answer to ask `seq` of `term`.
    pub(super) fn on_revision(&mut self, term: u64, seq: u64, result: Result<Grant>) {
        let asked = match self.asks.asking {
            Some((s, n)) if s == seq && term == self.raft.raft.term && self.is_leader() => n,
            _ => {
                if let Ok(g) = result {
                    self.void_grant(g.first, g);
                }
                return;
            }
        };
        self.asks.asking = None;
        match result {
            // Given back; the queue's first write asks anew (below).
            Ok(g) if self.asks.reclaiming => self.void_grant(g.first, g),
            Ok(g) => {
                self.asks.single = false;
                if g.count > 0 {
                    self.sequencer.observe(g.first + g.count - 1);
                }
                self.use_grant(g, asked);
            }
            // A lease one of the writes attaches to was revoked; the leader
            // store voided the range.
            Err(Error::LeaseNotFound) if asked > 1 => self.asks.single = true,
            Err(Error::LeaseNotFound) => {
                self.asks.single = false;
                if let Some(q) = self.asks.queue.pop_front() {
                    let _ = q.cb.send(Err(Error::LeaseNotFound));
                }
            }
            Err(e) => {
                self.asks.unanswered = Some(seq);
                if let Some(q) = self.asks.queue.pop_front() {
                    let _ = q.cb.send(Err(e));
                }
            }
        }
        self.drain_asks();
        // Reads that waited for this answer (its writes are proposed now).
        self.serve_reads_at(&mut |cb| drop(cb.send(Ok(()))));
    }

    /// Hands the grant's revisions, in order, to the `asked` writes at the
    /// head of the queue (evaluated again, each after the last's proposal);
    /// a write that fails or changes nothing leaves its revision to the
    /// next. Revisions left over are given back; writes left over ask anew.
    fn use_grant(&mut self, g: Grant, asked: usize) {
        let mut next = g.first;
        for _ in 0..asked {
            if next == g.first + g.count {
                break;
            }
            let Some(q) = self.asks.queue.pop_front() else { break };
            if let Err(e) = self.check_write(&q.req, q.epoch_version) {
                let _ = q.cb.send(Err(e));
                continue;
            }
            match self.evaluate(&q.req, || Ok(next)) {
                (Err(e), _) => {
                    let _ = q.cb.send(Err(e));
                }
                (ok, taken) => {
                    next += taken.map_or(0, |_| 1);
                    self.propose_write(ok, taken, g.term, q.cb);
                }
            }
        }
        self.void_grant(next, g);
    }

    /// Gives back the grant's revisions from `from` on.
    fn void_grant(&self, from: u64, g: Grant) {
        for r in from..g.first + g.count {
            self.store.void(r, g.term);
        }
    }

    /// On a tick: an ask whose answer was lost is asked again, so that the
    /// revision the leader store may have taken for it is given back (also
    /// done before the next write's own ask).
    pub(super) fn reclaim_ask(&mut self) {
        if self.asks.unanswered.is_some() && self.asks.asking.is_none() && self.asks.queue.is_empty() {
            if self.store.evaluating.load(Ordering::Acquire) {
                self.asks.unanswered = None;
            } else {
                self.ask(0, Vec::new(), 0);
            }
        }
    }

    /// No longer leader (or gone): queued writes are refused, asks forgotten
    /// (the leader store voids what they took once a newer term applies).
    pub(super) fn drop_asks(&mut self, err: impl Fn() -> Error) {
        for q in std::mem::take(&mut self.asks).queue {
            let _ = q.cb.send(Err(err()));
        }
    }
}

/// The writes one ask is for, from the head of `queued` (`(write, router)`,
/// the first known to need a revision, its leases in `leases`): it and the
/// plain puts right after it, whichever router sent them, at most `max`.
/// Returns their count, their router ([`SEVERAL_ROUTERS`] if not all from
/// one) and every lease they attach keys to.
fn ask_batch<'a>(
    mut queued: impl Iterator<Item = (&'a WriteRequest, u64)>,
    max: usize,
    mut leases: Vec<i64>,
) -> (usize, u64, Vec<i64>) {
    let mut router = queued.next().map_or(0, |(_, r)| r);
    let mut count = 1;
    for (req, from) in queued.take(max.saturating_sub(1)) {
        let WriteRequest::Put(p) = req else { break };
        if p.ignore_value || p.ignore_lease {
            break;
        }
        leases.extend((p.lease != 0).then_some(p.lease));
        count += 1;
        if from != router {
            router = SEVERAL_ROUTERS;
        }
    }
    leases.sort_unstable();
    leases.dedup();
    (count, router, leases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest};

    fn put(lease: i64) -> WriteRequest {
        WriteRequest::Put(PutRequest { key: b"k".to_vec(), lease, ..Default::default() })
    }

    #[test]
    fn puts_from_several_routers_share_one_ask() {
        let delete = WriteRequest::DeleteRange(DeleteRangeRequest { key: b"k".to_vec(), ..Default::default() });
        let queue = [(put(0), 1), (put(7), 2), (put(7), 1), (delete, 1), (put(0), 1)];
        let queued = || queue.iter().map(|(w, r)| (w, *r));
        // The first three: the delete ends the run; two routers in it.
        assert_eq!(ask_batch(queued(), 128, vec![]), (3, SEVERAL_ROUTERS, vec![7]));
        assert_eq!(ask_batch(queued(), 1, vec![3]), (1, 1, vec![3]), "one write alone keeps its router");
        let one_router = [(put(0), 2), (put(0), 2)];
        assert_eq!(ask_batch(one_router.iter().map(|(w, r)| (w, *r)), 128, vec![]), (2, 2, vec![]));
    }

    #[test]
    fn a_put_that_may_change_nothing_ends_the_batch() {
        let ignore = WriteRequest::Put(PutRequest { key: b"k".to_vec(), ignore_value: true, ..Default::default() });
        let queue = [(put(0), 1), (ignore, 1), (put(0), 1)];
        assert_eq!(ask_batch(queue.iter().map(|(w, r)| (w, *r)), 128, vec![]), (1, 1, vec![]));
    }
}
