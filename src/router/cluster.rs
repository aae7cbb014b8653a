//! The leader store's life cycle in a cluster (docs/cluster.md,
//! "Activation of a leader store" and "The high mark").

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Router;
use crate::error::{Error, Result};
use crate::proto::tesserapb::RaftCommand;

/// Revisions a leader store may hand out beyond the last one before it
/// must commit a new high mark; a failover voids at most this many.
pub const HIGH_MARK_WINDOW: u64 = 1_000;

/// How often the store checks whether it should (de)activate.
const CHECK_EVERY: Duration = Duration::from_millis(20);

impl Router {
    /// Runs activation and high-mark renewal until the router is dropped
    /// (clustered stores only; a single store serves from the start).
    pub fn start_leadership(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let router: Weak<Router> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let Some(router) = router.upgrade() else { return };
                if let Err(e) = router.leadership_step().await {
                    tracing::info!("leader store: {e}");
                }
            }
        })
    }

    async fn leadership_step(&self) -> Result<()> {
        let store = &self.store;
        let Some(term) = store.meta_term_if_leading() else {
            if store.is_serving() {
                tracing::info!("no longer the leader store");
                store.set_evaluating(false);
                store.set_serving(false);
            }
            return Ok(());
        };
        if store.is_serving() && store.sequencer.term() != term {
            // Leadership lost and won back between two checks: activate
            // again in the new term (another leader store may have served).
            tracing::info!(term, "the leader store's meta term moved");
            store.set_evaluating(false);
            store.set_serving(false);
        }
        if store.is_serving() {
            let seq = &store.sequencer;
            if seq.limit().saturating_sub(seq.last()) < HIGH_MARK_WINDOW / 2 {
                self.commit_high_mark(seq.last() + HIGH_MARK_WINDOW).await?;
            }
            if self.reconcile_due() {
                self.reconcile_members().await?;
            }
            self.balance_leaders();
            return Ok(());
        }
        self.gather_leaders();
        // A store that joined and still lacks regions (they come by
        // snapshot, within seconds) waits for them.
        if !store.leads_everything() || self.table().split(b"", None).is_none() {
            return Ok(());
        }
        if store.sequencer.term() != term {
            self.restart_sequencer(term).await?;
        }
        store.set_evaluating(true);
        if crate::failpoint::dropped("activation-recover-fails") {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(Error::Timeout);
        }
        let recovered = self.recover().await?;
        for id in store.lessor.ids() {
            // As etcd on a leader change: every lease gets its full TTL.
            store.lessor.keep_alive(id);
        }
        if store.meta_term_if_leading() != Some(term) {
            store.set_evaluating(false);
            return Err(Error::NotLeader { region: store.meta_region });
        }
        store.set_serving(true);
        tracing::info!(term, recovered, "this store is the leader store");
        Ok(())
    }

    /// Activation's first half, once per meta-group `term`: the sequencer
    /// continues after every revision an earlier leader store may have
    /// handed out. A later attempt of
    /// the same term (recovery failed) must not restart it again: the
    /// revisions it handed out meanwhile are in flight, and a restart would
    /// count them resolved before they apply (the watch gaps after kill -9
    /// of a leader store, docs/serve-anywhere.md).
    async fn restart_sequencer(&self, term: u64) -> Result<()> {
        let store = &self.store;
        // Every revision any earlier leader store handed out is at or below
        // the committed high mark. A new meta leader may not have applied
        // the latest mark yet: an entry of this term committed and applied
        // here has every earlier one applied before it (raising the limit).
        // Without it the restart could continue below revisions the last
        // leader store handed out (the watch gaps of seeds 32034, 33008).
        self.commit_high_mark(store.sequencer.limit().max(1)).await?;
        let last = store.sequencer.limit().max(store.max_applied_revision()).max(1);
        self.commit_high_mark(last + HIGH_MARK_WINDOW).await?;
        self.fence_regions(term).await?;
        self.wait_fences_applied_here(term).await?;
        let (_, records) = store.txn_state()?;
        store.sequencer.restart(term, last, records.iter().map(|r| r.revision));
        // The compaction the last leader store recorded reached this one
        // through the regions' logs (or snapshots).
        let compacted = store.max_applied_compaction()? as i64;
        if compacted > 0 && compacted > store.sequencer.compacted() {
            store.set_compacted(compacted)?;
        }
        tracing::info!(term, revision = last, "sequencer restarted");
        Ok(())
    }

    /// Raises every region's revision fence to `term` (docs/cluster.md,
    /// "Revision fencing"), so that no region applies a write whose revision
    /// an earlier leader store handed out once this one serves.
    async fn fence_regions(&self, term: u64) -> Result<()> {
        // All regions at once: they share the pollers' rounds.
        let fences: Vec<_> = self
            .store
            .regions()
            .into_iter()
            // A merge's prepared source takes a fence too: rolled back, it
            // must not take a former leader store's writes either.
            .map(|r| {
                let (client, epoch) = (self.client.clone(), r.epoch.map_or(0, |e| e.version));
                let cmd = RaftCommand { leader_store_term: term, ..Default::default() };
                tokio::spawn(async move { (r.id, client.propose(r.id, epoch, cmd).await) })
            })
            .collect();
        for fence in fences {
            let (region, fenced) = fence.await.map_err(|_| Error::Stopped)?;
            if !fenced? {
                // Skipped at apply: the region changed shape meanwhile.
                // Activation starts again over the regions as they are now.
                return Err(Error::EpochNotMatch { region });
            }
        }
        Ok(())
    }

    /// Waits (bounded) until this store's own peer of every region applied
    /// the fence of `term`. The fence applies at each region's leader,
    /// which is this store once activation gathered the leaders, unless a
    /// leadership moved off meanwhile (a transfer, a former leader store's
    /// balance): then this store's replica may not have applied a write an
    /// earlier leader store acknowledged, and the restarted sequencer
    /// counts every earlier revision resolved, so a watch or a read here
    /// would pass it.
    async fn wait_fences_applied_here(&self, term: u64) -> Result<()> {
        let deadline = std::time::Instant::now() + self.request_timeout;
        loop {
            let behind = self.store.regions().into_iter().find(|r| {
                self.store
                    .peer(r.id)
                    .is_ok_and(|p| p.shared.fence_term.load(std::sync::atomic::Ordering::Acquire) < term)
            });
            let Some(region) = behind else { return Ok(()) };
            if std::time::Instant::now() > deadline {
                tracing::info!(region = region.id, term, "the revision fence has not applied here yet");
                return Err(Error::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn commit_high_mark(&self, mark: u64) -> Result<()> {
        let meta = self.store.meta_region;
        let epoch = self.store.peer(meta)?.region.epoch.map_or(0, |e| e.version);
        let cmd = RaftCommand { high_mark: mark, ..Default::default() };
        self.client.propose(meta, epoch, cmd).await?;
        Ok(())
    }
}
