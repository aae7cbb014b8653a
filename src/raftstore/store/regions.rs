//! A store's regions in bulk: what a routing table and the auto-split
//! checker look at without copying every region, and the wait until all
//! of them lead (docs/design.md, "Bulk regions").

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Store;
use crate::error::{Error, Result};
use crate::proto::tesserapb::Region;
use crate::raftstore::peer::PeerShared;

impl Store {
    /// Every region that owns user keys as this store holds it (shared,
    /// not copied), in no order: what a routing table is built from.
    pub fn shared_regions(&self) -> Vec<Arc<Region>> {
        self.context.peers.iter().filter(|p| !p.region.meta).map(|p| p.region.clone()).collect()
    }

    /// (region id, applied index) of every region that owns user keys,
    /// without copying the regions (the auto-split checker's look).
    pub fn applied_indexes(&self) -> Vec<(u64, u64)> {
        let user = self.context.peers.iter().filter(|p| !p.region.meta);
        user.map(|p| (p.region.id, p.shared.applied_index.load(Ordering::Relaxed))).collect()
    }

    /// Waits (bounded) until every region leads with a valid lease. Waits
    /// on one region at a time, then looks over all again: a look at every
    /// region per poll would cost 100,000 regions' worth each time.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let waiting: Vec<Arc<PeerShared>> =
                self.context.peers.iter().filter(|p| !p.shared.lease.is_valid()).map(|p| p.shared.clone()).collect();
            if waiting.is_empty() {
                let waited_ms = started.elapsed().as_millis() as u64;
                tracing::info!(waited_ms, "every region leads");
                return Ok(());
            }
            for shared in waiting {
                while !shared.lease.is_valid() {
                    if Instant::now() > deadline {
                        return Err(Error::Timeout);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}
