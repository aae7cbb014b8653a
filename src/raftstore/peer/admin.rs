//! A region's split and merge steps, applied from its Raft log (see
//! src/router/admin.rs for who proposes them and docs/design.md for the
//! protocol). Data never moves: a split or merge rewrites region metadata,
//! the Raft state of the region it creates or removes, and the epoch.

use prost::Message as _;

use super::{ApplyContext, PeerFsm, Pending, PendingKind};
use crate::engine::keys;
use crate::error::{Error, Result};
use crate::proto::tesserapb::merge_command::Step;
use crate::proto::tesserapb::raft_command::Txn;
use crate::proto::tesserapb::{RaftCommand, Region, RegionEpoch, SplitCommand};
use crate::raftstore::msg::CommandCallback;
use crate::raftstore::storage;

/// Whether `cmd` rolls a merge back (a merging region takes it).
pub fn is_merge_rollback(cmd: &RaftCommand) -> bool {
    matches!(cmd.merge.as_ref().and_then(|m| m.step.as_ref()), Some(Step::Rollback(_)))
}

/// Whether `cmd` only raises the revision fence (a new leader store's, at
/// activation; docs/cluster.md, "Revision fencing"): a merging region
/// takes it too, as it changes nothing the merge depends on.
pub fn is_fence_only(cmd: &RaftCommand) -> bool {
    let fence = RaftCommand {
        leader_store_term: cmd.leader_store_term,
        region_id: cmd.region_id,
        epoch: cmd.epoch,
        ..Default::default()
    };
    cmd.leader_store_term > 0 && *cmd == fence
}

impl PeerFsm {
    /// Proposes a command (a txn step, a lease change, a split or merge
    /// step, a fence) after the checks its kind needs.
    pub(super) fn on_command(&mut self, mut cmd: RaftCommand, epoch_version: u64, cb: CommandCallback) {
        let region = self.region.id;
        let rollback = is_merge_rollback(&cmd);
        let checked = if rollback {
            self.check_rollback(epoch_version)
        } else if is_fence_only(&cmd) {
            self.check_fence(epoch_version)
        } else {
            self.check_proposer(epoch_version)
        };
        if let Err(e) = checked {
            let _ = cb.send(Err(e));
            return;
        }
        let admin = cmd.split.is_some() || cmd.merge.is_some();
        if admin && !rollback && !self.locks.is_empty() {
            let _ = cb.send(Err(Error::RegionBusy { region }));
            return;
        }
        let lock = match &cmd.txn {
            Some(Txn::Lock(l)) => {
                if self.locks.contains_key(&l.txn_id) || l.spans.iter().any(|s| self.locked(s, None)) {
                    let _ = cb.send(Err(Error::Locked { region }));
                    return;
                }
                Some(l.clone())
            }
            _ => None,
        };
        cmd.region_id = region;
        cmd.epoch = self.region.epoch;
        if self.raft.propose(vec![], cmd.encode_to_vec()).is_err() {
            let _ = cb.send(Err(Error::ProposalDropped { region }));
            return;
        }
        self.fence_proposed = self.fence_proposed.max(cmd.leader_store_term);
        let lock = lock.map(|l| {
            self.locks.insert(l.txn_id, l.spans);
            l.txn_id
        });
        self.admin_pending |= admin;
        let index = self.raft.raft.raft_log.last_index();
        let term = self.raft.raft.term;
        self.pending.push_back(Pending { index, term, kind: PendingKind::Command { lock, admin, cb } });
    }

    /// A merge rollback is proposed by the leader of a merging region.
    pub(super) fn check_rollback(&self, epoch_version: u64) -> Result<()> {
        let region = self.region.id;
        if !self.can_evaluate() {
            return Err(Error::NotLeader { region });
        }
        if epoch_version != self.epoch_version() {
            return Err(Error::EpochNotMatch { region });
        }
        Ok(())
    }

    /// A fence is proposed by the leader of any region, a merging one too,
    /// but not while a split or merge step is in flight (it would apply
    /// after the epoch changed, and be skipped).
    pub(super) fn check_fence(&self, epoch_version: u64) -> Result<()> {
        self.check_rollback(epoch_version)?;
        if self.admin_pending {
            return Err(Error::EpochNotMatch { region: self.region.id });
        }
        Ok(())
    }

    /// The region's epoch with its version bumped (split and merge).
    fn next_epoch(&self) -> Option<RegionEpoch> {
        let conf_ver = self.region.epoch.as_ref().map_or(0, |e| e.conf_ver);
        Some(RegionEpoch { version: self.epoch_version() + 1, conf_ver })
    }

    /// Persists the region's new shape, ends its lease (a single voter takes
    /// it again at the end of this apply) and tells the store once written.
    pub(super) fn reshape(&mut self, region: Region, ctx: &mut ApplyContext) {
        ctx.wb.put_cf(self.engine.meta(), keys::region(region.id), region.encode_to_vec());
        self.region = region.clone();
        self.shared.lease.expire();
        let store = self.store.clone();
        ctx.acks.push(Box::new(move || store.region_changed(region)));
    }

    /// Cuts the region at every key of the command in one apply: the
    /// region keeps the part before the first key, each new region takes a
    /// key up to the next one (the last up to the region's end). Their
    /// state, and the region's new shape, go into this apply's one batch.
    pub(super) fn apply_split(&mut self, split: SplitCommand, ctx: &mut ApplyContext) -> Result<bool> {
        let Some(cuts) = self.split_cuts(split) else { return Ok(false) };
        let epoch = self.next_epoch();
        let r = self.region.clone();
        let ends = cuts.iter().skip(1).map(|(k, _)| k.clone()).chain([r.end_key.clone()]);
        let parts: Vec<Region> = cuts
            .iter()
            .zip(ends)
            .map(|((start_key, id), end_key)| Region {
                id: *id,
                start_key: start_key.clone(),
                end_key,
                epoch,
                peers: r.peers.clone(),
                meta: false,
                merging_into: 0,
            })
            .collect();
        for part in &parts {
            storage::init_peer(&self.engine, part, &self.apply_state, &mut ctx.wb)?;
        }
        let left = Region { end_key: cuts[0].0.clone(), epoch, ..r };
        self.reshape(left, ctx);
        // Pushed after reshape's: the new peers start once the left part
        // is routable with its new shape, and before the proposer hears back.
        let (store, campaign, parent) = (self.store.clone(), self.is_leader(), self.apply_state.clone());
        ctx.acks.push(Box::new(move || store.split_applied(parts, &parent, campaign)));
        Ok(true)
    }

    /// The (key, new region id) cuts of a split command, if it applies to
    /// the region as it is: keys ascending, all inside it and after its
    /// start, ids distinct; no merge in progress, no txn lock.
    fn split_cuts(&self, split: SplitCommand) -> Option<Vec<(Vec<u8>, u64)>> {
        let r = &self.region;
        if r.meta
            || r.merging_into != 0
            || !self.locks.is_empty()
            || split.more_keys.len() != split.more_region_ids.len()
        {
            return None;
        }
        let keys = std::iter::once(split.split_key).chain(split.more_keys);
        let cuts: Vec<(Vec<u8>, u64)> =
            keys.zip(std::iter::once(split.new_region_id).chain(split.more_region_ids)).collect();
        let (first, last) = (&cuts[0].0, &cuts[cuts.len() - 1].0);
        let inside = *first != r.start_key && crate::region::contains(r, first) && crate::region::contains(r, last);
        let ascending = cuts.windows(2).all(|w| w[0].0 < w[1].0);
        let ids: std::collections::HashSet<u64> = cuts.iter().map(|(_, id)| *id).collect();
        let distinct = ids.len() == cuts.len() && !ids.contains(&0) && !ids.contains(&r.id);
        (inside && ascending && distinct).then_some(cuts)
    }

    pub(super) fn apply_merge(&mut self, step: Step, ctx: &mut ApplyContext) -> Result<bool> {
        match step {
            Step::Prepare(target) => {
                if self.region.meta || self.region.merging_into != 0 || !self.locks.is_empty() {
                    return Ok(false);
                }
                let region = Region { merging_into: target, epoch: self.next_epoch(), ..self.region.clone() };
                self.reshape(region, ctx);
                Ok(true)
            }
            Step::Rollback(_) => {
                if self.region.merging_into == 0 {
                    return Ok(false);
                }
                let region = Region { merging_into: 0, epoch: self.next_epoch(), ..self.region.clone() };
                self.reshape(region, ctx);
                Ok(true)
            }
            Step::Commit(source) => self.commit_merge(source, ctx),
        }
    }

    /// The target takes over its prepared neighbour `source`.
    fn commit_merge(&mut self, source: Region, ctx: &mut ApplyContext) -> Result<bool> {
        let stored = match self.engine.db.get_cf(self.engine.meta(), keys::region(source.id))? {
            Some(b) => Region::decode(&b[..]).map_err(|e| Error::Storage(format!("corrupt region: {e}")))?,
            None => return Ok(false),
        };
        // The source as this store has it must be the one prepared for us,
        // with the same voters (a membership change in between).
        let voters = |r: &Region| r.peers.iter().map(|p| p.id).collect::<std::collections::BTreeSet<_>>();
        if stored != source
            || source.merging_into != self.region.id
            || !self.locks.is_empty()
            || voters(&source) != voters(&self.region)
        {
            return Ok(false);
        }
        let me = &self.region;
        let (start_key, end_key) = if !source.end_key.is_empty() && source.end_key == me.start_key {
            (source.start_key.clone(), me.end_key.clone())
        } else if !me.end_key.is_empty() && me.end_key == source.start_key {
            (me.start_key.clone(), source.end_key.clone())
        } else {
            return Ok(false);
        };
        let version =
            me.epoch.as_ref().map_or(0, |e| e.version).max(source.epoch.as_ref().map_or(0, |e| e.version)) + 1;
        let conf_ver = me.epoch.as_ref().map_or(0, |e| e.conf_ver);
        let merged = Region { start_key, end_key, epoch: Some(RegionEpoch { version, conf_ver }), ..me.clone() };
        if self.is_leader() {
            crate::failpoint::hit("merge-commit-apply");
        }
        let theirs = storage::load_apply_state(&self.engine, source.id)?;
        self.apply_state.max_revision = self.apply_state.max_revision.max(theirs.max_revision);
        self.apply_state.max_write_revision = self.apply_state.max_write_revision.max(theirs.max_write_revision);
        self.apply_state.compacted_revision = self.apply_state.compacted_revision.max(theirs.compacted_revision);
        self.apply_state.fence_term = self.apply_state.fence_term.max(theirs.fence_term);
        storage::delete_peer_state(&self.engine, source.id, &mut ctx.wb);
        // The source applied every entry before its prepare here (it is
        // stored prepared); those after it are stale writes it will never
        // apply now. What its leaders took is applied or void.
        ctx.restored.push((source.id, u64::MAX));
        self.reshape(merged, ctx);
        let store = self.store.clone();
        ctx.acks.push(Box::new(move || store.source_merged(source.id)));
        Ok(true)
    }

    /// Stops this peer for good (its region was merged away).
    pub(super) fn destroy(&mut self) {
        self.destroyed = true;
        self.shared.lease.expire();
        let region = self.region.id;
        self.fail_pending(u64::MAX, || Error::RegionNotFound);
        self.drop_asks(|| Error::RegionNotFound);
        self.drop_reads_at(|| Error::RegionNotFound);
        for (cb, _) in self.reads.drain().map(|(_, v)| v) {
            let _ = cb.send(Err(Error::RegionNotFound));
        }
        for (_, cb) in self.waiting_reads.drain(..) {
            let _ = cb.send(Err(Error::RegionNotFound));
        }
        tracing::info!(region, "merged away; peer stopped");
    }
}
