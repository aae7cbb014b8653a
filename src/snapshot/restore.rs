//! An etcd snapshot file into a new tessera data dir (one member).
//!
//! The data dir is bootstrapped as a new store would be (a new cluster id;
//! one region, or those of `--initial-split-keys`), then filled: every
//! version of the `key` bucket becomes an MVCC version at its revision with
//! its event-index entry at (revision, sub-revision), every lease a lease
//! record, the compaction point the store's compacted revision (a
//! compaction etcd scheduled but did not finish is finished here), and the
//! regions' applied revision the snapshot's current revision, so the next
//! write takes the revision after it, as on etcd.

use std::io::Read;
use std::path::Path;

use prost::Message as _;
use sha2::{Digest, Sha256};

use super::etcd::{self, Revision};
use super::reader::BoltFile;
use super::SnapshotError;
use crate::engine::{keys as meta_keys, Engine};
use crate::proto::mvccpb::KeyValue;
use crate::proto::tesserapb::LeaseRecord;
use crate::raftstore::{storage, StoreConfig};
use crate::region::{events, mvcc};

/// A batch of restored rows is written every this many versions.
const BATCH: usize = 8192;

pub struct RestoreOptions {
    /// The member's name (`tessera serve --name` must give the same).
    pub name: String,
    /// Regions of the new store, as `tessera serve --initial-split-keys`.
    pub initial_split_keys: Vec<Vec<u8>>,
    /// Restore a file without etcd's SHA-256 trailer (a copied `member/snap/db`).
    pub skip_hash_check: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions { name: "default".into(), initial_split_keys: Vec::new(), skip_hash_check: false }
    }
}

/// What a restore brought over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The store's current revision after it.
    pub revision: u64,
    /// Its compacted revision (-1: never compacted).
    pub compacted: i64,
    /// Versions of keys (tombstones included).
    pub versions: u64,
    pub leases: u64,
    /// Auth users and roles left behind (auth was off in the snapshot).
    pub dropped_users: u64,
    pub dropped_roles: u64,
}

/// Restores `snapshot` into `data_dir`, which must be absent or empty.
pub fn restore(snapshot: &Path, data_dir: &Path, opts: &RestoreOptions) -> Result<Restored, SnapshotError> {
    let db = open_checked(snapshot, opts.skip_hash_check)?;
    if etcd::get(&db, etcd::AUTH, etcd::AUTH_ENABLED)?.as_deref() == Some(&[1u8][..]) {
        return Err(SnapshotError::Unsupported(
            "the snapshot has authentication enabled, which tessera does not support yet: disable it in etcd (etcdctl auth disable) and take the snapshot again".into(),
        ));
    }
    if data_dir.exists()
        && std::fs::read_dir(data_dir).map_err(|e| SnapshotError::io("reading", data_dir, e))?.next().is_some()
    {
        return Err(SnapshotError::io("refusing to restore into a non-empty directory", data_dir, ""));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| SnapshotError::io("creating", data_dir, e))?;
    let result = fill(&db, data_dir, opts);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(data_dir); // it was empty: leave nothing half made
    }
    result
}

/// Opens the database in `path`, checking etcd's SHA-256 trailer.
pub fn open_checked(path: &Path, skip_hash_check: bool) -> Result<BoltFile, SnapshotError> {
    let len = std::fs::metadata(path).map_err(|e| SnapshotError::io("reading", path, e))?.len();
    let mut f = std::fs::File::open(path).map_err(|e| SnapshotError::io("reading", path, e))?;
    let mut magic = [0u8; 8];
    if f.read_exact(&mut magic).is_ok() && &magic == b"TSSNAP01" {
        return Err(SnapshotError::Unsupported(
            "this is a snapshot in tessera's own format of before 2026-12-03, which is no longer read: restore it with that tessera, start it, and take a new snapshot (docs/ops.md)".into(),
        ));
    }
    // etcd's rule: a database is whole pages, so 32 bytes past a multiple of 512 are the trailer.
    let has_hash = len % 512 == 32;
    if !has_hash && !skip_hash_check {
        return Err(SnapshotError::Format("snapshot missing hash but --skip-hash-check=false".into()));
    }
    let db_len = if has_hash { len - 32 } else { len };
    if has_hash && !skip_hash_check {
        let mut h = Sha256::new();
        let mut body = std::fs::File::open(path).map_err(|e| SnapshotError::io("reading", path, e))?.take(db_len);
        std::io::copy(&mut body, &mut h).map_err(|e| SnapshotError::io("reading", path, e))?;
        let mut trailer = [0u8; 32];
        body.into_inner().read_exact(&mut trailer).map_err(|e| SnapshotError::io("reading", path, e))?;
        if h.finalize()[..] != trailer {
            return Err(SnapshotError::Format("snapshot hash mismatch (corrupt or truncated)".into()));
        }
    }
    BoltFile::open(path, db_len)
}

fn fill(db: &BoltFile, data_dir: &Path, opts: &RestoreOptions) -> Result<Restored, SnapshotError> {
    let engine = Engine::open(data_dir)?;
    let mut cfg = StoreConfig::new(data_dir);
    cfg.name = opts.name.clone();
    cfg.initial_split_keys = opts.initial_split_keys.clone();
    let regions = crate::raftstore::bootstrap(&engine, &cfg)?;

    let (versions, newest) = copy_versions(db, &engine)?;
    let leases = copy_leases(db, &engine)?;
    let compacted = compaction_point(db)?;
    let revision = newest.max(compacted.max(0) as u64).max(1);

    let mut wb = rocksdb::WriteBatch::default();
    if compacted >= 0 {
        wb.put_cf(engine.meta(), meta_keys::COMPACTED, compacted.to_be_bytes());
    }
    for r in regions.iter().filter(|r| !r.meta) {
        let mut apply = storage::load_apply_state(&engine, r.id)?;
        apply.max_revision = revision;
        apply.compacted_revision = compacted.max(0) as u64;
        wb.put_cf(engine.meta(), meta_keys::apply_state(r.id), apply.encode_to_vec());
    }
    engine.write(wb, true)?;
    if compacted > 0 {
        let mut wb = rocksdb::WriteBatch::default();
        mvcc::MvccReader::new(&engine.db, engine.mvcc(), None).compact(b"", None, compacted as u64, &mut wb)?;
        engine.write(wb, true)?;
        events::compact(&engine.db, engine.events(), compacted as u64)?;
    }
    Ok(Restored {
        revision,
        compacted,
        versions,
        leases,
        dropped_users: etcd::count(db, etcd::AUTH_USERS)?,
        dropped_roles: etcd::count(db, etcd::AUTH_ROLES)?,
    })
}

/// The `key` bucket into MVCC versions and event-index entries; how many,
/// and the newest revision.
fn copy_versions(db: &BoltFile, engine: &Engine) -> Result<(u64, u64), SnapshotError> {
    let (mut versions, mut newest) = (0u64, 0u64);
    let mut wb = rocksdb::WriteBatch::default();
    etcd::for_each(db, etcd::KEY, &mut |k, v| {
        let bad = |why: String| SnapshotError::Format(format!("key bucket: {why}"));
        let rev = Revision::decode(k).ok_or_else(|| bad(format!("not a revision: {k:02x?}")))?;
        let kv = KeyValue::decode(v).map_err(|e| bad(format!("revision {}: {e}", rev.main)))?;
        let sub = u32::try_from(rev.sub).map_err(|_| bad(format!("sub-revision {} too large", rev.sub)))?;
        if kv.key.is_empty() || rev.main == 0 {
            return Err(bad(format!("revision {}: an empty key or revision 0", rev.main)));
        }
        mvcc::write_version(&mut wb, engine.mvcc(), &kv.key, rev.main, (!rev.tombstone).then_some(&kv));
        events::write(&mut wb, engine.events(), rev.main, sub, &kv.key);
        versions += 1;
        newest = newest.max(rev.main);
        if versions % BATCH as u64 == 0 {
            engine.write(std::mem::take(&mut wb), false)?;
        }
        Ok(())
    })?;
    engine.write(wb, false)?;
    Ok((versions, newest))
}

fn copy_leases(db: &BoltFile, engine: &Engine) -> Result<u64, SnapshotError> {
    let mut wb = rocksdb::WriteBatch::default();
    let mut n = 0;
    etcd::for_each(db, etcd::LEASE, &mut |_, v| {
        let l = etcd::decode_lease(v)?;
        let record = LeaseRecord { id: l.id, ttl: l.ttl };
        wb.put_cf(engine.meta(), meta_keys::lease(l.id), record.encode_to_vec());
        n += 1;
        Ok(())
    })?;
    engine.write(wb, false)?;
    Ok(n)
}

/// The compaction point (-1: none): the scheduled one, which etcd itself
/// finishes at start when the finished one lags it.
fn compaction_point(db: &BoltFile) -> Result<i64, SnapshotError> {
    let mut point = crate::sequencer::NEVER_COMPACTED;
    for name in [etcd::SCHEDULED_COMPACT, etcd::FINISHED_COMPACT] {
        if let Some(v) = etcd::get(db, etcd::META, name)? {
            let rev = Revision::decode(&v)
                .ok_or_else(|| SnapshotError::Format(format!("meta bucket: bad {}", String::from_utf8_lossy(name))))?;
            point = point.max(rev.main as i64);
        }
    }
    Ok(point)
}
