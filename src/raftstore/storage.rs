//! A peer's Raft log and state: raft-rs's `MemStorage` as the in-memory
//! view Raft reads, mirrored to the `raft` column family. The log is loaded
//! at start from the last truncation point and truncated as entries apply.

use std::collections::{BTreeMap, HashMap};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::Storage as _;
use rocksdb::WriteBatch;

use crate::engine::{keys, Engine};
use crate::error::{Error, Result};
use crate::proto::tesserapb::{ApplyState, RaftCommand, Region, Span, TruncatedState, TxnLock};

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("corrupt {what}: {e}"))
}

pub fn conf_state(region: &Region) -> ConfState {
    let mut cs = ConfState::default();
    cs.set_voters(region.peers.iter().map(|p| p.id).collect());
    cs
}

/// raft-rs's `MemStorage` as the log, with snapshots of the region's data
/// built off the pollers ([`super::snap`]); `MemStorage` would make one
/// without the data.
pub struct PeerStorage {
    pub log: MemStorage,
    pub snapshots: super::snap::Snapshots,
}

impl std::ops::Deref for PeerStorage {
    type Target = MemStorage;
    fn deref(&self) -> &MemStorage {
        &self.log
    }
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<raft::RaftState> {
        self.log.initial_state()
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: raft::GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.log.entries(low, high, max_size, context)
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.log.term(idx)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.log.first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.log.last_index()
    }
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let first = self.log.first_index()?;
        self.snapshots.take(first).ok_or(raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable))
    }
}

/// What a peer needs from disk to start.
pub struct LoadedPeer {
    pub storage: PeerStorage,
    pub apply_state: ApplyState,
    pub truncated: TruncatedState,
    /// Revisions of logged commands not yet applied (they will be).
    pub unapplied_revisions: Vec<u64>,
    /// Region ids that logged splits not yet applied will create.
    pub split_ids: Vec<u64>,
    /// The cross-region txn locks the region holds: txn id -> spans.
    pub locks: BTreeMap<u64, Vec<Span>>,
}

/// What a region's peer persisted: the parts [`LoadedPeer`] is built from.
#[derive(Default)]
struct Persisted {
    hard_state: HardState,
    truncated: TruncatedState,
    apply_state: ApplyState,
    /// Its raft log after the truncation point, in index order.
    entries: Vec<Entry>,
    locks: BTreeMap<u64, Vec<Span>>,
}

pub fn load(engine: &Engine, region: &Region) -> Result<LoadedPeer> {
    let id = region.id;
    let db = &engine.db;
    let mut p = Persisted::default();
    if let Some(b) = db.get_cf(engine.raft(), keys::hard_state(id))? {
        p.hard_state = HardState::parse_from_bytes(&b).map_err(|e| corrupt("hard state", e))?;
    }
    if let Some(b) = db.get_cf(engine.raft(), keys::truncated_state(id))? {
        p.truncated = TruncatedState::decode(&b[..]).map_err(|e| corrupt("truncated state", e))?;
    }
    p.apply_state = load_apply_state(engine, id)?;
    let from = keys::raft_entry(id, p.truncated.index + 1);
    let iter = db.iterator_cf(engine.raft(), rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward));
    for item in iter {
        let (k, v) = item?;
        if k.len() != 17 || k[..9] != keys::raft_entry(id, 0)[..9] {
            break;
        }
        p.entries.push(Entry::parse_from_bytes(&v).map_err(|e| corrupt("raft entry", e))?);
    }
    p.locks = load_locks(engine, id)?;
    build(engine, region, p)
}

/// Every region's [`load`] in three scans (the raft column family, the
/// meta column family's apply states and txn locks) instead of five reads
/// per region: a restart with 100,000 regions reads them in well under a
/// second.
pub fn load_all(engine: &Engine, regions: Vec<Region>) -> Result<Vec<(Region, LoadedPeer)>> {
    let mut found: HashMap<u64, Persisted> = regions.iter().map(|r| (r.id, Persisted::default())).collect();
    for item in engine.db.iterator_cf(engine.raft(), rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        let Some(p) = k.get(..8).and_then(|id| found.get_mut(&u64::from_be_bytes(id.try_into().expect("8 bytes"))))
        else {
            continue;
        };
        match (k.len(), k[8]) {
            (17, 0x01) => p.entries.push(Entry::parse_from_bytes(&v).map_err(|e| corrupt("raft entry", e))?),
            (9, 0x02) => p.hard_state = HardState::parse_from_bytes(&v).map_err(|e| corrupt("hard state", e))?,
            (9, 0x03) => p.truncated = TruncatedState::decode(&v[..]).map_err(|e| corrupt("truncated state", e))?,
            _ => {}
        }
    }
    scan_meta(engine, keys::APPLY_STATE_PREFIX, 9, |id, v| {
        if let Some(p) = found.get_mut(&id) {
            p.apply_state = ApplyState::decode(v).map_err(|e| corrupt("apply state", e))?;
        }
        Ok(())
    })?;
    scan_meta(engine, keys::LOCK_PREFIX, 17, |id, v| {
        if let Some(p) = found.get_mut(&id) {
            let lock = TxnLock::decode(v).map_err(|e| corrupt("txn lock", e))?;
            p.locks.insert(lock.txn_id, lock.spans);
        }
        Ok(())
    })?;
    regions
        .into_iter()
        .map(|region| {
            let mut p = found.remove(&region.id).unwrap_or_default();
            // Entries at or below the truncation point (none are kept) are not the log's.
            p.entries.retain(|e| e.index > p.truncated.index);
            let peer = build(engine, &region, p)?;
            Ok((region, peer))
        })
        .collect()
}

/// Calls `f(region id, value)` for every key of the meta column family
/// that is `tag`, a region id, and more bytes up to `len` in all.
fn scan_meta(engine: &Engine, tag: u8, len: usize, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
    for item in engine.db.prefix_iterator_cf(engine.meta(), [tag]) {
        let (k, v) = item?;
        if k.first() != Some(&tag) {
            break;
        }
        if k.len() == len {
            f(u64::from_be_bytes(k[1..9].try_into().expect("8 bytes")), &v)?;
        }
    }
    Ok(())
}

/// A peer's starting state from what it persisted.
fn build(engine: &Engine, region: &Region, p: Persisted) -> Result<LoadedPeer> {
    let Persisted { hard_state, truncated, apply_state, entries, locks } = p;
    let storage = if truncated.index == 0 {
        MemStorage::new_with_conf_state(conf_state(region))
    } else {
        let storage = MemStorage::new();
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = truncated.index;
        snap.mut_metadata().term = truncated.term;
        snap.mut_metadata().set_conf_state(conf_state(region));
        storage.wl().apply_snapshot(snap).map_err(|e| corrupt("raft log start", e))?;
        storage
    };
    let mut unapplied_revisions = Vec::new();
    let mut split_ids = Vec::new();
    for entry in &entries {
        // Conf changes carry no command (raft-rs's ConfChange).
        let command = entry.get_entry_type() == raft::prelude::EntryType::EntryNormal && !entry.data.is_empty();
        if entry.index > apply_state.applied_index && command {
            let cmd = RaftCommand::decode(&entry.data[..]).map_err(|e| corrupt("raft command", e))?;
            if cmd.revision > 0 {
                unapplied_revisions.push(cmd.revision);
            }
            if let Some(split) = cmd.split {
                split_ids.push(split.new_region_id);
                split_ids.extend(split.more_region_ids);
            }
        }
    }
    storage.wl().append(&entries).map_err(|e| corrupt("raft log", e))?;
    storage.wl().set_hardstate(hard_state);
    let storage = PeerStorage { log: storage, snapshots: super::snap::Snapshots::new(engine.clone(), region.id) };
    Ok(LoadedPeer { storage, apply_state, truncated, unapplied_revisions, split_ids, locks })
}

/// What [`load`] reads back right after [`init_peer`] wrote `region`'s
/// starting state (from a split of a region whose apply state is
/// `parent`, or bootstrapped), built without reading: a bulk bootstrap or
/// split creates many regions at once.
pub fn fresh(engine: &Engine, region: &Region, parent: &ApplyState) -> Result<LoadedPeer> {
    let truncated = init_truncated();
    let log = MemStorage::new();
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = truncated.index;
    snap.mut_metadata().term = truncated.term;
    snap.mut_metadata().set_conf_state(conf_state(region));
    log.wl().apply_snapshot(snap).map_err(|e| Error::Storage(format!("raft log start: {e}")))?;
    log.wl().set_hardstate(init_hard_state());
    Ok(LoadedPeer {
        storage: PeerStorage { log, snapshots: super::snap::Snapshots::new(engine.clone(), region.id) },
        apply_state: init_apply_state(parent),
        truncated,
        unapplied_revisions: Vec::new(),
        split_ids: Vec::new(),
        locks: BTreeMap::new(),
    })
}

/// The cross-region txn locks a region holds (persisted at apply).
fn load_locks(engine: &Engine, region: u64) -> Result<BTreeMap<u64, Vec<Span>>> {
    let prefix = keys::txn_locks_of(region);
    let mut locks = BTreeMap::new();
    for item in engine.db.prefix_iterator_cf(engine.meta(), prefix) {
        let (k, v) = item?;
        if !k.starts_with(&prefix) {
            break;
        }
        let lock = TxnLock::decode(&v[..]).map_err(|e| corrupt("txn lock", e))?;
        locks.insert(lock.txn_id, lock.spans);
    }
    Ok(locks)
}

/// Adds `entries` (from a Ready) to `wb`, removing any longer stale suffix
/// the new entries replace, and to the in-memory log.
pub fn append(
    engine: &Engine,
    storage: &MemStorage,
    region: u64,
    entries: &[Entry],
    wb: &mut WriteBatch,
) -> Result<()> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(());
    };
    let old_last = storage.last_index().map_err(|e| Error::Storage(e.to_string()))?;
    for e in entries {
        let bytes = e.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?;
        wb.put_cf(engine.raft(), keys::raft_entry(region, e.index), bytes);
    }
    if old_last > last.index {
        wb.delete_range_cf(
            engine.raft(),
            keys::raft_entry(region, last.index + 1),
            keys::raft_entry(region, old_last + 1),
        );
    }
    debug_assert!(first.index > 0);
    storage.wl().append(entries).map_err(|e| Error::Storage(e.to_string()))
}

pub fn save_hard_state(engine: &Engine, region: u64, hs: &HardState, wb: &mut WriteBatch) -> Result<()> {
    let bytes = hs.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?;
    wb.put_cf(engine.raft(), keys::hard_state(region), bytes);
    Ok(())
}

/// Drops log entries up to `to` (inclusive) from disk, and those below it
/// from memory: `MemStorage` must keep one entry, or it forgets its last
/// index (on disk the truncated state records it instead).
pub fn truncate(
    engine: &Engine,
    storage: &MemStorage,
    region: u64,
    from: u64,
    to: &TruncatedState,
    wb: &mut WriteBatch,
) -> Result<()> {
    wb.delete_range_cf(engine.raft(), keys::raft_entry(region, from), keys::raft_entry(region, to.index + 1));
    wb.put_cf(engine.raft(), keys::truncated_state(region), to.encode_to_vec());
    storage.wl().compact(to.index).map_err(|e| Error::Storage(e.to_string()))
}

/// Where the Raft log of a new region (bootstrapped, or created by a split)
/// starts: its peers all begin here, at once, with nothing to replicate
/// (the data is already in every store). No log holds the entries before
/// it, so a store that lacks the region (one added by MemberAdd) always
/// gets it by a snapshot.
pub const INIT_INDEX: u64 = 5;

/// Writes the starting Raft and apply state of a new `region`: from a
/// split of a region whose apply state is `parent`, or bootstrapped
/// (`parent` empty).
pub fn init_peer(engine: &Engine, region: &Region, parent: &ApplyState, wb: &mut WriteBatch) -> Result<()> {
    save_hard_state(engine, region.id, &init_hard_state(), wb)?;
    wb.put_cf(engine.raft(), keys::truncated_state(region.id), init_truncated().encode_to_vec());
    wb.put_cf(engine.meta(), keys::apply_state(region.id), init_apply_state(parent).encode_to_vec());
    wb.put_cf(engine.meta(), keys::region(region.id), region.encode_to_vec());
    Ok(())
}

fn init_truncated() -> TruncatedState {
    TruncatedState { index: INIT_INDEX, term: INIT_INDEX }
}

fn init_hard_state() -> HardState {
    let mut hs = HardState::default();
    hs.term = INIT_INDEX;
    hs.commit = INIT_INDEX;
    hs
}

impl ApplyState {
    /// Every plain write of the region at or below this revision is in
    /// this state (see `max_write_revision` in tessera.proto).
    pub fn covered_write_revision(&self) -> u64 {
        match self.max_write_revision {
            0 => self.max_revision,
            r => r,
        }
    }
}

fn init_apply_state(parent: &ApplyState) -> ApplyState {
    ApplyState {
        applied_index: INIT_INDEX,
        applied_term: INIT_INDEX,
        max_revision: parent.max_revision,
        compacted_revision: parent.compacted_revision,
        fence_term: parent.fence_term,
        max_write_revision: parent.max_write_revision,
    }
}

/// Writes the Raft and apply state of a peer restored from a snapshot at
/// `at` (its log starts after it; what it had is dropped).
pub fn restore(engine: &Engine, region: &Region, apply: &ApplyState, at: &TruncatedState, wb: &mut WriteBatch) {
    let id = region.id;
    wb.delete_range_cf(engine.raft(), keys::raft_entry(id, 0), keys::raft_entry(id, u64::MAX));
    wb.put_cf(engine.raft(), keys::truncated_state(id), at.encode_to_vec());
    wb.put_cf(engine.meta(), keys::apply_state(id), apply.encode_to_vec());
    wb.put_cf(engine.meta(), keys::region(id), region.encode_to_vec());
}

/// Deletes everything a region's peer persisted (a merge's source, once the
/// target took it over): its metadata, Raft log and state, apply state.
pub fn delete_peer_state(engine: &Engine, region: u64, wb: &mut WriteBatch) {
    wb.delete_range_cf(engine.raft(), keys::raft_entry(region, 0), keys::raft_entry(region, u64::MAX));
    wb.delete_cf(engine.raft(), keys::hard_state(region));
    wb.delete_cf(engine.raft(), keys::truncated_state(region));
    wb.delete_cf(engine.meta(), keys::apply_state(region));
    wb.delete_cf(engine.meta(), keys::region(region));
}

/// A region's persisted apply state (a merge reads its source's).
pub fn load_apply_state(engine: &Engine, region: u64) -> Result<ApplyState> {
    match engine.db.get_cf(engine.meta(), keys::apply_state(region))? {
        Some(b) => ApplyState::decode(&b[..]).map_err(|e| corrupt("apply state", e)),
        None => Ok(ApplyState::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tesserapb::{Peer, RegionEpoch, SplitCommand};

    /// A region created without reads starts exactly as one loaded from
    /// what `init_peer` wrote.
    #[test]
    fn fresh_is_what_load_reads_after_init_peer() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let region = Region {
            id: 7,
            start_key: b"k1".to_vec(),
            end_key: b"k2".to_vec(),
            epoch: Some(RegionEpoch { version: 3, conf_ver: 1 }),
            peers: vec![Peer { id: 1, store_id: 1 }, Peer { id: 2, store_id: 2 }],
            ..Default::default()
        };
        let parent = ApplyState {
            applied_index: 90,
            applied_term: 8,
            max_revision: 41,
            compacted_revision: 12,
            fence_term: 3,
            max_write_revision: 39,
        };
        let mut wb = WriteBatch::default();
        init_peer(&engine, &region, &parent, &mut wb).unwrap();
        engine.write(wb, false).unwrap();
        let (loaded, fresh) = (load(&engine, &region).unwrap(), fresh(&engine, &region, &parent).unwrap());
        assert_eq!(loaded.apply_state, fresh.apply_state);
        assert_eq!(fresh.apply_state.max_revision, 41);
        assert_eq!(fresh.apply_state.covered_write_revision(), 39, "a txn commit's 40 or 41 is not a plain write's");
        assert_eq!(loaded.truncated, fresh.truncated);
        assert_eq!(loaded.locks, fresh.locks);
        assert!(loaded.unapplied_revisions.is_empty() && loaded.split_ids.is_empty());
        let state = |p: &LoadedPeer| {
            let s = p.storage.initial_state().unwrap();
            let log = &p.storage.log;
            (
                s.hard_state,
                s.conf_state,
                log.first_index().unwrap(),
                log.last_index().unwrap(),
                log.term(INIT_INDEX).unwrap(),
            )
        };
        assert_eq!(state(&loaded), state(&fresh));
    }

    fn entry(index: u64, term: u64, cmd: &RaftCommand) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = cmd.encode_to_vec().into();
        e
    }

    /// The bulk load of a restart reads what each region's own load reads:
    /// log entries past the truncation point (none below it), unapplied
    /// revisions and split ids, hard state, apply state and txn locks.
    #[test]
    fn load_all_reads_what_load_reads() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let regions: Vec<Region> = crate::region::initial_regions(&[b"b".to_vec(), b"c".to_vec()], &[1]);
        let mut wb = WriteBatch::default();
        for r in &regions {
            init_peer(&engine, r, &ApplyState::default(), &mut wb).unwrap();
        }
        let split = SplitCommand {
            split_key: b"bb".to_vec(),
            new_region_id: 9,
            more_keys: vec![b"bc".to_vec()],
            more_region_ids: vec![10],
        };
        let cmds = [
            RaftCommand { revision: 4, ..Default::default() },
            RaftCommand { revision: 5, ..Default::default() },
            RaftCommand { split: Some(split), ..Default::default() },
        ];
        let log: Vec<Entry> = cmds.iter().enumerate().map(|(i, c)| entry(6 + i as u64, 6, c)).collect();
        for e in &log {
            wb.put_cf(engine.raft(), keys::raft_entry(2, e.index), e.write_to_bytes().unwrap());
        }
        let mut hs = HardState::default();
        hs.term = 6;
        hs.commit = 8;
        save_hard_state(&engine, 2, &hs, &mut wb).unwrap();
        let applied = ApplyState { applied_index: 6, applied_term: 6, max_revision: 4, ..Default::default() };
        wb.put_cf(engine.meta(), keys::apply_state(2), applied.encode_to_vec());
        let lock = TxnLock { txn_id: 77, ..Default::default() };
        wb.put_cf(engine.meta(), keys::txn_lock(3, 77), lock.encode_to_vec());
        // Region 1's log was truncated at 7: an entry left below is not its log.
        wb.put_cf(engine.raft(), keys::raft_entry(1, 6), entry(6, 5, &cmds[0]).write_to_bytes().unwrap());
        wb.put_cf(engine.raft(), keys::truncated_state(1), TruncatedState { index: 7, term: 6 }.encode_to_vec());
        engine.write(wb, false).unwrap();

        let all = load_all(&engine, regions.clone()).unwrap();
        assert_eq!(all.len(), 3);
        for (region, bulk) in &all {
            let one = load(&engine, region).unwrap();
            assert_eq!(bulk.apply_state, one.apply_state, "region {}", region.id);
            assert_eq!(bulk.truncated, one.truncated);
            assert_eq!(bulk.unapplied_revisions, one.unapplied_revisions);
            assert_eq!(bulk.split_ids, one.split_ids);
            assert_eq!(bulk.locks, one.locks);
            let log = |p: &LoadedPeer| {
                let (first, last) = (p.storage.first_index().unwrap(), p.storage.last_index().unwrap());
                (first, last, p.storage.initial_state().unwrap().hard_state)
            };
            assert_eq!(log(bulk), log(&one));
        }
        assert_eq!(all[1].1.unapplied_revisions, vec![5]);
        assert_eq!(all[1].1.split_ids, vec![9, 10]);
        assert_eq!(all[1].1.storage.last_index().unwrap(), 8);
        assert!(all[2].1.locks.contains_key(&77));
        assert_eq!(all[0].1.storage.first_index().unwrap(), 8);
    }
}
