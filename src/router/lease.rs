//! etcd leases through the router: grants and revokes go through the meta
//! group's log; a revoke (or an expiry) then deletes the lease's keys with
//! one write at one revision, across regions if need be (see
//! [`crate::lessor`] for the two steps and their recovery).

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Router;
use crate::error::{Error, Result};
use crate::lessor::MAX_TTL;
use crate::proto::tesserapb::{lease_op, LeaseOp, LeaseRecord, RaftCommand};
use crate::region::eval::WriteRequest;

/// How often the leader looks for expired leases.
const EXPIRY_CHECK: Duration = Duration::from_millis(200);

/// What a lease's time-to-live query finds.
pub struct LeaseTtl {
    pub granted: i64,
    pub remaining: i64,
    pub keys: Vec<Vec<u8>>,
}

impl Router {
    /// etcd's shortest lease: 1.5 election timeouts, in whole seconds (2 s
    /// with the default 1 s election timeout, as etcd).
    fn min_lease_ttl(&self) -> i64 {
        let raft = self.store.raft_config();
        let election = raft.tick_interval * raft.election_ticks as u32;
        (election * 3 / 2).as_millis().div_ceil(1000) as i64
    }

    /// Grants lease `id` (0: tessera picks one) for `ttl` seconds; returns
    /// the id and the TTL granted.
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> Result<(i64, i64)> {
        if ttl > MAX_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        let ttl = ttl.max(self.min_lease_ttl());
        let id = if id == 0 { self.new_lease_id() } else { id };
        if self.store.lessor.exists(id) {
            return Err(Error::LeaseExists);
        }
        let op = LeaseOp { op: Some(lease_op::Op::Grant(LeaseRecord { id, ttl })) };
        if !self.propose_lease(op).await? {
            return Err(Error::LeaseExists);
        }
        Ok((id, ttl))
    }

    /// Revokes lease `id` and deletes its keys at one revision: that
    /// revision, None if no key was attached (etcd answers a revoke at the
    /// revision of its deletes).
    pub async fn lease_revoke(self: &Arc<Self>, id: i64) -> Result<Option<u64>> {
        self.to_completion(move |router| async move { router.revoke_steps(id).await }).await
    }

    async fn revoke_steps(&self, id: i64) -> Result<Option<u64>> {
        if !self.store.lessor.exists(id) {
            return Err(Error::LeaseNotFound);
        }
        let op = LeaseOp { op: Some(lease_op::Op::Revoke(id)) };
        if !self.propose_lease(op).await? {
            return Err(Error::LeaseNotFound);
        }
        crate::failpoint::hit("lease-after-revoke");
        self.delete_lease_keys(id).await
    }

    /// Renews lease `id`; its TTL, 0 if it does not exist (etcd answers so).
    pub fn lease_keep_alive(&self, id: i64) -> i64 {
        self.store.lessor.keep_alive(id).unwrap_or(0)
    }

    pub fn lease_time_to_live(&self, id: i64, with_keys: bool) -> Option<LeaseTtl> {
        let (granted, remaining) = self.store.lessor.time_to_live(id)?;
        let keys = if with_keys { self.store.lessor.keys_of(id) } else { Vec::new() };
        Some(LeaseTtl { granted, remaining, keys })
    }

    pub fn lease_ids(&self) -> Vec<i64> {
        self.store.lessor.ids()
    }

    async fn propose_lease(&self, op: LeaseOp) -> Result<bool> {
        let meta = self.store.meta_region;
        let epoch = self.store.peer(meta)?.region.epoch.map_or(0, |e| e.version);
        let cmd = RaftCommand { lease: Some(op), ..Default::default() };
        self.retrying(|| self.client.propose(meta, epoch, cmd.clone())).await
    }

    /// The second step of a revoke: once every write in flight has applied
    /// (none can attach to the lease any more), deletes the keys still
    /// attached to it, with one write; its revision.
    async fn delete_lease_keys(&self, id: i64) -> Result<Option<u64>> {
        let sequencer = &self.store.sequencer;
        tokio::time::timeout(self.request_timeout, sequencer.wait_resolved(sequencer.last()))
            .await
            .map_err(|_| Error::Timeout)?;
        let keys = self.store.lessor.keys_of(id);
        if keys.is_empty() {
            return Ok(None);
        }
        let (outcome, _) = self.write_attached(WriteRequest::DeleteLeased { lease: id, keys }).await?;
        Ok(outcome.revision)
    }

    /// Deletes the keys of leases revoked by a process that died before it
    /// deleted them (see [`crate::lessor::Lessor::orphans`]).
    pub(super) async fn delete_orphaned_lease_keys(&self) -> Result<()> {
        for id in self.store.lessor.orphans() {
            tracing::info!(lease = id, "deleting the keys of a lease revoked before a crash");
            self.delete_lease_keys(id).await?;
        }
        Ok(())
    }

    /// A positive id not in use: the clock's nanoseconds, as a start.
    fn new_lease_id(&self) -> i64 {
        loop {
            let id = (super::unique_id() as i64 & i64::MAX).max(1);
            if !self.store.lessor.exists(id) {
                return id;
            }
        }
    }

    /// Revokes leases whose time ran out, until the router is dropped.
    pub fn start_lease_expiry(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let router: Weak<Router> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(EXPIRY_CHECK).await;
                let Some(router) = router.upgrade() else { return };
                if !router.store.is_serving() {
                    continue; // only the leader store expires leases
                }
                for id in router.store.lessor.expired() {
                    match router.lease_revoke(id).await {
                        Ok(_) => tracing::debug!(lease = id, "lease expired"),
                        Err(Error::LeaseNotFound) => {}
                        Err(e) => tracing::warn!(lease = id, "revoking an expired lease: {e}"),
                    }
                }
            }
        })
    }
}
