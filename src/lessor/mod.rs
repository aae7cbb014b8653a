//! The lessor: etcd's leases (the Lease API), not the leader lease of
//! `src/lease`.
//!
//! Grants and revokes are replicated state: they go through the meta
//! group's raft log and are applied here ([`Lessor::apply`]), persisted in
//! the meta column family with the apply. What a lease's keys are is derived
//! state: every applied change tells the lessor which lease its key left
//! and joined ([`Lessor::on_change`]), and a start rebuilds the index from
//! the newest version of every key (as etcd does). How long a lease has
//! left lives in memory on the leader only: at start every lease gets its
//! full TTL again, as etcd gives them on a leader change.
//!
//! Revoking is two steps (see `src/router/lease.rs`): the lease is removed
//! through the log (from then on no put can attach to it), then its keys are
//! deleted by one write at one revision. A crash between the two leaves
//! keys attached to a lease that no longer exists: [`Lessor::orphans`]
//! lists them and start-up deletes them.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prost::Message as _;
use rocksdb::WriteBatch;

use crate::engine::{keys, Engine};
use crate::error::{Error, Result};
use crate::proto::tesserapb::{lease_op, LeaseOp, LeaseRecord};
use crate::region::mvcc::{MvccReader, ScanOptions};

/// etcd's largest lease TTL in seconds.
pub const MAX_TTL: i64 = 9_000_000_000;

struct Lease {
    ttl: i64,
    expiry: Instant,
}

#[derive(Default)]
pub struct Lessor {
    leases: Mutex<HashMap<i64, Lease>>,
    /// Lease id -> keys attached to it (applied state).
    attached: Mutex<HashMap<i64, BTreeSet<Vec<u8>>>>,
}

impl Lessor {
    /// Loads the persisted leases and rebuilds the key index from the
    /// newest version of every key.
    pub fn load(engine: &Engine) -> Result<Lessor> {
        let leases = Lessor::load_leases(engine)?;
        let reader = MvccReader::new(&engine.db, engine.mvcc(), None);
        let mut attached: HashMap<i64, BTreeSet<Vec<u8>>> = HashMap::new();
        for kv in reader.scan(b"", None, u64::MAX, ScanOptions::default())?.kvs {
            if kv.lease != 0 {
                attached.entry(kv.lease).or_default().insert(kv.key);
            }
        }
        Ok(Lessor { leases: Mutex::new(leases), attached: Mutex::new(attached) })
    }

    fn load_leases(engine: &Engine) -> Result<HashMap<i64, Lease>> {
        let now = Instant::now();
        let mut leases = HashMap::new();
        for item in engine.db.prefix_iterator_cf(engine.meta(), [keys::LEASE_PREFIX]) {
            let (k, v) = item?;
            if k.first() != Some(&keys::LEASE_PREFIX) || k.len() != 9 {
                break;
            }
            let r = LeaseRecord::decode(&v[..]).map_err(|e| Error::Storage(format!("corrupt lease: {e}")))?;
            leases.insert(r.id, Lease { ttl: r.ttl, expiry: deadline(now, r.ttl) });
        }
        Ok(leases)
    }

    /// Reads the leases again from the engine (after the meta group was
    /// restored from a snapshot); each gets its full TTL.
    pub fn reload_leases(&self, engine: &Engine) -> Result<()> {
        let fresh = Lessor::load_leases(engine)?;
        *self.leases.lock() = fresh;
        Ok(())
    }

    /// Rebuilds the key index of `region`'s keys from the engine (after
    /// the region was restored from a snapshot).
    pub fn reattach(&self, engine: &Engine, region: &crate::proto::tesserapb::Region) -> Result<()> {
        let end = (!region.end_key.is_empty()).then_some(&region.end_key[..]);
        let reader = MvccReader::new(&engine.db, engine.mvcc(), None);
        let kvs = reader.scan(&region.start_key, end, u64::MAX, ScanOptions::default())?.kvs;
        let mut attached = self.attached.lock();
        for keys in attached.values_mut() {
            keys.retain(|k| !crate::region::contains(region, k));
        }
        attached.retain(|_, keys| !keys.is_empty());
        for kv in kvs.into_iter().filter(|kv| kv.lease != 0) {
            attached.entry(kv.lease).or_default().insert(kv.key);
        }
        Ok(())
    }

    pub fn exists(&self, id: i64) -> bool {
        self.leases.lock().contains_key(&id)
    }

    /// Whether every lease of `ids` exists. Checked on the leader store
    /// after a write took its revision: a revoke applied before the check
    /// refuses the write, and one applied after it waits for the write (it
    /// deletes what is attached once every revision handed out before it is
    /// resolved), so no key stays attached to a revoked lease.
    pub fn all_exist(&self, ids: &[i64]) -> bool {
        if ids.is_empty() {
            return true; // most writes: no lock taken
        }
        let leases = self.leases.lock();
        ids.iter().all(|id| leases.contains_key(id))
    }

    /// Applies a committed lease change into `wb`; whether it took effect
    /// (a grant of an existing id or a revoke of an unknown one does not).
    pub fn apply(&self, op: &LeaseOp, wb: &mut WriteBatch, engine: &Engine) -> bool {
        let mut leases = self.leases.lock();
        match &op.op {
            Some(lease_op::Op::Grant(r)) => {
                if leases.contains_key(&r.id) {
                    return false;
                }
                wb.put_cf(engine.meta(), keys::lease(r.id), r.encode_to_vec());
                leases.insert(r.id, Lease { ttl: r.ttl, expiry: deadline(Instant::now(), r.ttl) });
                true
            }
            Some(lease_op::Op::Revoke(id)) => {
                wb.delete_cf(engine.meta(), keys::lease(*id));
                leases.remove(id).is_some()
            }
            None => false,
        }
    }

    /// An applied change moved `key` from lease `from` to lease `to` (0: none).
    pub fn on_change(&self, key: &[u8], from: i64, to: i64) {
        if from == to {
            return;
        }
        let mut attached = self.attached.lock();
        if from != 0 {
            if let Some(set) = attached.get_mut(&from) {
                set.remove(key);
                if set.is_empty() {
                    attached.remove(&from);
                }
            }
        }
        if to != 0 {
            attached.entry(to).or_default().insert(key.to_vec());
        }
    }

    /// Renews a lease to its full TTL; its TTL, or `None` if unknown.
    pub fn keep_alive(&self, id: i64) -> Option<i64> {
        let mut leases = self.leases.lock();
        let lease = leases.get_mut(&id)?;
        lease.expiry = deadline(Instant::now(), lease.ttl);
        Some(lease.ttl)
    }

    /// (granted TTL, whole seconds remaining, rounded down as etcd does) of a lease.
    pub fn time_to_live(&self, id: i64) -> Option<(i64, i64)> {
        let leases = self.leases.lock();
        let lease = leases.get(&id)?;
        let left = lease.expiry.saturating_duration_since(Instant::now());
        Some((lease.ttl, left.as_secs() as i64))
    }

    /// Every lease id, ascending.
    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.leases.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The keys attached to lease `id`, in key order.
    pub fn keys_of(&self, id: i64) -> Vec<Vec<u8>> {
        self.attached.lock().get(&id).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Leases whose time ran out.
    pub fn expired(&self) -> Vec<i64> {
        let now = Instant::now();
        self.leases.lock().iter().filter(|(_, l)| l.expiry <= now).map(|(id, _)| *id).collect()
    }

    /// Lease ids that keys are attached to but that no longer exist (a
    /// revoke interrupted between its two steps).
    pub fn orphans(&self) -> Vec<i64> {
        let leases = self.leases.lock();
        self.attached.lock().keys().filter(|id| !leases.contains_key(id)).copied().collect()
    }
}

/// `ttl` seconds after `now` (TTLs up to [`MAX_TTL`] stay representable).
fn deadline(now: Instant, ttl: i64) -> Instant {
    let ttl = Duration::from_secs(ttl.max(0) as u64);
    now.checked_add(ttl).unwrap_or_else(|| now + Duration::from_secs(u32::MAX as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_follows_changes_and_orphans_show() {
        let l = Lessor::default();
        l.on_change(b"a", 0, 7);
        l.on_change(b"b", 0, 7);
        l.on_change(b"a", 7, 8);
        assert_eq!(l.keys_of(7), vec![b"b".to_vec()]);
        assert_eq!(l.keys_of(8), vec![b"a".to_vec()]);
        l.on_change(b"b", 7, 0);
        assert!(l.keys_of(7).is_empty());
        assert_eq!(l.orphans(), vec![8], "no lease 8 was granted");
    }
}
