//! The revision-ordered event index that watchers read.
//!
//! Every applied change also writes `(revision, sub-revision) -> user key`
//! to the `events` column family, in the same batch as the MVCC version it
//! points at. A watcher reads the index from its next revision up to the
//! resolved revision (below which every change is applied), so it sees
//! every change once, in revision order, however many regions wrote them;
//! the key's value at that revision comes from the MVCC data.

use rocksdb::{ColumnFamily, ReadOptions, WriteBatch, DB};

use super::mvcc::MvccReader;
use crate::error::{Error, Result};
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};
use crate::proto::tesserapb::Span;
use crate::region::span;

fn event_key(revision: u64, sub: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&revision.to_be_bytes());
    k[8..].copy_from_slice(&sub.to_be_bytes());
    k
}

/// Adds the index entry of one change to `wb`.
pub fn write(wb: &mut WriteBatch, cf: &ColumnFamily, revision: u64, sub: u32, key: &[u8]) {
    wb.put_cf(cf, event_key(revision, sub), key);
}

/// Drops the index below `revision` (after a compaction at it).
pub fn compact(db: &DB, cf: &ColumnFamily, revision: u64) -> Result<()> {
    db.delete_range_cf(cf, event_key(0, 0), event_key(revision, 0))?;
    Ok(())
}

/// The changes of revisions `from..=to` in order, `(revision, key)`, cut
/// after the first whole revision that brings the count to `max` (one
/// revision's changes are never split).
pub fn changes(db: &DB, cf: &ColumnFamily, from: u64, to: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut ro = ReadOptions::default();
    ro.set_iterate_lower_bound(event_key(from, 0).to_vec());
    ro.set_iterate_upper_bound(event_key(to.saturating_add(1), 0).to_vec());
    let mut it = db.raw_iterator_cf_opt(cf, ro);
    it.seek_to_first();
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    while it.valid() {
        let k = it.key().expect("valid iterator");
        let revision = u64::from_be_bytes(k[..8].try_into().map_err(|_| Error::Storage("corrupt event key".into()))?);
        if out.len() >= max && out.last().is_some_and(|(r, _)| *r != revision) {
            break;
        }
        out.push((revision, it.value().expect("valid iterator").to_vec()));
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// Calls `f` with `(revision, sub-revision, key)` of every change of
/// revisions `from..=to`, in order, as `snapshot` holds them.
pub fn for_each_change(
    db: &DB,
    cf: &ColumnFamily,
    snapshot: &rocksdb::Snapshot<'_>,
    (from, to): (u64, u64),
    f: &mut dyn FnMut(u64, u32, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut ro = ReadOptions::default();
    ro.set_snapshot(snapshot);
    ro.set_iterate_lower_bound(event_key(from, 0).to_vec());
    ro.set_iterate_upper_bound(event_key(to.saturating_add(1), 0).to_vec());
    let mut it = db.raw_iterator_cf_opt(cf, ro);
    it.seek_to_first();
    while it.valid() {
        let k = it.key().expect("valid iterator");
        let Ok(k) = <[u8; 12]>::try_from(k) else { return Err(Error::Storage("corrupt event key".into())) };
        let (rev, sub) =
            (u64::from_be_bytes(k[..8].try_into().expect("8")), u32::from_be_bytes(k[8..].try_into().expect("4")));
        f(rev, sub, it.value().expect("valid iterator"))?;
        it.next();
    }
    it.status()?;
    Ok(())
}

/// What a watcher asked to see of each change.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// `None`: an empty range, which matches nothing.
    pub span: Option<Span>,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
}

impl EventFilter {
    pub fn covers(&self, key: &[u8]) -> bool {
        self.span.as_ref().is_some_and(|s| key >= s.start.as_slice() && span::end_of(s).is_none_or(|e| key < e))
    }

    /// `event` as this watcher gets it: `None` if filtered out; without
    /// the previous version unless asked for.
    pub fn admit(&self, event: &Event) -> Option<Event> {
        let put = event.r#type == EventType::Put as i32;
        if (put && self.no_put) || (!put && self.no_delete) {
            return None;
        }
        let mut ev = event.clone();
        if !self.prev_kv {
            ev.prev_kv = None;
        }
        Some(ev)
    }
}

/// The etcd event of the change of `key` at `revision` (with the version
/// before it when `prev_kv`).
pub fn event(reader: &MvccReader, revision: u64, key: &[u8], prev_kv: bool) -> Result<Event> {
    let (kind, kv) = match reader.get(key, revision)? {
        Some(kv) if kv.mod_revision as u64 == revision => (EventType::Put, kv),
        // A tombstone (or history compacted away under a lagging watcher,
        // which the caller detects by the compacted revision).
        _ => (EventType::Delete, KeyValue { key: key.to_vec(), mod_revision: revision as i64, ..Default::default() }),
    };
    let prev_kv = if prev_kv { reader.get(key, revision - 1)? } else { None };
    Ok(Event { r#type: kind as i32, kv: Some(kv), prev_kv })
}
