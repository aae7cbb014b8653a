//! Writes across regions: two-phase commit at one revision.
//!
//! The router coordinates. For a write whose spans cover several regions:
//!
//! 1. **Lock**: every region records a [`TxnLock`] on its part of the spans
//!    through its Raft log (all regions in parallel). The first region (by
//!    id) is the *primary*. A lock overlapping another txn's lock is refused
//!    (`Locked`): every lock taken is rolled back and the whole write retried
//!    after a random pause. Single-region writes overlapping a lock are
//!    refused the same way until it is released.
//! 2. **Evaluate**: once all locks applied, nothing else can change those
//!    spans, so the write is evaluated against the applied data of all
//!    regions: one consistent snapshot. If it changes nothing it takes no
//!    revision and the locks are rolled back.
//! 3. **Commit the primary**: the revision R from the sequencer (in flight
//!    from now on, so reads at or above R wait), and one command in the
//!    primary's log with its effects and the [`TxnRecord`] holding every
//!    other region's effects. Once it applies, the txn is committed.
//! 4. **Commit the others** in parallel; then R is finished in the sequencer
//!    and the client answered; then the primary forgets the record.
//!
//! Readers never see half a txn: R stays in flight until every region has
//! applied it, and reads wait for their revision to be resolved.
//! Recovery ([`Router::recover`]) runs at start, before any request, once
//! every region has applied its log: a lock whose txn has a record is
//! committed with the record's effects, any other lock rolled back.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::retry::Retry;
use super::table::{Piece, RoutingTable};
use super::{Router, SnapshotView};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::proto::tesserapb::raft_command::Txn;
use crate::proto::tesserapb::{Effect, RaftCommand, RegionEffects, Span, TxnCommit, TxnLock, TxnRecord};
use crate::raftstore::msg::WriteOutcome;
use crate::region::eval::{self, WriteRequest};
use crate::region::events;
use crate::region::mvcc::MvccReader;

/// One region taking part in a txn.
#[derive(Clone)]
struct Part {
    region: u64,
    epoch_version: u64,
    spans: Vec<Span>,
}

/// How long a committed txn's revision waits for this store to apply all
/// its changes before it is finished anyway.
const APPLIED_HERE_TIMEOUT: Duration = Duration::from_secs(60);

impl Router {
    /// Commits `req`, whose `pieces` lie in more than one region, atomically
    /// at one revision (one attempt: `Locked` and `TxnAborted` are retried by
    /// the caller).
    pub(super) async fn write_across(
        &self,
        req: &WriteRequest,
        table: &RoutingTable,
        pieces: &[Piece],
    ) -> Result<WriteOutcome> {
        let txn_id = self.txn_ids.fetch_add(1, Ordering::Relaxed);
        let mut parts: BTreeMap<u64, Part> = BTreeMap::new();
        for p in pieces {
            let part = parts.entry(p.region).or_insert_with(|| Part {
                region: p.region,
                epoch_version: p.epoch_version,
                spans: Vec::new(),
            });
            part.spans.push(Span { start: p.start.clone(), end: p.end.clone().unwrap_or_default() });
        }
        let parts: Vec<Part> = parts.into_values().collect();
        let primary = parts[0].region;
        let sequencer_term = self.store.sequencer.term();

        // 1. Lock.
        let locks = self.send_steps(parts.iter().map(|p| {
            let lock = TxnLock { txn_id, primary, spans: p.spans.clone() };
            (p, RaftCommand { leader_store_term: sequencer_term, ..step(Txn::Lock(lock)) })
        }));
        let mut refused = None;
        for answer in locks {
            match answer.await {
                Ok(true) => {}
                Ok(false) => refused = refused.or(Some(Error::TxnAborted)),
                Err(e) => refused = refused.or(Some(e)),
            }
        }
        if let Some(e) = refused {
            self.roll_back(txn_id, &parts).await?;
            return Err(e);
        }
        failpoint::hit("txn-after-lock");

        // 2. Evaluate against the locked spans, once every write before the
        // locks applied here too (their leaders may be on other stores).
        let sequencer = &self.store.sequencer;
        if tokio::time::timeout(self.request_timeout, sequencer.wait_resolved(sequencer.last())).await.is_err() {
            self.roll_back(txn_id, &parts).await?;
            return Err(Error::Timeout);
        }
        let mut taken = None;
        let evaluated = {
            let reader = MvccReader::new(&self.store.engine.db, self.store.engine.mvcc(), None);
            let view =
                SnapshotView { reader: &reader, revision: sequencer.last(), sequencer, lessor: &self.store.lessor };
            eval::evaluate(req, &view, &mut || {
                let (r, term) = sequencer.next_with_term();
                taken = Some((r, term));
                r
            })
        };
        if let Some((r, term)) = taken.filter(|(_, term)| *term != sequencer_term) {
            // The sequencer restarted in a newer term since the locks: they
            // carry the old one and would be fenced at commit.
            void(sequencer, r, term, "the leader store's term moved during the txn");
            self.roll_back(txn_id, &parts).await?;
            return Err(Error::NotLeader { region: self.store.meta_region });
        }
        // A lease revoked since the evaluation checked it (see Lessor::all_exist).
        let evaluated = evaluated.and_then(|ev| match self.store.lessor.all_exist(&ev.leases()) {
            true => Ok(ev),
            false => Err(Error::LeaseNotFound),
        });
        let ev = match evaluated {
            Ok(ev) if ev.revision.is_some() => ev,
            other => {
                if let Some((r, term)) = taken {
                    void(sequencer, r, term, "the txn changes nothing");
                }
                self.roll_back(txn_id, &parts).await?;
                return other.map(|ev| WriteOutcome { revision: None, response: ev.response });
            }
        };
        let revision = ev.revision.expect("checked");
        let changes = ev.effects.len();
        let mut effects: BTreeMap<u64, Vec<Effect>> = parts.iter().map(|p| (p.region, Vec::new())).collect();
        for e in ev.effects {
            let region = table.locate(&e.key).map(|r| r.id);
            match region.and_then(|r| effects.get_mut(&r)) {
                Some(list) => list.push(e),
                None => {
                    void(sequencer, revision, sequencer_term, "a txn effect outside its regions");
                    self.roll_back(txn_id, &parts).await?;
                    return Err(Error::Storage("a txn effect lies outside its locked regions".into()));
                }
            }
        }

        // 3. Commit the primary: the point of no return.
        let secondaries: Vec<RegionEffects> = effects
            .iter()
            .filter(|(r, _)| **r != primary)
            .map(|(r, e)| RegionEffects { region_id: *r, effects: e.clone() })
            .collect();
        let record = TxnRecord { txn_id, primary, revision, secondaries };
        let commit = RaftCommand {
            revision,
            effects: effects.remove(&primary).unwrap_or_default(),
            txn: Some(Txn::Commit(TxnCommit { txn_id, record: Some(record) })),
            leader_store_term: sequencer_term,
            ..Default::default()
        };
        if !self.until_decided(&parts[0], &commit).await? {
            // The lock was gone: nothing was written anywhere.
            void(sequencer, revision, sequencer_term, "the txn's primary lock was gone");
            self.roll_back(txn_id, &parts).await?;
            return Err(Error::TxnAborted);
        }
        failpoint::hit("txn-after-primary");

        // 4. Commit the others, then forget the record.
        let others = &parts[1..];
        let commits: Vec<RaftCommand> = others
            .iter()
            .map(|p| RaftCommand {
                revision,
                effects: effects.remove(&p.region).unwrap_or_default(),
                txn: Some(Txn::Commit(TxnCommit { txn_id, record: None })),
                leader_store_term: sequencer_term,
                ..Default::default()
            })
            .collect();
        let answers = self.send_steps(others.iter().zip(commits.iter().cloned()));
        for ((part, cmd), answer) in others.iter().zip(&commits).zip(answers) {
            if answer.await.is_err() {
                self.until_decided(part, cmd).await?;
            }
            failpoint::hit("txn-after-secondary");
        }
        self.finish_when_applied_here(revision, sequencer_term, changes);
        failpoint::hit("txn-before-forget");
        drop(self.send_steps([(&parts[0], step(Txn::Forget(txn_id)))]));
        Ok(WriteOutcome { revision: Some(revision), response: ev.response })
    }

    /// Finishes a committed txn's revision once this store's replicas
    /// applied all its `changes` (the regions' leaders, maybe on other
    /// stores, answered once they applied them themselves): watches and
    /// reads here must not pass it before. Bounded: past a minute it is
    /// finished anyway, with an error logged.
    fn finish_when_applied_here(&self, revision: u64, term: u64, changes: usize) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + APPLIED_HERE_TIMEOUT;
            loop {
                let engine = &store.engine;
                match events::changes(&engine.db, engine.events(), revision, revision, changes) {
                    Ok(seen) if seen.len() >= changes => break,
                    Ok(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(1)).await,
                    Ok(seen) => {
                        tracing::error!(revision, changes, applied = seen.len(), "a txn's changes did not apply here");
                        break;
                    }
                    Err(e) => {
                        tracing::error!(revision, "reading the event index: {e}");
                        break;
                    }
                }
            }
            store.sequencer.release(revision, term);
        });
    }

    /// Sends each step to its region at once; the answers can be awaited in
    /// any order while all regions work in parallel.
    fn send_steps<'a>(
        &self,
        steps: impl IntoIterator<Item = (&'a Part, RaftCommand)>,
    ) -> Vec<impl std::future::Future<Output = Result<bool>>> {
        steps
            .into_iter()
            .map(|(part, cmd)| {
                // Spawned: it runs (to its region's leader, wherever that
                // is) even if the answer is never awaited.
                let client = self.client.clone();
                let (region, epoch_version) = (part.region, part.epoch_version);
                let sent = tokio::spawn(async move { client.propose(region, epoch_version, cmd).await });
                async move { sent.await.map_err(|_| Error::Stopped)? }
            })
            .collect()
    }

    /// Runs a step that must reach a decision (a commit, a rollback):
    /// retried for as long as its errors are retryable, without a deadline.
    ///
    /// A region holding a lock cannot split or merge, so a rollback that
    /// finds its region changed in shape (or merged away) finds no lock of
    /// its txn there: it is done. A forget is not tied to its region's keys:
    /// it goes to the region's current shape, or to any region.
    async fn until_decided(&self, part: &Part, cmd: &RaftCommand) -> Result<bool> {
        let mut part = part.clone();
        loop {
            match self.client.propose(part.region, part.epoch_version, cmd.clone()).await {
                Err(Error::EpochNotMatch { .. } | Error::RegionNotFound)
                    if matches!(cmd.txn, Some(Txn::Rollback(_))) =>
                {
                    return Ok(false);
                }
                Err(Error::EpochNotMatch { .. } | Error::RegionNotFound) if matches!(cmd.txn, Some(Txn::Forget(_))) => {
                    part = self.whole_part(part.region).or_else(|_| self.any_part())?;
                }
                Err(e) => {
                    tracing::debug!(region = part.region, "a txn step: {e}");
                    Retry::forever().after(e).await?;
                }
                done => return done,
            }
        }
    }

    /// Releases `txn_id`'s locks in every part (a part without one is a no-op).
    async fn roll_back(&self, txn_id: u64, parts: &[Part]) -> Result<()> {
        let cmd = step(Txn::Rollback(txn_id));
        let answers = self.send_steps(parts.iter().map(|p| (p, cmd.clone())));
        for (part, answer) in parts.iter().zip(answers) {
            if answer.await.is_err() {
                self.until_decided(part, &cmd).await?;
            }
        }
        Ok(())
    }

    /// `region` as a part of a txn being recovered (its current epoch; the
    /// spans are not needed to commit, roll back or forget).
    fn whole_part(&self, region: u64) -> Result<Part> {
        let peer = self.store.peer(region)?;
        Ok(Part { region, epoch_version: peer.region.epoch.map_or(0, |e| e.version), spans: Vec::new() })
    }

    /// Some user region as a whole part (for steps any region may apply).
    fn any_part(&self) -> Result<Part> {
        let region = self.store.regions().first().map(|r| r.id).ok_or(Error::RegionNotFound)?;
        self.whole_part(region)
    }

    /// Resolves every cross-region txn a crash left behind: commits the
    /// locks of txns whose primary recorded a commit, rolls back the rest;
    /// then deletes the keys of leases whose revoke a crash interrupted.
    /// Call once at start, after every region leads and has applied its log
    /// and before serving. Returns the number of locks resolved.
    pub async fn recover(&self) -> Result<usize> {
        self.recover_merges().await?;
        let (locks, records) = self.store.txn_state()?;
        let records: HashMap<u64, TxnRecord> = records.into_iter().map(|r| (r.txn_id, r)).collect();
        let resolved = locks.len();
        for (region, lock) in locks {
            let part = self.whole_part(region)?;
            let cmd = match records.get(&lock.txn_id) {
                Some(record) => RaftCommand {
                    revision: record.revision,
                    effects: record
                        .secondaries
                        .iter()
                        .find(|s| s.region_id == region)
                        .map(|s| s.effects.clone())
                        .unwrap_or_default(),
                    txn: Some(Txn::Commit(TxnCommit { txn_id: lock.txn_id, record: None })),
                    leader_store_term: self.store.sequencer.term(),
                    ..Default::default()
                },
                None => step(Txn::Rollback(lock.txn_id)),
            };
            let committed = matches!(cmd.txn, Some(Txn::Commit(_)));
            self.until_decided(&part, &cmd).await?;
            tracing::info!(region, txn = lock.txn_id, committed, "recovered a cross-region txn lock");
        }
        for record in records.values() {
            let part = self.whole_part(record.primary).or_else(|_| self.any_part())?;
            self.until_decided(&part, &step(Txn::Forget(record.txn_id))).await?;
            // Rolled forward in every region (their leaders are here while
            // a leader store activates): the revision the sequencer's
            // restart put in flight for it is resolved. Only its: writes
            // already take revisions (the fault harness's watch gaps, seeds
            // 20017, 21013 and 30020, came from declaring them all resolved
            // here).
            self.store.sequencer.finish(record.revision);
        }
        self.delete_orphaned_lease_keys().await?;
        Ok(resolved)
    }
}

/// A txn's revision, handed out in `term`, that will never be written
/// leaves the in-flight set (logged as the fault harness's members log
/// every such void).
fn void(sequencer: &crate::sequencer::Sequencer, revision: u64, term: u64, why: &str) {
    tracing::debug!(target: "tessera::revisions", revision, "voided: {why}");
    sequencer.release(revision, term);
}

fn step(txn: Txn) -> RaftCommand {
    RaftCommand { txn: Some(txn), ..Default::default() }
}
