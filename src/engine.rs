//! The one RocksDB instance of a store and the layout of its column families.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `raft` | region id, `0x01`, log index (all big-endian) | raft `Entry` |
//! | `raft` | region id, `0x02` | raft `HardState` |
//! | `raft` | region id, `0x03` | [`TruncatedState`](crate::proto::tesserapb::TruncatedState) |
//! | `meta` | `r`, region id | [`Region`](crate::proto::tesserapb::Region) |
//! | `meta` | `a`, region id | [`ApplyState`](crate::proto::tesserapb::ApplyState) |
//! | `meta` | `l`, region id, txn id | [`TxnLock`](crate::proto::tesserapb::TxnLock) held in that region |
//! | `meta` | `x`, txn id | [`TxnRecord`](crate::proto::tesserapb::TxnRecord) of a committed cross-region txn |
//! | `meta` | `e`, lease id | [`LeaseRecord`](crate::proto::tesserapb::LeaseRecord) of an etcd lease |
//! | `meta` | `compacted` | store-wide compacted revision (u64 BE) |
//! | `meta` | `cluster` | cluster id (u64 BE), chosen at bootstrap |
//! | `mvcc` | see [`crate::region::keys`] | [`crate::region::mvcc`] value |
//! | `events` | revision, sub-revision (u64, u32 BE) | user key: the revision-ordered index watchers read ([`crate::region::events`]) |

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, DB};

pub const CF_RAFT: &str = "raft";
pub const CF_META: &str = "meta";
pub const CF_MVCC: &str = "mvcc";
pub const CF_EVENTS: &str = "events";
/// Every column family of a store.
pub const ALL_CFS: [&str; 4] = [CF_RAFT, CF_META, CF_MVCC, CF_EVENTS];

/// A shared handle to the store's RocksDB.
#[derive(Clone)]
pub struct Engine {
    pub db: Arc<DB>,
}

impl Engine {
    pub fn open(dir: &Path) -> Result<Engine, rocksdb::Error> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        // Raft log writes are small and synced; keep the WAL for them.
        opts.set_max_total_wal_size(256 << 20);
        let mut mvcc = Options::default();
        mvcc.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_RAFT, Options::default()),
            ColumnFamilyDescriptor::new(CF_META, Options::default()),
            ColumnFamilyDescriptor::new(CF_MVCC, mvcc),
            ColumnFamilyDescriptor::new(CF_EVENTS, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        Ok(Engine { db: Arc::new(db) })
    }

    pub fn cf(&self, name: &str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    pub fn raft(&self) -> &ColumnFamily {
        self.cf(CF_RAFT)
    }
    pub fn meta(&self) -> &ColumnFamily {
        self.cf(CF_META)
    }
    pub fn mvcc(&self) -> &ColumnFamily {
        self.cf(CF_MVCC)
    }
    pub fn events(&self) -> &ColumnFamily {
        self.cf(CF_EVENTS)
    }

    /// Writes `wb`; with `sync` the WAL is fsynced before returning, which
    /// also makes every earlier unsynced write durable (the WAL is one file).
    pub fn write(&self, wb: rocksdb::WriteBatch, sync: bool) -> Result<(), rocksdb::Error> {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo)
    }
}

pub mod keys {
    //! Keys of the `raft` and `meta` column families.

    pub fn raft_entry(region: u64, index: u64) -> [u8; 17] {
        let mut k = [0u8; 17];
        k[..8].copy_from_slice(&region.to_be_bytes());
        k[8] = 0x01;
        k[9..].copy_from_slice(&index.to_be_bytes());
        k
    }
    pub fn hard_state(region: u64) -> [u8; 9] {
        suffixed(region, 0x02)
    }
    pub fn truncated_state(region: u64) -> [u8; 9] {
        suffixed(region, 0x03)
    }
    fn suffixed(region: u64, tag: u8) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[..8].copy_from_slice(&region.to_be_bytes());
        k[8] = tag;
        k
    }
    pub fn region(region: u64) -> [u8; 9] {
        prefixed(b'r', region)
    }
    pub fn apply_state(region: u64) -> [u8; 9] {
        prefixed(APPLY_STATE_PREFIX, region)
    }
    fn prefixed(tag: u8, region: u64) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = tag;
        k[1..].copy_from_slice(&region.to_be_bytes());
        k
    }
    /// A cross-region txn's lock in one region.
    pub fn txn_lock(region: u64, txn: u64) -> [u8; 17] {
        let mut k = [0u8; 17];
        k[..9].copy_from_slice(&prefixed(LOCK_PREFIX, region));
        k[9..].copy_from_slice(&txn.to_be_bytes());
        k
    }
    /// The locks of one region: the first 9 bytes of [`txn_lock`].
    pub fn txn_locks_of(region: u64) -> [u8; 9] {
        prefixed(LOCK_PREFIX, region)
    }
    pub fn txn_record(txn: u64) -> [u8; 9] {
        prefixed(RECORD_PREFIX, txn)
    }
    pub fn lease(id: i64) -> [u8; 9] {
        prefixed(LEASE_PREFIX, id as u64)
    }
    pub const REGION_PREFIX: u8 = b'r';
    pub const APPLY_STATE_PREFIX: u8 = b'a';
    pub const LOCK_PREFIX: u8 = b'l';
    pub const RECORD_PREFIX: u8 = b'x';
    pub const LEASE_PREFIX: u8 = b'e';
    pub const COMPACTED: &[u8] = b"compacted";
    pub const CLUSTER: &[u8] = b"cluster";
    /// The cluster's members (src/raftstore/members.rs).
    pub const MEMBERS: &[u8] = b"members";
    /// This store's id in the cluster.
    pub const STORE_ID: &[u8] = b"store-id";
    /// The sequencer's high mark (docs/cluster.md), applied from the meta group.
    pub const HIGH_MARK: &[u8] = b"high-mark";
    /// The end of the block of region id sequence numbers this store
    /// reserved (src/raftstore/region_ids.rs).
    pub const REGION_ID_BLOCK: &[u8] = b"region-id-block";
}
