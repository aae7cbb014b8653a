//! What the store's peers call back into: creating peers (at start, after
//! a split, from a snapshot), routing raft messages to them, asking and
//! giving back revisions, and following region and member changes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::PeerHandle;
use crate::error::{Error, Result};
use crate::proto::tesserapb::{ApplyState, MemberSet, Region, RevisionAsk};
use crate::raftstore::batch::Inbox;
use crate::raftstore::msg::PeerMsg;
use crate::raftstore::peer::{PeerFsm, StoreContext};
use crate::raftstore::{members, storage};

/// Vote requests kept for regions not created here yet: for how long, for
/// how many regions, how many each (see [`StoreContext::deliver`]).
const EARLY_VOTE_TTL: Duration = Duration::from_secs(3);
/// Above the regions one split command creates (`bulk_split`'s 4,096): each
/// new region's leader asks for votes as soon as its split applied here.
const EARLY_VOTE_REGIONS: usize = 8192;
const EARLY_VOTES_PER_REGION: usize = 8;

impl StoreContext {
    /// Starts a peer for `region` from its loaded state and makes it
    /// routable; `campaign` asks it to run for leader at once.
    pub fn add_peer(self: &Arc<Self>, region: Region, loaded: storage::LoadedPeer, campaign: bool) -> Result<()> {
        let inbox = Inbox::new();
        let fsm = PeerFsm::new(region.clone(), loaded, inbox.clone(), self.clone())?;
        let shared = fsm.shared.clone();
        if campaign && region.peers.len() == 1 {
            // It leads once it handled the campaign, and then wants no
            // ticks: none meanwhile either (100,000 regions starting would
            // get 100,000 ticks per tick interval until they all lead).
            shared.awake.store(false, Ordering::Relaxed);
        }
        // Before it can run (and change it).
        self.awake_changed(region.id, shared.awake.load(Ordering::Relaxed));
        let mailbox = self.registrar.register(Box::new(fsm), inbox);
        if campaign {
            let _ = mailbox.send(PeerMsg::Campaign);
        }
        let id = region.id;
        self.peers.insert(id, PeerHandle { region: Arc::new(region), shared, mailbox: mailbox.clone() });
        self.regions_version.fetch_add(1, Ordering::AcqRel);
        self.missing.lock().remove(&id);
        for (_, m) in self.early_votes.lock().remove(&id).unwrap_or_default() {
            let _ = mailbox.send(PeerMsg::Raft(Box::new(m)));
        }
        Ok(())
    }

    /// A raft message for `region`. A region not here yet is mostly one
    /// whose split this store has not applied yet: its vote requests wait
    /// for it (the leader store's new peer campaigns the moment it applied
    /// the split, and a lost vote would cost it an election timeout). One
    /// still missing a while later is created from a snapshot (see
    /// [`StoreContext::missing_region`]).
    pub fn deliver(self: &Arc<Self>, region: u64, msg: raft::prelude::Message) {
        use raft::prelude::MessageType::{MsgRequestPreVote, MsgRequestVote};
        if let Some(p) = self.peers.get(&region) {
            let _ = p.mailbox.send(PeerMsg::Raft(Box::new(msg)));
            return;
        }
        if !matches!(msg.get_msg_type(), MsgRequestPreVote | MsgRequestVote) {
            self.missing_region(region, msg);
            return;
        }
        let mut early = self.early_votes.lock();
        // Checked again under the lock add_peer drains it with.
        if let Some(p) = self.peers.get(&region) {
            let _ = p.mailbox.send(PeerMsg::Raft(Box::new(msg)));
            return;
        }
        let now = Instant::now();
        early.retain(|_, votes| {
            votes.retain(|(at, _)| now.duration_since(*at) < EARLY_VOTE_TTL);
            !votes.is_empty()
        });
        if early.len() < EARLY_VOTE_REGIONS {
            let votes = early.entry(region).or_default();
            votes.truncate(EARLY_VOTES_PER_REGION - 1);
            votes.push((now, msg));
        }
    }

    /// Asks the leader store for revisions for the writes the leader of
    /// `ask.region_id` evaluates; the answer comes to the region's peer as
    /// [`PeerMsg::Revision`].
    pub fn ask_revisions(&self, ask: RevisionAsk) {
        let (region, term, seq) = (ask.region_id, ask.term, ask.seq);
        let Some(mailbox) = self.peers.get(&region).map(|p| p.mailbox.clone()) else { return };
        let answer = move |result| {
            let _ = mailbox.send(PeerMsg::Revision { term, seq, result });
        };
        let leader = self.meta_leader.load(Ordering::Acquire);
        match &self.revisions {
            Some(client) if leader != 0 && leader != self.store_id => client.ask(leader, ask, Box::new(answer)),
            // No leader store known, or it is this one and not activated yet.
            _ => answer(Err(Error::NotLeader { region: self.meta_region })),
        }
    }

    /// A revision taken in leader-store `term` and never to be used: it
    /// leaves the in-flight set of the sequencer that handed it out (this
    /// store's, or the leader store's if that is still in `term`).
    pub fn void(&self, revision: u64, term: u64) {
        tracing::debug!(target: "tessera::revisions", revision, term, "giving back");
        if self.sequencer.term() == term {
            self.sequencer.release(revision, term);
            return;
        }
        let leader = self.meta_leader.load(Ordering::Acquire);
        if let Some(client) = &self.revisions {
            if leader != 0 && leader != self.store_id {
                client.void(leader, revision, term);
            }
        }
    }

    /// A region's new shape (its peer already applied it).
    pub fn region_changed(&self, region: Region) {
        if let Some(mut p) = self.peers.get_mut(&region.id) {
            p.region = Arc::new(region);
        }
        self.regions_version.fetch_add(1, Ordering::AcqRel);
    }

    /// After a split applied and persisted: a peer for each new part (its
    /// state was written with the split; `parent` is the split region's
    /// apply state then). One lock for them all: a bulk split creates
    /// thousands.
    pub fn split_applied(self: &Arc<Self>, parts: Vec<Region>, parent: &ApplyState, campaign: bool) {
        let _creating = self.creating.lock();
        for part in parts {
            if self.peers.contains_key(&part.id) {
                // Created from a snapshot a moment ago (which wrote over the
                // state the split wrote).
                continue;
            }
            let loaded = storage::fresh(&self.engine, &part, parent);
            if let Err(e) = loaded.and_then(|loaded| self.add_peer(part, loaded, campaign)) {
                // The split is persisted: serving on without the new part
                // would leave its keys without a region.
                tracing::error!("starting a new region of a split: {e}");
                eprintln!("tessera: cannot start a new region of a split ({e}); aborting");
                std::process::abort();
            }
        }
    }

    /// After a snapshot of `region` is written here (a peer restored, or a
    /// region created from one): the lessor re-reads what it replaced; the
    /// meta group's high mark and member set take effect.
    pub fn snapshot_written(&self, region: &Region, high_mark: Option<u64>, members: Option<MemberSet>) {
        let reloaded = if region.meta {
            self.lessor.reload_leases(&self.engine)
        } else {
            self.lessor.reattach(&self.engine, region)
        };
        if let Err(e) = reloaded {
            tracing::error!(region = region.id, "lessor after a snapshot: {e}");
        }
        if let Some(mark) = high_mark {
            self.sequencer.raise_limit(mark);
        }
        if let Some(set) = members {
            self.members_changed(set);
        }
    }

    /// A member set the meta group applied (or a snapshot of it brought):
    /// the transport's links follow it; a set without this store means
    /// it was removed.
    pub fn members_changed(&self, set: MemberSet) {
        if let Some(t) = &self.transport {
            t.set_links(&members::peer_urls(&set));
        }
        let removed = !set.members.iter().any(|m| m.store_id == self.store_id);
        *self.members.write() = set;
        if removed {
            tracing::warn!("this store was removed from the cluster");
            self.removed.notify_one();
        }
    }

    /// After a merge committed and persisted: the source's peer stops and goes.
    pub fn source_merged(&self, source: u64) {
        if let Some((_, p)) = self.peers.remove(&source) {
            let _ = p.mailbox.send(PeerMsg::Destroy);
        }
        self.regions_version.fetch_add(1, Ordering::AcqRel);
    }
}
