//! The routing table: which region owns which keys. Pure and immutable; the
//! router swaps in a new table when regions change (copy on write). It
//! shares the store's regions (no copy) in a sorted vector: with 100,000
//! regions a rebuild after a split costs a sort of pointers, not a copy of
//! every region and key.

use std::sync::Arc;

use crate::proto::tesserapb::Region;

/// The part of a request's key range that one region owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub region: u64,
    pub epoch_version: u64,
    pub start: Vec<u8>,
    /// `None`: to the end of the keyspace.
    pub end: Option<Vec<u8>>,
}

#[derive(Debug, Default, Clone)]
pub struct RoutingTable {
    /// Sorted by start key.
    by_start: Vec<Arc<Region>>,
}

impl RoutingTable {
    pub fn new(regions: impl IntoIterator<Item = Region>) -> RoutingTable {
        RoutingTable::from_shared(regions.into_iter().map(Arc::new).collect())
    }

    /// A table of the store's own (shared) regions, in any order.
    pub fn from_shared(mut regions: Vec<Arc<Region>>) -> RoutingTable {
        regions.sort_unstable_by(|a, b| a.start_key.cmp(&b.start_key));
        RoutingTable { by_start: regions }
    }

    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }

    /// The region owning `key`.
    pub fn locate(&self, key: &[u8]) -> Option<&Region> {
        let after = self.by_start.partition_point(|r| r.start_key.as_slice() <= key);
        let r = self.by_start.get(after.checked_sub(1)?)?;
        crate::region::contains(r, key).then_some(&**r)
    }

    /// Cuts `[start, end)` at region boundaries, in key order. An empty or
    /// inverted range yields no pieces. `None` if some part has no region.
    pub fn split(&self, start: &[u8], end: Option<&[u8]>) -> Option<Vec<Piece>> {
        if end.is_some_and(|e| e <= start) {
            return Some(Vec::new());
        }
        let mut pieces = Vec::new();
        let mut from = start.to_vec();
        loop {
            let r = self.locate(&from)?;
            let region_end = (!r.end_key.is_empty()).then_some(r.end_key.as_slice());
            let stop_here = match (end, region_end) {
                (_, None) => true,
                (Some(e), Some(re)) => e <= re,
                (None, Some(_)) => false,
            };
            let piece_end = if stop_here { end.map(<[u8]>::to_vec) } else { region_end.map(<[u8]>::to_vec) };
            pieces.push(Piece {
                region: r.id,
                epoch_version: r.epoch.as_ref().map_or(0, |e| e.version),
                start: from,
                end: piece_end.clone(),
            });
            if stop_here {
                return Some(pieces);
            }
            from = piece_end.expect("a region that does not stop the range has an end");
        }
    }

    /// The piece holding exactly `key`.
    pub fn point(&self, key: &[u8]) -> Option<Piece> {
        let r = self.locate(key)?;
        Some(Piece {
            region: r.id,
            epoch_version: r.epoch.as_ref().map_or(0, |e| e.version),
            start: key.to_vec(),
            end: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::initial_regions;

    fn table() -> RoutingTable {
        RoutingTable::new(initial_regions(&[b"b".to_vec(), b"m".to_vec(), b"t".to_vec()], &[1]))
    }

    fn spans(p: &[Piece]) -> Vec<(u64, &[u8], Option<&[u8]>)> {
        p.iter().map(|p| (p.region, &p.start[..], p.end.as_deref())).collect()
    }

    #[test]
    fn locates_keys_at_boundaries() {
        let t = table();
        assert_eq!(t.locate(b"").unwrap().id, 1);
        assert_eq!(t.locate(b"a\xff").unwrap().id, 1);
        assert_eq!(t.locate(b"b").unwrap().id, 2);
        assert_eq!(t.locate(b"m").unwrap().id, 3);
        assert_eq!(t.locate(b"zzz").unwrap().id, 4);
    }

    #[test]
    fn splits_ranges_at_region_boundaries() {
        let t = table();
        assert_eq!(spans(&t.split(b"c", Some(b"d")).unwrap()), vec![(2, &b"c"[..], Some(&b"d"[..]))]);
        assert_eq!(
            spans(&t.split(b"a", Some(b"n")).unwrap()),
            vec![(1, &b"a"[..], Some(&b"b"[..])), (2, b"b", Some(b"m")), (3, b"m", Some(b"n"))]
        );
        assert_eq!(spans(&t.split(b"s", None).unwrap()), vec![(3, &b"s"[..], Some(&b"t"[..])), (4, b"t", None)]);
        assert_eq!(spans(&t.split(b"b", Some(b"m")).unwrap()), vec![(2, &b"b"[..], Some(&b"m"[..]))]);
        assert_eq!(t.split(b"", None).unwrap().len(), 4);
        assert!(t.split(b"x", Some(b"a")).unwrap().is_empty());
    }

    #[test]
    fn a_hole_in_the_table_is_reported() {
        let mut regions = initial_regions(&[b"m".to_vec()], &[1]);
        regions.remove(1);
        let t = RoutingTable::new(regions);
        assert!(t.split(b"a", None).is_none());
        assert!(t.locate(b"x").is_none());
    }
}
