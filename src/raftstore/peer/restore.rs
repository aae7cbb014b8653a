//! A peer restored from a raft snapshot (src/raftstore/snap.rs builds
//! them; docs/cluster.md, "Snapshots"): its region's data, Raft and apply
//! state replaced by the leader's as of the snapshot's index.

use std::sync::atomic::Ordering;

use raft::prelude::Snapshot;
use rocksdb::WriteBatch;

use super::{ApplyContext, PeerFsm, PendingKind};
use crate::error::{Error, Result};
use crate::proto::tesserapb::MemberSet;
use crate::raftstore::{snap, storage};

/// A restore written in this round, for [`PeerFsm::after_restore`].
pub(super) struct Restored {
    /// The merge sources the snapshot's region took over.
    sources: Vec<u64>,
    high_mark: Option<u64>,
    members: Option<MemberSet>,
}

impl PeerFsm {
    /// Whether a snapshot may replace this peer: every other region of the
    /// store it overlaps must be a merge source prepared into this one (the
    /// merge committed while this store was away; they go with it). A
    /// snapshot refused here is sent again later (the leader probes, finds
    /// the log still behind, and builds a new one).
    pub(super) fn may_restore(&self, m: &raft::prelude::Message) -> bool {
        let region = match snap::decode_region(m.get_snapshot()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(region = self.region.id, "refusing a snapshot: {e}");
                return false;
            }
        };
        let blocker = self.store.peers.iter().find(|p| {
            p.region.id != self.region.id
                && crate::region::overlaps(&p.region, &region)
                && p.region.merging_into != self.region.id
        });
        if let Some(p) = blocker {
            tracing::info!(region = self.region.id, overlaps = p.region.id, "snapshot waits for an overlapping region");
            return false;
        }
        true
    }

    /// Adds the snapshot raft accepted to this round's persisted write and
    /// takes its state in memory.
    pub(super) fn restore(&mut self, snapshot: &Snapshot, wb: &mut WriteBatch) -> Result<()> {
        let region = snap::decode_region(snapshot)?;
        let sources: Vec<u64> = self
            .store
            .peers
            .iter()
            .filter(|p| p.region.id != region.id && crate::region::overlaps(&p.region, &region))
            .map(|p| p.region.id)
            .collect();
        for source in &sources {
            storage::delete_peer_state(&self.engine, *source, wb);
        }
        let installed = snap::install(&self.engine, snapshot, wb)?;
        let mut bare = snapshot.clone();
        bare.data = Default::default();
        self.raft.mut_store().wl().apply_snapshot(bare).map_err(|e| Error::Storage(e.to_string()))?;
        let index = installed.log_start.index;
        tracing::info!(region = region.id, index, rows = installed.rows, "restored from a snapshot");
        self.apply_state = installed.apply_state;
        self.truncated = installed.log_start;
        self.gc = None;
        self.locks = installed.locks.into_iter().map(|l| (l.txn_id, l.spans)).collect();
        self.overlay.clear();
        self.shared.lease.expire();
        // Proposed here as a leader and covered by the snapshot: whether
        // they committed is not known here any more.
        self.fail_pending(index, || Error::Timeout);
        self.region = installed.region;
        self.restored =
            Some(Box::new(Restored { sources, high_mark: installed.high_mark, members: installed.members }));
        Ok(())
    }

    /// Once the restored state is written: the store routes the region's
    /// new shape, drops the merge sources it took over, and the lessor
    /// re-reads what the snapshot replaced.
    pub(super) fn after_restore(&mut self, restored: Restored, ctx: &mut ApplyContext) {
        let region = self.region.clone();
        self.shared.applied_index.store(self.apply_state.applied_index, Ordering::Relaxed);
        self.shared.max_revision.store(self.apply_state.max_revision, Ordering::Release);
        self.shared.fence_term.store(self.apply_state.fence_term, Ordering::Release);
        // Its revisions the snapshot covers never apply here one by one
        // (its plain writes', which increase along its log: a txn commit's
        // revision above them says nothing of the writes after it); the
        // merge sources it took over are gone with all theirs.
        ctx.restored.push((region.id, self.apply_state.covered_write_revision()));
        ctx.restored.extend(restored.sources.iter().map(|s| (*s, u64::MAX)));
        let store = self.store.clone();
        ctx.acks.push(Box::new(move || {
            store.snapshot_written(&region, restored.high_mark, restored.members);
            store.region_changed(region);
            for source in restored.sources {
                store.source_merged(source);
            }
        }));
    }

    /// Answers every pending proposal at or below `index` with `err()`.
    pub(super) fn fail_pending(&mut self, index: u64, err: impl Fn() -> Error) {
        while self.pending.front().is_some_and(|p| p.index <= index) {
            let p = self.pending.pop_front().expect("checked");
            match p.kind {
                PendingKind::Write { cb, .. } | PendingKind::Wait { cb, .. } => drop(cb.send(Err(err()))),
                PendingKind::Compact { cb } => drop(cb.send(Err(err()))),
                PendingKind::Command { admin, cb, .. } => {
                    self.admin_pending &= !admin;
                    drop(cb.send(Err(err())))
                }
            }
        }
    }
}
