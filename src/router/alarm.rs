//! Alarms and the storage quota (etcd's --quota-backend-bytes): when the
//! store outgrows its quota the NOSPACE alarm goes up, and from then on
//! puts, txns with puts and lease grants are refused with etcd's "database
//! space exceeded" until an operator disarms it (after compacting and
//! defragmenting). Deletes, compaction and reads keep working. Alarms are
//! persisted (fsynced), so they survive a restart, as in etcd.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::AlarmType;
use crate::raftstore::Store;

/// etcd's default quota: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// How stale the measured store size may be.
const SIZE_TTL: Duration = Duration::from_millis(100);

const ALARMS_KEY: &[u8] = b"alarms";

pub struct Alarms {
    store: Arc<Store>,
    quota: AtomicU64,
    active: Mutex<BTreeSet<i32>>,
    /// Whether NOSPACE is in `active` (read by every write without a lock).
    nospace: AtomicBool,
    size: AtomicU64,
    /// When `size` was measured: milliseconds since `born` (0: never).
    measured_ms: AtomicU64,
    born: Instant,
}

impl Alarms {
    /// The alarms persisted in `store`, with etcd's default quota.
    pub fn load(store: Arc<Store>) -> Result<Alarms> {
        let raw = store.engine.db.get_cf(store.engine.meta(), ALARMS_KEY)?.unwrap_or_default();
        let active: BTreeSet<i32> = raw.iter().map(|b| *b as i32).collect();
        Ok(Alarms {
            store,
            quota: AtomicU64::new(DEFAULT_QUOTA_BYTES),
            nospace: AtomicBool::new(active.contains(&(AlarmType::Nospace as i32))),
            active: Mutex::new(active),
            size: AtomicU64::new(0),
            measured_ms: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    /// Sets the quota (`--quota-backend-bytes`; 0 keeps etcd's default).
    pub fn set_quota(&self, bytes: u64) {
        if bytes > 0 {
            self.quota.store(bytes, Ordering::Relaxed);
        }
    }

    /// The store size, measured again when older than [`SIZE_TTL`] (by
    /// whichever write finds it stale first; the others use the old value).
    fn db_size(&self) -> u64 {
        let now = self.born.elapsed().as_millis() as u64 + 1;
        let last = self.measured_ms.load(Ordering::Relaxed);
        let stale = last == 0 || now.saturating_sub(last) > SIZE_TTL.as_millis() as u64;
        if stale && self.measured_ms.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            self.size.store(self.store.db_size(), Ordering::Relaxed);
        }
        self.size.load(Ordering::Relaxed)
    }

    /// Refuses a write that adds `bytes` while NOSPACE is up or when it
    /// would take the store past its quota (raising NOSPACE then). The
    /// alarm is the leader store's: another store raises nothing and
    /// passes such a write on to it (docs/serve-anywhere.md, "Writes
    /// through any store").
    pub fn check_write(&self, bytes: usize) -> Result<()> {
        let quota = self.quota.load(Ordering::Relaxed);
        let full = self.db_size() + bytes as u64 > quota;
        if !self.store.is_serving() && (full || self.nospace.load(Ordering::Acquire)) {
            return Err(Error::NeedsLeaderStore);
        }
        if self.nospace.load(Ordering::Acquire) {
            return Err(Error::NoSpace);
        }
        if full {
            tracing::warn!(quota, "store past its quota: raising the NOSPACE alarm");
            self.set(AlarmType::Nospace as i32, true)?;
            return Err(Error::NoSpace);
        }
        Ok(())
    }

    /// The alarms that are up.
    pub fn list(&self) -> Vec<i32> {
        self.active.lock().iter().copied().collect()
    }

    /// Raises (`up`) or clears an alarm; whether that changed anything.
    pub fn set(&self, alarm: i32, up: bool) -> Result<bool> {
        let mut active = self.active.lock();
        let changed = if up { active.insert(alarm) } else { active.remove(&alarm) };
        self.nospace.store(active.contains(&(AlarmType::Nospace as i32)), Ordering::Release);
        if changed {
            let raw: Vec<u8> = active.iter().map(|a| *a as u8).collect();
            let mut wb = rocksdb::WriteBatch::default();
            wb.put_cf(self.store.engine.meta(), ALARMS_KEY, raw);
            self.store.engine.write(wb, true)?;
        }
        Ok(changed)
    }
}
