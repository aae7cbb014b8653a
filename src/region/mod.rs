//! Per-region state: metadata (id, key range, epoch, peers), the MVCC
//! encoding and reader, and the evaluation of etcd writes into effects.
//! Nothing here knows about threads or Raft.

pub mod eval;
pub mod events;
pub mod keys;
pub mod mvcc;
pub mod range;
pub mod span;
pub mod split_keys;

use crate::proto::tesserapb::{Peer, Region, RegionEpoch};

/// Whether `key` lies in `[region.start_key, region.end_key)`.
pub fn contains(region: &Region, key: &[u8]) -> bool {
    key >= region.start_key.as_slice() && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

/// Whether two regions' key ranges share a key (the meta group owns no
/// user key).
pub fn overlaps(a: &Region, b: &Region) -> bool {
    if a.meta || b.meta {
        return false;
    }
    let before_end = |key: &[u8], r: &Region| r.end_key.is_empty() || key < r.end_key.as_slice();
    before_end(&a.start_key, b) && before_end(&b.start_key, a)
}

/// Builds the regions of a fresh single-store keyspace cut at `split_keys`
/// (sorted, deduplicated, empty keys dropped), ids from 1.
pub fn initial_regions(split_keys: &[Vec<u8>], stores: &[u64]) -> Vec<Region> {
    let mut cuts: Vec<Vec<u8>> = split_keys.iter().filter(|k| !k.is_empty()).cloned().collect();
    cuts.sort();
    cuts.dedup();
    let mut bounds = vec![Vec::new()];
    bounds.extend(cuts);
    bounds.push(Vec::new());
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| Region {
            id: i as u64 + 1,
            start_key: w[0].clone(),
            end_key: w[1].clone(),
            epoch: Some(RegionEpoch { version: 1, conf_ver: 1 }),
            peers: peers_on(stores),
            meta: false,
            merging_into: 0,
        })
        .collect()
}

/// One peer on each store; a peer's raft id is its store id.
fn peers_on(stores: &[u64]) -> Vec<Peer> {
    stores.iter().map(|&s| Peer { id: s, store_id: s }).collect()
}

/// The meta group of a fresh cluster, with region id `id`.
pub fn meta_region(id: u64, stores: &[u64]) -> Region {
    Region {
        id,
        epoch: Some(RegionEpoch { version: 1, conf_ver: 1 }),
        peers: peers_on(stores),
        meta: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_regions_cover_the_keyspace() {
        let regions = initial_regions(&[b"m".to_vec(), b"c".to_vec(), b"m".to_vec(), vec![]], &[1]);
        let ranges: Vec<(&[u8], &[u8])> = regions.iter().map(|r| (&r.start_key[..], &r.end_key[..])).collect();
        assert_eq!(ranges, vec![(&b""[..], &b"c"[..]), (b"c", b"m"), (b"m", b"")]);
        assert!(contains(&regions[1], b"c") && !contains(&regions[1], b"m"));
        assert!(contains(&regions[2], b"\xff\xff"));
    }
}
