//! Regions split by themselves when they grow (docs/design.md, "Auto-split").
//!
//! A checker task wakes every `interval`; on the store that serves (the
//! leader store of a cluster) it looks at every region written since its
//! last look. The look is a scan of the region's live keys on a blocking
//! thread (never a poller), and it stops as soon as the region is known to
//! be over a threshold, so it reads at most about the threshold. A region
//! over `max_keys` live keys or `max_bytes` live bytes is split where the
//! first half of the threshold ends; the right part is looked at again next
//! time and splits again if it is still too big.
//!
//! With `merge` on (off by default), each look also merges one pair of
//! neighbours whose live keys and bytes together are under half of both
//! thresholds, so a merged region is far from splitting again, and a split's
//! halves (each at least half a threshold) never qualify.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::admin::{region_stats, RegionStats};
use super::Router;
use crate::error::Result;
use crate::proto::tesserapb::Region;
use crate::region::mvcc::MvccReader;

/// When a region splits by itself.
#[derive(Debug, Clone, Copy)]
pub struct AutoSplit {
    /// Live bytes (keys + values) past which a region splits.
    pub max_bytes: u64,
    /// Live keys past which a region splits.
    pub max_keys: u64,
    /// How often regions are looked at.
    pub interval: Duration,
    /// Merge small neighbours back (see the module doc).
    pub merge: bool,
}

impl Default for AutoSplit {
    /// TiKV's region-max-size and region-max-keys (144 MiB, 1,440,000
    /// keys); looked at every 10 s, as TiKV's split check tick.
    fn default() -> Self {
        AutoSplit { max_bytes: 144 << 20, max_keys: 1_440_000, interval: Duration::from_secs(10), merge: false }
    }
}

impl Router {
    /// Starts the checker (see the module doc).
    pub fn start_auto_split(self: &Arc<Self>, cfg: AutoSplit) -> tokio::task::JoinHandle<()> {
        let router = Arc::downgrade(self);
        tokio::spawn(async move {
            // Region id -> applied index when last found small enough.
            let mut looked: HashMap<u64, u64> = HashMap::new();
            // Region id -> (applied index, capped size) for auto-merge.
            let mut sizes: HashMap<u64, (u64, RegionStats)> = HashMap::new();
            loop {
                tokio::time::sleep(cfg.interval).await;
                let Some(router) = router.upgrade() else { return };
                if !router.store().is_serving() {
                    continue;
                }
                // Ids and applied indexes only: a look at 100,000 idle
                // regions copies none of them.
                let applied = router.store().applied_indexes();
                let ids: HashSet<u64> = applied.iter().map(|(id, _)| *id).collect();
                looked.retain(|id, _| ids.contains(id));
                for (id, applied) in applied {
                    if looked.get(&id) == Some(&applied) {
                        continue;
                    }
                    let Ok(peer) = router.store().peer(id) else { continue };
                    let region = (*peer.region).clone();
                    let r = region.clone();
                    match router.scan_blocking(move |reader| split_point(reader, &r, &cfg)).await {
                        Ok(None) => {
                            looked.insert(region.id, applied);
                        }
                        Ok(Some(key)) => match router.split(Some(key), Some(region.id)).await {
                            Ok((left, right)) => {
                                tracing::info!(region = left.id, new_region = right.id, "region split by size");
                            }
                            // Busy (a txn lock, another split), or changed
                            // meanwhile: looked at again next time.
                            Err(e) => tracing::debug!(region = region.id, "auto-split deferred: {e}"),
                        },
                        Err(e) => tracing::warn!(region = region.id, "auto-split check: {e}"),
                    }
                }
                if cfg.merge {
                    router.merge_one_small_pair(&cfg, &mut sizes).await;
                }
            }
        })
    }

    /// Merges the first pair of neighbours (in key order) that together
    /// hold under half of both thresholds. A region is scanned again only
    /// when it applied something since its size was taken (`sizes`).
    async fn merge_one_small_pair(&self, cfg: &AutoSplit, sizes: &mut HashMap<u64, (u64, RegionStats)>) {
        let (max_keys, max_bytes) = (cfg.max_keys / 2, cfg.max_bytes / 2);
        let mut regions = self.store().regions();
        regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
        let ids: HashSet<u64> = regions.iter().map(|r| r.id).collect();
        sizes.retain(|id, _| ids.contains(id));
        let mut previous: Option<(u64, RegionStats)> = None;
        for region in regions {
            let Ok(peer) = self.store().peer(region.id) else { return };
            let applied = peer.shared.applied_index.load(Ordering::Relaxed);
            let stats = match sizes.get(&region.id) {
                Some((at, stats)) if *at == applied => *stats,
                _ => {
                    let r = region.clone();
                    let scanned = self.scan_blocking(move |reader| region_stats(reader, &r, max_keys, max_bytes));
                    let Ok(stats) = scanned.await else { return };
                    sizes.insert(region.id, (applied, stats));
                    stats
                }
            };
            if let Some((left, l)) = previous.take() {
                if l.keys + stats.keys < max_keys && l.bytes + stats.bytes < max_bytes {
                    match self.merge_steps(left, region.id).await {
                        Ok(merged) => {
                            tracing::info!(region = merged.id, merged_away = region.id, "small regions merged")
                        }
                        Err(e) => tracing::debug!(left, right = region.id, "auto-merge deferred: {e}"),
                    }
                    return;
                }
            }
            previous = Some((region.id, stats));
        }
    }
}

/// Where `region` should split, if it is over a threshold: the first live
/// key past half the threshold it exceeds.
pub fn split_point(reader: &MvccReader, region: &Region, cfg: &AutoSplit) -> Result<Option<Vec<u8>>> {
    let end = (!region.end_key.is_empty()).then_some(&region.end_key[..]);
    let (mut keys, mut bytes) = (0u64, 0u64);
    let (mut at_half_keys, mut at_half_bytes) = (None, None);
    let mut over = false;
    reader.visit_live(&region.start_key, end, u64::MAX, |k, v| {
        if keys > 0 {
            if at_half_keys.is_none() && keys >= cfg.max_keys / 2 {
                at_half_keys = Some(k.to_vec());
            }
            if at_half_bytes.is_none() && bytes >= cfg.max_bytes / 2 {
                at_half_bytes = Some(k.to_vec());
            }
        }
        keys += 1;
        bytes += (k.len() + v.len()) as u64;
        over = keys > cfg.max_keys || bytes > cfg.max_bytes;
        Ok(!over)
    })?;
    if !over {
        return Ok(None);
    }
    // The threshold exceeded decides; a region of one huge key has no point.
    let point = if keys > cfg.max_keys { at_half_keys.or(at_half_bytes) } else { at_half_bytes.or(at_half_keys) };
    Ok(point.filter(|k| *k != region.start_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_keys: u64, max_bytes: u64) -> AutoSplit {
        AutoSplit { max_keys, max_bytes, interval: Duration::from_secs(1), merge: false }
    }

    /// split_point over live keys with values of the given lengths, written
    /// (one revision each) into a temporary store.
    fn point(kvs: &[(&str, usize)], c: AutoSplit) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::Engine::open(dir.path()).unwrap();
        let mut wb = rocksdb::WriteBatch::default();
        for (i, (k, len)) in kvs.iter().enumerate() {
            let kv = crate::proto::mvccpb::KeyValue {
                key: k.as_bytes().to_vec(),
                value: vec![b'v'; *len],
                create_revision: i as i64 + 1,
                mod_revision: i as i64 + 1,
                version: 1,
                ..Default::default()
            };
            let key = crate::region::keys::encode(k.as_bytes(), i as u64 + 1);
            wb.put_cf(engine.mvcc(), key, crate::region::mvcc::encode_value(Some(&kv)));
        }
        engine.write(wb, false).unwrap();
        let reader = MvccReader::new(&engine.db, engine.mvcc(), None);
        let region = Region::default();
        split_point(&reader, &region, &c).unwrap().map(|k| String::from_utf8(k).unwrap())
    }

    #[test]
    fn a_region_under_both_thresholds_stays() {
        assert_eq!(point(&[("a", 1), ("b", 1), ("c", 1)], cfg(3, 1000)), None);
    }

    #[test]
    fn too_many_keys_split_where_half_the_threshold_ends() {
        let kvs: Vec<(String, usize)> = (0..10).map(|i| (format!("k{i}"), 1)).collect();
        let kvs: Vec<(&str, usize)> = kvs.iter().map(|(k, l)| (k.as_str(), *l)).collect();
        assert_eq!(point(&kvs, cfg(4, 1 << 20)).as_deref(), Some("k2"));
    }

    #[test]
    fn too_many_bytes_split_where_half_the_bytes_end() {
        let kvs = [("a", 100), ("b", 100), ("c", 100), ("d", 100)];
        // Each pair is 101 bytes: past 150 after "b", so the split is at "c".
        assert_eq!(point(&kvs, cfg(1000, 300)).as_deref(), Some("c"));
    }

    #[test]
    fn one_huge_key_has_no_split_point() {
        assert_eq!(point(&[("a", 1000)], cfg(1000, 100)), None);
    }
}
