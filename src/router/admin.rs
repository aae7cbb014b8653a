//! Region administration through the router: list regions, split one at a
//! key (or its middle), merge two neighbours, move a leader. Every step goes
//! through the regions' Raft logs (src/raftstore/peer/admin.rs applies
//! them); clients keep working meanwhile: requests routed by an old epoch
//! are refused by the region and retried here on the new routing table.
//!
//! Merge, of `right` into `left`:
//! 1. prepare through right's log: right takes no more writes (its epoch
//!    bumps, it refuses everything but a rollback);
//! 2. once every peer of right applied the prepare (every store: a target
//!    peer commits only a source its own store has prepared), commit
//!    through left's log, naming right as prepared: left takes over
//!    right's range, right's peer and Raft state go;
//! 3. if right's peers do not catch up in time, or the commit cannot happen
//!    before the deadline (then only after an empty entry of left's log
//!    applied, so that a commit in flight has applied or never will), roll
//!    back through right's log: it serves again (epoch bumped once more).
//!    A restart rolls back any merge it finds prepared and not committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::proto::tesserapb::merge_command::Step;
use crate::proto::tesserapb::{MergeCommand, RaftCommand, Region, RegionInfo, SplitCommand};
use crate::region::mvcc::MvccReader;

use super::retry::Retry;
use super::Router;

/// Pause between attempts of an admin step that found its region busy.
const BUSY_BACKOFF: Duration = Duration::from_millis(20);

/// How long a merge waits for every peer of its source to apply the
/// prepare before it rolls back (a store down or cut off).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(3);

fn version(region: &Region) -> u64 {
    region.epoch.as_ref().map_or(0, |e| e.version)
}

fn merge(step: Step) -> RaftCommand {
    RaftCommand { merge: Some(MergeCommand { step: Some(step) }), ..Default::default() }
}

/// Live keys and their bytes (key + value) in a region.
#[derive(Debug, Default, Clone, Copy)]
pub struct RegionStats {
    pub keys: u64,
    pub bytes: u64,
}

impl Router {
    /// A user region by id, as this store has it now.
    fn admin_region(&self, id: u64) -> Result<Region> {
        match self.store.peer(id) {
            Ok(p) if !p.region.meta => Ok((*p.region).clone()),
            _ => Err(Error::NoSuchRegion { region: id }),
        }
    }

    /// Runs `f` on a reader of the store's current data, off the async
    /// workers (it may scan a whole region).
    pub(super) async fn scan_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&MvccReader) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let engine = self.store.engine.clone();
        tokio::task::spawn_blocking(move || f(&MvccReader::new(&engine.db, engine.mvcc(), None)))
            .await
            .map_err(|e| Error::Storage(format!("scan task: {e}")))?
    }

    /// Every user region with its leader, lease and live data (counted in
    /// one blocking task for all regions: a store may have 100,000).
    pub async fn regions_info(&self) -> Result<Vec<RegionInfo>> {
        let regions = self.store.regions();
        let scanned = regions.clone();
        let stats = self
            .scan_blocking(move |reader| {
                scanned.iter().map(|r| region_stats(reader, r, u64::MAX, u64::MAX)).collect::<Result<Vec<_>>>()
            })
            .await?;
        let mut out = Vec::with_capacity(regions.len());
        for (region, stats) in regions.into_iter().zip(stats) {
            // Merged away since the list was taken: not a region any more.
            let Ok(peer) = self.store.peer(region.id) else { continue };
            out.push(RegionInfo {
                region: Some(region),
                leader_store: peer.shared.leader.load(std::sync::atomic::Ordering::Acquire),
                lease_valid: peer.shared.lease.is_valid(),
                keys: stats.keys,
                bytes: stats.bytes,
            });
        }
        Ok(out)
    }

    /// Splits the region owning `key` at `key`, or (no key) region `region`
    /// at its middle key. Returns the left and right parts.
    pub async fn split(&self, key: Option<Vec<u8>>, region: Option<u64>) -> Result<(Region, Region)> {
        let _admin = self.admin_lock.lock().await;
        let key = match (key, region) {
            (Some(k), _) => k,
            (None, Some(id)) => {
                let r = self.admin_region(id)?;
                self.scan_blocking(move |reader| middle_key(reader, &r)).await?
            }
            (None, None) => return Err(Error::SplitWhere),
        };
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let owner = self.table().locate(&key).cloned().ok_or(Error::RegionNotFound);
            let attempt = match owner {
                Ok(owner) => {
                    if owner.start_key == key || region.is_some_and(|id| id != owner.id) {
                        let region = region.unwrap_or(owner.id);
                        return Err(Error::KeyOutsideRegion { key: String::from_utf8_lossy(&key).into(), region });
                    }
                    if let Err(e) = self.client.gather(owner.id).await {
                        self.admin_backoff(Err(e), deadline).await?;
                        continue;
                    }
                    let new_region_id = self.store.alloc_region_ids(1)?[0];
                    let cmd = RaftCommand {
                        split: Some(SplitCommand { split_key: key.clone(), new_region_id, ..Default::default() }),
                        ..Default::default()
                    };
                    match self.propose(owner.id, version(&owner), cmd).await {
                        Ok(true) => return Ok((self.admin_region(owner.id)?, self.admin_region(new_region_id)?)),
                        Ok(false) => Err(Error::RegionBusy { region: owner.id }),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            self.admin_backoff(attempt, deadline).await?;
        }
    }

    /// After a failed attempt of an admin step: the error if it is final
    /// (or the deadline passed), else a pause before the next attempt.
    pub(super) async fn admin_backoff(&self, attempt: Result<()>, deadline: Instant) -> Result<()> {
        match attempt {
            Err(e) => Retry::until(deadline).pausing(BUSY_BACKOFF).on_busy().after(e).await,
            done => done,
        }
    }

    /// Merges `right` into its left neighbour `left`; returns the merged
    /// region (left's id).
    pub async fn merge(self: &Arc<Self>, left: u64, right: u64) -> Result<Region> {
        self.to_completion(move |router| async move { router.merge_steps(left, right).await }).await
    }

    /// [`Self::merge`] in the caller's task (one that runs to its end).
    pub(super) async fn merge_steps(&self, left: u64, right: u64) -> Result<Region> {
        let _admin = self.admin_lock.lock().await;
        let deadline = Instant::now() + self.request_timeout;
        self.client.gather(left).await?;
        self.client.gather(right).await?;
        loop {
            let (l, r) = (self.admin_region(left)?, self.admin_region(right)?);
            if left == right || l.end_key.is_empty() || l.end_key != r.start_key {
                return Err(Error::NotAdjacent { left, right });
            }
            // Not bounded: a prepare whose outcome is unknown must be waited
            // for (a rollback proposed meanwhile would carry a stale epoch).
            let attempt = match self.client.propose(right, version(&r), merge(Step::Prepare(left))).await {
                Ok(true) => break,
                Ok(false) => Err(Error::RegionBusy { region: right }),
                Err(e) => Err(e),
            };
            self.admin_backoff(attempt, deadline).await?;
        }
        // Every store's target peer commits only a source its store has
        // prepared: every source peer must have applied the prepare first.
        if let Err(e) = self.wait_caught_up(right, deadline.min(Instant::now() + CATCH_UP_TIMEOUT)).await {
            self.rollback_merge(right).await?;
            return Err(e);
        }
        crate::failpoint::hit("merge-after-prepare");
        let source = self.admin_region(right)?;
        loop {
            let target = self.admin_region(left)?;
            let attempt = match self.propose(left, version(&target), merge(Step::Commit(source.clone()))).await {
                Ok(true) => return self.admin_region(left),
                Ok(false) => Err(Error::RegionBusy { region: left }),
                Err(e) => Err(e),
            };
            if let Err(e) = self.admin_backoff(attempt, deadline).await {
                // A commit whose outcome is unknown may still apply; once a
                // later entry of the target's log applied, it has or never
                // will. Only then may the source serve again.
                self.barrier(left).await?;
                if self.admin_region(right).is_err() {
                    return self.admin_region(left);
                }
                self.rollback_merge(right).await?;
                return Err(e);
            }
        }
    }

    /// Proposes an admin step, bounded: a leader cut off keeps its proposals
    /// pending (they may still commit), and the operator gets an answer.
    pub(super) async fn propose(&self, region: u64, epoch_version: u64, cmd: RaftCommand) -> Result<bool> {
        tokio::time::timeout(self.request_timeout, self.client.propose(region, epoch_version, cmd))
            .await
            .unwrap_or(Err(Error::Timeout))
    }

    /// Waits until every peer of `region` has applied what its leader has.
    async fn wait_caught_up(&self, region: u64, deadline: Instant) -> Result<()> {
        loop {
            match self.store.caught_up(region).await {
                Ok(true) => return Ok(()),
                Err(e) if !e.is_retryable() => return Err(e),
                Ok(false) | Err(_) if Instant::now() > deadline => return Err(Error::MergeCatchUp { region }),
                Ok(false) | Err(_) => tokio::time::sleep(BUSY_BACKOFF).await,
            }
        }
    }

    /// Applies an empty command through `region`'s log (retried until it
    /// does or the request deadline passes).
    async fn barrier(&self, region: u64) -> Result<()> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let r = self.admin_region(region)?;
            let attempt = self.propose(region, version(&r), RaftCommand::default()).await.map(|_| ());
            if attempt.is_ok() {
                return Ok(());
            }
            self.admin_backoff(attempt, deadline).await?;
        }
    }

    /// Rolls back a prepared merge of `source` (retried until it applies).
    async fn rollback_merge(&self, source: u64) -> Result<()> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let r = self.admin_region(source)?;
            if r.merging_into == 0 {
                return Ok(());
            }
            let attempt = self.propose(source, version(&r), merge(Step::Rollback(true))).await.map(|_| ());
            self.admin_backoff(attempt, deadline).await?;
            tracing::info!(region = source, "merge rolled back");
        }
    }

    /// At start: every merge a crash left prepared and not committed rolls back.
    pub(super) async fn recover_merges(&self) -> Result<()> {
        for region in self.store.regions().into_iter().filter(|r| r.merging_into != 0) {
            self.rollback_merge(region.id).await?;
        }
        Ok(())
    }

    /// Moves the leadership of `region` to the peer on store `to_store`.
    pub async fn transfer_leader(&self, region: u64, to_store: u64) -> Result<Region> {
        let r = self.admin_region(region)?;
        if !r.peers.iter().any(|p| p.store_id == to_store) {
            return Err(Error::NoPeerOnStore { store: to_store, region });
        }
        let _admin = self.admin_lock.lock().await;
        self.client.move_leader(region, to_store, self.request_timeout).await?;
        self.admin_region(region)
    }
}

/// Live keys and bytes (key + value) of `region` at the newest revision,
/// counted until either reaches its cap (`u64::MAX`: the whole region).
pub fn region_stats(reader: &MvccReader, region: &Region, max_keys: u64, max_bytes: u64) -> Result<RegionStats> {
    let mut stats = RegionStats::default();
    let end = (!region.end_key.is_empty()).then_some(&region.end_key[..]);
    reader.visit_live(&region.start_key, end, u64::MAX, |k, v| {
        stats.keys += 1;
        stats.bytes += (k.len() + v.len()) as u64;
        Ok(stats.keys < max_keys && stats.bytes < max_bytes)
    })?;
    Ok(stats)
}

/// The live key in the middle of `region`, which a split there leaves half
/// the keys on each side of.
fn middle_key(reader: &MvccReader, region: &Region) -> Result<Vec<u8>> {
    let stats = region_stats(reader, region, u64::MAX, u64::MAX)?;
    if stats.keys < 2 {
        return Err(Error::NoMiddleKey { region: region.id });
    }
    let end = (!region.end_key.is_empty()).then_some(&region.end_key[..]);
    let (mut seen, mut middle) = (0, Vec::new());
    reader.visit_live(&region.start_key, end, u64::MAX, |k, _| {
        seen += 1;
        if seen > stats.keys / 2 {
            middle = k.to_vec();
            return Ok(false);
        }
        Ok(true)
    })?;
    Ok(middle)
}
