//! Alarms and the storage quota (etcd's --quota-backend-bytes): when the
//! store outgrows its quota the NOSPACE alarm goes up, and from then on
//! puts, txns with puts and lease grants are refused with etcd's "database
//! space exceeded" until an operator disarms it (after compacting and
//! defragmenting). Deletes, compaction and reads keep working. Alarms are
//! persisted (fsynced), so they survive a restart, as in etcd.
//!
//! As in etcd an alarm belongs to a member: (member id, alarm type), the
//! quota's NOSPACE to this store's member, an operator's to the member
//! they name (0 for "all members"); any NOSPACE up refuses writes, and a
//! disarm clears the one alarm it names.

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

/// The alarms up before they had members: one byte per alarm type.
const OLD_ALARMS_KEY: &[u8] = b"alarms";
/// The alarms up: 9 bytes each, the member id (big-endian) and the type.
const ALARMS_KEY: &[u8] = b"member-alarms";

/// An alarm: the member it is for and its type (etcd's AlarmMember).
pub type Alarm = (u64, i32);

pub struct Alarms {
    store: Arc<Store>,
    /// This store's member id: the one its quota alarm is raised for.
    member: u64,
    quota: AtomicU64,
    active: Mutex<BTreeSet<Alarm>>,
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
        let member = store.member_id_of(store.store_id);
        let meta = store.engine.meta();
        let active: BTreeSet<Alarm> = match store.engine.db.get_cf(meta, ALARMS_KEY)? {
            Some(raw) => decode(&raw)?,
            // Alarms of an older data dir were this member's.
            None => store
                .engine
                .db
                .get_cf(meta, OLD_ALARMS_KEY)?
                .unwrap_or_default()
                .iter()
                .map(|b| (member, *b as i32))
                .collect(),
        };
        crate::metrics::etcd::ETCD.quota_backend_bytes.set(DEFAULT_QUOTA_BYTES as i64);
        Ok(Alarms {
            store,
            member,
            quota: AtomicU64::new(DEFAULT_QUOTA_BYTES),
            nospace: AtomicBool::new(has_nospace(&active)),
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
            crate::metrics::etcd::ETCD.quota_backend_bytes.set(bytes as i64);
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
            self.set((self.member, AlarmType::Nospace as i32), true)?;
            return Err(Error::NoSpace);
        }
        Ok(())
    }

    /// The alarms that are up, of type `kind` (every type for NONE), as
    /// etcd's alarm list gives them.
    pub fn list(&self, kind: i32) -> Vec<Alarm> {
        let every = kind == AlarmType::None as i32;
        self.active.lock().iter().copied().filter(|(_, a)| every || *a == kind).collect()
    }

    /// Raises (`up`) or clears an alarm; whether that changed anything.
    pub fn set(&self, alarm: Alarm, up: bool) -> Result<bool> {
        let mut active = self.active.lock();
        let changed = if up { active.insert(alarm) } else { active.remove(&alarm) };
        self.nospace.store(has_nospace(&active), Ordering::Release);
        if changed {
            let mut wb = rocksdb::WriteBatch::default();
            wb.put_cf(self.store.engine.meta(), ALARMS_KEY, encode(&active));
            wb.delete_cf(self.store.engine.meta(), OLD_ALARMS_KEY);
            self.store.engine.write(wb, true)?;
        }
        Ok(changed)
    }
}

fn has_nospace(active: &BTreeSet<Alarm>) -> bool {
    active.iter().any(|(_, a)| *a == AlarmType::Nospace as i32)
}

fn encode(active: &BTreeSet<Alarm>) -> Vec<u8> {
    active.iter().flat_map(|(member, a)| member.to_be_bytes().into_iter().chain([*a as u8])).collect()
}

fn decode(raw: &[u8]) -> Result<BTreeSet<Alarm>> {
    if raw.len() % 9 != 0 {
        return Err(Error::Storage("corrupt alarms".into()));
    }
    Ok(raw.chunks(9).map(|c| (u64::from_be_bytes(c[..8].try_into().expect("8 bytes")), c[8] as i32)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_round_trip_with_their_members() {
        let active: BTreeSet<Alarm> = [(0, 1), (7, 1), (u64::MAX, 2)].into_iter().collect();
        assert_eq!(decode(&encode(&active)).unwrap(), active);
        assert!(decode(&[1, 2, 3]).is_err());
        assert!(has_nospace(&active));
        assert!(!has_nospace(&[(3, AlarmType::Corrupt as i32)].into_iter().collect()));
    }
}
