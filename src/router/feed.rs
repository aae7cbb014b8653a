//! The history the server streams, waits on and hashes: the one read
//! interface of the watch, election, lock and maintenance services, so
//! that none of them reaches into the store, its sequencer or its RocksDB.
//!
//! Today the history is the leader store's: its sequencer resolves
//! revisions and its event index holds every region's changes
//! (docs/cluster.md). Watches on any store (docs/serve-anywhere.md, step 5)
//! replace what is behind these methods with per-region feeds merged at a
//! frontier; the services keep calling the same ones.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use crate::error::Result;
use crate::proto::mvccpb::Event;
use crate::raftstore::Store;
use crate::region::events;
use crate::region::mvcc::MvccReader;

#[derive(Clone)]
pub struct Feed {
    store: Arc<Store>,
}

/// One read of the history: `(revision, key, event)` in revision order,
/// the event `None` where no one wanted the key, complete up to `upto`.
pub struct Changes {
    pub events: Vec<(u64, Vec<u8>, Option<Event>)>,
    pub upto: u64,
}

impl Feed {
    pub fn new(store: Arc<Store>) -> Feed {
        Feed { store }
    }

    /// Every revision at or below this is applied or void here: what may
    /// be delivered. `None` where this store's history is not complete: on
    /// a cluster only the leader store's is; a stream elsewhere ends and
    /// its client resumes through another member. Read before the check:
    /// a store that stopped being the leader store takes revisions from the
    /// new one without applying them, and its own resolved revision may
    /// then pass them (found by the fault harness, seed 13016: a watch
    /// catching up on a deposed leader store skipped the new one's first
    /// revision).
    pub fn frontier(&self) -> Option<u64> {
        let resolved = self.store.sequencer.resolved();
        self.store.is_serving().then_some(resolved)
    }

    /// Sees every move of the resolved revision.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.store.sequencer.subscribe_resolved()
    }

    /// The newest revision handed out (the header of a watch created or
    /// cancelled now).
    pub fn newest(&self) -> u64 {
        self.store.sequencer.last()
    }

    /// History below this is gone.
    pub fn compacted(&self) -> i64 {
        self.store.sequencer.compacted()
    }

    /// Whether there are other members (then [`Self::frontier`] can end
    /// without the resolved revision moving).
    pub fn clustered(&self) -> bool {
        self.store.clustered()
    }

    /// The changes of revisions `from..=to`, cut after the first whole
    /// revision that brings them to `max`; the event of a change is read
    /// (with its previous version when `prev_kv`) only where `wanted`.
    pub fn changes(
        &self,
        from: u64,
        to: u64,
        max: usize,
        wanted: impl Fn(u64, &[u8]) -> bool,
        prev_kv: bool,
    ) -> Result<Changes> {
        let engine = &self.store.engine;
        let changes = events::changes(&engine.db, engine.events(), from, to, max)?;
        // A batch cut short ends at its last whole revision.
        let upto = if changes.len() >= max { changes.last().map_or(to, |(r, _)| *r) } else { to };
        let snapshot = engine.db.snapshot();
        let reader = MvccReader::new(&engine.db, engine.mvcc(), Some(&snapshot));
        let mut out = Vec::with_capacity(changes.len());
        for (rev, key) in changes {
            let ev = if wanted(rev, &key) { Some(events::event(&reader, rev, &key, prev_kv)?) } else { None };
            out.push((rev, key, ev));
        }
        Ok(Changes { events: out, upto })
    }

    /// The hash of every key's history at `revision` (0: the current one)
    /// and the revision it was taken at. Blocking: reads everything.
    pub fn hash_at(&self, revision: i64) -> Result<(u32, u64)> {
        let at = self.store.sequencer.check_read(revision, self.store.current_revision())?;
        let reader = MvccReader::new(&self.store.engine.db, self.store.engine.mvcc(), None);
        Ok((reader.hash(at)?, at))
    }

    /// Writes etcd's snapshot of the history up to `revision` (at most the
    /// [`Self::frontier`]) to `path` ([`crate::snapshot`]); its size. Blocking.
    pub fn snapshot_to(&self, revision: u64, path: &Path) -> Result<u64> {
        Ok(crate::snapshot::save(&self.store.engine, revision, path)?)
    }

    /// Where snapshots are made before they are streamed.
    pub fn scratch_dir(&self) -> std::path::PathBuf {
        self.store.data_dir.join("snapshot-tmp")
    }
}
