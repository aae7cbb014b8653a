//! tessera's data at one revision as an etcd snapshot file.
//!
//! Everything is read through one RocksDB snapshot. The `key` bucket is
//! revision ordered, as tessera's event index is: the versions at or above
//! the compacted revision come from the index (with their sub-revisions),
//! those below it (the one version per key a compaction keeps, whose index
//! entries it dropped) from a scan of the MVCC data, numbered within their
//! revision in key order.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use prost::Message as _;
use sha2::{Digest, Sha256};

use super::etcd::{self, Revision};
use super::writer::BoltWriter;
use super::SnapshotError;
use crate::engine::{keys as meta_keys, Engine};
use crate::proto::mvccpb::KeyValue;
use crate::proto::tesserapb::LeaseRecord;
use crate::region::{events, keys, mvcc};

type Entries = Vec<Result<(Vec<u8>, Vec<u8>), SnapshotError>>;

/// Writes the history up to `revision` (every revision at or below it
/// applied in `engine`) to `out` as etcd's snapshot: the bbolt database,
/// then the SHA-256 of it that Maintenance.Snapshot appends. Its size.
pub fn save(engine: &Engine, revision: u64, out: &Path) -> Result<u64, SnapshotError> {
    let snap = engine.db.snapshot();
    let compacted = match snap.get_cf(engine.meta(), meta_keys::COMPACTED)? {
        Some(b) => i64::from_be_bytes(
            b.as_slice().try_into().map_err(|_| SnapshotError::Store("corrupt compacted revision".into()))?,
        ),
        None => crate::sequencer::NEVER_COMPACTED,
    };
    // Read back for the trailer's hash, hence read and write.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(|e| SnapshotError::io("creating", out, e))?;
    let mut w = BoltWriter::new(BufWriter::new(file))?;
    for name in etcd::WRITTEN {
        let entries = match name {
            etcd::KEY => key_bucket(engine, &snap, compacted, revision)?,
            etcd::META => meta_bucket(compacted, revision),
            etcd::LEASE => lease_bucket(engine, &snap)?,
            _ => Vec::new(),
        };
        w.bucket(name, entries)?;
    }
    let (file, len) = w.finish()?;
    let mut file = file.into_inner().map_err(|e| SnapshotError::write(e.into_error()))?;
    append_sha256(&mut file, len)?;
    file.sync_all().map_err(SnapshotError::write)?;
    Ok(len + 32)
}

/// Every version at or below `upto`, in revision order, as etcd keys them.
fn key_bucket(
    engine: &Engine,
    snap: &rocksdb::Snapshot<'_>,
    compacted: i64,
    upto: u64,
) -> Result<Entries, SnapshotError> {
    let from = compacted.max(0) as u64;
    let mut out: Entries = below(engine, snap, from)?;
    events::for_each_change(&engine.db, engine.events(), snap, (from, upto), &mut |rev, sub, key| {
        // The index outlives a tombstone that a compaction at exactly `from` dropped.
        if let Some(value) = snap.get_cf(engine.mvcc(), keys::encode(key, rev))? {
            out.push(entry(key, rev, sub as u64, &value));
        }
        Ok(())
    })?;
    Ok(out)
}

/// The versions below `revision` (what compaction kept), in revision then key order.
fn below(engine: &Engine, snap: &rocksdb::Snapshot<'_>, revision: u64) -> Result<Entries, SnapshotError> {
    if revision == 0 {
        return Ok(Vec::new());
    }
    let mut found: Vec<(u64, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut it = snap.raw_iterator_cf(engine.mvcc());
    it.seek_to_first();
    while it.valid() {
        let stored = it.key().expect("valid iterator");
        let (key, rev) = keys::decode(stored).ok_or_else(|| SnapshotError::Store("corrupt mvcc key".into()))?;
        if rev < revision {
            found.push((rev, key, it.value().expect("valid iterator").to_vec()));
        }
        it.next();
    }
    it.status()?;
    found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut out = Vec::with_capacity(found.len());
    let mut sub = 0;
    for (i, (rev, key, value)) in found.iter().enumerate() {
        sub = if i > 0 && found[i - 1].0 == *rev { sub + 1 } else { 0 };
        out.push(entry(key, *rev, sub, value));
    }
    Ok(out)
}

/// One version as the `key` bucket holds it.
fn entry(key: &[u8], rev: u64, sub: u64, stored: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SnapshotError> {
    let kv = mvcc::decode_value(key, stored)?;
    let tombstone = kv.is_none();
    let kv = kv.unwrap_or_else(|| KeyValue { key: key.to_vec(), ..Default::default() });
    Ok((Revision { main: rev, sub, tombstone }.encode(), kv.encode_to_vec()))
}

fn meta_bucket(compacted: i64, revision: u64) -> Entries {
    // etcd's restore replaces the consistent index; tessera has no one raft
    // index for the whole store, and the revision only grows, as it does.
    let mut out = vec![(etcd::CONSISTENT_INDEX.to_vec(), revision.to_be_bytes().to_vec())];
    if compacted >= 0 {
        let rev = etcd::compact_rev(compacted as u64);
        out.push((etcd::FINISHED_COMPACT.to_vec(), rev.clone()));
        out.push((etcd::SCHEDULED_COMPACT.to_vec(), rev));
    }
    out.sort();
    out.into_iter().map(Ok).collect()
}

fn lease_bucket(engine: &Engine, snap: &rocksdb::Snapshot<'_>) -> Result<Entries, SnapshotError> {
    let mut out = Vec::new();
    let mut it = snap.raw_iterator_cf(engine.meta());
    it.seek([meta_keys::LEASE_PREFIX]);
    while it.valid() {
        let k = it.key().expect("valid iterator");
        if k.first() != Some(&meta_keys::LEASE_PREFIX) || k.len() != 9 {
            break;
        }
        let r = LeaseRecord::decode(it.value().expect("valid iterator"))
            .map_err(|e| SnapshotError::Store(format!("corrupt lease: {e}")))?;
        out.push(etcd::lease_entry(r.id, r.ttl));
        it.next();
    }
    it.status()?;
    // etcd keys leases by the id's big-endian bytes; tessera's meta keys are the same bytes.
    out.sort();
    Ok(out.into_iter().map(Ok).collect())
}

/// Appends the SHA-256 of the file's first `len` bytes (etcd's trailer).
fn append_sha256(file: &mut File, len: u64) -> Result<(), SnapshotError> {
    file.seek(SeekFrom::Start(0)).map_err(SnapshotError::write)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut r = (&mut *file).take(len);
    loop {
        let n = r.read(&mut buf).map_err(SnapshotError::write)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    file.seek(SeekFrom::Start(len)).map_err(SnapshotError::write)?;
    file.write_all(&h.finalize()).map_err(SnapshotError::write)
}
