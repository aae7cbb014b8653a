//! Conf changes (docs/cluster.md, "Membership changes"): one voter added
//! or removed at a time, the region's peers written with the region, and
//! for the meta group the member set the change carries.

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, Entry};

use super::{ApplyContext, PeerFsm, Pending, PendingKind};
use crate::error::{Error, Result};
use crate::proto::tesserapb::{MemberSet, Peer, Region};
use crate::raftstore::members;
use crate::raftstore::msg::CommandCallback;

impl PeerFsm {
    pub(super) fn on_change_peer(&mut self, cc: ConfChange, epoch_version: u64, cb: CommandCallback) {
        let region = self.region.id;
        if let Err(e) = self.check_proposer(epoch_version) {
            let _ = cb.send(Err(e));
            return;
        }
        // raft-rs turns a second pending conf change into an empty entry.
        if self.raft.raft.has_pending_conf() || self.raft.propose_conf_change(vec![], cc).is_err() {
            let _ = cb.send(Err(Error::ProposalDropped { region }));
            return;
        }
        self.admin_pending = true;
        let index = self.raft.raft.raft_log.last_index();
        let term = self.raft.raft.term;
        self.pending.push_back(Pending { index, term, kind: PendingKind::Command { lock: None, admin: true, cb } });
    }

    /// Applies a committed conf change: raft's voters and the region's
    /// peers (written with the region, its `conf_ver` bumped), and for the
    /// meta group the member set its context carries. A change that
    /// changes nothing, or a meta set that does not match the new voters,
    /// is refused (on every store alike: it depends on the log only).
    pub(super) fn apply_conf_change(&mut self, e: &Entry, ctx: &mut ApplyContext) -> Result<bool> {
        let cc = ConfChange::parse_from_bytes(&e.data)
            .map_err(|err| Error::Storage(format!("corrupt conf change: {err}")))?;
        let id = cc.node_id;
        let mut peers = self.region.peers.clone();
        let has = peers.iter().any(|p| p.id == id);
        match cc.get_change_type() {
            ConfChangeType::AddNode if !has => peers.push(Peer { id, store_id: id }),
            ConfChangeType::RemoveNode if has => peers.retain(|p| p.id != id),
            _ => return Ok(false),
        }
        peers.sort_by_key(|p| p.id);
        let set = if self.region.meta {
            let set = MemberSet::decode(&cc.context[..])
                .map_err(|err| Error::Storage(format!("corrupt member set: {err}")))?;
            let mut stores: Vec<u64> = set.members.iter().map(|m| m.store_id).collect();
            stores.sort();
            if stores != peers.iter().map(|p| p.id).collect::<Vec<_>>() {
                tracing::warn!(?stores, "refusing a member set that does not match the meta group's voters");
                return Ok(false);
            }
            Some(set)
        } else {
            None
        };
        let cs = self.raft.apply_conf_change(&cc).map_err(|err| Error::Storage(format!("conf change: {err}")))?;
        self.raft.mut_store().wl().set_conf_state(cs);
        let mut epoch = self.region.epoch.unwrap_or_default();
        epoch.conf_ver += 1;
        let region = Region { peers, epoch: Some(epoch), ..self.region.clone() };
        let change = cc.get_change_type();
        tracing::info!(region = region.id, ?change, store = id, "conf change applied");
        self.reshape(region, ctx);
        if let Some(set) = set {
            members::write(&self.engine, &set, &mut ctx.wb);
            let store = self.store.clone();
            ctx.acks.push(Box::new(move || store.members_changed(set)));
        }
        Ok(true)
    }
}
