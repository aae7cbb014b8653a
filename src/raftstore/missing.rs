//! Regions other stores have and this store lacks (docs/cluster.md,
//! "Snapshots"). Usually a split this store has not applied yet: it will
//! create the region in a moment. One still missing after
//! [`MISSING_GRACE`] (the split came before the parent's log position this
//! store restarted from, or the log that holds it was truncated) is asked
//! for: its leader's appends and heartbeats are answered as by a peer with
//! an empty log, so the leader sends a snapshot, from which the region is
//! created here, unless it overlaps a region this store still has (that
//! one catches up first, by its own log or snapshot, and the leader sends
//! again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::prelude::{HardState, Message, MessageType};
use rocksdb::WriteBatch;

use super::peer::StoreContext;
use super::{snap, storage};
use crate::error::{Error, Result};

/// How long a region may be missing before this store asks for a snapshot.
const MISSING_GRACE: Duration = Duration::from_secs(2);

impl StoreContext {
    /// A raft message (not a vote request) for a region this store lacks.
    pub fn missing_region(self: &Arc<Self>, region: u64, msg: Message) {
        match msg.get_msg_type() {
            MessageType::MsgSnapshot => {
                if let Err(e) = self.create_from_snapshot(region, &msg) {
                    tracing::warn!(region, "creating a region from a snapshot: {e}");
                }
            }
            MessageType::MsgAppend | MessageType::MsgHeartbeat if self.missing_for(region) >= MISSING_GRACE => {
                self.ask_for_snapshot(region, &msg)
            }
            _ => {}
        }
    }

    /// How long `region` has been missing here (it is now, at the latest;
    /// the entry goes when the region's peer is added).
    fn missing_for(&self, region: u64) -> Duration {
        let now = Instant::now();
        now.duration_since(*self.missing.lock().entry(region).or_insert(now))
    }

    /// Answers the leader as a peer whose log is empty would: it then
    /// finds this store's log position truncated away and sends a snapshot.
    fn ask_for_snapshot(&self, region: u64, msg: &Message) {
        let Some(transport) = &self.transport else { return };
        let mut reply = Message::default();
        reply.from = self.store_id;
        reply.to = msg.from;
        reply.term = msg.term;
        if msg.get_msg_type() == MessageType::MsgHeartbeat {
            reply.set_msg_type(MessageType::MsgHeartbeatResponse);
        } else {
            reply.set_msg_type(MessageType::MsgAppendResponse);
            reply.reject = true;
            reply.index = msg.index;
            reply.reject_hint = 0;
        }
        transport.send_round(vec![(region, reply)]);
    }

    /// Creates the peer of a missing region from its leader's snapshot.
    fn create_from_snapshot(self: &Arc<Self>, id: u64, msg: &Message) -> Result<()> {
        let snapshot = msg.get_snapshot();
        let region = snap::decode_region(snapshot)?;
        if region.id != id {
            return Err(Error::Storage(format!("a snapshot of region {} sent for region {id}", region.id)));
        }
        let _creating = self.creating.lock();
        if let Some(p) = self.peers.get(&id) {
            let _ = p.mailbox.send(super::msg::PeerMsg::Raft(Box::new(msg.clone())));
            return Ok(());
        }
        if let Some(p) = self.peers.iter().find(|p| crate::region::overlaps(&p.region, &region)) {
            let overlaps = p.region.id;
            tracing::info!(region = id, overlaps, "snapshot of a new region waits for an overlapping one");
            return Ok(());
        }
        let mut wb = WriteBatch::default();
        let installed = snap::install(&self.engine, snapshot, &mut wb)?;
        let mut hs = HardState::default();
        hs.term = msg.term.max(installed.log_start.term);
        hs.commit = installed.log_start.index;
        storage::save_hard_state(&self.engine, id, &hs, &mut wb)?;
        self.engine.write(wb, true)?;
        self.snapshot_written(&region, installed.high_mark, installed.members);
        let (index, rows) = (installed.log_start.index, installed.rows);
        tracing::info!(region = id, index, rows, "region created from a snapshot");
        let loaded = storage::load(&self.engine, &region)?;
        self.add_peer(region, loaded, false)
    }
}
