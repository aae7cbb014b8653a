//! A store's part of a /metrics scrape (docs/ops.md, "Metrics under
//! etcd's names").

use std::sync::atomic::Ordering;

use super::Store;
use crate::raftstore::peer::PeerShared;

impl Store {
    /// This store's part of a /metrics scrape: per-region state and what
    /// etcd's metrics read from the store.
    pub fn scrape(&self, s: &mut crate::metrics::Scrape) {
        let peers = &self.context.peers;
        let lease_valid = |id: &u64| peers.get(id).is_some_and(|p| p.shared.lease.is_valid());
        s.gauge_by(
            "tessera_region_lease_valid",
            "Whether the region's leader lease is valid on this store.",
            "region",
            self.regions().iter().map(|r| (r.id.to_string(), lease_valid(&r.id) as u64)),
        );
        let count = |f: &dyn Fn(&PeerShared) -> bool| peers.iter().filter(|p| f(&p.shared)).count() as f64;
        s.gauge("tessera_regions", "Regions on this store.", peers.len() as f64);
        s.gauge(
            "tessera_region_leaders",
            "Regions led by this store.",
            count(&|p| p.is_leader.load(Ordering::Relaxed)),
        );
        s.gauge(
            "tessera_region_leases_valid",
            "Regions whose leader lease is valid on this store.",
            count(&|p| p.lease.is_valid()),
        );
        s.gauge(
            "tessera_regions_awake",
            "Regions whose peer here takes raft ticks.",
            self.context.awake.lock().len() as f64,
        );
        s.gauge("tessera_revision", "The last revision handed out.", self.sequencer.last() as f64);
        let gauges = crate::metrics::etcd::StoreGauges {
            has_leader: !self.clustered() || self.leader_store() != 0,
            applied_entries: crate::metrics::METRICS.applied_entries.get(),
            pending_proposals: peers.iter().map(|p| p.shared.pending.load(Ordering::Relaxed)).sum(),
            db_bytes: self.db_size(),
            keys: self.keys_counted.get(|| {
                let reader = crate::region::mvcc::MvccReader::new(&self.engine.db, self.engine.mvcc(), None);
                reader.count_keys().inspect_err(|e| tracing::warn!("counting keys: {e}")).ok()
            }),
            member_ids: self.members().members.iter().map(|m| (m.store_id, m.member_id)).collect(),
        };
        crate::metrics::etcd::ETCD.scrape(&gauges, s);
    }
}
