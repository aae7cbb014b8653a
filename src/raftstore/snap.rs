//! Region snapshots (docs/cluster.md, "Snapshots"): what a leader sends a
//! peer whose log position was truncated away. A snapshot is the region as
//! of its applied index, read from one RocksDB snapshot (the apply state is
//! written atomically with the data it describes, so the two agree): its
//! MVCC rows, the event index entries of its keys, its txn locks, the txn
//! records, and for the meta group (which owns no keys) its leases, high
//! mark and member set.
//!
//! Generated off the pollers: raft asks for one, is told "temporarily
//! unavailable" while the builder thread makes it, and gets it the next
//! time it asks.

use std::sync::Arc;

use parking_lot::Mutex;
use prost::Message as _;
use raft::prelude::Snapshot;
use rocksdb::WriteBatch;

use crate::engine::{keys, Engine};
use crate::error::{Error, Result};
use crate::proto::tesserapb::{
    ApplyState, MemberSet, Region, SnapshotCf, SnapshotData, SnapshotHead, SnapshotRow, TruncatedState, TxnLock,
};
use crate::region::keys as mvcc_keys;

/// A region's snapshot source, shared between its storage (which raft
/// asks) and the thread that builds one.
#[derive(Clone)]
pub struct Snapshots {
    engine: Engine,
    region: u64,
    slot: Arc<Mutex<Slot>>,
}

enum Slot {
    Idle,
    Building,
    Built(Snapshot),
}

impl Snapshots {
    pub fn new(engine: Engine, region: u64) -> Snapshots {
        Snapshots { engine, region, slot: Arc::new(Mutex::new(Slot::Idle)) }
    }

    /// A snapshot at least as new as `first_index - 1` (the log's start),
    /// or `None` while one is being built (a build starts if none is).
    /// A built snapshot is handed out once: the message carries it.
    pub fn take(&self, first_index: u64) -> Option<Snapshot> {
        let mut slot = self.slot.lock();
        match std::mem::replace(&mut *slot, Slot::Idle) {
            Slot::Building => {
                *slot = Slot::Building;
                return None;
            }
            Slot::Built(s) if s.get_metadata().index + 1 >= first_index => return Some(s),
            Slot::Built(_) | Slot::Idle => {}
        }
        *slot = Slot::Building;
        if builder().send(self.clone()).is_err() {
            *slot = Slot::Idle;
        }
        None
    }

    fn build_now(&self) {
        let built = build(&self.engine, self.region);
        *self.slot.lock() = match built {
            Ok(s) => Slot::Built(s),
            Err(e) => {
                tracing::error!(region = self.region, "building a snapshot: {e}");
                Slot::Idle
            }
        };
    }
}

/// The one thread that builds snapshots, one at a time: a store whose
/// regions all need one at once (a member back after a long absence)
/// reads its data once per region, not all at the same time.
fn builder() -> &'static crossbeam::channel::Sender<Snapshots> {
    static BUILDER: std::sync::OnceLock<crossbeam::channel::Sender<Snapshots>> = std::sync::OnceLock::new();
    BUILDER.get_or_init(|| {
        let (tx, rx) = crossbeam::channel::unbounded::<Snapshots>();
        let spawned = std::thread::Builder::new().name("snapshot-build".into()).spawn(move || {
            for snapshots in rx {
                snapshots.build_now();
            }
        });
        if let Err(e) = spawned {
            tracing::error!("starting the snapshot builder: {e}");
        }
        tx
    })
}

fn decode_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("corrupt {what}: {e}"))
}

/// Builds the snapshot of `region` as of its persisted applied index.
pub fn build(engine: &Engine, region_id: u64) -> Result<Snapshot> {
    let db = &engine.db;
    let view = db.snapshot();
    let region = match view.get_cf(engine.meta(), keys::region(region_id))? {
        Some(b) => Region::decode(&b[..]).map_err(|e| decode_err("region", e))?,
        None => return Err(Error::RegionNotFound),
    };
    let apply_state = match view.get_cf(engine.meta(), keys::apply_state(region_id))? {
        Some(b) => ApplyState::decode(&b[..]).map_err(|e| decode_err("apply state", e))?,
        None => return Err(Error::Storage(format!("region {region_id} has no apply state"))),
    };
    let mut rows = Vec::new();
    let mut add = |cf: SnapshotCf, key: &[u8], value: &[u8]| {
        rows.push(SnapshotRow { cf: cf as i32, key: key.to_vec(), value: value.to_vec() })
    };
    // The meta group owns no keys (its range means nothing).
    if !region.meta {
        for item in view.iterator_cf_opt(engine.mvcc(), mvcc_rows_of(&region), rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            add(SnapshotCf::Mvcc, &k, &v);
        }
        // The event index is ordered by revision: every entry is looked at.
        for item in view.iterator_cf(engine.events(), rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            if crate::region::contains(&region, &v) {
                add(SnapshotCf::Events, &k, &v);
            }
        }
    }
    let mut prefixes = vec![keys::txn_locks_of(region_id).to_vec(), vec![keys::RECORD_PREFIX]];
    if region.meta {
        prefixes.push(vec![keys::LEASE_PREFIX]);
        for key in [keys::HIGH_MARK, keys::MEMBERS] {
            if let Some(value) = view.get_cf(engine.meta(), key)? {
                add(SnapshotCf::Meta, key, &value);
            }
        }
    }
    for prefix in prefixes {
        let from = rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward);
        for item in under(view.iterator_cf(engine.meta(), from), &prefix) {
            let (k, v) = item?;
            add(SnapshotCf::Meta, &k, &v);
        }
    }
    let mut snap = Snapshot::default();
    let meta = snap.mut_metadata();
    meta.index = apply_state.applied_index;
    meta.term = apply_state.applied_term;
    meta.set_conf_state(super::storage::conf_state(&region));
    snap.data = SnapshotData { region: Some(region), apply_state: Some(apply_state), rows }.encode_to_vec().into();
    Ok(snap)
}

/// Read options bounding an iterator to `region`'s MVCC rows.
fn mvcc_rows_of(region: &Region) -> rocksdb::ReadOptions {
    let mut ro = rocksdb::ReadOptions::default();
    ro.set_iterate_lower_bound(mvcc_keys::key_prefix(&region.start_key));
    if !region.end_key.is_empty() {
        ro.set_iterate_upper_bound(mvcc_keys::key_prefix(&region.end_key));
    }
    ro
}

type Row = std::result::Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>;

/// The `meta` rows of an iterator started at `prefix` that are under it:
/// a one-byte prefix tags 9-byte keys (a record or lease id), a longer one
/// is a region's locks.
fn under<'a>(iter: impl Iterator<Item = Row> + 'a, prefix: &'a [u8]) -> impl Iterator<Item = Row> + 'a {
    iter.take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
        .filter(move |item| item.as_ref().map_or(true, |(k, _)| prefix.len() > 1 || k.len() == 9))
}

/// The region a snapshot is of, without decoding its rows.
pub fn decode_region(snap: &Snapshot) -> Result<Region> {
    let head = SnapshotHead::decode(&snap.data[..]).map_err(|e| decode_err("snapshot", e))?;
    head.region.ok_or_else(|| Error::Storage("corrupt snapshot: no region".into()))
}

/// What a snapshot put in place (see [`install`]).
pub struct Installed {
    pub region: Region,
    pub apply_state: ApplyState,
    /// Where the restored peer's log starts.
    pub log_start: TruncatedState,
    /// The txn locks the region now holds.
    pub locks: Vec<TxnLock>,
    /// The meta group's high mark and member set, if the snapshot is of it.
    pub high_mark: Option<u64>,
    pub members: Option<MemberSet>,
    pub rows: usize,
}

/// Adds to `wb` everything that replaces this store's copy of a snapshot's
/// region by the snapshot: its rows (see [`write_rows`]), the region, its
/// apply state and log start, and its old log dropped.
pub fn install(engine: &Engine, snap: &Snapshot, wb: &mut WriteBatch) -> Result<Installed> {
    let data = SnapshotData::decode(&snap.data[..]).map_err(|e| decode_err("snapshot", e))?;
    let (Some(region), Some(apply_state)) = (data.region, data.apply_state) else {
        return Err(Error::Storage("corrupt snapshot: no region or apply state".into()));
    };
    let meta = snap.get_metadata();
    let log_start = TruncatedState { index: meta.index, term: meta.term };
    let locks = write_rows(engine, &region, &data.rows, wb)?;
    super::storage::restore(engine, &region, &apply_state, &log_start, wb);
    let meta_row = |key: &[u8]| {
        let row = data.rows.iter().find(|r| region.meta && r.cf == SnapshotCf::Meta as i32 && r.key == key);
        row.map(|r| r.value.clone())
    };
    let high_mark = meta_row(keys::HIGH_MARK).and_then(|v| v.try_into().ok()).map(u64::from_be_bytes);
    let members = match meta_row(keys::MEMBERS) {
        Some(v) => Some(MemberSet::decode(&v[..]).map_err(|e| decode_err("member set", e))?),
        None => None,
    };
    Ok(Installed { region, apply_state, log_start, locks, high_mark, members, rows: data.rows.len() })
}

/// Adds to `wb` what replaces this store's copy of `region` by the
/// snapshot's rows: the MVCC rows and txn locks it had in the range go (for
/// the meta group, its leases too); the event index and txn records are
/// only added to (their entries are the same on every store, and entries
/// the leader compacted away are never read below the compacted revision).
/// Returns the txn locks the region now holds.
fn write_rows(engine: &Engine, region: &Region, rows: &[SnapshotRow], wb: &mut WriteBatch) -> Result<Vec<TxnLock>> {
    if !region.meta {
        for item in engine.db.iterator_cf_opt(engine.mvcc(), mvcc_rows_of(region), rocksdb::IteratorMode::Start) {
            wb.delete_cf(engine.mvcc(), item?.0);
        }
    }
    let mut gone = vec![keys::txn_locks_of(region.id).to_vec()];
    if region.meta {
        gone.push(vec![keys::LEASE_PREFIX]);
    }
    for prefix in gone {
        let from = rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward);
        for item in under(engine.db.iterator_cf(engine.meta(), from), &prefix) {
            wb.delete_cf(engine.meta(), item?.0);
        }
    }
    let locks_prefix = keys::txn_locks_of(region.id);
    let mut locks = Vec::new();
    for row in rows {
        let cf = match SnapshotCf::try_from(row.cf) {
            Ok(SnapshotCf::Mvcc) => engine.mvcc(),
            Ok(SnapshotCf::Events) => engine.events(),
            Ok(SnapshotCf::Meta) => engine.meta(),
            Err(_) => return Err(Error::Storage(format!("corrupt snapshot: column family {}", row.cf))),
        };
        if row.cf == SnapshotCf::Meta as i32 && row.key.starts_with(&locks_prefix) {
            locks.push(TxnLock::decode(&row.value[..]).map_err(|e| decode_err("txn lock", e))?);
        }
        wb.put_cf(cf, &row.key, &row.value);
    }
    Ok(locks)
}
