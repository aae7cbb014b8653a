//! Region ids no two splits anywhere in the cluster ever share
//! (docs/cluster.md, "Region ids").
//!
//! Any store can propose a split (the admin call lands wherever the client
//! sent it), so each store takes ids from its own share of the id space:
//! `seq << STORE_BITS | store_id`. `seq` only grows, even across restarts:
//! a block of it is written (synced) before any id of the block is handed
//! out, and a restarted store continues after the last block. Before this,
//! a store counted from the highest region id it knew: two stores could
//! split at the same id, and a restarted store could take again the id of
//! a region merged away meanwhile.

use parking_lot::Mutex;

use crate::engine::{keys, Engine};
use crate::error::{Error, Result};

/// The low bits of a region id: the store that took it.
pub const STORE_BITS: u32 = 16;
/// How many sequence numbers one synced write reserves.
const BLOCK: u64 = 1024;

pub struct RegionIds {
    store_id: u64,
    /// (next sequence number, end of the reserved block).
    next: Mutex<(u64, u64)>,
}

impl RegionIds {
    /// Continues after the last reserved block of this store, and above
    /// `known` (the highest region id it has: ids taken before shares
    /// existed were counted densely).
    pub fn open(engine: &Engine, store_id: u64, known: u64) -> Result<RegionIds> {
        if store_id == 0 || store_id >= 1 << STORE_BITS {
            return Err(Error::Storage(format!("store id {store_id} does not fit in region ids")));
        }
        let reserved = match engine.db.get_cf(engine.meta(), keys::REGION_ID_BLOCK)? {
            Some(b) => u64::from_be_bytes(
                b.as_slice().try_into().map_err(|_| Error::Storage("corrupt region id block".into()))?,
            ),
            None => 0,
        };
        let start = reserved.max((known >> STORE_BITS) + 1);
        Ok(RegionIds { store_id, next: Mutex::new((start, start)) })
    }

    /// `n` new region ids (reserving, with a synced write, what they need).
    pub fn take(&self, engine: &Engine, n: usize) -> Result<Vec<u64>> {
        let mut next = self.next.lock();
        let (seq, end) = *next;
        let want = seq + n as u64;
        if want > end {
            let new_end = want + BLOCK;
            let mut wb = rocksdb::WriteBatch::default();
            wb.put_cf(engine.meta(), keys::REGION_ID_BLOCK, new_end.to_be_bytes());
            engine.write(wb, true)?;
            next.1 = new_end;
        }
        next.0 = want;
        Ok((seq..want).map(|s| s << STORE_BITS | self.store_id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_two_stores_never_meet_and_a_restart_takes_none_again() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let a = RegionIds::open(&engine, 1, 40).unwrap();
        let first = a.take(&engine, 3).unwrap();
        assert!(first.iter().all(|id| *id > 40 && id & 0xffff == 1), "{first:?}");
        let b_dir = tempfile::tempdir().unwrap();
        let b_engine = Engine::open(b_dir.path()).unwrap();
        let b = RegionIds::open(&b_engine, 2, 40).unwrap();
        let theirs = b.take(&b_engine, 3).unwrap();
        assert!(theirs.iter().all(|id| !first.contains(id)));
        drop(a);
        // Restarted knowing fewer regions (the newest merged away).
        let again = RegionIds::open(&engine, 1, 40).unwrap().take(&engine, 2000).unwrap();
        assert!(again.iter().all(|id| !first.contains(id) && *id > first[2]));
        let after = RegionIds::open(&engine, 1, 0).unwrap().take(&engine, 1).unwrap();
        assert!(after[0] > again[1999], "a block is reserved before its ids are used");
    }
}
