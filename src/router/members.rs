//! MemberAdd and MemberRemove on the leader store (docs/cluster.md,
//! "Membership changes"): one voter added to or removed from the meta
//! group and every region, one group at a time, through raft conf changes.

use std::time::{Duration, Instant};

use raft::prelude::{ConfChange, ConfChangeType};

use super::Router;
use crate::error::{Error, Result};
use crate::proto::tesserapb::{MemberSet, Region, StoreMember};
use crate::raftstore::members::{self, MAX_MEMBERS};

/// How long a membership change may take over all groups.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the leader store looks for unfinished membership changes.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// Pause before trying again the groups a round could not change.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

fn conf_change(change: ConfChangeType, store: u64, context: Vec<u8>) -> ConfChange {
    let mut cc = ConfChange::default();
    cc.set_change_type(change);
    cc.node_id = store;
    cc.context = context.into();
    cc
}

fn version(region: &Region) -> u64 {
    region.epoch.as_ref().map_or(0, |e| e.version)
}

/// `http://host:port` or `https://host:port` with nothing after it: what a
/// peer URL must be.
fn valid_peer_url(url: &str) -> bool {
    let Some(hostport) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else { return false };
    let hostport = hostport.trim_end_matches('/');
    hostport.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

impl Router {
    /// Adds a member reached at `peer_urls` (one URL): the meta group and
    /// every region get a voter on its new store. Returns it and the new set.
    pub async fn add_member(&self, peer_urls: &[String], is_learner: bool) -> Result<(StoreMember, MemberSet)> {
        if is_learner {
            return Err(Error::Membership("learner members are not supported; add a voting member".into()));
        }
        let [url] = peer_urls else {
            return Err(Error::Membership("a member has exactly one peer URL".into()));
        };
        if !valid_peer_url(url) {
            return Err(Error::MemberBadUrls);
        }
        self.check_clustered()?;
        let _admin = self.admin_lock.lock().await;
        let set = self.store.members();
        if set.members.iter().any(|m| &m.peer_url == url) {
            return Err(Error::PeerUrlExists);
        }
        if set.members.len() >= MAX_MEMBERS {
            return Err(Error::Membership(format!(
                "a cluster has at most {MAX_MEMBERS} members (every region has a peer on each)"
            )));
        }
        let voters: Vec<u64> = set.members.iter().map(|m| m.store_id).collect();
        // The new member counts towards the quorum but has not started.
        if !self.quorum_active(&voters, voters.len() + 1) {
            return Err(Error::NotEnoughStartedMembers);
        }
        let store_id = set.next_store_id;
        let member_id = members::added_member_id(url, self.store.cluster_id, store_id);
        let member = StoreMember { store_id, name: String::new(), peer_url: url.clone(), member_id };
        let next = members::with(&set, member.clone());
        self.change_meta(ConfChangeType::AddNode, store_id, &next).await?;
        crate::failpoint::hit("member-add-after-meta");
        self.change_regions(ConfChangeType::AddNode, store_id).await?;
        tracing::info!(store = store_id, url, "member added");
        Ok((member, next))
    }

    /// Removes member `member_id`: every region drops its voter, then the
    /// meta group (and the member set). The leader store does not remove
    /// itself: the caller moves the leader store first.
    pub async fn remove_member(&self, member_id: u64) -> Result<MemberSet> {
        self.check_clustered()?;
        let _admin = self.admin_lock.lock().await;
        let set = self.store.members();
        let Some(gone) = set.members.iter().find(|m| m.member_id == member_id).map(|m| m.store_id) else {
            return Err(Error::MemberNotFound);
        };
        if gone == self.store.store_id {
            return Err(Error::Membership("the leader store cannot remove itself; move the leader first".into()));
        }
        let rest: Vec<u64> = set.members.iter().map(|m| m.store_id).filter(|s| *s != gone).collect();
        if !self.quorum_active(&rest, rest.len()) {
            return Err(Error::Unhealthy);
        }
        let next = members::without(&set, gone);
        self.change_regions(ConfChangeType::RemoveNode, gone).await?;
        self.change_meta(ConfChangeType::RemoveNode, gone, &next).await?;
        tracing::info!(store = gone, "member removed");
        Ok(next)
    }

    /// Whether the leader store should look for regions whose voters are
    /// not the member set's stores (once a second).
    pub(super) fn reconcile_due(&self) -> bool {
        super::due(&self.reconciled, RECONCILE_EVERY)
    }

    /// Gives every region the member set's stores as voters, one change
    /// per region per call: finishes a membership change a leader store
    /// did not (it failed over, or its request timed out). Skipped while
    /// a membership change, split or merge runs.
    pub(super) async fn reconcile_members(&self) -> Result<()> {
        let Ok(_admin) = self.admin_lock.try_lock() else { return Ok(()) };
        let stores: Vec<u64> = self.store.members().members.iter().map(|m| m.store_id).collect();
        let mut changes = Vec::new();
        for region in self.store.regions() {
            let voters: Vec<u64> = region.peers.iter().map(|p| p.id).collect();
            let change = match stores.iter().find(|s| !voters.contains(s)) {
                Some(add) => (ConfChangeType::AddNode, *add),
                None => match voters.iter().find(|v| !stores.contains(v)) {
                    Some(remove) => (ConfChangeType::RemoveNode, *remove),
                    None => continue,
                },
            };
            tracing::info!(region = region.id, change = ?change.0, store = change.1, "finishing a membership change");
            changes.push((region, conf_change(change.0, change.1, Vec::new())));
        }
        self.change_all(changes).await
    }

    /// One attempt at each conf change, all at once (their regions'
    /// proposals share the pollers' rounds); a routing error (not the
    /// leader, busy, dropped) is left for the caller's next round.
    async fn change_all(&self, changes: Vec<(Region, ConfChange)>) -> Result<()> {
        let mut running = tokio::task::JoinSet::new();
        for (region, cc) in changes {
            let (store, client) = (self.store.clone(), self.client.clone());
            running.spawn(async move {
                client.gather(region.id).await?;
                store.change_peer(region.id, version(&region), cc).await
            });
        }
        while let Some(done) = running.join_next().await {
            match done {
                Ok(Err(e)) if !e.is_retryable() => return Err(e),
                Err(e) => return Err(Error::Storage(format!("conf change task: {e}"))),
                _ => {}
            }
        }
        Ok(())
    }

    fn check_clustered(&self) -> Result<()> {
        if self.store.clustered() {
            return Ok(());
        }
        Err(Error::Membership(
            "a single store (started without --initial-cluster) cannot change its members; start a cluster with --initial-cluster".into(),
        ))
    }

    /// Whether enough of `voters` were heard from lately to make a quorum
    /// of a group of `size`.
    fn quorum_active(&self, voters: &[u64], size: usize) -> bool {
        let active = self.store.active_members();
        voters.iter().filter(|v| active.contains(v)).count() > size / 2
    }

    /// The meta group's conf change, carrying the member set it makes.
    async fn change_meta(&self, change: ConfChangeType, store: u64, next: &MemberSet) -> Result<()> {
        use prost::Message as _;
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        let meta = self.store.meta_region;
        loop {
            let region = (*self.store.peer(meta)?.region).clone();
            if region.peers.iter().any(|p| p.id == store) == (change == ConfChangeType::AddNode) {
                return Ok(());
            }
            self.change_all(vec![(region, conf_change(change, store, next.encode_to_vec()))]).await?;
            if Instant::now() > deadline {
                return Err(Error::Timeout);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Every region's conf change, until every region of the current
    /// routing table has (or no longer has) a voter on `store`: a region
    /// split meanwhile copies its parent's voters.
    async fn change_regions(&self, change: ConfChangeType, store: u64) -> Result<()> {
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        let want = change == ConfChangeType::AddNode;
        loop {
            let todo: Vec<(Region, ConfChange)> = self
                .store
                .regions()
                .into_iter()
                .filter(|r| r.peers.iter().any(|p| p.id == store) != want)
                .map(|r| (r, conf_change(change, store, Vec::new())))
                .collect();
            if todo.is_empty() {
                return Ok(());
            }
            self.change_all(todo).await?;
            if Instant::now() > deadline {
                return Err(Error::Timeout);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}
