//! The sequencer: one global revision for the whole store, and the
//! *resolved revision* below which nothing is in flight any more.
//!
//! A write registers its revision as in flight in the same step that takes
//! it, so no revision can appear below a resolved mark already published.
//! When the write is applied (or voided, if its proposal failed) it leaves
//! the in-flight set. `resolved` is then the smallest in-flight revision
//! minus one, or the last revision handed out when none is in flight.
//! A read at revision R waits for `resolved >= R`: every write at or below
//! R is then in the data (or never will be), so R is a consistent snapshot.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;

pub struct Sequencer {
    state: Mutex<State>,
    resolved: watch::Sender<u64>,
    /// Reads below this revision are refused; [`NEVER_COMPACTED`] at first
    /// (as in etcd, even revision 0 can be compacted once).
    compacted: AtomicI64,
    /// The highest revision this store may hand out: unlimited on a single
    /// store; in a cluster the high mark committed through the meta group
    /// (docs/cluster.md, "The high mark").
    limit: AtomicU64,
    /// The newest revision of a write acknowledged through this store.
    acknowledged: AtomicU64,
    /// The meta-group term in which this store became the leader store (0
    /// on a single store): every revision it hands out carries it, and
    /// regions refuse revisions of older terms once fenced
    /// (docs/cluster.md, "Revision fencing").
    term: AtomicU64,
}

/// Takes `revision` out of flight; the resolved revision then, if it was.
fn finish_locked(s: &mut State, revision: u64) -> Option<u64> {
    s.in_flight.remove(&revision).then(|| {
        s.owners.remove(&revision);
        s.resolved()
    })
}

/// The compacted revision of a store that was never compacted.
pub const NEVER_COMPACTED: i64 = -1;

#[derive(Default)]
struct State {
    /// The last revision handed out.
    last: u64,
    in_flight: BTreeSet<u64>,
    /// The region leader (region, term) each revision in flight was taken
    /// for (docs/cluster.md, "Region leaders on every store").
    owners: HashMap<u64, (u64, u64)>,
    /// Per region, the newest term this store applied an entry of: a leader
    /// of an older term can commit nothing more.
    terms: HashMap<u64, u64>,
    /// Per region, the last ask answered: (term, seq, first, count).
    asked: HashMap<u64, (u64, u64, u64, u64)>,
}

impl State {
    /// A leader of a term older than one applied here can commit nothing.
    fn check_term(&self, region: u64, term: u64) -> crate::error::Result<()> {
        match self.terms.get(&region) {
            Some(t) if *t > term => Err(crate::error::Error::NotLeader { region }),
            _ => Ok(()),
        }
    }

    fn resolved(&self) -> u64 {
        self.in_flight.first().map_or(self.last, |r| r - 1)
    }

    /// Takes out of flight every revision whose (revision, (region, term))
    /// matches; the resolved revision then, if any left. `why` names the
    /// cause in the log (target `tessera::revisions`, which the fault
    /// harness records).
    fn void_owned(&mut self, why: &str, region: u64, matches: impl Fn(u64, (u64, u64)) -> bool) -> Option<u64> {
        let mut void: Vec<u64> =
            self.owners.iter().filter(|(rev, o)| matches(**rev, **o)).map(|(rev, _)| *rev).collect();
        if void.is_empty() {
            return None;
        }
        void.sort_unstable();
        for rev in &void {
            self.owners.remove(rev);
            self.in_flight.remove(rev);
        }
        tracing::debug!(target: "tessera::revisions", region, ?void, "voided: {why}");
        Some(self.resolved())
    }
}

impl Sequencer {
    /// Starts after `last`, with `pending` (revisions in the Raft log not yet
    /// applied) in flight until they are applied.
    pub fn recover(last: u64, pending: impl IntoIterator<Item = u64>, compacted: i64) -> Sequencer {
        let state = State { last, in_flight: pending.into_iter().collect(), ..Default::default() };
        let (resolved, _) = watch::channel(state.resolved());
        Sequencer {
            state: Mutex::new(state),
            resolved,
            compacted: AtomicI64::new(compacted),
            limit: AtomicU64::new(u64::MAX),
            acknowledged: AtomicU64::new(0),
            term: AtomicU64::new(0),
        }
    }

    /// The highest revision this store may hand out.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Acquire)
    }

    /// A new high mark was committed (never lowers the limit).
    pub fn raise_limit(&self, mark: u64) {
        self.limit.fetch_max(mark, Ordering::AcqRel);
    }

    /// Limits a store of a cluster to `mark` (at open: the last applied mark).
    pub fn set_limit(&self, mark: u64) {
        self.limit.store(mark, Ordering::Release);
    }

    /// The meta-group term the revisions handed out here belong to.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    /// A store becomes the leader store in meta-group `term`: it continues
    /// after `last` (every revision at or below is applied or void), with
    /// `pending` (revisions of cross-region txns a recovery is about to
    /// finish) in flight.
    ///
    /// The term changes last: whoever sees the new term sees the restarted
    /// revisions (a read checks that its read point's term still holds).
    pub fn restart(&self, term: u64, last: u64, pending: impl IntoIterator<Item = u64>) {
        let resolved = {
            let mut s = self.state.lock();
            s.last = last;
            s.in_flight = pending.into_iter().collect();
            s.owners.clear();
            s.asked.clear();
            // Under the lock: `release` compares terms under it too.
            self.term.store(term, Ordering::Release);
            s.resolved()
        };
        self.resolved.send_replace(resolved);
    }

    pub fn compacted(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }

    /// History below `revision` is gone (the caller persisted that first).
    pub fn mark_compacted(&self, revision: i64) {
        self.compacted.fetch_max(revision, Ordering::AcqRel);
    }

    /// The revision a read asking for `requested` (<= 0: the current one)
    /// is served at, given the read's `current` revision; etcd's errors for
    /// a future or compacted revision.
    pub fn check_read(&self, requested: i64, current: u64) -> crate::error::Result<u64> {
        check_read(requested, current, self.compacted())
    }

    /// A revision another store's sequencer handed out: this store's last
    /// known revision is at least it.
    pub fn observe(&self, revision: u64) {
        let mut s = self.state.lock();
        s.last = s.last.max(revision);
    }

    /// Takes the next revision and registers it as in flight.
    pub fn next(&self) -> u64 {
        self.next_with_term().0
    }

    /// Takes the next revision, with the term it is handed out in.
    pub fn next_with_term(&self) -> (u64, u64) {
        let mut s = self.state.lock();
        s.last += 1;
        let rev = s.last;
        s.in_flight.insert(rev);
        (rev, self.term())
    }

    /// Takes the next revision for a write the leader of `region` in
    /// `term` evaluates on this store, registered as in flight until it is
    /// applied here, voided, or a newer term of the region applies here.
    /// Refused for a leader of a term older than one applied here, and past
    /// the high mark.
    /// Returns the revision with the term of this store's sequencer it is
    /// handed out in (the write carries it, and gives it back with it).
    pub fn take(&self, region: u64, term: u64) -> crate::error::Result<(u64, u64)> {
        let mut s = self.state.lock();
        s.check_term(region, term)?;
        let (first, _) = self.take_locked(&mut s, region, term, 1)?;
        Ok((first, self.term()))
    }

    /// Takes up to `count` contiguous revisions (fewer up to the high mark,
    /// at least one unless `count` is 0) for ask `seq` of the leader of
    /// `region` in `term` on another store; returns (first, how many).
    /// Asking again with the same number answers the same range; an older
    /// number of the same term is refused (its answer was given up on).
    pub fn take_range(&self, region: u64, term: u64, seq: u64, count: u64) -> crate::error::Result<(u64, u64)> {
        let mut s = self.state.lock();
        if let Some(&(t, q, first, n)) = s.asked.get(&region) {
            if (t, q) == (term, seq) {
                return Ok((first, n));
            }
            if t == term && seq < q {
                return Err(crate::error::Error::NotLeader { region });
            }
        }
        s.check_term(region, term)?;
        let (first, n) = if count == 0 { (0, 0) } else { self.take_locked(&mut s, region, term, count)? };
        s.asked.insert(region, (term, seq, first, n));
        Ok((first, n))
    }

    fn take_locked(&self, s: &mut State, region: u64, term: u64, count: u64) -> crate::error::Result<(u64, u64)> {
        let n = count.min(self.limit().saturating_sub(s.last));
        if n == 0 {
            // Past the committed high mark: wait for the next one.
            return Err(crate::error::Error::ProposalDropped { region });
        }
        let first = s.last + 1;
        s.last += n;
        for rev in first..first + n {
            s.in_flight.insert(rev);
            s.owners.insert(rev, (region, term));
        }
        Ok((first, n))
    }

    /// This store applied the first entry of `term` in `region`: every
    /// entry of an older term that will ever commit is applied, so the
    /// revisions older leaders took and did not get committed are void.
    pub fn term_started(&self, region: u64, term: u64) {
        let resolved = {
            let mut s = self.state.lock();
            let newest = s.terms.entry(region).or_insert(0);
            if *newest >= term {
                return;
            }
            *newest = term;
            s.void_owned("a newer term applied", region, |_, (r, t)| r == region && t < term)
        };
        if let Some(r) = resolved {
            self.publish(r);
        }
    }

    /// A snapshot brought `region`'s data up to `revision` here (u64::MAX:
    /// the region was merged away): the revisions taken for it at or below
    /// are applied or void (a region's revisions increase along its log),
    /// though none applied here one by one.
    pub fn restored(&self, region: u64, revision: u64) {
        let why = if revision == u64::MAX { "merged away" } else { "restored from a snapshot" };
        let resolved = self.state.lock().void_owned(why, region, |rev, (r, _)| r == region && rev <= revision);
        if let Some(r) = resolved {
            self.publish(r);
        }
    }

    /// The revision is applied (or will never be): it leaves the in-flight
    /// set. Whether it was in flight.
    pub fn finish(&self, revision: u64) -> bool {
        let resolved = finish_locked(&mut self.state.lock(), revision);
        self.published(resolved)
    }

    /// The revision handed out in leader-store `term` will never be used:
    /// it leaves the in-flight set if this sequencer still hands out that
    /// term's revisions. A restart since continued after every revision of
    /// the older term, and the same number may now be in flight for another
    /// write: giving that one back would resolve it before it applies (the
    /// watch gaps after a new leader store took over, seed 33008). Whether
    /// it was in flight.
    pub fn release(&self, revision: u64, term: u64) -> bool {
        let resolved = {
            let mut s = self.state.lock();
            if self.term() != term {
                tracing::debug!(target: "tessera::revisions", revision, term, "not given back: of another term");
                return false;
            }
            finish_locked(&mut s, revision)
        };
        self.published(resolved)
    }

    /// Publishes a resolved revision if there is one; whether there was.
    fn published(&self, resolved: Option<u64>) -> bool {
        resolved.map(|r| self.publish(r)).is_some()
    }

    fn publish(&self, resolved: u64) {
        self.resolved.send_if_modified(|r| {
            let moved = *r < resolved;
            if moved {
                *r = resolved;
            }
            moved
        });
    }

    /// Declares every revision handed out applied or void. Only for start-up,
    /// once recovery has applied every log and resolved every cross-region
    /// txn, before any request: the revisions of txn commits replayed from
    /// the log are finished by nobody else.
    pub fn settle(&self) {
        let resolved = {
            let mut s = self.state.lock();
            s.in_flight.clear();
            s.owners.clear();
            s.last
        };
        self.resolved.send_replace(resolved);
    }

    /// The last revision handed out: the newest revision any write can have
    /// been acknowledged with.
    pub fn last(&self) -> u64 {
        self.state.lock().last
    }

    /// A write at `revision` is being acknowledged to its client.
    pub fn acknowledge(&self, revision: u64) {
        self.acknowledged.fetch_max(revision, Ordering::AcqRel);
    }

    /// The revision a linearizable read on the leader store is served at:
    /// at or above every write acknowledged so far (every one passes the
    /// leader store's router), and at or above the resolved revision; the
    /// read waits until it is resolved. Writes still in flight and not
    /// acknowledged do not hold it up.
    pub fn read_point(&self) -> u64 {
        self.resolved().max(self.acknowledged.load(Ordering::Acquire))
    }

    /// Every revision at or below this is applied or void.
    pub fn resolved(&self) -> u64 {
        *self.resolved.borrow()
    }

    /// A receiver that sees every move of the resolved revision.
    pub fn subscribe_resolved(&self) -> watch::Receiver<u64> {
        self.resolved.subscribe()
    }

    /// Waits until `resolved() >= revision`.
    pub async fn wait_resolved(&self, revision: u64) {
        let mut rx = self.resolved.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|r| *r >= revision).await;
    }
}

/// The revision a read asking for `requested` (<= 0: the current one) is
/// served at, given the read's `current` revision and the `compacted`
/// one; etcd's errors for a future or compacted revision.
pub fn check_read(requested: i64, current: u64, compacted: i64) -> crate::error::Result<u64> {
    if requested <= 0 {
        return Ok(current);
    }
    if requested as u64 > current {
        return Err(crate::error::Error::FutureRevision);
    }
    if requested < compacted {
        return Err(crate::error::Error::Compacted);
    }
    Ok(requested as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_stops_below_the_oldest_in_flight_revision() {
        let s = Sequencer::recover(10, [9], NEVER_COMPACTED);
        assert_eq!(s.resolved(), 8);
        let a = s.next();
        let b = s.next();
        assert_eq!((a, b), (11, 12));
        s.finish(b);
        s.finish(9);
        assert_eq!(s.resolved(), 10);
        s.finish(a);
        assert_eq!(s.resolved(), 12);
        s.finish(a); // idempotent
        assert_eq!((s.resolved(), s.last()), (12, 12));
    }

    #[test]
    fn a_newer_term_voids_what_older_leaders_took() {
        let s = Sequencer::recover(10, [], NEVER_COMPACTED);
        let (a, _) = s.take_range(7, 2, 1, 1).unwrap();
        assert_eq!(s.take_range(7, 2, 1, 1).unwrap(), (a, 1), "the same ask gets the same revision");
        let (b, _) = s.take(8, 2).unwrap();
        assert_eq!((a, b, s.resolved()), (11, 12, 10));
        s.term_started(7, 3);
        assert_eq!(s.resolved(), 11, "region 7's term-2 revision is void");
        assert!(s.take_range(7, 2, 2, 1).is_err(), "a deposed leader takes nothing");
        s.finish(b);
        assert_eq!(s.resolved(), 12);
        s.set_limit(12);
        assert!(s.take(8, 2).is_err(), "nothing past the high mark");
    }

    #[test]
    fn a_revision_given_back_after_a_restart_leaves_the_new_terms_write_in_flight() {
        let s = Sequencer::recover(10, [], NEVER_COMPACTED);
        s.restart(1, 10, []);
        let (old, old_term) = s.take(7, 1).unwrap();
        assert_eq!((old, old_term), (11, 1));
        // A new leader store's term, continuing at the same place (it never
        // learnt of 11, which was never applied).
        s.restart(2, 10, []);
        let (new, new_term) = s.take(8, 1).unwrap();
        assert_eq!((new, new_term), (11, 2));
        assert!(!s.release(old, old_term), "term 1's 11 is not term 2's");
        assert_eq!(s.resolved(), 10, "term 2's 11 is still in flight");
        assert!(s.release(new, new_term));
        assert_eq!(s.resolved(), 11);
    }

    #[test]
    fn a_snapshot_resolves_the_revisions_it_covers() {
        let s = Sequencer::recover(10, [], NEVER_COMPACTED);
        let (a, n) = s.take_range(7, 2, 1, 3).unwrap();
        let (b, _) = s.take(8, 2).unwrap();
        assert_eq!((a, n, b), (11, 3, 14));
        s.restored(7, 12);
        assert_eq!(s.resolved(), 12, "11 and 12 came with the snapshot");
        s.restored(7, u64::MAX);
        assert_eq!(s.resolved(), 13, "region 8's 14 is still in flight");
        s.finish(b);
        assert_eq!(s.resolved(), 14);
    }

    #[test]
    fn an_ask_takes_a_contiguous_range_up_to_the_high_mark() {
        let s = Sequencer::recover(10, [], NEVER_COMPACTED);
        s.set_limit(30);
        assert_eq!(s.take_range(7, 1, 1, 8).unwrap(), (11, 8));
        assert_eq!(s.take(8, 1).unwrap(), (19, 0));
        assert_eq!(s.take_range(7, 1, 1, 3).unwrap(), (11, 8), "asked again: the same range");
        assert!(s.take_range(7, 1, 0, 1).is_err(), "an older ask of the term is refused");
        assert_eq!(s.take_range(7, 1, 2, 20).unwrap(), (20, 11), "cut at the high mark");
        assert!(s.take_range(7, 1, 3, 1).is_err(), "nothing past it");
        assert_eq!(s.take_range(9, 1, 1, 0).unwrap(), (0, 0), "an ask of nothing takes nothing");
        assert_eq!(s.resolved(), 10);
        for r in 11..=30 {
            s.finish(r);
        }
        assert_eq!(s.resolved(), 30);
    }

    #[tokio::test]
    async fn waiters_wake_when_resolved() {
        let s = std::sync::Arc::new(Sequencer::recover(0, [], NEVER_COMPACTED));
        let r = s.next();
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait_resolved(r).await }
        });
        s.finish(r);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }
}
