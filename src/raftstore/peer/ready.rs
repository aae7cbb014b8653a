//! A poll round's Ready for one peer (docs/design.md, the batch system):
//! what must be persisted goes into the round's one synced write batch;
//! after the sync, raft's messages are queued for sending, committed
//! entries applied, answers queued. Also role changes and log truncation.

use std::sync::atomic::Ordering;

use prost::Message as _;
use raft::prelude::MessageType;
use raft::StateRole;
use rocksdb::WriteBatch;

use super::{ApplyContext, PeerFsm, LEASE_ROUND, LOG_MAX_THRESHOLDS};
use crate::error::{Error, Result};
use crate::metrics::etcd::ETCD;
use crate::proto::tesserapb::{RaftCommand, TruncatedState};
use crate::raftstore::msg::PeerMsg;
use crate::raftstore::storage;

impl PeerFsm {
    /// Step 1: takes this round's Ready (if any) and adds what must be
    /// persisted to the round's one synced write batch. Returns the number of
    /// log entries added.
    pub fn collect_persist(&mut self, wb: &mut WriteBatch) -> Result<usize> {
        if self.destroyed {
            return Ok(0);
        }
        if let Some((from, to)) = self.gc.take() {
            storage::truncate(&self.engine, self.raft.store(), self.region.id, from, &to, wb)?;
            self.truncated = to;
        }
        if !self.raft.has_ready() {
            return Ok(0);
        }
        let mut rd = self.raft.ready();
        if !rd.snapshot().is_empty() {
            let snapshot = rd.snapshot().clone();
            self.restore(&snapshot, wb)?;
        }
        let entries = rd.take_entries();
        storage::append(&self.engine, self.raft.store(), self.region.id, &entries, wb)?;
        if let Some(hs) = rd.hs() {
            storage::save_hard_state(&self.engine, self.region.id, hs, wb)?;
            self.raft.mut_store().wl().set_hardstate(hs.clone());
        }
        if let Some(ss) = rd.ss() {
            self.shared.leader.store(ss.leader_id, Ordering::Release);
            if self.region.meta {
                let before = self.store.meta_leader.swap(ss.leader_id, Ordering::AcqRel);
                if ss.leader_id != 0 && ss.leader_id != before {
                    ETCD.leader_changes.inc();
                }
            }
            self.on_role_change(ss.raft_state);
        }
        self.ready = Some(Box::new(rd));
        Ok(entries.len())
    }

    /// Queues raft's messages for the poller to send after this round (one
    /// batch per store). A leader whose lease rounds run sends no plain
    /// heartbeats: the rounds' heartbeats, one per heartbeat interval, do
    /// all they do (reset election timers, carry the commit index, bring
    /// back answers that resume replication and keep check_quorum content).
    fn outgoing(&self, messages: Vec<raft::prelude::Message>, ctx: &mut ApplyContext) {
        let rounds_run = self.can_evaluate() && !self.single_voter();
        let region = self.region.id;
        ctx.messages.extend(
            messages
                .into_iter()
                .filter(|m| !(rounds_run && m.get_msg_type() == MessageType::MsgHeartbeat && m.context.is_empty()))
                .map(|m| (region, m)),
        );
    }

    /// Step 2 (after the synced write): advances raft, applies what
    /// committed into `ctx`, and queues the answers.
    pub fn on_persisted(&mut self, ctx: &mut ApplyContext) -> Result<()> {
        if let Some(restored) = self.restored.take() {
            self.after_restore(*restored, ctx);
        }
        let Some(mut rd) = self.ready.take() else { return Ok(()) };
        // Sent by the poller after this round (one batch per store).
        self.outgoing(rd.take_messages(), ctx);
        self.outgoing(rd.take_persisted_messages(), ctx);
        let read_states = rd.take_read_states();
        let committed = rd.take_committed_entries();
        self.apply(committed, ctx)?;
        let mut light = self.raft.advance(*rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.raft.store().rl().hard_state().clone();
            hs.commit = commit;
            storage::save_hard_state(&self.engine, self.region.id, &hs, &mut ctx.wb)?;
            self.raft.mut_store().wl().set_hardstate(hs);
        }
        self.outgoing(light.take_messages(), ctx);
        self.apply(light.take_committed_entries(), ctx)?;
        self.raft.advance_apply();
        // Answered once this round's applied state is written.
        self.serve_reads_at(&mut |cb| {
            ctx.acks.push(Box::new(move || {
                let _ = cb.send(Ok(()));
            }))
        });
        for rs in read_states {
            if let [LEASE_ROUND, round @ ..] = rs.request_ctx.as_slice() {
                let round = <[u8; 8]>::try_from(round).map(u64::from_be_bytes).unwrap_or(0);
                if let Some(sent) = self.lease_rounds.remove(&round) {
                    if self.is_leader() && self.raft.raft.lead_transferee.is_none() {
                        self.shared.lease.renew(sent, self.store.raft.lease_duration());
                    }
                }
                continue;
            }
            let Ok(bytes) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else { continue };
            if let Some((cb, _)) = self.reads.remove(&u64::from_be_bytes(bytes)) {
                self.waiting_reads.push((rs.index, cb));
            }
        }
        let applied = self.apply_state.applied_index;
        let (done, waiting): (Vec<_>, Vec<_>) = self.waiting_reads.drain(..).partition(|(i, _)| *i <= applied);
        self.waiting_reads = waiting;
        for (_, cb) in done {
            ctx.acks.push(Box::new(move || {
                let _ = cb.send(Ok(()));
            }));
        }
        self.maybe_gc();
        self.set_awake(self.wants_tick());
        self.shared.pending.store(self.pending.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn on_role_change(&mut self, role: StateRole) {
        let leader = role == StateRole::Leader;
        self.shared.is_leader.store(leader, Ordering::Release);
        self.shared.term.store(self.raft.raft.term, Ordering::Release);
        self.store.max_term.fetch_max(self.raft.raft.term, Ordering::AcqRel);
        if !leader {
            // Pending proposals stay: whether they committed is decided by the
            // term of the entry that applies at their index.
            self.shared.lease.expire();
            self.shared.leading.store(false, Ordering::Release);
            self.overlay.clear();
            self.fence_proposed = 0;
            self.lease_rounds.clear();
            let region = self.region.id;
            self.drop_asks(|| Error::NotLeader { region });
            self.drop_reads_at(|| Error::NotLeader { region });
            if self.region.meta && self.store.transport.is_some() {
                // No longer the leader store: stop taking revisions at once.
                self.store.evaluating.store(false, Ordering::Release);
                self.store.serving.store(false, Ordering::Release);
            }
        } else if self.region.meta && self.store.transport.is_some() {
            // The new leader store: its region peers run for leader now
            // rather than wait for the old leaders to hand over or time out.
            for p in self.store.peers.iter() {
                if !p.region.meta && !p.shared.is_leader.load(Ordering::Acquire) {
                    let _ = p.mailbox.send(PeerMsg::Campaign);
                }
            }
        }
    }

    /// Once the applied log is long enough: a single voter truncates it; a
    /// leader with other voters proposes truncating it up to what every
    /// voter has (docs/cluster.md, "Log truncation").
    fn maybe_gc(&mut self) {
        let applied = self.apply_state.applied_index;
        if applied < self.truncated.index + self.log_gc_threshold || self.gc.is_some() {
            return;
        }
        if self.single_voter() {
            self.schedule_gc(applied);
            return;
        }
        if !self.can_evaluate() || self.truncate_proposed >= applied {
            return;
        }
        let everyone = self.raft.raft.prs().iter().map(|(_, pr)| pr.matched).min().unwrap_or(0).min(applied);
        let threshold = self.log_gc_threshold;
        let to = if everyone >= self.truncated.index + threshold {
            everyone
        } else if applied >= self.truncated.index + LOG_MAX_THRESHOLDS * threshold {
            // A voter lags far behind (down, or cut off): it will get a snapshot.
            applied - threshold
        } else {
            return;
        };
        let cmd =
            RaftCommand { region_id: self.region.id, epoch: self.region.epoch, compact_log: to, ..Default::default() };
        if self.raft.propose(vec![], cmd.encode_to_vec()).is_ok() {
            self.truncate_proposed = applied;
        }
    }

    pub(super) fn schedule_gc(&mut self, index: u64) {
        if index <= self.truncated.index || self.gc.is_some() {
            return;
        }
        let term = match raft::Storage::term(self.raft.store(), index) {
            Ok(t) => t,
            Err(_) => return,
        };
        self.gc = Some((self.truncated.index + 1, TruncatedState { index, term }));
    }
}
