//! A peer's Raft log and state: raft-rs's `MemStorage` as the in-memory
//! view Raft reads, mirrored to the `raft` column family. The log is loaded
//! at start from the last truncation point and truncated as entries apply.

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::Storage as _;
use rocksdb::WriteBatch;

use crate::engine::{keys, Engine};
use crate::error::{Error, Result};
use crate::proto::tesserapb::{ApplyState, RaftCommand, Region, TruncatedState};

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
}

pub fn load(engine: &Engine, region: &Region) -> Result<LoadedPeer> {
    let id = region.id;
    let db = &engine.db;
    let hard_state = match db.get_cf(engine.raft(), keys::hard_state(id))? {
        Some(b) => HardState::parse_from_bytes(&b).map_err(|e| corrupt("hard state", e))?,
        None => HardState::default(),
    };
    let truncated = match db.get_cf(engine.raft(), keys::truncated_state(id))? {
        Some(b) => TruncatedState::decode(&b[..]).map_err(|e| corrupt("truncated state", e))?,
        None => TruncatedState::default(),
    };
    let apply_state = load_apply_state(engine, id)?;
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
    let mut entries = Vec::new();
    let mut unapplied_revisions = Vec::new();
    let mut split_ids = Vec::new();
    let iter = db.iterator_cf(
        engine.raft(),
        rocksdb::IteratorMode::From(&keys::raft_entry(id, truncated.index + 1), rocksdb::Direction::Forward),
    );
    for item in iter {
        let (k, v) = item?;
        if k.len() != 17 || k[..9] != keys::raft_entry(id, 0)[..9] {
            break;
        }
        let entry = Entry::parse_from_bytes(&v).map_err(|e| corrupt("raft entry", e))?;
        // Conf changes carry no command (raft-rs's ConfChange).
        let command = entry.get_entry_type() == raft::prelude::EntryType::EntryNormal && !entry.data.is_empty();
        if entry.index > apply_state.applied_index && command {
            let cmd = RaftCommand::decode(&entry.data[..]).map_err(|e| corrupt("raft command", e))?;
            if cmd.revision > 0 {
                unapplied_revisions.push(cmd.revision);
            }
            split_ids.extend(cmd.split.map(|s| s.new_region_id));
        }
        entries.push(entry);
    }
    storage.wl().append(&entries).map_err(|e| corrupt("raft log", e))?;
    storage.wl().set_hardstate(hard_state);
    let storage = PeerStorage { log: storage, snapshots: super::snap::Snapshots::new(engine.clone(), id) };
    Ok(LoadedPeer { storage, apply_state, truncated, unapplied_revisions, split_ids })
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
    let init = TruncatedState { index: INIT_INDEX, term: INIT_INDEX };
    let mut hs = HardState::default();
    hs.term = init.term;
    hs.commit = init.index;
    save_hard_state(engine, region.id, &hs, wb)?;
    wb.put_cf(engine.raft(), keys::truncated_state(region.id), init.encode_to_vec());
    let apply = ApplyState {
        applied_index: init.index,
        applied_term: init.term,
        max_revision: parent.max_revision,
        compacted_revision: parent.compacted_revision,
        fence_term: parent.fence_term,
    };
    wb.put_cf(engine.meta(), keys::apply_state(region.id), apply.encode_to_vec());
    wb.put_cf(engine.meta(), keys::region(region.id), region.encode_to_vec());
    Ok(())
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
