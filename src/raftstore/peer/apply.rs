//! A peer's apply: committed entries into the state machine (MVCC rows,
//! the event index, txn locks and records, admin commands), the revision
//! fence, and the answers to the proposals they settle.

use prost::Message as _;
use raft::prelude::{Entry, EntryType};
use std::sync::atomic::Ordering;

use super::{ApplyContext, PeerFsm, PendingKind};
use crate::engine::keys;
use crate::error::{Error, Result};
use crate::metrics::etcd::ETCD;
use crate::metrics::METRICS;
use crate::proto::tesserapb::raft_command::Txn;
use crate::proto::tesserapb::RaftCommand;
use crate::raftstore::msg::WriteOutcome;
use crate::region::{events, mvcc};

impl PeerFsm {
    pub(super) fn apply(&mut self, entries: Vec<Entry>, ctx: &mut ApplyContext) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        for e in &entries {
            self.fenced_entry = false;
            // An empty entry (a new leader's, or a conf change raft-rs
            // dropped for another pending one) takes no effect.
            let took_effect = match e.get_entry_type() {
                _ if e.data.is_empty() => false,
                EntryType::EntryNormal => {
                    let cmd = RaftCommand::decode(&e.data[..])
                        .map_err(|err| Error::Storage(format!("corrupt raft command: {err}")))?;
                    self.apply_command(cmd, ctx)?
                }
                EntryType::EntryConfChange => self.apply_conf_change(e, ctx)?,
                EntryType::EntryConfChangeV2 => false,
            };
            if e.term > self.apply_state.applied_term {
                ctx.terms_started.push((self.region.id, e.term));
            }
            self.apply_state.applied_index = e.index;
            self.apply_state.applied_term = e.term;
            METRICS.applied_entries.inc();
            self.answer_pending(e, took_effect, ctx);
        }
        ctx.wb.put_cf(self.engine.meta(), keys::apply_state(self.region.id), self.apply_state.encode_to_vec());
        self.shared.applied_index.store(self.apply_state.applied_index, Ordering::Relaxed);
        self.shared.max_revision.store(self.apply_state.max_revision, Ordering::Release);
        self.shared.fence_term.store(self.apply_state.fence_term, Ordering::Release);
        self.shared.leading.store(self.can_evaluate(), Ordering::Release);
        if self.is_leader() && self.single_voter() && self.apply_state.applied_term == self.raft.raft.term {
            // A single voter is its own quorum (DESIGN invariant 7).
            self.shared.lease.hold_while_leader();
        }
        Ok(())
    }

    /// Applies one command into `ctx`; whether it took effect (a txn step
    /// may find its lock gone; see [`Self::apply_txn`]).
    fn apply_command(&mut self, cmd: RaftCommand, ctx: &mut ApplyContext) -> Result<bool> {
        let current = self.epoch_version();
        if cmd.epoch.as_ref().map_or(0, |e| e.version) != current {
            // Checked again at apply time: a command proposed before a split
            // or merge must not touch keys the region no longer owns.
            tracing::warn!(region = self.region.id, "skipping a command with a stale epoch");
            skip_write(&cmd, ctx);
            return Ok(false);
        }
        if self.fenced(&cmd) {
            self.fenced_entry = true;
            tracing::info!(
                region = self.region.id,
                revision = cmd.revision,
                "refusing a write of a former leader store"
            );
            skip_write(&cmd, ctx);
            return Ok(false);
        }
        if let Some(step) = cmd.txn {
            return self.apply_txn(step, cmd.revision, &cmd.effects, ctx);
        }
        if let Some(op) = &cmd.lease {
            return Ok(self.store.lessor.apply(op, &mut ctx.wb, &self.engine));
        }
        if let Some(split) = cmd.split {
            return self.apply_split(split, ctx);
        }
        if let Some(step) = cmd.merge.and_then(|m| m.step) {
            return self.apply_merge(step, ctx);
        }
        if cmd.high_mark > 0 {
            ctx.wb.put_cf(self.engine.meta(), keys::HIGH_MARK, cmd.high_mark.to_be_bytes());
            self.sequencer.raise_limit(cmd.high_mark);
            return Ok(true);
        }
        if cmd.compact_log > 0 {
            self.schedule_gc(cmd.compact_log.min(self.apply_state.applied_index));
            return Ok(true);
        }
        self.write_effects(cmd.revision, &cmd.effects, ctx);
        self.apply_state.max_write_revision = self.apply_state.max_write_revision.max(cmd.revision);
        if cmd.revision > 0 {
            ctx.revisions.push(cmd.revision);
        }
        if let Some(c) = cmd.compaction {
            self.apply_state.compacted_revision = self.apply_state.compacted_revision.max(c.revision);
            ctx.compactions.push((self.region.clone(), c.revision));
        }
        Ok(true)
    }

    /// The revision fence (docs/cluster.md, "Revision fencing"): a write,
    /// txn lock or txn commit whose leader store's term is older than the
    /// newest this region applied is refused; a newer one raises the fence.
    fn fenced(&mut self, cmd: &RaftCommand) -> bool {
        let fenced_kind = cmd.revision > 0 || matches!(cmd.txn, Some(Txn::Lock(_)));
        if !fenced_kind && cmd.leader_store_term == 0 {
            return false;
        }
        if cmd.leader_store_term < self.apply_state.fence_term {
            return fenced_kind;
        }
        self.apply_state.fence_term = cmd.leader_store_term;
        false
    }

    fn write_effects(&mut self, revision: u64, effects: &[crate::proto::tesserapb::Effect], ctx: &mut ApplyContext) {
        let (cf, index) = (self.engine.mvcc(), self.engine.events());
        for effect in effects {
            mvcc::write_version(&mut ctx.wb, cf, &effect.key, revision, effect.kv.as_ref());
            events::write(&mut ctx.wb, index, revision, effect.sub, &effect.key);
            self.store.lessor.on_change(&effect.key, effect.prev_lease, effect.kv.as_ref().map_or(0, |kv| kv.lease));
        }
        self.apply_state.max_revision = self.apply_state.max_revision.max(revision);
    }

    /// One step of a cross-region txn. Its revision is not finished here:
    /// the coordinator finishes it once every region committed (or recovery
    /// settles it at start).
    fn apply_txn(
        &mut self,
        step: Txn,
        revision: u64,
        effects: &[crate::proto::tesserapb::Effect],
        ctx: &mut ApplyContext,
    ) -> Result<bool> {
        let region = self.region.id;
        let meta = self.engine.meta();
        match step {
            Txn::Lock(lock) => {
                ctx.wb.put_cf(meta, keys::txn_lock(region, lock.txn_id), lock.encode_to_vec());
                self.locks.insert(lock.txn_id, lock.spans);
                Ok(true)
            }
            Txn::Commit(commit) => {
                if self.locks.remove(&commit.txn_id).is_none() {
                    // Committed already (a retry), or rolled back. The
                    // primary tells the two apart by its record.
                    let recorded = commit.record.is_some()
                        && self.engine.db.get_cf(meta, keys::txn_record(commit.txn_id))?.is_some();
                    return Ok(recorded);
                }
                ctx.wb.delete_cf(meta, keys::txn_lock(region, commit.txn_id));
                if let Some(record) = &commit.record {
                    ctx.wb.put_cf(meta, keys::txn_record(commit.txn_id), record.encode_to_vec());
                }
                self.write_effects(revision, effects, ctx);
                Ok(true)
            }
            Txn::Rollback(txn) => {
                ctx.wb.delete_cf(meta, keys::txn_lock(region, txn));
                Ok(self.locks.remove(&txn).is_some())
            }
            Txn::Forget(txn) => {
                ctx.wb.delete_cf(meta, keys::txn_record(txn));
                Ok(true)
            }
        }
    }

    fn answer_pending(&mut self, e: &Entry, took_effect: bool, ctx: &mut ApplyContext) {
        let region = self.region.id;
        while self.pending.front().is_some_and(|p| p.index <= e.index) {
            let p = self.pending.pop_front().expect("checked");
            let committed = p.index == e.index && p.term == e.term;
            if !committed && !matches!(p.kind, PendingKind::Wait { .. }) {
                ETCD.proposals_failed.inc();
            }
            match p.kind {
                PendingKind::Write { revision, keys, response, cb } => {
                    for k in keys {
                        if self.overlay.get(&k).map(|(r, _)| Some(*r)) == Some(revision) {
                            self.overlay.remove(&k);
                        }
                    }
                    if !(committed && took_effect) {
                        if let Some(r) = revision {
                            tracing::debug!(target: "tessera::revisions", region, r, committed, "voided: not applied");
                            ctx.revisions.push(r); // voided: never applied
                        }
                    }
                    let result = match (committed, took_effect) {
                        (true, false) if self.fenced_entry => Err(Error::Fenced),
                        (true, true) => Ok(WriteOutcome { revision, response }),
                        (true, false) => Err(Error::EpochNotMatch { region }),
                        (false, _) => Err(Error::ProposalDropped { region }),
                    };
                    ctx.acks.push(Box::new(move || {
                        let _ = cb.send(result);
                    }));
                }
                PendingKind::Compact { cb } => {
                    let result = if committed { Ok(()) } else { Err(Error::ProposalDropped { region }) };
                    ctx.acks.push(Box::new(move || {
                        let _ = cb.send(result);
                    }));
                }
                PendingKind::Wait { response, cb } => {
                    ctx.acks.push(Box::new(move || {
                        let _ = cb.send(Ok(WriteOutcome { revision: None, response }));
                    }));
                }
                PendingKind::Command { lock, admin, cb } => {
                    if admin {
                        self.admin_pending = false;
                    }
                    let result = if committed && !self.fenced_entry {
                        Ok(took_effect)
                    } else {
                        // The lock taken at proposal never applied.
                        if let Some(txn) = lock {
                            self.locks.remove(&txn);
                        }
                        Err(if committed { Error::Fenced } else { Error::ProposalDropped { region } })
                    };
                    ctx.acks.push(Box::new(move || {
                        let _ = cb.send(result);
                    }));
                }
            }
        }
    }
}

/// A plain write every replica skips at apply never applies anywhere: its
/// revision is void on every store, the one whose sequencer handed it out
/// among them (a region leader on another store cannot tell it so).
/// A txn step's revision is shared by regions; the txn finishes it.
fn skip_write(cmd: &RaftCommand, ctx: &mut ApplyContext) {
    if cmd.revision > 0 && cmd.txn.is_none() && cmd.lease.is_none() {
        let (region, revision) = (cmd.region_id, cmd.revision);
        tracing::debug!(target: "tessera::revisions", region, revision, "a write skipped at apply");
        ctx.revisions.push(cmd.revision);
    }
}
